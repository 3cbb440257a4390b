package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/sshtest"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/render"
)

// latest returns the newest revision received of incident id, or nil.
func (l *incidentLog) latest(id string) *vigilv1.Incident {
	var last *vigilv1.Incident
	for _, inc := range l.snapshot() {
		if inc.GetId() == id && inc.GetRevision() >= last.GetRevision() {
			last = inc
		}
	}
	return last
}

// wait waits up to limit for a signal match accepts and returns the first
// revision holding one, with the signal.
func (l *incidentLog) wait(t *testing.T, limit time.Duration, what string, match func(*vigilv1.Incident, *vigilv1.Signal) bool) (*vigilv1.Incident, *vigilv1.Signal) {
	t.Helper()
	var found *vigilv1.Signal
	inc := l.streamLog.await(t, limit, what, func(inc *vigilv1.Incident) bool {
		for _, sig := range inc.GetSignals() {
			if match(inc, sig) {
				found = sig
				return true
			}
		}
		return false
	}, func() string {
		return fmt.Sprintf(" (%d revisions received; their signals: %s)", len(l.snapshot()), l.summary())
	})
	return inc, found
}

// summary lists the distinct signals received, for failure messages.
func (l *incidentLog) summary() string {
	seen := map[string]bool{}
	var out []string
	for _, inc := range l.snapshot() {
		for _, sig := range inc.GetSignals() {
			s := fmt.Sprintf("%s[%s] pid %d %s %s", sig.GetRuleId(), sig.GetAttack().GetTechniqueId(), sig.GetPid(), sig.GetExe(), sig.GetRemoteHost())
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return strings.Join(out, "; ")
}

// technique matches a signal of ATT&CK technique id on process pid.
func technique(id string, pid int) func(*vigilv1.Incident, *vigilv1.Signal) bool {
	return func(_ *vigilv1.Incident, sig *vigilv1.Signal) bool {
		return sig.GetAttack().GetTechniqueId() == id && int(sig.GetPid()) == pid
	}
}

// loginTechnique matches a host-level login signal of technique id from
// remote host addr whose reason names user.
func loginTechnique(id, addr, user string) func(*vigilv1.Incident, *vigilv1.Signal) bool {
	return func(_ *vigilv1.Incident, sig *vigilv1.Signal) bool {
		return sig.GetAttack().GetTechniqueId() == id && sig.GetRemoteHost() == addr && sig.GetPid() == 0 &&
			strings.Contains(sig.GetReason(), user)
	}
}

// artName is a throwaway name for what a step creates: vigil-art and 8 hex digits.
func artName(t *testing.T) string {
	return "vigil-art" + sshtest.RandomHex(t, 4)
}

// TestAtomicScenario runs Atomic Red Team style Linux tests as real
// commands against one running stack and checks that each yields a signal
// of its ATT&CK technique; then a password-guessing run over SSH that ends
// in a login which reads /etc/shadow, and checks that the guessing and what
// the login did are one incident that tells the story.
func TestAtomicScenario(t *testing.T) {
	start := time.Now()
	s := startStack(t)
	revs := collectIncidents(s.subscribe(t, 0))
	u := sshtest.CreateUser(t)
	port, _ := sshtest.StartSSHD(t, u)
	const limit = 10 * time.Second
	const guesses = 5

	t.Run("steps", func(t *testing.T) {
		// Password guessing takes PAM's failure delay per guess; the host
		// steps run meanwhile.
		t.Run("T1110.001-password-guessing", func(t *testing.T) {
			t.Parallel()
			for i := range guesses {
				out, err := sshtest.SSHLogin(t, port, u, "wrong-"+sshtest.RandomHex(t, 4), "true")
				// ssh gives up after its one password prompt.
				var exitErr *exec.ExitError
				if !errors.As(err, &exitErr) || exitErr.ExitCode() != 255 || !strings.Contains(string(exitErr.Stderr), "Permission denied") {
					t.Fatalf("wrong password %d for %s: %v, want ssh's exit status 255 with permission denied\n%s", i+1, u.Name, err, out)
				}
			}
			_, sig := revs.wait(t, limit, "T1110.001 signal from 127.0.0.1", loginTechnique("T1110.001", "127.0.0.1", u.Name))
			if !strings.Contains(sig.GetReason(), fmt.Sprintf("%d failed logins from 127.0.0.1", guesses)) {
				t.Errorf("%s reason %q does not count %d failed logins from 127.0.0.1", sig.GetRuleId(), sig.GetReason(), guesses)
			}
		})

		t.Run("host", func(t *testing.T) {
			t.Parallel()
			hostSteps(t, revs, u, limit)
		})
	})
	if t.Failed() {
		return
	}

	// The guessing worked: the same source logs in with the password and
	// reads /etc/shadow. As a normal user cat fails with permission denied;
	// the attempt is what counts. The shell prints its pid and becomes cat.
	out, err := sshtest.SSHLogin(t, port, u, u.Password, "echo $$; exec cat /etc/shadow")
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("ssh %s@127.0.0.1 cat /etc/shadow: %v, want cat's exit status 1 (permission denied)\n%s", u.Name, err, out)
	}
	catPID, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("remote shell printed %q, want its pid", out)
	}
	// The revision that holds both the guessing and the session's read.
	inc, shadow := revs.wait(t, limit, "one incident with the guessing and the session's shadow read", func(inc *vigilv1.Incident, sig *vigilv1.Signal) bool {
		return technique("T1003.008", catPID)(inc, sig) && slices.ContainsFunc(inc.GetSignals(), func(g *vigilv1.Signal) bool {
			return loginTechnique("T1110.001", "127.0.0.1", u.Name)(inc, g)
		})
	})
	cat := processOf(inc, uint32(catPID))
	if shadow.GetExe() != resolve(t, "/bin/cat") || cat == nil || cat.GetUid() != u.UID {
		t.Errorf("shadow read by %q as %v, want %s as uid %d", shadow.GetExe(), cat, resolve(t, "/bin/cat"), u.UID)
	}
	l := inc.GetLogin()
	if l.GetService() != "sshd" || l.GetUser() != u.Name || l.GetRemoteHost() != "127.0.0.1" || l.GetSessionId() != cat.GetSessionId() ||
		l.GetSessionId() == ^uint32(0) {
		t.Errorf("incident login %v, want the sshd login of %s from 127.0.0.1 (session %d)", l, u.Name, cat.GetSessionId())
	}
	if want := fmt.Sprintf("after %d failed logins from that address", guesses); !strings.Contains(inc.GetCause(), "from 127.0.0.1") ||
		!strings.Contains(inc.GetCause(), want) {
		t.Errorf("cause %q does not name the source 127.0.0.1 and say %q", inc.GetCause(), want)
	}
	if !slices.ContainsFunc(inc.GetRecommendedActions(), func(a *vigilv1.RecommendedAction) bool {
		return a.GetAction() == "block_source" && a.GetTarget() == "addr:127.0.0.1"
	}) {
		t.Errorf("recommended actions %v lack block_source addr:127.0.0.1", inc.GetRecommendedActions())
	}

	// The story as an analyst sees it: the newest revision of the incident,
	// once revisions still on their way (the session's refused open of
	// /etc/shadow, its exit) have had a moment to arrive.
	time.Sleep(time.Second)
	var story strings.Builder
	if err := render.Show(&story, revs.latest(inc.GetId())); err != nil {
		t.Fatal(err)
	}
	t.Logf("incident after %s:\n%s", time.Since(start).Round(time.Second), story.String())
}

// hostSteps runs the scenario's steps on the host itself, as root, one
// after the other, each with the signal it must yield.
func hostSteps(t *testing.T, revs *incidentLog, u *sshtest.TestUser, limit time.Duration) {
	t.Run("T1003.008-shadow-copy", func(t *testing.T) {
		// A file only root can read, which the shell empties and fills.
		f, err := os.CreateTemp("/tmp", "vigil-art-")
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		t.Cleanup(func() { os.Remove(f.Name()) })
		pid := runCmdOK(t, exec.Command("/bin/sh", "-c", `exec cat /etc/shadow > "$1"`, "sh", f.Name()))
		_, sig := revs.wait(t, limit, "T1003.008 signal of cat", technique("T1003.008", pid))
		if sig.GetExe() != resolve(t, "/bin/cat") {
			t.Errorf("T1003.008 signal on %q, want cat", sig.GetExe())
		}
	})

	t.Run("T1136.001-local-account", func(t *testing.T) {
		name := artName(t)
		t.Cleanup(func() {
			if _, err := user.Lookup(name); err != nil {
				return // never made, or deleted by the step
			}
			if out, err := exec.Command("userdel", "--force", "--remove", name).CombinedOutput(); err != nil {
				t.Errorf("userdel %s: %v\n%s", name, err, out)
			}
		})
		pid := runCmdOK(t, exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name))
		runCmdOK(t, exec.Command("userdel", name))
		_, sig := revs.wait(t, limit, "T1136.001 signal of useradd", technique("T1136.001", pid))
		if !strings.Contains(sig.GetReason(), name) {
			t.Errorf("T1136.001 reason %q does not name %s", sig.GetReason(), name)
		}
	})

	t.Run("T1548.001-setuid-in-tmp", func(t *testing.T) {
		// The directory is root's alone (0700): nobody else can run the copy.
		dir, err := os.MkdirTemp("/tmp", "vigil-art-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		file := filepath.Join(dir, "true")
		runCmdOK(t, exec.Command("cp", "/bin/true", file))
		pid := runCmdOK(t, exec.Command("chmod", "u+s", file))
		_, sig := revs.wait(t, limit, "T1548.001 signal of chmod", technique("T1548.001", pid))
		if sig.GetObject() != file {
			t.Errorf("T1548.001 signal about %q, want %s", sig.GetObject(), file)
		}
	})

	t.Run("T1053.003-cron-d", func(t *testing.T) {
		file := filepath.Join("/etc/cron.d", artName(t))
		t.Cleanup(func() {
			if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Error(err)
			}
		})
		// The shell opens the file itself for the redirection.
		pid := runCmdOK(t, exec.Command("/bin/sh", "-c", `echo '@yearly root /bin/true' > "$1"`, "sh", file))
		_, sig := revs.wait(t, limit, "T1053.003 signal of sh", technique("T1053.003", pid))
		if sig.GetObject() != file {
			t.Errorf("T1053.003 signal about %q, want %s", sig.GetObject(), file)
		}
	})

	t.Run("T1070.003-history-removed", func(t *testing.T) {
		// The throwaway user's history (removed with the user in any case).
		history := filepath.Join("/home", u.Name, ".bash_history")
		// Created afresh, not truncated: emptying a history file is what
		// the rule looks for.
		f, err := os.OpenFile(history, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteString("ls\nid\n")
		if err := errors.Join(err, f.Close()); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(history, int(u.UID), int(u.GID)); err != nil {
			t.Fatal(err)
		}
		rm := exec.Command("rm", history)
		rm.Dir = "/"
		rm.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID}}
		pid := runCmdOK(t, rm)
		_, sig := revs.wait(t, limit, "T1070.003 signal of rm", technique("T1070.003", pid))
		if sig.GetObject() != history {
			t.Errorf("T1070.003 signal about %q, want %s", sig.GetObject(), history)
		}
	})

	t.Run("T1046-dev-tcp-scan", func(t *testing.T) {
		// Each probe runs in a subshell, a child of this bash.
		// Its status is that of the last probe, refused like most.
		pid := run(t, exec.Command("/bin/bash", "-c",
			`for p in $(seq 1 40); do (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null; done`))
		_, sig := revs.wait(t, limit, "T1046 signal of the bash loop", func(inc *vigilv1.Incident, sig *vigilv1.Signal) bool {
			return sig.GetAttack().GetTechniqueId() == "T1046" &&
				(int(sig.GetPid()) == pid || int(processOf(inc, sig.GetPid()).GetPpid()) == pid)
		})
		if sig.GetExe() != resolve(t, "/bin/bash") || sig.GetRemoteHost() != "127.0.0.1" {
			t.Errorf("T1046 signal on %q to %q, want bash to 127.0.0.1", sig.GetExe(), sig.GetRemoteHost())
		}
	})
}
