package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/vigil-sensor/vigil/agent/transport"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/app"
	"github.com/vigil-sensor/vigil/server/pki"
	"github.com/vigil-sensor/vigil/server/store"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// Tokens of the tokens file the secure server reads; the responder's is
// stored as its hash.
const (
	viewerToken    = "viewer-token-0123456789"
	responderToken = "responder-token-0123456789"
)

// sha256Hex is a tokens file key for token: "sha256:" and its hex hash.
func sha256Hex(token string) string {
	h := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(h[:])
}

// waitConnected waits until the agent's stream is registered.
func waitConnected(t *testing.T, srv *app.Server) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if a, ok := srv.Fleet().Get(hostID); ok && a.Connections > 0 {
			return
		}
	}
	t.Fatal("agent did not connect")
}

// connectHealth asks the overall health over conn.
func connectHealth(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// pkiDir makes a CA with a server certificate for 127.0.0.1 and one agent
// certificate, as 'vigil-server ca init' and 'ca issue' do.
func pkiDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pki.Init(dir, []string{"localhost", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.IssueAgent(dir, "web-1"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startSecure runs a server with TLS, agent certificates from dir's CA,
// and a tokens file with a viewer and a responder.
func startSecure(t *testing.T, dir string, cfg app.Config) *app.Server {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	yaml := viewerToken + ": {name: vera, role: viewer}\n" +
		`"` + sha256Hex(responderToken) + `": {name: rory, role: responder}` + "\n"
	if err := os.WriteFile(tokens, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.TLSCert = filepath.Join(dir, pki.ServerFile)
	cfg.TLSKey = filepath.Join(dir, pki.ServerKeyFile)
	cfg.ClientCA = filepath.Join(dir, pki.CAFile)
	cfg.TokensFile = tokens
	return start(t, cfg)
}

// dialTLS connects with TLS, trusting dir's CA, presenting cert and key
// from dir when name is not empty.
func dialTLS(t *testing.T, addr, dir, name string) *grpc.ClientConn {
	t.Helper()
	var cert, key string
	if name != "" {
		cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	}
	tc, err := pki.ClientConfig(filepath.Join(dir, pki.CAFile), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// withToken returns a context whose calls carry token.
func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// runAgent runs a real agent client with dir's CA and the agent
// certificate name until the test ends.
func runAgent(t *testing.T, addr, dir, name string) *transport.Client {
	t.Helper()
	tc, err := pki.ClientConfig(filepath.Join(dir, pki.CAFile), filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c := &transport.Client{
		Addr:   addr,
		Hello:  &vigilv1.Hello{HostId: hostID, Hostname: name},
		TLS:    tc,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnAction: func(cmd *vigilv1.ActionCommand) *vigilv1.ActionRecord {
			rec := storetest.NewActionRecord(cmd.GetAction(), cmd.GetTarget(), cmd.GetIncidentId())
			rec.Result = "done"
			rec.Requester = "server:" + cmd.GetRequester()
			return rec
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// waitStored waits until the store holds n incidents and returns them.
func waitStored(t *testing.T, srv *app.Server, n int, within time.Duration) []*vigilv1.Incident {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		incs, err := srv.Store().List(context.Background(), &vigilv1.IncidentFilter{}, 0, n+10)
		if err != nil {
			t.Fatal(err)
		}
		if len(incs) >= n || time.Now().After(deadline) {
			return incs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAgentWithCertificateReports(t *testing.T) {
	dir := pkiDir(t)
	srv := startSecure(t, dir, app.Config{})
	c := runAgent(t, srv.Addr(), dir, "web-1")
	inc := storetest.NewIncident(hostID, "exec_from_tmp", vigilv1.Severity_SEVERITY_HIGH)
	if err := c.Send(inc); err != nil {
		t.Fatal(err)
	}
	if got := waitStored(t, srv, 1, 10*time.Second); len(got) != 1 || got[0].GetId() != inc.GetId() {
		t.Fatalf("stored %v, want the reported incident", got)
	}
	// The ack reaches the agent after the store has the incident.
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Acked == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := c.Stats(); s.Acked != 1 || s.Rejected != 0 {
		t.Errorf("agent stats %+v, want one ack", s)
	}
}

// connectErr opens a Connect stream, sends a hello and returns the error
// the stream ends with.
func connectErr(t *testing.T, conn *grpc.ClientConn) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	stream, err := vigilv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Hello{Hello: &vigilv1.Hello{HostId: hostID}}}); err != nil {
		_, err = stream.Recv()
		return err
	}
	_, err = stream.Recv()
	return err
}

func TestAgentWithoutValidCertificateRefused(t *testing.T) {
	dir := pkiDir(t)
	srv := startSecure(t, dir, app.Config{})

	// No certificate: the handshake succeeds (other services need none)
	// and AgentService refuses the call.
	err := connectErr(t, dialTLS(t, srv.Addr(), dir, ""))
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("no certificate: %v, want Unauthenticated", err)
	}

	// A certificate of another CA: the server's TLS handshake rejects it,
	// which gRPC reports as Unavailable.
	other := filepath.Join(t.TempDir(), "other")
	if err := pki.Init(other, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.IssueAgent(other, "rogue"); err != nil {
		t.Fatal(err)
	}
	rogue, err := pki.ClientConfig(filepath.Join(dir, pki.CAFile), filepath.Join(other, "rogue.pem"), filepath.Join(other, "rogue-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(rogue)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = connectErr(t, conn)
	if c := status.Code(err); c != codes.Unavailable {
		t.Errorf("certificate of another CA: %v, want Unavailable", err)
	}

	// Plaintext: no handshake at all.
	err = connectErr(t, dial(t, srv.Addr()))
	if c := status.Code(err); c != codes.Unavailable {
		t.Errorf("plaintext: %v, want Unavailable", err)
	}
	if n := len(srv.Fleet().Agents()); n != 0 {
		t.Errorf("%d agents registered, want none", n)
	}
}

func TestTokenRoles(t *testing.T) {
	dir := pkiDir(t)
	srv := startSecure(t, dir, app.Config{})
	runAgent(t, srv.Addr(), dir, "web-1")
	inc := storetest.NewIncident(hostID, "exec_from_tmp", vigilv1.Severity_SEVERITY_HIGH)
	if _, _, err := srv.Store().Put(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
	conn := dialTLS(t, srv.Addr(), dir, "")
	incidents := vigilv1.NewIncidentServiceClient(conn)
	response := vigilv1.NewResponseServiceClient(conn)
	fleet := vigilv1.NewFleetServiceClient(conn)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	// No token, or an unknown one.
	for _, c := range []context.Context{ctx, withToken(ctx, "not-a-token-at-all")} {
		if _, err := incidents.ListIncidents(c, &vigilv1.ListIncidentsRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("List without a valid token: %v, want Unauthenticated", err)
		}
	}

	// A viewer reads...
	viewer := withToken(ctx, viewerToken)
	if _, err := incidents.ListIncidents(viewer, &vigilv1.ListIncidentsRequest{}); err != nil {
		t.Errorf("viewer List: %v", err)
	}
	if _, err := incidents.GetIncident(viewer, &vigilv1.GetIncidentRequest{Id: inc.GetId()}); err != nil {
		t.Errorf("viewer Get: %v", err)
	}
	if _, err := fleet.ListAgents(viewer, &vigilv1.ListAgentsRequest{}); err != nil {
		t.Errorf("viewer ListAgents: %v", err)
	}
	if _, err := response.ListActions(viewer, &vigilv1.ListActionsRequest{}); err != nil {
		t.Errorf("viewer ListActions: %v", err)
	}
	// ...and changes nothing.
	_, err := incidents.UpdateIncident(viewer, &vigilv1.UpdateIncidentRequest{Id: inc.GetId(), Status: vigilv1.TriageStatus_TRIAGE_STATUS_RESOLVED, Note: "x"})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("viewer UpdateIncident: %v, want PermissionDenied", err)
	}
	_, err = response.RequestAction(viewer, &vigilv1.RequestActionRequest{HostId: hostID, Action: "kill", Target: "1234", Reason: "test"})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("viewer RequestAction: %v, want PermissionDenied", err)
	}
	got, err := srv.Store().Get(context.Background(), inc.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if st := got.GetTriage().GetStatus(); st == vigilv1.TriageStatus_TRIAGE_STATUS_RESOLVED || len(got.GetTriage().GetNotes()) != 0 {
		t.Errorf("viewer's update changed the incident: %v", got.GetTriage())
	}
	if acts, _ := srv.Store().ListActions(context.Background(), store.ActionFilter{}, 0, 10); len(acts) != 0 {
		t.Errorf("viewer's request stored %d actions", len(acts))
	}

	// A responder may do both.
	responder := withToken(ctx, responderToken)
	upd, err := incidents.UpdateIncident(responder, &vigilv1.UpdateIncidentRequest{Id: inc.GetId(), Status: vigilv1.TriageStatus_TRIAGE_STATUS_RESOLVED})
	if err != nil {
		t.Fatalf("responder UpdateIncident: %v", err)
	}
	if upd.GetTriage().GetStatus() != vigilv1.TriageStatus_TRIAGE_STATUS_RESOLVED {
		t.Errorf("responder's update: triage %v", upd.GetTriage())
	}
	waitConnected(t, srv)
	// The requester is the token's holder, whatever the request claims.
	rec, err := response.RequestAction(responder, &vigilv1.RequestActionRequest{HostId: hostID, Action: "kill", Target: "1234", Reason: "test", Requester: "mallory"})
	if err != nil {
		t.Errorf("responder RequestAction: %v", err)
	} else if rec.GetRequester() != "server:rory" {
		t.Errorf("requester %q, want server:rory (the token's holder)", rec.GetRequester())
	}

	// Health stays open to probes without a token.
	if err := connectHealth(ctx, conn); err != nil {
		t.Errorf("health without a token: %v", err)
	}
}

func TestAgentRateLimitLosesNothing(t *testing.T) {
	dir := pkiDir(t)
	// 50 a second, bursts of 20: 120 incidents take about two seconds.
	srv := startSecure(t, dir, app.Config{AgentRate: 50, AgentBurst: 20})
	c := runAgent(t, srv.Addr(), dir, "web-1")
	const n = 120
	ids := map[string]bool{}
	start := time.Now()
	for range n {
		inc := storetest.NewIncident(hostID, "exec_from_tmp", vigilv1.Severity_SEVERITY_HIGH)
		ids[inc.GetId()] = true
		if err := c.Send(inc); err != nil {
			t.Fatal(err)
		}
	}
	got := waitStored(t, srv, n, 20*time.Second)
	elapsed := time.Since(start)
	if len(got) != n {
		t.Fatalf("stored %d incidents, want %d", len(got), n)
	}
	for _, inc := range got {
		if !ids[inc.GetId()] {
			t.Errorf("stored unknown incident %s", inc.GetId())
		}
		delete(ids, inc.GetId()) // a duplicate would show as unknown
	}
	if min := time.Duration(float64(n-20) / 50 * float64(time.Second) * 0.8); elapsed < min {
		t.Errorf("%d incidents stored in %v, want the limit to slow them to at least %v", n, elapsed, min)
	}
	var s transport.Stats
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s = c.Stats(); s.Acked == n {
			break
		}
	}
	if s.Acked != n || s.Rejected != 0 || s.Pending != 0 {
		t.Errorf("agent stats %+v, want %d acked, none rejected or pending", s, n)
	}
}
