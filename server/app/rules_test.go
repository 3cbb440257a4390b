package app_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/transport"
	"github.com/vigil-sensor/vigil/internal/pgtest"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/app"
)

// TestRuleSetThroughAnotherServer sets the fleet's rule set through one
// server of two sharing a PostgreSQL database: an agent connected to the
// other gets it at a heartbeat, and that server's fleet shows it applied.
func TestRuleSetThroughAnotherServer(t *testing.T) {
	pg := pgtest.Start(t)
	dsn := pg.CreateDatabase(t, "vigil")
	startOn := func() *app.Server {
		srv, err := app.Start(app.Config{Listen: "127.0.0.1:0", DBPath: dsn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		})
		return srv
	}
	a, b := startOn(), startOn()

	agent := &transport.Client{
		Addr: b.Addr(), Hello: &vigilv1.Hello{HostId: hostID}, HeartbeatInterval: 100 * time.Millisecond,
		Heartbeat: func() *vigilv1.Heartbeat { return &vigilv1.Heartbeat{} },
		OnRuleSet: func(rs *vigilv1.RuleSet) *vigilv1.RuleSetResult {
			return &vigilv1.RuleSetResult{Version: rs.GetVersion(), Hash: rs.GetHash(), Applied: true, Time: timestamppb.Now()}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitConnected(t, b)

	resp, err := vigilv1.NewRulesServiceClient(dial(t, a.Addr())).SetRuleSet(context.Background(), &vigilv1.SetRuleSetRequest{
		Files: []*vigilv1.RuleFile{{Name: "fleet.yaml", Content: "lists:\n  fleet_tools: [fleetcheck]\n"}}, Requester: "alice",
	})
	if err != nil || resp.GetRuleSet().GetVersion() != 1 || resp.GetAgentsConnected() != 0 {
		t.Fatalf("SetRuleSet through server A: %v, %v", resp, err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ag, _ := b.Fleet().Get(hostID); ag.PolicyVersion == 1 && ag.LastRuleSetResult.GetApplied() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent of server B never applied the set stored through server A")
		}
	}
	if agent.Stats().RuleSets != 1 {
		t.Errorf("the agent answered %d rule sets, want 1", agent.Stats().RuleSets)
	}
	// Server B serves the same set.
	rs, err := vigilv1.NewRulesServiceClient(dial(t, b.Addr())).GetRuleSet(context.Background(), &vigilv1.GetRuleSetRequest{})
	if err != nil || rs.GetVersion() != 1 || rs.GetSetBy() != "alice" || rs.GetHash() != resp.GetRuleSet().GetHash() {
		t.Errorf("GetRuleSet through server B: %v, %v", rs, err)
	}
}
