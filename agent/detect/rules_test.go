package detect

import (
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
)

// fakeProbe says a fixed pid listens. The real probe is tested below.
type fakeProbe uint32

func (p fakeProbe) Listening(pid uint32, _ uint64) bool { return pid == uint32(p) }

func TestBuiltinRules(t *testing.T) {
	bash := &proctree.Entry{PID: 10, Exe: "/usr/bin/bash", Comm: "bash"}
	nginx := &proctree.Entry{PID: 20, Exe: "/usr/sbin/nginx", Comm: "nginx"}
	sshd := &proctree.Entry{PID: 30, Exe: "/usr/sbin/sshd", Comm: "sshd"}
	app := &proctree.Entry{PID: 40, Exe: "/opt/app/server", Comm: "server"}
	tests := []struct {
		name   string
		exec   event.Exec
		parent *proctree.Entry
		want   string // rule id, "" for none
		reason string
	}{
		{"tmp binary", event.Exec{Exe: "/tmp/x/payload"}, bash, "exec-from-tmp", "executed /tmp/x/payload, which lives under /tmp"},
		{"shm binary", event.Exec{Exe: "/dev/shm/.a"}, bash, "exec-from-tmp", "executed /dev/shm/.a, which lives under /dev/shm"},
		{"var tmp script", event.Exec{Exe: "/usr/bin/dash", Filename: "./run.sh", Cwd: "/var/tmp"}, bash, "exec-from-tmp", "executed /var/tmp/run.sh, which lives under /var/tmp"},
		{"tmpfoo is not tmp", event.Exec{Exe: "/tmpfoo/x"}, bash, "", ""},
		{"usr bin true", event.Exec{Exe: "/usr/bin/true", Filename: "/bin/true", Cwd: "/tmp"}, bash, "", ""},
		{"shell from nginx", event.Exec{Exe: "/usr/bin/dash"}, nginx, "shell-from-network-service", "shell /usr/bin/dash started by network service nginx (pid 20)"},
		{"shell from listener", event.Exec{Exe: "/usr/bin/bash"}, app, "shell-from-network-service", "shell /usr/bin/bash started by server (pid 40), which listens on a TCP port"},
		{"shell from sshd", event.Exec{Exe: "/usr/bin/bash"}, sshd, "", ""},
		{"shell from shell", event.Exec{Exe: "/usr/bin/bash"}, bash, "", ""},
		{"non-shell from nginx", event.Exec{Exe: "/usr/bin/id"}, nginx, "", ""},
		{"cat shadow", event.Exec{Exe: "/usr/bin/cat", Args: []string{"cat", "/etc/shadow"}}, bash, "shadow-file-read", `cat was run on /etc/shadow (argument "/etc/shadow")`},
		{"dd gshadow", event.Exec{Exe: "/usr/bin/dd", Args: []string{"dd", "if=/etc/gshadow"}}, bash, "shadow-file-read", `dd was run on /etc/gshadow (argument "if=/etc/gshadow")`},
		{"relative shadow in /etc", event.Exec{Exe: "/usr/bin/head", Args: []string{"head", "shadow-"}, Cwd: "/etc"}, bash, "shadow-file-read", `head was run on /etc/shadow (argument "shadow-")`},
		{"double slash", event.Exec{Exe: "/usr/bin/cat", Args: []string{"cat", "/etc//shadow"}}, bash, "shadow-file-read", `cat was run on /etc/shadow (argument "/etc//shadow")`},
		{"dot segment", event.Exec{Exe: "/usr/bin/cat", Args: []string{"cat", "/etc/./shadow"}}, bash, "shadow-file-read", `cat was run on /etc/shadow (argument "/etc/./shadow")`},
		{"dot-slash in /etc", event.Exec{Exe: "/usr/bin/cat", Args: []string{"cat", "./shadow"}, Cwd: "/etc"}, bash, "shadow-file-read", `cat was run on /etc/shadow (argument "./shadow")`},
		{"relative from /", event.Exec{Exe: "/usr/bin/less", Args: []string{"less", "etc/gshadow"}, Cwd: "/"}, bash, "shadow-file-read", `less was run on /etc/gshadow (argument "etc/gshadow")`},
		{"shadow elsewhere", event.Exec{Exe: "/usr/bin/cat", Args: []string{"cat", "shadow"}, Cwd: "/home/u"}, bash, "", ""},
		{"shadowy name", event.Exec{Exe: "/usr/bin/cat", Args: []string{"cat", "/etc/shadowsocks.json"}}, bash, "", ""},
		{"cat passwd", event.Exec{Exe: "/usr/bin/cat", Args: []string{"cat", "/etc/passwd"}}, bash, "", ""},
		{"passwd binary touches shadow", event.Exec{Exe: "/usr/bin/passwd", Args: []string{"passwd", "/etc/shadow"}}, bash, "", ""},
		{"nmap", event.Exec{Exe: "/usr/bin/nmap", Args: []string{"nmap", "10.0.0.0/24"}}, bash, "network-scanner", "network scanner nmap executed"},
		{"renamed masscan", event.Exec{Exe: "/opt/x/scan", Process: event.Process{Comm: "masscan"}}, bash, "network-scanner", "network scanner masscan executed as /opt/x/scan"},
		{"nc -zv", event.Exec{Exe: "/usr/bin/nc.openbsd", Args: []string{"nc", "-zv", "host", "1-1000"}}, bash, "network-scanner", "nc.openbsd run in port-scanning mode (-zv)"},
		{"nc listen", event.Exec{Exe: "/usr/bin/nc.openbsd", Args: []string{"nc", "-l", "8080"}}, bash, "", ""},
		{"memfd", event.Exec{Exe: "/memfd:x", ExeMemfd: true, ExeDeleted: true}, bash, "memfd-exec", "the image /memfd:x exists only in memory (memfd_create), never on disk"},
		{"deleted", event.Exec{Exe: "/opt/gone", ExeDeleted: true}, bash, "deleted-binary-exec", "the image /opt/gone had been deleted from disk when it was executed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEngine(Builtin(), fakeProbe(40))
			x := tt.exec
			x.Time = time.Unix(100, 0)
			got := e.Evaluate(&x, tt.parent)
			if tt.want == "" {
				if len(got) != 0 {
					t.Fatalf("fired %s: %s", got[0].Rule.ID, got[0].Reason)
				}
				return
			}
			if len(got) != 1 || got[0].Rule.ID != tt.want || got[0].Reason != tt.reason {
				t.Fatalf("got %+v, want one %s: %s", got, tt.want, tt.reason)
			}
		})
	}
}

func TestEveryRuleHasAttackMapping(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Builtin() {
		if seen[r.ID] {
			t.Errorf("duplicate rule id %s", r.ID)
		}
		seen[r.ID] = true
		if r.Title == "" || r.Severity == 0 || r.Attack.GetTacticId() == "" || r.Attack.GetTechniqueId() == "" || r.Match == nil {
			t.Errorf("rule %s is incomplete: %+v", r.ID, r)
		}
	}
}

func TestRepeatsAreQuietForAWindow(t *testing.T) {
	e := NewEngine(Builtin(), nil)
	parent := &proctree.Entry{PID: 5, StartTime: 7}
	at := func(sec int) *event.Exec {
		return &event.Exec{Time: time.Unix(int64(sec), 0), Exe: "/tmp/loop", Process: event.Process{PPID: 5}}
	}
	if n := len(e.Evaluate(at(0), parent)); n != 1 {
		t.Fatalf("first: %d matches", n)
	}
	for s := 1; s <= 3; s++ {
		if n := len(e.Evaluate(at(s), parent)); n != 0 {
			t.Fatalf("repeat at %ds: %d matches", s, n)
		}
	}
	got := e.Evaluate(at(20), parent)
	if len(got) != 1 || got[0].Repeats != 3 {
		t.Fatalf("after window: %+v, want one match with 3 repeats", got)
	}
	// Another parent is another story.
	if n := len(e.Evaluate(at(21), &proctree.Entry{PID: 6})); n != 1 {
		t.Fatalf("other parent: %d matches", n)
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

func TestAllowListSilencesEveryRule(t *testing.T) {
	e := NewEngine(Builtin(), nil)
	e.SetAllow(Allow{PIDs: []uint32{7}, Exes: []string{"/tmp/allowed"}, CgroupIDs: []uint64{99}})
	for _, x := range []event.Exec{
		{Exe: "/tmp/allowed"},
		{Exe: "/tmp/other", Process: event.Process{PID: 7}},
		{Exe: "/tmp/other", Process: event.Process{PID: 8, CgroupID: 99}},
	} {
		if got := e.Evaluate(&x, nil); len(got) != 0 {
			t.Errorf("%+v: allow-listed, but %s fired", x, got[0].Rule.ID)
		}
	}
	if got := e.Evaluate(&event.Exec{Exe: "/tmp/other", Process: event.Process{PID: 8, CgroupID: 98}}, nil); len(got) != 1 {
		t.Errorf("a process on no list raised %d incidents, want 1", len(got))
	}
}
