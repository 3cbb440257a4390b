// Package daemon wires the agent together: kernel checks, the process
// sensor, the process tree, detection, incident building and transport.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/config"
	"github.com/vigil-sensor/vigil/agent/control"
	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/feedback"
	"github.com/vigil-sensor/vigil/agent/hostinfo"
	"github.com/vigil-sensor/vigil/agent/incident"
	"github.com/vigil-sensor/vigil/agent/kernelfs"
	"github.com/vigil-sensor/vigil/agent/proctree"
	"github.com/vigil-sensor/vigil/agent/rules"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/agent/sensor/process"
	"github.com/vigil-sensor/vigil/agent/transport"
	"github.com/vigil-sensor/vigil/internal/version"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// Version is the agent's version, reported to the server (see package
// version, which vigil-server and vigilctl print too).
var Version = version.Version

// Config configures the agent.
type Config struct {
	// Agent is the validated configuration file's content.
	Agent *config.Config
	// HeartbeatInterval is how often the agent reports its health (0: 10 s).
	HeartbeatInterval time.Duration
	// Logger receives the agent's log.
	Logger *slog.Logger
	// Record names a file that receives every event as a JSON line, for
	// vigil-agent replay ("": no recording).
	Record string
	// MetricsListen is the address of the Prometheus /metrics endpoint,
	// host:port ("": none).
	MetricsListen string
}

// stats counts what the agent has seen.
type stats struct {
	events    atomic.Uint64
	incidents atomic.Uint64
	// families counts events per family (see familyCounts).
	families familyCounts
	// responses counts response records by result.
	responses resultCounts
}

// Run runs the agent until ctx ends, then detaches everything and returns.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := kernelfs.Preflight(); err != nil {
		return err
	}
	mounted, err := kernelfs.EnsureMounted(kernelfs.Needed)
	if err != nil {
		return err
	}
	for _, m := range mounted {
		log.Info("mounted kernel file system", "path", m)
	}

	hostID, err := hostinfo.HostID(cfg.Agent.StateDir)
	if err != nil {
		return err
	}
	unlock, err := lockStateDir(cfg.Agent.StateDir)
	if err != nil {
		return err
	}
	defer unlock()
	hostname, _ := os.Hostname()
	bootTime, err := hostinfo.BootTime()
	if err != nil {
		return err
	}

	// Attach first, then read /proc: a process is either in /proc or in the events.
	sensors, err := loadSensors(cfg.Agent, bootTime, func(f family, err error) {
		log.Warn("sensor unavailable, running without it", "family", f.name, "error", err)
	})
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range sensors {
			s.Close()
		}
	}()
	tree := proctree.New(0)
	if err := tree.SeedFromProc("/proc"); err != nil {
		return fmt.Errorf("seed process tree: %w", err)
	}
	for _, s := range sensors {
		log.Info("sensor attached", "family", s.Name(), "hooks", len(s.Hooks()))
		if g, ok := s.(sensor.Gapped); ok && len(g.Missing()) > 0 {
			log.Warn("not on this kernel, so not watched", "family", s.Name(), "missing", g.Missing())
		}
	}
	log.Info("process tree seeded from /proc", "processes", tree.Len())
	// Loading parsed the kernel's BTF and verified many programs: give that
	// memory back now rather than carry it or collect it mid-storm.
	runtime.GC()
	debug.FreeOSMemory()

	users := &hostinfo.Users{}
	st := &stats{families: familyCounts{}}
	for _, s := range sensors {
		st.families[s.Name()] = &atomic.Uint64{}
	}
	tlsConf, err := cfg.Agent.TLS.Config()
	if err != nil {
		return fmt.Errorf("server connection: %w", err)
	}
	client := &transport.Client{
		Addr: cfg.Agent.Server,
		TLS:  tlsConf,
		Hello: &vigilv1.Hello{
			HostId:        hostID,
			Hostname:      hostname,
			KernelRelease: hostinfo.KernelRelease(),
			AgentVersion:  Version,
			Capabilities:  names(sensors),
		},
		HeartbeatInterval: cfg.HeartbeatInterval,
		Logger:            log,
		OutboxDir:         filepath.Join(cfg.Agent.StateDir, "outbox"),
		// Verdicts from the server go where `vigil-agent label` writes;
		// detection rereads the file within feedbackPoll.
		FeedbackFile: filepath.Join(cfg.Agent.StateDir, feedback.FileName),
	}
	restored, err := client.Restore()
	if err != nil {
		log.Error("outbox", "error", err)
	}
	if restored > 0 {
		log.Info("incidents from an earlier run queued for the server", "count", restored)
	}
	client.Heartbeat = func() *vigilv1.Heartbeat {
		return &vigilv1.Heartbeat{
			Time:             timestamppb.Now(),
			EventsTotal:      st.events.Load(),
			EventsLost:       lostPerFamily(sensors),
			RssBytes:         residentBytes(),
			PendingIncidents: uint64(client.Stats().Pending),
		}
	}
	allow, err := allowList(cfg.Agent.Allow)
	if err != nil {
		return err
	}
	resp, err := newResponder(cfg.Agent, allow, log)
	if err != nil {
		return err
	}
	defer resp.close()
	// Commands from the server go through the same engine as operators'.
	client.OnAction = resp.onAction
	resp.attachNetwork(cfg.Agent)
	resp.attachProcesses(cfg.Agent.StateDir)
	resp.attachFiles(cfg.Agent.StateDir)
	det, err := newDetection(cfg, log, tree, &incident.Builder{
		HostID: hostID, Hostname: hostname, BootTime: bootTime, UserName: users.Name,
		Listening: rules.ProcProbe{Root: "/proc"}.Listening, Restorable: resp.restorable,
	}, client.Send, st, resp.onResponse)
	if err != nil {
		return err
	}
	// The server's rule sets go into the rules' middle layer.
	client.OnRuleSet = det.applyServerSet
	client.Policy = det.policy
	p := &intake{log: log, stats: st, det: det}
	defer p.close()
	// Rules whose response is kill, in auto mode, and that name only
	// programs are enforced in the kernel at exec.
	var procSensor *process.Sensor
	for _, s := range sensors {
		if ps, ok := s.(*process.Sensor); ok {
			procSensor = ps
		}
	}
	applyKillList := func(set *rules.Set) {
		names, exes := resp.killList(set)
		if procSensor == nil {
			return
		}
		if err := procSensor.SetKillList(exes, names); err != nil {
			log.Error("kernel kill list not applied", "error", err)
			return
		}
		if len(names)+len(exes) > 0 {
			log.Info("killing at exec", "names", names, "executables", exes)
		}
	}
	applyKillList(det.engine.Set())
	det.onRules = applyKillList
	resp.record = func(id string, rec *vigilv1.ActionRecord) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed {
			return
		}
		if err := det.pipe.RecordAction(id, rec); err != nil {
			log.Warn("response not recorded on its incident", "incident", id, "error", err)
		}
	}

	resp.results = &st.responses
	stopMetrics, _, err := startMetrics(cfg.MetricsListen, &agentMetrics{
		stats: st, lost: func() map[string]uint64 { return lostPerFamily(sensors) }, evalErrors: det.engine.EvalErrors,
		pending: func() uint64 { return uint64(client.Stats().Pending) }, rss: residentBytes,
	}, log)
	if err != nil {
		return err
	}
	defer stopMetrics()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clientDone := make(chan error, 1)
	go func() { clientDone <- client.Run(ctx) }()

	// One reader per family, each handing its events straight to the
	// pipeline, which takes them one at a time.
	readErrs := make(chan error, len(sensors))
	for _, s := range sensors {
		n := st.families[s.Name()]
		go func() { readErrs <- readLoop(ctx, s, func(ev any) { n.Add(1); p.handleLocked(ev) }, log) }()
	}
	go det.watch(ctx, &p.mu)
	go resp.run(ctx)
	go func() {
		if err := control.Serve(ctx, cfg.Agent.StateDir, resp.handle, log); err != nil {
			log.Error("control socket unavailable: vigil-agent respond cannot reach this agent", "error", err)
		}
	}()
	log.Info("vigil-agent running", "version", Version, "host_id", hostID, "hostname", hostname,
		"server", cfg.Agent.Server, "rules", len(det.engine.Rules()), "anomaly", cfg.Agent.Detection.Anomaly,
		"learning", det.pipe.Learning())

	housekeeping := time.NewTicker(10 * time.Second)
	defer housekeeping.Stop()
	lastLost := map[string]uint64{}
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-readErrs:
			runErr = err
			break loop
		case <-housekeeping.C:
			p.mu.Lock()
			det.pipe.Tick(time.Now())
			p.mu.Unlock()
			for family, lost := range lostPerFamily(sensors) {
				if lost != lastLost[family] {
					log.Warn("kernel events lost: ring buffer full", "family", family, "lost_total", lost)
					lastLost[family] = lost
				}
			}
		}
	}
	// The readers stop taking events once detection is closed: close it
	// while the client still runs, so final revisions have a chance to go.
	p.close()
	cancel()
	<-clientDone
	log.Info("vigil-agent stopped", "events", st.events.Load(), "lost", lostPerFamily(sensors), "incidents", st.incidents.Load())
	if n := client.Stats().Pending; n > 0 {
		log.Warn("incidents not yet acknowledged by the server stay in the outbox and are sent at the next start",
			"count", n, "outbox", client.OutboxDir)
	}
	return runErr
}

// readLoop reads one sensor's events and passes each to handle until ctx
// ends; it returns an error only when the sensor fails.
func readLoop(ctx context.Context, s sensor.Sensor, handle func(any), log *slog.Logger) error {
	for ctx.Err() == nil {
		// Wake up at least once a second to notice shutdown; between those,
		// records are read without looking at the clock.
		s.SetDeadline(time.Now().Add(time.Second))
		for {
			ev, err := s.Next()
			if err == nil {
				handle(ev)
				continue
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if errors.Is(err, sensor.ErrShortRecord) || errors.Is(err, sensor.ErrUnknownType) {
				log.Warn("undecodable event", "family", s.Name(), "error", err)
				continue
			}
			return fmt.Errorf("read %s events: %w", s.Name(), err)
		}
	}
	return nil
}

// lostPerFamily reads every sensor's loss counter.
func lostPerFamily(sensors []sensor.Sensor) map[string]uint64 {
	out := make(map[string]uint64, len(sensors))
	for _, s := range sensors {
		if n, err := s.Lost(); err == nil {
			out[s.Name()] = n
		}
	}
	return out
}

// intake is where the family readers hand over events, one at a time:
// counted, optionally recorded for replay, then given to detection.
type intake struct {
	log    *slog.Logger
	stats  *stats
	det    *detection
	closed bool

	// mu makes the intake take one event at a time from every family's reader.
	mu sync.Mutex
}

// close closes detection once; events that arrive later are dropped.
func (p *intake) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.det.close()
		p.closed = true
	}
}

// processWait bounds how long an event of another family waits for the
// process family to report the fork and exec of its process, measured from
// the event's own time: the process ring wakes its reader at least every
// sensor.WakeupInterval, and the families are read concurrently.
const processWait = 4 * sensor.WakeupInterval

// awaitProcess holds an event of the file, login or network family until
// the process tree knows its process, or processWait after the event. An
// event read from a backlog is older than that and does not wait.
func (p *intake) awaitProcess(ev any) {
	switch ev.(type) {
	case *event.Fork, *event.Exec, *event.Exit:
		return
	}
	hdr, at, ok := event.Header(ev)
	if !ok {
		return
	}
	deadline := at.Add(processWait)
	for {
		p.mu.Lock()
		known := p.closed || p.det.pipe.Knows(hdr)
		p.mu.Unlock()
		if known || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// handleLocked counts and handles one event; the family readers call it.
func (p *intake) handleLocked(ev any) {
	p.awaitProcess(ev)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.stats.events.Add(1)
	if p.det.recorder != nil {
		if err := p.det.recorder.Write(ev); err != nil {
			p.log.Error("recording stopped", "error", err)
			p.det.recorder = nil
		}
	}
	if l, ok := ev.(*event.Login); ok {
		p.log.Info("login", "op", l.Op.String(), "result", l.Result.String(), "service", l.Service, "user", l.User,
			"remote_host", l.RemoteHost, "remote_user", l.RemoteUser, "tty", l.TTY, "pid", l.Process.PID)
	}
	p.det.pipe.Handle(ev)
}

// allowList turns the configured allow-list into the engine's, resolving
// cgroup directories to their ids.
func allowList(a config.Allow) (rules.Allow, error) {
	out := rules.Allow{PIDs: a.PIDs, Exes: a.Exes}
	for _, dir := range a.Cgroups {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return out, fmt.Errorf("allow.cgroups: %s: %w", dir, err)
		}
		out.CgroupIDs = append(out.CgroupIDs, st.Ino)
	}
	return out, nil
}

// lockStateDir makes sure one agent at a time uses a state directory (and
// so, normally, the host): a second one would report everything twice.
func lockStateDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	p := filepath.Join(dir, "agent.lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(p)
		f.Close()
		return nil, fmt.Errorf("another vigil-agent (pid %s) is running with state dir %s", strings.TrimSpace(string(owner)), dir)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

// residentBytes returns the agent's resident memory from /proc/self/statm.
func residentBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
