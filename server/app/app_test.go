package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/app"
	"github.com/vigil-sensor/vigil/server/ocsf"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

const hostID = "0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f"

// start runs a real server on loopback over a SQLite file in a temporary
// directory.
func start(t *testing.T, cfg app.Config) *app.Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	cfg.DBPath = filepath.Join(t.TempDir(), "server.db")
	srv, err := app.Start(cfg)
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

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestHealthAndReflection(t *testing.T) {
	srv := start(t, app.Config{})
	conn := dial(t, srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	health := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", "vigil.v1.IncidentService", "vigil.v1.AgentService", "vigil.v1.RulesService"} {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health check %q: %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q = %v, want SERVING", svc, resp.GetStatus())
		}
	}

	// What grpcurl -plaintext ADDR list asks.
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	slices.Sort(names)
	want := []string{
		"grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection",
		"grpc.reflection.v1alpha.ServerReflection",
		"vigil.v1.AgentService",
		"vigil.v1.FleetService",
		"vigil.v1.IncidentService",
		"vigil.v1.ResponseService",
		"vigil.v1.RulesService",
	}
	if !slices.Equal(names, want) {
		t.Errorf("reflection lists %q, want %q", names, want)
	}
	// And it describes Vigil's services from their descriptors.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "vigil.v1.IncidentService"},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()); n == 0 {
		t.Errorf("no file descriptor for vigil.v1.IncidentService: %v", resp)
	}
}

// agent is one Connect stream, as an agent would use it.
type agent struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[vigilv1.AgentMessage, vigilv1.ServerMessage]
	seq    uint64
}

func connect(t *testing.T, conn *grpc.ClientConn) *agent {
	t.Helper()
	stream, err := vigilv1.NewAgentServiceClient(conn).Connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, stream: stream}
	a.send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Hello{Hello: &vigilv1.Hello{HostId: hostID, Hostname: "web-1"}}})
	return a
}

func (a *agent) send(m *vigilv1.AgentMessage) {
	a.t.Helper()
	if err := a.stream.Send(m); err != nil {
		a.t.Fatal(err)
	}
}

// report sends one incident and waits for its acknowledgement.
func (a *agent) report(inc *vigilv1.Incident) uint64 {
	a.t.Helper()
	a.seq++
	a.send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Incident{Incident: &vigilv1.IncidentReport{Sequence: a.seq, Incident: inc}}})
	m, err := a.stream.Recv()
	if err != nil {
		a.t.Fatal(err)
	}
	if m.GetAck().GetSequence() != a.seq {
		a.t.Fatalf("report %d answered with %v", a.seq, m)
	}
	return m.GetAck().GetCursor()
}

// scrape reads /metrics and returns its sample lines (no comments).
func scrape(t *testing.T, addr string) map[string]string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s %v", resp.Status, err)
	}
	out := map[string]string{}
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		out[line[:i]] = line[i+1:]
	}
	return out
}

func TestMetricsAfterIngest(t *testing.T) {
	srv := start(t, app.Config{MetricsListen: "127.0.0.1:0"})
	conn := dial(t, srv.Addr())
	a := connect(t, conn)
	a.send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Heartbeat{Heartbeat: &vigilv1.Heartbeat{
		EventsTotal: 1234, EventsLost: map[string]uint64{"process": 3, "network": 0},
		RssBytes: 40 << 20, PendingIncidents: 2,
	}}})
	first := storetest.NewIncident(hostID, "shell-from-web", vigilv1.Severity_SEVERITY_HIGH)
	a.report(first)
	a.report(first) // a resend: a duplicate
	a.report(storetest.NewIncident(hostID, "memfd-exec", vigilv1.Severity_SEVERITY_CRITICAL))

	// One client follows the incidents.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follow, err := vigilv1.NewIncidentServiceClient(conn).StreamIncidents(ctx, &vigilv1.StreamIncidentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := follow.Header(); err != nil {
		t.Fatal(err)
	}

	got := scrape(t, srv.MetricsAddr())
	labels := `{host="web-1",host_id="` + hostID + `"}`
	for name, want := range map[string]string{
		"vigil_server_incidents_received_total":            "3",
		"vigil_server_incidents_stored_total":              "2",
		"vigil_server_incidents_duplicate_total":           "1",
		"vigil_server_incidents_failed_total":              "0",
		"vigil_server_store_put_seconds_count":             "3",
		`vigil_server_store_put_seconds_bucket{le="+Inf"}`: "3",
		"vigil_server_export_lines_total":                  "0",
		"vigil_server_agents_connected":                    "1",
		"vigil_server_stream_clients":                      "1",
		"vigil_server_agent_up" + labels:                   "1",
		"vigil_server_agent_events_total" + labels:         "1234",
		"vigil_server_agent_rss_bytes" + labels:            "4.194304e+07",
		"vigil_server_agent_pending_incidents" + labels:    "2",
		`vigil_server_agent_events_lost_total{family="process",host="web-1",host_id="` + hostID + `"}`: "3",
		`vigil_server_agent_events_lost_total{family="network",host="web-1",host_id="` + hostID + `"}`: "0",
	} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q", name, got[name], want)
		}
	}

	// The follower and the agent go away.
	cancel()
	a.stream.CloseSend()
	if _, err := a.stream.Recv(); err != io.EOF {
		t.Fatalf("agent stream ended with %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got = scrape(t, srv.MetricsAddr())
		if got["vigil_server_agents_connected"] == "0" && got["vigil_server_stream_clients"] == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after disconnect: agents_connected %s, stream_clients %s",
				got["vigil_server_agents_connected"], got["vigil_server_stream_clients"])
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got["vigil_server_agent_up"+labels] != "0" {
		t.Errorf("agent_up after disconnect = %s, want 0", got["vigil_server_agent_up"+labels])
	}
}

func TestExportOCSF(t *testing.T) {
	file := filepath.Join(t.TempDir(), "findings.jsonl")
	srv := start(t, app.Config{ExportOCSF: file, MetricsListen: "127.0.0.1:0"})
	a := connect(t, dial(t, srv.Addr()))
	inc := storetest.NewIncident(hostID, "shell-from-web", vigilv1.Severity_SEVERITY_HIGH)
	inc.Revision = 1
	c1 := a.report(inc)
	a.report(inc) // a duplicate is not exported again
	inc.Revision = 2
	inc.Score = 91
	c2 := a.report(inc)

	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []ocsf.Finding
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var fd ocsf.Finding
		if err := json.Unmarshal(sc.Bytes(), &fd); err != nil {
			t.Fatalf("line %d: %v\n%s", len(lines)+1, err, sc.Bytes())
		}
		lines = append(lines, fd)
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 (one per revision)", len(lines))
	}
	for i, want := range []struct {
		cursor   uint64
		activity int
		risk     int
	}{{c1, 1, 0}, {c2, 2, 91}} {
		fd := lines[i]
		if fd.ClassUID != 2004 || fd.Info.UID != inc.GetId() || fd.Metadata.Sequence != want.cursor ||
			fd.ActivityID != want.activity || fd.RiskScore != want.risk || fd.SeverityID != 4 ||
			fd.Device.UID != hostID || fd.Metadata.LoggedTime == 0 || fd.Info.Analytic.Name != "shell-from-web" {
			t.Errorf("line %d: %+v", i+1, fd)
		}
	}
	// Each line is exactly what package ocsf makes of the stored incident.
	stored, err := srv.Store().Get(context.Background(), inc.GetId())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ocsf.Marshal(stored)
	raw, _ := os.ReadFile(file)
	if last := strings.SplitAfter(string(raw), "\n")[1]; last != string(want) {
		t.Errorf("last line:\n%s\nwant:\n%s", last, want)
	}
	if got := scrape(t, srv.MetricsAddr())["vigil_server_export_lines_total"]; got != "2" {
		t.Errorf("vigil_server_export_lines_total = %s, want 2", got)
	}
}
