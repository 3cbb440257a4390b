package login

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/kernelfs"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// sensorPoll is how long a record may wait in the ring for the reader.
const sensorPoll = sensor.DefaultPollInterval

// collector runs a loaded sensor and keeps every decoded login event.
type collector struct {
	mu     sync.Mutex
	events []*event.Login
}

func startSensor(t *testing.T, opts Options) (*Sensor, *collector) {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := kernelfs.EnsureMounted(kernelfs.Needed); err != nil {
		t.Fatalf("mount kernel file systems: %v", err)
	}
	s, err := Load(opts)
	if err != nil {
		t.Fatalf("load login sensor: %v", err)
	}
	c := &collector{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := s.Next()
			if errors.Is(err, sensor.ErrClosed) {
				return
			}
			if err != nil {
				t.Errorf("next: %v", err)
				return
			}
			l, ok := ev.(*event.Login)
			if !ok {
				t.Errorf("next returned %T, want *event.Login", ev)
				continue
			}
			c.mu.Lock()
			c.events = append(c.events, l)
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		<-done
	})
	return s, c
}

// waitN waits until n events match and returns them in order of arrival.
func (c *collector) waitN(t *testing.T, what string, n int, match func(*event.Login) bool) []*event.Login {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got []*event.Login
		c.mu.Lock()
		for _, ev := range c.events {
			if match(ev) {
				got = append(got, ev)
			}
		}
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			c.dump(t)
			t.Fatalf("%d %s events within 10s, want %d", len(got), what, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *collector) dump(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.events {
		t.Logf("event: %s %v service=%q user=%q ruser=%q rhost=%q tty=%q session=%d proc=%+v", ev.Op, ev.Result, ev.Service, ev.User, ev.RemoteUser, ev.RemoteHost, ev.TTY, ev.SessionID, ev.Process)
	}
}

// testUser is a throwaway local user with a known password.
type testUser struct {
	name     string
	password string
	uid, gid uint32
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func run(t *testing.T, stdin string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// createUser adds a user with a home directory and removes it (and its
// home) when the test ends, whatever happens.
func createUser(t *testing.T) *testUser {
	t.Helper()
	for _, tool := range []string{"useradd", "userdel", "chpasswd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s missing: %v", tool, err)
		}
	}
	u := &testUser{name: "vigiltest" + randomHex(t, 4), password: "Pw-" + randomHex(t, 8)}
	run(t, "", "useradd", "--create-home", "--shell", "/bin/sh", u.name)
	t.Cleanup(func() {
		// -f: remove the user even when one of its processes is still there.
		if out, err := exec.Command("userdel", "--force", "--remove", u.name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", u.name, err, out)
		}
	})
	run(t, u.name+":"+u.password+"\n", "chpasswd")
	pw, err := user.Lookup(u.name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(pw.Uid, 10, 32)
	gid, _ := strconv.ParseUint(pw.Gid, 10, 32)
	u.uid, u.gid = uint32(uid), uint32(gid)
	return u
}

func requireTool(t *testing.T, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s missing: install the Debian package %s (%v)", path, pkg, err)
	}
}

// startSSHD runs a private sshd on a free loopback port with its own
// configuration and host key, allowing only user u. It returns the port
// and the sshd process.
func startSSHD(t *testing.T, u *testUser) (int, *os.Process) {
	t.Helper()
	requireTool(t, "/usr/sbin/sshd", "openssh-server")
	dir := t.TempDir()
	key := filepath.Join(dir, "host_ed25519")
	run(t, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
	// sshd's privilege separation directory (made by systemd-tmpfiles on a booted system).
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s
PidFile %s
UsePAM yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication no
PermitRootLogin no
AllowUsers %s
StrictModes no
UseDNS no
MaxAuthTries 10
MaxStartups 20
LogLevel VERBOSE
`, port, key, filepath.Join(dir, "sshd.pid"), u.name)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfg)
	cmd.Stdout = &logs
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sshd log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd does not listen on port %d: %v\n%s", port, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return port, cmd.Process
}

// sshLogin logs in as u with password and runs remote, returning its output.
func sshLogin(t *testing.T, port int, u *testUser, password, remote string) (string, error) {
	t.Helper()
	requireTool(t, "/usr/bin/sshpass", "sshpass")
	cmd := exec.Command("/usr/bin/sshpass", "-p", password, "ssh", "-F", "/dev/null",
		"-p", strconv.Itoa(port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
		"-o", "NumberOfPasswordPrompts=1", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
		u.name+"@127.0.0.1", remote)
	out, err := cmd.Output()
	return string(out), err
}

func checkProcess(t *testing.T, what string, p event.Process, pid, uid uint32, comm string) {
	t.Helper()
	if pid != 0 && p.PID != pid {
		t.Errorf("%s: pid = %d, want %d", what, p.PID, pid)
	}
	if p.UID != uid || p.EUID != uid {
		t.Errorf("%s: uid/euid = %d/%d, want %d", what, p.UID, p.EUID, uid)
	}
	if p.Comm != comm {
		t.Errorf("%s: comm = %q, want %q", what, p.Comm, comm)
	}
	if p.StartTime == 0 || p.CgroupID == 0 {
		t.Errorf("%s: start time %d, cgroup id %d: want both set", what, p.StartTime, p.CgroupID)
	}
}

func checkItems(t *testing.T, ev *event.Login, service, user, ruser, rhost, tty string) {
	t.Helper()
	if ev.Service != service || ev.User != user || ev.RemoteUser != ruser || ev.RemoteHost != rhost || ev.TTY != tty {
		t.Errorf("%s: service/user/ruser/rhost/tty = %q/%q/%q/%q/%q, want %q/%q/%q/%q/%q", ev.Op,
			ev.Service, ev.User, ev.RemoteUser, ev.RemoteHost, ev.TTY, service, user, ruser, rhost, tty)
	}
	if ev.Truncated || ev.LayoutMismatch || ev.NoHandle {
		t.Errorf("%s: flags truncated=%v layout mismatch=%v no handle=%v, want none", ev.Op, ev.Truncated, ev.LayoutMismatch, ev.NoHandle)
	}
	if ev.Duration <= 0 || ev.Duration > time.Minute {
		t.Errorf("%s: duration %v out of range", ev.Op, ev.Duration)
	}
}
