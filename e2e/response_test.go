package e2e

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
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

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-sensor/vigil/agent/daemon"
	"github.com/vigil-sensor/vigil/agent/response/procctl"
	"github.com/vigil-sensor/vigil/internal/netnstest"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// netClientEnv makes a copy of the test binary act as a network client
// that takes commands on stdin (see netClient). init runs before TestMain.
const netClientEnv = "VIGIL_RESPONSE_NETCLIENT"

func init() {
	if os.Getenv(netClientEnv) != "" {
		os.Exit(netClient(os.Stdin, os.Stdout))
	}
}

// netClient answers one line per command read from in: "ok", "EPERM" or
// "error: ...". Commands:
//
//   - dial ADDR: connect to ADDR (1 s at most) and close at once;
//   - open ADDR: connect to ADDR and keep the connection (answers "ok"
//     and its local address);
//   - echo: send a line on the kept connection and read it back (1 s).
func netClient(in io.Reader, out io.Writer) int {
	var held net.Conn
	lines := bufio.NewScanner(in)
	for lines.Scan() {
		cmd, arg, _ := strings.Cut(lines.Text(), " ")
		var err error
		switch cmd {
		case "dial":
			var c net.Conn
			if c, err = net.DialTimeout("tcp", arg, time.Second); err == nil {
				c.Close()
			}
		case "open":
			if held, err = net.DialTimeout("tcp", arg, time.Second); err == nil {
				fmt.Fprintln(out, "ok", held.LocalAddr())
				continue
			}
		case "echo":
			if held == nil {
				err = errors.New("no connection open")
				break
			}
			_ = held.SetDeadline(time.Now().Add(time.Second))
			if _, err = held.Write([]byte("ping\n")); err == nil {
				buf := make([]byte, 5)
				if _, err = io.ReadFull(held, buf); err == nil && string(buf) != "ping\n" {
					err = fmt.Errorf("echoed %q", buf)
				}
			}
		default:
			err = fmt.Errorf("unknown command %q", cmd)
		}
		switch {
		case err == nil:
			fmt.Fprintln(out, "ok")
		case errors.Is(err, syscall.EPERM):
			fmt.Fprintln(out, "EPERM")
		default:
			fmt.Fprintln(out, "error:", err)
		}
	}
	return 0
}

// await waits up to limit for the first revision received (since the
// stream began) that match accepts.
func (l *incidentLog) await(t *testing.T, limit time.Duration, what string, match func(*vigilv1.Incident) bool) *vigilv1.Incident {
	t.Helper()
	return l.streamLog.await(t, limit, what, match, func() string {
		got := l.snapshot()
		for _, inc := range got[max(0, len(got)-3):] {
			t.Logf("received (one of the last three): %s", protojson.Format(inc))
		}
		return ""
	})
}

// recordOf returns the last action record of inc that match accepts, or nil.
func recordOf(inc *vigilv1.Incident, match func(*vigilv1.ActionRecord) bool) *vigilv1.ActionRecord {
	for i := len(inc.GetActions()) - 1; i >= 0; i-- {
		if r := inc.GetActions()[i]; match(r) {
			return r
		}
	}
	return nil
}

// recordIs matches records of action on target with result and requester.
func recordIs(action, target, result, requester string) func(*vigilv1.ActionRecord) bool {
	return func(r *vigilv1.ActionRecord) bool {
		return r.GetAction() == action && r.GetTarget() == target && r.GetResult() == result && r.GetRequester() == requester
	}
}

// recommended returns the 1-based number of the recommended action of inc
// with action and target, or 0.
func recommended(inc *vigilv1.Incident, action, target string) int {
	for i, a := range inc.GetRecommendedActions() {
		if a.GetAction() == action && a.GetTarget() == target {
			return i + 1
		}
	}
	return 0
}

// peer is a network namespace joined to this host by a veth pair the test
// made: the host side has host/24, the namespace's side addr/24 and a
// default route through the host.
type peer struct {
	ns         netns.NsHandle
	addr, host netip.Addr
	// link is the host side's interface name.
	link string
}

// newPeer makes a namespace and a veth pair, link on this host and eth0 in
// the namespace; t.Cleanup deletes the pair and closes the namespace.
func newPeer(t *testing.T, link string, host, addr netip.Addr) *peer {
	t.Helper()
	p := &peer{ns: netnstest.New(t), addr: addr, host: host, link: link}
	netnstest.Veth(t, netnstest.Here, link, p.ns, "eth0")
	netnstest.Configure(t, netnstest.Here, link, netip.PrefixFrom(host, 24))
	netnstest.Configure(t, p.ns, "eth0", netip.PrefixFrom(addr, 24))
	netnstest.DefaultRoute(t, p.ns, host)
	return p
}

// dial connects from the peer's namespace to to within timeout.
func (p *peer) dial(to netip.AddrPort, timeout time.Duration) error {
	return netnstest.DialFrom(p.ns, to, timeout)
}

// mustReach fails the test unless the peer connects to to.
func (p *peer) mustReach(t *testing.T, what string, to netip.AddrPort) {
	t.Helper()
	if err := p.dial(to, 2*time.Second); err != nil {
		t.Fatalf("%s: %s cannot connect to %s: %v", what, p.addr, to, err)
	}
}

// blockedDial is how long a connect is given before it counts as dropped.
const blockedDial = 500 * time.Millisecond

// mustNotReach fails the test unless a connect from the peer to to times
// out (its packets are dropped).
func (p *peer) mustNotReach(t *testing.T, what string, to netip.AddrPort) {
	t.Helper()
	err := p.dial(to, blockedDial)
	if err == nil || !netnstest.TimedOut(err) {
		t.Fatalf("%s: %s connecting to %s: %v, want a timeout", what, p.addr, to, err)
	}
}

// respEnv is the response tests' stack and what was made for it.
type respEnv struct {
	ls   *learnedStack
	incs *incidentLog
	dir  string
	// killRule and freezeRule are the operator's rules; killName and
	// freezeName the program names they fire on.
	killRule, killName     string
	freezeRule, freezeName string
	// a and c are the namespaces; the server listens on a.host.
	a, c *peer
	// cron is a cron file that existed before the agent's first start.
	cron, cronContent string
	user              string
}

// newRespEnv makes the namespaces, the cron file and the rules, then
// starts a server on the host side of a's veth and an agent whose
// responses apply on the two veths only: recommend mode, the kill rule in
// auto mode, blocks of 10 minutes unless asked otherwise.
func newRespEnv(t *testing.T) *respEnv {
	t.Helper()
	e := &respEnv{user: os.Getenv("SUDO_USER")}
	if e.user == "" {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		e.user = u.Username
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.dir, err = os.MkdirTemp(cacheDir, "e2e-respond-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(e.dir) })
	id := randomHex(4)
	e.killRule, e.killName = "vigil-test-kill-"+id, "vtk"+id
	e.freezeRule, e.freezeName = "vigil-test-freeze-"+id, "vfz"+id

	// Two namespaces on 198.18.N.0/24 and 198.19.N.0/24 (benchmarking
	// space, RFC 2544), N random so that runs do not collide.
	var b [1]byte
	_, _ = rand.Read(b[:])
	n := int(b[0])%250 + 2
	e.a = newPeer(t, "vgta"+id, netip.MustParseAddr(fmt.Sprintf("198.18.%d.1", n)), netip.MustParseAddr(fmt.Sprintf("198.18.%d.2", n)))
	e.c = newPeer(t, "vgtc"+id, netip.MustParseAddr(fmt.Sprintf("198.19.%d.1", n)), netip.MustParseAddr(fmt.Sprintf("198.19.%d.2", n)))

	// Before the agent's first start, so that its baseline holds it.
	e.cron = "/etc/cron.d/vigil-test-" + randomHex(4)
	e.cronContent = "# vigil end-to-end test: a cron file that does nothing, removed at the end\n"
	removeAtCleanup(t, e.cron)
	createFile(t, e.cron, e.cronContent, 0o644)

	// The agent makes its quarantine cgroup on the first freeze: removed
	// (it is empty by then) after the agent stops, unless it was here.
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
			dir := filepath.Join(f[1], procctl.DefaultQuarantineName)
			if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
				t.Cleanup(func() { _ = os.Remove(dir) })
			}
		}
	}

	rulesDir := filepath.Join(e.dir, "rules.d")
	if err := os.Mkdir(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	rule := func(id, response, name string) string {
		return fmt.Sprintf(`  - id: %s
    title: End-to-end test program %s
    description: A throwaway program the response tests run.
    severity: low
    tactic: TA0002 Execution
    technique: "T1204.002 User Execution: Malicious File"
    on: [exec]
    response: %s
    condition: process.name == '%s'
    reason: "'the test ran ' + process.name"
`, id, name, response, name)
	}
	if err := os.WriteFile(filepath.Join(rulesDir, "response-test.yaml"),
		[]byte("rules:\n"+rule(e.killRule, "kill", e.killName)+rule(e.freezeRule, "freeze", e.freezeName)), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`detection:
  rules_dir: %s
response:
  mode: recommend
  rules: {%s: auto}
  interfaces: [%s, %s]
  block_ttl: 10m
`, rulesDir, e.killRule, e.a.link, e.c.link)
	e.ls = startLearnedStackOn(t, e.a.host.String(), conf)
	if !strings.Contains(e.ls.agentLog.String(), "network responses ready") {
		t.Fatalf("the agent's network responses did not load:\n%s", e.ls.agentLog.String())
	}
	e.incs = collectIncidents(e.ls.subscribe(t, 0))
	return e
}

// respond runs vigil-agent respond with args and returns its output and
// exit status.
func (e *respEnv) respond(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(e.ls.bins, "vigil-agent"), append([]string{"respond", "--state-dir", e.ls.stateDir}, args...)...)
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exitErr):
		return string(out), exitErr.ExitCode()
	}
	t.Fatalf("vigil-agent respond %s: %v", strings.Join(args, " "), err)
	return "", 0
}

// mustRespond runs vigil-agent respond, wants exit status 0 and output
// starting with prefix, and returns the output.
func (e *respEnv) mustRespond(t *testing.T, prefix string, args ...string) string {
	t.Helper()
	out, code := e.respond(t, args...)
	if code != 0 || !strings.HasPrefix(out, prefix) {
		t.Fatalf("vigil-agent respond %s: exit status %d, output %q; want 0 and %q...", strings.Join(args, " "), code, out, prefix)
	}
	return out
}

// audit reads the agent's audit log.
func (e *respEnv) audit(t *testing.T) []*vigilv1.ActionRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.ls.stateDir, daemon.AuditName))
	if err != nil {
		t.Fatal(err)
	}
	var out []*vigilv1.ActionRecord
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		rec := &vigilv1.ActionRecord{}
		if err := protojson.Unmarshal([]byte(line), rec); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// audited fails the test unless the audit log holds a record of action on
// target with result, requester and detail.
func (e *respEnv) audited(t *testing.T, action, target, result, detail string) *vigilv1.ActionRecord {
	t.Helper()
	recs := e.audit(t)
	for _, r := range recs {
		if r.GetAction() == action && r.GetTarget() == target && r.GetResult() == result && r.GetDetail() == detail &&
			r.GetRequester() == "operator:"+e.user && r.GetId() != "" {
			return r
		}
	}
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s %s %s by %s: %s", r.GetResult(), r.GetAction(), r.GetTarget(), r.GetRequester(), r.GetDetail()))
	}
	t.Fatalf("audit log has no %s %s %s by operator:%s: %q; it has:\n%s", result, action, target, e.user, detail, strings.Join(got, "\n"))
	return nil
}

// copyProgram copies the program src into the test's directory as name.
func (e *respEnv) copyProgram(t *testing.T, src, name string) string {
	t.Helper()
	dst := filepath.Join(e.dir, name)
	image, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, image, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestResponse runs issue 5's responses through the real agent, started
// once for all of them: kill at exec, file rollback, freeze and release,
// host-wide blocks, the safety refusals, host isolation and cgroup
// quarantine. Network actions apply only on the veth pairs the test makes
// (the agent's response.interfaces names them), never on this machine's
// own interfaces.
func TestResponse(t *testing.T) {
	e := newRespEnv(t)
	t.Run("kill-at-exec", e.testKillAtExec)
	t.Run("rollback", e.testRollback)
	t.Run("freeze", e.testFreeze)
	t.Run("block", e.testBlock)
	t.Run("safety", e.testSafety)
	t.Run("isolation", e.testIsolation)
	t.Run("quarantine", e.testQuarantine)
}

// testKillAtExec runs a copy of touch under the name the kill rule (auto
// mode) names: the kernel kills it before its first instruction.
func (e *respEnv) testKillAtExec(t *testing.T) {
	prog := e.copyProgram(t, "/usr/bin/touch", e.killName)
	marker := filepath.Join(e.dir, "marker-"+randomHex(4))
	cmd := exec.Command(prog, marker)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	err := cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("%s: %v, want death by SIGKILL", e.killName, err)
	}
	if ws := exitErr.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("%s ended with %v, want death by SIGKILL", e.killName, ws)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the marker %s: %v, want it never made", marker, err)
	}
	target := "pid:" + strconv.Itoa(pid)
	isKill := recordIs("kill", target, "done", "rule:"+e.killRule)
	inc := e.incs.await(t, 5*time.Second, "incident with the kill record", func(inc *vigilv1.Incident) bool {
		return signalOf(inc, e.killRule, pid) != nil && recordOf(inc, isKill) != nil
	})
	rec := recordOf(inc, isKill)
	if rec.GetDetail() != "killed by the kernel as it executed, before its first instruction" || rec.GetMode() != "auto" ||
		rec.GetDryRun() || rec.GetId() == "" || rec.GetTime() == nil {
		t.Errorf("kill record %v", rec)
	}
	if sig := signalOf(inc, e.killRule, pid); sig.GetExe() != prog {
		t.Errorf("signal on %s, want %s", sig.GetExe(), prog)
	}
}

// testRollback changes a cron file the agent's first-start baseline holds,
// approves the restore the incident recommends, and checks the file is the
// snapshot's again; then restores a cron file added after the baseline,
// which removes it.
func (e *respEnv) testRollback(t *testing.T) {
	const appended = "# appended by the vigil test\n"
	shell := exec.Command("/bin/sh", "-c", `printf '%s' "$2" >> "$1" && chmod 0666 "$1" && chown 65534:65534 "$1"`, "sh", e.cron, appended)
	if out, err := shell.CombinedOutput(); err != nil {
		t.Fatalf("change %s: %v\n%s", e.cron, err, out)
	}
	target := "file:" + e.cron
	inc := e.incs.await(t, 5*time.Second, "cron-modified incident recommending the restore of "+e.cron, func(inc *vigilv1.Incident) bool {
		return recommended(inc, "restore", target) > 0
	})
	if !slices.ContainsFunc(inc.GetSignals(), func(s *vigilv1.Signal) bool {
		return s.GetRuleId() == "cron-modified" && strings.Contains(s.GetReason(), e.cron)
	}) {
		t.Errorf("incident %s recommends restoring %s without a cron-modified signal on it", inc.GetId(), e.cron)
	}
	n := recommended(inc, "restore", target)
	out := e.mustRespond(t, "done restore "+target+": restored "+e.cron+": ", "approve", inc.GetId(), strconv.Itoa(n))
	if want := fmt.Sprintf("content %d -> %d bytes, mode 0666 -> 0644, owner 65534:65534 -> 0:0 (action ",
		len(e.cronContent)+len(appended), len(e.cronContent)); !strings.Contains(out, want) {
		t.Errorf("approve said %q, want %q", out, want)
	}
	b, err := os.ReadFile(e.cron)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(e.cron, &st); err != nil {
		t.Fatal(err)
	}
	if string(b) != e.cronContent || st.Mode&0o7777 != 0o644 || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("%s after the restore: %q mode %04o owner %d:%d, want %q 0644 0:0", e.cron, b, st.Mode&0o7777, st.Uid, st.Gid, e.cronContent)
	}
	isRestore := recordIs("restore", target, "done", "operator:"+e.user)
	later := e.incs.await(t, 5*time.Second, "revision of "+inc.GetId()+" with the restore record", func(i *vigilv1.Incident) bool {
		return i.GetId() == inc.GetId() && recordOf(i, isRestore) != nil
	})
	if rec := recordOf(later, isRestore); later.GetRevision() <= inc.GetRevision() || rec.GetMode() != "recommend" ||
		!strings.HasPrefix(rec.GetDetail(), "restored "+e.cron+": content ") || !strings.HasPrefix(rec.GetReason(), "approved recommendation: ") {
		t.Errorf("revision %d (after %d), restore record %v", later.GetRevision(), inc.GetRevision(), rec)
	}

	// A file the baseline never saw: restoring it removes it.
	added, content := "/etc/cron.d/vigil-test-"+randomHex(4), "# vigil test, added after the baseline\n"
	removeAtCleanup(t, added)
	createFile(t, added, content, 0o644)
	e.mustRespond(t, fmt.Sprintf("done restore file:%s: removed %s (file, %d bytes, added after the snapshot of ", added, added, len(content)), "restore", added)
	if _, err := os.Lstat(added); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after the restore: %v, want it removed", added, err)
	}
}

// counter is a shell loop, run under the freeze rule's name, that writes
// an increasing count to a file every 10 ms, detached: its parent is pid
// 1, so that it is the root of its own process tree (and the freeze an
// incident recommends is of it, not of the test).
type counter struct {
	pid  int
	exe  string
	file string
}

func (e *respEnv) startCounter(t *testing.T) *counter {
	t.Helper()
	c := &counter{exe: e.copyProgram(t, "/bin/bash", e.freezeName), file: filepath.Join(e.dir, "count")}
	const loop = `n=0; while :; do n=$((n+1)); printf '%010d\n' $n 1<>"$1"; sleep 0.01; done`
	// The subshell waits for sh to exit (so that it is pid 1's) before it
	// runs the loop.
	out, err := exec.Command("/bin/sh", "-c", `(sleep 0.2; exec "$0" -c "$1" loop "$2") </dev/null >/dev/null 2>&1 & echo $!`,
		c.exe, loop, c.file).Output()
	if err != nil {
		t.Fatalf("start the counter: %v", err)
	}
	if c.pid, err = strconv.Atoi(strings.TrimSpace(string(out))); err != nil {
		t.Fatalf("counter pid %q: %v", out, err)
	}
	t.Cleanup(func() {
		_, _ = e.respond(t, "release", strconv.Itoa(c.pid))
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", c.pid)); exe == c.exe {
			_ = syscall.Kill(c.pid, syscall.SIGKILL)
		}
	})
	waitFor(t, 5*time.Second, "the counter to count", func() bool { return c.read(t) > 3 })
	return c
}

// read returns the count, 0 while the file is being rewritten.
func (c *counter) read(t *testing.T) int {
	b, err := os.ReadFile(c.file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// stopped fails the test unless the count stays the same for 600 ms.
func (c *counter) stopped(t *testing.T, what string) {
	t.Helper()
	time.Sleep(50 * time.Millisecond) // a write under way when it froze
	before := c.read(t)
	time.Sleep(600 * time.Millisecond)
	if after := c.read(t); after != before || before == 0 {
		t.Fatalf("%s: the count went from %d to %d in 600 ms, want it stopped", what, before, after)
	}
}

// runs fails the test unless the count grows within 2 s.
func (c *counter) runs(t *testing.T, what string) {
	t.Helper()
	before := c.read(t)
	waitFor(t, 2*time.Second, what+": the count to grow", func() bool { return c.read(t) > before+2 })
}

// testFreeze freezes and releases a counting loop by pid, then approves
// the freeze its incident recommends (its rule's response, in recommend
// mode).
func (e *respEnv) testFreeze(t *testing.T) {
	c := e.startCounter(t)
	pid := strconv.Itoa(c.pid)
	target := "pid:" + pid

	out := e.mustRespond(t, "done freeze "+target+": froze pid "+pid+" ("+c.exe+") and its descendants (pids [", "freeze", pid)
	c.stopped(t, "after freeze")
	_, detail, _ := strings.Cut(out, ": ")
	detail = detail[:strings.LastIndex(detail, " (action ")]
	e.audited(t, "freeze", target, "done", detail)

	out = e.mustRespond(t, "done release "+target+": released pids [", "release", pid)
	c.runs(t, "after release")
	_, detail, _ = strings.Cut(out, ": ")
	detail = detail[:strings.LastIndex(detail, " (action ")]
	e.audited(t, "release", target, "done", detail)

	// The rule's freeze, in recommend mode, is a recommendation: the rule
	// did not act (the counter ran after its exec), an operator approves.
	inc := e.incs.await(t, 5*time.Second, "incident of the counter recommending its freeze", func(inc *vigilv1.Incident) bool {
		return signalOf(inc, e.freezeRule, c.pid) != nil && recommended(inc, "freeze", target) > 0
	})
	if len(inc.GetActions()) != 0 {
		t.Errorf("incident %s revision %d has action records before any approval: %v", inc.GetId(), inc.GetRevision(), inc.GetActions())
	}
	n := recommended(inc, "freeze", target)
	e.mustRespond(t, "done freeze "+target+": froze pid "+pid+" ("+c.exe+") and its descendants (pids [", "approve", inc.GetId(), strconv.Itoa(n))
	c.stopped(t, "after approve")
	done := recordIs("freeze", target, "done", "operator:"+e.user)
	later := e.incs.await(t, 5*time.Second, "revision of "+inc.GetId()+" with the approved freeze", func(i *vigilv1.Incident) bool {
		return i.GetId() == inc.GetId() && recordOf(i, done) != nil
	})
	if rec := recordOf(later, done); later.GetRevision() <= inc.GetRevision() || rec.GetMode() != "recommend" ||
		!strings.HasPrefix(rec.GetReason(), "approved recommendation: Rule "+e.freezeRule+" asks to freeze") {
		t.Errorf("revision %d (after %d), freeze record %v", later.GetRevision(), inc.GetRevision(), rec)
	}
	e.mustRespond(t, "done release "+target+": released pids [", "release", pid)
	c.runs(t, "after the second release")
}

// testBlock blocks a's address for 3 s: a cannot connect, c can, and a can
// again once the block expires by itself; then blocks it for the agent's
// response.block_ttl and lifts the block.
func (e *respEnv) testBlock(t *testing.T) {
	ln := netnstest.Serve(t, netnstest.Here, net.JoinHostPort(e.a.host.String(), "0"), false)
	e.a.mustReach(t, "before the block", ln)
	e.c.mustReach(t, "before the block", ln)

	a := e.a.addr.String()
	t.Cleanup(func() { _, _ = e.respond(t, "unblock", a) })
	start := time.Now()
	out := e.mustRespond(t, "done block_source addr:"+a+": blocked "+a+"/32 until ", "block", a, "--ttl", "3s")
	e.a.mustNotReach(t, "blocked", ln)
	e.c.mustReach(t, "while a is blocked", ln)
	_, detail, _ := strings.Cut(out, ": ")
	e.audited(t, "block_source", "addr:"+a, "done", detail[:strings.LastIndex(detail, " (action ")])
	time.Sleep(time.Until(start.Add(2 * time.Second)))
	e.a.mustNotReach(t, "2 s into a 3 s block", ln)
	waitFor(t, 3*time.Second, "the block to expire", func() bool { return e.a.dial(ln, blockedDial) == nil })
	if took := time.Since(start); took < 3*time.Second {
		t.Errorf("a reached the listener %s after a 3 s block began", took)
	}

	// Without --ttl, the block lasts the agent's response.block_ttl (10m).
	asked := time.Now()
	out = e.mustRespond(t, "done block_source addr:"+a+": blocked "+a+"/32 until ", "block", a)
	until, err := time.Parse(time.RFC3339, strings.Fields(strings.TrimPrefix(out, "done block_source addr:"+a+": blocked "+a+"/32 until "))[0])
	if err != nil || until.Before(asked.Add(10*time.Minute).Truncate(time.Second)) || until.After(time.Now().Add(10*time.Minute)) {
		t.Errorf("a block without --ttl said %q (%v), want it to last the configured 10m", out, err)
	}
	e.a.mustNotReach(t, "blocked for 10m", ln)
	e.mustRespond(t, "done unblock addr:"+a+": unblocked "+a+"/32 (action ", "unblock", a)
	e.a.mustReach(t, "after unblock", ln)
	e.audited(t, "unblock", "addr:"+a, "done", "unblocked "+a+"/32")
}

// testSafety asks for what the agent never does: each is refused with its
// reason, exits 1 and is audited; a dry run kills nothing.
func (e *respEnv) testSafety(t *testing.T) {
	comm, err := os.ReadFile("/proc/2/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "kthreadd" {
		t.Fatalf("pid 2 is %q (%v), want the kernel thread kthreadd", comm, err)
	}
	agent := strconv.Itoa(e.ls.agent.Process.Pid)
	server := e.a.host.String()
	for _, c := range []struct {
		args           []string
		action, target string
		reason         string
	}{
		{[]string{"kill", "1"}, "kill", "pid:1", "pid 1 (init) is never acted on"},
		{[]string{"kill", agent}, "kill", "pid:" + agent, "pid " + agent + " is the agent itself"},
		{[]string{"block", server}, "block_source", "addr:" + server, server + "/32 covers " + server + "/32, which the agent never blocks (its server or the allow-list)"},
		{[]string{"freeze", "2"}, "freeze", "pid:2", "pid 2 (kthreadd) is a kernel thread"},
	} {
		out, code := e.respond(t, c.args...)
		want := "refused " + c.action + " " + c.target + ": " + c.reason + " (action "
		if code != 1 || !strings.HasPrefix(out, want) {
			t.Errorf("respond %s: exit status %d, output %q; want 1 and %q...", strings.Join(c.args, " "), code, out, want)
		}
		e.audited(t, c.action, c.target, "refused", c.reason)
	}

	sleeper := exec.Command("/bin/sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	pid := strconv.Itoa(sleeper.Process.Pid)
	sleep := resolve(t, "/bin/sleep")
	e.mustRespond(t, "dry-run kill pid:"+pid+": would kill pid "+pid+" ("+sleep+") and its descendants (action ", "kill", pid, "--dry-run")
	time.Sleep(100 * time.Millisecond)
	if err := sleeper.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the dry run's target: %v, want it alive", err)
	}
	if rec := e.audited(t, "kill", "pid:"+pid, "dry-run", "would kill pid "+pid+" ("+sleep+") and its descendants"); !rec.GetDryRun() {
		t.Errorf("dry-run record %v has dry_run unset", rec)
	}
}

// testIsolation isolates the host: neither namespace reaches the listener,
// the agent still gets an incident to its server; release-host undoes it.
func (e *respEnv) testIsolation(t *testing.T) {
	ln := netnstest.Serve(t, netnstest.Here, net.JoinHostPort(e.a.host.String(), "0"), false)
	e.a.mustReach(t, "before isolation", ln)
	e.c.mustReach(t, "before isolation", ln)

	t.Cleanup(func() { _, _ = e.respond(t, "release-host") })
	server := e.a.host.String()
	e.mustRespond(t, "done isolate host: host isolated: only ["+server+"/32] reachable (action ", "isolate")
	e.a.mustNotReach(t, "isolated", ln)
	e.c.mustNotReach(t, "isolated", ln)
	e.audited(t, "isolate", "host", "done", "host isolated: only ["+server+"/32] reachable")

	// The agent still reaches its server: a new incident arrives.
	payload := filepath.Join(tmpDir(t), "while-isolated")
	copyTrue(t, payload)
	pid := run(t, exec.Command(payload))
	e.incs.await(t, 5*time.Second, "incident raised while isolated", byPID("exec-from-tmp", pid))

	e.mustRespond(t, "done release_host host: isolation ended (action ", "release-host")
	e.a.mustReach(t, "after release-host", ln)
	e.c.mustReach(t, "after release-host", ln)
	e.audited(t, "release_host", "host", "done", "isolation ended")
}

// netClientProc is a running netClient.
type netClientProc struct {
	cmd   *exec.Cmd
	in    io.Writer
	lines *bufio.Scanner
}

func (e *respEnv) startNetClient(t *testing.T, prog string) *netClientProc {
	t.Helper()
	cmd := exec.Command(prog)
	cmd.Env = append(os.Environ(), netClientEnv+"=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return &netClientProc{cmd: cmd, in: in, lines: bufio.NewScanner(out)}
}

// ask sends one command and returns the answer.
func (p *netClientProc) ask(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := fmt.Fprintln(p.in, cmd); err != nil {
		t.Fatal(err)
	}
	if !p.lines.Scan() {
		t.Fatalf("net client %d gave no answer to %q: %v", p.cmd.Process.Pid, cmd, p.lines.Err())
	}
	return p.lines.Text()
}

// testQuarantine cuts one process's network: its new connections fail
// with EPERM and the one it had is cut; a sibling's are not.
func (e *respEnv) testQuarantine(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	prog := e.copyProgram(t, self, "vnc"+randomHex(4))
	ln := netnstest.Serve(t, netnstest.Here, "127.0.0.1:0", true)
	inside, outside := e.startNetClient(t, prog), e.startNetClient(t, prog)
	var local string
	for _, p := range []*netClientProc{inside, outside} {
		got := p.ask(t, "open "+ln.String())
		if !strings.HasPrefix(got, "ok ") {
			t.Fatalf("open before the quarantine: %s", got)
		}
		if p == inside {
			local = strings.TrimPrefix(got, "ok ")
		}
	}
	pid := strconv.Itoa(inside.cmd.Process.Pid)
	t.Cleanup(func() { _, _ = e.respond(t, "release", pid) })
	out := e.mustRespond(t, "done quarantine pid:"+pid+": cut the network of pid "+pid+" ("+prog+") and its descendants (pids ["+pid+"]) in ", "quarantine", pid)
	if want := "; cut 1 connection(s) it already had: tcp " + local + " -> " + ln.String() + " established (pids [" + pid + "]); release with: "; !strings.Contains(out, want) {
		t.Errorf("quarantine said %q, want %q", out, want)
	}
	if got := inside.ask(t, "dial "+ln.String()); got != "EPERM" {
		t.Errorf("quarantined process connecting to %s: %s, want EPERM", ln, got)
	}
	if got := inside.ask(t, "echo"); !strings.HasPrefix(got, "error: ") {
		t.Errorf("quarantined process's connection made before the quarantine: %s, want it cut", got)
	}
	if got := outside.ask(t, "dial "+ln.String()); got != "ok" {
		t.Errorf("sibling outside the quarantine connecting to %s: %s, want ok", ln, got)
	}
	if got := outside.ask(t, "echo"); got != "ok" {
		t.Errorf("sibling's established connection: %s, want ok", got)
	}

	e.mustRespond(t, "done release pid:"+pid+": released pids ["+pid+"] to their cgroups (action ", "release", pid)
	if got := inside.ask(t, "dial "+ln.String()); got != "ok" {
		t.Errorf("released process connecting to %s: %s, want ok", ln, got)
	}
}
