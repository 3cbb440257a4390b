package sensor

import (
	"errors"
	"io"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/bpf"
)

// Base is what every family's sensor embeds: the attached hooks, the ring
// reader, the loss counter and the loaded objects, with the Sensor methods
// built on them. A family sets it up with Init, Attach and OpenRing and
// adds only what is its own (loading, decoding, family-specific extras).
type Base struct {
	name    string
	family  uint32
	lost    *ebpf.Map
	objects io.Closer
	hooks   []string
	links   []link.Link
	ring    *Ring
	decode  func([]byte) (any, error)
}

// Init names the family, its loss-counter index in lostEvents, and the
// loaded objects Close releases.
func (b *Base) Init(name string, family uint32, lostEvents *ebpf.Map, objects io.Closer) {
	b.name, b.family, b.lost, b.objects = name, family, lostEvents, objects
}

// Attach records an attached hook under its name, e.g. "tp_btf/sched_process_exec".
func (b *Base) Attach(l link.Link, hook string) {
	b.links = append(b.links, l)
	b.hooks = append(b.hooks, hook)
}

// OpenRing opens the reader on ring buffer m (once every hook is live) and
// sets the decoder Next uses.
func (b *Base) OpenRing(m *ebpf.Map, poll time.Duration, decode func([]byte) (any, error)) error {
	r, err := NewRing(m, poll)
	if err != nil {
		return err
	}
	b.ring, b.decode = r, decode
	return nil
}

// Name returns the family's name.
func (b *Base) Name() string { return b.name }

// Hooks returns the hooks the sensor attached to.
func (b *Base) Hooks() []string { return b.hooks }

// SetDeadline bounds the wait of Next and ReadRaw.
func (b *Base) SetDeadline(t time.Time) { b.ring.SetDeadline(t) }

// ReadRaw blocks until the next record and returns its bytes, valid until
// the next call.
func (b *Base) ReadRaw() ([]byte, error) { return b.ring.ReadRaw() }

// Next returns the next record, decoded.
func (b *Base) Next() (any, error) {
	raw, err := b.ring.ReadRaw()
	if err != nil {
		return nil, err
	}
	return b.decode(raw)
}

// Lost returns how many records of the family the kernel could not put
// into its ring buffer since load.
func (b *Base) Lost() (uint64, error) {
	return Lost(b.lost, b.family)
}

// Close closes the ring buffer (a blocked Next returns ErrClosed),
// detaches every hook and unloads the objects. Hooks are detached
// concurrently: each detach waits for an RCU grace period.
func (b *Base) Close() error {
	var errs []error
	if b.ring != nil {
		errs = append(errs, b.ring.Close())
	}
	linkErrs := make([]error, len(b.links))
	var wg sync.WaitGroup
	for i, l := range b.links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			linkErrs[i] = l.Close()
		}()
	}
	wg.Wait()
	b.links = nil
	errs = append(errs, linkErrs...)
	if b.objects != nil {
		errs = append(errs, b.objects.Close())
		b.objects = nil
	}
	return errors.Join(errs...)
}

// ProcessOf decodes the process identity every record carries. Every
// family's bpf2go mirror of struct process_info has the same fields, so a
// family converts its own with a plain Go conversion:
// sensor.ProcessOf(bpf.ProcessProcessInfo(rec.Proc)).
func ProcessOf(p bpf.ProcessProcessInfo) event.Process {
	pr := processIDs(p)
	pr.Comm = CString(p.Comm[:])
	return pr
}

// ProcessWithComm is ProcessOf with comm made by str (given the bytes
// before the NUL), e.g. a decoder's interning of the few names a host runs.
func ProcessWithComm(p bpf.ProcessProcessInfo, str func([]byte) string) event.Process {
	pr := processIDs(p)
	pr.Comm = str(CBytes(p.Comm[:]))
	return pr
}

// processIDs is ProcessOf without comm.
func processIDs(p bpf.ProcessProcessInfo) event.Process {
	return event.Process{
		PID:       p.Pid,
		TID:       p.Tid,
		PPID:      p.Ppid,
		UID:       p.Uid,
		GID:       p.Gid,
		EUID:      p.Euid,
		LoginUID:  p.Loginuid,
		SessionID: p.Sessionid,
		StartTime: p.StartBoottime,
		CgroupID:  p.CgroupId,
	}
}
