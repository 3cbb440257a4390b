package file

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/kernelfs"
	"github.com/vigil-sensor/vigil/internal/sensortest"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// helperEnv selects a helper mode when the test binary re-executes itself.
const helperEnv = "VIGIL_FILE_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runHelper runs a helper mode in a child process. Modes that do bulk work
// print "ready" and wait for a line on stdin first, so the test can read
// the counters at a known point.
func runHelper(mode string, args []string) int {
	switch mode {
	case "setuid":
		if err := syscall.Setuid(65534); err != nil {
			fmt.Fprintln(os.Stderr, "setuid:", err)
			return 1
		}
		return 0
	case "opens":
		// opens <dir> <files> <rounds> <final path>: open and close every file
		// of dir rounds times (half by absolute path, half relative to a
		// dirfd), then open the final path once for read.
		files, _ := strconv.Atoi(args[1])
		rounds, _ := strconv.Atoi(args[2])
		fmt.Println("ready")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return 1
		}
		dirfd, err := unix.Open(args[0], unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return 1
		}
		for r := 0; r < rounds; r++ {
			for i := 0; i < files; i++ {
				name := "f" + strconv.Itoa(i)
				var fd int
				if i%2 == 0 {
					fd, err = unix.Open(args[0]+"/"+name, unix.O_RDONLY, 0)
				} else {
					fd, err = unix.Openat(dirfd, name, unix.O_RDONLY, 0)
				}
				if err != nil {
					return 1
				}
				unix.Close(fd)
			}
		}
		fd, err := unix.Open(args[3], unix.O_RDONLY, 0)
		if err != nil {
			return 1
		}
		unix.Close(fd)
		return 0
	case "writes":
		// writes <path> <n>: open path for write n times.
		n, _ := strconv.Atoi(args[1])
		fmt.Println("ready")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return 1
		}
		for i := 0; i < n; i++ {
			fd, err := unix.Open(args[0], unix.O_WRONLY, 0)
			if err != nil {
				return 1
			}
			unix.Close(fd)
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 2
}

// testRoot makes a throwaway directory under /var/cache (not a temporary
// directory, which may be a tmpfs the sensor sees under another path).
func testRoot(t testing.TB, tag string) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	dir := filepath.Join("/var/cache", "vigil-test-"+tag+"-"+hex.EncodeToString(b))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// testCgroup makes a throwaway cgroup v2 and returns its id and an open
// descriptor to start helpers in it.
func testCgroup(t *testing.T) (uint64, int) {
	t.Helper()
	root := ""
	for _, c := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		var st unix.Statfs_t
		if unix.Statfs(c, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			root = c
			break
		}
	}
	if root == "" {
		t.Fatal("no cgroup v2 hierarchy mounted")
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	dir := filepath.Join(root, "vigil-test-"+hex.EncodeToString(b))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(fd)
		_ = os.Remove(dir)
	})
	return st.Ino, fd
}

// startHelper starts the test binary as a helper in cgroup cgfd (-1: this
// one) and waits for its "ready" line when wait is set; go() lets it work.
func startHelper(t *testing.T, cgfd int, wait bool, mode string, args ...string) (cmd *exec.Cmd, goOn func()) {
	t.Helper()
	cmd = exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	if cgfd >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if wait {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || line != "ready\n" {
			t.Fatalf("helper %s: %q, %v", mode, line, err)
		}
	}
	return cmd, func() {
		if _, err := stdin.Write([]byte("go\n")); err != nil {
			t.Fatal(err)
		}
	}
}

// collector runs a loaded sensor and hands decoded events to the test.
type collector = sensortest.Collector

func load(t testing.TB, opts Options) *Sensor {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := kernelfs.EnsureMounted(kernelfs.Needed); err != nil {
		t.Fatal(err)
	}
	s, err := Load(opts)
	if err != nil {
		t.Fatalf("load file sensor: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func startSensor(t *testing.T, opts Options) (*Sensor, *collector) {
	t.Helper()
	s := load(t, opts)
	return s, sensortest.Collect(t, s)
}

// waitFor returns the first event that match accepts.
func waitFor[T any](t *testing.T, c *collector, what string, match func(*T) bool) *T {
	t.Helper()
	return sensortest.WaitFor(t, c, what, match)
}

// checkProcess checks the identity of an event caused by this test process.
func checkProcess(t *testing.T, p event.Process) {
	t.Helper()
	if p.PID != uint32(os.Getpid()) || p.PPID != uint32(os.Getppid()) || p.UID != 0 || p.EUID != 0 || p.GID != 0 {
		t.Errorf("process = %+v, want pid %d ppid %d, root", p, os.Getpid(), os.Getppid())
	}
	if p.StartTime == 0 || p.CgroupID == 0 || p.Comm == "" {
		t.Errorf("process = %+v: start time, cgroup and comm must be set", p)
	}
}

func fileEvent(t *testing.T, c *collector, op event.FileOp, path string) *event.File {
	t.Helper()
	pid := uint32(os.Getpid())
	return waitFor(t, c, string(op)+" "+path, func(e *event.File) bool {
		return e.Process.PID == pid && e.Op == op && e.Path == path
	})
}

func checkFile(t *testing.T, got *event.File, want event.File) {
	t.Helper()
	checkProcess(t, got.Process)
	if got.Time.IsZero() {
		t.Errorf("%s %s: no time", got.Op, got.Path)
	}
	want.Time, want.Process = got.Time, got.Process
	if *got != want {
		t.Errorf("%s event:\n got %+v\nwant %+v", got.Op, *got, want)
	}
}

func TestFileEvents(t *testing.T) {
	root := testRoot(t, "file")
	_, c := startSensor(t, Options{Policy: Policy{
		WatchPaths: []string{root},
		WatchReads: []string{"/etc/hostname"},
	}})

	// A read of a read-watched file.
	f, err := os.Open("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	fd := int64(f.Fd())
	f.Close()
	checkFile(t, fileEvent(t, c, event.FileOpen, "/etc/hostname"), event.File{
		Op: event.FileOpen, Syscall: "openat", Ret: fd, Path: "/etc/hostname",
		Flags: unix.O_RDONLY | unix.O_CLOEXEC, Read: true,
	})

	// A write, by absolute path.
	a := filepath.Join(root, "a")
	f, err = os.OpenFile(a, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	fd = int64(f.Fd())
	if _, err := f.WriteString("x"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	checkFile(t, fileEvent(t, c, event.FileOpen, a), event.File{
		Op: event.FileOpen, Syscall: "openat", Ret: fd, Path: a,
		Flags: unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC | unix.O_CLOEXEC, Mode: 0o640,
		Write: true, Create: true, Truncate: true,
	})

	// A write relative to a directory descriptor, with a leading "./".
	dirfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirfd)
	wfd, err := unix.Openat(dirfd, "./rel", unix.O_RDWR|unix.O_CREAT|unix.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(wfd)
	checkFile(t, fileEvent(t, c, event.FileOpen, filepath.Join(root, "rel")), event.File{
		Op: event.FileOpen, Syscall: "openat", Ret: int64(wfd), Path: filepath.Join(root, "rel"),
		Flags: unix.O_RDWR | unix.O_CREAT | unix.O_APPEND, Mode: 0o600,
		Read: true, Write: true, Create: true,
	})

	// A failed open for write still reports, with the error.
	missing := filepath.Join(root, "no", "such")
	if _, err := os.OpenFile(missing, os.O_WRONLY, 0); err == nil {
		t.Fatal("opened a missing file")
	}
	checkFile(t, fileEvent(t, c, event.FileOpen, missing), event.File{
		Op: event.FileOpen, Syscall: "openat", Ret: -int64(unix.ENOENT), Path: missing,
		Flags: unix.O_WRONLY | unix.O_CLOEXEC, Write: true,
	})

	// Rename, chmod u+s, chown, link, symlink, unlink.
	b := filepath.Join(root, "b")
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	checkFile(t, fileEvent(t, c, event.FileRename, a), event.File{
		Op: event.FileRename, Syscall: "renameat", Path: a, Path2: b,
	})
	if err := os.Chmod(b, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	checkFile(t, fileEvent(t, c, event.FileChmod, b), event.File{
		Op: event.FileChmod, Syscall: "fchmodat", Path: b, Mode: 0o4755,
	})
	if err := os.Chown(b, 65534, 65533); err != nil {
		t.Fatal(err)
	}
	checkFile(t, fileEvent(t, c, event.FileChown, b), event.File{
		Op: event.FileChown, Syscall: "fchownat", Path: b, UID: 65534, GID: 65533,
	})
	l := filepath.Join(root, "l")
	if err := os.Link(b, l); err != nil {
		t.Fatal(err)
	}
	checkFile(t, fileEvent(t, c, event.FileLink, b), event.File{
		Op: event.FileLink, Syscall: "linkat", Path: b, Path2: l,
	})
	s := filepath.Join(root, "s")
	if err := os.Symlink("/etc/passwd", s); err != nil {
		t.Fatal(err)
	}
	checkFile(t, fileEvent(t, c, event.FileSymlink, s), event.File{
		Op: event.FileSymlink, Syscall: "symlinkat", Path: s, Path2: "/etc/passwd",
	})
	if err := os.Remove(l); err != nil {
		t.Fatal(err)
	}
	checkFile(t, fileEvent(t, c, event.FileUnlink, l), event.File{
		Op: event.FileUnlink, Syscall: "unlinkat", Path: l,
	})
}

// TestSetuidChmodAnywhere checks that setting a setuid or setgid bit is
// reported outside the watched paths, while another chmod there is not.
func TestSetuidChmodAnywhere(t *testing.T) {
	root := testRoot(t, "setid")
	s, c := startSensor(t, Options{Policy: Policy{Kinds: KindChmod, WatchPaths: []string{}, WatchReads: []string{}}})
	plain, shell := filepath.Join(root, "plain"), filepath.Join(root, "sh")
	for _, f := range []string{plain, shell} {
		if err := os.WriteFile(f, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	before, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(plain, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shell, 0o755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	checkFile(t, fileEvent(t, c, event.FileChmod, shell), event.File{
		Op: event.FileChmod, Syscall: "fchmodat", Path: shell, Mode: 0o2755,
	})
	after, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if got := after.FilteredPath - before.FilteredPath; got != 1 {
		t.Errorf("chmods filtered by path: %d, want 1 (the plain chmod)", got)
	}
}

// TestHiddenEntries checks that hidden entries of a watched-hidden
// directory are reported, and everything below a hidden directory, while
// other entries of that directory are not.
func TestHiddenEntries(t *testing.T) {
	root := testRoot(t, "hidden")
	_, c := startSensor(t, Options{Policy: Policy{Kinds: KindOpen | KindRename, WatchPaths: []string{}, WatchReads: []string{}, WatchHidden: []string{root}}})
	for _, name := range []string{"visible", "visible.x", "a.hidden"} {
		if err := os.WriteFile(filepath.Join(root, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dot := filepath.Join(root, ".x")
	if err := os.WriteFile(dot, []byte("payload"), 0o755); err != nil {
		t.Fatal(err)
	}
	opened := fileEvent(t, c, event.FileOpen, dot)
	if opened.Ret < 0 {
		t.Errorf("open of %s failed: %d", dot, opened.Ret)
	}
	checkFile(t, opened, event.File{
		Op: event.FileOpen, Syscall: "openat", Path: dot, Ret: opened.Ret,
		Flags: unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC | unix.O_CLOEXEC, Mode: 0o755, Write: true, Create: true, Truncate: true,
	})
	if err := os.Mkdir(filepath.Join(root, ".cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(root, ".cache", "tool")
	if err := os.Rename(filepath.Join(root, "visible"), deep); err != nil {
		t.Fatal(err)
	}
	ev := fileEvent(t, c, event.FileRename, filepath.Join(root, "visible"))
	if ev.Path2 != deep {
		t.Errorf("rename into a hidden directory: %+v", ev)
	}
	for len(c.Events) > 0 {
		if e, ok := (<-c.Events).(*event.File); ok && !strings.Contains(e.Path+e.Path2, "/.") {
			t.Errorf("an entry that is not hidden was reported: %+v", *e)
		}
	}
}

func TestWildcardWatch(t *testing.T) {
	root := testRoot(t, "wild")
	for _, d := range []string{"alice/.ssh", "bob/other"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s, c := startSensor(t, Options{Policy: Policy{
		Kinds:      KindOpen,
		WatchPaths: []string{},
		WatchReads: []string{root + "/*/.ssh"},
	}})
	before, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	// Not watched: another directory of the same user.
	if err := os.WriteFile(filepath.Join(root, "bob/other/k"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(root, "alice/.ssh/authorized_keys")
	if err := os.WriteFile(key, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	ev := fileEvent(t, c, event.FileOpen, key)
	if !ev.Write || !ev.Create || !ev.Truncate || ev.Ret < 0 {
		t.Errorf("write of %s: %+v", key, ev)
	}
	after, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	// Only the authorized_keys write: nothing else of this test is watched.
	if after.Emitted-before.Emitted < 1 || after.FilteredPath == before.FilteredPath {
		t.Errorf("counters before %+v after %+v", before, after)
	}
}

func TestCredChange(t *testing.T) {
	_, c := startSensor(t, Options{Policy: Policy{Kinds: KindCred}})
	cmd, _ := startHelper(t, -1, false, "setuid")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("setuid helper: %v", err)
	}
	ev := waitFor(t, c, "setuid", func(e *event.CredChange) bool { return e.Process.PID == uint32(cmd.Process.Pid) })
	capEff, capPrm := selfCaps(t)
	want := event.CredChange{
		Time: ev.Time, Process: ev.Process, Syscall: "setuid", Ret: 0, Args: [3]int64{65534, -1, -1},
		Old: event.Creds{CapEffective: capEff, CapPermitted: capPrm},
		New: event.Creds{UID: 65534, EUID: 65534, SUID: 65534, FSUID: 65534},
	}
	if *ev != want {
		t.Errorf("cred change:\n got %+v\nwant %+v", *ev, want)
	}
	if ev.Process.UID != 0 || ev.Process.PPID != uint32(os.Getpid()) {
		t.Errorf("process %+v: want the helper, uid 0 at entry", ev.Process)
	}
}

// selfCaps reads this process's effective and permitted capabilities.
func selfCaps(t *testing.T) (eff, prm uint64) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:\t"); ok {
			eff, _ = strconv.ParseUint(v, 16, 64)
		}
		if v, ok := strings.CutPrefix(line, "CapPrm:\t"); ok {
			prm, _ = strconv.ParseUint(v, 16, 64)
		}
	}
	return eff, prm
}

func TestPtraceMemfdKill(t *testing.T) {
	_, c := startSensor(t, Options{Policy: Policy{Kinds: KindPtrace | KindMemfd | KindKill}})
	pid := uint32(os.Getpid())

	// PTRACE_SEIZE of a child, from a locked thread (the tracer is a thread).
	sleep := exec.Command("/bin/sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sleep.Process.Kill()
		_ = sleep.Wait()
	})
	child := sleep.Process.Pid
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		// The child stays traced until it is killed: a running tracee
		// cannot be detached.
		done <- unix.PtraceSeize(child)
	}()
	if err := <-done; err != nil {
		t.Fatalf("ptrace seize: %v", err)
	}
	pt := waitFor(t, c, "ptrace", func(e *event.Ptrace) bool { return e.Process.PID == pid })
	checkProcess(t, pt.Process)
	if want := (event.Ptrace{Time: pt.Time, Process: pt.Process, Request: event.PtraceSeize, TargetPID: uint32(child)}); *pt != want {
		t.Errorf("ptrace:\n got %+v\nwant %+v", *pt, want)
	}

	// memfd_create.
	mfd, err := unix.MemfdCreate("vigil-test-memfd", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(mfd)
	mem := waitFor(t, c, "memfd", func(e *event.MemfdCreate) bool { return e.Process.PID == pid })
	checkProcess(t, mem.Process)
	if want := (event.MemfdCreate{Time: mem.Time, Process: mem.Process, Ret: int64(mfd), Name: "vigil-test-memfd", Flags: unix.MFD_CLOEXEC}); *mem != want {
		t.Errorf("memfd:\n got %+v\nwant %+v", *mem, want)
	}

	// kill of the child; signals to this process itself (the Go runtime
	// sends itself many) are not reported.
	if err := unix.Kill(child, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	k := waitFor(t, c, "kill", func(e *event.Kill) bool { return e.Process.PID == pid })
	checkProcess(t, k.Process)
	if want := (event.Kill{Time: k.Time, Process: k.Process, Syscall: "kill", TargetPID: int32(child), TargetTID: -1, Signal: int32(unix.SIGTERM)}); *k != want {
		t.Errorf("kill:\n got %+v\nwant %+v", *k, want)
	}
	if err := unix.Kill(os.Getpid(), unix.SIGURG); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(child, 0); err != nil && err != unix.ESRCH {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	for len(c.Events) > 0 {
		if k, ok := (<-c.Events).(*event.Kill); ok && k.Process.PID == pid {
			t.Errorf("unexpected kill event %+v", *k)
		}
	}
}

func TestMountAndBPF(t *testing.T) {
	root := testRoot(t, "mount")
	_, c := startSensor(t, Options{Policy: Policy{Kinds: KindMount | KindUmount | KindBPFProgLoad}})
	pid := uint32(os.Getpid())

	mnt := filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("vigil-test-tmpfs", mnt, "tmpfs", unix.MS_NOSUID, "size=1m"); err != nil {
		t.Fatal(err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	m := waitFor(t, c, "mount", func(e *event.Mount) bool { return e.Process.PID == pid && !e.Unmount })
	checkProcess(t, m.Process)
	if want := (event.Mount{Time: m.Time, Process: m.Process, Syscall: "mount", Source: "vigil-test-tmpfs", Target: mnt, FSType: "tmpfs", Flags: unix.MS_NOSUID}); *m != want {
		t.Errorf("mount:\n got %+v\nwant %+v", *m, want)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	mounted = false
	u := waitFor(t, c, "umount", func(e *event.Mount) bool { return e.Process.PID == pid && e.Unmount })
	if want := (event.Mount{Time: u.Time, Process: u.Process, Syscall: "umount2", Unmount: true, Target: mnt}); *u != want {
		t.Errorf("umount:\n got %+v\nwant %+v", *u, want)
	}

	// A tiny socket filter.
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "vigil_test", Type: ebpf.SocketFilter, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	b := waitFor(t, c, "bpf prog load", func(e *event.BPFProgLoad) bool { return e.Process.PID == pid && e.ProgName == "vigil_test" })
	checkProcess(t, b.Process)
	if want := (event.BPFProgLoad{Time: b.Time, Process: b.Process, Ret: int64(prog.FD()), ProgType: uint32(ebpf.SocketFilter), InsnCount: 2, ProgName: "vigil_test"}); *b != want {
		t.Errorf("bpf:\n got %+v\nwant %+v", *b, want)
	}
}

// TestUnwatchedOpensStayInKernel opens 100,000 files outside the watched
// prefixes from a helper in its own cgroup: none reaches user space; the
// one open under /etc that follows does.
func TestUnwatchedOpensStayInKernel(t *testing.T) {
	root := testRoot(t, "unwatched")
	const files, rounds = 100, 1000
	for i := 0; i < files; i++ {
		if err := os.WriteFile(filepath.Join(root, "f"+strconv.Itoa(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cg, cgfd := testCgroup(t)
	s, c := startSensor(t, Options{Policy: Policy{
		Kinds:      KindOpen,
		WatchPaths: []string{"/etc", "/var/cache/vigil-watched-elsewhere"},
		WatchReads: []string{"/etc"},
		OnlyCgroup: cg,
	}})
	cmd, goOn := startHelper(t, cgfd, true, "opens", root, strconv.Itoa(files), strconv.Itoa(rounds), "/etc/hostname")
	before, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	goOn()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	ev := waitFor(t, c, "open /etc/hostname", func(e *event.File) bool { return e.Process.PID == uint32(cmd.Process.Pid) })
	if ev.Path != "/etc/hostname" || !ev.Read || ev.Write || ev.Ret < 0 || ev.Process.CgroupID != cg {
		t.Errorf("open event %+v", *ev)
	}
	after, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	// The helper's opens: its directory once, then every file every round.
	if got := after.FilteredPath - before.FilteredPath; got != 1+files*rounds {
		t.Errorf("filtered by path: %d, want %d", got, 1+files*rounds)
	}
	if got := after.Emitted - before.Emitted; got != 1 {
		t.Errorf("emitted: %d, want 1", got)
	}
	time.Sleep(50 * time.Millisecond)
	for len(c.Events) > 0 {
		if e, ok := (<-c.Events).(*event.File); ok && e.Process.PID == uint32(cmd.Process.Pid) {
			t.Errorf("unexpected event %+v", *e)
		}
	}
}

// TestLossIsCounted fills a one-page ring that nobody reads: every
// attempted record is either delivered or counted as lost.
func TestLossIsCounted(t *testing.T) {
	root := testRoot(t, "loss")
	target := filepath.Join(root, "w")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cg, cgfd := testCgroup(t)
	s := load(t, Options{RingSize: uint32(os.Getpagesize()), Policy: Policy{
		Kinds: KindOpen, WatchPaths: []string{root}, WatchReads: []string{}, OnlyCgroup: cg,
	}})
	const attempts = 200
	cmd, goOn := startHelper(t, cgfd, true, "writes", target, strconv.Itoa(attempts))
	lostBefore, err := s.Lost()
	if err != nil {
		t.Fatal(err)
	}
	goOn()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	lost, err := s.Lost()
	if err != nil {
		t.Fatal(err)
	}
	lost -= lostBefore
	delivered := 0
	for {
		s.SetDeadline(time.Now().Add(100 * time.Millisecond))
		ev, err := s.Next()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if f, ok := ev.(*event.File); !ok || f.Path != target || f.Process.PID != uint32(cmd.Process.Pid) {
			t.Fatalf("unexpected event %+v", ev)
		}
		delivered++
	}
	if lost == 0 || delivered == 0 || lost+uint64(delivered) != attempts {
		t.Errorf("lost %d + delivered %d, want %d with both non-zero", lost, delivered, attempts)
	}
	ctr, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if ctr.Emitted != uint64(delivered) {
		t.Errorf("emitted counter %d, delivered %d", ctr.Emitted, delivered)
	}
}

func TestAllowListsDropInKernel(t *testing.T) {
	root := testRoot(t, "allow")
	s, c := startSensor(t, Options{Policy: Policy{
		Kinds: KindOpen, WatchPaths: []string{root}, WatchReads: []string{},
		AllowPIDs: []uint32{uint32(os.Getpid())},
	}})
	// Allow-listed by pid: dropped.
	before, _ := s.Counters()
	if err := os.WriteFile(filepath.Join(root, "dropped"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Counters()
	if after.FilteredAllow-before.FilteredAllow != 1 || after.Emitted != before.Emitted {
		t.Errorf("pid allow-list: counters before %+v after %+v", before, after)
	}
	// Allow-listed executable: a cp of this test binary writes unreported.
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPolicy(Policy{WatchPaths: []string{root}, WatchReads: []string{}, AllowExes: []string{sh}}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("/bin/sh", "-c", "echo x > "+root+"/by-sh").CombinedOutput(); err != nil {
		t.Fatalf("sh: %v %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(root, "reported"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fileEvent(t, c, event.FileOpen, filepath.Join(root, "reported"))
	for len(c.Events) > 0 {
		if e, ok := (<-c.Events).(*event.File); ok && strings.HasSuffix(e.Path, "/by-sh") || ok && strings.HasSuffix(e.Path, "/dropped") {
			t.Errorf("allow-listed event reported: %+v", *e)
		}
	}
}

func TestBuildWatch(t *testing.T) {
	entries, err := buildWatch([]string{"/etc", "/home/*/.ssh"}, []string{"/etc/shadow"}, []string{"/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range entries {
		got[e.key] = fmt.Sprintf("%d/%d", e.flags, e.headLen)
	}
	want := map[string]string{
		"/etc/": "1/0", "/etc\x00": "1/0", "/etc/shadow/": "3/0", "/etc/shadow\x00": "3/0",
		"/home/": "4/6", "/home/*/.ssh/": "5/6", "/home/*/.ssh\x00": "5/6",
		"/tmp/.": "1/0",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("entries = %q, want %q", got, want)
	}
	for _, bad := range []string{"etc", "/home/*/x/*", "/ho*me"} {
		if _, err := buildWatch([]string{bad}, nil, nil); !errors.Is(err, errBadPattern) {
			t.Errorf("pattern %q: err %v", bad, err)
		}
	}
	for _, bad := range []string{"tmp", "/home/*", "/"} {
		if _, err := buildWatch(nil, nil, []string{bad}); !errors.Is(err, errBadPattern) {
			t.Errorf("hidden-entry directory %q: err %v", bad, err)
		}
	}
}
