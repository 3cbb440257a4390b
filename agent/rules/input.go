package rules

import (
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/google/cel-go/common/types/ref"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
)

// The event kinds, the values of Input.Kind and of a rule's on: list.
const (
	KindExec    = "exec"
	KindExit    = "exit"
	KindFile    = "file"
	KindCred    = "cred"
	KindPtrace  = "ptrace"
	KindModule  = "module"
	KindMemfd   = "memfd"
	KindMount   = "mount"
	KindBPF     = "bpf"
	KindKill    = "kill"
	KindLogin   = "login"
	KindConnect = "connect"
	KindAccept  = "accept"
	KindClose   = "close"
	KindUDP     = "udp"
	KindDNS     = "dns"
)

// Kinds lists every event kind a rule may name in on:.
var Kinds = []string{
	KindExec, KindExit, KindFile, KindCred, KindPtrace, KindModule, KindMemfd, KindMount,
	KindBPF, KindKill, KindLogin, KindConnect, KindAccept, KindClose, KindUDP, KindDNS,
}

// Input is what a rule sees of one event: the CEL variables kind, process,
// parent, ancestors, file, cred, ptrace, module, memfd, mount, bpf, kill,
// login, network and user. Every variable is always present; the parts that
// do not apply to the event's kind hold zero values. The cel tags give the
// field names rules use. Numbers are CEL int (signed 64-bit) everywhere, so
// that a rule compares them with plain literals (process.uid == 0).
type Input struct {
	// Time is when the event happened; the repeat window is measured with it.
	// It is not visible to rules.
	Time time.Time
	// Kind is the event kind, one of Kinds.
	Kind string `cel:"kind"`
	// Process is the process that caused the event.
	Process Process `cel:"process"`
	// Parent is its parent; zero when unknown.
	Parent Process `cel:"parent"`
	// Ancestors are the parent, grandparent and so on up to pid 1.
	Ancestors []Process `cel:"ancestors"`
	// File is set for kind file.
	File File `cel:"file"`
	// Cred is set for kind cred.
	Cred Cred `cel:"cred"`
	// Ptrace is set for kind ptrace.
	Ptrace Ptrace `cel:"ptrace"`
	// Module is set for kind module.
	Module Module `cel:"module"`
	// Memfd is set for kind memfd.
	Memfd Memfd `cel:"memfd"`
	// Mount is set for kind mount.
	Mount Mount `cel:"mount"`
	// BPF is set for kind bpf.
	BPF BPF `cel:"bpf"`
	// Kill is set for kind kill.
	Kill Kill `cel:"kill"`
	// Login is set for kind login.
	Login Login `cel:"login"`
	// Network is set for the kinds connect, accept, close, udp and dns.
	Network Network `cel:"network"`
	// User is the process's (real) user.
	User User `cel:"user"`
}

// Process is a process as rules see it.
type Process struct {
	// PID is the process id.
	PID uint32 `cel:"pid"`
	// PPID is the parent's process id.
	PPID uint32 `cel:"ppid"`
	// StartTime is when the process started, in ns since boot.
	StartTime uint64 `cel:"start_time"`
	// UID is the real user id.
	UID uint32 `cel:"uid"`
	// EUID is the effective user id (the real one for cache entries, which keep no other).
	EUID uint32 `cel:"euid"`
	// GID is the real group id.
	GID uint32 `cel:"gid"`
	// User is the name of UID ("" when unknown).
	User string `cel:"user"`
	// Exe is the absolute path of the executable.
	Exe string `cel:"exe"`
	// Name is the base name of Exe, or Comm when Exe is empty.
	Name string `cel:"name"`
	// Comm is the kernel's task name.
	Comm string `cel:"comm"`
	// Args is argv.
	Args []string `cel:"args"`
	// Cmdline is Args joined by single spaces.
	Cmdline string `cel:"cmdline"`
	// Cwd is the working directory (at the last exec).
	Cwd string `cel:"cwd"`
	// Filename is the path passed to execve (exec events only).
	Filename string `cel:"filename"`
	// Script is Filename made absolute against Cwd and cleaned: for a script
	// it names the script where Exe names the interpreter.
	Script string `cel:"script"`
	// Memfd is set when the image is an anonymous memory file.
	Memfd bool `cel:"memfd"`
	// Deleted is set when the image had been deleted from disk.
	Deleted bool `cel:"deleted"`
	// CgroupID is the cgroup v2 id.
	CgroupID uint64 `cel:"cgroup_id"`
	// LoginUID is the audit login uid (4294967295 when unset).
	LoginUID uint32 `cel:"login_uid"`
	// SessionID is the audit session id (4294967295 when unset).
	SessionID uint32 `cel:"session_id"`

	// The CEL field listening is computed on first use with probe and
	// remembered in listen (0 unknown, 1 no, 2 yes).
	probe  Probe
	listen int8
	// cel holds the CEL values of the fields rules read most, made on
	// first read (see cachedF): a string made a CEL value is an allocation,
	// and the default rules read process.name over a hundred times.
	cel [celCached]ref.Val
}

// Listening reports whether the process holds a listening TCP socket, asking
// the engine's probe on first use. It is the CEL field listening.
func (p *Process) Listening() bool {
	if p.listen == 0 {
		p.listen = 1
		if p.probe != nil && p.PID != 0 && p.probe.Listening(p.PID, p.StartTime) {
			p.listen = 2
		}
	}
	return p.listen == 2
}

// SetListening fixes the answer of Listening, e.g. for a replayed event.
func (p *Process) SetListening(v bool) {
	p.listen = 1
	if v {
		p.listen = 2
	}
}

// File is a file operation (kind file).
type File struct {
	// Op is open, rename, unlink, chmod, chown, link or symlink.
	Op string `cel:"op"`
	// Path is the file (rename and link: the old path; symlink: the link).
	Path string `cel:"path"`
	// NewPath is the new path of a rename or link, or a symlink's target.
	NewPath string `cel:"new_path"`
	// Mode is the mode of a creating open or of chmod.
	Mode uint32 `cel:"mode"`
	// Flags are the open, rename or AT_* flags.
	Flags uint64 `cel:"flags"`
	// UID and GID are the new owner of a chown.
	UID uint32 `cel:"uid"`
	// GID is the new group of a chown.
	GID uint32 `cel:"gid"`
	// Read is set for an open for reading.
	Read bool `cel:"read"`
	// Write is set for an open for writing.
	Write bool `cel:"write"`
	// Create is set for an open with O_CREAT.
	Create bool `cel:"create"`
	// Truncate is set for an open with O_TRUNC.
	Truncate bool `cel:"truncate"`
	// Ret is the syscall's return value.
	Ret int64 `cel:"ret"`
}

// Cred is a credential change (kind cred).
type Cred struct {
	// Syscall is the syscall's name (setuid, setresuid, capset, ...).
	Syscall string `cel:"syscall"`
	// OldUID is the real uid before the call.
	OldUID uint32 `cel:"old_uid"`
	// OldEUID is the effective uid before the call.
	OldEUID uint32 `cel:"old_euid"`
	// OldGID is the real gid before the call.
	OldGID uint32 `cel:"old_gid"`
	// OldEGID is the effective gid before the call.
	OldEGID uint32 `cel:"old_egid"`
	// NewUID is the real uid after the call.
	NewUID uint32 `cel:"new_uid"`
	// NewEUID is the effective uid after the call.
	NewEUID uint32 `cel:"new_euid"`
	// NewGID is the real gid after the call.
	NewGID uint32 `cel:"new_gid"`
	// NewEGID is the effective gid after the call.
	NewEGID uint32 `cel:"new_egid"`
	// OldCaps is the effective capability set before the call.
	OldCaps uint64 `cel:"old_caps"`
	// NewCaps is the effective capability set after the call.
	NewCaps uint64 `cel:"new_caps"`
}

// Ptrace is a ptrace attach, seize or traceme (kind ptrace).
type Ptrace struct {
	// Request is attach, seize or traceme.
	Request string `cel:"request"`
	// TargetPID is the tracee (traceme: the parent).
	TargetPID uint32 `cel:"target_pid"`
	// TargetExe is the tracee's executable; the caller fills it from the process tree.
	TargetExe string `cel:"target_exe"`
}

// Module is a kernel module load or unload (kind module).
type Module struct {
	// Op is load or unload.
	Op string `cel:"op"`
	// Name is the module name (unload only).
	Name string `cel:"name"`
	// Path is the file finit_module loaded.
	Path string `cel:"path"`
}

// Memfd is a memfd_create (kind memfd).
type Memfd struct {
	// Name is the name given.
	Name string `cel:"name"`
	// Flags are the MFD_* flags.
	Flags uint32 `cel:"flags"`
}

// Mount is a mount or umount (kind mount).
type Mount struct {
	// Op is mount or umount.
	Op string `cel:"op"`
	// Source is the mount source as given.
	Source string `cel:"source"`
	// Target is the mount point.
	Target string `cel:"target"`
	// FSType is the file-system type.
	FSType string `cel:"fstype"`
	// Flags are the MS_* or MNT_* flags.
	Flags uint64 `cel:"flags"`
}

// BPF is a BPF program load (kind bpf).
type BPF struct {
	// ProgType is the BPF_PROG_TYPE_* number.
	ProgType uint32 `cel:"prog_type"`
	// ProgName is the program's name.
	ProgName string `cel:"prog_name"`
	// InsnCount is the number of instructions.
	InsnCount uint32 `cel:"insn_count"`
}

// Kill is a signal sent to another process (kind kill).
type Kill struct {
	// TargetPID is the pid argument (0 or negative: process groups).
	TargetPID int32 `cel:"target_pid"`
	// Signal is the signal number.
	Signal int32 `cel:"signal"`
	// TargetExe is the target's executable; the caller fills it from the process tree.
	TargetExe string `cel:"target_exe"`
}

// Login is a PAM call (kind login) with the anomaly trackers' statistics,
// which the caller fills after InputFor.
type Login struct {
	// Op is authenticate, account, open_session or close_session.
	Op string `cel:"op"`
	// Service is the PAM service (sshd, su, sudo, login, ...).
	Service string `cel:"service"`
	// User is the user logging in.
	User string `cel:"user"`
	// RemoteHost is the remote host (PAM_RHOST).
	RemoteHost string `cel:"remote_host"`
	// RemoteUser is the requesting user (PAM_RUSER).
	RemoteUser string `cel:"remote_user"`
	// TTY is the terminal.
	TTY string `cel:"tty"`
	// Result is the PAM return code.
	Result int32 `cel:"result"`
	// Success is set when Result is PAM_SUCCESS.
	Success bool `cel:"success"`
	// FailuresFromSource counts failures from RemoteHost in the tracker's window.
	FailuresFromSource int `cel:"failures_from_source"`
	// UsersFromSource counts distinct users that failed from RemoteHost in the window.
	UsersFromSource int `cel:"users_from_source"`
	// FailuresForUser counts failures for User in the window.
	FailuresForUser int `cel:"failures_for_user"`
	// SourcesForUser counts distinct sources that failed for User in the window.
	SourcesForUser int `cel:"sources_for_user"`
	// FailuresBeforeSuccess counts the failures from this source for this user before this success.
	FailuresBeforeSuccess int `cel:"failures_before_success"`
	// NewSource is set on the first successful login of User from RemoteHost since learning began.
	NewSource bool `cel:"new_source"`
	// UnusualHour is set when the hour is unusual for User.
	UnusualHour bool `cel:"unusual_hour"`
	// Learning is set while the baseline is still learning.
	Learning bool `cel:"learning"`
}

// Network is a TCP or UDP flow or a DNS message (kinds connect, accept,
// close, udp, dns) with the trackers' statistics, which the caller fills
// after InputFor.
type Network struct {
	// Protocol is tcp or udp.
	Protocol string `cel:"protocol"`
	// Direction is outbound or inbound.
	Direction string `cel:"direction"`
	// LocalAddr is the local address.
	LocalAddr string `cel:"local_addr"`
	// LocalPort is the local port.
	LocalPort uint16 `cel:"local_port"`
	// RemoteAddr is the peer's address.
	RemoteAddr string `cel:"remote_addr"`
	// RemotePort is the peer's port.
	RemotePort uint16 `cel:"remote_port"`
	// Failed is set for a connect that never got established.
	Failed bool `cel:"failed"`
	// BytesSent is the payload sent (close only).
	BytesSent uint64 `cel:"bytes_sent"`
	// BytesReceived is the payload received (close only).
	BytesReceived uint64 `cel:"bytes_received"`
	// DurationMS is how long the connection lasted (close only).
	DurationMS int64 `cel:"duration_ms"`
	// Query is the DNS question name (dns only).
	Query string `cel:"query"`
	// Response is set for a DNS response (dns only).
	Response bool `cel:"response"`
	// RCode is the DNS response code (dns only).
	RCode uint8 `cel:"rcode"`
	// Answers are the addresses and CNAME targets of a DNS response.
	Answers []string `cel:"answers"`
	// PortsToHost counts distinct remote ports this process touched on RemoteAddr in the window.
	PortsToHost int `cel:"ports_to_host"`
	// HostsOnPort counts distinct hosts this process touched on RemotePort in the window.
	HostsOnPort int `cel:"hosts_on_port"`
	// Beacon is set when the flows to this destination recur at a regular interval.
	Beacon bool `cel:"beacon"`
	// BeaconIntervalMS is that interval.
	BeaconIntervalMS int64 `cel:"beacon_interval_ms"`
}

// User is the process's user.
type User struct {
	// UID is the real user id.
	UID uint32 `cel:"uid"`
	// Name is the user name ("" when unknown).
	Name string `cel:"name"`
}

// InputFor converts an agent event (a value or a pointer of any type in
// agent/event but Fork) into an Input. proc is the cache entry of the
// event's process (used for exe, argv and cwd of non-exec events; it may be
// nil), parent the entry of its parent (nil if unknown), ancestors the
// parent chain up to pid 1 (parent first), userName maps a uid to a name
// (nil: names stay empty). It returns false for Fork and unknown types.
//
// Not filled, left to the caller: Ptrace.TargetExe and Kill.TargetExe (from
// the process tree), the Login statistics and the Network statistics (from
// the anomaly trackers).
func InputFor(ev any, proc *proctree.Entry, parent *proctree.Entry, ancestors []proctree.Entry, userName func(uint32) string) (*Input, bool) {
	in := &Input{}
	if !in.Fill(ev, proc, parent, ancestors, userName) {
		return nil, false
	}
	return in, true
}

// KindOf returns the kind of event ev (a pointer or a value), the
// Input.Kind that Fill gives it, or "" for an event no rule can be about.
// The pipeline asks it first so as not to build an input for a kind that
// no rule is on.
func KindOf(ev any) string {
	switch ev.(type) {
	case *event.Exec, event.Exec:
		return KindExec
	case *event.Exit, event.Exit:
		return KindExit
	case *event.File, event.File:
		return KindFile
	case *event.CredChange, event.CredChange:
		return KindCred
	case *event.Ptrace, event.Ptrace:
		return KindPtrace
	case *event.Module, event.Module:
		return KindModule
	case *event.MemfdCreate, event.MemfdCreate:
		return KindMemfd
	case *event.Mount, event.Mount:
		return KindMount
	case *event.BPFProgLoad, event.BPFProgLoad:
		return KindBPF
	case *event.Kill, event.Kill:
		return KindKill
	case *event.Login, event.Login:
		return KindLogin
	case *event.TCPConnect, event.TCPConnect:
		return KindConnect
	case *event.TCPAccept, event.TCPAccept:
		return KindAccept
	case *event.TCPClose, event.TCPClose:
		return KindClose
	case *event.UDPFlow, event.UDPFlow:
		return KindUDP
	case *event.DNS, event.DNS:
		return KindDNS
	}
	return ""
}

// Fill is InputFor into an existing Input, which it resets first and
// whose ancestors' storage it reuses: a caller handling one event at a time
// keeps one Input instead of allocating one per event. It reports false
// for Fork and unknown types.
func (in *Input) Fill(ev any, proc *proctree.Entry, parent *proctree.Entry, ancestors []proctree.Entry, userName func(uint32) string) bool {
	anc := in.Ancestors[:0]
	*in = Input{Kind: KindOf(ev)}
	var p *event.Process
	switch x := ev.(type) {
	case *event.Exec:
		in.Time, p = x.Time, &x.Process
		in.Process = execProcess(x, proc)
	case event.Exec:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.Exit:
		in.Time, p = x.Time, &x.Process
	case event.Exit:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.File:
		in.Time, p = x.Time, &x.Process
		in.File = File{
			Op: string(x.Op), Path: x.Path, NewPath: x.Path2, Mode: x.Mode, Flags: x.Flags,
			UID: x.UID, GID: x.GID, Read: x.Read, Write: x.Write, Create: x.Create,
			Truncate: x.Truncate, Ret: x.Ret,
		}
	case event.File:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.CredChange:
		in.Time, p = x.Time, &x.Process
		in.Cred = Cred{
			Syscall: x.Syscall,
			OldUID:  x.Old.UID, OldEUID: x.Old.EUID, OldGID: x.Old.GID, OldEGID: x.Old.EGID,
			NewUID: x.New.UID, NewEUID: x.New.EUID, NewGID: x.New.GID, NewEGID: x.New.EGID,
			OldCaps: x.Old.CapEffective, NewCaps: x.New.CapEffective,
		}
	case event.CredChange:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.Ptrace:
		in.Time, p = x.Time, &x.Process
		in.Ptrace = Ptrace{Request: ptraceRequest(x.Request), TargetPID: x.TargetPID}
	case event.Ptrace:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.Module:
		in.Time, p = x.Time, &x.Process
		in.Module = Module{Op: "load", Name: x.Name, Path: x.Path}
		if x.Unload {
			in.Module.Op = "unload"
		}
	case event.Module:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.MemfdCreate:
		in.Time, p = x.Time, &x.Process
		in.Memfd = Memfd{Name: x.Name, Flags: x.Flags}
	case event.MemfdCreate:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.Mount:
		in.Time, p = x.Time, &x.Process
		in.Mount = Mount{Op: "mount", Source: x.Source, Target: x.Target, FSType: x.FSType, Flags: x.Flags}
		if x.Unmount {
			in.Mount.Op = "umount"
		}
	case event.Mount:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.BPFProgLoad:
		in.Time, p = x.Time, &x.Process
		in.BPF = BPF{ProgType: x.ProgType, ProgName: x.ProgName, InsnCount: x.InsnCount}
	case event.BPFProgLoad:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.Kill:
		in.Time, p = x.Time, &x.Process
		in.Kill = Kill{TargetPID: x.TargetPID, Signal: x.Signal}
	case event.Kill:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.Login:
		in.Time, p = x.Time, &x.Process
		in.Login = Login{
			Op: loginOp(x.Op), Service: x.Service, User: x.User, RemoteHost: x.RemoteHost,
			RemoteUser: x.RemoteUser, TTY: x.TTY, Result: int32(x.Result), Success: x.Succeeded(),
		}
	case event.Login:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.TCPConnect:
		in.Time, p = x.Time, &x.Process
		in.Network = flow("tcp", event.Outbound, x.Local, x.Remote)
		in.Network.Failed = x.Failed
	case event.TCPConnect:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.TCPAccept:
		in.Time, p = x.Time, &x.Process
		in.Network = flow("tcp", event.Inbound, x.Local, x.Remote)
	case event.TCPAccept:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.TCPClose:
		in.Time, p = x.Time, &x.Process
		in.Network = flow("tcp", x.Direction, x.Local, x.Remote)
		in.Network.BytesSent, in.Network.BytesReceived = x.BytesSent, x.BytesReceived
		if !x.Established.IsZero() {
			in.Network.DurationMS = x.Duration().Milliseconds()
		}
	case event.TCPClose:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.UDPFlow:
		in.Time, p = x.Time, &x.Process
		in.Network = flow("udp", x.Direction, x.Local, x.Remote)
	case event.UDPFlow:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	case *event.DNS:
		in.Time, p = x.Time, &x.Process
		in.Network = flow("udp", x.Direction, x.Local, x.Remote)
		in.Network.Query, in.Network.Response, in.Network.RCode = x.Name, x.Response, x.RCode
		for _, a := range x.Answers {
			in.Network.Answers = append(in.Network.Answers, a.String())
		}
		in.Network.Answers = append(in.Network.Answers, x.CNAMEs...)
	case event.DNS:
		in.Ancestors = anc
		return in.Fill(&x, proc, parent, ancestors, userName)
	default:
		return false
	}
	if in.Kind != KindExec {
		in.Process = eventProcess(p, proc)
	}
	if parent != nil {
		in.Parent = entryProcess(parent)
	}
	if len(ancestors) > 0 {
		in.Ancestors = anc
		for i := range ancestors {
			in.Ancestors = append(in.Ancestors, entryProcess(&ancestors[i]))
		}
	}
	in.User.UID = in.Process.UID
	if userName != nil {
		in.Process.User = userName(in.Process.UID)
		in.User.Name = in.Process.User
		if parent != nil {
			in.Parent.User = userName(in.Parent.UID)
		}
		for i := range in.Ancestors {
			in.Ancestors[i].User = userName(in.Ancestors[i].UID)
		}
	}
	return true
}

// execProcess is the process after an exec, from the event alone (e, the
// cache entry, only spares joining the arguments again).
func execProcess(x *event.Exec, e *proctree.Entry) Process {
	p := Process{
		PID: x.Process.PID, PPID: x.Process.PPID, StartTime: x.Process.StartTime,
		UID: x.Process.UID, EUID: x.Process.EUID, GID: x.Process.GID,
		Exe: x.Exe, Comm: x.Process.Comm, Args: x.Args, Cwd: x.Cwd, Filename: x.Filename,
		Script: scriptPath(x.Filename, x.Cwd), Memfd: x.ExeMemfd || strings.HasPrefix(x.Exe, "/memfd:"),
		Deleted: x.ExeDeleted, CgroupID: x.Process.CgroupID,
		LoginUID: x.Process.LoginUID, SessionID: x.Process.SessionID,
	}
	p.Name = procName(p.Exe, p.Comm)
	p.Cmdline = entryCmdline(e, p.Args)
	return p
}

// eventProcess is the process of a non-exec event: its ids from the event,
// its image from the cache entry when there is one.
func eventProcess(ep *event.Process, e *proctree.Entry) Process {
	p := Process{
		PID: ep.PID, PPID: ep.PPID, StartTime: ep.StartTime, UID: ep.UID, EUID: ep.EUID,
		GID: ep.GID, Comm: ep.Comm, CgroupID: ep.CgroupID, LoginUID: ep.LoginUID,
		SessionID: ep.SessionID,
	}
	if e != nil {
		p.Exe, p.Args, p.Cwd, p.Memfd, p.Deleted = e.Exe, e.Args, e.Cwd, e.ExeMemfd, e.ExeDeleted
		if p.Comm == "" {
			p.Comm = e.Comm
		}
		if p.PID == 0 {
			// No task (an inbound DNS message, an unaccepted connection): the
			// entry is all there is.
			q := entryProcess(e)
			return q
		}
	}
	p.Name = procName(p.Exe, p.Comm)
	p.Cmdline = entryCmdline(e, p.Args)
	return p
}

// entryProcess is a process from the cache.
func entryProcess(e *proctree.Entry) Process {
	p := Process{
		PID: e.PID, PPID: e.PPID, StartTime: e.StartTime, UID: e.UID, EUID: e.UID, GID: e.GID,
		Exe: e.Exe, Comm: e.Comm, Args: e.Args, Cwd: e.Cwd, Memfd: e.ExeMemfd, Deleted: e.ExeDeleted,
		CgroupID: e.CgroupID, LoginUID: e.LoginUID, SessionID: e.SessionID,
	}
	p.Name = procName(p.Exe, p.Comm)
	p.Cmdline = entryCmdline(e, p.Args)
	return p
}

// entryCmdline is args joined by spaces, taken from the cache entry e when
// args are its own (the tree joins them once per exec, not once per event).
func entryCmdline(e *proctree.Entry, args []string) string {
	if e != nil && e.Cmdline != "" && len(args) == len(e.Args) && (len(args) == 0 || &args[0] == &e.Args[0]) {
		return e.Cmdline
	}
	return strings.Join(args, " ")
}

// procName is the base name of exe, or comm when exe is unknown.
func procName(exe, comm string) string {
	if exe == "" {
		return comm
	}
	return path.Base(exe)
}

// scriptPath is the absolute, cleaned path given to execve: for a script
// it names the script, where Exe names its interpreter.
func scriptPath(filename, cwd string) string {
	if filename == "" {
		return ""
	}
	if path.IsAbs(filename) {
		return path.Clean(filename)
	}
	return path.Join(cwd, filename)
}

func ptraceRequest(r int64) string {
	switch r {
	case event.PtraceAttach:
		return "attach"
	case event.PtraceSeize:
		return "seize"
	case event.PtraceTraceme:
		return "traceme"
	}
	return "other"
}

func loginOp(op event.LoginOp) string {
	switch op {
	case event.LoginAuthenticate:
		return "authenticate"
	case event.LoginAccount:
		return "account"
	case event.LoginOpenSession:
		return "open_session"
	case event.LoginCloseSession:
		return "close_session"
	}
	return "other"
}

func flow(proto string, dir event.Direction, local, remote netip.AddrPort) Network {
	n := Network{Protocol: proto, Direction: dir.String(), LocalPort: local.Port(), RemotePort: remote.Port()}
	if local.Addr().IsValid() {
		n.LocalAddr = local.Addr().String()
	}
	if remote.Addr().IsValid() {
		n.RemoteAddr = remote.Addr().String()
	}
	return n
}
