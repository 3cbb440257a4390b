package proctree

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
)

func TestSeedFromProcGivesAncestryOfRunningProcesses(t *testing.T) {
	// A child started before the cache exists must still have its ancestry.
	cmd := exec.Command("/bin/sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// Wait until the child has exec'd sleep and its argv is in place.
	for range 100 {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline"); string(b) == "/bin/sleep\x0010\x00" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	tree := New(0)
	if err := tree.SeedFromProc("/proc"); err != nil {
		t.Fatal(err)
	}
	child, ok := tree.Get(uint32(cmd.Process.Pid))
	if !ok {
		t.Fatalf("child %d not in the cache", cmd.Process.Pid)
	}
	if child.Comm != "sleep" || !slices.Equal(child.Args, []string{"/bin/sleep", "10"}) {
		t.Errorf("child comm %q args %q", child.Comm, child.Args)
	}
	if child.PPID != uint32(os.Getpid()) {
		t.Errorf("child ppid %d, want %d", child.PPID, os.Getpid())
	}
	self, _ := os.Executable()
	anc := tree.Ancestors(child.PID)
	if len(anc) == 0 || anc[0].PID != uint32(os.Getpid()) || anc[0].Exe != self {
		t.Fatalf("first ancestor %+v, want this test (%d, %s)", anc, os.Getpid(), self)
	}
	if last := anc[len(anc)-1]; last.PID != 1 {
		t.Errorf("ancestry ends at pid %d, want 1", last.PID)
	}
}

func TestForkExecExitKeepTheTree(t *testing.T) {
	tree := New(0)
	now := time.Unix(1000, 0)
	tree.now = func() time.Time { return now }
	tree.Exec(&event.Exec{Process: event.Process{PID: 1, StartTime: 1e9}, Exe: "/sbin/init"})
	tree.Exec(&event.Exec{Process: event.Process{PID: 100, PPID: 1, StartTime: 2e9}, Exe: "/usr/sbin/nginx", Args: []string{"nginx"}})
	tree.Fork(&event.Fork{Process: event.Process{PID: 200, PPID: 100, StartTime: 3e9, Comm: "nginx"}})

	forked, _ := tree.Get(200)
	if forked.Exe != "/usr/sbin/nginx" || !slices.Equal(forked.Args, []string{"nginx"}) {
		t.Errorf("forked child should inherit the parent's image until exec: %+v", forked)
	}
	tree.Exec(&event.Exec{Process: event.Process{PID: 200, PPID: 100, StartTime: 3e9}, Exe: "/usr/bin/dash", Args: []string{"sh", "-c", "id"}})

	anc := tree.Ancestors(200)
	if len(anc) != 2 || anc[0].Exe != "/usr/sbin/nginx" || anc[1].Exe != "/sbin/init" {
		t.Fatalf("ancestors = %+v", anc)
	}

	// An exit of an older process with the same pid is ignored.
	tree.Exit(&event.Exit{Process: event.Process{PID: 200, StartTime: 9e9}, ExitCode: 1})
	if e, _ := tree.Get(200); e.Exited {
		t.Fatal("exit of another process with the same pid marked this one exited")
	}
	tree.Exit(&event.Exit{Process: event.Process{PID: 200, StartTime: 3e9}, ExitCode: 256})
	if e, _ := tree.Get(200); !e.Exited || e.ExitCode != 256 {
		t.Fatalf("after exit: %+v", e)
	}

	// Exited processes stay for ExitedRetention, then go.
	now = now.Add(ExitedRetention - time.Second)
	tree.Prune()
	if _, ok := tree.Get(200); !ok {
		t.Fatal("exited process pruned too early")
	}
	now = now.Add(2 * time.Second)
	tree.Prune()
	if _, ok := tree.Get(200); ok {
		t.Fatal("exited process not pruned after retention")
	}
	if tree.Len() != 2 {
		t.Errorf("len = %d, want 2", tree.Len())
	}
}

func TestCacheStaysBounded(t *testing.T) {
	tree := New(100)
	for pid := uint32(1); pid <= 1000; pid++ {
		tree.Fork(&event.Fork{Process: event.Process{PID: pid, PPID: 1, StartTime: uint64(pid) * 1e9}})
	}
	if n := tree.Len(); n > 100 {
		t.Fatalf("len = %d, want at most 100", n)
	}
	if _, ok := tree.Get(1000); !ok {
		t.Error("the newest process was evicted")
	}
}

func TestParseStatHandlesParensInComm(t *testing.T) {
	e, err := parseStat([]byte("42 (a (b) c) S 7 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 12345 1000 10"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Comm != "a (b) c" || e.PPID != 7 || e.StartTime != 12345*clockTicksNS {
		t.Errorf("parsed %+v", e)
	}
	if _, err := parseStat([]byte("garbage")); err == nil {
		t.Error("garbage stat accepted")
	}
}

func TestAncestorsStopAtALoopAndAppend(t *testing.T) {
	tree := New(0)
	// 10 -> 20 -> 30 -> 20: a loop, as stale entries of reused pids can make.
	for _, e := range []Entry{{PID: 10, PPID: 20, Args: []string{"a", "b"}}, {PID: 20, PPID: 30}, {PID: 30, PPID: 20}} {
		tree.put(&e)
	}
	var got []uint32
	for _, a := range tree.Ancestors(10) {
		got = append(got, a.PID)
	}
	if !slices.Equal(got, []uint32{20, 30}) {
		t.Errorf("ancestors of 10: %v, want [20 30]", got)
	}
	buf := tree.AppendAncestors(make([]Entry, 0, 4), 30)
	if len(buf) != 1 || buf[0].PID != 20 {
		t.Errorf("ancestors of 30: %+v, want [20]", buf)
	}
	x := tree.Exec(&event.Exec{Process: event.Process{PID: 40, PPID: 10}, Args: []string{"sh", "-c", "x"}})
	if x.Cmdline != "sh -c x" {
		t.Errorf("cmdline %q", x.Cmdline)
	}
	tree.Fork(&event.Fork{Process: event.Process{PID: 41, PPID: 40}})
	if c, _ := tree.Get(41); c.Cmdline != "sh -c x" {
		t.Errorf("forked child's cmdline %q, want its parent's", c.Cmdline)
	}
}
