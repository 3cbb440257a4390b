// Package sensor holds what Vigil's sensors share: the Sensor interface the
// agent drives every event family through, and the plumbing of loading a
// family's BPF object and reading its ring buffer. Each family lives in a
// subpackage (process, ...).
package sensor

import (
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// ErrClosed is returned by Next and ReadRaw once a sensor is closed.
var ErrClosed = errors.New("sensor closed")

// ErrShortRecord is returned for a ring-buffer record too short for its type.
var ErrShortRecord = errors.New("short record")

// ErrUnknownType is returned for a record of a type the decoder does not know.
var ErrUnknownType = errors.New("unknown event type")

// Sensor is one loaded and attached event family.
type Sensor interface {
	// Name names the family, e.g. "process"; loss counters are keyed by it.
	Name() string
	// Hooks lists the kernel hooks the family attached to.
	Hooks() []string
	// Next blocks until the next event and returns it decoded (a pointer to
	// one of the agent/event types). It returns an error matching
	// os.ErrDeadlineExceeded when the deadline set by SetDeadline passes,
	// and ErrClosed after Close.
	Next() (any, error)
	// SetDeadline bounds the wait of Next; the zero time waits forever.
	SetDeadline(t time.Time)
	// Lost returns how many records the kernel could not put into the ring
	// buffer because it was full, since load.
	Lost() (uint64, error)
	// Close detaches and unloads everything.
	Close() error
}

// Gapped is a Sensor that could not attach some of its hooks on this
// kernel and runs without them.
type Gapped interface {
	// Missing names what is not watched, e.g. syscalls without a tracepoint.
	Missing() []string
}

// WakeupInterval is the least time between two records that wake a ring
// buffer's reader (unless the ring is a quarter full): a storm of events
// costs the traced tasks at most one wakeup per interval.
const WakeupInterval = 50 * time.Millisecond

// DefaultPollInterval is how often a reader looks at its ring without being
// woken: records that came within WakeupInterval of a wakeup wait at most
// this long.
const DefaultPollInterval = 100 * time.Millisecond

// Prepare readies the process for loading BPF objects: kernels before 5.11
// charge BPF memory to RLIMIT_MEMLOCK.
func Prepare() error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("remove memlock limit: %w", err)
	}
	return nil
}

// CheckRingSize checks a ring buffer size: a power of two of at least a page.
func CheckRingSize(size uint32) error {
	page := uint32(os.Getpagesize())
	if size < page || size&(size-1) != 0 {
		return fmt.Errorf("ring size %d: must be a power of two of at least %d bytes", size, page)
	}
	return nil
}

// SizeRing sets the size of ring buffer map name in spec and the wakeup
// policy every family's object has (wakeup_bytes, wakeup_interval_ns): the
// kernel wakes the reader when the ring is a quarter full, or when no record
// has woken it for WakeupInterval.
func SizeRing(spec *ebpf.CollectionSpec, name string, size uint32) error {
	if err := CheckRingSize(size); err != nil {
		return err
	}
	m, ok := spec.Maps[name]
	if !ok {
		return fmt.Errorf("no ring buffer %q in the object", name)
	}
	m.MaxEntries = size
	v, ok := spec.Variables["wakeup_bytes"]
	if !ok {
		return errors.New("no wakeup_bytes variable in the object")
	}
	if err := v.Set(uint64(size / 4)); err != nil {
		return fmt.Errorf("set wakeup threshold: %w", err)
	}
	v, ok = spec.Variables["wakeup_interval_ns"]
	if !ok {
		return errors.New("no wakeup_interval_ns variable in the object")
	}
	if err := v.Set(uint64(WakeupInterval)); err != nil {
		return fmt.Errorf("set wakeup interval: %w", err)
	}
	return nil
}

// LoadError makes a load error readable, with the verifier's log when there is one.
func LoadError(what string, err error) error {
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return fmt.Errorf("load %s programs: %+v", what, verr)
	}
	return fmt.Errorf("load %s programs: %w", what, err)
}

// Ring reads raw records from a ring buffer whose producers wake the reader
// only past a threshold, so it looks at the ring every poll interval.
type Ring struct {
	reader   *ringbuf.Reader
	rec      ringbuf.Record
	poll     time.Duration
	deadline time.Time
}

// NewRing opens a reader on ring buffer m; poll 0 means DefaultPollInterval.
func NewRing(m *ebpf.Map, poll time.Duration) (*Ring, error) {
	r, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer %s: %w", m, err)
	}
	if poll <= 0 {
		poll = DefaultPollInterval
	}
	ring := &Ring{reader: r, poll: poll}
	ring.arm(time.Now())
	return ring, nil
}

// arm sets when the reader stops waiting for a wakeup and looks anyway: the
// next poll, or the caller's deadline if that comes first.
func (r *Ring) arm(now time.Time) {
	wait := now.Add(r.poll)
	if !r.deadline.IsZero() && r.deadline.Before(wait) {
		wait = r.deadline
	}
	r.reader.SetDeadline(wait)
}

// SetDeadline makes ReadRaw give up at t with an error that matches
// os.ErrDeadlineExceeded; the zero time waits forever. It must be called
// from the reading goroutine.
func (r *Ring) SetDeadline(t time.Time) {
	r.deadline = t
	r.arm(time.Now())
}

// ReadRaw blocks until the next record and returns its bytes, valid until
// the next call. It returns ErrClosed after Close. Records are read in
// batches: the clock is read only when the ring is drained, not per record.
func (r *Ring) ReadRaw() ([]byte, error) {
	for {
		err := r.reader.ReadInto(&r.rec)
		switch {
		case err == nil:
			return r.rec.RawSample, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Drained, and the poll (or the caller's deadline) came.
			now := time.Now()
			if !r.deadline.IsZero() && !now.Before(r.deadline) {
				return nil, err
			}
			r.arm(now)
		case errors.Is(err, ringbuf.ErrClosed):
			return nil, ErrClosed
		default:
			return nil, fmt.Errorf("read ring buffer: %w", err)
		}
	}
}

// Close closes the reader; a blocked ReadRaw returns ErrClosed.
func (r *Ring) Close() error {
	return r.reader.Close()
}

// Lost sums the per-CPU loss counter of family in a lost_events map.
func Lost(lostEvents *ebpf.Map, family uint32) (uint64, error) {
	var perCPU []uint64
	if err := lostEvents.Lookup(&family, &perCPU); err != nil {
		return 0, fmt.Errorf("read lost counter: %w", err)
	}
	var total uint64
	for _, n := range perCPU {
		total += n
	}
	return total, nil
}

// Into copies raw into the fixed-layout record v (a pointer to a bpf2go type).
func Into[T any](v *T, raw []byte) error {
	size := int(unsafe.Sizeof(*v))
	if len(raw) < size {
		return fmt.Errorf("%w: %d bytes, want %d", ErrShortRecord, len(raw), size)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(v)), size), raw)
	return nil
}

// Bytes views the first n bytes of a C char array, bounded by its size.
func Bytes(a []int8, n uint32) []byte {
	if int(n) > len(a) {
		n = uint32(len(a))
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(a))), len(a))[:n]
}

// CString converts a NUL-terminated C char array.
func CString(a []int8) string { return string(CBytes(a)) }

// CBytes views a NUL-terminated C char array up to its NUL.
func CBytes(a []int8) []byte {
	b := Bytes(a, uint32(len(a)))
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
