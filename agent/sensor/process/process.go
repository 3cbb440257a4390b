// Package process is the process-lifecycle sensor: fork, exec and exit of
// every process on the host, from BTF tracepoints.
package process

import (
	"fmt"
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
