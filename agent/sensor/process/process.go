// Package process is the process-lifecycle sensor: fork, exec and exit of
// every process on the host, from BTF tracepoints.
package process

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/bpf"
)

// DefaultRingSize is the default size in bytes of the process ring buffer.
const DefaultRingSize = 8 << 20

// Options configures the process sensor.
type Options struct {
	// RingSize is the ring buffer size in bytes: a power of two of at least
	// a page. 0 means DefaultRingSize.
	RingSize uint32
	// PollInterval bounds how long a record waits before the reader looks
	// (0: sensor.DefaultPollInterval).
	PollInterval time.Duration
	// BootTime maps the kernel's since-boot timestamps to wall-clock time.
	BootTime time.Time
	// CgroupID, when not 0, limits the sensor to the processes of this
	// cgroup v2 (its id is the inode number of its directory); the rest are
	// dropped in the kernel before they cost a ring-buffer record.
	CgroupID uint64
}

// Hooks names the kernel hooks the process sensor attaches to.
var Hooks = []string{"tp_btf/sched_process_fork", "tp_btf/sched_process_exec", "tp_btf/sched_process_exit"}

// Sensor is the loaded and attached process sensor. It implements sensor.Sensor.
type Sensor struct {
	sensor.Base
	objs bpf.ProcessObjects
	dec  Decoder
	// killMu serialises SetKillList calls.
	killMu sync.Mutex
}

var _ sensor.Sensor = (*Sensor)(nil)

// Load loads the process programs into the kernel, attaches them and opens
// their ring buffer. Close undoes all of it.
func Load(opts Options) (*Sensor, error) {
	ringSize := opts.RingSize
	if ringSize == 0 {
		ringSize = DefaultRingSize
	}
	if err := sensor.Prepare(); err != nil {
		return nil, err
	}

	// Read the object and size its ring buffer before loading it.
	spec, err := bpf.LoadProcess()
	if err != nil {
		return nil, fmt.Errorf("read process programs: %w", err)
	}
	if err := sensor.SizeRing(spec, bpf.ProcessMapProcessEvents, ringSize); err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	if err := spec.Variables[bpf.ProcessVarTargetCgroup].Set(opts.CgroupID); err != nil {
		return nil, fmt.Errorf("set target cgroup: %w", err)
	}
	s := &Sensor{dec: Decoder{BootTime: opts.BootTime}}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		return nil, sensor.LoadError("process", err)
	}
	s.Init("process", uint32(bpf.ProcessEventFamilyFAMILY_PROCESS), s.objs.LostEvents, &s.objs)

	// Attach each program to its BTF-typed tracepoint.
	for i, prog := range []*ebpf.Program{s.objs.HandleFork, s.objs.HandleExec, s.objs.HandleExit} {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("attach %s: %w", Hooks[i], err)
		}
		s.Attach(l, Hooks[i])
	}

	// Open the ring buffer last, so nothing is read before all hooks are live.
	if err := s.OpenRing(s.objs.ProcessEvents, opts.PollInterval, s.dec.Decode); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// SetKillList replaces the kill lists: from now on, an exec whose new image
// is one of exes, or whose task name (comm, the base name it was run as, at
// most 15 bytes) is one of names, gets SIGKILL in the kernel before the
// image runs, and its Exec event has Killed set. Each path in exes is
// resolved now to the inode it names (symlinks followed); a path that does
// not exist is an error naming it. A bad entry is reported before anything
// changes. New entries are added before stale ones are removed, so an
// executable on both the old and the new list is never let through. Empty
// lists kill nothing.
//
// The lists apply to every task on the host, whatever Options.CgroupID
// says (that only limits what is reported). A script is listed by name:
// the image the kernel runs for it is its interpreter's. A path is matched
// by the inode it names at the call: a file replaced later under it, or a
// copy, is not on the list, while a hard link to it is.
func (s *Sensor) SetKillList(exes []string, names []string) error {
	// Each list is bounded by the size of its map in the kernel.
	if max := int(s.objs.KillExes.MaxEntries()); len(exes) > max {
		return fmt.Errorf("kill list: %d executables, at most %d", len(exes), max)
	}
	if max := int(s.objs.KillNames.MaxEntries()); len(names) > max {
		return fmt.Errorf("kill list: %d names, at most %d", len(names), max)
	}
	exeKeys := make([]bpf.ProcessKillExeKey, 0, len(exes))
	for _, p := range exes {
		x, err := sensor.ExeOf(p)
		if err != nil {
			return fmt.Errorf("kill list: %w", err)
		}
		exeKeys = append(exeKeys, bpf.ProcessKillExeKey{Ino: x.Ino, Dev: x.Dev})
	}
	nameKeys := make([]bpf.ProcessKillNameKey, 0, len(names))
	for _, n := range names {
		k, err := killNameKey(n)
		if err != nil {
			return fmt.Errorf("kill list: %w", err)
		}
		nameKeys = append(nameKeys, k)
	}

	s.killMu.Lock()
	defer s.killMu.Unlock()
	if err := sensor.ReplaceSet(s.objs.KillExes, exeKeys); err != nil {
		return fmt.Errorf("kill list: executables: %w", err)
	}
	if err := sensor.ReplaceSet(s.objs.KillNames, nameKeys); err != nil {
		return fmt.Errorf("kill list: names: %w", err)
	}
	return nil
}

// ErrBadKillName is returned by SetKillList for a name no task can have.
var ErrBadKillName = errors.New("bad task name")

// killNameKey makes the kill_names key of a task name. The kernel keeps at
// most 15 bytes of a name, so a longer one could never match as given.
func killNameKey(name string) (bpf.ProcessKillNameKey, error) {
	var k bpf.ProcessKillNameKey
	switch {
	case name == "":
		return k, fmt.Errorf("%w: empty", ErrBadKillName)
	case len(name) >= len(k.Comm):
		return k, fmt.Errorf("%w %q: longer than %d bytes (the kernel keeps only %q)", ErrBadKillName, name, len(k.Comm)-1, name[:len(k.Comm)-1])
	case strings.ContainsRune(name, 0):
		return k, fmt.Errorf("%w %q: contains NUL", ErrBadKillName, name)
	}
	for i := 0; i < len(name); i++ {
		k.Comm[i] = int8(name[i])
	}
	return k, nil
}
