package app_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/app"
	"github.com/vigil-sensor/vigil/server/ocsf"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// findingSink is an HTTP endpoint on 127.0.0.1 that collects the findings
// POSTed to it, answering 503 while failing is set.
type findingSink struct {
	failing  atomic.Bool
	failures atomic.Int64

	mu       sync.Mutex
	findings []ocsf.Finding
	posts    int
}

func (s *findingSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-ndjson" {
		http.Error(w, "want a POST of application/x-ndjson", http.StatusBadRequest)
		return
	}
	if s.failing.Load() {
		s.failures.Add(1)
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	var got []ocsf.Finding
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var f ocsf.Finding
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got = append(got, f)
	}
	s.mu.Lock()
	s.findings = append(s.findings, got...)
	s.posts++
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// received returns the findings so far and the successful POSTs.
func (s *findingSink) received() ([]ocsf.Finding, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ocsf.Finding(nil), s.findings...), s.posts
}

// TestExportWebhook reports incidents while the webhook endpoint fails:
// ingest does not wait for it, and once the endpoint recovers every stored
// incident arrives exactly once, in cursor order, in batches.
func TestExportWebhook(t *testing.T) {
	sink := &findingSink{}
	sink.failing.Store(true)
	hs := httptest.NewServer(sink)
	defer hs.Close()

	srv := start(t, app.Config{ExportWebhook: hs.URL + "/findings", MetricsListen: "127.0.0.1:0"})
	a := connect(t, dial(t, srv.Addr()))
	const n = 250
	began := time.Now()
	ids := map[string]uint64{}
	for i := range n {
		inc := storetest.NewIncident(hostID, "rule-"+strconv.Itoa(i%7), vigilv1.Severity_SEVERITY_HIGH)
		ids[inc.GetId()] = a.report(inc)
		if i == 0 {
			a.report(inc) // a resend is not exported again
		}
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("%d reports took %s with the endpoint down: ingest waited for the webhook", n, d)
	}
	// The endpoint has refused at least one POST; nothing got through.
	for deadline := time.Now().Add(10 * time.Second); sink.failures.Load() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the webhook tried %d times in 10s, want 2", sink.failures.Load())
		}
	}
	if got, _ := sink.received(); len(got) != 0 {
		t.Fatalf("%d findings delivered while the endpoint failed", len(got))
	}
	m := scrape(t, srv.MetricsAddr())
	if m["vigil_server_export_errors_total"] == "0" || m["vigil_server_export_lines_total"] != "0" {
		t.Errorf("while failing: export_errors_total %s, export_lines_total %s; want errors and no lines",
			m["vigil_server_export_errors_total"], m["vigil_server_export_lines_total"])
	}

	sink.failing.Store(false)
	var got []ocsf.Finding
	var posts int
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if got, posts = sink.received(); len(got) >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d findings delivered after the endpoint recovered", len(got), n)
		}
	}
	time.Sleep(300 * time.Millisecond) // nothing more arrives
	if got, posts = sink.received(); len(got) != n {
		t.Fatalf("%d findings delivered, want exactly %d", len(got), n)
	}
	if posts < n/ocsf.DefaultWebhookBatch || posts > n/2 {
		t.Errorf("%d POSTs for %d findings: want batches of up to %d", posts, n, ocsf.DefaultWebhookBatch)
	}
	var last uint64
	for i, f := range got {
		cursor, ok := ids[f.Info.UID]
		if !ok || f.Metadata.Sequence != cursor {
			t.Fatalf("finding %d: uid %s sequence %d: not a stored incident at its cursor", i, f.Info.UID, f.Metadata.Sequence)
		}
		if f.Metadata.Sequence <= last {
			t.Fatalf("finding %d: sequence %d after %d, want cursor order", i, f.Metadata.Sequence, last)
		}
		last = f.Metadata.Sequence
		delete(ids, f.Info.UID)
	}
	if m := scrape(t, srv.MetricsAddr()); m["vigil_server_export_lines_total"] != strconv.Itoa(n) {
		t.Errorf("export_lines_total = %s, want %d", m["vigil_server_export_lines_total"], n)
	}
}

func TestExportWebhookBadURL(t *testing.T) {
	for _, u := range []string{"ftp://example.com/", "/just/a/path", "http://"} {
		if _, err := app.Start(app.Config{Listen: "127.0.0.1:0", DBPath: t.TempDir() + "/db", ExportWebhook: u}); err == nil {
			t.Errorf("Start with --export-webhook %q succeeded", u)
		}
	}
}
