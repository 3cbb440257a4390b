package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/vigil-sensor/vigil/agent/transport"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/store"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// durableAgentEnv makes the test binary act as a durability agent (see
// runDurableAgent) instead of running tests; its value is the server
// address. It is handled in init, before TestMain, so that e2e_test.go's
// helper switch needs no case for it.
const durableAgentEnv = "VIGIL_E2E_DURABLE_AGENT"

// The durability agent's other settings.
const (
	durableOutboxEnv = "VIGIL_E2E_DURABLE_OUTBOX"
	durableHostEnv   = "VIGIL_E2E_DURABLE_HOST"
	durableSeedEnv   = "VIGIL_E2E_DURABLE_SEED"
	durableCountEnv  = "VIGIL_E2E_DURABLE_COUNT"
)

func init() {
	if addr := os.Getenv(durableAgentEnv); addr != "" {
		n, _ := strconv.Atoi(os.Getenv(durableCountEnv))
		if err := runDurableAgent(addr, os.Getenv(durableOutboxEnv), os.Getenv(durableHostEnv), os.Getenv(durableSeedEnv), n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// runDurableAgent is a real transport.Client in a process of its own: it
// restores its outbox and prints "restored N", then sends incidents 0..n-1
// of seed (see durableID), printing "start I" before each Send and "done I"
// once Send has returned, and prints "drained" and returns once the server
// has acknowledged everything. Each line is one write to stdout, so the
// parent knows what Send returned for even when this process is killed.
func runDurableAgent(addr, outbox, host, seed string, n int) error {
	c := &transport.Client{
		Addr:      addr,
		Hello:     &vigilv1.Hello{HostId: host, Hostname: host},
		OutboxDir: outbox,
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	restored, err := c.Restore()
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	fmt.Fprintf(os.Stdout, "restored %d\n", restored)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()
	for i := range n {
		fmt.Fprintf(os.Stdout, "start %d\n", i)
		if err := c.Send(durableIncident(host, seed, i)); err != nil {
			return fmt.Errorf("send %d: %w", i, err)
		}
		fmt.Fprintf(os.Stdout, "done %d\n", i)
	}
	deadline := time.Now().Add(30 * time.Second)
	for c.Stats().Pending > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d incidents still unacknowledged after 30s", c.Stats().Pending)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := c.Stats(); st.Rejected != 0 {
		return fmt.Errorf("the server rejected %d incidents", st.Rejected)
	}
	fmt.Fprintln(os.Stdout, "drained")
	return nil
}

// durableID is the id of incident i of seed: a UUIDv7 whose timestamp is
// a fixed instant plus i milliseconds (so ids sort in sending order) and
// whose random bits come from a hash of seed and i.
func durableID(seed string, i int) string {
	var u uuid.UUID
	ms := uint64(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()) + uint64(i)
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], ms)
	copy(u[:6], ts[2:])
	h := sha256.Sum256([]byte(seed + "/" + strconv.Itoa(i)))
	copy(u[6:], h[:10])
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	return u.String()
}

// durableIncident is incident i of seed on host.
func durableIncident(host, seed string, i int) *vigilv1.Incident {
	inc := storetest.NewIncident(host, "exec-from-tmp", vigilv1.Severity_SEVERITY_MEDIUM)
	inc.Id = durableID(seed, i)
	return inc
}

// killableServer is a vigil-server process that a test may SIGKILL and
// start again on the same address and database.
type killableServer struct {
	bin, addr, db string
	cmd           *exec.Cmd
	log           *syncBuffer
}

// newKillableServer builds vigil-server and starts it on a free loopback
// port with an SQLite database in a temporary directory. Whatever still
// runs when the test ends is killed.
func newKillableServer(t *testing.T) *killableServer {
	t.Helper()
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bins, err := os.MkdirTemp(cacheDir, "e2e-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bins) })
	build := exec.Command("go", "build", "-o", bins+"/", "./server/cmd/vigil-server")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &killableServer{bin: filepath.Join(bins, "vigil-server"), addr: ln.Addr().String(),
		db: filepath.Join(t.TempDir(), "server.db"), log: &syncBuffer{}}
	ln.Close()
	t.Cleanup(func() {
		if s.cmd != nil {
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("vigil-server log:\n%s", s.log.String())
		}
	})
	s.start(t)
	return s
}

// start starts the server and waits until it listens.
func (s *killableServer) start(t *testing.T) {
	t.Helper()
	s.cmd = exec.Command(s.bin, "--listen", s.addr, "--db", s.db, "--metrics", "", "--console", "")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "vigil-server to listen", func() bool {
		c, err := net.Dial("tcp", s.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// kill ends the server with SIGKILL.
func (s *killableServer) kill(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = s.cmd.Wait()
	s.cmd = nil
}

// stop ends the server with SIGTERM and checks that it exits cleanly.
func (s *killableServer) stop(t *testing.T) {
	t.Helper()
	_ = s.cmd.Process.Signal(unix.SIGTERM)
	err := s.cmd.Wait()
	s.cmd = nil
	if err != nil {
		t.Fatalf("vigil-server after SIGTERM: %v", err)
	}
}

// stored reads every incident in the stopped server's database, oldest
// first.
func (s *killableServer) stored(t *testing.T) []*vigilv1.Incident {
	t.Helper()
	st, err := store.OpenSQLite(s.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var all []*vigilv1.Incident
	var after uint64
	for {
		page, err := st.After(context.Background(), nil, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if len(page) < 1000 {
			return all
		}
		after = page[len(page)-1].GetCursor()
	}
}

// outboxFiles lists the incident files in an outbox directory.
func outboxFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.pb"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestDurabilityServerKilled has two agents (real transport clients with
// their own outboxes and host ids) send 5,000 incidents each as fast as
// Send allows, SIGKILLs the server once ~3,000 are acknowledged, starts it
// again a second later on the same address and database, and checks that
// the database ends with every incident exactly once and nothing else.
func TestDurabilityServerKilled(t *testing.T) {
	const perAgent = 5000
	begin := time.Now()
	srv := newKillableServer(t)

	type agent struct {
		host   string
		client *transport.Client
		sent   []string
		err    error
		done   chan struct{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var agents []*agent
	var runs sync.WaitGroup
	defer runs.Wait()
	defer cancel()
	for _, host := range []string{"durability-host-a", "durability-host-b"} {
		a := &agent{host: host, done: make(chan struct{})}
		a.client = &transport.Client{
			Addr:      srv.addr,
			Hello:     &vigilv1.Hello{HostId: host, Hostname: host},
			OutboxDir: filepath.Join(t.TempDir(), "outbox"),
			Logger:    slog.New(slog.DiscardHandler),
		}
		agents = append(agents, a)
		runs.Add(1)
		go func() { defer runs.Done(); _ = a.client.Run(ctx) }()
	}
	sendStart := time.Now()
	for _, a := range agents {
		go func() {
			defer close(a.done)
			for range perAgent {
				inc := storetest.NewIncident(a.host, "exec-from-tmp", vigilv1.Severity_SEVERITY_MEDIUM)
				if err := a.client.Send(inc); err != nil {
					a.err = err
					return
				}
				a.sent = append(a.sent, inc.Id)
			}
		}()
	}
	acked := func() (n uint64) {
		for _, a := range agents {
			n += a.client.Stats().Acked
		}
		return n
	}
	finished := func() bool {
		for _, a := range agents {
			select {
			case <-a.done:
			default:
				return false
			}
		}
		return true
	}

	waitFor(t, 30*time.Second, "3,000 incidents acknowledged", func() bool { return acked() >= 3000 })
	atKill := acked()
	sendingAtKill := !finished()
	var pendingAtKill int
	for _, a := range agents {
		pendingAtKill += a.client.Stats().Pending
	}
	srv.kill(t)
	t.Logf("server SIGKILLed with %d acknowledged, %d pending, agents still sending: %v (%s after the first Send)",
		atKill, pendingAtKill, sendingAtKill, time.Since(sendStart).Round(time.Millisecond))
	if !sendingAtKill || pendingAtKill == 0 {
		t.Fatalf("the kill did not land mid-burst: agents still sending %v, %d pending", sendingAtKill, pendingAtKill)
	}
	time.Sleep(time.Second)
	srv.start(t)

	waitFor(t, 40*time.Second, "both agents to send everything and the server to acknowledge it", func() bool {
		if !finished() {
			return false
		}
		for _, a := range agents {
			if a.client.Stats().Pending != 0 {
				return false
			}
		}
		return true
	})
	t.Logf("all %d acknowledged %s after the first Send", 2*perAgent, time.Since(sendStart).Round(time.Millisecond))
	for _, a := range agents {
		if a.err != nil {
			t.Fatalf("%s: Send: %v", a.host, a.err)
		}
		// Every report was answered once, by an ack: none was rejected.
		if st := a.client.Stats(); st.Acked != perAgent || st.Rejected != 0 {
			t.Errorf("%s: stats %+v, want %d acked and none rejected", a.host, st, perAgent)
		}
		if left := outboxFiles(t, a.client.OutboxDir); len(left) != 0 {
			t.Errorf("%s: outbox still holds %d incidents after every ack", a.host, len(left))
		}
	}
	cancel()
	runs.Wait()
	srv.stop(t)

	got := srv.stored(t)
	count := make(map[string]int, len(got))
	hostOf := make(map[string]string, len(got))
	for _, inc := range got {
		count[inc.GetId()]++
		hostOf[inc.GetId()] = inc.GetHostId()
	}
	want := 0
	for _, a := range agents {
		if len(a.sent) != perAgent {
			t.Fatalf("%s sent %d incidents, want %d", a.host, len(a.sent), perAgent)
		}
		want += len(a.sent)
		missing := 0
		for _, id := range a.sent {
			switch {
			case count[id] == 0:
				missing++
			case count[id] > 1:
				t.Errorf("%s: incident %s stored %d times", a.host, id, count[id])
			case hostOf[id] != a.host:
				t.Errorf("%s: incident %s stored as host %q", a.host, id, hostOf[id])
			}
			delete(count, id)
		}
		if missing != 0 {
			t.Errorf("%s: %d of its %d incidents are not stored", a.host, missing, perAgent)
		}
	}
	if len(got) != want || len(count) != 0 {
		t.Errorf("the database holds %d incidents, want exactly %d; %d of them were never sent", len(got), want, len(count))
	}
	t.Logf("%d incidents from 2 agents, server SIGKILLed once: run time %s", want, time.Since(begin).Round(time.Millisecond))
}

// durableAgentProc is one durability agent subprocess and what it printed.
type durableAgentProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	mu     sync.Mutex
	lines  []string
	eof    chan struct{}
}

// startDurableAgent starts the test binary as a durability agent.
func startDurableAgent(t *testing.T, addr, outbox, host, seed string, n int) *durableAgentProc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &durableAgentProc{cmd: exec.Command(self), stderr: &syncBuffer{}, eof: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), durableAgentEnv+"="+addr, durableOutboxEnv+"="+outbox, durableHostEnv+"="+host,
		durableSeedEnv+"="+seed, durableCountEnv+"="+strconv.Itoa(n))
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.eof)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.eof
		_ = p.cmd.Wait()
		if t.Failed() {
			t.Logf("durability agent %d stderr:\n%s", p.cmd.Process.Pid, p.stderr.String())
		}
	})
	return p
}

// last returns the number on the last line that starts with prefix, or -1.
func (p *durableAgentProc) last(prefix string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.lines) - 1; i >= 0; i-- {
		if rest, ok := strings.CutPrefix(p.lines[i], prefix+" "); ok {
			n, _ := strconv.Atoi(rest)
			return n
		}
	}
	return -1
}

// has reports whether the agent printed line.
func (p *durableAgentProc) has(line string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		if l == line {
			return true
		}
	}
	return false
}

// TestDurabilityAgentKilled runs a real transport client in a subprocess
// sending 5,000 incidents with deterministic ids, freezes the server
// (SIGSTOP) part way so that a backlog builds up unacknowledged, some of it
// already in the server's socket, SIGKILLs the agent mid-burst, lets the
// server go on, and starts a second agent process on the same outbox,
// which restores and resends. The server must end with every incident the
// first process's Send returned for, each once, and nothing else (the one
// Send under way at the kill may or may not have made it).
func TestDurabilityAgentKilled(t *testing.T) {
	const (
		total  = 5000
		freeze = 1500 // Sends returned when the server is frozen
		kill   = 2500 // Sends returned when the agent is killed
		host   = "durability-host-k"
		seed   = "durability-agent-killed"
	)
	begin := time.Now()
	srv := newKillableServer(t)
	outbox := filepath.Join(t.TempDir(), "outbox")

	first := startDurableAgent(t, srv.addr, outbox, host, seed, total)
	waitFor(t, 30*time.Second, fmt.Sprintf("%d Sends to return", freeze), func() bool { return first.last("done") >= freeze-1 })
	if err := srv.cmd.Process.Signal(unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%d Sends to return", kill), func() bool { return first.last("done") >= kill-1 })
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.eof
	_ = first.cmd.Wait()
	if err := srv.cmd.Process.Signal(unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	done, started := first.last("done"), first.last("start")
	if first.has("drained") || done >= total-1 {
		t.Fatalf("the agent was killed after its burst (last Send returned %d of %d)", done, total)
	}
	if started != done && started != done+1 {
		t.Fatalf("the agent printed start %d after done %d: it sends one at a time", started, done)
	}
	inFlight := started != done // Send of incident started had begun, not returned
	inFlightInOutbox := false
	if inFlight {
		_, err := os.Stat(filepath.Join(outbox, durableID(seed, started)+".pb"))
		inFlightInOutbox = err == nil
	}
	backlog := len(outboxFiles(t, outbox))
	t.Logf("agent SIGKILLed after %d Sends returned (Send of incident %d under way: %v, its file in the outbox: %v); %d incidents in the outbox",
		done+1, started, inFlight, inFlightInOutbox, backlog)
	if backlog == 0 {
		t.Fatal("nothing was left unacknowledged in the outbox: the restart has nothing to prove")
	}

	second := startDurableAgent(t, srv.addr, outbox, host, seed, 0)
	waitFor(t, 30*time.Second, "the restarted agent to resend its outbox", func() bool {
		select {
		case <-second.eof:
			return true
		default:
			return false
		}
	})
	if err := second.cmd.Wait(); err != nil {
		t.Fatalf("restarted agent: %v\n%s", err, second.stderr.String())
	}
	if !second.has(fmt.Sprintf("restored %d", backlog)) || !second.has("drained") {
		second.mu.Lock()
		t.Fatalf("restarted agent printed %q, want restored %d and drained", second.lines, backlog)
	}
	if left := outboxFiles(t, outbox); len(left) != 0 {
		t.Errorf("outbox still holds %d incidents after the restarted agent drained it", len(left))
	}
	srv.stop(t)

	got := srv.stored(t)
	count := make(map[string]int, len(got))
	for _, inc := range got {
		count[inc.GetId()]++
		if inc.GetHostId() != host {
			t.Errorf("incident %s stored as host %q, want %q", inc.GetId(), inc.GetHostId(), host)
		}
	}
	missing := 0
	for i := 0; i <= done; i++ {
		id := durableID(seed, i)
		switch count[id] {
		case 0:
			missing++
		case 1:
		default:
			t.Errorf("incident %d (%s) stored %d times", i, id, count[id])
		}
		delete(count, id)
	}
	if missing != 0 {
		t.Errorf("%d of the %d incidents Send returned for are not stored", missing, done+1)
	}
	if inFlight {
		id := durableID(seed, started)
		switch {
		case count[id] > 1:
			t.Errorf("in-flight incident %d stored %d times", started, count[id])
		case count[id] == 0 && inFlightInOutbox:
			t.Errorf("in-flight incident %d was in the outbox at the restart but is not stored", started)
		}
		delete(count, id)
	}
	for id := range count {
		t.Errorf("stored incident %s was never handed to Send", id)
	}
	t.Logf("server holds %d incidents for %d returned Sends: run time %s", len(got), done+1, time.Since(begin).Round(time.Millisecond))
}
