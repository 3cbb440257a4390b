// Package login is the login sensor: authentication, account checks and
// session opens and closes of every program that uses PAM (sshd, su, sudo,
// login, ...), from uprobes and uretprobes on libpam, without reading any
// log file.
//
// The entry probe of each watched libpam function remembers the PAM handle;
// the return probe reads the handle's items (service, user, remote user,
// remote host, tty) and emits one record with the result code. libpam's
// handle is opaque, so the items are read at the offsets of Linux-PAM's
// private struct pam_handle (pam_private.h), whose leading fields have kept
// their order since Linux-PAM 0.99: see Layout. The kernel checks the
// handle's caller_is field before trusting the layout and flags a mismatch
// instead of reading garbage.
package login

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/bpf"
)

// DefaultRingSize is the default size in bytes of the login ring buffer.
const DefaultRingSize = 256 << 10

// Layout gives the byte offsets of the fields of libpam's struct pam_handle
// the sensor reads.
type Layout struct {
	// CallerIs is the offset of caller_is (1 in a module, 2 in the application).
	CallerIs uint32
	// Service is the offset of service_name (PAM_SERVICE).
	Service uint32
	// User is the offset of user (PAM_USER).
	User uint32
	// RemoteHost is the offset of rhost (PAM_RHOST).
	RemoteHost uint32
	// RemoteUser is the offset of ruser (PAM_RUSER).
	RemoteUser uint32
	// TTY is the offset of tty (PAM_TTY).
	TTY uint32
}

// LinuxPAM64 is the layout of Linux-PAM's struct pam_handle on 64-bit
// machines (0.99 up to at least 1.6; checked against libpam0g 1.5.2's
// pam_get_item): authtok, caller_is, pam_conversation, oldauthtok, prompt,
// service_name, user, rhost, ruser, tty.
var LinuxPAM64 = Layout{CallerIs: 8, Service: 40, User: 48, RemoteHost: 56, RemoteUser: 64, TTY: 72}

// AllOps are the PAM calls the sensor can watch.
var AllOps = []event.LoginOp{event.LoginAuthenticate, event.LoginAccount, event.LoginOpenSession, event.LoginCloseSession}

// Options configures the login sensor.
type Options struct {
	// RingSize is the ring buffer size in bytes: a power of two of at least
	// a page. 0 means DefaultRingSize.
	RingSize uint32
	// PollInterval bounds how long a record waits before the reader looks
	// (0: sensor.DefaultPollInterval).
	PollInterval time.Duration
	// BootTime maps the kernel's since-boot timestamps to wall-clock time.
	BootTime time.Time
	// LibPAM is the path of libpam.so.0; empty finds it with FindLibPAM.
	LibPAM string
	// Ops are the PAM calls to watch; nil watches AllOps. Calls not listed
	// are not probed at all and cost nothing.
	Ops []event.LoginOp
	// Layout overrides LinuxPAM64, for a libpam built differently.
	Layout *Layout
	// IgnoreServices are PAM service names whose calls the kernel drops
	// before they reach the ring buffer, e.g. "cron" for scheduled jobs.
	// Each must be shorter than MaxServiceLen.
	IgnoreServices []string
}

// MaxServiceLen bounds the service names IgnoreServices takes, terminating
// NUL included.
const MaxServiceLen = 64

// symbols maps each PAM call to its libpam function.
var symbols = map[event.LoginOp]string{
	event.LoginAuthenticate: "pam_authenticate",
	event.LoginAccount:      "pam_acct_mgmt",
	event.LoginOpenSession:  "pam_open_session",
	event.LoginCloseSession: "pam_close_session",
}

// Sensor is the loaded and attached login sensor. It implements sensor.Sensor.
type Sensor struct {
	sensor.Base
	objs   bpf.LoginObjects
	libPAM string
	dec    Decoder
}

var _ sensor.Sensor = (*Sensor)(nil)

// Load finds libpam, loads the login programs, attaches them to the watched
// PAM functions and opens their ring buffer. It returns an error matching
// ErrNoLibPAM when the host has no libpam. Close undoes all of it.
func Load(opts Options) (*Sensor, error) {
	ringSize := opts.RingSize
	if ringSize == 0 {
		ringSize = DefaultRingSize
	}
	ops := opts.Ops
	if ops == nil {
		ops = AllOps
	}
	for _, op := range ops {
		if _, ok := symbols[op]; !ok {
			return nil, fmt.Errorf("login: unknown PAM call %v", op)
		}
	}
	for _, svc := range opts.IgnoreServices {
		if svc == "" || len(svc) >= MaxServiceLen {
			return nil, fmt.Errorf("login: ignored service %q: want 1 to %d bytes", svc, MaxServiceLen-1)
		}
	}
	layout := LinuxPAM64
	if opts.Layout != nil {
		layout = *opts.Layout
	}

	// Find the library first: without it there is nothing to load.
	libPAM := opts.LibPAM
	if libPAM == "" {
		var err error
		if libPAM, err = FindLibPAM(); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(libPAM); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist", ErrNoLibPAM, libPAM)
	}
	exe, err := link.OpenExecutable(libPAM)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", libPAM, err)
	}

	if err := sensor.Prepare(); err != nil {
		return nil, err
	}
	// Read the object, size its ring buffer and set the handle layout before loading it.
	spec, err := bpf.LoadLogin()
	if err != nil {
		return nil, fmt.Errorf("read login programs: %w", err)
	}
	if err := sensor.SizeRing(spec, bpf.LoginMapLoginEvents, ringSize); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	v, ok := spec.Variables[bpf.LoginVarLayout]
	if !ok {
		return nil, errors.New("login: no layout variable in the object")
	}
	if err := v.Set(bpf.LoginPamLayout{
		CallerIs: layout.CallerIs, Service: layout.Service, User: layout.User,
		Rhost: layout.RemoteHost, Ruser: layout.RemoteUser, Tty: layout.TTY,
	}); err != nil {
		return nil, fmt.Errorf("login: set handle layout: %w", err)
	}
	if len(opts.IgnoreServices) > 0 {
		if err := spec.Variables[bpf.LoginVarHasIgnoredServices].Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("login: enable the service filter: %w", err)
		}
	}
	s := &Sensor{libPAM: libPAM, dec: Decoder{BootTime: opts.BootTime}}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		return nil, sensor.LoadError("login", err)
	}
	s.Init("login", uint32(bpf.LoginEventFamilyFAMILY_LOGIN), s.objs.LostEvents, &s.objs)
	// Fill the service filter before any probe is attached.
	for _, svc := range opts.IgnoreServices {
		var key [MaxServiceLen]byte
		copy(key[:], svc)
		if err := s.objs.IgnoredServices.Put(key, uint8(1)); err != nil {
			s.Close()
			return nil, fmt.Errorf("login: ignore service %q: %w", svc, err)
		}
	}

	// Where to probe each function so that the kernel need not single-step.
	var syms []string
	for _, op := range ops {
		syms = append(syms, symbols[op])
	}
	offsets, err := entryOffsets(libPAM, syms)
	if err != nil {
		s.Close()
		return nil, err
	}

	// Attach the return probe before the entry probe of each function, so
	// that no entry is recorded whose return would go unseen.
	progs := map[event.LoginOp][2]*ebpf.Program{
		event.LoginAuthenticate: {s.objs.EnterPamAuthenticate, s.objs.ExitPamAuthenticate},
		event.LoginAccount:      {s.objs.EnterPamAcctMgmt, s.objs.ExitPamAcctMgmt},
		event.LoginOpenSession:  {s.objs.EnterPamOpenSession, s.objs.ExitPamOpenSession},
		event.LoginCloseSession: {s.objs.EnterPamCloseSession, s.objs.ExitPamCloseSession},
	}
	for _, op := range AllOps {
		if !slices.Contains(ops, op) {
			continue
		}
		sym := symbols[op]
		probe := &link.UprobeOptions{Offset: offsets[sym]}
		ret, err := exe.Uretprobe(sym, progs[op][1], probe)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("attach uretprobe %s:%s: %w", libPAM, sym, err)
		}
		s.Attach(ret, "uretprobe:"+libPAM+":"+sym)
		entry, err := exe.Uprobe(sym, progs[op][0], probe)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("attach uprobe %s:%s: %w", libPAM, sym, err)
		}
		s.Attach(entry, "uprobe:"+libPAM+":"+sym)
	}

	// Open the ring buffer last, so nothing is read before all hooks are live.
	if err := s.OpenRing(s.objs.LoginEvents, opts.PollInterval, s.dec.Decode); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// LibPAM returns the path of the libpam the sensor is attached to.
func (s *Sensor) LibPAM() string { return s.libPAM }
