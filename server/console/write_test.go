package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/app"
	"github.com/vigil-sensor/vigil/server/store"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// Tokens of the servers the tests start with --tokens.
const (
	viewerToken    = "viewer-token-0123456789"
	responderToken = "responder-token-0123456789"
)

// startServer runs a real server with its console on loopback; with
// tokens, its tokens file holds a viewer (vera) and a responder (rory).
func startServer(t *testing.T, tokens bool) *app.Server {
	t.Helper()
	cfg := app.Config{
		Listen:        "127.0.0.1:0",
		DBPath:        filepath.Join(t.TempDir(), "server.db"),
		ConsoleListen: "127.0.0.1:0",
	}
	if tokens {
		cfg.TokensFile = filepath.Join(t.TempDir(), "tokens.yaml")
		yaml := viewerToken + ": {name: vera, role: viewer}\n" + responderToken + ": {name: rory, role: responder}\n"
		if err := os.WriteFile(cfg.TokensFile, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := app.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv
}

// consoleWrite is the header set the console's script sends with a POST.
var consoleWrite = map[string]string{"Content-Type": "application/json", "Vigil-Console": "1"}

// call makes one request and returns its status and body. token, when
// not empty, goes in the Authorization header.
func call(t *testing.T, method, url, token string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// errorOf returns the "error" of a JSON error answer.
func errorOf(body string) string {
	var e struct{ Error string }
	json.Unmarshal([]byte(body), &e)
	return e.Error
}

// TestWriteAPI runs an incident's recommended action and triages the
// incident through the console's API of a server with tokens, whose host's
// agent carries the action out, and checks every refusal: each leaves the
// store as it was.
func TestWriteAPI(t *testing.T) {
	srv := startServer(t, true)
	base := "http://" + srv.ConsoleAddr()
	const hostID = "6b0c2a8f41d94e3a9c7b5d1e2f3a4b5c"
	startHostAgent(t, srv, hostID, "web-1", nil)
	miner := startMiner(t)
	pid := strconv.Itoa(miner.Process.Pid)
	ctx := context.Background()

	inc := storetest.NewIncident(hostID, "crypto-miner", vigilv1.Severity_SEVERITY_HIGH)
	inc.RecommendedActions = []*vigilv1.RecommendedAction{{Action: "kill", Target: "pid:" + pid, Reason: "Rule crypto-miner asks to kill it."}}
	if _, _, err := srv.Store().Put(ctx, inc); err != nil {
		t.Fatal(err)
	}
	actions := base + "/api/incidents/" + inc.GetId() + "/actions"
	triage := base + "/api/incidents/" + inc.GetId() + "/triage"
	dryKill := `{"action":"kill","target":"pid:` + pid + `","dryRun":true}`

	// Reads need a token of a viewer or better.
	for _, tc := range []struct {
		url, token string
		code       int
		body       string // a part of the answer
	}{
		{"/api/session", "", 200, `{"tokens":true}`},
		{"/api/session", viewerToken, 200, `{"tokens":true,"name":"vera","role":"viewer"}`},
		{"/api/session", "not-a-token-at-all", 401, `{"error":"unknown bearer token"}`},
		{"/api/incidents", "", 401, `{"error":"missing bearer token (authorization: Bearer TOKEN)"}`},
		{"/api/incidents", "not-a-token-at-all", 401, `{"error":"unknown bearer token"}`},
		{"/api/incidents", viewerToken, 200, inc.GetId()},
		{"/api/incidents/" + inc.GetId(), "", 401, "missing bearer token"},
		{"/api/incidents/" + inc.GetId(), viewerToken, 200, inc.GetId()},
		{"/api/incidents/" + inc.GetId() + "/actions", "", 401, "missing bearer token"},
		{"/api/incidents/" + inc.GetId() + "/actions", viewerToken, 200, `{}`},
		{"/api/events", "", 401, "missing bearer token"},
		{"/api/fleet", "", 401, "missing bearer token"},
		{"/api/fleet", viewerToken, 200, `"hostId":"` + hostID + `"`},
		{"/", "", 200, `<script src="app.js"`}, // the page itself holds no data
	} {
		code, body := call(t, "GET", base+tc.url, tc.token, nil, "")
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s with token %q: %d %s, want %d and %s", tc.url, tc.token, code, body, tc.code, tc.body)
		}
	}

	// Refused writes, each with its status and reason.
	viewerSays := "vera (role viewer) may not call %s: it needs role responder"
	for _, tc := range []struct {
		what, url, token string
		hdr              map[string]string
		body             string
		code             int
		err              string
	}{
		{"a form post", actions, responderToken, map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Vigil-Console": "1"},
			"action=kill", 415, "the body must be JSON (Content-Type: application/json)"},
		{"no console header", actions, responderToken, map[string]string{"Content-Type": "application/json"},
			dryKill, 403, "missing header Vigil-Console: 1"},
		{"another origin", actions, responderToken, map[string]string{"Content-Type": "application/json", "Vigil-Console": "1", "Origin": "http://evil.example"},
			dryKill, 403, "cross-origin request refused (Origin http://evil.example, console " + srv.ConsoleAddr() + ")"},
		{"another site", actions, responderToken, map[string]string{"Content-Type": "application/json", "Vigil-Console": "1", "Sec-Fetch-Site": "cross-site"},
			dryKill, 403, "cross-site request refused (Sec-Fetch-Site: cross-site)"},
		{"no token", actions, "", consoleWrite, dryKill, 401, "missing bearer token (authorization: Bearer TOKEN)"},
		{"an unknown token", actions, "not-a-token-at-all", consoleWrite, dryKill, 401, "unknown bearer token"},
		{"a viewer", actions, viewerToken, consoleWrite, dryKill, 403, fmt.Sprintf(viewerSays, vigilv1.ResponseService_RequestAction_FullMethodName)},
		{"an action not recommended", actions, responderToken, consoleWrite, `{"action":"kill","target":"pid:1"}`, 400,
			"kill pid:1 is not one of the incident's recommended actions"},
		{"another host", actions, responderToken, consoleWrite, `{"action":"kill","target":"pid:` + pid + `","hostId":"elsewhere"}`, 400,
			`hostId "elsewhere": the action runs on the incident's host, ` + hostID},
		{"an unknown field", actions, responderToken, consoleWrite, `{"action":"kill","target":"pid:` + pid + `","force":true}`, 400,
			"body: proto:"},
		{"an unknown incident", base + "/api/incidents/" + storetest.NewID() + "/actions", responderToken, consoleWrite, dryKill, 404, "no incident with this id"},
		{"a viewer's triage", triage, viewerToken, consoleWrite, `{"label":"LABEL_BENIGN"}`, 403,
			fmt.Sprintf(viewerSays, vigilv1.IncidentService_UpdateIncident_FullMethodName)},
		{"a triage without token", triage, "", consoleWrite, `{"label":"LABEL_BENIGN"}`, 401, "missing bearer token (authorization: Bearer TOKEN)"},
		{"an empty triage", triage, responderToken, consoleWrite, `{}`, 400, "nothing to update: set status, label or note"},
		{"an unknown label", triage, responderToken, consoleWrite, `{"label":"LABEL_NICE"}`, 400, "body: proto:"},
		{"another incident's id", triage, responderToken, consoleWrite, `{"id":"x","note":"n"}`, 400, `id "x" is not the incident of the path`},
		{"a note too long", triage, responderToken, consoleWrite, `{"note":"` + strings.Repeat("n", 4097) + `"}`, 400, "note is 4097 bytes, at most 4096"},
		{"a triage of an unknown incident", base + "/api/incidents/" + storetest.NewID() + "/triage", responderToken, consoleWrite, `{"note":"n"}`, 404, "not found"},
	} {
		code, body := call(t, "POST", tc.url, tc.token, tc.hdr, tc.body)
		if got := errorOf(body); code != tc.code || !strings.HasPrefix(got, tc.err) && !strings.Contains(got, tc.err) {
			t.Errorf("POST %s: %d %s, want %d and %q", tc.what, code, body, tc.code, tc.err)
		}
	}
	if acts, err := srv.Store().ListActions(ctx, store.ActionFilter{}, 0, 10); err != nil || len(acts) != 0 {
		t.Errorf("refused requests stored actions: %v %v", acts, err)
	}
	if got, err := srv.Store().Get(ctx, inc.GetId()); err != nil || got.GetTriage().GetUpdatedTime() != nil {
		t.Errorf("refused requests changed the triage: %v %v", got.GetTriage(), err)
	}

	// The responder's dry run: the agent checks the real process and says
	// what it would do; the requester is the token's holder.
	code, body := call(t, "POST", actions, responderToken, consoleWrite, `{"action":"kill","target":"pid:`+pid+`","dryRun":true,"requester":"mallory"}`)
	var rec vigilv1.ActionRecord
	if err := protojson.Unmarshal([]byte(body), &rec); code != 200 || err != nil {
		t.Fatalf("dry-run kill: %d %s (%v)", code, body, err)
	}
	exe := miner.Path
	want := &vigilv1.ActionRecord{
		Id: rec.GetId(), Time: rec.GetTime(), DurationUs: rec.GetDurationUs(),
		Action: "kill", Target: "pid:" + pid, IncidentId: inc.GetId(), Requester: "server:rory",
		Reason: "Rule crypto-miner asks to kill it.", Mode: "recommend", DryRun: true,
		Result: "dry-run", Detail: "would kill pid " + pid + " (" + exe + ") and its descendants",
	}
	if !proto.Equal(&rec, want) {
		t.Errorf("dry-run record\n%v\nwant\n%v", &rec, want)
	}
	if err := miner.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the miner is gone after a dry run: %v", err)
	}
	acts, err := srv.Store().ListActions(ctx, store.ActionFilter{IncidentID: inc.GetId()}, 0, 10)
	if err != nil || len(acts) != 1 || acts[0].HostID != hostID || !proto.Equal(acts[0].Record, want) {
		t.Errorf("stored actions %v %v, want the one record", acts, err)
	}
	code, body = call(t, "GET", actions, viewerToken, nil, "")
	var list vigilv1.ListActionsResponse
	if err := protojson.Unmarshal([]byte(body), &list); code != 200 || err != nil || len(list.GetActions()) != 1 || !proto.Equal(list.GetActions()[0].GetRecord(), want) {
		t.Errorf("GET actions: %d %s", code, body)
	}

	// The responder labels it benign: the author is the token's holder.
	code, body = call(t, "POST", triage, responderToken, consoleWrite, `{"status":"TRIAGE_STATUS_RESOLVED","label":"LABEL_BENIGN","note":"a test box","author":"mallory"}`)
	var upd vigilv1.Incident
	if err := protojson.Unmarshal([]byte(body), &upd); code != 200 || err != nil {
		t.Fatalf("triage: %d %s (%v)", code, body, err)
	}
	stored, err := srv.Store().Get(ctx, inc.GetId())
	if err != nil {
		t.Fatal(err)
	}
	tr := stored.GetTriage()
	if tr.GetStatus() != vigilv1.TriageStatus_TRIAGE_STATUS_RESOLVED || tr.GetLabel() != vigilv1.Label_LABEL_BENIGN || tr.GetLabelAuthor() != "rory" ||
		len(tr.GetNotes()) != 1 || tr.GetNotes()[0].GetText() != "a test box" || tr.GetNotes()[0].GetAuthor() != "rory" || !proto.Equal(upd.GetTriage(), tr) {
		t.Errorf("stored triage %v, answered %v", tr, upd.GetTriage())
	}
}

// TestWriteAPIWithoutTokens: without --tokens the API is open, but a POST
// must still be the console's own, and a loopback console answers only
// for loopback host names.
func TestWriteAPIWithoutTokens(t *testing.T) {
	st, srv := newConsole(t)
	inc := storetest.NewIncident("h1", "web-shell", vigilv1.Severity_SEVERITY_CRITICAL)
	put(t, st, inc)
	triage := srv.URL + "/api/incidents/" + inc.GetId() + "/triage"

	if code, body := call(t, "GET", srv.URL+"/api/session", "", nil, ""); code != 200 || body != `{"tokens":false}`+"\n" {
		t.Errorf("session: %d %s", code, body)
	}
	if code, body := call(t, "POST", triage, "", map[string]string{"Content-Type": "application/json"}, `{"note":"n"}`); code != 403 || errorOf(body) != "missing header Vigil-Console: 1" {
		t.Errorf("POST without the console header: %d %s", code, body)
	}
	code, body := call(t, "POST", triage, "", consoleWrite, `{"label":"LABEL_MALICIOUS","note":"seen before"}`)
	var upd vigilv1.Incident
	if err := protojson.Unmarshal([]byte(body), &upd); code != 200 || err != nil {
		t.Fatalf("triage: %d %s", code, body)
	}
	tr := upd.GetTriage()
	if tr.GetLabel() != vigilv1.Label_LABEL_MALICIOUS || tr.GetLabelAuthor() != "console" || len(tr.GetNotes()) != 1 || tr.GetNotes()[0].GetAuthor() != "console" {
		t.Errorf("triage %v, want malicious by console", tr)
	}
	// The agent of h1 is registered but has no stream: nothing to run on.
	inc.RecommendedActions = []*vigilv1.RecommendedAction{{Action: "isolate", Target: "host"}}
	inc.Revision = 2
	put(t, st, inc)
	code, body = call(t, "POST", srv.URL+"/api/incidents/"+inc.GetId()+"/actions", "", consoleWrite, `{"action":"isolate","target":"host"}`)
	if code != 503 || errorOf(body) != "agent of host h1 is not connected" {
		t.Errorf("action on a host without agent: %d %s", code, body)
	}

	// DNS rebinding: a page of evil.example that resolves to 127.0.0.1.
	req, _ := http.NewRequest("GET", srv.URL+"/api/incidents", nil)
	req.Host = "evil.example:7471"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest || strings.Contains(string(b), inc.GetId()) {
		t.Errorf("request for another host name: %d %s", resp.StatusCode, b)
	}
	for _, host := range []string{"localhost:7471", "[::1]:7471", "127.0.0.2"} {
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("Host %s: %d, want 200", host, resp.StatusCode)
		}
	}
}

// TestFleetHealth: each agent's health and its reason.
func TestFleetHealth(t *testing.T) {
	srv := startServer(t, false)
	startHostAgent(t, srv, "host-a", "web-1", map[string]uint64{"process": 0, "file": 12, "net": 3})
	startHostAgent(t, srv, "host-b", "db-1", map[string]uint64{"process": 0})
	code, body := call(t, "GET", "http://"+srv.ConsoleAddr()+"/api/fleet", "", nil, "")
	var fl struct {
		Agents []struct {
			HostID, Health, HealthDetail string
			Connected                    bool
		}
	}
	if err := json.Unmarshal([]byte(body), &fl); code != 200 || err != nil {
		t.Fatalf("fleet: %d %s", code, body)
	}
	got := fmt.Sprint(fl.Agents)
	want := "[{host-a losing events 15 events lost in the last 5 minutes (file 12, net 3) true} {host-b ok connected, no event lost true}]"
	if got != want {
		t.Errorf("fleet %s\nwant %s", got, want)
	}
}
