// Package sshtest gives tests real logins: throwaway local users and a
// private sshd on a loopback port. It is apart from testutil because it
// links os/user and net, which make a test binary dynamically linked.
package sshtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUser is a throwaway local user with a known password.
type TestUser struct {
	// Name is the login name.
	Name string
	// Password is the user's password.
	Password string
	// UID and GID are the user's ids.
	UID, GID uint32
}

// RandomHex returns n random bytes as hex, for throwaway names.
func RandomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Run runs a command with stdin and fails the test when it fails.
func Run(t *testing.T, stdin string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// CreateUser adds a user with a home directory and removes it (and its
// home) when the test ends, whatever happens.
func CreateUser(t *testing.T) *TestUser {
	t.Helper()
	for _, tool := range []string{"useradd", "userdel", "chpasswd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s missing: %v", tool, err)
		}
	}
	u := &TestUser{Name: "vigiltest" + RandomHex(t, 4), Password: "Pw-" + RandomHex(t, 8)}
	Run(t, "", "useradd", "--create-home", "--shell", "/bin/sh", u.Name)
	t.Cleanup(func() {
		// -f: remove the user even when one of its processes is still there.
		if out, err := exec.Command("userdel", "--force", "--remove", u.Name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", u.Name, err, out)
		}
	})
	Run(t, u.Name+":"+u.Password+"\n", "chpasswd")
	pw, err := user.Lookup(u.Name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(pw.Uid, 10, 32)
	gid, _ := strconv.ParseUint(pw.Gid, 10, 32)
	u.UID, u.GID = uint32(uid), uint32(gid)
	return u
}

// RequireTool fails the test when a program from a Debian package is missing.
func RequireTool(t *testing.T, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s missing: install the Debian package %s (%v)", path, pkg, err)
	}
}

// StartSSHD runs a private sshd on a free loopback port with its own
// configuration and host key, allowing only user u to log in, by password.
// It returns the port and the sshd process.
func StartSSHD(t *testing.T, u *TestUser) (int, *os.Process) {
	t.Helper()
	return StartSSHDWith(t, SSHDOptions{Users: []string{u.Name}})
}

// SSHDOptions says what StartSSHDWith's sshd allows beyond password
// logins of Users.
type SSHDOptions struct {
	// Dir holds the configuration, host key and pid file, and with Keys
	// the authorized keys; "" is a directory of the test's own.
	Dir string
	// Users are the login names allowed.
	Users []string
	// Keys allows public key logins too, with the keys of user USER read
	// from Dir/USER.keys as well as from ~/.ssh/authorized_keys.
	Keys bool
	// RootByKey lets root log in, by key only (with Keys and root in Users).
	RootByKey bool
	// MaxStartups is how many unauthenticated connections sshd takes at
	// once; 0 is 20.
	MaxStartups int
}

// StartSSHDWith runs a private sshd on a free port of 127.0.0.1 with its
// own configuration and host key, as opts says, and stops it when the
// test ends. It returns the port and the sshd process.
func StartSSHDWith(t *testing.T, opts SSHDOptions) (int, *os.Process) {
	t.Helper()
	RequireTool(t, "/usr/sbin/sshd", "openssh-server")
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	key := filepath.Join(dir, "host_ed25519")
	Run(t, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
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
	pubkey, keysFile, rootLogin, maxStartups := "no", "", "no", 20
	if opts.Keys {
		pubkey, keysFile = "yes", fmt.Sprintf("AuthorizedKeysFile .ssh/authorized_keys %s/%%u.keys\n", dir)
	}
	if opts.RootByKey {
		rootLogin = "prohibit-password"
	}
	if opts.MaxStartups != 0 {
		maxStartups = opts.MaxStartups
	}
	cfg := filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s
PidFile %s
UsePAM yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication %s
%sPermitRootLogin %s
AllowUsers %s
StrictModes no
UseDNS no
MaxAuthTries 10
MaxStartups %d
LogLevel VERBOSE
`, port, key, filepath.Join(dir, "sshd.pid"), pubkey, keysFile, rootLogin, strings.Join(opts.Users, " "), maxStartups)
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

// SSHLogin logs in as u with password and runs remote, returning its output.
func SSHLogin(t *testing.T, port int, u *TestUser, password, remote string) (string, error) {
	t.Helper()
	RequireTool(t, "/usr/bin/sshpass", "sshpass")
	cmd := exec.Command("/usr/bin/sshpass", "-p", password, "ssh", "-F", "/dev/null",
		"-p", strconv.Itoa(port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
		"-o", "NumberOfPasswordPrompts=1", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
		u.Name+"@127.0.0.1", remote)
	out, err := cmd.Output()
	return string(out), err
}
