package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/api"
	"github.com/vigil-sensor/vigil/server/console"
	"github.com/vigil-sensor/vigil/server/fleet"
	"github.com/vigil-sensor/vigil/server/store"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

func newConsole(t *testing.T) (store.Store, *httptest.Server) {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := fleet.New()
	reg.Connected(&vigilv1.Hello{HostId: "h1", Hostname: "web-1"}, "127.0.0.1:5000")
	svc := api.New(st, reg, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(console.New(console.Config{
		Store: st, Fleet: reg, Incidents: svc.Incident, Responses: svc.Response, LoopbackOnly: true,
	}))
	t.Cleanup(srv.Close)
	return st, srv
}

func put(t *testing.T, st store.Store, inc *vigilv1.Incident) uint64 {
	t.Helper()
	c, _, err := st.Put(context.Background(), inc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAPI(t *testing.T) {
	st, srv := newConsole(t)
	a := storetest.NewIncident("h1", "web-shell", vigilv1.Severity_SEVERITY_CRITICAL)
	b := storetest.NewIncident("h2", "miner", vigilv1.Severity_SEVERITY_LOW)
	c := storetest.NewIncident("h1", "miner", vigilv1.Severity_SEVERITY_HIGH)
	for _, inc := range []*vigilv1.Incident{a, b, c} {
		put(t, st, inc)
	}
	ids := func(body string) []string {
		var r struct {
			Incidents  []json.RawMessage
			NextBefore string
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		var out []string
		for _, raw := range r.Incidents {
			var inc vigilv1.Incident
			if err := protojson.Unmarshal(raw, &inc); err != nil {
				t.Fatal(err)
			}
			out = append(out, inc.GetId())
		}
		return append(out, "next="+r.NextBefore)
	}
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{c.Id, b.Id, a.Id, "next="}},
		{"?limit=2", []string{c.Id, b.Id, "next=2"}},
		{"?limit=2&before=2", []string{a.Id, "next="}},
		{"?host=h1", []string{c.Id, a.Id, "next="}},
		{"?rule=miner&min_severity=high", []string{c.Id, "next="}},
	}
	for _, tt := range tests {
		code, body := get(t, srv.URL+"/api/incidents"+tt.query)
		if got := ids(body); code != 200 || strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%s: %d %v, want %v", tt.query, code, got, tt.want)
		}
	}
	for _, q := range []string{"?limit=0", "?limit=1001", "?before=-1", "?min_severity=loud"} {
		if code, body := get(t, srv.URL+"/api/incidents"+q); code != 400 || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s, want 400", q, code, body)
		}
	}

	code, body := get(t, srv.URL+"/api/incidents/"+a.Id)
	var got vigilv1.Incident
	if err := protojson.Unmarshal([]byte(body), &got); code != 200 || err != nil || got.GetTitle() != a.GetTitle() || got.GetCursor() != 1 {
		t.Errorf("get: %d %v %s", code, err, body)
	}
	if code, _ := get(t, srv.URL+"/api/incidents/"+storetest.NewID()); code != 404 {
		t.Errorf("get unknown id: %d, want 404", code)
	}
	if code, body := get(t, srv.URL+"/api/fleet"); code != 200 || !strings.Contains(body, `"hostId":"h1"`) || !strings.Contains(body, `"connected":true`) {
		t.Errorf("fleet: %d %s", code, body)
	}

	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `<script src="app.js"`) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("index: %s %v", page, resp.Header)
	}
	for _, f := range []string{"/app.js", "/style.css"} {
		if code, _ := get(t, srv.URL+f); code != 200 {
			t.Errorf("%s: %d", f, code)
		}
	}
}

// TestEvents follows the event stream from a cursor, then from
// Last-Event-ID, and sees incidents stored while it waits.
func TestEvents(t *testing.T) {
	st, srv := newConsole(t)
	a := storetest.NewIncident("h1", "r1", vigilv1.Severity_SEVERITY_HIGH)
	b := storetest.NewIncident("h1", "r2", vigilv1.Severity_SEVERITY_HIGH)
	put(t, st, a)
	put(t, st, b)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	open := func(query, lastID string) *bufio.Reader {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events"+query, nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("content type %q", ct)
		}
		return bufio.NewReader(resp.Body)
	}
	// next returns the id and incident of the next event.
	next := func(r *bufio.Reader) (string, *vigilv1.Incident) {
		t.Helper()
		var id, data string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			case line == "" && data != "":
				var inc vigilv1.Incident
				if err := protojson.Unmarshal([]byte(data), &inc); err != nil {
					t.Fatal(err)
				}
				return id, &inc
			}
		}
	}

	r := open("?after=0", "")
	if id, inc := next(r); id != "1" || inc.GetId() != a.Id {
		t.Errorf("first event %s %s", id, inc.GetId())
	}
	if id, inc := next(r); id != "2" || inc.GetId() != b.Id {
		t.Errorf("second event %s %s", id, inc.GetId())
	}
	c := storetest.NewIncident("h1", "r3", vigilv1.Severity_SEVERITY_LOW)
	put(t, st, c)
	if id, inc := next(r); id != "3" || inc.GetId() != c.Id {
		t.Errorf("live event %s %s", id, inc.GetId())
	}

	// Last-Event-ID wins over ?after, as when EventSource reconnects;
	// filters apply.
	r = open("?after=0&rule=r3", "1")
	if id, inc := next(r); id != "3" || inc.GetId() != c.Id {
		t.Errorf("resumed event %s %s", id, inc.GetId())
	}
	if code, _ := get(t, srv.URL+"/api/events?after=x"); code != 400 {
		t.Errorf("bad cursor: %d, want 400", code)
	}
}

// TestTimeAndRuleCellsDoNotWrap: the list's timestamp and rule id cells
// carry the classes the style sheet keeps on one line.
func TestTimeAndRuleCellsDoNotWrap(t *testing.T) {
	_, srv := newConsole(t)
	_, css := get(t, srv.URL+"/style.css")
	if want := "td.time, td.rule { white-space: nowrap; word-break: normal; }\n"; !strings.Contains(css, want) {
		t.Errorf("style.css lacks %q", want)
	}
	_, js := get(t, srv.URL+"/app.js")
	for _, want := range []string{
		`el("td", { className: "mono time" }, fmtTime(inc.time)),`,
		`el("td", { className: "mono rule" }, inc.ruleId || "-"),`,
	} {
		if !strings.Contains(js, want) {
			t.Errorf("app.js lacks %q", want)
		}
	}
}
