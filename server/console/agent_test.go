package console_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/feedback"
	"github.com/vigil-sensor/vigil/agent/hostinfo"
	"github.com/vigil-sensor/vigil/agent/incident"
	"github.com/vigil-sensor/vigil/agent/pipeline"
	"github.com/vigil-sensor/vigil/agent/proctree"
	"github.com/vigil-sensor/vigil/agent/response"
	"github.com/vigil-sensor/vigil/agent/response/procctl"
	"github.com/vigil-sensor/vigil/agent/rules"
	"github.com/vigil-sensor/vigil/agent/transport"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/app"
)

// hostAgent is the agent of one host as vigil-agent wires it, without the
// kernel sensors: the real transport to the server, the detection
// pipeline with the default rules and the agent's incident builder, and
// the response engine, which answers the server's action commands. The
// test hands the pipeline the exec event the process sensor would have
// read for a process it started.
type hostAgent struct {
	hostID   string
	client   *transport.Client
	engine   *response.Engine
	feedback string // the agent's feedback file, where benign verdicts go

	mu   sync.Mutex // the pipeline is not safe for concurrent use
	pipe *pipeline.Pipeline
}

// startHostAgent connects an agent for hostID to the server and waits for
// its first heartbeat, which reports lost events per family.
func startHostAgent(t *testing.T, srv *app.Server, hostID, hostname string, lost map[string]uint64) *hostAgent {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	boot, err := hostinfo.BootTime()
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.Load()
	if err != nil {
		t.Fatal(err)
	}
	tree := proctree.New(0)
	if err := tree.SeedFromProc("/proc"); err != nil {
		t.Fatal(err)
	}
	a := &hostAgent{
		hostID: hostID,
		engine: &response.Engine{Mode: response.ModeRecommend, Processes: killOnly{},
			Safety: response.Safety{AgentPID: uint32(os.Getpid())}},
		feedback: filepath.Join(t.TempDir(), feedback.FileName),
	}
	a.client = &transport.Client{
		Addr: srv.Addr(),
		Hello: &vigilv1.Hello{HostId: hostID, Hostname: hostname, KernelRelease: hostinfo.KernelRelease(),
			AgentVersion: "0.0.0-test", Capabilities: []string{"process", "file"}},
		Heartbeat: func() *vigilv1.Heartbeat {
			return &vigilv1.Heartbeat{Time: timestamppb.Now(), EventsTotal: 1234, EventsLost: lost, RssBytes: 20 << 20}
		},
		HeartbeatInterval: 50 * time.Millisecond,
		FeedbackFile:      a.feedback,
		Logger:            log,
		OnAction:          a.onAction,
	}
	a.pipe, err = pipeline.New(pipeline.Options{
		Builder: &incident.Builder{HostID: hostID, Hostname: hostname, BootTime: boot},
		Engine:  rules.NewEngine(set, rules.Options{}),
		Tree:    tree,
		Lookup:  proctree.LookupProc,
		Emit: func(inc *vigilv1.Incident) {
			if err := a.client.Send(inc); err != nil {
				t.Errorf("agent send: %v", err)
			}
		},
		Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.client.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ag, ok := srv.Fleet().Get(hostID); ok && ag.Connections > 0 && ag.LastHeartbeat != nil {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent did not connect")
		}
	}
}

// killOnly gives the engine the agent's own kill (procctl.KillTree);
// freezing needs a cgroup quarantine, which these tests do not set up.
type killOnly struct{}

func (killOnly) KillTree(pid uint32, startTime uint64) ([]int, error) {
	return procctl.KillTree(pid, startTime)
}

func (killOnly) Freeze(uint32, uint64, string) (response.Held, error) {
	return nil, errors.New("freeze is not set up in this test")
}

// onAction carries out a command of the server as the daemon does: through
// the engine, with requester "server:NAME", recording the result on its
// incident (which sends the incident's next revision).
func (a *hostAgent) onAction(cmd *vigilv1.ActionCommand) *vigilv1.ActionRecord {
	rec := a.engine.Do(response.Request{
		Action: cmd.GetAction(), Target: cmd.GetTarget(), IncidentID: cmd.GetIncidentId(),
		Requester: "server:" + cmd.GetRequester(), Reason: cmd.GetReason(), DryRun: cmd.GetDryRun(),
		TTL: time.Duration(cmd.GetTtlSeconds()) * time.Second,
	})
	if cmd.GetIncidentId() != "" {
		a.mu.Lock()
		_ = a.pipe.RecordAction(cmd.GetIncidentId(), rec) // an incident of another agent is not open here
		a.mu.Unlock()
	}
	return rec
}

// sawExec hands the pipeline the exec event of the running process pid,
// read from /proc as the process sensor would have reported it.
func (a *hostAgent) sawExec(t *testing.T, pid int) {
	t.Helper()
	e, err := proctree.ReadProc("/proc", uint32(pid))
	if err != nil {
		t.Fatal(err)
	}
	ev := &event.Exec{
		Time: time.Now(),
		Process: event.Process{PID: e.PID, TID: e.PID, PPID: e.PPID, UID: e.UID, GID: e.GID, EUID: e.UID,
			LoginUID: e.LoginUID, SessionID: e.SessionID, StartTime: e.StartTime, CgroupID: e.CgroupID, Comm: e.Comm},
		Filename: e.Exe, Exe: e.Exe, Cwd: e.Cwd, Args: e.Args,
	}
	a.mu.Lock()
	a.pipe.Handle(ev)
	a.mu.Unlock()
}

// startMiner starts a copy of sleep named xmrig, which the default rule
// crypto-miner flags and asks to kill, and returns it; it is killed when
// the test ends.
func startMiner(t *testing.T) *exec.Cmd {
	t.Helper()
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "xmrig")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "600")
	// A fork elsewhere in the process may still hold the file open for
	// writing for a moment (ETXTBSY).
	for try := 0; ; try++ {
		err = cmd.Start()
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.ETXTBSY) || try == 50 {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		cmd = exec.Command(path, "600")
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}
