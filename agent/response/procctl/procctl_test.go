package procctl

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sensor/vigil/internal/testutil"
)

// The test binary doubles as the workload: with VIGIL_COUNTER set it counts
// in that file every 10 ms, after starting a copy of itself counting in
// VIGIL_CHILD_COUNTER when that is set.
func TestMain(m *testing.M) {
	if file := os.Getenv("VIGIL_COUNTER"); file != "" {
		count(file, os.Getenv("VIGIL_CHILD_COUNTER"))
		return
	}
	// Orphans of the workload (a child whose parent was killed) come back
	// to the test to be reaped, not to whatever pid 1 is.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "set child subreaper:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// count is the workload: it writes an increasing number at the start of
// file every 10 ms, forever.
func count(file, childFile string) {
	if childFile != "" {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "VIGIL_COUNTER="+childFile, "VIGIL_CHILD_COUNTER=")
		if err := cmd.Start(); err != nil {
			os.Exit(2)
		}
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		os.Exit(3)
	}
	for i := 1; ; i++ {
		// Fixed width at offset 0: a reader never sees a half-written number.
		if _, err := f.WriteAt([]byte(fmt.Sprintf("%012d", i)), 0); err != nil {
			os.Exit(4)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// counter is a running workload process.
type counter struct {
	pid   int
	start uint64
	file  string
}

// read returns the counter's value (0 before the first write).
func (c counter) read(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(c.file)
	if errors.Is(err, os.ErrNotExist) || len(b) == 0 {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatalf("counter %s: %v", c.file, err)
	}
	return n
}

// cgroup returns the counter process's cgroup v2 path.
func (c counter) cgroup(t *testing.T) string {
	t.Helper()
	p, err := cgroupOf(c.pid)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startCounters starts the workload, with a counting child when withChild,
// in the cgroup v2 opened as cgroupDir when it is not nil. It waits until
// every process counts and kills them all at cleanup.
func startCounters(t *testing.T, withChild bool, cgroupDir *os.File) []counter {
	t.Helper()
	dir := t.TempDir()
	parent := counter{file: filepath.Join(dir, "parent")}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "VIGIL_COUNTER="+parent.file, "VIGIL_CHILD_COUNTER=")
	if withChild {
		cmd.Env[len(cmd.Env)-1] = "VIGIL_CHILD_COUNTER=" + filepath.Join(dir, "child")
	}
	if cgroupDir != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgroupDir.Fd())}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	parent.pid = cmd.Process.Pid
	counters := []counter{parent}
	t.Cleanup(func() {
		// Only what this test started: the workload parent and its child,
		// each by pid and start time.
		for _, c := range counters[1:] {
			_ = signal(stat{pid: c.pid, start: c.start}, unix.SIGKILL)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		for _, c := range counters[1:] {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(c.pid, &ws, 0, nil) // an orphan now, reaped here
		}
	})
	st, err := readStat(parent.pid)
	if err != nil {
		t.Fatal(err)
	}
	counters[0].start = st.start

	deadline := time.Now().Add(5 * time.Second)
	for withChild && len(counters) == 1 {
		if time.Now().After(deadline) {
			t.Fatal("the workload's child did not start")
		}
		if tree, err := Tree(uint32(parent.pid)); err == nil && len(tree) == 2 {
			st, err := readStat(tree[1])
			if err != nil {
				t.Fatal(err)
			}
			counters = append(counters, counter{pid: tree[1], start: st.start, file: filepath.Join(dir, "child")})
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, c := range counters {
		for c.read(t) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("process %d does not count", c.pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return counters
}

// newQuarantine makes a quarantine for the test and removes it at cleanup,
// with every leaf left in it; only the test's processes are ever in those.
func newQuarantine(t *testing.T) *Quarantine {
	t.Helper()
	testutil.RequireRoot(t)
	mount, err := testutil.CgroupV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(mount, fmt.Sprintf("vigil-test-quarantine-%d", os.Getpid()))
	q, err := NewQuarantine(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		leaves, _ := os.ReadDir(root)
		for _, l := range leaves {
			if !l.IsDir() {
				continue
			}
			h := &Held{q: q, name: l.Name(), dir: filepath.Join(root, l.Name())}
			_ = h.Kill()
			if err := h.removeLeafLocked(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if err := os.Remove(root); err != nil {
			t.Errorf("cleanup: remove quarantine: %v", err)
		}
	})
	return q
}

// stopped checks that no counter changes for d.
func stopped(t *testing.T, cs []counter, d time.Duration) {
	t.Helper()
	before := make([]int, len(cs))
	for i, c := range cs {
		before[i] = c.read(t)
	}
	time.Sleep(d)
	for i, c := range cs {
		if now := c.read(t); now != before[i] {
			t.Errorf("process %d counted from %d to %d in %v, want frozen", c.pid, before[i], now, d)
		}
	}
}

// running checks that every counter moves within a second.
func running(t *testing.T, cs []counter) {
	t.Helper()
	for _, c := range cs {
		before := c.read(t)
		deadline := time.Now().Add(time.Second)
		for c.read(t) == before {
			if time.Now().After(deadline) {
				t.Errorf("process %d stuck at %d, want it counting", c.pid, before)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func pidsOf(cs []counter) []int {
	var pids []int
	for _, c := range cs {
		pids = append(pids, c.pid)
	}
	slices.Sort(pids)
	return pids
}

func TestFreezeThawRelease(t *testing.T) {
	q := newQuarantine(t)
	cg := testutil.NewCgroup(t)
	cs := startCounters(t, true, cg.Dir)
	orig := []string{cs[0].cgroup(t), cs[1].cgroup(t)}
	if want := "/" + filepath.Base(cg.Path); orig[0] != want || orig[1] != want {
		t.Fatalf("workload in %q, want both in %s", orig, want)
	}
	if tree, err := Tree(uint32(cs[0].pid)); err != nil || !slices.Equal(tree, []int{cs[0].pid, cs[1].pid}) {
		t.Errorf("Tree = %v, %v; want [%d %d]", tree, err, cs[0].pid, cs[1].pid)
	}

	h, err := q.Freeze(uint32(cs[0].pid), cs[0].start, "incident-1.freeze")
	if err != nil {
		t.Fatal(err)
	}
	if h.Dir() != filepath.Join(q.Root(), "incident-1.freeze") {
		t.Errorf("Dir = %s", h.Dir())
	}
	if pids := h.PIDs(); !slices.Equal(pids, pidsOf(cs)) {
		t.Errorf("PIDs = %v, want %v", pids, pidsOf(cs))
	}
	leaf := "/" + filepath.Base(q.Root()) + "/incident-1.freeze"
	for _, c := range cs {
		if got := c.cgroup(t); got != leaf {
			t.Errorf("process %d in %s, want %s", c.pid, got, leaf)
		}
	}
	stopped(t, cs, 500*time.Millisecond)

	if err := h.Thaw(); err != nil {
		t.Fatal(err)
	}
	running(t, cs)
	if err := h.Freeze(); err != nil {
		t.Fatal(err)
	}
	stopped(t, cs, 200*time.Millisecond)

	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	for i, c := range cs {
		if got := c.cgroup(t); got != orig[i] {
			t.Errorf("released process %d in %s, want %s", c.pid, got, orig[i])
		}
	}
	if _, err := os.Stat(h.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leaf after release: %v, want it removed", err)
	}
	running(t, cs)
	if err := h.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if err := h.Thaw(); !errors.Is(err, ErrReleased) {
		t.Errorf("Thaw after Release: %v, want ErrReleased", err)
	}
	if pids := h.PIDs(); pids != nil {
		t.Errorf("PIDs after Release = %v, want none", pids)
	}
}

// TestReleaseToParent removes a held process's cgroup while it is held:
// Release puts it in the nearest ancestor left.
func TestReleaseToParent(t *testing.T) {
	q := newQuarantine(t)
	cg := testutil.NewCgroup(t)
	sub := filepath.Join(cg.Path, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(sub) })
	dir, err := os.Open(sub)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	cs := startCounters(t, false, dir)

	h, err := q.Freeze(uint32(cs[0].pid), cs[0].start, "gone")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sub); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	if got, want := cs[0].cgroup(t), "/"+filepath.Base(cg.Path); got != want {
		t.Errorf("released into %s, want the parent %s", got, want)
	}
	running(t, cs)
}

// TestFreezeCatchesForks freezes a shell that forks all the time: every
// process of its tree ends up in the leaf.
func TestFreezeCatchesForks(t *testing.T) {
	q := newQuarantine(t)
	cmd := exec.Command("/bin/sh", "-c", "while :; do /bin/sleep 1 & /bin/true; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var h *Held
	t.Cleanup(func() {
		if h != nil {
			_ = h.Kill()
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		// The shell's background sleeps are this test's orphans now.
		for {
			if pid, _ := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); pid <= 0 {
				break
			}
		}
	})
	time.Sleep(50 * time.Millisecond)
	st, err := readStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	h, err = q.Freeze(uint32(cmd.Process.Pid), st.start, "forker")
	if err != nil {
		t.Fatal(err)
	}
	tree, err := Tree(uint32(cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	held := h.PIDs()
	for _, p := range tree {
		// A child that exited before the shell froze stays a zombie until the
		// shell reaps it: it is in no cgroup's list, and nothing runs to hold.
		if !slices.Contains(held, p) && !isZombie(p) {
			t.Errorf("process %d of the tree is not held (tree %v, held %v)", p, tree, held)
		}
	}
	if len(tree) < 2 {
		t.Errorf("tree %v: want the shell and its sleeps", tree)
	}
	if err := h.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("shell after Kill: %v", err)
	}
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	h = nil
}

func TestKillTree(t *testing.T) {
	testutil.RequireRoot(t)
	cs := startCounters(t, true, nil)
	sibling := startCounters(t, false, nil)

	if _, err := KillTree(uint32(cs[0].pid), cs[0].start+2e9); !errors.Is(err, ErrNotSameProcess) {
		t.Errorf("KillTree with another start time: %v, want ErrNotSameProcess", err)
	}
	running(t, cs)

	killed, err := KillTree(uint32(cs[0].pid), cs[0].start)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{cs[0].pid, cs[1].pid}; !slices.Equal(killed, want) {
		t.Errorf("killed %v, want %v", killed, want)
	}
	for _, c := range cs {
		// Both are this test's children now (the child an orphan).
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(c.pid, &ws, 0, nil); err != nil || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("process %d: %v (status %#x), want killed by SIGKILL", c.pid, err, ws)
		}
	}
	running(t, sibling)
}

func TestRefusals(t *testing.T) {
	testutil.RequireRoot(t)
	q := newQuarantine(t)
	self, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	kthreadd, err := readStat(2)
	if err != nil {
		t.Fatal(err)
	}
	if kthreadd.comm != "kthreadd" {
		t.Skipf("pid 2 is %s, not kthreadd", kthreadd.comm)
	}
	init, _ := readStat(1)
	for _, c := range []struct {
		pid   int
		start uint64
		want  string
	}{
		{1, init.start, "refused: pid 1 is init"},
		{2, kthreadd.start, "refused: pid 2 (kthreadd) is a kernel thread"},
		{self.pid, self.start, fmt.Sprintf("refused: pid %d is this process", self.pid)},
	} {
		_, err := q.Freeze(uint32(c.pid), c.start, "refused")
		if err == nil || err.Error() != "freeze: "+c.want || !errors.Is(err, ErrRefused) {
			t.Errorf("Freeze(%d) = %v, want %q", c.pid, err, "freeze: "+c.want)
		}
		_, err = KillTree(uint32(c.pid), c.start)
		if err == nil || err.Error() != "kill tree: "+c.want || !errors.Is(err, ErrRefused) {
			t.Errorf("KillTree(%d) = %v, want %q", c.pid, err, "kill tree: "+c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(q.Root(), "refused")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused Freeze left a leaf: %v", err)
	}

	// A pid whose start time is not the caller's is another process.
	cs := startCounters(t, false, nil)
	before := cs[0].cgroup(t)
	_, err = q.Freeze(uint32(cs[0].pid), cs[0].start+2e9, "reused")
	if !errors.Is(err, ErrNotSameProcess) || !strings.Contains(err.Error(), strconv.Itoa(cs[0].pid)) {
		t.Errorf("Freeze with another start time: %v, want ErrNotSameProcess naming the pid", err)
	}
	if got := cs[0].cgroup(t); got != before {
		t.Errorf("refused process moved from %s to %s", before, got)
	}
	if _, err := os.Stat(filepath.Join(q.Root(), "reused")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused Freeze left a leaf: %v", err)
	}
	running(t, cs)

	// A tree that holds the caller.
	err = checkTree(stat{pid: 77}, []stat{{pid: 77}, {pid: os.Getpid()}})
	if want := fmt.Sprintf("refused: the tree of pid 77 holds this process (%d)", os.Getpid()); err == nil || err.Error() != want {
		t.Errorf("checkTree = %v, want %q", err, want)
	}
	// Leaf names are one plain path component.
	for _, name := range []string{"", "..", ".hidden", "a/b", "a b", strings.Repeat("x", 201)} {
		if _, err := q.Freeze(uint32(cs[0].pid), cs[0].start, name); err == nil || !strings.Contains(err.Error(), "leaf cgroup name") {
			t.Errorf("name %q: %v, want refused", name, err)
		}
	}
}

func TestParseStat(t *testing.T) {
	st, err := parseStat([]byte("42 (a) (b c) S 7 42 42 0 -1 4194560 0 0 0 0 3 1 0 0 20 0 1 0 12345 0 0"))
	if err != nil {
		t.Fatal(err)
	}
	if st.comm != "a) (b c" || st.ppid != 7 || st.flags != 4194560 || st.start != 12345*clockTickNS {
		t.Errorf("parsed %+v", st)
	}
	if _, err := parseStat([]byte("42 (a) S 7")); err == nil {
		t.Error("short stat accepted")
	}
}

// TestAdoptAfterRestart: an agent started again finds the tree an earlier
// run froze and releases it to where it came from.
func TestAdoptAfterRestart(t *testing.T) {
	q := newQuarantine(t)
	q.StateDir = t.TempDir()
	cg := testutil.NewCgroup(t)
	cs := startCounters(t, true, cg.Dir)
	orig := cs[0].cgroup(t)
	if _, err := q.Freeze(uint32(cs[0].pid), cs[0].start, "act-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(q.StateDir, "act-1.json")); err != nil {
		t.Fatalf("no record of the held tree: %v", err)
	}
	// A stale record of a leaf that is gone is dropped on adoption.
	if err := os.WriteFile(filepath.Join(q.StateDir, "gone.json"), []byte(`{"name":"gone"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := NewQuarantine(q.Root())
	if err != nil {
		t.Fatal(err)
	}
	again.StateDir = q.StateDir
	held, err := again.Adopt()
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != 1 || held[0].Name() != "act-1" || !slices.Equal(held[0].PIDs(), pidsOf(cs)) {
		t.Fatalf("adopted %d trees (%v), want act-1 holding %v", len(held), held, pidsOf(cs))
	}
	stopped(t, cs, 200*time.Millisecond)
	if err := held[0].Release(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if got := c.cgroup(t); got != orig {
			t.Errorf("released process %d in %s, want %s", c.pid, got, orig)
		}
	}
	running(t, cs)
	for _, f := range []string{"act-1.json", "gone.json"} {
		if _, err := os.Stat(filepath.Join(q.StateDir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("record %s after release: %v, want it removed", f, err)
		}
	}
}

// isZombie reports whether process pid has exited and waits to be reaped.
func isZombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}
