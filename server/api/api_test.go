package api_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/api"
	"github.com/vigil-sensor/vigil/server/fleet"
	"github.com/vigil-sensor/vigil/server/grpcserver"
	"github.com/vigil-sensor/vigil/server/store"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// env is a real gRPC server on loopback over a real SQLite file.
type env struct {
	store    store.Store
	fleet    *fleet.Registry
	services *api.Services
	agents   vigilv1.AgentServiceClient
	incs     vigilv1.IncidentServiceClient
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	reg := fleet.New()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	services := api.New(st, reg, log)
	srv := grpcserver.New()
	services.Register(srv.Registrar())
	lis, err := grpcserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		services.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		st.Close()
	})
	return &env{
		store:    st,
		fleet:    reg,
		services: services,
		agents:   vigilv1.NewAgentServiceClient(conn),
		incs:     vigilv1.NewIncidentServiceClient(conn),
	}
}

func hello(hostID string) *vigilv1.AgentMessage {
	return &vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Hello{Hello: &vigilv1.Hello{
		HostId: hostID, Hostname: "web-1", KernelRelease: "6.1.0-18-amd64", AgentVersion: "0.1.0",
		Capabilities: []string{"process"},
	}}}
}

func report(seq uint64, inc *vigilv1.Incident) *vigilv1.AgentMessage {
	return &vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Incident{Incident: &vigilv1.IncidentReport{Sequence: seq, Incident: inc}}}
}

// connect opens an agent stream and says hello as hostID.
func connect(t *testing.T, e *env, hostID string) grpc.BidiStreamingClient[vigilv1.AgentMessage, vigilv1.ServerMessage] {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := e.agents.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send(t, stream, hello(hostID))
	return stream
}

func send(t *testing.T, stream grpc.BidiStreamingClient[vigilv1.AgentMessage, vigilv1.ServerMessage], m *vigilv1.AgentMessage) {
	t.Helper()
	if err := stream.Send(m); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func recvAck(t *testing.T, stream grpc.BidiStreamingClient[vigilv1.AgentMessage, vigilv1.ServerMessage]) *vigilv1.Ack {
	t.Helper()
	m, err := stream.Recv()
	if err != nil {
		t.Fatalf("recv ack: %v", err)
	}
	if m.GetAck() == nil {
		t.Fatalf("got %v, want an ack", m)
	}
	return m.GetAck()
}

func wantAck(t *testing.T, got *vigilv1.Ack, seq uint64, id string, cursor uint64) {
	t.Helper()
	want := &vigilv1.Ack{Sequence: seq, IncidentId: id, Cursor: cursor}
	if !proto.Equal(got, want) {
		t.Errorf("ack = %v, want %v", got, want)
	}
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || st.Message() != msg {
		t.Errorf("error = %v, want %v %q", err, code, msg)
	}
}

func TestAgentConnectAcks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	stream := connect(t, e, "host-a")

	a := storetest.NewIncident("host-a", "shell-from-web", vigilv1.Severity_SEVERITY_HIGH)
	b := storetest.NewIncident("", "shell-from-web", vigilv1.Severity_SEVERITY_HIGH) // host filled in
	c := storetest.NewIncident("host-a", "other", vigilv1.Severity_SEVERITY_LOW)
	send(t, stream, report(1, a))
	wantAck(t, recvAck(t, stream), 1, a.GetId(), 1)
	send(t, stream, &vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Heartbeat{Heartbeat: &vigilv1.Heartbeat{
		Time: timestamppb.Now(), EventsTotal: 1234, EventsLost: map[string]uint64{"process": 2}, RssBytes: 1 << 20, PendingIncidents: 2,
	}}})
	send(t, stream, report(2, b))
	wantAck(t, recvAck(t, stream), 2, b.GetId(), 2)
	send(t, stream, report(3, c))
	wantAck(t, recvAck(t, stream), 3, c.GetId(), 3)

	// A resent incident is acknowledged with its original cursor and
	// stored once.
	send(t, stream, report(4, a))
	wantAck(t, recvAck(t, stream), 4, a.GetId(), 1)
	send(t, stream, report(2, b))
	wantAck(t, recvAck(t, stream), 2, b.GetId(), 2)

	all, err := e.store.After(ctx, nil, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, inc := range all {
		got = append(got, inc.GetId()+"@"+inc.GetHostId())
	}
	want := []string{a.GetId() + "@host-a", b.GetId() + "@host-a", c.GetId() + "@host-a"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("stored %v, want %v", got, want)
	}

	// The fleet registry knows the agent and its latest heartbeat.
	ag, ok := e.fleet.Get("host-a")
	if !ok {
		t.Fatal("host-a not in the fleet registry")
	}
	if ag.Connections != 1 || ag.Hello.GetHostname() != "web-1" || ag.Hello.GetAgentVersion() != "0.1.0" {
		t.Errorf("fleet entry = %+v", ag)
	}
	if ag.LastHeartbeat.GetEventsTotal() != 1234 || ag.LastHeartbeat.GetEventsLost()["process"] != 2 {
		t.Errorf("last heartbeat = %v", ag.LastHeartbeat)
	}
	if ag.LastSeen.IsZero() || time.Since(ag.LastSeen) > time.Minute {
		t.Errorf("last seen = %v", ag.LastSeen)
	}

	// Closing the stream ends it cleanly and the registry notices.
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("recv after CloseSend = %v, want EOF", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ag, _ := e.fleet.Get("host-a")
		if ag.Connections == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections = %d after the stream ended, want 0", ag.Connections)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAgentBadReportsAreRejectedAndStreamGoesOn(t *testing.T) {
	e := newEnv(t)
	stream := connect(t, e, "host-a")
	other := storetest.NewIncident("host-b", "r", vigilv1.Severity_SEVERITY_LOW)
	bad := []struct {
		msg  *vigilv1.AgentMessage
		want *vigilv1.Reject
	}{
		{report(1, nil), &vigilv1.Reject{Sequence: 1, Reason: "incident report without incident"}},
		{report(2, &vigilv1.Incident{}), &vigilv1.Reject{Sequence: 2, Reason: "incident.id is empty"}},
		{report(3, &vigilv1.Incident{Id: "not-a-uuid", HostId: "host-a"}), &vigilv1.Reject{Sequence: 3, IncidentId: "not-a-uuid"}},
		{report(4, other), &vigilv1.Reject{Sequence: 4, IncidentId: other.GetId(),
			Reason: `incident.host_id "host-b" differs from hello.host_id "host-a"`}},
	}
	for _, b := range bad {
		send(t, stream, b.msg)
	}
	send(t, stream, &vigilv1.AgentMessage{}) // a kind this server does not know: ignored
	good := storetest.NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW)
	send(t, stream, report(5, good))

	for _, b := range bad {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv reject %d: %v", b.want.Sequence, err)
		}
		got := m.GetReject()
		if got == nil || got.Sequence != b.want.Sequence || got.IncidentId != b.want.IncidentId {
			t.Fatalf("got %v, want a reject like %v", m, b.want)
		}
		if b.want.Reason != "" && got.Reason != b.want.Reason {
			t.Errorf("reject %d reason %q, want %q", got.Sequence, got.Reason, b.want.Reason)
		}
		if b.want.Reason == "" && !strings.Contains(got.Reason, "not-a-uuid") {
			t.Errorf("reject %d reason %q does not name the bad id", got.Sequence, got.Reason)
		}
	}
	// The stream went on: the good report is stored and acknowledged.
	wantAck(t, recvAck(t, stream), 5, good.GetId(), 1)
}

func TestAgentProtocolViolations(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		msgs []*vigilv1.AgentMessage
		want string
	}{
		{"heartbeat first", []*vigilv1.AgentMessage{{Msg: &vigilv1.AgentMessage_Heartbeat{Heartbeat: &vigilv1.Heartbeat{}}}},
			"first message must be hello, got heartbeat"},
		{"incident first", []*vigilv1.AgentMessage{report(1, storetest.NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW))},
			"first message must be hello, got incident"},
		{"empty first", []*vigilv1.AgentMessage{{}}, "first message must be hello, got an empty or unknown message"},
		{"hello without host", []*vigilv1.AgentMessage{hello("")}, "hello.host_id is empty"},
		{"two hellos", []*vigilv1.AgentMessage{hello("host-a"), hello("host-a")}, "hello sent twice on one stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := e.agents.Connect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tt.msgs {
				send(t, stream, m)
			}
			_, err = stream.Recv()
			wantCode(t, err, codes.InvalidArgument, tt.want)
		})
	}

	t.Run("closed before hello", func(t *testing.T) {
		stream, err := e.agents.Connect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		stream.CloseSend()
		_, err = stream.Recv()
		wantCode(t, err, codes.InvalidArgument, "stream closed before hello")
	})
}

// putN stores n incidents directly and returns them in cursor order.
func putN(t *testing.T, st store.Store, n int, host, rule string, sev vigilv1.Severity) []*vigilv1.Incident {
	t.Helper()
	var out []*vigilv1.Incident
	for range n {
		inc := storetest.NewIncident(host, rule, sev)
		c, _, err := st.Put(context.Background(), inc)
		if err != nil {
			t.Fatal(err)
		}
		inc.Cursor = c
		out = append(out, inc)
	}
	return out
}

func cursorsOf(incs []*vigilv1.Incident) []uint64 {
	var out []uint64
	for _, inc := range incs {
		out = append(out, inc.GetCursor())
	}
	return out
}

func sameUints(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestListIncidentsPaging(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	putN(t, e.store, 7, "host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)
	putN(t, e.store, 2, "host-b", "r1", vigilv1.Severity_SEVERITY_LOW) // cursors 8, 9

	pages := []struct {
		want      []uint64
		wantToken bool
	}{
		{[]uint64{7, 6, 5}, true},
		{[]uint64{4, 3, 2}, true},
		{[]uint64{1}, false},
	}
	filter := &vigilv1.IncidentFilter{HostId: "host-a"}
	token := ""
	for i, p := range pages {
		resp, err := e.incs.ListIncidents(ctx, &vigilv1.ListIncidentsRequest{Filter: filter, PageSize: 3, PageToken: token})
		if err != nil {
			t.Fatalf("page %d: %v", i, err)
		}
		if got := cursorsOf(resp.GetIncidents()); !sameUints(got, p.want) {
			t.Errorf("page %d cursors = %v, want %v", i, got, p.want)
		}
		if (resp.GetNextPageToken() != "") != p.wantToken {
			t.Errorf("page %d next_page_token = %q, want present=%v", i, resp.GetNextPageToken(), p.wantToken)
		}
		token = resp.GetNextPageToken()
	}

	// An exact fit has no next page.
	resp, err := e.incs.ListIncidents(ctx, &vigilv1.ListIncidentsRequest{PageSize: 9})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cursorsOf(resp.GetIncidents()), []uint64{9, 8, 7, 6, 5, 4, 3, 2, 1}; !sameUints(got, want) || resp.GetNextPageToken() != "" {
		t.Errorf("page of 9 = %v token %q, want %v and no token", got, resp.GetNextPageToken(), want)
	}

	// Filters by severity and rule.
	resp, err = e.incs.ListIncidents(ctx, &vigilv1.ListIncidentsRequest{Filter: &vigilv1.IncidentFilter{MinSeverity: vigilv1.Severity_SEVERITY_MEDIUM, RuleId: "r1"}, PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cursorsOf(resp.GetIncidents()), []uint64{7, 6}; !sameUints(got, want) {
		t.Errorf("severity filter = %v, want %v", got, want)
	}

	for _, bad := range []string{"garbage!", api.EncodePageToken(0), "djI6NQ"} {
		_, err = e.incs.ListIncidents(ctx, &vigilv1.ListIncidentsRequest{PageToken: bad})
		wantCode(t, err, codes.InvalidArgument, "invalid page_token: not a token from next_page_token")
	}
}

func TestListIncidentsPageSizes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	putN(t, e.store, api.MaxPageSize+5, "host-a", "r", vigilv1.Severity_SEVERITY_LOW)
	for _, tt := range []struct {
		size uint32
		want int
	}{{0, api.DefaultPageSize}, {1, 1}, {api.MaxPageSize, api.MaxPageSize}, {5000, api.MaxPageSize}} {
		resp, err := e.incs.ListIncidents(ctx, &vigilv1.ListIncidentsRequest{PageSize: tt.size})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetIncidents()) != tt.want {
			t.Errorf("page_size %d returned %d incidents, want %d", tt.size, len(resp.GetIncidents()), tt.want)
		}
		if first := resp.GetIncidents()[0].GetCursor(); first != api.MaxPageSize+5 {
			t.Errorf("page_size %d starts at cursor %d, want the newest %d", tt.size, first, api.MaxPageSize+5)
		}
	}
}

func TestGetIncident(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	incs := putN(t, e.store, 2, "host-a", "r", vigilv1.Severity_SEVERITY_LOW)
	got, err := e.incs.GetIncident(ctx, &vigilv1.GetIncidentRequest{Id: incs[1].GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetId() != incs[1].GetId() || got.GetCursor() != 2 || len(got.GetAncestors()) != 3 || got.GetReceivedTime() == nil {
		t.Errorf("GetIncident = %v", got)
	}
	missing := storetest.NewID()
	_, err = e.incs.GetIncident(ctx, &vigilv1.GetIncidentRequest{Id: missing})
	wantCode(t, err, codes.NotFound, "incident "+missing+" not found")
	_, err = e.incs.GetIncident(ctx, &vigilv1.GetIncidentRequest{})
	wantCode(t, err, codes.InvalidArgument, "id is empty")
}

// recvN receives n incidents from stream.
func recvN(t *testing.T, stream grpc.ServerStreamingClient[vigilv1.Incident], n int) []*vigilv1.Incident {
	t.Helper()
	var out []*vigilv1.Incident
	for range n {
		inc, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv after %d incidents: %v", len(out), err)
		}
		out = append(out, inc)
	}
	return out
}

// wantNothing checks that stream sends nothing within a short while.
func wantNothing(t *testing.T, stream grpc.ServerStreamingClient[vigilv1.Incident], cancel context.CancelFunc) {
	t.Helper()
	got := make(chan *vigilv1.Incident, 1)
	go func() {
		inc, err := stream.Recv()
		if err == nil {
			got <- inc
		}
		close(got)
	}()
	select {
	case inc := <-got:
		t.Errorf("unexpected incident at cursor %d", inc.GetCursor())
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	<-got
}

func wantIDs(t *testing.T, got, want []*vigilv1.Incident) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d incidents, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].GetId() != want[i].GetId() || got[i].GetCursor() != want[i].GetCursor() {
			t.Fatalf("incident %d = %s@%d, want %s@%d", i, got[i].GetId(), got[i].GetCursor(), want[i].GetId(), want[i].GetCursor())
		}
	}
}

func TestStreamHistoryThenLive(t *testing.T) {
	e := newEnv(t)
	history := putN(t, e.store, 5, "host-a", "r", vigilv1.Severity_SEVERITY_LOW)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := e.incs.StreamIncidents(ctx, &vigilv1.StreamIncidentsRequest{AfterCursor: 2})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, recvN(t, stream, 3), history[2:])

	// Live incidents arrive in order, through an agent as in production.
	agent := connect(t, e, "host-a")
	var live []*vigilv1.Incident
	for i := range 4 {
		inc := storetest.NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW)
		send(t, agent, report(uint64(i+1), inc))
		inc.Cursor = recvAck(t, agent).GetCursor()
		live = append(live, inc)
	}
	wantIDs(t, recvN(t, stream, 4), live)
	wantNothing(t, stream, cancel)
}

func TestStreamFilter(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := e.incs.StreamIncidents(ctx, &vigilv1.StreamIncidentsRequest{Filter: &vigilv1.IncidentFilter{HostId: "host-b"}})
	if err != nil {
		t.Fatal(err)
	}
	var want []*vigilv1.Incident
	for range 3 {
		putN(t, e.store, 2, "host-a", "r", vigilv1.Severity_SEVERITY_LOW)
		want = append(want, putN(t, e.store, 1, "host-b", "r", vigilv1.Severity_SEVERITY_LOW)...)
	}
	wantIDs(t, recvN(t, stream, 3), want)
	wantNothing(t, stream, cancel)
}

func TestStreamSlowClient(t *testing.T) {
	e := newEnv(t)
	const n = 2000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := e.incs.StreamIncidents(ctx, &vigilv1.StreamIncidentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}

	// Put from several writers while the client reads slowly.
	var mu sync.Mutex
	put := map[string]uint64{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n / 4 {
				inc := storetest.NewIncident("host-a", "r", vigilv1.Severity(w%5+1))
				c, _, err := e.store.Put(context.Background(), inc)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				put[inc.GetId()] = c
				mu.Unlock()
			}
		}()
	}

	seen := map[string]bool{}
	var last uint64
	for i := range n {
		inc, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if seen[inc.GetId()] {
			t.Fatalf("incident %s received twice", inc.GetId())
		}
		seen[inc.GetId()] = true
		if inc.GetCursor() <= last {
			t.Fatalf("cursor %d after %d: out of order", inc.GetCursor(), last)
		}
		last = inc.GetCursor()
		if i%4 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	if len(put) != n {
		t.Fatalf("put %d incidents, want %d", len(put), n)
	}
	for id, c := range put {
		if !seen[id] {
			t.Errorf("incident %s at cursor %d never received", id, c)
		}
	}
	if last != n {
		t.Errorf("last cursor = %d, want %d", last, n)
	}
	wantNothing(t, stream, cancel)
}

func TestStreamResume(t *testing.T) {
	e := newEnv(t)
	first := putN(t, e.store, 10, "host-a", "r", vigilv1.Severity_SEVERITY_LOW)

	ctx, cancel := context.WithCancel(context.Background())
	stream, err := e.incs.StreamIncidents(ctx, &vigilv1.StreamIncidentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := recvN(t, stream, 4)
	wantIDs(t, got, first[:4])
	cancel()
	lastCursor := got[len(got)-1].GetCursor()

	more := putN(t, e.store, 5, "host-a", "r", vigilv1.Severity_SEVERITY_LOW)

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	stream, err = e.incs.StreamIncidents(ctx, &vigilv1.StreamIncidentsRequest{AfterCursor: lastCursor})
	if err != nil {
		t.Fatal(err)
	}
	missed := append(append([]*vigilv1.Incident{}, first[4:]...), more...)
	wantIDs(t, recvN(t, stream, len(missed)), missed)
	wantNothing(t, stream, cancel)
}

func TestStreamRefusesCursorFromAnotherStore(t *testing.T) {
	e := newEnv(t)
	putN(t, e.store, 3, "host-a", "r", vigilv1.Severity_SEVERITY_LOW)
	for _, after := range []uint64{0, 3} {
		stream, err := e.incs.StreamIncidents(context.Background(), &vigilv1.StreamIncidentsRequest{AfterCursor: after})
		if err != nil {
			t.Fatal(err)
		}
		if after == 0 {
			recvN(t, stream, 3)
		}
	}
	stream, err := e.incs.StreamIncidents(context.Background(), &vigilv1.StreamIncidentsRequest{AfterCursor: 999})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantCode(t, err, codes.FailedPrecondition,
		"after_cursor 999 is beyond the newest stored incident (cursor 3): this server's store is not the one the cursor came from")
}

func TestShutdownEndsStreams(t *testing.T) {
	e := newEnv(t)
	stream, err := e.incs.StreamIncidents(context.Background(), &vigilv1.StreamIncidentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	agent := connect(t, e, "host-a")
	inc := storetest.NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW)
	send(t, agent, report(1, inc))
	recvAck(t, agent)
	recvN(t, stream, 1)

	e.services.Shutdown()
	_, err = stream.Recv()
	wantCode(t, err, codes.Unavailable, "server is shutting down")
	_, err = agent.Recv()
	wantCode(t, err, codes.Unavailable, "server is shutting down")
}
