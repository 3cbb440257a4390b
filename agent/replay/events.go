package replay

import (
	"net/netip"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
)

// This file holds the JSON mirror of each event type and the conversions
// both ways. The mirrors fix the names on disk, so that renaming a Go field
// in agent/event does not change the format. Zero values are left out.

type processJSON struct {
	PID       uint32 `json:"pid,omitzero"`
	TID       uint32 `json:"tid,omitzero"`
	PPID      uint32 `json:"ppid,omitzero"`
	UID       uint32 `json:"uid,omitzero"`
	GID       uint32 `json:"gid,omitzero"`
	EUID      uint32 `json:"euid,omitzero"`
	LoginUID  uint32 `json:"login_uid,omitzero"`
	SessionID uint32 `json:"session_id,omitzero"`
	StartTime uint64 `json:"start_time_ns,omitzero"`
	CgroupID  uint64 `json:"cgroup_id,omitzero"`
	Comm      string `json:"comm,omitzero"`
}

func processTo(p *event.Process) processJSON { return processJSON(*p) }

func processFrom(p *processJSON) event.Process { return event.Process(*p) }

type forkJSON struct {
	Time    stamp       `json:"time,omitzero"`
	Process processJSON `json:"process,omitzero"`
}

func forkTo(e *event.Fork) *forkJSON {
	return &forkJSON{Time: stamp(e.Time), Process: processTo(&e.Process)}
}

func forkFrom(j *forkJSON) *event.Fork {
	return &event.Fork{Time: time.Time(j.Time), Process: processFrom(&j.Process)}
}

type execJSON struct {
	Time          stamp       `json:"time,omitzero"`
	Process       processJSON `json:"process,omitzero"`
	Filename      string      `json:"filename,omitzero"`
	Exe           string      `json:"exe,omitzero"`
	Cwd           string      `json:"cwd,omitzero"`
	Args          []string    `json:"args,omitempty"`
	ArgsTruncated bool        `json:"args_truncated,omitzero"`
	ExeTruncated  bool        `json:"exe_truncated,omitzero"`
	CwdTruncated  bool        `json:"cwd_truncated,omitzero"`
	ExeDeleted    bool        `json:"exe_deleted,omitzero"`
	ExeMemfd      bool        `json:"exe_memfd,omitzero"`
	Killed        bool        `json:"killed,omitzero"`
}

func execTo(e *event.Exec) *execJSON {
	return &execJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process),
		Filename: e.Filename, Exe: e.Exe, Cwd: e.Cwd, Args: e.Args,
		ArgsTruncated: e.ArgsTruncated, ExeTruncated: e.ExeTruncated, CwdTruncated: e.CwdTruncated,
		ExeDeleted: e.ExeDeleted, ExeMemfd: e.ExeMemfd, Killed: e.Killed,
	}
}

func execFrom(j *execJSON) *event.Exec {
	return &event.Exec{
		Time: time.Time(j.Time), Process: processFrom(&j.Process),
		Filename: j.Filename, Exe: j.Exe, Cwd: j.Cwd, Args: j.Args,
		ArgsTruncated: j.ArgsTruncated, ExeTruncated: j.ExeTruncated, CwdTruncated: j.CwdTruncated,
		ExeDeleted: j.ExeDeleted, ExeMemfd: j.ExeMemfd, Killed: j.Killed,
	}
}

type exitJSON struct {
	Time     stamp       `json:"time,omitzero"`
	Process  processJSON `json:"process,omitzero"`
	ExitCode int32       `json:"exit_code,omitzero"`
}

func exitTo(e *event.Exit) *exitJSON {
	return &exitJSON{Time: stamp(e.Time), Process: processTo(&e.Process), ExitCode: e.ExitCode}
}

func exitFrom(j *exitJSON) *event.Exit {
	return &event.Exit{Time: time.Time(j.Time), Process: processFrom(&j.Process), ExitCode: j.ExitCode}
}

type fileJSON struct {
	Time           stamp        `json:"time,omitzero"`
	Process        processJSON  `json:"process,omitzero"`
	Op             event.FileOp `json:"op,omitzero"`
	Syscall        string       `json:"syscall,omitzero"`
	Ret            int64        `json:"ret,omitzero"`
	Path           string       `json:"path,omitzero"`
	Path2          string       `json:"path2,omitzero"`
	Flags          uint64       `json:"flags,omitzero"`
	Mode           uint32       `json:"mode,omitzero"`
	UID            uint32       `json:"uid,omitzero"`
	GID            uint32       `json:"gid,omitzero"`
	Read           bool         `json:"read,omitzero"`
	Write          bool         `json:"write,omitzero"`
	Create         bool         `json:"create,omitzero"`
	Truncate       bool         `json:"truncate,omitzero"`
	PathTruncated  bool         `json:"path_truncated,omitzero"`
	Path2Truncated bool         `json:"path2_truncated,omitzero"`
	PathUnresolved bool         `json:"path_unresolved,omitzero"`
}

func fileTo(e *event.File) *fileJSON {
	return &fileJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process),
		Op: e.Op, Syscall: e.Syscall, Ret: e.Ret, Path: e.Path, Path2: e.Path2,
		Flags: e.Flags, Mode: e.Mode, UID: e.UID, GID: e.GID,
		Read: e.Read, Write: e.Write, Create: e.Create, Truncate: e.Truncate,
		PathTruncated: e.PathTruncated, Path2Truncated: e.Path2Truncated, PathUnresolved: e.PathUnresolved,
	}
}

func fileFrom(j *fileJSON) *event.File {
	return &event.File{
		Time: time.Time(j.Time), Process: processFrom(&j.Process),
		Op: j.Op, Syscall: j.Syscall, Ret: j.Ret, Path: j.Path, Path2: j.Path2,
		Flags: j.Flags, Mode: j.Mode, UID: j.UID, GID: j.GID,
		Read: j.Read, Write: j.Write, Create: j.Create, Truncate: j.Truncate,
		PathTruncated: j.PathTruncated, Path2Truncated: j.Path2Truncated, PathUnresolved: j.PathUnresolved,
	}
}

type credsJSON struct {
	UID          uint32 `json:"uid,omitzero"`
	EUID         uint32 `json:"euid,omitzero"`
	SUID         uint32 `json:"suid,omitzero"`
	FSUID        uint32 `json:"fsuid,omitzero"`
	GID          uint32 `json:"gid,omitzero"`
	EGID         uint32 `json:"egid,omitzero"`
	SGID         uint32 `json:"sgid,omitzero"`
	FSGID        uint32 `json:"fsgid,omitzero"`
	CapEffective uint64 `json:"cap_effective,omitzero"`
	CapPermitted uint64 `json:"cap_permitted,omitzero"`
}

func credsTo(c *event.Creds) credsJSON {
	return credsJSON{
		UID: c.UID, EUID: c.EUID, SUID: c.SUID, FSUID: c.FSUID,
		GID: c.GID, EGID: c.EGID, SGID: c.SGID, FSGID: c.FSGID,
		CapEffective: c.CapEffective, CapPermitted: c.CapPermitted,
	}
}

func credsFrom(c *credsJSON) event.Creds {
	return event.Creds{
		UID: c.UID, EUID: c.EUID, SUID: c.SUID, FSUID: c.FSUID,
		GID: c.GID, EGID: c.EGID, SGID: c.SGID, FSGID: c.FSGID,
		CapEffective: c.CapEffective, CapPermitted: c.CapPermitted,
	}
}

type credChangeJSON struct {
	Time    stamp       `json:"time,omitzero"`
	Process processJSON `json:"process,omitzero"`
	Syscall string      `json:"syscall,omitzero"`
	Ret     int64       `json:"ret,omitzero"`
	Args    args3       `json:"args,omitzero"`
	Old     credsJSON   `json:"old,omitzero"`
	New     credsJSON   `json:"new,omitzero"`
}

func credChangeTo(e *event.CredChange) *credChangeJSON {
	return &credChangeJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process),
		Syscall: e.Syscall, Ret: e.Ret, Args: args3(e.Args),
		Old: credsTo(&e.Old), New: credsTo(&e.New),
	}
}

func credChangeFrom(j *credChangeJSON) *event.CredChange {
	return &event.CredChange{
		Time: time.Time(j.Time), Process: processFrom(&j.Process),
		Syscall: j.Syscall, Ret: j.Ret, Args: [3]int64(j.Args),
		Old: credsFrom(&j.Old), New: credsFrom(&j.New),
	}
}

type ptraceJSON struct {
	Time      stamp       `json:"time,omitzero"`
	Process   processJSON `json:"process,omitzero"`
	Ret       int64       `json:"ret,omitzero"`
	Request   int64       `json:"request,omitzero"`
	TargetPID uint32      `json:"target_pid,omitzero"`
}

func ptraceTo(e *event.Ptrace) *ptraceJSON {
	return &ptraceJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process),
		Ret: e.Ret, Request: e.Request, TargetPID: e.TargetPID,
	}
}

func ptraceFrom(j *ptraceJSON) *event.Ptrace {
	return &event.Ptrace{
		Time: time.Time(j.Time), Process: processFrom(&j.Process),
		Ret: j.Ret, Request: j.Request, TargetPID: j.TargetPID,
	}
}

type moduleJSON struct {
	Time    stamp       `json:"time,omitzero"`
	Process processJSON `json:"process,omitzero"`
	Syscall string      `json:"syscall,omitzero"`
	Ret     int64       `json:"ret,omitzero"`
	Unload  bool        `json:"unload,omitzero"`
	Name    string      `json:"name,omitzero"`
	Path    string      `json:"path,omitzero"`
	Flags   uint64      `json:"flags,omitzero"`
}

func moduleTo(e *event.Module) *moduleJSON {
	return &moduleJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process),
		Syscall: e.Syscall, Ret: e.Ret, Unload: e.Unload, Name: e.Name, Path: e.Path, Flags: e.Flags,
	}
}

func moduleFrom(j *moduleJSON) *event.Module {
	return &event.Module{
		Time: time.Time(j.Time), Process: processFrom(&j.Process),
		Syscall: j.Syscall, Ret: j.Ret, Unload: j.Unload, Name: j.Name, Path: j.Path, Flags: j.Flags,
	}
}

type memfdCreateJSON struct {
	Time    stamp       `json:"time,omitzero"`
	Process processJSON `json:"process,omitzero"`
	Ret     int64       `json:"ret,omitzero"`
	Name    string      `json:"name,omitzero"`
	Flags   uint32      `json:"flags,omitzero"`
}

func memfdCreateTo(e *event.MemfdCreate) *memfdCreateJSON {
	return &memfdCreateJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process),
		Ret: e.Ret, Name: e.Name, Flags: e.Flags,
	}
}

func memfdCreateFrom(j *memfdCreateJSON) *event.MemfdCreate {
	return &event.MemfdCreate{
		Time: time.Time(j.Time), Process: processFrom(&j.Process),
		Ret: j.Ret, Name: j.Name, Flags: j.Flags,
	}
}

type mountJSON struct {
	Time            stamp       `json:"time,omitzero"`
	Process         processJSON `json:"process,omitzero"`
	Syscall         string      `json:"syscall,omitzero"`
	Ret             int64       `json:"ret,omitzero"`
	Unmount         bool        `json:"unmount,omitzero"`
	Source          string      `json:"source,omitzero"`
	Target          string      `json:"target,omitzero"`
	FSType          string      `json:"fs_type,omitzero"`
	Flags           uint64      `json:"flags,omitzero"`
	TargetTruncated bool        `json:"target_truncated,omitzero"`
}

func mountTo(e *event.Mount) *mountJSON {
	return &mountJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process),
		Syscall: e.Syscall, Ret: e.Ret, Unmount: e.Unmount,
		Source: e.Source, Target: e.Target, FSType: e.FSType, Flags: e.Flags,
		TargetTruncated: e.TargetTruncated,
	}
}

func mountFrom(j *mountJSON) *event.Mount {
	return &event.Mount{
		Time: time.Time(j.Time), Process: processFrom(&j.Process),
		Syscall: j.Syscall, Ret: j.Ret, Unmount: j.Unmount,
		Source: j.Source, Target: j.Target, FSType: j.FSType, Flags: j.Flags,
		TargetTruncated: j.TargetTruncated,
	}
}

type bpfProgLoadJSON struct {
	Time      stamp       `json:"time,omitzero"`
	Process   processJSON `json:"process,omitzero"`
	Ret       int64       `json:"ret,omitzero"`
	ProgType  uint32      `json:"prog_type,omitzero"`
	InsnCount uint32      `json:"insn_count,omitzero"`
	ProgName  string      `json:"prog_name,omitzero"`
}

func bpfProgLoadTo(e *event.BPFProgLoad) *bpfProgLoadJSON {
	return &bpfProgLoadJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process),
		Ret: e.Ret, ProgType: e.ProgType, InsnCount: e.InsnCount, ProgName: e.ProgName,
	}
}

func bpfProgLoadFrom(j *bpfProgLoadJSON) *event.BPFProgLoad {
	return &event.BPFProgLoad{
		Time: time.Time(j.Time), Process: processFrom(&j.Process),
		Ret: j.Ret, ProgType: j.ProgType, InsnCount: j.InsnCount, ProgName: j.ProgName,
	}
}

type killJSON struct {
	Time      stamp       `json:"time,omitzero"`
	Process   processJSON `json:"process,omitzero"`
	Syscall   string      `json:"syscall,omitzero"`
	Ret       int64       `json:"ret,omitzero"`
	TargetPID int32       `json:"target_pid,omitzero"`
	TargetTID int32       `json:"target_tid,omitzero"`
	Signal    int32       `json:"signal,omitzero"`
}

func killTo(e *event.Kill) *killJSON {
	return &killJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process),
		Syscall: e.Syscall, Ret: e.Ret, TargetPID: e.TargetPID, TargetTID: e.TargetTID, Signal: e.Signal,
	}
}

func killFrom(j *killJSON) *event.Kill {
	return &event.Kill{
		Time: time.Time(j.Time), Process: processFrom(&j.Process),
		Syscall: j.Syscall, Ret: j.Ret, TargetPID: j.TargetPID, TargetTID: j.TargetTID, Signal: j.Signal,
	}
}

// loginJSON always carries result: leaving out PAM_SUCCESS, the zero code,
// would make a success look like an unknown outcome to a reader.
type loginJSON struct {
	Time           stamp       `json:"time,omitzero"`
	Process        processJSON `json:"process,omitzero"`
	Op             loginOp     `json:"op,omitzero"`
	Result         pamResult   `json:"result"`
	Service        string      `json:"service,omitzero"`
	User           string      `json:"user,omitzero"`
	RemoteUser     string      `json:"remote_user,omitzero"`
	RemoteHost     string      `json:"remote_host,omitzero"`
	TTY            string      `json:"tty,omitzero"`
	SessionID      uint32      `json:"session_id,omitzero"`
	Duration       int64       `json:"duration_ns,omitzero"`
	Truncated      bool        `json:"truncated,omitzero"`
	LayoutMismatch bool        `json:"layout_mismatch,omitzero"`
	NoHandle       bool        `json:"no_handle,omitzero"`
}

func loginTo(e *event.Login) *loginJSON {
	return &loginJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process),
		Op: loginOp(e.Op), Result: pamResult(e.Result),
		Service: e.Service, User: e.User, RemoteUser: e.RemoteUser, RemoteHost: e.RemoteHost, TTY: e.TTY,
		SessionID: e.SessionID, Duration: int64(e.Duration),
		Truncated: e.Truncated, LayoutMismatch: e.LayoutMismatch, NoHandle: e.NoHandle,
	}
}

func loginFrom(j *loginJSON) *event.Login {
	return &event.Login{
		Time: time.Time(j.Time), Process: processFrom(&j.Process),
		Op: event.LoginOp(j.Op), Result: event.PAMResult(j.Result),
		Service: j.Service, User: j.User, RemoteUser: j.RemoteUser, RemoteHost: j.RemoteHost, TTY: j.TTY,
		SessionID: j.SessionID, Duration: time.Duration(j.Duration),
		Truncated: j.Truncated, LayoutMismatch: j.LayoutMismatch, NoHandle: j.NoHandle,
	}
}

type tcpConnectJSON struct {
	Time    stamp       `json:"time,omitzero"`
	Process processJSON `json:"process,omitzero"`
	Local   addrPort    `json:"local,omitzero"`
	Remote  addrPort    `json:"remote,omitzero"`
	Cookie  uint64      `json:"cookie,omitzero"`
	Failed  bool        `json:"failed,omitzero"`
}

func tcpConnectTo(e *event.TCPConnect) *tcpConnectJSON {
	return &tcpConnectJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process),
		Local: addrPort(e.Local), Remote: addrPort(e.Remote), Cookie: e.Cookie, Failed: e.Failed,
	}
}

func tcpConnectFrom(j *tcpConnectJSON) *event.TCPConnect {
	return &event.TCPConnect{
		Time: time.Time(j.Time), Process: processFrom(&j.Process),
		Local: netip.AddrPort(j.Local), Remote: netip.AddrPort(j.Remote), Cookie: j.Cookie, Failed: j.Failed,
	}
}

type tcpAcceptJSON struct {
	Time        stamp       `json:"time,omitzero"`
	Process     processJSON `json:"process,omitzero"`
	Local       addrPort    `json:"local,omitzero"`
	Remote      addrPort    `json:"remote,omitzero"`
	Cookie      uint64      `json:"cookie,omitzero"`
	Established stamp       `json:"established,omitzero"`
}

func tcpAcceptTo(e *event.TCPAccept) *tcpAcceptJSON {
	return &tcpAcceptJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process),
		Local: addrPort(e.Local), Remote: addrPort(e.Remote), Cookie: e.Cookie, Established: stamp(e.Established),
	}
}

func tcpAcceptFrom(j *tcpAcceptJSON) *event.TCPAccept {
	return &event.TCPAccept{
		Time: time.Time(j.Time), Process: processFrom(&j.Process),
		Local: netip.AddrPort(j.Local), Remote: netip.AddrPort(j.Remote), Cookie: j.Cookie, Established: time.Time(j.Established),
	}
}

type tcpCloseJSON struct {
	Time          stamp       `json:"time,omitzero"`
	Process       processJSON `json:"process,omitzero"`
	NoProcess     bool        `json:"no_process,omitzero"`
	Direction     direction   `json:"direction,omitzero"`
	Local         addrPort    `json:"local,omitzero"`
	Remote        addrPort    `json:"remote,omitzero"`
	Cookie        uint64      `json:"cookie,omitzero"`
	Established   stamp       `json:"established,omitzero"`
	BytesSent     uint64      `json:"bytes_sent,omitzero"`
	BytesReceived uint64      `json:"bytes_received,omitzero"`
}

func tcpCloseTo(e *event.TCPClose) *tcpCloseJSON {
	return &tcpCloseJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process), NoProcess: e.NoProcess,
		Direction: direction(e.Direction), Local: addrPort(e.Local), Remote: addrPort(e.Remote), Cookie: e.Cookie,
		Established: stamp(e.Established), BytesSent: e.BytesSent, BytesReceived: e.BytesReceived,
	}
}

func tcpCloseFrom(j *tcpCloseJSON) *event.TCPClose {
	return &event.TCPClose{
		Time: time.Time(j.Time), Process: processFrom(&j.Process), NoProcess: j.NoProcess,
		Direction: event.Direction(j.Direction), Local: netip.AddrPort(j.Local), Remote: netip.AddrPort(j.Remote), Cookie: j.Cookie,
		Established: time.Time(j.Established), BytesSent: j.BytesSent, BytesReceived: j.BytesReceived,
	}
}

type udpFlowJSON struct {
	Time      stamp       `json:"time,omitzero"`
	Process   processJSON `json:"process,omitzero"`
	Direction direction   `json:"direction,omitzero"`
	Local     addrPort    `json:"local,omitzero"`
	Remote    addrPort    `json:"remote,omitzero"`
}

func udpFlowTo(e *event.UDPFlow) *udpFlowJSON {
	return &udpFlowJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process),
		Direction: direction(e.Direction), Local: addrPort(e.Local), Remote: addrPort(e.Remote),
	}
}

func udpFlowFrom(j *udpFlowJSON) *event.UDPFlow {
	return &event.UDPFlow{
		Time: time.Time(j.Time), Process: processFrom(&j.Process),
		Direction: event.Direction(j.Direction), Local: netip.AddrPort(j.Local), Remote: netip.AddrPort(j.Remote),
	}
}

type dnsJSON struct {
	Time      stamp       `json:"time,omitzero"`
	Process   processJSON `json:"process,omitzero"`
	NoProcess bool        `json:"no_process,omitzero"`
	Direction direction   `json:"direction,omitzero"`
	Local     addrPort    `json:"local,omitzero"`
	Remote    addrPort    `json:"remote,omitzero"`
	ID        uint16      `json:"id,omitzero"`
	Response  bool        `json:"response,omitzero"`
	RCode     uint8       `json:"rcode,omitzero"`
	Name      string      `json:"name,omitzero"`
	QType     uint16      `json:"qtype,omitzero"`
	Answers   addrs       `json:"answers,omitempty"`
	CNAMEs    []string    `json:"cnames,omitempty"`
	Truncated bool        `json:"truncated,omitzero"`
}

func dnsTo(e *event.DNS) *dnsJSON {
	return &dnsJSON{
		Time: stamp(e.Time), Process: processTo(&e.Process), NoProcess: e.NoProcess,
		Direction: direction(e.Direction), Local: addrPort(e.Local), Remote: addrPort(e.Remote),
		ID: e.ID, Response: e.Response, RCode: e.RCode, Name: e.Name, QType: e.QType,
		Answers: addrs(e.Answers), CNAMEs: e.CNAMEs, Truncated: e.Truncated,
	}
}

func dnsFrom(j *dnsJSON) *event.DNS {
	return &event.DNS{
		Time: time.Time(j.Time), Process: processFrom(&j.Process), NoProcess: j.NoProcess,
		Direction: event.Direction(j.Direction), Local: netip.AddrPort(j.Local), Remote: netip.AddrPort(j.Remote),
		ID: j.ID, Response: j.Response, RCode: j.RCode, Name: j.Name, QType: j.QType,
		Answers: []netip.Addr(j.Answers), CNAMEs: j.CNAMEs, Truncated: j.Truncated,
	}
}
