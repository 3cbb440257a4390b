// Package e2e runs the real vigil-server and vigil-agent on this host,
// provokes each built-in rule with a real process, and checks what reaches
// a client of the server's incident stream.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-sensor/vigil/agent/rules"
	"github.com/vigil-sensor/vigil/internal/sshtest"
	"github.com/vigil-sensor/vigil/internal/testutil"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// helperEnv makes the test binary act as a helper process instead of running tests.
const helperEnv = "VIGIL_E2E_HELPER"

// agentStartTimeout bounds how long vigil-agent may take to load and attach
// its sensors. The kernel verifies the file family's path programs one by
// one, about 15 s in all on this project's 2-core VM when it is idle, and
// several times that while the machine is busy.
const agentStartTimeout = 90 * time.Second

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "listen-then-shell":
		// A network-facing service that spawns a shell.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := exec.Command("/bin/sh", "-c", "exit 0").Run(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		// Stay up while the agent looks at this process's sockets.
		time.Sleep(3 * time.Second)
		ln.Close()
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// stack is a running server and agent, and what a stream subscriber got.
type stack struct {
	addr     string
	bins     string
	scratch  string
	conn     *grpc.ClientConn
	agentLog *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// repoRoot is the checkout's top directory (tests run in their package directory).
func repoRoot(t *testing.T) string {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// cacheDir is where the test puts programs it runs: never under a temporary
// directory, wherever the checkout lives, so that running them is not
// itself suspicious to the agent under test.
const cacheDir = "/var/cache/vigil-test"

// buildBinaries builds vigil-agent, vigil-server and vigilctl into a
// directory under cacheDir and returns it.
func buildBinaries(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bins, err := os.MkdirTemp(cacheDir, "e2e-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bins) })
	build := exec.Command("go", "build", "-o", bins+"/", "./agent/cmd/vigil-agent", "./server/cmd/vigil-server", "./server/cmd/vigilctl")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bins
}

// startStack builds the binaries outside /tmp (so that running them is not
// itself suspicious), starts vigil-server on a free loopback port and
// vigil-agent pointed at it, and waits until the agent is attached.
func startStack(t *testing.T) *stack {
	testutil.RequireRoot(t)
	bins := buildBinaries(t)
	var err error
	s := &stack{bins: bins, agentLog: &syncBuffer{}}
	s.scratch, err = os.MkdirTemp(cacheDir, "e2e-run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(s.scratch) })

	s.startServer(t, "127.0.0.1")

	// The agent.
	agent := exec.Command(filepath.Join(bins, "vigil-agent"), "--server", s.addr, "--state-dir", filepath.Join(s.scratch, "agent"))
	agent.Stdout, agent.Stderr = s.agentLog, s.agentLog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = agent.Process.Signal(unix.SIGTERM)
		_ = agent.Wait()
		if t.Failed() {
			t.Logf("vigil-agent log:\n%s", s.agentLog.String())
		}
	})
	waitFor(t, agentStartTimeout, "vigil-agent to attach and connect", func() bool {
		log := s.agentLog.String()
		return strings.Contains(log, "vigil-agent running") && strings.Contains(log, "connected to server")
	})

	s.conn, err = grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.conn.Close() })
	return s
}

// startServer starts vigil-server on host, on a port the kernel picks, and
// waits until it listens; it is stopped when the test ends.
func (s *stack) startServer(t *testing.T, host string) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ln.Close()
	// No metrics or console listeners: their fixed default ports would
	// collide between stacks running side by side.
	server := exec.Command(filepath.Join(s.bins, "vigil-server"), "--listen", s.addr, "--db", filepath.Join(t.TempDir(), "server.db"),
		"--metrics", "", "--console", "")
	serverLog := &syncBuffer{}
	server.Stdout, server.Stderr = serverLog, serverLog
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = server.Process.Signal(unix.SIGTERM)
		_ = server.Wait()
		if t.Failed() {
			t.Logf("vigil-server log:\n%s", serverLog.String())
		}
	})
	waitFor(t, 10*time.Second, "vigil-server to listen", func() bool {
		c, err := net.Dial("tcp", s.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// subscriber is one StreamIncidents client.
type subscriber struct {
	cancel    context.CancelFunc
	incidents chan *vigilv1.Incident
	done      chan error
}

func (s *stack) subscribe(t *testing.T, after uint64) *subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := vigilv1.NewIncidentServiceClient(s.conn).StreamIncidents(ctx, &vigilv1.StreamIncidentsRequest{AfterCursor: after})
	if err != nil {
		cancel()
		t.Fatalf("stream incidents: %v", err)
	}
	sub := &subscriber{cancel: cancel, incidents: make(chan *vigilv1.Incident, 10000), done: make(chan error, 1)}
	go func() {
		for {
			inc, err := stream.Recv()
			if err != nil {
				sub.done <- err
				close(sub.incidents)
				return
			}
			sub.incidents <- inc
		}
	}()
	t.Cleanup(cancel)
	return sub
}

// streamLog keeps, in arrival order, what the incident revisions of a
// subscriber yield, so that steps running at the same time can each wait
// for their own entry, whenever it came.
type streamLog[T any] struct {
	mu  sync.Mutex
	got []T
	err error // why the stream ended, once it has
}

// drain starts draining sub into l; entries says what is kept of each
// revision (it runs on the draining goroutine alone).
func (l *streamLog[T]) drain(sub *subscriber, entries func(*vigilv1.Incident) []T) {
	go func() {
		for inc := range sub.incidents {
			kept := entries(inc)
			l.mu.Lock()
			l.got = append(l.got, kept...)
			l.mu.Unlock()
		}
		err := <-sub.done
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
	}()
}

// await waits up to limit for the first entry received (since the stream
// began) that match accepts. It fails the test when the stream ends first,
// or when time runs out, with what was received as missing says it.
func (l *streamLog[T]) await(t *testing.T, limit time.Duration, what string, match func(T) bool, missing func() string) T {
	t.Helper()
	deadline := time.Now().Add(limit)
	next := 0
	for {
		l.mu.Lock()
		for ; next < len(l.got); next++ {
			if v := l.got[next]; match(v) {
				l.mu.Unlock()
				return v
			}
		}
		err := l.err
		l.mu.Unlock()
		if err != nil {
			t.Fatalf("stream ended while waiting for %s: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s%s", what, limit, missing())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// snapshot returns the entries received so far.
func (l *streamLog[T]) snapshot() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

// incidentLog keeps every incident revision a subscriber receives.
type incidentLog struct {
	streamLog[*vigilv1.Incident]
}

// collectIncidents drains sub into a new incidentLog.
func collectIncidents(sub *subscriber) *incidentLog {
	l := &incidentLog{}
	l.drain(sub, func(inc *vigilv1.Incident) []*vigilv1.Incident { return []*vigilv1.Incident{inc} })
	return l
}

// next waits up to limit for the next incident that match accepts and
// returns it with every incident that came before it.
func (sub *subscriber) next(t *testing.T, limit time.Duration, what string, match func(*vigilv1.Incident) bool) (*vigilv1.Incident, []*vigilv1.Incident) {
	t.Helper()
	var before []*vigilv1.Incident
	timeout := time.After(limit)
	for {
		select {
		case inc, ok := <-sub.incidents:
			if !ok {
				t.Fatalf("stream ended while waiting for %s: %v", what, <-sub.done)
			}
			if match(inc) {
				return inc, before
			}
			before = append(before, inc)
		case <-timeout:
			var got []string
			for _, inc := range before {
				got = append(got, inc.RuleId+" "+inc.GetProcess().GetExe())
			}
			t.Fatalf("no %s within %s; got instead: %q", what, limit, got)
		}
	}
}

// run starts cmd and waits for it, failing the test when it cannot start.
func run(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Wait()
	return pid
}

// runCmdOK runs cmd, fails the test unless it exits 0 (with its output),
// and returns its pid.
func runCmdOK(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	pid := cmd.Process.Pid
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out.String())
	}
	return pid
}

func copyTrue(t *testing.T, path string) {
	t.Helper()
	image, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, image, 0o755); err != nil {
		t.Fatal(err)
	}
}

// tmpDir makes a directory under /tmp itself (whatever TMPDIR says), where
// running a program is suspicious.
func tmpDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "vigil-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func resolve(t *testing.T, path string) string {
	t.Helper()
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// want is what one signal of an incident must say.
type want struct {
	rule, tactic, technique string
	severity                vigilv1.Severity
	pid                     int
	exe                     string
	parentPID               int
	parentExe               string
}

// signalOf returns the signal of rule on process pid in inc, or nil.
func signalOf(inc *vigilv1.Incident, rule string, pid int) *vigilv1.Signal {
	for _, sig := range inc.GetSignals() {
		if sig.GetRuleId() == rule && int(sig.GetPid()) == pid {
			return sig
		}
	}
	return nil
}

// processOf returns the process pid as the incident records it (the
// triggering process, an ancestor or a related one), or nil.
func processOf(inc *vigilv1.Incident, pid uint32) *vigilv1.Process {
	if p := inc.GetProcess(); p.GetPid() == pid {
		return p
	}
	for _, list := range [][]*vigilv1.Process{inc.GetAncestors(), inc.GetRelated()} {
		for _, p := range list {
			if p.GetPid() == pid {
				return p
			}
		}
	}
	return nil
}

// check checks that inc holds the signal w describes, with the process, its
// parent and its ancestry up to pid 1.
func check(t *testing.T, inc *vigilv1.Incident, w want) {
	t.Helper()
	hostname, _ := os.Hostname()
	sig := signalOf(inc, w.rule, w.pid)
	if sig == nil {
		t.Fatalf("incident %s has no %s signal of pid %d", inc.GetId(), w.rule, w.pid)
	}
	if sig.Attack.GetTacticId() != w.tactic || sig.Attack.GetTechniqueId() != w.technique || sig.Severity != w.severity || sig.GetExe() != w.exe {
		t.Errorf("signal %s %s/%s %s on %s, want %s/%s %s on %s", sig.RuleId, sig.Attack.GetTacticId(), sig.Attack.GetTechniqueId(), sig.Severity,
			sig.GetExe(), w.tactic, w.technique, w.severity, w.exe)
	}
	if sig.GetParentExe() != w.parentExe || sig.GetReason() == "" {
		t.Errorf("signal parent %q reason %q, want parent %q and a reason", sig.GetParentExe(), sig.GetReason(), w.parentExe)
	}
	p := processOf(inc, uint32(w.pid))
	if p == nil || p.GetExe() != w.exe || int(p.GetPpid()) != w.parentPID {
		t.Fatalf("process %d recorded as %v, want exe %q ppid %d", w.pid, p, w.exe, w.parentPID)
	}
	// The ancestry, parent by parent, up to pid 1.
	seen := map[uint32]bool{}
	for cur := p; cur.GetPid() != 1; {
		if seen[cur.GetPid()] {
			t.Fatalf("ancestry loops at pid %d", cur.GetPid())
		}
		seen[cur.GetPid()] = true
		parent := processOf(inc, cur.GetPpid())
		if parent == nil {
			t.Fatalf("ancestry of pid %d breaks at %d (%s): parent %d not recorded", w.pid, cur.GetPid(), cur.GetExe(), cur.GetPpid())
		}
		if cur == p && (int(parent.GetPid()) != w.parentPID || parent.GetExe() != w.parentExe) {
			t.Errorf("parent pid %d exe %q, want %d %q", parent.GetPid(), parent.GetExe(), w.parentPID, w.parentExe)
		}
		cur = parent
	}
	if inc.Hostname != hostname || inc.HostId == "" || inc.Id == "" || inc.Cursor == 0 || inc.Title == "" || inc.Description == "" ||
		inc.Cause == "" || inc.Score <= 0 || inc.Revision == 0 {
		t.Errorf("incident header incomplete: id %q host %q/%q cursor %d title %q description %q cause %q score %v revision %d",
			inc.Id, inc.HostId, inc.Hostname, inc.Cursor, inc.Title, inc.Description, inc.Cause, inc.Score, inc.Revision)
	}
}

// byPID matches an incident (any revision) holding a signal of rule on pid.
func byPID(rule string, pid int) func(*vigilv1.Incident) bool {
	return func(inc *vigilv1.Incident) bool { return signalOf(inc, rule, pid) != nil }
}

// TestEndToEnd provokes every built-in rule and checks each incident
// reaches a StreamIncidents subscriber within 5 s, that a burst of benign
// execs raises nothing, and that a subscriber resuming from its last cursor
// gets exactly what it missed.
func TestEndToEnd(t *testing.T) {
	s := startStack(t)
	sub := s.subscribe(t, 0)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	me := os.Getpid()
	const limit = 5 * time.Second
	var last *vigilv1.Incident

	t.Run("exec-from-tmp", func(t *testing.T) {
		payload := filepath.Join(tmpDir(t), "payload")
		copyTrue(t, payload)
		pid := run(t, exec.Command(payload))
		inc, _ := sub.next(t, limit, "exec-from-tmp incident", byPID("exec-from-tmp", pid))
		check(t, inc, want{"exec-from-tmp", "TA0002", "T1204.002", vigilv1.Severity_SEVERITY_MEDIUM, pid, payload, me, self})
		last = inc
	})

	t.Run("shell-from-network-service", func(t *testing.T) {
		helper := exec.Command(self)
		helper.Env = append(os.Environ(), helperEnv+"=listen-then-shell")
		if err := helper.Start(); err != nil {
			t.Fatal(err)
		}
		defer helper.Wait()
		var shell *vigilv1.Signal
		inc, _ := sub.next(t, limit, "shell-from-network-service incident", func(inc *vigilv1.Incident) bool {
			for _, sig := range inc.GetSignals() {
				if p := processOf(inc, sig.GetPid()); sig.GetRuleId() == "shell-from-network-service" && int(p.GetPpid()) == helper.Process.Pid {
					shell = sig
					return true
				}
			}
			return false
		})
		check(t, inc, want{"shell-from-network-service", "TA0002", "T1059.004", vigilv1.Severity_SEVERITY_HIGH,
			int(shell.Pid), resolve(t, "/bin/sh"), helper.Process.Pid, self})
		if !strings.Contains(shell.Reason, "listens on a TCP port") {
			t.Errorf("reason %q does not say why", shell.Reason)
		}
		last = inc
	})

	t.Run("shadow-file-read", func(t *testing.T) {
		pid := run(t, exec.Command("/bin/cat", "/etc/shadow"))
		inc, _ := sub.next(t, limit, "shadow-file-read incident", byPID("shadow-file-read", pid))
		check(t, inc, want{"shadow-file-read", "TA0006", "T1003.008", vigilv1.Severity_SEVERITY_HIGH, pid, resolve(t, "/bin/cat"), me, self})
		if got := processOf(inc, uint32(pid)).GetArgs(); len(got) != 2 || got[1] != "/etc/shadow" {
			t.Errorf("args %q", got)
		}
		last = inc
	})

	t.Run("network-scanner", func(t *testing.T) {
		nmap := filepath.Join(s.scratch, "nmap")
		copyTrue(t, nmap)
		pid := run(t, exec.Command(nmap, "-sS", "127.0.0.1"))
		inc, _ := sub.next(t, limit, "network-scanner incident", byPID("network-scanner", pid))
		check(t, inc, want{"network-scanner", "TA0007", "T1046", vigilv1.Severity_SEVERITY_MEDIUM, pid, nmap, me, self})
		last = inc
	})

	t.Run("memfd-exec", func(t *testing.T) {
		fd, err := unix.MemfdCreate("vigil-e2e", 0)
		if err != nil {
			t.Fatal(err)
		}
		mem := os.NewFile(uintptr(fd), "memfd")
		defer mem.Close()
		image, _ := os.ReadFile("/bin/true")
		if _, err := mem.Write(image); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/proc/self/fd/3")
		cmd.ExtraFiles = []*os.File{mem}
		pid := run(t, cmd)
		inc, _ := sub.next(t, limit, "memfd-exec incident", byPID("memfd-exec", pid))
		check(t, inc, want{"memfd-exec", "TA0005", "T1620", vigilv1.Severity_SEVERITY_HIGH, pid, "/memfd:vigil-e2e", me, self})
		last = inc
	})

	t.Run("deleted-binary-exec", func(t *testing.T) {
		path := filepath.Join(s.scratch, "vanishing")
		copyTrue(t, path)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/proc/self/fd/3")
		cmd.ExtraFiles = []*os.File{f}
		pid := run(t, cmd)
		inc, _ := sub.next(t, limit, "deleted-binary-exec incident", byPID("deleted-binary-exec", pid))
		check(t, inc, want{"deleted-binary-exec", "TA0005", "T1070.004", vigilv1.Severity_SEVERITY_HIGH, pid, path, me, self})
		last = inc
	})
	if t.Failed() {
		return
	}

	t.Run("benign-burst-raises-nothing", func(t *testing.T) {
		burst := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done")
		burst.Dir = "/"
		run(t, burst)
		// A sentinel after the burst: the agent reads events in order, so
		// once the sentinel's incident is here, the burst has been judged.
		sentinel := filepath.Join(tmpDir(t), "sentinel")
		copyTrue(t, sentinel)
		pid := run(t, exec.Command(sentinel))
		inc, before := sub.next(t, 10*time.Second, "sentinel incident", byPID("exec-from-tmp", pid))
		for _, b := range before {
			sigs := b.GetSignals()
			sig := sigs[len(sigs)-1]
			t.Errorf("benign burst raised %s on %s (pid %d): %s", sig.RuleId, sig.GetExe(), sig.GetPid(), sig.GetReason())
		}
		last = inc
	})

	t.Run("resume-after-disconnect", func(t *testing.T) {
		sub.cancel()
		var missed []string
		for i := range 3 {
			p := filepath.Join(tmpDir(t), fmt.Sprintf("missed-%d", i))
			copyTrue(t, p)
			run(t, exec.Command(p))
			missed = append(missed, p)
		}
		// The three executions share this test's process tree, so they are
		// three signals of one incident: while nobody listens, the server
		// keeps its newest revision, at a cursor after the last one seen.
		names := func(inc *vigilv1.Incident) bool {
			for _, p := range missed {
				found := false
				for _, sig := range inc.GetSignals() {
					found = found || sig.GetExe() == p
				}
				if !found {
					return false
				}
			}
			return true
		}
		waitFor(t, limit, "the missed signals to be stored", func() bool {
			resp, err := vigilv1.NewIncidentServiceClient(s.conn).ListIncidents(context.Background(), &vigilv1.ListIncidentsRequest{PageSize: 1})
			return err == nil && len(resp.Incidents) == 1 && names(resp.Incidents[0])
		})
		again := s.subscribe(t, last.Cursor)
		inc, before := again.next(t, limit, "the incident with the missed signals", func(*vigilv1.Incident) bool { return true })
		if len(before) != 0 || !names(inc) || inc.Cursor <= last.Cursor || inc.Revision <= last.Revision {
			t.Fatalf("resumed with %s revision %d cursor %d (after cursor %d, revision %d); want one revision naming %q",
				inc.Id, inc.Revision, inc.Cursor, last.Cursor, last.Revision, missed)
		}
		select {
		case inc := <-again.incidents:
			t.Fatalf("extra incident after the missed ones: %s revision %d (cursor %d)", inc.Id, inc.Revision, inc.Cursor)
		case <-time.After(time.Second):
		}
		last = inc
	})

	t.Run("vigilctl", func(t *testing.T) {
		ctl := func(args ...string) string {
			t.Helper()
			out, err := exec.Command(filepath.Join(s.bins, "vigilctl"), append([]string{"--server", s.addr}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("vigilctl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		all, err := vigilv1.NewIncidentServiceClient(s.conn).ListIncidents(context.Background(), &vigilv1.ListIncidentsRequest{PageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		list := ctl("incidents", "list", "--json", "--limit", "1000")
		var ids []string
		lines := bufio.NewScanner(strings.NewReader(list))
		for lines.Scan() {
			var inc vigilv1.Incident
			if err := protojson.Unmarshal(lines.Bytes(), &inc); err != nil {
				t.Fatalf("vigilctl --json line %q: %v", lines.Text(), err)
			}
			ids = append(ids, inc.Id)
		}
		if len(ids) != len(all.Incidents) || len(ids) == 0 || ids[0] != all.Incidents[0].Id {
			t.Errorf("vigilctl incidents list --json printed %d incidents (first %v), the server holds %d (first %s)",
				len(ids), ids[:min(1, len(ids))], len(all.Incidents), all.Incidents[0].Id)
		}
		show := ctl("incidents", "show", last.Id)
		for _, wantText := range []string{last.Id, "exec-from-tmp", "T1204.002", last.Process.Exe, "Timeline", "Cause"} {
			if !strings.Contains(show, wantText) {
				t.Errorf("vigilctl incidents show lacks %q:\n%s", wantText, show)
			}
		}
	})
}

// TestAgentRefusesWithoutRoot runs vigil-agent as nobody and expects a
// clear refusal, not a BPF error.
func TestAgentRefusesWithoutRoot(t *testing.T) {
	testutil.RequireRoot(t) // to become nobody
	bins := buildBinaries(t)
	// A copy nobody can reach, wherever the checkout lives.
	dir, err := os.MkdirTemp(cacheDir, "e2e-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	image, err := os.ReadFile(filepath.Join(bins, "vigil-agent"))
	if err != nil {
		t.Fatal(err)
	}
	agent := filepath.Join(dir, "vigil-agent")
	if err := os.WriteFile(agent, image, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(agent, "--server", "127.0.0.1:1", "--state-dir", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("vigil-agent as nobody: %v, want exit status 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "vigil-agent must run as root (it loads BPF programs)") {
		t.Errorf("output does not say why:\n%s", out)
	}
}

// TestAgentCheckAndConfigErrors runs vigil-agent --check, then the agent
// with a broken configuration file.
func TestAgentCheckAndConfigErrors(t *testing.T) {
	testutil.RequireRoot(t)
	agent := filepath.Join(buildBinaries(t), "vigil-agent")
	builtin, err := rules.Load()
	if err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(agent, "--config", "../configs/agent.yaml", "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("--check: %v\n%s", err, out)
	}
	for _, want := range []string{
		"config     ../configs/agent.yaml",
		"preflight  root, BTF at /sys/kernel/btf/vmlinux",
		"process    ok, 3 hooks: tp_btf/sched_process_fork, tp_btf/sched_process_exec, tp_btf/sched_process_exit",
		"file       ok, ",
		"login      ok, 8 hooks: ",
		"network    ok, ",
		fmt.Sprintf("rules      %d enabled of %d (built in, plus 0 files in /etc/vigil/rules.d)", len(builtin.Rules()), len(builtin.Rules())),
		"anomaly    on, learning for 24h0m0s from the first event; incidents stay open 10m0s for related signals",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--check output lacks %q:\n%s", want, out)
		}
	}

	// A broken rule file: --check names it and fails.
	rulesDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(rulesDir, "local.yaml"), []byte("rules:\n  - id: local-x\n    title: t\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withRules := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(withRules, []byte("detection:\n  rules_dir: "+rulesDir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(agent, "--config", withRules, "--check").CombinedOutput()
	if err == nil || !strings.Contains(string(out), rulesDir+`/local.yaml:2:9: rule "local-x": missing condition`) ||
		!strings.Contains(string(out), "rule files in "+rulesDir+" rejected") {
		t.Errorf("--check with a broken rule file: %v\n%s", err, out)
	}

	bad := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(bad, []byte("sensors:\n  file:\n    watch: [/etc, home]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(agent, "--config", bad).CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 2 {
		t.Fatalf("broken config: %v, want exit status 2\n%s", err, out)
	}
	if want := bad + `: sensors.file.watch[1]: "home" is not an absolute path`; !strings.Contains(string(out), want) {
		t.Errorf("broken config output %q lacks %q", out, want)
	}
}

// TestIncidentNamesTheSSHLogin logs in over SSH to a private sshd as a
// throwaway user, runs a program from /tmp in that login, and checks that
// the incident names the login it came from.
func TestIncidentNamesTheSSHLogin(t *testing.T) {
	s := startStack(t)
	sub := s.subscribe(t, 0)
	u := sshtest.CreateUser(t)
	port, _ := sshtest.StartSSHD(t, u)

	payload := filepath.Join(tmpDir(t), "from-ssh")
	copyTrue(t, payload)
	if err := os.Chmod(filepath.Dir(payload), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := sshtest.SSHLogin(t, port, u, u.Password, payload); err != nil {
		t.Fatalf("ssh %s@127.0.0.1 %s: %v\n%s", u.Name, payload, err, out)
	}
	var sig *vigilv1.Signal
	inc, _ := sub.next(t, 5*time.Second, "incident of the program run over SSH", func(inc *vigilv1.Incident) bool {
		for _, s := range inc.GetSignals() {
			if s.GetRuleId() == "exec-from-tmp" && s.GetExe() == payload {
				sig = s
				return true
			}
		}
		return false
	})
	p, l := processOf(inc, sig.GetPid()), inc.GetLogin()
	if p.Uid != u.UID || p.User != u.Name {
		t.Errorf("process uid %d user %q, want %d %q", p.Uid, p.User, u.UID, u.Name)
	}
	if l == nil {
		t.Fatalf("incident names no login; process session id %d", p.SessionId)
	}
	if l.Service != "sshd" || l.User != u.Name || l.RemoteHost != "127.0.0.1" || l.SessionId != p.SessionId || l.SessionId == ^uint32(0) {
		t.Errorf("login %v (process session %d), want sshd login of %s from 127.0.0.1 in the process's session", l, p.SessionId, u.Name)
	}
	if !strings.Contains(inc.Cause, "A login to "+u.Name+" over sshd from 127.0.0.1") {
		t.Errorf("cause %q does not name the login", inc.Cause)
	}
}
