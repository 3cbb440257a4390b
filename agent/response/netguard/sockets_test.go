package netguard

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/vigil-sensor/vigil/internal/netnstest"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// moveTo moves pid into the cgroup cg.
func moveTo(t *testing.T, cg *testutil.Cgroup, pid int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(cg.Path, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatalf("move %d into %s: %v", pid, cg.Path, err)
	}
}

// addrs asks a child for the two ends of its connection.
func (c *child) addrs(t *testing.T) (local, remote netip.AddrPort) {
	t.Helper()
	f := strings.Fields(c.ask(t, "addr"))
	if len(f) != 3 || f[0] != "ok" {
		t.Fatalf("child addresses: %q", f)
	}
	return netip.MustParseAddrPort(f[1]), netip.MustParseAddrPort(f[2])
}

// TestQuarantineProcesses: a process moved into a cgroup after it
// connected keeps its connection under Quarantine alone; under
// QuarantineProcesses it loses it (and cannot connect anew), while a
// sibling outside the cgroup keeps sending and connecting. IPv4 and IPv6,
// in a namespace of the test's (the cut enters it) and in the test's own.
func TestQuarantineProcesses(t *testing.T) {
	testutil.RequireRoot(t)
	t.Run("netns", func(t *testing.T) {
		ns := netnstest.New(t)
		testQuarantineProcesses(t, ns, listen(t, ns))
	})
	t.Run("host", func(t *testing.T) {
		// Loopback only: the test's namespace is the host's.
		v4 := netnstest.Serve(t, netnstest.Here, "127.0.0.1:0", true).Port()
		v6 := netnstest.Serve(t, netnstest.Here, "[::1]:0", true).Port()
		testQuarantineProcesses(t, netnstest.Here, v4, v6)
	})
}

// testQuarantineProcesses runs TestQuarantineProcesses in ns against the
// echo servers at ports of 127.0.0.1 and ::1 (one port: the same for both).
func testQuarantineProcesses(t *testing.T, ns netns.NsHandle, ports ...uint16) {
	g := netnstest.In(t, ns, func() (*Guard, error) { return Open(Options{}) })
	t.Cleanup(func() { g.Close() })
	for i, peer := range []string{"127.0.0.1", "::1"} {
		port := ports[min(i, len(ports)-1)]
		t.Run(peer, func(t *testing.T) {
			cg := testutil.NewCgroup(t)
			to := netip.AddrPortFrom(netip.MustParseAddr(peer), port)

			// Both connect outside the cgroup; then one is moved in.
			inside := startChild(t, ns, nil, to)
			outside := startChild(t, ns, nil, to)
			pid := inside.cmd.Process.Pid
			local, remote := inside.addrs(t)
			moveTo(t, cg, pid)

			// The gap: the cgroup's programs do not see the old socket.
			undo, err := g.Quarantine(cg.Path)
			if err != nil {
				t.Fatal(err)
			}
			if got := inside.ask(t, "send"); got != "ok" {
				t.Fatalf("moved child under Quarantine alone: %q, want its old connection to work", got)
			}
			if err := undo(); err != nil {
				t.Fatal(err)
			}

			undo, cut, err := g.QuarantineProcesses(cg.Path, []int{pid})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { undo() })

			// The cut names the child's connection, and nothing else.
			want := Socket{PIDs: []int{pid}, Proto: "tcp", State: "established", Local: local, Remote: remote}
			if len(cut) != 1 {
				t.Fatalf("cut %v, want only %v", cut, want)
			}
			got := cut[0]
			got.Inode, got.Netns = 0, 0
			if !slices.Equal(got.PIDs, want.PIDs) || got.Proto != want.Proto || got.State != want.State ||
				got.Local != want.Local || got.Remote != want.Remote {
				t.Errorf("cut %v, want %v", got, want)
			}
			if cut[0].Inode == 0 || cut[0].Netns == 0 {
				t.Errorf("cut %+v: want its inode and namespace", cut[0])
			}
			if by := cut.ByPID(pid); len(by) != 1 {
				t.Errorf("ByPID(%d) = %v", pid, by)
			}

			// The destroyed socket reports the abort on the next send; a
			// new connect is refused by the cgroup's program.
			t.Logf("cut: %v", cut)
			for _, c := range []struct{ cmd, errno, what string }{
				{"send", "ECONNABORTED", "sending on its connection"},
				{"send", "EPIPE", "sending on it again"},
				{"dial", "EPERM", "connecting"},
			} {
				got := inside.ask(t, c.cmd)
				t.Logf("quarantined child %s: %s", c.what, got)
				if !strings.HasPrefix(got, "err ["+c.errno+"] ") {
					t.Errorf("quarantined child %s: %q, want %s", c.what, got, c.errno)
				}
			}
			if got := outside.ask(t, "send"); got != "ok" {
				t.Errorf("sibling sending on its connection: %q", got)
			}
			if got := outside.ask(t, "dial"); got != "ok" {
				t.Errorf("sibling connecting: %q", got)
			}
		})
	}
}

// TestCutSocketsNothing: processes that are gone or hold no inet socket
// leave nothing to cut and are no error.
func TestCutSocketsNothing(t *testing.T) {
	testutil.RequireRoot(t)
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sleep.Process.Kill()
		_ = sleep.Wait()
	})
	cut, err := CutSockets([]int{1 << 30, sleep.Process.Pid})
	if err != nil {
		t.Fatal(err)
	}
	if len(cut) != 0 {
		t.Errorf("cut %v, want nothing", cut)
	}
}
