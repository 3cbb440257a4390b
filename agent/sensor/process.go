// Package sensor loads Vigil's process-lifecycle kernel programs, attaches
// them, and reads and decodes what they report.
package sensor

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/vigil-sensor/vigil/bpf"
)

// ErrClosed is returned by Read once the sensor is closed.
var ErrClosed = errors.New("sensor closed")

// DefaultRingSize is the default size in bytes of the process ring buffer.
const DefaultRingSize = 8 << 20

// DefaultPollInterval is how long records may wait in the ring buffer for
// the reader when it is less than a quarter full.
const DefaultPollInterval = 20 * time.Millisecond

// Options configures the process sensor.
type Options struct {
	// RingSize is the ring buffer size in bytes: a power of two and a
	// multiple of the page size. 0 means DefaultRingSize.
	RingSize uint32
	// PollInterval bounds how long a record waits before the reader looks:
	// the kernel wakes the reader at once only when the ring is a quarter
	// full, which saves the traced tasks a wakeup per record. 0 means
	// DefaultPollInterval.
	PollInterval time.Duration
}

// Process is the loaded and attached process-lifecycle sensor: fork, exec
// and exit of every process on the host.
type Process struct {
	objs     bpf.ProcessObjects
	links    []link.Link
	reader   *ringbuf.Reader
	rec      ringbuf.Record
	poll     time.Duration
	deadline time.Time
}

// Hooks names the kernel hooks the process sensor attaches to.
var Hooks = []string{"tp_btf/sched_process_fork", "tp_btf/sched_process_exec", "tp_btf/sched_process_exit"}

// LoadProcess loads the process programs into the kernel, attaches them and
// opens their ring buffer. Close undoes all of it.
func LoadProcess(opts Options) (*Process, error) {
	ringSize := opts.RingSize
	if ringSize == 0 {
		ringSize = DefaultRingSize
	}
	if err := checkRingSize(ringSize); err != nil {
		return nil, err
	}

	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}

	// Load the object, sizing the ring buffer first.
	spec, err := bpf.LoadProcess()
	if err != nil {
		return nil, fmt.Errorf("read process programs: %w", err)
	}
	spec.Maps[bpf.ProcessMapProcessEvents].MaxEntries = ringSize
	if err := spec.Variables[bpf.ProcessVarWakeupBytes].Set(uint64(ringSize / 4)); err != nil {
		return nil, fmt.Errorf("set wakeup threshold: %w", err)
	}
	p := &Process{poll: opts.PollInterval}
	if p.poll <= 0 {
		p.poll = DefaultPollInterval
	}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load process programs: %+v", verr)
		}
		return nil, fmt.Errorf("load process programs: %w", err)
	}

	// Attach each program to its BTF-typed tracepoint.
	for _, prog := range []*ebpf.Program{p.objs.HandleFork, p.objs.HandleExec, p.objs.HandleExit} {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("attach %s: %w", prog, err)
		}
		p.links = append(p.links, l)
	}

	// Open the ring buffer last, so nothing is read before all hooks are live.
	p.reader, err = ringbuf.NewReader(p.objs.ProcessEvents)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("open process ring buffer: %w", err)
	}
	return p, nil
}

func checkRingSize(size uint32) error {
	page := uint32(os.Getpagesize())
	if size < page || size&(size-1) != 0 {
		return fmt.Errorf("ring size %d: must be a power of two of at least %d bytes", size, page)
	}
	return nil
}

// SetDeadline makes ReadRaw give up at t with an error that matches
// os.ErrDeadlineExceeded; the zero time waits forever. It must be called
// from the reading goroutine.
func (p *Process) SetDeadline(t time.Time) {
	p.deadline = t
}

// ReadRaw blocks until the next record and returns its bytes, valid until
// the next call. It returns ErrClosed after Close.
func (p *Process) ReadRaw() ([]byte, error) {
	for {
		// Look at the ring at least every poll interval: the kernel does not
		// wake the reader for each record.
		wait := time.Now().Add(p.poll)
		if !p.deadline.IsZero() && p.deadline.Before(wait) {
			wait = p.deadline
		}
		p.reader.SetDeadline(wait)
		err := p.reader.ReadInto(&p.rec)
		switch {
		case err == nil:
			return p.rec.RawSample, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			if !p.deadline.IsZero() && !time.Now().Before(p.deadline) {
				return nil, err
			}
		case errors.Is(err, ringbuf.ErrClosed):
			return nil, ErrClosed
		default:
			return nil, fmt.Errorf("read process ring buffer: %w", err)
		}
	}
}

// Lost returns how many process records the kernel could not reserve in
// the ring buffer since the programs were loaded, summed over all CPUs.
func (p *Process) Lost() (uint64, error) {
	var perCPU []uint64
	key := uint32(bpf.ProcessEventFamilyFAMILY_PROCESS)
	if err := p.objs.LostEvents.Lookup(&key, &perCPU); err != nil {
		return 0, fmt.Errorf("read lost counter: %w", err)
	}
	var total uint64
	for _, n := range perCPU {
		total += n
	}
	return total, nil
}

// Close detaches the programs, closes the ring buffer and unloads
// everything. It is safe to call more than once and from another goroutine
// than the reader's, whose blocked Read then returns ErrClosed.
func (p *Process) Close() error {
	var errs []error
	if p.reader != nil {
		errs = append(errs, p.reader.Close())
	}
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}
