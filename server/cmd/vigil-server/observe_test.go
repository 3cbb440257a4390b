package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/ocsf"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// TestMetricsAndExportFlags runs the real program with --metrics and
// --export-ocsf, reports an incident as an agent would, and reads both.
func TestMetricsAndExportFlags(t *testing.T) {
	dir := t.TempDir()
	export := filepath.Join(dir, "findings.jsonl")
	cmd := server(t, "--listen", "127.0.0.1:0", "--db", filepath.Join(dir, "server.db"),
		"--metrics", "127.0.0.1:0", "--export-ocsf", export)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stderr)
	var grpcAddr, metricsURL string
	for (grpcAddr == "" || metricsURL == "") && lines.Scan() {
		if m := regexp.MustCompile(`msg="vigil-server started" listen=(\S+)`).FindStringSubmatch(lines.Text()); m != nil {
			grpcAddr = m[1]
		}
		if m := regexp.MustCompile(`msg="metrics served" url=(\S+)`).FindStringSubmatch(lines.Text()); m != nil {
			metricsURL = m[1]
		}
	}
	if grpcAddr == "" || metricsURL == "" {
		t.Fatalf("no listen or metrics line (%v)", lines.Err())
	}
	go io.Copy(io.Discard, stderr)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := vigilv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inc := storetest.NewIncident("h1", "shell-from-web", vigilv1.Severity_SEVERITY_CRITICAL)
	for _, m := range []*vigilv1.AgentMessage{
		{Msg: &vigilv1.AgentMessage_Hello{Hello: &vigilv1.Hello{HostId: "h1", Hostname: "web-1"}}},
		{Msg: &vigilv1.AgentMessage_Incident{Incident: &vigilv1.IncidentReport{Sequence: 1, Incident: inc}}},
	} {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := stream.Recv(); err != nil || m.GetAck() == nil {
		t.Fatalf("no ack: %v %v", m, err)
	}

	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"\nvigil_server_incidents_stored_total 1\n", "\nvigil_server_export_lines_total 1\n", "\nvigil_server_agents_connected 1\n"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", strings.TrimSpace(want))
		}
	}

	raw, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}
	var f ocsf.Finding
	if err := json.Unmarshal(raw, &f); err != nil || strings.Count(string(raw), "\n") != 1 {
		t.Fatalf("export file is not one finding line: %v\n%s", err, raw)
	}
	if f.Info.UID != inc.GetId() || f.SeverityID != 5 || f.Device.Hostname != "web-1" || f.Metadata.Sequence != 1 {
		t.Errorf("exported finding %+v", f)
	}
	stream.CloseSend()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}
