package rules

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
)

// fakeProbe says a fixed pid listens. The real probe is tested in probe_test.go.
type fakeProbe uint32

func (p fakeProbe) Listening(pid uint32, _ uint64) bool { return pid == uint32(p) }

// firedInTests records the rules a case saw fire with the expected id.
var firedInTests sync.Map

// TestMain checks, after a full run, that every default rule fired in some case.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && defaultSet != nil {
		for _, r := range defaultSet.Rules() {
			if _, ok := firedInTests.Load(r.ID); !ok {
				fmt.Fprintf(os.Stderr, "default rule %s has no test case that fires it\n", r.ID)
				code = 1
			}
		}
	}
	os.Exit(code)
}

var (
	loadOnce   sync.Once
	defaultSet *Set
	loadErr    error
)

// defaults loads the embedded set once for all tests.
func defaults(t testing.TB) *Set {
	t.Helper()
	loadOnce.Do(func() { defaultSet, loadErr = Load() })
	if loadErr != nil {
		t.Fatalf("load default rules: %v", loadErr)
	}
	return defaultSet
}

// Processes used as parents and ancestors.
var (
	bash     = &proctree.Entry{PID: 10, PPID: 9, Exe: "/usr/bin/bash", Comm: "bash", Args: []string{"-bash"}}
	nginx    = &proctree.Entry{PID: 20, PPID: 1, Exe: "/usr/sbin/nginx", Comm: "nginx"}
	sshd     = &proctree.Entry{PID: 30, PPID: 1, Exe: "/usr/sbin/sshd", Comm: "sshd"}
	app      = &proctree.Entry{PID: 40, PPID: 1, Exe: "/opt/app/server", Comm: "server"}
	dpkg     = &proctree.Entry{PID: 50, PPID: 10, Exe: "/usr/bin/dpkg", Comm: "dpkg"}
	goTool   = &proctree.Entry{PID: 60, PPID: 10, Exe: "/usr/local/go/bin/go", Comm: "go"}
	systemd  = &proctree.Entry{PID: 1, Exe: "/usr/lib/systemd/systemd", Comm: "systemd"}
	udevd    = &proctree.Entry{PID: 70, PPID: 1, Exe: "/usr/lib/systemd/systemd-udevd", Comm: "systemd-udevd"}
	phpShell = &proctree.Entry{PID: 21, PPID: 20, Exe: "/usr/bin/dash", Comm: "sh", Args: []string{"sh", "-c", "id"}}
)

// chain returns the ancestors of a process whose parent is the first entry.
func chain(es ...*proctree.Entry) []proctree.Entry {
	out := make([]proctree.Entry, len(es))
	for i, e := range es {
		out[i] = *e
	}
	return out
}

func execOf(exe string, args ...string) *event.Exec {
	return &event.Exec{Exe: exe, Args: args, Process: event.Process{PID: 100, PPID: 10, UID: 1000, EUID: 1000, Comm: commOf(exe)}}
}

func commOf(exe string) string {
	c := exe[strings.LastIndexByte(exe, '/')+1:]
	if len(c) > 15 {
		c = c[:15]
	}
	return c
}

func procOf(exe string, args ...string) *proctree.Entry {
	return &proctree.Entry{PID: 100, PPID: 10, Exe: exe, Comm: commOf(exe), Args: args, UID: 0}
}

func fileEv(op event.FileOp, p string) *event.File {
	return &event.File{Op: op, Path: p, Process: event.Process{PID: 100, PPID: 10, Comm: "x"}}
}

func openW(p string) *event.File {
	f := fileEv(event.FileOpen, p)
	f.Write, f.Create, f.Ret = true, true, 3
	return f
}

func openR(p string) *event.File {
	f := fileEv(event.FileOpen, p)
	f.Read, f.Ret = true, 3
	return f
}

func openT(p string) *event.File {
	f := fileEv(event.FileOpen, p)
	f.Write, f.Truncate, f.Ret = true, true, 3
	return f
}

func renameTo(from, to string) *event.File {
	f := fileEv(event.FileRename, from)
	f.Path2 = to
	return f
}

func chmodEv(p string, mode uint32) *event.File {
	f := fileEv(event.FileChmod, p)
	f.Mode = mode
	return f
}

// ruleCase is one event and the rule it must fire (want) with its exact
// reason, or none (want == "").
type ruleCase struct {
	name   string
	ev     any
	proc   *proctree.Entry
	parent *proctree.Entry
	anc    []proctree.Entry
	fill   func(*Input)
	want   string
	reason string
}

func runCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	set := defaults(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			anc := tc.anc
			if anc == nil && tc.parent != nil {
				anc = chain(tc.parent)
			}
			in, ok := InputFor(tc.ev, tc.proc, tc.parent, anc, func(uid uint32) string {
				if uid == 0 {
					return "root"
				}
				return "u" + string(rune('0'+uid%10))
			})
			if !ok {
				t.Fatalf("InputFor(%T) refused the event", tc.ev)
			}
			in.Time = time.Unix(1000, 0)
			if tc.fill != nil {
				tc.fill(in)
			}
			e := NewEngine(set, Options{Probe: fakeProbe(40)})
			got := e.Evaluate(in)
			if e.EvalErrors() != 0 {
				t.Errorf("%d evaluation errors", e.EvalErrors())
			}
			if tc.want == "" {
				for _, m := range got {
					t.Errorf("fired %s: %s", m.Rule.ID, m.Reason)
				}
				return
			}
			for _, m := range got {
				if m.Rule.ID == tc.want {
					firedInTests.Store(m.Rule.ID, true)
					if m.Reason != tc.reason {
						t.Errorf("%s reason:\n got %q\nwant %q", tc.want, m.Reason, tc.reason)
					}
					return
				}
			}
			var ids []string
			for _, m := range got {
				ids = append(ids, m.Rule.ID)
			}
			t.Errorf("want %s, fired %v", tc.want, ids)
		})
	}
}

func TestPortedRules(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "tmp binary", ev: &event.Exec{Exe: "/tmp/x/payload"}, parent: bash, want: "exec-from-tmp", reason: "executed /tmp/x/payload, which lives under /tmp"},
		{name: "shm binary", ev: &event.Exec{Exe: "/dev/shm/.a"}, parent: bash, want: "exec-from-tmp", reason: "executed /dev/shm/.a, which lives under /dev/shm"},
		{name: "var tmp script", ev: &event.Exec{Exe: "/usr/bin/dash", Filename: "./run.sh", Cwd: "/var/tmp"}, parent: bash, want: "exec-from-tmp", reason: "executed /var/tmp/run.sh, which lives under /var/tmp"},
		{name: "tmpfoo is not tmp", ev: &event.Exec{Exe: "/tmpfoo/x"}, parent: bash},
		{name: "usr bin true", ev: &event.Exec{Exe: "/usr/bin/true", Filename: "/bin/true", Cwd: "/tmp"}, parent: bash},
		{name: "go test binary", ev: &event.Exec{Exe: "/tmp/go-build123/b001/rules.test"}, parent: goTool, anc: chain(goTool, bash)},
		{name: "shell from nginx", ev: &event.Exec{Exe: "/usr/bin/dash"}, parent: nginx, want: "shell-from-network-service", reason: "shell /usr/bin/dash started by network service nginx (pid 20)"},
		{name: "shell from listener", ev: &event.Exec{Exe: "/usr/bin/bash"}, parent: app, want: "shell-from-network-service", reason: "shell /usr/bin/bash started by server (pid 40), which listens on a TCP port"},
		{name: "shell from sshd", ev: &event.Exec{Exe: "/usr/bin/bash"}, parent: sshd},
		{name: "shell from shell", ev: &event.Exec{Exe: "/usr/bin/bash"}, parent: bash},
		{name: "non-shell from nginx", ev: &event.Exec{Exe: "/usr/bin/true"}, parent: nginx},
		{name: "cat shadow", ev: &event.Exec{Exe: "/usr/bin/cat", Args: []string{"cat", "/etc/shadow"}}, parent: bash, want: "shadow-file-read", reason: `cat was run on /etc/shadow (argument "/etc/shadow")`},
		{name: "dd gshadow", ev: &event.Exec{Exe: "/usr/bin/dd", Args: []string{"dd", "if=/etc/gshadow"}}, parent: bash, want: "shadow-file-read", reason: `dd was run on /etc/gshadow (argument "if=/etc/gshadow")`},
		{name: "relative shadow in /etc", ev: &event.Exec{Exe: "/usr/bin/head", Args: []string{"head", "shadow-"}, Cwd: "/etc"}, parent: bash, want: "shadow-file-read", reason: `head was run on /etc/shadow (argument "shadow-")`},
		{name: "double slash", ev: &event.Exec{Exe: "/usr/bin/cat", Args: []string{"cat", "/etc//shadow"}}, parent: bash, want: "shadow-file-read", reason: `cat was run on /etc/shadow (argument "/etc//shadow")`},
		{name: "dot segment", ev: &event.Exec{Exe: "/usr/bin/cat", Args: []string{"cat", "/etc/./shadow"}}, parent: bash, want: "shadow-file-read", reason: `cat was run on /etc/shadow (argument "/etc/./shadow")`},
		{name: "dot-slash in /etc", ev: &event.Exec{Exe: "/usr/bin/cat", Args: []string{"cat", "./shadow"}, Cwd: "/etc"}, parent: bash, want: "shadow-file-read", reason: `cat was run on /etc/shadow (argument "./shadow")`},
		{name: "relative from /", ev: &event.Exec{Exe: "/usr/bin/less", Args: []string{"less", "etc/gshadow"}, Cwd: "/"}, parent: bash, want: "shadow-file-read", reason: `less was run on /etc/gshadow (argument "etc/gshadow")`},
		{name: "shadow elsewhere", ev: &event.Exec{Exe: "/usr/bin/cat", Args: []string{"cat", "shadow"}, Cwd: "/home/u"}, parent: bash},
		{name: "shadowy name", ev: &event.Exec{Exe: "/usr/bin/cat", Args: []string{"cat", "/etc/shadowsocks.json"}}, parent: bash},
		{name: "cat passwd", ev: &event.Exec{Exe: "/usr/bin/cat", Args: []string{"cat", "/etc/passwd"}}, parent: bash},
		{name: "passwd binary touches shadow", ev: &event.Exec{Exe: "/usr/bin/passwd", Args: []string{"passwd", "/etc/shadow"}}, parent: bash},
		{name: "nmap", ev: &event.Exec{Exe: "/usr/bin/nmap", Args: []string{"nmap", "10.0.0.0/24"}}, parent: bash, want: "network-scanner", reason: "network scanner nmap executed"},
		{name: "renamed masscan", ev: &event.Exec{Exe: "/opt/x/scan", Process: event.Process{Comm: "masscan"}}, parent: bash, want: "network-scanner", reason: "network scanner masscan executed as /opt/x/scan"},
		{name: "nc -zv", ev: &event.Exec{Exe: "/usr/bin/nc.openbsd", Args: []string{"nc", "-zv", "host", "1-1000"}}, parent: bash, want: "network-scanner", reason: "nc.openbsd run in port-scanning mode (-zv)"},
		{name: "nc listen", ev: &event.Exec{Exe: "/usr/bin/nc.openbsd", Args: []string{"nc", "-l", "8080"}}, parent: bash},
		{name: "memfd", ev: &event.Exec{Exe: "/memfd:x", ExeMemfd: true, ExeDeleted: true}, parent: bash, want: "memfd-exec", reason: "the image /memfd:x exists only in memory (memfd_create), never on disk"},
		{name: "deleted", ev: &event.Exec{Exe: "/opt/gone", ExeDeleted: true}, parent: bash, want: "deleted-binary-exec", reason: "the image /opt/gone had been deleted from disk when it was executed"},
		{name: "not deleted", ev: &event.Exec{Exe: "/opt/here"}, parent: bash},
	})
}
