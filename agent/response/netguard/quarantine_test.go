package netguard

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vigil-sensor/vigil/internal/netnstest"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// The test binary re-executed with helperEnv set is a child process that
// talks to a TCP echo server at addrEnv and takes commands on stdin.
const (
	helperEnv = "VIGIL_NETGUARD_HELPER"
	addrEnv   = "VIGIL_NETGUARD_ADDR"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "quarantine" {
		os.Exit(quarantineChild(os.Getenv(addrEnv), os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// quarantineChild connects to addr, exchanges one line, prints "ready"
// and then answers each command read from in with "ok" or "err <why>"
// ("err [ENAME] <why>" when the error is an errno): "send" sends a line on
// the connection and waits for its echo, "dial" opens a new connection,
// "addr" answers "ok <local> <remote>" for the connection.
func quarantineChild(addr string, in io.Reader, out io.Writer) int {
	const wait = 400 * time.Millisecond
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		fmt.Fprintln(out, "err", err)
		return 1
	}
	defer c.Close()
	echo := bufio.NewReader(c)
	exchange := func() error {
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
			return err
		}
		_, err := echo.ReadString('\n')
		return err
	}
	if err := exchange(); err != nil {
		fmt.Fprintln(out, "err", err)
		return 1
	}
	fmt.Fprintln(out, "ready")
	cmds := bufio.NewScanner(in)
	for cmds.Scan() {
		var err error
		switch cmds.Text() {
		case "send":
			err = exchange()
		case "dial":
			var c2 net.Conn
			if c2, err = net.DialTimeout("tcp", addr, wait); err == nil {
				c2.Close()
			}
		case "addr":
			fmt.Fprintln(out, "ok", c.LocalAddr(), c.RemoteAddr())
			continue
		default:
			err = fmt.Errorf("unknown command %q", cmds.Text())
		}
		var errno syscall.Errno
		switch {
		case errors.As(err, &errno):
			fmt.Fprintf(out, "err [%s] %v\n", unix.ErrnoName(errno), err)
		case err != nil:
			fmt.Fprintln(out, "err", err)
		default:
			fmt.Fprintln(out, "ok")
		}
	}
	return 0
}

// child is a running quarantineChild.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// ask sends a command and returns the answer line.
func (c *child) ask(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := fmt.Fprintln(c.in, cmd); err != nil {
		t.Fatalf("child %d: %v", c.cmd.Process.Pid, err)
	}
	return c.line(t)
}

func (c *child) line(t *testing.T) string {
	t.Helper()
	s, err := c.out.ReadString('\n')
	if err != nil {
		t.Fatalf("child %d: read: %v", c.cmd.Process.Pid, err)
	}
	return strings.TrimSpace(s)
}

// startChild starts a quarantineChild talking to addr from namespace ns,
// in the cgroup cg (nil: the test's own); t.Cleanup ends it.
func startChild(t *testing.T, ns netns.NsHandle, cg *testutil.Cgroup, addr netip.AddrPort) *child {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=quarantine", addrEnv+"="+addr.String())
	cmd.Stderr = os.Stderr
	if cg != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Dir.Fd())}
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Started from a thread in ns, the child is born in ns.
	netnstest.In(t, ns, func() (struct{}, error) { return struct{}{}, cmd.Start() })
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	c := &child{cmd: cmd, in: in, out: bufio.NewReader(out)}
	if got := c.line(t); got != "ready" {
		t.Fatalf("child: %s", got)
	}
	return c
}

func TestQuarantine(t *testing.T) {
	testutil.RequireRoot(t)
	cg := testutil.NewCgroup(t)
	ns := netnstest.New(t)
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), listen(t, ns))
	g := netnstest.In(t, ns, func() (*Guard, error) { return Open(Options{}) })
	t.Cleanup(func() { g.Close() })

	// Both children connect before the quarantine; one is in the cgroup.
	inside := startChild(t, ns, cg, to)
	outside := startChild(t, ns, nil, to)

	undo, err := g.Quarantine(cg.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { undo() })

	if got := inside.ask(t, "send"); !strings.HasPrefix(got, "err") || !strings.Contains(got, "i/o timeout") {
		t.Errorf("quarantined child sending on its connection: %q, want a timeout", got)
	}
	if got := inside.ask(t, "dial"); !strings.HasPrefix(got, "err") || !strings.Contains(got, "operation not permitted") {
		t.Errorf("quarantined child connecting: %q, want EPERM", got)
	}
	if got := outside.ask(t, "send"); got != "ok" {
		t.Errorf("sibling sending on its connection: %q", got)
	}
	if got := outside.ask(t, "dial"); got != "ok" {
		t.Errorf("sibling connecting: %q", got)
	}
	st := stats(t, g)
	if st.QuarantineDropped == 0 || st.QuarantineDenied == 0 {
		t.Errorf("counters %+v: want quarantine drops and denials", st)
	}

	// Undone, the cgroup has the network again; undo twice is harmless.
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if err := undo(); err != nil {
		t.Fatalf("second undo: %v", err)
	}
	if got := inside.ask(t, "dial"); got != "ok" {
		t.Errorf("child connecting after the quarantine: %q", got)
	}
}
