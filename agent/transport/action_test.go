package transport

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/app"
)

// serverConn returns a client connection to the server at addr.
func serverConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// connectedAgent starts a real client that answers every command with a
// record built from it, waits until the server has its first heartbeat,
// and returns the commands it received.
func connectedAgent(t *testing.T, srv *app.Server, hello *vigilv1.Hello, hb *vigilv1.Heartbeat) <-chan *vigilv1.ActionCommand {
	t.Helper()
	got := make(chan *vigilv1.ActionCommand, 8)
	c := &Client{
		Addr:              srv.Addr(),
		Hello:             hello,
		Heartbeat:         func() *vigilv1.Heartbeat { return hb },
		HeartbeatInterval: 20 * time.Millisecond,
		OnAction: func(cmd *vigilv1.ActionCommand) *vigilv1.ActionRecord {
			got <- cmd
			return &vigilv1.ActionRecord{
				Id: uuid.Must(uuid.NewV7()).String(), Time: timestamppb.Now(),
				Action: cmd.GetAction(), Target: cmd.GetTarget(), IncidentId: cmd.GetIncidentId(),
				Requester: "server:" + cmd.GetRequester(), Reason: cmd.GetReason(), DryRun: cmd.GetDryRun(),
				Mode: "recommend", Result: "dry-run", Detail: "would kill 1 process",
			}
		},
	}
	runClient(t, c)
	waitUntil(t, "agent heartbeat at the server", func() bool {
		a, ok := srv.Fleet().Get(hello.GetHostId())
		return ok && a.Connections > 0 && a.LastHeartbeat != nil
	})
	return got
}

// TestRequestActionReachesAgent asks the server for an action on a
// connected agent: the agent's handler gets the command, the caller gets
// the agent's record, and ListActions lists it.
func TestRequestActionReachesAgent(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", filepath.Join(t.TempDir(), "server.db"))
	defer stopServer(t, srv)
	const host = "6b0c2a8f41d94e3a9c7b5d1e2f3a4b5c"
	cmds := connectedAgent(t, srv, &vigilv1.Hello{HostId: host, Hostname: "web-1"}, &vigilv1.Heartbeat{})
	resp := vigilv1.NewResponseServiceClient(serverConn(t, srv.Addr()))

	incID := uuid.Must(uuid.NewV7()).String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec, err := resp.RequestAction(ctx, &vigilv1.RequestActionRequest{
		HostId: host, Action: "kill", Target: "pid:4242", IncidentId: incID, Reason: "reverse shell",
		DryRun: true, TtlSeconds: 60, Requester: "alice",
	})
	if err != nil {
		t.Fatalf("RequestAction: %v", err)
	}
	cmd := <-cmds
	wantCmd := &vigilv1.ActionCommand{
		CommandId: cmd.GetCommandId(), Action: "kill", Target: "pid:4242", IncidentId: incID,
		Reason: "reverse shell", DryRun: true, TtlSeconds: 60, Requester: "alice",
	}
	if cmd.GetCommandId() == "" || !proto.Equal(cmd, wantCmd) {
		t.Errorf("agent got command %v, want %v", cmd, wantCmd)
	}
	if rec.GetRequester() != "server:alice" || rec.GetResult() != "dry-run" || rec.GetIncidentId() != incID || rec.GetId() == "" {
		t.Errorf("record = %v", rec)
	}

	for _, req := range []*vigilv1.ListActionsRequest{{}, {HostId: host}, {IncidentId: incID}} {
		list, err := resp.ListActions(ctx, req)
		if err != nil {
			t.Fatalf("ListActions(%v): %v", req, err)
		}
		if len(list.GetActions()) != 1 || list.GetActions()[0].GetHostId() != host || !proto.Equal(list.GetActions()[0].GetRecord(), rec) {
			t.Errorf("ListActions(%v) = %v, want the one record %v", req, list.GetActions(), rec)
		}
	}
	list, err := resp.ListActions(ctx, &vigilv1.ListActionsRequest{HostId: "another-host"})
	if err != nil || len(list.GetActions()) != 0 {
		t.Errorf("ListActions(another host) = %v, %v; want none", list.GetActions(), err)
	}
}

// TestRequestActionToAbsentHost fails with UNAVAILABLE when the host's
// agent is not connected, and stores nothing.
func TestRequestActionToAbsentHost(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", filepath.Join(t.TempDir(), "server.db"))
	defer stopServer(t, srv)
	resp := vigilv1.NewResponseServiceClient(serverConn(t, srv.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := resp.RequestAction(ctx, &vigilv1.RequestActionRequest{HostId: "nobody", Action: "kill", Target: "pid:1"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("RequestAction to a host never connected: %v, want Unavailable", err)
	}
	_, err = resp.RequestAction(ctx, &vigilv1.RequestActionRequest{HostId: "nobody", Target: "pid:1"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("RequestAction without action: %v, want InvalidArgument", err)
	}
	list, err := resp.ListActions(ctx, &vigilv1.ListActionsRequest{})
	if err != nil || len(list.GetActions()) != 0 {
		t.Errorf("ListActions = %v, %v; want none", list.GetActions(), err)
	}
}

// TestRequestActionAfterDisconnect fails with UNAVAILABLE once the agent
// that was connected has gone.
func TestRequestActionAfterDisconnect(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", filepath.Join(t.TempDir(), "server.db"))
	defer stopServer(t, srv)
	const host = "7c1d3b9f52ea4f4bad8c6e2f3a4b5c6d"
	conn := serverConn(t, srv.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := vigilv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Hello{Hello: &vigilv1.Hello{HostId: host}}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "agent connected", func() bool { a, ok := srv.Fleet().Get(host); return ok && a.Connections > 0 })
	cancel()
	waitUntil(t, "agent disconnected", func() bool { a, _ := srv.Fleet().Get(host); return a.Connections == 0 })
	callCtx, callCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer callCancel()
	_, err = vigilv1.NewResponseServiceClient(conn).RequestAction(callCtx, &vigilv1.RequestActionRequest{HostId: host, Action: "kill", Target: "pid:1"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("RequestAction after disconnect: %v, want Unavailable", err)
	}
}

// TestListAgentsShowsHelloAndHeartbeat lists a connected agent: every
// value of its hello and its latest heartbeat comes back exactly.
func TestListAgentsShowsHelloAndHeartbeat(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", filepath.Join(t.TempDir(), "server.db"))
	defer stopServer(t, srv)
	hello := &vigilv1.Hello{
		HostId: "8d2e4c0a63fb4a5cbe9d7f3a4b5c6d7e", Hostname: "db-2", KernelRelease: "6.8.0-45-generic",
		AgentVersion: "0.4.0", Capabilities: []string{"process", "file", "net"},
	}
	hb := &vigilv1.Heartbeat{
		Time: timestamppb.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)), EventsTotal: 123456,
		EventsLost: map[string]uint64{"process": 0, "net": 7}, RssBytes: 41 << 20, PendingIncidents: 3,
	}
	connectedAgent(t, srv, hello, hb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := vigilv1.NewFleetServiceClient(serverConn(t, srv.Addr())).ListAgents(ctx, &vigilv1.ListAgentsRequest{})
	if err != nil {
		t.Fatalf("ListAgents: %v", err)
	}
	if len(resp.GetAgents()) != 1 {
		t.Fatalf("ListAgents = %v, want one agent", resp.GetAgents())
	}
	got := resp.GetAgents()[0]
	want := &vigilv1.Agent{
		HostId: hello.HostId, Hostname: "db-2", Kernel: "6.8.0-45-generic", AgentVersion: "0.4.0",
		Capabilities: []string{"process", "file", "net"}, Connected: true, LastHeartbeat: hb,
		LastSeen: got.GetLastSeen(), ConnectedTime: got.GetConnectedTime(), Peer: got.GetPeer(),
	}
	if !proto.Equal(got, want) {
		t.Errorf("agent = %v\nwant %v", got, want)
	}
	if since := time.Since(got.GetLastSeen().AsTime()); since < 0 || since > 10*time.Second {
		t.Errorf("last_seen %v is not recent", got.GetLastSeen().AsTime())
	}
	if got.GetConnectedTime() == nil || got.GetPeer() == "" {
		t.Errorf("connected_time %v, peer %q: want both set", got.GetConnectedTime(), got.GetPeer())
	}
}
