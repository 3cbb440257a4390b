package testutil

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/kernelfs"
)

// CgroupV2Mount returns where the cgroup v2 hierarchy is mounted.
func CgroupV2Mount() (string, error) { return kernelfs.CgroupV2Root() }

// Cgroup is a throwaway cgroup v2 made for one test.
type Cgroup struct {
	// Path is its directory.
	Path string
	// ID is its cgroup id (the inode number of the directory).
	ID uint64
	// Dir is its directory opened, for SysProcAttr.CgroupFD.
	Dir *os.File
}

// NewCgroup makes a cgroup v2 for the test and removes it at cleanup, once
// the processes in it have exited.
func NewCgroup(t *testing.T) *Cgroup {
	t.Helper()
	RequireRoot(t)
	mount, err := CgroupV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(mount, "vigil-test-")
	if err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		// The kernel refuses rmdir while a process (or a zombie) is inside.
		for range 100 {
			if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("could not remove cgroup %s", filepath.Base(dir))
	})
	return &Cgroup{Path: dir, ID: st.Ino, Dir: f}
}
