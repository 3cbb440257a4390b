// Package daemon wires the agent together: kernel checks, the process
// sensor, the process tree, detection, incident building and transport.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/detect"
	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/hostinfo"
	"github.com/vigil-sensor/vigil/agent/incident"
	"github.com/vigil-sensor/vigil/agent/kernelfs"
	"github.com/vigil-sensor/vigil/agent/proctree"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/agent/transport"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// Version is the agent's version, reported to the server.
var Version = "0.1.0-dev"

// Config configures the agent.
type Config struct {
	// ServerAddr is the Vigil server's gRPC address.
	ServerAddr string
	// RingSize is the process ring buffer size in bytes (0: default).
	RingSize uint32
	// StateDir keeps the agent's state (a host id when the host has no machine id).
	StateDir string
	// HeartbeatInterval is how often the agent reports its health (0: 10 s).
	HeartbeatInterval time.Duration
	// Logger receives the agent's log.
	Logger *slog.Logger
}

// stats counts what the agent has seen.
type stats struct {
	events    atomic.Uint64
	incidents atomic.Uint64
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

	hostID, err := hostinfo.HostID(cfg.StateDir)
	if err != nil {
		return err
	}
	hostname, _ := os.Hostname()
	bootTime, err := hostinfo.BootTime()
	if err != nil {
		return err
	}

	// Attach first, then read /proc: a process is either in /proc or in the events.
	proc, err := sensor.LoadProcess(sensor.Options{RingSize: cfg.RingSize})
	if err != nil {
		return err
	}
	defer proc.Close()
	tree := proctree.New(0)
	if err := tree.SeedFromProc("/proc"); err != nil {
		return fmt.Errorf("seed process tree: %w", err)
	}
	log.Info("process sensor attached", "hooks", sensor.Hooks, "processes", tree.Len())

	users := &hostinfo.Users{}
	st := &stats{}
	client := &transport.Client{
		Addr: cfg.ServerAddr,
		Hello: &vigilv1.Hello{
			HostId:        hostID,
			Hostname:      hostname,
			KernelRelease: hostinfo.KernelRelease(),
			AgentVersion:  Version,
			Capabilities:  []string{"process"},
		},
		HeartbeatInterval: cfg.HeartbeatInterval,
		Logger:            log,
	}
	client.Heartbeat = func() *vigilv1.Heartbeat {
		lost, _ := proc.Lost()
		return &vigilv1.Heartbeat{
			Time:             timestamppb.Now(),
			EventsTotal:      st.events.Load(),
			EventsLost:       map[string]uint64{"process": lost},
			RssBytes:         residentBytes(),
			PendingIncidents: uint64(client.Stats().Pending),
		}
	}
	p := &pipeline{
		log:     log,
		tree:    tree,
		engine:  detect.NewEngine(detect.Builtin(), detect.ProcProbe{Root: "/proc"}),
		builder: &incident.Builder{HostID: hostID, Hostname: hostname, BootTime: bootTime, UserName: users.Name},
		send:    client.Send,
		stats:   st,
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clientDone := make(chan error, 1)
	go func() { clientDone <- client.Run(ctx) }()
	log.Info("vigil-agent running", "version", Version, "host_id", hostID, "hostname", hostname,
		"server", cfg.ServerAddr, "rules", len(p.engine.Rules()))
	dec := &sensor.Decoder{BootTime: bootTime}
	lastHousekeeping, lastLost := time.Now(), uint64(0)
	for ctx.Err() == nil {
		// Wake up at least once a second to notice shutdown and keep house.
		proc.SetDeadline(time.Now().Add(time.Second))
		raw, err := proc.ReadRaw()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
		case err != nil:
			return err
		default:
			if ev, err := dec.Decode(raw); err != nil {
				log.Warn("undecodable event", "error", err)
			} else {
				st.events.Add(1)
				p.handle(ev)
			}
		}
		if time.Since(lastHousekeeping) > 10*time.Second {
			lastHousekeeping = time.Now()
			tree.Prune()
			if lost, err := proc.Lost(); err == nil && lost != lastLost {
				log.Warn("kernel events lost: ring buffer full", "family", "process", "lost_total", lost)
				lastLost = lost
			}
		}
	}
	cancel()
	<-clientDone
	lost, _ := proc.Lost()
	log.Info("vigil-agent stopped", "events", st.events.Load(), "lost", lost, "incidents", st.incidents.Load(),
		"unsent_incidents", client.Stats().Pending)
	return nil
}

// pipeline is the per-event path: process tree, then detection, then incidents.
type pipeline struct {
	log     *slog.Logger
	tree    *proctree.Tree
	engine  *detect.Engine
	builder *incident.Builder
	send    func(*vigilv1.Incident) error
	stats   *stats
}

func (p *pipeline) handle(ev any) {
	switch e := ev.(type) {
	case *event.Fork:
		p.tree.Fork(e)
	case *event.Exit:
		p.tree.Exit(e)
	case *event.Exec:
		entry := p.tree.Exec(e)
		var parent *proctree.Entry
		if pe, ok := p.tree.Get(e.Process.PPID); ok {
			parent = &pe
		}
		for _, m := range p.engine.Evaluate(e, parent) {
			inc, err := p.builder.Build(m, e, entry, p.tree.Ancestors(entry.PID))
			if err != nil {
				p.log.Error("build incident", "rule", m.Rule.ID, "error", err)
				continue
			}
			p.stats.incidents.Add(1)
			p.log.Info("incident", "id", inc.Id, "rule", m.Rule.ID, "technique", m.Rule.Attack.TechniqueId,
				"pid", entry.PID, "exe", entry.Exe, "reason", m.Reason)
			if err := p.send(inc); err != nil {
				p.log.Error("incident not queued for the server", "id", inc.Id, "error", err)
			}
		}
	}
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
