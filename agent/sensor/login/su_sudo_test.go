package login

import (
	"github.com/vigil-sensor/vigil/internal/sshtest"

	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sensor/vigil/agent/event"
)

// openPTY opens a pseudo-terminal pair and returns the master, the slave
// and the slave's path; both are closed when the test ends.
func openPTY(t *testing.T) (*os.File, *os.File, string) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty master: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	path := fmt.Sprintf("/dev/pts/%d", n)
	slave, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave, path
}

// readUntil reads the pty master until want shows up.
func readUntil(t *testing.T, master *os.File, want string) {
	t.Helper()
	var seen bytes.Buffer
	buf := make([]byte, 256)
	_ = master.SetReadDeadline(time.Now().Add(10 * time.Second))
	for !strings.Contains(seen.String(), want) {
		n, err := master.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %q on the terminal (saw %q): %v", want, seen.String(), err)
		}
		seen.Write(buf[:n])
	}
}

func asUser(u *sshtest.TestUser) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{u.GID}}}
}

func TestSuWrongPassword(t *testing.T) {
	_, c := startSensor(t, Options{})
	u := sshtest.CreateUser(t)
	master, slave, tty := openPTY(t)

	// The test user runs su on its own terminal and types a wrong password.
	cmd := exec.Command("/usr/bin/su", "--command", "true", u.Name)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	cmd.SysProcAttr = asUser(u)
	cmd.SysProcAttr.Setsid = true
	cmd.SysProcAttr.Setctty = true
	if err := cmd.Start(); err != nil {
		t.Fatalf("start su: %v", err)
	}
	readUntil(t, master, "Password:")
	if _, err := master.Write([]byte("wrong-" + u.Password + "\n")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, master, "Authentication failure")
	var exitErr *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("su with a wrong password: %v, want exit status 1", err)
	}

	ev := c.waitN(t, "su pam_authenticate", 1, func(ev *event.Login) bool {
		return ev.Op == event.LoginAuthenticate && ev.Process.PID == uint32(cmd.Process.Pid)
	})[0]
	if ev.Result != event.PAMAuthErr || ev.Succeeded() {
		t.Errorf("su: result %v, want PAM_AUTH_ERR", ev.Result)
	}
	// su names the calling user as PAM_RUSER and the terminal as PAM_TTY.
	checkItems(t, ev, "su", u.Name, u.Name, "", tty)
	// su is set-user-id root: real uid stays the caller's, effective is root.
	if p := ev.Process; p.UID != u.UID || p.EUID != 0 || p.Comm != "su" || p.PPID != uint32(os.Getpid()) {
		t.Errorf("su process: uid %d euid %d comm %q ppid %d, want %d, 0, su, %d", p.UID, p.EUID, p.Comm, p.PPID, u.UID, os.Getpid())
	}
	// A failed authentication goes no further.
	if n := len(c.waitN(t, "su pam_acct_mgmt", 0, func(ev *event.Login) bool {
		return ev.Op != event.LoginAuthenticate && ev.Process.PID == uint32(cmd.Process.Pid)
	})); n != 0 {
		t.Errorf("%d more PAM events from the failed su, want 0", n)
	}
}

func TestSudoWithPassword(t *testing.T) {
	sshtest.RequireTool(t, "/usr/bin/sudo", "sudo")
	_, c := startSensor(t, Options{})
	u := sshtest.CreateUser(t)

	// A throwaway rule letting the test user run commands as nobody, with its password.
	rule := filepath.Join("/etc/sudoers.d", u.Name)
	if err := os.WriteFile(rule, []byte(u.Name+" ALL=(nobody) ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(rule); err != nil {
			t.Errorf("remove %s: %v", rule, err)
		}
	})
	sshtest.Run(t, "", "visudo", "--check", "--file", rule)

	// -S reads the password from standard input; -k ignores any cached credentials.
	cmd := exec.Command("/usr/bin/sudo", "-k", "-S", "-p", "", "-u", "nobody", "/bin/true")
	cmd.Stdin = strings.NewReader(u.Password + "\n")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	cmd.SysProcAttr = asUser(u)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sudo: %v\n%s", err, out)
	}
	pid := uint32(cmd.Process.Pid)
	fromSudo := func(op event.LoginOp) func(*event.Login) bool {
		return func(ev *event.Login) bool { return ev.Op == op && ev.Process.PID == pid }
	}
	var prev *event.Login
	for _, op := range AllOps {
		evs := c.waitN(t, "sudo "+op.String(), 1, fromSudo(op))
		if len(evs) != 1 {
			t.Errorf("%d sudo %s events, want 1", len(evs), op)
		}
		ev := evs[0]
		if ev.Result != event.PAMSuccess {
			t.Errorf("sudo %s: result %v, want PAM_SUCCESS", op, ev.Result)
		}
		// sudo authenticates and checks the invoking user (also PAM_RUSER),
		// then makes the target user PAM_USER for the session; without a
		// terminal it sets an empty PAM_TTY, and no PAM_RHOST.
		wantUser := u.Name
		if op == event.LoginOpenSession || op == event.LoginCloseSession {
			wantUser = "nobody"
		}
		checkItems(t, ev, "sudo", wantUser, u.Name, "", "")
		if p := ev.Process; p.UID != u.UID || p.EUID != 0 || p.Comm != "sudo" || p.PPID != uint32(os.Getpid()) {
			t.Errorf("sudo %s process: uid %d euid %d comm %q ppid %d, want %d, 0, sudo, %d", op, p.UID, p.EUID, p.Comm, p.PPID, u.UID, os.Getpid())
		}
		if prev != nil && !prev.Time.Before(ev.Time) {
			t.Errorf("sudo %s at %v, not after %s at %v", op, ev.Time, prev.Op, prev.Time)
		}
		prev = ev
	}
}

// TestOnlyAskedOpsAndLayoutCheck watches pam_authenticate alone, with a
// handle layout whose caller_is offset is wrong: the sensor must report the
// call, flag the mismatch and read no item through untrusted pointers.
func TestOnlyAskedOpsAndLayoutCheck(t *testing.T) {
	sshtest.RequireTool(t, "/usr/bin/sudo", "sudo")
	wrong := LinuxPAM64
	wrong.CallerIs = 16 // the conversation pointer: never 1 or 2
	s, c := startSensor(t, Options{Ops: []event.LoginOp{event.LoginAuthenticate}, Layout: &wrong})
	// The return probe is attached first, so that no entry goes without its return.
	if hooks := s.Hooks(); len(hooks) != 2 || hooks[0] != "uretprobe:"+s.LibPAM()+":pam_authenticate" || hooks[1] != "uprobe:"+s.LibPAM()+":pam_authenticate" {
		t.Errorf("hooks = %q, want the pam_authenticate uretprobe and uprobe", hooks)
	}
	u := sshtest.CreateUser(t)
	rule := filepath.Join("/etc/sudoers.d", u.Name)
	if err := os.WriteFile(rule, []byte(u.Name+" ALL=(nobody) ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(rule) })
	cmd := exec.Command("/usr/bin/sudo", "-k", "-S", "-p", "", "-u", "nobody", "/bin/true")
	cmd.Stdin = strings.NewReader(u.Password + "\n")
	cmd.SysProcAttr = asUser(u)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sudo: %v\n%s", err, out)
	}
	pid := uint32(cmd.Process.Pid)
	ev := c.waitN(t, "sudo pam_authenticate", 1, func(ev *event.Login) bool { return ev.Process.PID == pid })[0]
	if ev.Op != event.LoginAuthenticate || ev.Result != event.PAMSuccess {
		t.Errorf("got %s %v, want pam_authenticate PAM_SUCCESS", ev.Op, ev.Result)
	}
	if !ev.LayoutMismatch || ev.Service != "" || ev.User != "" || ev.RemoteUser != "" || ev.TTY != "" {
		t.Errorf("layout mismatch %v, items %q/%q/%q/%q: want flagged and empty", ev.LayoutMismatch, ev.Service, ev.User, ev.RemoteUser, ev.TTY)
	}
	// sudo also checked the account and opened a session: not asked for, not reported.
	time.Sleep(3 * sensorPoll)
	if evs := c.waitN(t, "sudo", 0, func(ev *event.Login) bool { return ev.Process.PID == pid }); len(evs) != 1 {
		t.Errorf("%d events from sudo, want only pam_authenticate", len(evs))
	}
}

// TestIgnoredServicesAreDroppedInKernel ignores sudo: root's sudo (account
// check and session, no authentication) reports nothing, while runuser,
// another PAM service, still does.
func TestIgnoredServicesAreDroppedInKernel(t *testing.T) {
	sshtest.RequireTool(t, "/usr/bin/sudo", "sudo")
	sshtest.RequireTool(t, "/usr/sbin/runuser", "util-linux")
	s, c := startSensor(t, Options{IgnoreServices: []string{"sudo", "cron"}})

	sudo := exec.Command("/usr/bin/sudo", "-u", "nobody", "/bin/true")
	if out, err := sudo.CombinedOutput(); err != nil {
		t.Fatalf("sudo: %v\n%s", err, out)
	}
	runuser := exec.Command("/usr/sbin/runuser", "-u", "nobody", "--", "/bin/true")
	if out, err := runuser.CombinedOutput(); err != nil {
		t.Fatalf("runuser: %v\n%s", err, out)
	}
	// runuser neither authenticates nor checks the account: it only runs a session.
	pid := uint32(runuser.Process.Pid)
	evs := c.waitN(t, "runuser", 2, func(ev *event.Login) bool { return ev.Process.PID == pid })
	if len(evs) != 2 {
		t.Errorf("%d runuser events, want 2", len(evs))
	}
	for i, op := range []event.LoginOp{event.LoginOpenSession, event.LoginCloseSession} {
		if i >= len(evs) || evs[i].Op != op || evs[i].Result != event.PAMSuccess {
			t.Fatalf("runuser event %d: %+v, want %s PAM_SUCCESS", i, evs[i], op)
		}
		checkItems(t, evs[i], "runuser", "nobody", "root", "", "")
	}
	if n := len(c.waitN(t, "sudo", 0, func(ev *event.Login) bool { return ev.Process.PID == uint32(sudo.Process.Pid) })); n != 0 {
		t.Errorf("%d events from the ignored sudo, want 0", n)
	}
	if lost, err := s.Lost(); err != nil || lost != 0 {
		t.Errorf("lost = %d, %v; want 0", lost, err)
	}
	if _, err := Load(Options{IgnoreServices: []string{strings.Repeat("x", MaxServiceLen)}}); err == nil {
		t.Error("Load accepted a service name longer than MaxServiceLen-1")
	}
}
