package sensor

import (
	"fmt"
	"syscall"

	"github.com/cilium/ebpf"
)

// Exe is an executable as the kernel identifies it: its inode number and
// the kernel's encoding of its file system's device (super_block.s_dev).
// Families with a map keyed by executable build their key from it.
type Exe struct {
	// Ino is the inode number.
	Ino uint64
	// Dev is the kernel dev_t: major in the top 12 bits, minor in the low 20.
	Dev uint32
}

// ExeOf identifies the executable path names now (symlinks followed). A
// file replaced later under the same path is a different executable.
func ExeOf(path string) (Exe, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return Exe{}, fmt.Errorf("executable %s: %w", path, err)
	}
	return Exe{Ino: st.Ino, Dev: KernelDev(st.Dev)}, nil
}

// KernelDev converts a user-space device number (stat's st_dev, glibc
// encoding) to the kernel's internal dev_t, which BPF programs read.
func KernelDev(dev uint64) uint32 {
	major := uint32((dev>>8)&0xfff) | uint32((dev>>32)&^0xfff)
	minor := uint32(dev&0xff) | uint32((dev>>12)&^0xff)
	return major<<20 | minor
}

// ReplaceSet makes hash map m hold exactly keys, each with the value 1: it
// adds the new keys first and then deletes the stale ones, so a key in both
// the old and the new set is never missing in between.
func ReplaceSet[K comparable](m *ebpf.Map, keys []K) error {
	want := make(map[K]bool, len(keys))
	one := uint8(1)
	for _, k := range keys {
		want[k] = true
		if err := m.Put(&k, &one); err != nil {
			return err
		}
	}
	var k K
	var v uint8
	var stale []K
	it := m.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for i := range stale {
		if err := m.Delete(&stale[i]); err != nil {
			return err
		}
	}
	return nil
}
