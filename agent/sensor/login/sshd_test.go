package login

import (
	"github.com/vigil-sensor/vigil/internal/sshtest"

	"errors"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-sensor/vigil/agent/event"
)

func TestSSHDPasswordLogins(t *testing.T) {
	_, c := startSensor(t, Options{})
	u := sshtest.CreateUser(t)
	port, sshd := sshtest.StartSSHD(t, u)
	forUser := func(op event.LoginOp) func(*event.Login) bool {
		return func(ev *event.Login) bool { return ev.Op == op && ev.User == u.Name }
	}

	// Three failed password logins, at once: each waits out PAM's failure delay.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			_, err := sshtest.SSHLogin(t, port, u, "wrong-"+u.Password, "true")
			var exitErr *exec.ExitError
			// ssh gives up after its one password prompt: exit status 255.
			if !errors.As(err, &exitErr) || exitErr.ExitCode() != 255 || !strings.Contains(string(exitErr.Stderr), "Permission denied") {
				t.Errorf("ssh with a wrong password: %v, want exit status 255 and permission denied", err)
			}
		})
	}
	wg.Wait()
	failed := c.waitN(t, "failed pam_authenticate", 3, forUser(event.LoginAuthenticate))
	if len(failed) != 3 {
		t.Errorf("%d pam_authenticate events, want 3", len(failed))
	}
	pids := map[uint32]bool{}
	for _, ev := range failed {
		if ev.Result != event.PAMAuthErr {
			t.Errorf("failed login: result %v, want PAM_AUTH_ERR", ev.Result)
		}
		checkItems(t, ev, "sshd", u.Name, "", "127.0.0.1", "ssh")
		// Each connection has its own privileged sshd, a child of the listener.
		checkProcess(t, "failed login", ev.Process, 0, 0, "sshd")
		if ev.Process.PPID != uint32(sshd.Pid) {
			t.Errorf("failed login: ppid = %d, want the listening sshd %d", ev.Process.PPID, sshd.Pid)
		}
		pids[ev.Process.PID] = true
	}
	if len(pids) != 3 {
		t.Errorf("failed logins came from %d sshd processes, want 3", len(pids))
	}
	for _, op := range []event.LoginOp{event.LoginAccount, event.LoginOpenSession} {
		if n := len(c.waitN(t, op.String(), 0, forUser(op))); n != 0 {
			t.Errorf("%d %s events after failed logins, want 0", n, op)
		}
	}

	// One successful login whose command reports its own audit session and login uid.
	out, err := sshtest.SSHLogin(t, port, u, u.Password, "cat /proc/self/sessionid; echo; cat /proc/self/loginuid")
	if err != nil {
		t.Fatalf("ssh with the right password: %v", err)
	}
	fields := strings.Fields(out)
	if len(fields) != 2 {
		t.Fatalf("remote command printed %q, want session id and login uid", out)
	}
	remoteSession, _ := strconv.ParseUint(fields[0], 10, 32)
	remoteLoginUID, _ := strconv.ParseUint(fields[1], 10, 32)
	if uint32(remoteLoginUID) != u.UID {
		t.Errorf("remote login uid = %d, want %d", remoteLoginUID, u.UID)
	}

	auth := c.waitN(t, "pam_authenticate", 4, forUser(event.LoginAuthenticate))[3]
	acct := c.waitN(t, "pam_acct_mgmt", 1, forUser(event.LoginAccount))[0]
	open := c.waitN(t, "pam_open_session", 1, forUser(event.LoginOpenSession))[0]
	closed := c.waitN(t, "pam_close_session", 1, forUser(event.LoginCloseSession))[0]
	for _, ev := range []*event.Login{auth, acct, open, closed} {
		if ev.Result != event.PAMSuccess || !ev.Succeeded() {
			t.Errorf("%s: result %v, want PAM_SUCCESS", ev.Op, ev.Result)
		}
		checkItems(t, ev, "sshd", u.Name, "", "127.0.0.1", "ssh")
		// The whole login is handled by one privileged sshd.
		checkProcess(t, ev.Op.String(), ev.Process, auth.Process.PID, 0, "sshd")
		if ev.Process.PPID != uint32(sshd.Pid) || ev.Process.StartTime != auth.Process.StartTime {
			t.Errorf("%s: ppid %d start %d, want %d and %d", ev.Op, ev.Process.PPID, ev.Process.StartTime, sshd.Pid, auth.Process.StartTime)
		}
	}
	// Before the session opens, the sshd has no login uid and no audit session.
	for _, ev := range []*event.Login{auth, acct} {
		if ev.Process.LoginUID != event.NoLoginUID || ev.SessionID != event.NoSessionID {
			t.Errorf("%s: login uid %d session %d, want unset", ev.Op, ev.Process.LoginUID, ev.SessionID)
		}
	}
	// pam_loginuid ran inside pam_open_session: the sshd now carries the
	// user's login uid and a new audit session, which every process of the
	// login inherits, as the remote command showed.
	for _, ev := range []*event.Login{open, closed} {
		if ev.Process.LoginUID != u.UID {
			t.Errorf("%s: login uid %d, want %d", ev.Op, ev.Process.LoginUID, u.UID)
		}
		if ev.SessionID != uint32(remoteSession) || ev.SessionID == event.NoSessionID {
			t.Errorf("%s: session id %d, want the remote command's %d", ev.Op, ev.SessionID, remoteSession)
		}
	}
	if !(auth.Time.Before(acct.Time) && acct.Time.Before(open.Time) && open.Time.Before(closed.Time)) {
		t.Errorf("events out of order: auth %v acct %v open %v close %v", auth.Time, acct.Time, open.Time, closed.Time)
	}
}
