// Package file is the file and syscall sensor: opens and metadata changes of
// watched paths, privilege changes, ptrace, kernel module loads,
// memfd_create, mount, BPF program loads and kills, from the per-syscall
// tracepoints (syscalls/sys_enter_* and sys_exit_*).
//
// Filtering happens in the kernel, from maps the sensor fills from Policy:
// enabled kinds, an optional target cgroup, watched path prefixes and
// allow-lists of pids, cgroups and executables. A syscall no filter selects
// costs its entry program and a task-storage lookup at exit, and never
// reaches user space.
//
// Paths are matched at syscall entry, lexically: an absolute path as the
// caller passed it, a relative one prefixed with the path of the working
// directory or of the dirfd's file. Symbolic links, ".." components and
// doubled slashes are not resolved, so /tmp/../etc/passwd or a symlink into
// /etc is not seen as a path under /etc; the real file is only known once
// the kernel resolved it, which would cost a path walk on every open. Paths
// are matched on their first 255 bytes.
package file

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/bpf"
)

// DefaultRingSize is the default size in bytes of the file ring buffer.
const DefaultRingSize = 4 << 20

// Options configures the file sensor.
type Options struct {
	// Policy is what the kernel filters on; see SetPolicy to change it later.
	Policy
	// RingSize is the ring buffer size in bytes: a power of two of at least
	// a page. 0 means DefaultRingSize.
	RingSize uint32
	// PollInterval bounds how long a record waits before the reader looks
	// (0: sensor.DefaultPollInterval).
	PollInterval time.Duration
	// BootTime maps the kernel's since-boot timestamps to wall-clock time.
	BootTime time.Time
}

// hookedSyscall is one syscall the sensor hooks, with the kind it reports.
type hookedSyscall struct {
	name     string // tracepoint name after sys_enter_ / sys_exit_
	kind     Kind
	optional bool // absent on architectures without the old syscalls (arm64) or kernels without modules
}

var syscalls = []hookedSyscall{
	{"open", KindOpen, true}, {"openat", KindOpen, false}, {"openat2", KindOpen, false}, {"creat", KindOpen, true},
	{"rename", KindRename, true}, {"renameat", KindRename, false}, {"renameat2", KindRename, false},
	{"unlink", KindUnlink, true}, {"unlinkat", KindUnlink, false}, {"rmdir", KindUnlink, true},
	{"chmod", KindChmod, true}, {"fchmod", KindChmod, false}, {"fchmodat", KindChmod, false}, {"fchmodat2", KindChmod, false},
	{"chown", KindChown, true}, {"lchown", KindChown, true}, {"fchown", KindChown, false}, {"fchownat", KindChown, false},
	{"link", KindLink, true}, {"linkat", KindLink, false},
	{"symlink", KindSymlink, true}, {"symlinkat", KindSymlink, false},
	{"setuid", KindCred, false}, {"setgid", KindCred, false}, {"setreuid", KindCred, false}, {"setregid", KindCred, false},
	{"setresuid", KindCred, false}, {"setresgid", KindCred, false}, {"capset", KindCred, false},
	{"ptrace", KindPtrace, false},
	{"init_module", KindModuleLoad, true}, {"finit_module", KindModuleLoad, true},
	{"delete_module", KindModuleUnld, true},
	{"memfd_create", KindMemfd, false},
	{"mount", KindMount, false}, {"umount", KindUmount, false},
	{"bpf", KindBPFProgLoad, false},
	{"kill", KindKill, false}, {"tkill", KindKill, false}, {"tgkill", KindKill, false},
}

// Sensor is the loaded and attached file sensor. It implements sensor.Sensor.
type Sensor struct {
	sensor.Base
	coll     *ebpf.Collection
	policy   policyMaps
	counters *ebpf.Map
	missing  []string
	dec      Decoder
	kinds    Kind
}

var _ sensor.Sensor = (*Sensor)(nil)

// Load loads the programs of the enabled kinds into the kernel, writes the
// policy into their maps, attaches them and opens the ring buffer. tracefs
// must be mounted (kernelfs.EnsureMounted). Close undoes all of it.
func Load(opts Options) (*Sensor, error) {
	ringSize := opts.RingSize
	if ringSize == 0 {
		ringSize = DefaultRingSize
	}
	kinds := opts.Kinds
	if kinds == 0 {
		kinds = KindAll
	}
	if err := sensor.Prepare(); err != nil {
		return nil, err
	}

	// Read the object, size its ring buffer and keep only the programs of
	// the enabled kinds: a kind that is off costs nothing, not even a hook.
	spec, err := bpf.LoadFile()
	if err != nil {
		return nil, fmt.Errorf("read file programs: %w", err)
	}
	if err := sensor.SizeRing(spec, bpf.FileMapFileEvents, ringSize); err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	var enabled []hookedSyscall
	for _, sc := range syscalls {
		if kinds&sc.kind != 0 {
			enabled = append(enabled, sc)
		} else {
			delete(spec.Programs, "enter_"+sc.name)
		}
	}
	if len(enabled) == 0 {
		return nil, errors.New("file sensor: no event kind enabled")
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, sensor.LoadError("file", err)
	}
	s := &Sensor{
		coll: coll,
		policy: policyMaps{
			config:  coll.Maps[bpf.FileMapFileConfigMap],
			watch:   coll.Maps[bpf.FileMapWatchPaths],
			pids:    coll.Maps[bpf.FileMapAllowPids],
			cgroups: coll.Maps[bpf.FileMapAllowCgroups],
			exes:    coll.Maps[bpf.FileMapAllowExes],
		},
		counters: coll.Maps[bpf.FileMapFilterCounters],
		dec:      Decoder{BootTime: opts.BootTime},
		kinds:    kinds,
	}
	s.Init("file", uint32(bpf.FileEventFamilyFAMILY_FILE), coll.Maps[bpf.FileMapLostEvents], closerFunc(func() error {
		coll.Close()
		return nil
	}))

	// Fill the policy before any hook is live.
	pol := opts.Policy
	pol.Kinds = kinds
	if err := s.policy.apply(pol); err != nil {
		s.Close()
		return nil, fmt.Errorf("file policy: %w", err)
	}

	// Attach the exits first, so that no entry stashes a record whose exit
	// is missed; the exit program also checks the syscall number.
	exit := coll.Programs["handle_sys_exit"]
	var attached []hookedSyscall
	for _, sc := range enabled {
		l, err := link.Tracepoint("syscalls", "sys_exit_"+sc.name, exit, nil)
		if err != nil {
			if sc.optional && errors.Is(err, os.ErrNotExist) {
				s.missing = append(s.missing, sc.name)
				continue
			}
			s.Close()
			return nil, fmt.Errorf("attach sys_exit_%s: %w", sc.name, err)
		}
		s.Attach(l, "tracepoint/syscalls/sys_exit_"+sc.name)
		attached = append(attached, sc)
	}
	for _, sc := range attached {
		l, err := link.Tracepoint("syscalls", "sys_enter_"+sc.name, coll.Programs["enter_"+sc.name], nil)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("attach sys_enter_%s: %w", sc.name, err)
		}
		s.Attach(l, "tracepoint/syscalls/sys_enter_"+sc.name)
	}

	// Open the ring buffer last, so nothing is read before all hooks are live.
	if err := s.OpenRing(coll.Maps[bpf.FileMapFileEvents], opts.PollInterval, s.dec.Decode); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// SetPolicy replaces the kernel's filters while the sensor runs. Kinds can
// only be narrowed to those enabled at Load (0 keeps them all).
func (s *Sensor) SetPolicy(p Policy) error {
	if p.Kinds == 0 {
		p.Kinds = s.kinds
	}
	p.Kinds &= s.kinds
	if err := s.policy.apply(p); err != nil {
		return fmt.Errorf("file policy: %w", err)
	}
	return nil
}

// Missing lists the syscalls of enabled kinds this kernel has no
// tracepoint for (the legacy open, rename, ... on arm64; the module
// syscalls on a kernel built without modules): they are not reported.
func (s *Sensor) Missing() []string { return s.missing }

// Counters are what the kernel filters did since load, summed over CPUs.
type Counters struct {
	// Seen counts entries of hooked syscalls of enabled kinds.
	Seen uint64
	// FilteredPath counts syscalls dropped because no path was watched.
	FilteredPath uint64
	// FilteredAllow counts syscalls dropped by an allow-list or OnlyCgroup.
	FilteredAllow uint64
	// FilteredOther counts syscalls dropped for their arguments or result
	// (a failed or no-op credential change).
	FilteredOther uint64
	// Emitted counts records written to the ring buffer.
	Emitted uint64
}

// Counters reads the kernel's filter counters.
func (s *Sensor) Counters() (Counters, error) {
	read := func(idx bpf.FileFileCounter) (uint64, error) {
		var perCPU []uint64
		key := uint32(idx)
		if err := s.counters.Lookup(&key, &perCPU); err != nil {
			return 0, fmt.Errorf("read filter counter %d: %w", idx, err)
		}
		var total uint64
		for _, n := range perCPU {
			total += n
		}
		return total, nil
	}
	var c Counters
	var err error
	for _, f := range []struct {
		idx bpf.FileFileCounter
		dst *uint64
	}{
		{bpf.FileFileCounterFCOUNT_SEEN, &c.Seen},
		{bpf.FileFileCounterFCOUNT_FILTERED_PATH, &c.FilteredPath},
		{bpf.FileFileCounterFCOUNT_FILTERED_ALLOW, &c.FilteredAllow},
		{bpf.FileFileCounterFCOUNT_FILTERED_OTHER, &c.FilteredOther},
		{bpf.FileFileCounterFCOUNT_EMITTED, &c.Emitted},
	} {
		if *f.dst, err = read(f.idx); err != nil {
			return Counters{}, err
		}
	}
	return c, nil
}

// closerFunc adapts a function to io.Closer.
type closerFunc func() error

func (f closerFunc) Close() error { return f() }
