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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/hostinfo"
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

// TestBrowserRespond runs a server with tokens and reads its console in
// headless Chromium: the page asks for a token, a viewer's token shows the
// list, where an incident the host's agent raises for a process the test
// started (a copy of sleep named xmrig, which the default rules flag)
// appears live; on its page a viewer's dry run is refused; with a
// responder's token the dry run answers what the agent would do, a real
// kill (confirmed by a second click) kills the process, both are stored
// (ListActions) and reach the incident's audit trail, and the incident is
// labelled benign, stored, and its verdict reaches the agent. Last, the
// fleet page shows the agent's health and losses.
func TestBrowserRespond(t *testing.T) {
	chrome := findChromium(t)
	start := time.Now()
	srv := startServer(t, true)
	base := "http://" + srv.ConsoleAddr() + "/"
	const hostID = "0f4d3c2b1a0948e7b6c5d4e3f2a1b0c9"
	hostname := "web-1" + hostileArg // a host name is the host's to choose, too
	agent := startHostAgent(t, srv, hostID, hostname, map[string]uint64{"process": 0, "file": 7})
	miner := startMiner(t)
	pid := strconv.Itoa(miner.Process.Pid)
	exited := make(chan error, 1)
	go func() { exited <- miner.Wait() }()

	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+responderToken)
	storedActions := func() []*vigilv1.StoredAction {
		t.Helper()
		list, err := vigilv1.NewResponseServiceClient(conn).ListActions(ctx, &vigilv1.ListActionsRequest{HostId: hostID})
		if err != nil {
			t.Fatal(err)
		}
		return list.GetActions()
	}

	// Without a token the page asks for one.
	page := openPage(t, chrome)
	page.navigate(t, base)
	page.waitFor(t, "the page to ask for a token", `!!document.querySelector("#need-token")`)
	page.screenshot(t, "token")
	if who := page.text(t, "#whoami"); who != "token needed" {
		t.Errorf("whoami %q, want token needed", who)
	}
	useToken := func(token, who string) {
		t.Helper()
		page.eval(t, fmt.Sprintf(`document.querySelector("#token").value = %q; document.querySelector("#token-use").click()`, token))
		page.waitFor(t, "the console to take the token", fmt.Sprintf(`document.querySelector("#whoami").innerText === %q`, who))
	}
	useToken(viewerToken, "vera (viewer)")
	page.waitFor(t, "the empty list", `!!document.querySelector("#incidents") && !document.querySelector("#empty").hidden`)
	if v := page.eval(t, `sessionStorage.getItem("vigil.token") + " " + localStorage.length`); v != viewerToken+" 0" {
		t.Errorf("token kept as %v, want in sessionStorage only", v)
	}

	// The agent sees the miner start; its incident appears live.
	agent.sawExec(t, miner.Process.Pid)
	page.waitFor(t, "the miner's incident to appear live",
		`document.querySelectorAll("#incidents tr").length === 1 && document.querySelector("#incidents tr").innerText.includes("Crypto-currency miner executed")`)
	stored, err := srv.Store().List(context.Background(), nil, 0, 10)
	if err != nil || len(stored) != 1 {
		t.Fatalf("stored incidents %v %v, want the miner's", stored, err)
	}
	inc := stored[0]
	page.eval(t, `document.querySelector("#incidents tr a").click()`)
	page.waitFor(t, "the incident page", `!!document.querySelector("#recommended") && !!document.querySelector("#triage-form")`)
	for sel, wants := range map[string][]string{
		"#title":       {"Crypto-currency miner executed"},
		"#tree":        {pid + " ", miner.Path + " 600"},
		"#timeline":    {"crypto-miner"},
		"#recommended": {"kill pid:" + pid, "Rule crypto-miner asks to kill", "freeze pid:" + pid, "Dry run", "Run kill"},
		"main":         {hostID, "web-1<script>window.__pwned=1</script>"},
	} {
		got := page.text(t, sel)
		for _, want := range wants {
			if !strings.Contains(got, want) {
				t.Errorf("%s lacks %q:\n%s", sel, want, got)
			}
		}
	}
	killButton := func(class string) string {
		return fmt.Sprintf(`[...document.querySelectorAll("#recommended li")].find((li) => li.innerText.includes("kill pid:%s")).querySelector("button.%s")`, pid, class)
	}

	// A viewer may not run it: the page says why, and nothing is stored.
	page.eval(t, killButton("dry-run")+".click()")
	page.waitFor(t, "the viewer's refusal", `!!document.querySelector("#action-results .result-error")`)
	if got, want := page.text(t, "#action-results"), "vera (role viewer) may not call /vigil.v1.ResponseService/RequestAction: it needs role responder"; !strings.Contains(got, want) {
		t.Errorf("action results %q, want %q", got, want)
	}
	if acts := storedActions(); len(acts) != 0 {
		t.Errorf("a viewer's request stored %v", acts)
	}

	// A responder's dry run: what the agent would do, and the process lives.
	page.eval(t, `document.querySelector("#recommended").dataset.stale = "1"`)
	useToken(responderToken, "rory (responder)")
	page.waitFor(t, "the incident page again", `!!document.querySelector("#recommended") && !document.querySelector("#recommended").dataset.stale`)
	page.eval(t, killButton("dry-run")+".click()")
	page.waitFor(t, "the dry run's record", `!!document.querySelector("#action-results .result-dry-run")`)
	shown := page.text(t, "#action-results")
	for _, want := range []string{"kill pid:" + pid + ": dry-run (dry run)", "would kill pid " + pid + " (" + miner.Path + ") and its descendants", "requester server:rory", "mode recommend"} {
		if !strings.Contains(shown, want) {
			t.Errorf("action results lack %q:\n%s", want, shown)
		}
	}
	acts := storedActions()
	if len(acts) != 1 || acts[0].GetRecord().GetResult() != "dry-run" || acts[0].GetRecord().GetIncidentId() != inc.GetId() ||
		!strings.Contains(shown, "record "+acts[0].GetRecord().GetId()) {
		t.Fatalf("stored actions %v, want the dry run shown", acts)
	}
	if err := miner.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the miner is gone after a dry run: %v", err)
	}

	// A real kill takes a second click.
	page.eval(t, killButton("run")+".click()")
	if got := page.eval(t, killButton("run")+".innerText"); got != "Confirm: kill pid:"+pid {
		t.Errorf("after one click the button says %q", got)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(storedActions()); n != 1 {
		t.Errorf("one click ran the action: %d stored", n)
	}
	page.eval(t, killButton("run")+".click()")
	page.waitFor(t, "the kill's record", `!!document.querySelector("#action-results .result-done")`)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the miner still runs after the kill")
	}
	if got, want := page.text(t, "#action-results .result-done"), "killed pid "+pid+" ("+miner.Path+") and its descendants: pids ["+pid+"]"; !strings.Contains(got, want) {
		t.Errorf("kill record %q, want %q", got, want)
	}
	if acts := storedActions(); len(acts) != 2 || acts[0].GetRecord().GetResult() != "done" || acts[0].GetRecord().GetRequester() != "server:rory" || acts[0].GetRecord().GetDryRun() {
		t.Errorf("stored actions %v, want the kill on top", acts)
	}
	// The agent records both on the incident, whose new revision shows
	// them in the audit trail; the server's list shows them too.
	page.waitFor(t, "the agent's audit trail", `!!document.querySelector("#actions") && document.querySelector("#actions").innerText.includes("killed pid")`)
	for _, sel := range []string{"#actions", "#server-actions"} {
		if got := page.text(t, sel); !strings.Contains(got, "dry-run (dry run)") || !strings.Contains(got, "done") || !strings.Contains(got, "server:rory") {
			t.Errorf("%s lacks the dry run and the kill:\n%s", sel, got)
		}
	}

	page.screenshot(t, "incident")

	// Label it benign, with a note.
	page.eval(t, `document.querySelector("#triage-form select[name=label]").value = "LABEL_BENIGN";
		document.querySelector("#triage-form textarea[name=note]").value = "our own test miner";
		document.querySelector("#triage-form button[type=submit]").click()`)
	page.waitFor(t, "the label on the page", `document.querySelector("#triage").innerText.includes("benign by rory")`)
	if got := page.text(t, "#notes"); !strings.Contains(got, "rory: our own test miner") {
		t.Errorf("notes %q", got)
	}
	got, err := vigilv1.NewIncidentServiceClient(conn).GetIncident(ctx, &vigilv1.GetIncidentRequest{Id: inc.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if tr := got.GetTriage(); tr.GetLabel() != vigilv1.Label_LABEL_BENIGN || tr.GetLabelAuthor() != "rory" || len(tr.GetNotes()) != 1 || tr.GetNotes()[0].GetText() != "our own test miner" {
		t.Errorf("stored triage %v, want benign by rory with the note", tr)
	}
	// The verdict reaches the agent as suppressions in its feedback file.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if b, _ := os.ReadFile(agent.feedback); strings.Contains(string(b), "crypto-miner") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the benign verdict did not reach the agent's feedback file")
		}
	}

	// The fleet page: the agent, its health and its losses.
	page.eval(t, `document.querySelector("#nav-fleet").click()`)
	page.waitFor(t, "the fleet page", `document.querySelectorAll("#fleet tr").length === 1`)
	page.screenshot(t, "fleet")
	fleet := page.text(t, "#fleet")
	for _, want := range []string{hostname, hostID, "0.0.0-test", hostinfo.KernelRelease(), "connected since", "losing events",
		"7 events lost in the last 5 minutes (file 7)", "file: 7", "process: 0", "1234", "20.0 MiB"} {
		if !strings.Contains(fleet, want) {
			t.Errorf("fleet page lacks %q:\n%s", want, fleet)
		}
	}
	// The hostile host name is text everywhere: nothing ran.
	if n := page.eval(t, `document.querySelectorAll("script").length + document.querySelectorAll("main img").length`); n != float64(1) {
		t.Errorf("page has %v script and img elements, want only app.js", n)
	}
	if v := page.eval(t, `String(window.__pwned)`); v != "undefined" {
		t.Errorf("the hostile host name ran: window.__pwned = %v", v)
	}
	t.Logf("browser respond test took %s", time.Since(start).Round(time.Millisecond))
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
	profile, err := os.MkdirTemp("", "vigil-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(chrome, "--headless=new", "--no-sandbox", "--disable-gpu",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--remote-allow-origins=*",
		"--user-data-dir="+profile, "about:blank")
	// Chromium's helper processes share its process group, so that they
	// all end together and stop writing to the profile before it goes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		// A helper that left the group may write for a moment longer.
		for try := 0; ; try++ {
			err := os.RemoveAll(profile)
			if err == nil || try == 50 {
				if err != nil {
					t.Errorf("remove the chromium profile: %v", err)
				}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
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

// screenshot saves the page as NAME.png in $VIGIL_CONSOLE_SCREENSHOTS,
// when it is set, to look at what the test saw.
func (p *page) screenshot(t *testing.T, name string) {
	t.Helper()
	dir := os.Getenv("VIGIL_CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	p.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1400, "height": 2000, "deviceScaleFactor": 1, "mobile": false})
	var r struct {
		Data []byte `json:"data"`
	}
	if err := json.Unmarshal(p.call(t, "Page.captureScreenshot", map[string]any{"format": "png"}), &r); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), r.Data, 0o644); err != nil {
		t.Fatal(err)
	}
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
