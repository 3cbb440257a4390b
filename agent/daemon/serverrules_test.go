package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/vigil-sensor/vigil/agent/config"
	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/incident"
	"github.com/vigil-sensor/vigil/agent/proctree"
	"github.com/vigil-sensor/vigil/agent/rules"
	"github.com/vigil-sensor/vigil/agent/transport"
	"github.com/vigil-sensor/vigil/internal/pgtest"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/app"
)

// Tokens of the test server, one per role.
const (
	adminToken     = "admin-token-0123456789"
	viewerToken    = "viewer-token-0123456789"
	responderToken = "responder-token-0123456789"
)

// fleetRule is a server rule set's file: a rule on exec of fleetcheck.
const fleetRule = `lists:
  fleet_tools: [fleetcheck]
rules:
  - id: fleet-rule
    title: Fleet tool run
    description: A program the fleet's admins watch for ran.
    severity: medium
    tactic: TA0002 Execution
    technique: T1059 Command and Scripting Interpreter
    on: [exec]
    condition: process.name in fleet_tools
    reason: "'fleet tool ' + process.exe"
`

// agentUnderTest is the detection path of an agent (rules, pipeline) with
// a real transport client to the server, as Run wires them.
type agentUnderTest struct {
	det    *detection
	client *transport.Client
	mu     sync.Mutex // the pipeline's lock, as the intake's
	stop   func()
}

// startAgent starts host's detection on stateDir and rulesDir and
// connects it to addr, until stop or the end of the test.
func startAgent(t *testing.T, addr, host, stateDir, rulesDir string) *agentUnderTest {
	t.Helper()
	cfg := config.Default()
	cfg.StateDir, cfg.Detection.RulesDir, cfg.Detection.Anomaly = stateDir, rulesDir, false
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("agent", host)
	}
	a := &agentUnderTest{}
	a.client = &transport.Client{
		Addr: addr, Hello: &vigilv1.Hello{HostId: host, Hostname: host}, Logger: log,
		HeartbeatInterval: 100 * time.Millisecond,
		Heartbeat:         func() *vigilv1.Heartbeat { return &vigilv1.Heartbeat{} },
	}
	det, err := newDetection(Config{Agent: cfg}, log, proctree.New(0), &incident.Builder{HostID: host, Hostname: host},
		a.client.Send, &stats{families: familyCounts{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.det = det
	a.client.OnRuleSet, a.client.Policy = det.applyServerSet, det.policy
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.client.Run(ctx); close(done) }()
	go det.watch(ctx, &a.mu)
	once := sync.Once{}
	a.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			a.mu.Lock()
			det.close()
			a.mu.Unlock()
		})
	}
	t.Cleanup(a.stop)
	return a
}

// exec hands the agent's pipeline an exec of exe by a new process.
func (a *agentUnderTest) exec(pid uint32, exe string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	name := filepath.Base(exe)
	a.det.pipe.Handle(&event.Exec{
		Time:    time.Now(),
		Process: event.Process{PID: pid, PPID: 1, StartTime: uint64(pid) * 1000, Comm: name},
		Exe:     exe, Filename: exe, Args: []string{name}, Cwd: "/",
	})
}

// waitFor polls ok for up to 15 s.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// as returns a context whose calls carry token.
func as(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// agentOf returns host's entry of ListAgents, nil when not listed.
func agentOf(t *testing.T, fleet vigilv1.FleetServiceClient, host string) *vigilv1.Agent {
	t.Helper()
	resp, err := fleet.ListAgents(as(viewerToken), &vigilv1.ListAgentsRequest{})
	if err != nil {
		t.Fatalf("ListAgents: %v", err)
	}
	for _, ag := range resp.GetAgents() {
		if ag.GetHostId() == host {
			return ag
		}
	}
	return nil
}

// TestServerRuleSetReachesAgents runs a real server (SQLite, then a
// private PostgreSQL) with tokens, and agents whose detection is the
// daemon's, connected over loopback gRPC.
func TestServerRuleSetReachesAgents(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		testServerRuleSet(t, filepath.Join(t.TempDir(), "server.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		pg := pgtest.Start(t)
		testServerRuleSet(t, pg.CreateDatabase(t, "vigil"))
	})
}

func testServerRuleSet(t *testing.T, db string) {
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(tokens, []byte(adminToken+": {name: ada, role: admin}\n"+
		viewerToken+": {name: vera, role: viewer}\n"+responderToken+": {name: rory, role: responder}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := app.Start(app.Config{Listen: "127.0.0.1:0", DBPath: db, TokensFile: tokens})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rulesAPI, fleetAPI := vigilv1.NewRulesServiceClient(conn), vigilv1.NewFleetServiceClient(conn)

	stateA, localA := t.TempDir(), t.TempDir()
	a := startAgent(t, srv.Addr(), "host-a", stateA, localA)
	waitFor(t, "host-a to connect", func() bool { return a.client.Stats().Connected })
	if ag := agentOf(t, fleetAPI, "host-a"); ag.GetPolicyVersion() != 0 || ag.GetLastRuleSetResult() != nil {
		t.Fatalf("host-a before any rule set: %v", ag)
	}
	fired := func(rule string) bool {
		incs, err := srv.Store().List(context.Background(), &vigilv1.IncidentFilter{RuleId: rule}, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		return len(incs) > 0
	}
	a.exec(5001, "/usr/bin/fleetcheck")

	// Only an admin sets rules; a viewer reads them.
	good := []*vigilv1.RuleFile{{Name: "fleet.yaml", Content: fleetRule}}
	for _, tok := range []string{viewerToken, responderToken} {
		_, err := rulesAPI.SetRuleSet(as(tok), &vigilv1.SetRuleSetRequest{Files: good})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("SetRuleSet with a non-admin token: %v, want PermissionDenied", err)
		}
	}
	if _, err := rulesAPI.SetRuleSet(context.Background(), &vigilv1.SetRuleSetRequest{Files: good}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("SetRuleSet without a token: %v, want Unauthenticated", err)
	}
	// A broken set is refused with the place of the problem, and nothing is stored.
	broken := strings.Replace(fleetRule, "process.name in", "process.nmae in", 1)
	_, err = rulesAPI.SetRuleSet(as(adminToken), &vigilv1.SetRuleSetRequest{Files: []*vigilv1.RuleFile{{Name: "fleet.yaml", Content: broken}}})
	if status.Code(err) != codes.InvalidArgument ||
		!strings.Contains(status.Convert(err).Message(), `fleet.yaml:11:23: rule "fleet-rule": condition: undefined field 'nmae'`) {
		t.Errorf("SetRuleSet of a broken set: %v", err)
	}
	_, err = rulesAPI.SetRuleSet(as(adminToken), &vigilv1.SetRuleSetRequest{Files: []*vigilv1.RuleFile{{Name: "../x.yaml", Content: fleetRule}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `name "../x.yaml"`) {
		t.Errorf("SetRuleSet with a path as file name: %v", err)
	}
	if rs, err := rulesAPI.GetRuleSet(as(viewerToken), &vigilv1.GetRuleSetRequest{}); err != nil || rs.GetVersion() != 0 {
		t.Fatalf("GetRuleSet after refusals: %v, %v; want version 0", rs, err)
	}
	if fired("fleet-rule") {
		t.Fatal("fleet-rule fired before any rule set")
	}

	// A good set: stored as version 1 and applied by the connected agent.
	resp, err := rulesAPI.SetRuleSet(as(adminToken), &vigilv1.SetRuleSetRequest{Files: good})
	if err != nil || !resp.GetChanged() || resp.GetRuleSet().GetVersion() != 1 || resp.GetRuleSet().GetSetBy() != "ada" || resp.GetAgentsConnected() != 1 {
		t.Fatalf("SetRuleSet: %v, %v", resp, err)
	}
	v1 := resp.GetRuleSet()
	waitFor(t, "host-a to run version 1", func() bool {
		ag := agentOf(t, fleetAPI, "host-a")
		return ag.GetPolicyVersion() == 1 && ag.GetPolicyHash() == v1.GetHash() && ag.GetLastRuleSetResult().GetApplied()
	})
	if v, h := a.det.policy(); v != 1 || h != v1.GetHash() {
		t.Errorf("host-a's policy %d %s", v, h)
	}
	// The new rule fires through the agent's pipeline and its incident
	// reaches the server.
	a.exec(5002, "/usr/bin/fleetcheck")
	waitFor(t, "the fleet-rule incident at the server", func() bool { return fired("fleet-rule") })

	// An agent that connects later gets the set after its hello.
	b := startAgent(t, srv.Addr(), "host-b", t.TempDir(), t.TempDir())
	waitFor(t, "host-b to run version 1", func() bool { return agentOf(t, fleetAPI, "host-b").GetPolicyVersion() == 1 })
	if v, _ := b.det.policy(); v != 1 {
		t.Errorf("host-b's policy %d", v)
	}

	// host-a restarts: it runs on version 1 from its state directory
	// before the server says anything, and rules list shows it.
	a.stop()
	set, err := rules.CompileLayers(mustLoadServerSet(t, stateA), localA)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := set.Server(); v != 1 {
		t.Fatalf("kept server set: version %d", v)
	}
	var out, errOut strings.Builder
	if code := rules.ListCommand([]string{"--state-dir", stateA, localA}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "\nfleet-rule ") || !strings.Contains(out.String(), "server rule set: version 1 (sha256:") {
		t.Errorf("rules list: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	a = startAgent(t, srv.Addr(), "host-a", stateA, localA)
	if v, _ := a.det.policy(); v != 1 {
		t.Fatalf("host-a after restart runs version %d, want 1", v)
	}
	if _, ok := a.det.engine.Set().Rule("fleet-rule"); !ok {
		t.Fatal("host-a after restart lacks fleet-rule")
	}

	// A set that clashes with host-a's own rule files: host-a refuses it and
	// keeps version 1, and says why; host-b applies it.
	clash := strings.ReplaceAll(fleetRule, "fleet-rule", "local-tool")
	if err := os.WriteFile(filepath.Join(localA, "local.yaml"), []byte(strings.Replace(clash, "lists:\n  fleet_tools: [fleetcheck]\n", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := a.det.watcher.Reload(); err != nil {
		t.Fatalf("host-a's own rule file: %v", err)
	}
	resp, err = rulesAPI.SetRuleSet(as(adminToken), &vigilv1.SetRuleSetRequest{Files: []*vigilv1.RuleFile{
		{Name: "fleet.yaml", Content: fleetRule}, {Name: "more.yaml", Content: strings.Replace(clash, "lists:\n  fleet_tools: [fleetcheck]\n", "", 1)},
	}})
	if err != nil || resp.GetRuleSet().GetVersion() != 2 {
		t.Fatalf("SetRuleSet version 2: %v, %v", resp, err)
	}
	waitFor(t, "host-b to run version 2", func() bool { return agentOf(t, fleetAPI, "host-b").GetPolicyVersion() == 2 })
	waitFor(t, "host-a to refuse version 2", func() bool {
		r := agentOf(t, fleetAPI, "host-a").GetLastRuleSetResult()
		return r.GetVersion() == 2 && !r.GetApplied()
	})
	ag := agentOf(t, fleetAPI, "host-a")
	r := ag.GetLastRuleSetResult()
	if ag.GetPolicyVersion() != 1 || !strings.Contains(r.GetError(), `duplicate rule id "local-tool"`) ||
		len(r.GetErrors()) != 1 || r.GetErrors()[0].GetFile() != filepath.Join(localA, "local.yaml") {
		t.Errorf("host-a after refusing version 2: %v", ag)
	}
	if v, _ := a.det.policy(); v != 1 {
		t.Errorf("host-a's policy after refusing: %d", v)
	}
	if kept := mustLoadServerSet(t, stateA); kept.GetVersion() != 1 {
		t.Errorf("host-a's state dir holds version %d after refusing 2", kept.GetVersion())
	}
	// Setting the same files again changes nothing.
	resp, err = rulesAPI.SetRuleSet(as(adminToken), &vigilv1.SetRuleSetRequest{Files: resp.GetRuleSet().GetFiles()})
	if err != nil || resp.GetChanged() || resp.GetRuleSet().GetVersion() != 2 {
		t.Errorf("SetRuleSet of the current files: %v, %v", resp, err)
	}
}

// mustLoadServerSet reads the server set kept in stateDir.
func mustLoadServerSet(t *testing.T, stateDir string) *vigilv1.RuleSet {
	t.Helper()
	rs, err := rules.LoadServerSet(filepath.Join(stateDir, rules.ServerSetName))
	if err != nil || rs == nil {
		t.Fatalf("LoadServerSet: %v, %v", rs, err)
	}
	return rs
}

// TestDefaultStateDir keeps rules list looking where the agent keeps its state.
func TestDefaultStateDir(t *testing.T) {
	if got := config.Default().StateDir; got != rules.DefaultStateDir {
		t.Errorf("config state_dir default %q, rules.DefaultStateDir %q", got, rules.DefaultStateDir)
	}
}
