package response

import (
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/proctree"
)

// engine is an engine without mechanisms: every request in these tests is
// refused or simulated before one would be needed.
func engine() *Engine {
	return &Engine{
		Mode:      ModeAuto,
		RuleModes: map[string]Mode{"quiet-rule": ModeRecommend},
		Safety: Safety{
			AgentPID:  uint32(os.Getpid()),
			Protected: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("2001:db8::/64")},
			AllowExes: []string{"/usr/bin/sleep"},
		},
	}
}

func TestSafetyRefusals(t *testing.T) {
	sleep := exec.Command("/usr/bin/sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleep.Process.Kill(); _ = sleep.Wait() }()
	self := strconv.Itoa(os.Getpid())
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"init", Request{Action: ActKill, Target: "pid:1"}, "pid 1 (init) is never acted on"},
		{"the agent", Request{Action: ActFreeze, Target: "pid:" + self}, "pid " + self + " is the agent itself"},
		{"kernel thread", Request{Action: ActKill, Target: "pid:2"}, "pid 2 (kthreadd) is a kernel thread"},
		{"allow-listed exe", Request{Action: ActKill, Target: "pid:" + strconv.Itoa(sleep.Process.Pid)},
			"pid " + strconv.Itoa(sleep.Process.Pid) + " runs /usr/bin/sleep, which is allow-listed"},
		{"server address", Request{Action: ActBlock, Target: "addr:192.0.2.0/24"},
			"192.0.2.0/24 covers 192.0.2.10/32, which the agent never blocks (its server or the allow-list)"},
		{"server v6", Request{Action: ActBlock, Target: "addr:2001:db8::7"},
			"2001:db8::7/128 covers 2001:db8::/64, which the agent never blocks (its server or the allow-list)"},
		{"loopback", Request{Action: ActBlock, Target: "addr:127.0.0.1"}, "127.0.0.1/32 is a loopback address"},
		{"everything", Request{Action: ActBlock, Target: "addr:0.0.0.0/0"}, `"0.0.0.0/0" would block every address; isolate the host instead`},
		{"host bits", Request{Action: ActBlock, Target: "addr:10.0.0.1/8"}, `"10.0.0.1/8" has host bits set; write 10.0.0.0/8`},
		{"not an address", Request{Action: ActBlock, Target: "addr:example.com"}, `"example.com" is not an IP address or prefix`},
		{"wrong target kind", Request{Action: ActKill, Target: "addr:10.0.0.1"}, `kill needs a pid:N target, not "addr:10.0.0.1"`},
		{"unknown action", Request{Action: "nuke", Target: "host"}, `unknown action "nuke"`},
		{"gone", Request{Action: ActKill, Target: "pid:4194000"}, "pid 4194000: no such process"},
		{"rule in recommend mode", Request{Action: ActKill, Target: "pid:1234", Rule: "quiet-rule"},
			"response mode for rule quiet-rule is recommend: an operator approves it (vigil-agent respond approve)"},
		{"relative file", Request{Action: ActRestore, Target: "file:etc/passwd"}, `restore needs a file:/absolute/path target, not "file:etc/passwd"`},
		{"nothing held", Request{Action: ActRelease, Target: "held:nope"}, "held:nope: nothing held by that name"},
	}
	e := engine()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.Do(tt.req)
			if rec.GetResult() != ResultRefused || !strings.HasPrefix(rec.GetDetail(), tt.want) {
				t.Errorf("result %s: %q; want refused: %q", rec.GetResult(), rec.GetDetail(), tt.want)
			}
			if rec.GetId() == "" || rec.GetTime() == nil || rec.GetAction() != tt.req.Action || rec.GetTarget() != tt.req.Target {
				t.Errorf("audit record incomplete: %v", rec)
			}
		})
	}
}

func TestPidReuseIsRefused(t *testing.T) {
	child := exec.Command("/usr/bin/sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	e := engine()
	e.Safety.AllowExes = nil
	pid := strconv.Itoa(child.Process.Pid)
	rec := e.Do(Request{Action: ActKill, Target: "pid:" + pid, StartTime: 1, DryRun: true})
	want := "pid " + pid + " is now another process than the one the incident names (it exited and the pid was reused)"
	if rec.GetResult() != ResultRefused || rec.GetDetail() != want {
		t.Errorf("%s: %q, want refused: %q", rec.GetResult(), rec.GetDetail(), want)
	}
}

func TestDryRunAndModes(t *testing.T) {
	child := exec.Command("/usr/bin/sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	pid := strconv.Itoa(child.Process.Pid)
	e := engine()
	e.Safety.AllowExes = nil
	tests := []struct {
		req          Request
		result, want string
	}{
		{Request{Action: ActKill, Target: "pid:" + pid, DryRun: true}, ResultDryRun, "would kill pid " + pid + " (/usr/bin/sleep) and its descendants"},
		{Request{Action: ActBlock, Target: "addr:203.0.113.7", DryRun: true}, ResultDryRun, "would block 203.0.113.7/32 for 1h0m0s"},
		{Request{Action: ActIsolate, Target: "host", DryRun: true}, ResultDryRun, "would isolate the host, keeping [192.0.2.10/32 2001:db8::/64] reachable"},
		{Request{Action: ActRestore, Target: "file:/etc/passwd", DryRun: true}, ResultFailed, "file snapshots are not available on this agent"},
		// Without the mechanisms, a real request fails with the reason.
		{Request{Action: ActBlock, Target: "addr:203.0.113.7"}, ResultFailed, "network control is not available on this agent"},
	}
	for _, tt := range tests {
		rec := e.Do(tt.req)
		if rec.GetResult() != tt.result || rec.GetDetail() != tt.want || rec.GetDryRun() != tt.req.DryRun || rec.GetMode() != "auto" {
			t.Errorf("%s %s: %s %q (mode %s), want %s %q", tt.req.Action, tt.req.Target, rec.GetResult(), rec.GetDetail(), rec.GetMode(), tt.result, tt.want)
		}
	}
	// Detect mode acts on nothing, but undoing stays possible.
	e.Mode = ModeDetect
	rec := e.Do(Request{Action: ActBlock, Target: "addr:203.0.113.7", Requester: "operator:alice"})
	if rec.GetResult() != ResultRefused || !strings.HasPrefix(rec.GetDetail(), "response mode is detect") {
		t.Errorf("detect mode: %s %q", rec.GetResult(), rec.GetDetail())
	}
	rec = e.Do(Request{Action: ActUnblock, Target: "addr:203.0.113.7", DryRun: true})
	if rec.GetResult() != ResultDryRun {
		t.Errorf("unblock in detect mode: %s %q", rec.GetResult(), rec.GetDetail())
	}
	if _, err := ParseMode("yolo"); err == nil || err.Error() != `response mode "yolo": want detect, recommend or auto` {
		t.Errorf("ParseMode: %v", err)
	}
}

func TestStartSlack(t *testing.T) {
	child := exec.Command("/usr/bin/sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	e := engine()
	e.Safety.AllowExes = nil
	p, err := proctreeRead(uint32(child.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	pid := "pid:" + strconv.Itoa(child.Process.Pid)
	near := e.Do(Request{Action: ActKill, Target: pid, StartTime: p.StartTime + uint64(100*time.Millisecond), StartSlack: 250 * time.Millisecond, DryRun: true})
	far := e.Do(Request{Action: ActKill, Target: pid, StartTime: p.StartTime + uint64(time.Second), StartSlack: 250 * time.Millisecond, DryRun: true})
	if near.GetResult() != ResultDryRun || far.GetResult() != ResultRefused {
		t.Errorf("100 ms off: %s %q; 1 s off: %s %q; want dry-run and refused", near.GetResult(), near.GetDetail(), far.GetResult(), far.GetDetail())
	}
}

func proctreeRead(pid uint32) (proctree.Entry, error) {
	p, err := proctree.ReadProc("/proc", pid)
	if err != nil {
		return proctree.Entry{}, err
	}
	return *p, nil
}

// knownFiles is a snapshot store that knows some paths.
type knownFiles map[string]bool

func (k knownFiles) Restore(path string) (string, error) { return "restored " + path, nil }
func (k knownFiles) Known(path string) bool              { return k[path] }

// TestDryRunRestoreAsksTheSnapshots checks that a dry run of restore says
// it would restore only a file the snapshot store has a version of.
func TestDryRunRestoreAsksTheSnapshots(t *testing.T) {
	e := engine()
	e.Files = knownFiles{"/etc/passwd": true}
	for _, tt := range []struct {
		target, result, want string
	}{
		{"file:/etc/passwd", ResultDryRun, "would restore /etc/passwd to its last known-good version"},
		{"file:/tmp/suid", ResultRefused, "/tmp/suid has no known-good version to restore (no snapshot: not covered by the snapshot patterns, or not snapshotted yet)"},
	} {
		rec := e.Do(Request{Action: ActRestore, Target: tt.target, DryRun: true})
		if rec.GetResult() != tt.result || rec.GetDetail() != tt.want {
			t.Errorf("dry run restore %s: %s %q, want %s %q", tt.target, rec.GetResult(), rec.GetDetail(), tt.result, tt.want)
		}
	}
}
