package process

import (
	"errors"
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

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/internal/sensortest"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// collector runs a loaded sensor and hands decoded events to the test.
type collector = sensortest.Collector

func startSensor(t *testing.T, opts Options) (*Sensor, *collector) {
	t.Helper()
	testutil.RequireRoot(t)
	p, err := Load(opts)
	if err != nil {
		t.Fatalf("load process sensor: %v", err)
	}
	return p, sensortest.Collect(t, p)
}

// execOf waits for the exec event of pid.
func execOf(t *testing.T, c *collector, pid int) *event.Exec {
	t.Helper()
	return sensortest.WaitFor(t, c, "exec", func(e *event.Exec) bool { return e.Process.PID == uint32(pid) })
}

// exitOf waits for the exit event of pid.
func exitOf(t *testing.T, c *collector, pid int) *event.Exit {
	t.Helper()
	return sensortest.WaitFor(t, c, "exit", func(e *event.Exit) bool { return e.Process.PID == uint32(pid) })
}

func TestExecAndExitEvents(t *testing.T) {
	_, c := startSensor(t, Options{})
	wantExe, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	// A directory the unprivileged user may enter, with a mount-free path.
	dir := "/usr/share"
	wantCwd, _ := filepath.EvalSymlinks(dir)

	cmd := exec.Command("/bin/sh", "-c", "exit 3", "vigil-arg0")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65533}}
	err = cmd.Run()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 3 {
		t.Fatalf("run sh: %v", err)
	}
	pid := cmd.Process.Pid

	ex := execOf(t, c, pid)
	if ex.Exe != wantExe {
		t.Errorf("exe = %q, want %q", ex.Exe, wantExe)
	}
	if ex.Filename != "/bin/sh" {
		t.Errorf("filename = %q, want /bin/sh", ex.Filename)
	}
	if want := []string{"/bin/sh", "-c", "exit 3", "vigil-arg0"}; !slices.Equal(ex.Args, want) {
		t.Errorf("args = %q, want %q", ex.Args, want)
	}
	if ex.ArgsTruncated || ex.ExeTruncated || ex.ExeDeleted || ex.ExeMemfd {
		t.Errorf("unexpected flags: %+v", ex)
	}
	if ex.Cwd != wantCwd {
		t.Errorf("cwd = %q, want %q", ex.Cwd, wantCwd)
	}
	if ex.Process.PPID != uint32(os.Getpid()) {
		t.Errorf("ppid = %d, want %d", ex.Process.PPID, os.Getpid())
	}
	if ex.Process.UID != 65534 || ex.Process.EUID != 65534 || ex.Process.GID != 65533 {
		t.Errorf("uid/euid/gid = %d/%d/%d, want 65534/65534/65533", ex.Process.UID, ex.Process.EUID, ex.Process.GID)
	}
	// The child inherits this test's audit session and login uid.
	for _, id := range []struct {
		file string
		got  uint32
	}{{"sessionid", ex.Process.SessionID}, {"loginuid", ex.Process.LoginUID}} {
		b, err := os.ReadFile("/proc/self/" + id.file)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSpace(string(b)); strconv.FormatUint(uint64(id.got), 10) != want {
			t.Errorf("%s = %d, want %s (inherited from this test)", id.file, id.got, want)
		}
	}
	if ex.Process.Comm != "sh" {
		t.Errorf("comm = %q, want sh", ex.Process.Comm)
	}
	if ex.Process.StartTime == 0 || ex.Process.CgroupID == 0 {
		t.Errorf("start time %d, cgroup id %d: want both set", ex.Process.StartTime, ex.Process.CgroupID)
	}
	// /proc reports the start time in clock ticks (1/100 s) since boot.
	var self unix.Sysinfo_t
	_ = unix.Sysinfo(&self)
	if up := uint64(self.Uptime) * 1e9; ex.Process.StartTime > up+2e9 {
		t.Errorf("start time %d ns since boot is after uptime %d", ex.Process.StartTime, up)
	}

	exit := exitOf(t, c, pid)
	if exit.ExitCode != 3<<8 {
		t.Errorf("exit code = %#x, want %#x", exit.ExitCode, 3<<8)
	}
	if exit.Process.StartTime != ex.Process.StartTime {
		t.Errorf("exit start time %d != exec start time %d", exit.Process.StartTime, ex.Process.StartTime)
	}
}

func TestForkEventAndKilledExit(t *testing.T) {
	_, c := startSensor(t, Options{})
	cmd := exec.Command("/bin/sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	fork := sensortest.WaitFor(t, c, "fork", func(f *event.Fork) bool { return f.Process.PID == uint32(pid) })
	if fork.Process.PPID != uint32(os.Getpid()) {
		t.Errorf("fork ppid = %d, want %d", fork.Process.PPID, os.Getpid())
	}
	ex := execOf(t, c, pid)
	if ex.Process.StartTime != fork.Process.StartTime {
		t.Errorf("exec start time %d != fork start time %d", ex.Process.StartTime, fork.Process.StartTime)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if got := exitOf(t, c, pid).ExitCode; got != int32(syscall.SIGKILL) {
		t.Errorf("exit code = %#x, want %#x (killed by SIGKILL)", got, int32(syscall.SIGKILL))
	}
}

func TestArgsAreBoundedAndMarked(t *testing.T) {
	_, c := startSensor(t, Options{})
	args := make([]string, 0, 20)
	for i := range 20 {
		args = append(args, "a"+strings.Repeat("x", i))
	}
	cmd := exec.Command("/bin/true", args...)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	ex := execOf(t, c, cmd.Process.Pid)
	if len(ex.Args) != event.MaxArgs || !ex.ArgsTruncated {
		t.Fatalf("got %d args, truncated=%v; want %d, truncated", len(ex.Args), ex.ArgsTruncated, event.MaxArgs)
	}
	if ex.Args[0] != "/bin/true" || ex.Args[15] != args[14] {
		t.Errorf("args = %q", ex.Args)
	}

	long := strings.Repeat("y", 2000)
	cmd = exec.Command("/bin/true", long)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	ex = execOf(t, c, cmd.Process.Pid)
	if !ex.ArgsTruncated || len(ex.Args) != 2 || ex.Args[1] != long[:1024-len("/bin/true")-1] {
		t.Errorf("long arg: truncated=%v, %d args, second %d bytes", ex.ArgsTruncated, len(ex.Args), len(ex.Args[len(ex.Args)-1]))
	}
}

func TestMemfdAndDeletedExecutables(t *testing.T) {
	_, c := startSensor(t, Options{})
	image, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}

	// A memfd image, executed through /proc/self/fd.
	fd, err := unix.MemfdCreate("vigil-test", 0)
	if err != nil {
		t.Fatal(err)
	}
	mem := os.NewFile(uintptr(fd), "memfd")
	defer mem.Close()
	if _, err := mem.Write(image); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{mem}
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	ex := execOf(t, c, cmd.Process.Pid)
	if !ex.ExeMemfd || !ex.ExeDeleted || ex.Exe != "/memfd:vigil-test" {
		t.Errorf("memfd exec: exe %q memfd=%v deleted=%v; want /memfd:vigil-test, both set", ex.Exe, ex.ExeMemfd, ex.ExeDeleted)
	}

	// A file unlinked before it is executed from an open descriptor.
	path := filepath.Join(t.TempDir(), "gone")
	if err := os.WriteFile(path, image, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wantExe, _ := filepath.EvalSymlinks(path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command("/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	ex = execOf(t, c, cmd.Process.Pid)
	if !ex.ExeDeleted || ex.ExeMemfd || ex.Exe != wantExe {
		t.Errorf("deleted exec: exe %q deleted=%v memfd=%v; want %q, deleted only", ex.Exe, ex.ExeDeleted, ex.ExeMemfd, wantExe)
	}
}

func TestRingSizeValidation(t *testing.T) {
	for _, size := range []uint32{1000, 4096 * 3, 12} {
		if err := sensor.CheckRingSize(size); err == nil {
			t.Errorf("ring size %d accepted", size)
		}
	}
	if err := sensor.CheckRingSize(1 << 20); err != nil {
		t.Errorf("ring size 1 MiB refused: %v", err)
	}
}

// TestLossIsCountedExactly floods a one-page ring that nobody reads with a
// known number of events (from a cgroup the sensor is limited to) and checks
// that every one was either delivered or counted lost.
func TestLossIsCountedExactly(t *testing.T) {
	cg := testutil.NewCgroup(t)
	s, err := Load(Options{RingSize: uint32(os.Getpagesize()), CgroupID: cg.ID})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// In the cgroup from its first instruction: the shell's fork, exec and
	// exit, and 1000 fork+exec+exit of /bin/true.
	const n = 1000
	cmd := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Dir.Fd())}
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	want := uint64(3 + 3*n)

	// Drain what fitted.
	var delivered uint64
	for {
		s.SetDeadline(time.Now().Add(300 * time.Millisecond))
		ev, err := s.Next()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var p event.Process
		switch e := ev.(type) {
		case *event.Fork:
			p = e.Process
		case *event.Exec:
			p = e.Process
		case *event.Exit:
			p = e.Process
		}
		if p.CgroupID != cg.ID {
			t.Fatalf("event from cgroup %d, want only %d: %+v", p.CgroupID, cg.ID, ev)
		}
		delivered++
	}
	lost, err := s.Lost()
	if err != nil {
		t.Fatal(err)
	}
	if lost == 0 || delivered == 0 {
		t.Fatalf("delivered %d, lost %d: the flood should both fill the ring and lose some", delivered, lost)
	}
	if delivered+lost != want {
		t.Fatalf("delivered %d + lost %d = %d, want exactly %d attempted", delivered, lost, delivered+lost, want)
	}
	t.Logf("one-page ring: %d delivered, %d lost of %d", delivered, lost, want)
}
