package rules

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
)

func TestRepeatsAreQuietForAWindow(t *testing.T) {
	e := NewEngine(defaults(t), Options{})
	parent := &proctree.Entry{PID: 5, StartTime: 7}
	at := func(sec int, p *proctree.Entry) []Match {
		x := &event.Exec{Time: time.Unix(int64(sec), 0), Exe: "/tmp/loop", Process: event.Process{PPID: p.PID}}
		in, _ := InputFor(x, nil, p, nil, nil)
		return e.Evaluate(in)
	}
	if n := len(at(0, parent)); n != 1 {
		t.Fatalf("first: %d matches", n)
	}
	for s := 1; s <= 3; s++ {
		if n := len(at(s, parent)); n != 0 {
			t.Fatalf("repeat at %ds: %d matches", s, n)
		}
	}
	got := at(20, parent)
	if len(got) != 1 || got[0].Repeats != 3 {
		t.Fatalf("after window: %+v, want one match with 3 repeats", got)
	}
	// Another parent is another story.
	if n := len(at(21, &proctree.Entry{PID: 6})); n != 1 {
		t.Fatalf("other parent: %d matches", n)
	}
}

func TestAccountCreationsRepeatByCommandLine(t *testing.T) {
	e := NewEngine(defaults(t), Options{})
	shell := &proctree.Entry{PID: 5, StartTime: 7, Exe: "/usr/bin/bash"}
	useradd := func(sec int, name string) []Match {
		x := &event.Exec{Time: time.Unix(int64(sec), 0), Exe: "/usr/sbin/useradd", Args: []string{"useradd", "--system", name},
			Process: event.Process{PID: uint32(100 + sec), PPID: shell.PID}}
		in, _ := InputFor(x, nil, shell, []proctree.Entry{*shell}, nil)
		return e.Evaluate(in)
	}
	if got := useradd(0, "alice"); len(got) != 1 || got[0].Rule.ID != "user-account-created" {
		t.Fatalf("first account: %+v", got)
	}
	// A second account from the same shell at once is another finding.
	if got := useradd(1, "mallory"); len(got) != 1 || got[0].Reason != "account tool useradd ran: useradd --system mallory" {
		t.Fatalf("second account from the same shell: %+v", got)
	}
	// The same command again is a repeat.
	if got := useradd(2, "mallory"); len(got) != 0 {
		t.Fatalf("same command again: %+v", got)
	}
}

func TestPortScanRepeatsByProgramUserAndSession(t *testing.T) {
	e := NewEngine(defaults(t), Options{})
	probe := func(sec int, pid, uid, session uint32, port uint16) []Match {
		c := &event.TCPConnect{Time: time.Unix(int64(sec), 0), Remote: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.9"), port),
			Process: event.Process{PID: pid, UID: uid, SessionID: session, Comm: "bash"}}
		p := &proctree.Entry{PID: pid, UID: uid, SessionID: session, Exe: "/usr/bin/bash", Comm: "bash"}
		in, _ := InputFor(c, p, nil, nil, nil)
		in.Network.PortsToHost = int(port)
		return e.Evaluate(in)
	}
	if got := probe(0, 100, 0, 3, 25); len(got) != 1 || got[0].Rule.ID != "port-scan-connections" {
		t.Fatalf("25th port: %+v", got)
	}
	// The loop's next subshells are the same scan.
	for port := uint16(26); port <= 40; port++ {
		if got := probe(1, 100+uint32(port), 0, 3, port); len(got) != 0 {
			t.Fatalf("port %d from the next subshell: %+v", port, got)
		}
	}
	// Another user's or another session's scan is another finding.
	if got := probe(2, 200, 1000, 3, 25); len(got) != 1 {
		t.Fatalf("another user: %+v", got)
	}
	if got := probe(2, 201, 0, 4, 25); len(got) != 1 {
		t.Fatalf("another session: %+v", got)
	}
}

func TestLoginRulesRepeatBySource(t *testing.T) {
	e := NewEngine(defaults(t), Options{})
	try := func(sec int, host string, pid uint32) []Match {
		l := &event.Login{Time: time.Unix(int64(sec), 0), Op: event.LoginAuthenticate, Result: event.PAMAuthErr, Service: "sshd", User: "root", RemoteHost: host, Process: event.Process{PID: pid}}
		in, _ := InputFor(l, nil, nil, nil, nil)
		in.Login.FailuresFromSource, in.Login.UsersFromSource = 5+sec, 1
		return e.Evaluate(in)
	}
	if got := try(0, "203.0.113.1", 1000); len(got) != 1 || got[0].Rule.ID != "brute-force" {
		t.Fatalf("first: %+v", got)
	}
	// Each attempt is a new sshd process, but the key is the source.
	for s := 1; s < 5; s++ {
		if got := try(s, "203.0.113.1", uint32(1000+s)); len(got) != 0 {
			t.Fatalf("attempt %d from the same source: %+v", s, got)
		}
	}
	if got := try(6, "203.0.113.2", 2000); len(got) != 1 {
		t.Fatalf("another source: %+v", got)
	}
	if got := try(301, "203.0.113.1", 3000); len(got) != 1 || got[0].Repeats != 4 {
		t.Fatalf("after the 5 min window: %+v, want 4 repeats", got)
	}
}

func TestAllowListSilencesEveryRule(t *testing.T) {
	e := NewEngine(defaults(t), Options{})
	e.SetAllow(Allow{PIDs: []uint32{7}, Exes: []string{"/tmp/allowed"}, CgroupIDs: []uint64{99}})
	for i, x := range []event.Exec{
		{Exe: "/tmp/allowed"},
		{Exe: "/tmp/other", Process: event.Process{PID: 7}},
		{Exe: "/tmp/other", Process: event.Process{PID: 8, CgroupID: 99}},
	} {
		x.Time = time.Unix(int64(i*100), 0)
		in, _ := InputFor(&x, nil, nil, nil, nil)
		if got := e.Evaluate(in); len(got) != 0 {
			t.Errorf("%+v: allow-listed, but %s fired", x, got[0].Rule.ID)
		}
	}
	in, _ := InputFor(&event.Exec{Exe: "/tmp/other", Process: event.Process{PID: 8, CgroupID: 98}}, nil, nil, nil, nil)
	if got := e.Evaluate(in); len(got) != 1 {
		t.Errorf("a process on no list raised %d incidents, want 1", len(got))
	}
}

func TestProcProbeSeesListeningSockets(t *testing.T) {
	self, err := proctree.ReadProc("/proc", uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	probe := ProcProbe{Root: "/proc"}
	if probe.Listening(self.PID, self.StartTime) {
		t.Fatal("listening before any listener exists")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !probe.Listening(self.PID, self.StartTime) {
		t.Error("not listening while a TCP listener is open")
	}
	if probe.Listening(self.PID, self.StartTime+1e9) {
		t.Error("a different start time (another process with this pid) still counted as listening")
	}
	// The rule sees it through the engine's probe: a shell whose parent is
	// this (listening) test process.
	e := NewEngine(defaults(t), Options{Probe: probe})
	x := &event.Exec{Exe: "/usr/bin/bash", Process: event.Process{PID: 1 << 22, PPID: self.PID}}
	in, _ := InputFor(x, nil, self, nil, nil)
	got := e.Evaluate(in)
	want := "shell /usr/bin/bash started by " + procName(self.Exe, self.Comm) + " (pid " + strconv.FormatUint(uint64(self.PID), 10) + "), which listens on a TCP port"
	if len(got) != 1 || got[0].Reason != want {
		t.Errorf("shell under a listener: %+v, want %q", got, want)
	}
	ln.Close()
	// A child that holds no listener of its own.
	cmd := exec.Command("/bin/sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	child, err := proctree.ReadProc("/proc", uint32(cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if probe.Listening(child.PID, child.StartTime) {
		t.Error("child without sockets reported listening")
	}
	if probe.Listening(self.PID, self.StartTime) {
		t.Error("still listening after close")
	}
}

func TestInputForConvertsEveryEvent(t *testing.T) {
	if k := KindOf(struct{}{}); k != "" {
		t.Errorf("KindOf of a value that is no event: %q, want \"\"", k)
	}
	p := event.Process{PID: 42, PPID: 10, UID: 1000, EUID: 0, GID: 100, StartTime: 5, CgroupID: 9, Comm: "tool", LoginUID: 1000, SessionID: 3}
	entry := &proctree.Entry{PID: 42, PPID: 10, Exe: "/usr/bin/tool", Args: []string{"tool", "-x"}, Cwd: "/srv", Comm: "tool"}
	tcp := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	est := time.Unix(100, 0)
	tests := []struct {
		ev   any
		kind string
		part func(*Input) any
		want any
	}{
		{event.Exit{Process: p}, KindExit, func(in *Input) any { return in.Process.Exe }, "/usr/bin/tool"},
		{&event.File{Process: p, Op: event.FileRename, Path: "/a", Path2: "/b", Mode: 0o644, Flags: 1, UID: 1, GID: 2, Read: true, Write: true, Create: true, Truncate: true, Ret: -13}, KindFile,
			func(in *Input) any { return in.File }, File{Op: "rename", Path: "/a", NewPath: "/b", Mode: 0o644, Flags: 1, UID: 1, GID: 2, Read: true, Write: true, Create: true, Truncate: true, Ret: -13}},
		{&event.CredChange{Process: p, Syscall: "setresuid", Old: event.Creds{UID: 1, EUID: 2, GID: 3, EGID: 4, CapEffective: 5}, New: event.Creds{UID: 6, EUID: 7, GID: 8, EGID: 9, CapEffective: 10}}, KindCred,
			func(in *Input) any { return in.Cred }, Cred{Syscall: "setresuid", OldUID: 1, OldEUID: 2, OldGID: 3, OldEGID: 4, NewUID: 6, NewEUID: 7, NewGID: 8, NewEGID: 9, OldCaps: 5, NewCaps: 10}},
		{&event.Ptrace{Process: p, Request: event.PtraceSeize, TargetPID: 7}, KindPtrace, func(in *Input) any { return in.Ptrace }, Ptrace{Request: "seize", TargetPID: 7}},
		{&event.Module{Process: p, Unload: true, Name: "nbd"}, KindModule, func(in *Input) any { return in.Module }, Module{Op: "unload", Name: "nbd"}},
		{&event.MemfdCreate{Process: p, Name: "x", Flags: 1}, KindMemfd, func(in *Input) any { return in.Memfd }, Memfd{Name: "x", Flags: 1}},
		{&event.Mount{Process: p, Unmount: true, Target: "/mnt"}, KindMount, func(in *Input) any { return in.Mount }, Mount{Op: "umount", Target: "/mnt"}},
		{&event.BPFProgLoad{Process: p, ProgType: 2, InsnCount: 3, ProgName: "n"}, KindBPF, func(in *Input) any { return in.BPF }, BPF{ProgType: 2, ProgName: "n", InsnCount: 3}},
		{&event.Kill{Process: p, TargetPID: -1, Signal: 9}, KindKill, func(in *Input) any { return in.Kill }, Kill{TargetPID: -1, Signal: 9}},
		{&event.Login{Process: p, Op: event.LoginAccount, Result: event.PAMAcctExpired, Service: "sshd", User: "u", RemoteUser: "r", RemoteHost: "h", TTY: "ssh"}, KindLogin,
			func(in *Input) any { return in.Login }, Login{Op: "account", Service: "sshd", User: "u", RemoteHost: "h", RemoteUser: "r", TTY: "ssh", Result: 13}},
		{&event.TCPConnect{Process: p, Local: tcp("10.0.0.1:5000"), Remote: tcp("10.0.0.2:80"), Failed: true}, KindConnect,
			func(in *Input) any { return in.Network }, Network{Protocol: "tcp", Direction: "outbound", LocalAddr: "10.0.0.1", LocalPort: 5000, RemoteAddr: "10.0.0.2", RemotePort: 80, Failed: true}},
		{&event.TCPAccept{Process: p, Local: tcp("10.0.0.1:22"), Remote: tcp("10.0.0.2:5000")}, KindAccept,
			func(in *Input) any { return in.Network }, Network{Protocol: "tcp", Direction: "inbound", LocalAddr: "10.0.0.1", LocalPort: 22, RemoteAddr: "10.0.0.2", RemotePort: 5000}},
		{&event.TCPClose{Process: p, Time: est.Add(1500 * time.Millisecond), Established: est, Direction: event.Outbound, Local: tcp("10.0.0.1:5000"), Remote: tcp("10.0.0.2:80"), BytesSent: 1, BytesReceived: 2}, KindClose,
			func(in *Input) any { return in.Network }, Network{Protocol: "tcp", Direction: "outbound", LocalAddr: "10.0.0.1", LocalPort: 5000, RemoteAddr: "10.0.0.2", RemotePort: 80, BytesSent: 1, BytesReceived: 2, DurationMS: 1500}},
		{&event.UDPFlow{Process: p, Direction: event.Inbound, Local: tcp("0.0.0.0:53"), Remote: tcp("10.0.0.2:5353")}, KindUDP,
			func(in *Input) any { return in.Network }, Network{Protocol: "udp", Direction: "inbound", LocalAddr: "0.0.0.0", LocalPort: 53, RemoteAddr: "10.0.0.2", RemotePort: 5353}},
		{&event.DNS{Process: p, Direction: event.Outbound, Local: tcp("10.0.0.1:40000"), Remote: tcp("10.0.0.53:53"), Response: true, RCode: 3, Name: "example.com", Answers: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, CNAMEs: []string{"a.example.com"}}, KindDNS,
			func(in *Input) any { return in.Network }, Network{Protocol: "udp", Direction: "outbound", LocalAddr: "10.0.0.1", LocalPort: 40000, RemoteAddr: "10.0.0.53", RemotePort: 53, Query: "example.com", Response: true, RCode: 3, Answers: []string{"192.0.2.1", "a.example.com"}}},
	}
	for _, tt := range tests {
		in, ok := InputFor(tt.ev, entry, bash, chain(bash, sshd), func(uid uint32) string { return map[uint32]string{0: "root", 1000: "alice"}[uid] })
		if !ok {
			t.Fatalf("%T refused", tt.ev)
		}
		if in.Kind != tt.kind || KindOf(tt.ev) != tt.kind {
			t.Errorf("%T: kind %q, KindOf %q, want %q", tt.ev, in.Kind, KindOf(tt.ev), tt.kind)
		}
		if got := tt.part(in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%T:\n got %+v\nwant %+v", tt.ev, got, tt.want)
		}
		wantProc := Process{PID: 42, PPID: 10, StartTime: 5, UID: 1000, EUID: 0, GID: 100, User: "alice", Exe: "/usr/bin/tool", Name: "tool", Comm: "tool",
			Args: []string{"tool", "-x"}, Cmdline: "tool -x", Cwd: "/srv", CgroupID: 9, LoginUID: 1000, SessionID: 3}
		if !reflect.DeepEqual(in.Process, wantProc) {
			t.Errorf("%T process:\n got %+v\nwant %+v", tt.ev, in.Process, wantProc)
		}
		if in.Parent.Name != "bash" || len(in.Ancestors) != 2 || in.Ancestors[1].Name != "sshd" || in.User != (User{UID: 1000, Name: "alice"}) {
			t.Errorf("%T: parent %+v ancestors %d user %+v", tt.ev, in.Parent, len(in.Ancestors), in.User)
		}
	}
	x := &event.Exec{Process: p, Exe: "/usr/bin/dash", Filename: "../run.sh", Cwd: "/srv/app", Args: []string{"sh", "../run.sh"}, ExeDeleted: true}
	in, _ := InputFor(x, entry, nil, nil, nil)
	if in.Kind != KindExec || in.Process.Script != "/srv/run.sh" || in.Process.Name != "dash" || !in.Process.Deleted || in.Process.Memfd || in.Process.Cmdline != "sh ../run.sh" || in.Parent.PID != 0 {
		t.Errorf("exec: %+v", in.Process)
	}
	if _, ok := InputFor(&event.Fork{Process: p}, nil, nil, nil, nil); ok {
		t.Error("a fork was converted")
	}
}
