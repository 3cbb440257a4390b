package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/app"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// hostileArg is a process argument an attacker chose: the page must show
// it as text, never run it.
const hostileArg = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">`

// TestBrowser runs a real server with its console, reports incidents as an
// agent does, and reads the console in headless Chromium over the DevTools
// protocol: the list, its live updates, and an incident page.
func TestBrowser(t *testing.T) {
	chrome := findChromium(t)
	start := time.Now()

	srv, err := app.Start(app.Config{
		Listen:        "127.0.0.1:0",
		DBPath:        filepath.Join(t.TempDir(), "server.db"),
		ConsoleListen: "127.0.0.1:0",
	})
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
	base := "http://" + srv.ConsoleAddr() + "/"
	agent := connectAgent(t, srv.Addr(), "h-console", "web-1")

	first := richIncident("h-console")
	agent.report(t, first)

	page := openPage(t, chrome)
	page.navigate(t, base)
	page.waitFor(t, "the incident in the list", `document.querySelectorAll("#incidents tr").length === 1`)
	list := page.text(t, "#incidents")
	for _, want := range []string{first.GetTitle(), first.GetRuleId(), "web-1", "critical"} {
		if !strings.Contains(list, want) {
			t.Errorf("list lacks %q:\n%s", want, list)
		}
	}

	// A new incident appears without reloading the page.
	second := storetest.NewIncident("h-console", "miner-started", vigilv1.Severity_SEVERITY_HIGH)
	second.Title = "Crypto miner started"
	agent.report(t, second)
	page.waitFor(t, "the new incident to appear live",
		`document.querySelectorAll("#incidents tr").length === 2 && document.querySelector("#incidents tr").innerText.includes("Crypto miner started")`)

	// A new revision replaces its row and moves it to the top.
	rev := proto.Clone(first).(*vigilv1.Incident)
	rev.Revision = 2
	rev.Title = "Web shell, then credential access"
	agent.report(t, rev)
	page.waitFor(t, "the revision to replace its row",
		`document.querySelectorAll("#incidents tr").length === 2 && document.querySelector("#incidents tr").innerText.includes("credential access")`)
	if list := page.text(t, "#incidents"); strings.Contains(list, first.GetTitle()) {
		t.Errorf("the old revision's row is still there:\n%s", list)
	}

	// The incident page, reached by its link.
	page.eval(t, `document.querySelector("#incidents tr a").click()`)
	page.waitFor(t, "the incident page", `!!document.querySelector("#timeline") && !!document.querySelector("#tree")`)
	for sel, wants := range map[string][]string{
		"#title":       {rev.GetTitle()},
		"main":         {"h-console", "web-shell", "T1059.004", "87.5 / 100"},
		"#cause":       {rev.GetCause()},
		"#timeline":    {"web-shell", "shadow-file-read", "nginx started bash", "/etc/shadow"},
		"#tree":        {"/usr/lib/systemd/systemd", "/usr/sbin/nginx", "/usr/bin/bash", "<script>window.__pwned=1</script>"},
		"#login":       {"sshd login of alice from 203.0.113.7"},
		"#recommended": {"kill", "pid:4243", "stop the shell"},
		"#actions":     {"freeze", "operator:bob", "dry-run"},
	} {
		got := page.text(t, sel)
		for _, want := range wants {
			if !strings.Contains(got, want) {
				t.Errorf("%s lacks %q:\n%s", sel, want, got)
			}
		}
	}
	// The hostile argument is text: no element came of it, nothing ran.
	if n := page.eval(t, `document.querySelectorAll("script").length + document.querySelectorAll("main img").length`); n != float64(1) {
		t.Errorf("page has %v script and img elements, want only app.js", n)
	}
	if v := page.eval(t, `String(window.__pwned)`); v != "undefined" {
		t.Errorf("the hostile argument ran: window.__pwned = %v", v)
	}
	if dom := page.eval(t, `document.documentElement.outerHTML`).(string); !strings.Contains(dom, "&lt;script&gt;window.__pwned=1&lt;/script&gt;") {
		t.Errorf("DOM does not hold the argument as escaped text")
	}
	t.Logf("browser test took %s", time.Since(start).Round(time.Millisecond))
}

// richIncident is an incident with everything the incident page shows.
func richIncident(hostID string) *vigilv1.Incident {
	inc := storetest.NewIncident(hostID, "web-shell", vigilv1.Severity_SEVERITY_CRITICAL)
	inc.Revision = 1
	inc.Score = 87.5
	inc.Cause = "A login to alice over sshd from 203.0.113.7 started the shell that read /etc/shadow."
	inc.Process.Args = []string{"bash", "-c", hostileArg}
	ts := timestamppb.New(storetest.IncidentTime)
	inc.Signals = []*vigilv1.Signal{
		{Time: ts, Source: "rule", RuleId: "web-shell", Title: inc.GetTitle(), Severity: vigilv1.Severity_SEVERITY_CRITICAL,
			Attack: inc.GetAttack(), Reason: "nginx started bash", Score: 80, Pid: 4243, Exe: "/usr/bin/bash"},
		{Time: ts, Source: "rule", RuleId: "shadow-file-read", Title: "Shadow file read", Severity: vigilv1.Severity_SEVERITY_HIGH,
			Reason: "bash opened /etc/shadow", Score: 70, Pid: 4243, Exe: "/usr/bin/bash", Object: "/etc/shadow"},
	}
	inc.Login = &vigilv1.Login{SessionId: 12, Service: "sshd", User: "alice", RemoteHost: "203.0.113.7", Tty: "ssh", Time: ts, Pid: 4000}
	inc.RecommendedActions = []*vigilv1.RecommendedAction{{Action: "kill", Target: "pid:4243", Reason: "stop the shell"}}
	inc.Actions = []*vigilv1.ActionRecord{{Id: storetest.NewID(), Time: ts, Action: "freeze", Target: "pid:4243",
		Requester: "operator:bob", Reason: "look first", Mode: "recommend", Result: "dry-run", DryRun: true}}
	return inc
}

// fakeAgent is a Connect stream that reports incidents as vigil-agent does.
type fakeAgent struct {
	stream vigilv1.AgentService_ConnectClient
	seq    uint64
}

func connectAgent(t *testing.T, addr, hostID, hostname string) *fakeAgent {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := vigilv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := &vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Hello{Hello: &vigilv1.Hello{HostId: hostID, Hostname: hostname}}}
	if err := stream.Send(hello); err != nil {
		t.Fatal(err)
	}
	return &fakeAgent{stream: stream}
}

// report sends inc and waits for the server's acknowledgement.
func (a *fakeAgent) report(t *testing.T, inc *vigilv1.Incident) {
	t.Helper()
	a.seq++
	msg := &vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Incident{Incident: &vigilv1.IncidentReport{Sequence: a.seq, Incident: inc}}}
	if err := a.stream.Send(msg); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := a.stream.Recv()
		if err != nil {
			t.Fatalf("waiting for the ack of %s: %v", inc.GetId(), err)
		}
		if m.GetAck() != nil {
			return
		}
	}
}

// findChromium returns the path of Chromium, skipping the test when there
// is none, unless CI=true, where a missing browser is a failure.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const hint = "chromium not found: install it with 'scripts/install-deps.sh --test' (or 'apt-get install -y chromium')"
	if os.Getenv("CI") == "true" {
		t.Fatal(hint)
	}
	t.Skip(hint)
	return ""
}

// page is one browser tab, driven over the Chrome DevTools protocol.
type page struct {
	ws *websocket.Conn
	id int
}

// openPage starts headless Chromium and connects to its first tab.
func openPage(t *testing.T, chrome string) *page {
	t.Helper()
	cmd := exec.Command(chrome, "--headless=new", "--no-sandbox", "--disable-gpu",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=*",
		"--user-data-dir="+t.TempDir(), "about:blank")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// Chromium names its DevTools endpoint on stderr.
	found := make(chan string, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`DevTools listening on ws://([^/\s]+)/`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
			log.WriteString(sc.Text() + "\n")
		}
		io.Copy(io.Discard, stderr)
	}()
	var hostPort string
	select {
	case hostPort = <-found:
	case <-time.After(30 * time.Second):
		t.Fatalf("chromium did not start its DevTools endpoint")
	}
	resp, err := http.Get("http://" + hostPort + "/json/list")
	if err != nil {
		t.Fatal(err)
	}
	var targets []struct {
		Type, WebSocketDebuggerURL string
	}
	err = json.NewDecoder(resp.Body).Decode(&targets)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if tg.Type == "page" {
			ws, err := websocket.Dial(tg.WebSocketDebuggerURL, "", "http://127.0.0.1/")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ws.Close() })
			return &page{ws: ws}
		}
	}
	t.Fatalf("chromium has no page target: %+v", targets)
	return nil
}

// call sends one DevTools command and returns its result.
func (p *page) call(t *testing.T, method string, params any) json.RawMessage {
	t.Helper()
	p.id++
	p.ws.SetDeadline(time.Now().Add(30 * time.Second))
	if err := websocket.JSON.Send(p.ws, map[string]any{"id": p.id, "method": method, "params": params}); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	for {
		var m struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := websocket.JSON.Receive(p.ws, &m); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if m.ID != p.id {
			continue // an event, or the answer to an earlier call
		}
		if m.Error != nil {
			t.Fatalf("%s: %s", method, m.Error.Message)
		}
		return m.Result
	}
}

func (p *page) navigate(t *testing.T, url string) {
	t.Helper()
	p.call(t, "Page.navigate", map[string]any{"url": url})
}

// eval evaluates a JavaScript expression in the page and returns its value.
func (p *page) eval(t *testing.T, expr string) any {
	t.Helper()
	raw := p.call(t, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if r.ExceptionDetails != nil {
		t.Fatalf("evaluate %s: %s", expr, r.ExceptionDetails.Text)
	}
	return r.Result.Value
}

// text returns the rendered text of the first element matching sel.
func (p *page) text(t *testing.T, sel string) string {
	t.Helper()
	v, _ := p.eval(t, fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ""`, sel)).(string)
	return v
}

// waitFor polls cond, a JavaScript expression, until it is true.
func (p *page) waitFor(t *testing.T, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for p.eval(t, "!!("+cond+")") != true {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; page shows:\n%s", what, p.text(t, "body"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
