package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-sensor/vigil/agent/config"
	"github.com/vigil-sensor/vigil/agent/control"
	"github.com/vigil-sensor/vigil/agent/correlate"
	"github.com/vigil-sensor/vigil/agent/hostinfo"
	"github.com/vigil-sensor/vigil/agent/response"
	"github.com/vigil-sensor/vigil/agent/response/netguard"
	"github.com/vigil-sensor/vigil/agent/response/procctl"
	"github.com/vigil-sensor/vigil/agent/response/snapshot"
	"github.com/vigil-sensor/vigil/agent/rules"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// AuditName is the audit log's name in the state directory: one JSON line
// per action record, whether or not it belongs to an incident.
const AuditName = "audit.jsonl"

// responder runs the response engine off the event path: rules' responses
// queue here, operators' requests arrive on the control socket, and every
// record goes to the audit log and to its incident.
type responder struct {
	log    *slog.Logger
	engine *response.Engine
	queue  chan queued
	// record attaches a record to its incident (taking the pipeline's lock).
	record func(incidentID string, rec *vigilv1.ActionRecord)
	// results counts records by result, for the metrics (nil: not counted).
	results *resultCounts

	auditMu sync.Mutex
	audit   *os.File

	guard     *netguard.Guard
	snapshots *snapshot.Store
}

// newResponder builds the engine from the configuration. The mechanisms
// are attached by the caller as they load.
func newResponder(a *config.Config, allow rules.Allow, log *slog.Logger) (*responder, error) {
	mode, err := response.ParseMode(a.Response.Mode)
	if err != nil {
		return nil, err
	}
	e := &response.Engine{
		Mode:      mode,
		BlockTTL:  a.Response.BlockTTL,
		RuleModes: map[string]response.Mode{},
		Safety: response.Safety{
			AgentPID:     uint32(os.Getpid()),
			AllowPIDs:    allow.PIDs,
			AllowExes:    allow.Exes,
			AllowCgroups: allow.CgroupIDs,
		},
	}
	for _, u := range a.Allow.Users {
		uid, err := hostinfo.UID(u)
		if err != nil {
			return nil, fmt.Errorf("allow.users: %w", err)
		}
		e.Safety.AllowUIDs = append(e.Safety.AllowUIDs, uid)
	}
	for id, m := range a.Response.Rules {
		e.RuleModes[id], _ = response.ParseMode(m)
	}
	for _, s := range a.Response.AllowAddresses {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("response.allow_addresses: %q: %w", s, err)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		e.Safety.Protected = append(e.Safety.Protected, p.Masked())
	}
	e.Safety.Protected = append(e.Safety.Protected, serverPrefixes(a.Server, log)...)
	f, err := os.OpenFile(filepath.Join(a.StateDir, AuditName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return &responder{log: log, engine: e, queue: make(chan queued, 256), audit: f}, nil
}

// serverPrefixes resolves the server's address: the agent never blocks it
// and keeps it reachable when the host is isolated.
func serverPrefixes(server string, log *slog.Logger) []netip.Prefix {
	host, _, err := net.SplitHostPort(server)
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Prefix{netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())}
	}
	addrs, err := net.LookupIP(host)
	if err != nil {
		log.Warn("server address not resolved: responses cannot protect it", "server", server, "error", err)
		return nil
	}
	for _, ip := range addrs {
		if a, ok := netip.AddrFromSlice(ip); ok {
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// queued is a request waiting for the engine; done, when set, says the
// kernel already carried it out (a kill at exec): it is only recorded.
type queued struct {
	req  response.Request
	done string
}

// onResponse turns a rule's response on a new signal into a request, for
// the engine to carry out or refuse by mode. It runs under the pipeline's
// lock, so it only queues.
func (r *responder) onResponse(sig correlate.Signal, incidentID string) {
	// In detect and recommend modes the incident's recommended actions
	// already carry the response; an operator approves it.
	if r.engine.ModeFor(sig.RuleID) != response.ModeAuto && !sig.KilledAtExec {
		return
	}
	req := response.Request{
		IncidentID: incidentID, Rule: sig.RuleID, Requester: "rule:" + sig.RuleID,
		Reason: sig.Title + ": " + sig.Reason,
	}
	switch rules.Response(sig.Response) {
	case rules.ResponseKill, rules.ResponseFreeze, rules.ResponseQuarantine:
		if sig.Process == nil {
			return
		}
		req.Action = map[rules.Response]string{rules.ResponseKill: response.ActKill, rules.ResponseFreeze: response.ActFreeze,
			rules.ResponseQuarantine: response.ActQuarantine}[rules.Response(sig.Response)]
		req.Target, req.StartTime = "pid:"+strconv.FormatUint(uint64(sig.Process.PID), 10), sig.Process.StartTime
	case rules.ResponseBlockSource:
		addr := sig.RemoteHost
		if addr == "" {
			addr = sig.RemoteAddr
		}
		if addr == "" && sig.Login != nil {
			addr = sig.Login.GetRemoteHost()
		}
		if addr == "" {
			return
		}
		req.Action, req.Target = response.ActBlock, "addr:"+addr
	case rules.ResponseIsolate:
		req.Action, req.Target = response.ActIsolate, "host"
	case rules.ResponseRestore:
		if sig.File == "" {
			return
		}
		req.Action, req.Target = response.ActRestore, "file:"+sig.File
	default:
		return
	}
	q := queued{req: req}
	if sig.KilledAtExec && req.Action == response.ActKill {
		q.done = "killed by the kernel as it executed, before its first instruction"
	}
	select {
	case r.queue <- q:
	default:
		r.log.Error("response queue full: response dropped", "rule", sig.RuleID, "action", req.Action, "target", req.Target)
	}
}

// run carries out queued requests until ctx ends.
func (r *responder) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case q := <-r.queue:
			if q.done != "" {
				r.file(q.req, r.engine.Done(q.req, q.done))
				continue
			}
			r.do(q.req)
		}
	}
}

// do carries out one request and files its record.
func (r *responder) do(req response.Request) *vigilv1.ActionRecord {
	rec := r.engine.Do(req)
	r.file(req, rec)
	return rec
}

// file logs a record, appends it to the audit log and to its incident.
func (r *responder) file(req response.Request, rec *vigilv1.ActionRecord) {
	r.log.Info("response", "action", rec.GetAction(), "target", rec.GetTarget(), "result", rec.GetResult(),
		"detail", rec.GetDetail(), "requester", rec.GetRequester(), "incident", req.IncidentID, "mode", rec.GetMode())
	if r.results != nil {
		r.results.add(rec.GetResult())
	}
	if b, err := protojson.Marshal(rec); err == nil {
		r.auditMu.Lock()
		_, werr := r.audit.Write(append(b, '\n'))
		r.auditMu.Unlock()
		if werr != nil {
			r.log.Error("audit log not written", "error", werr)
		}
	}
	if req.IncidentID != "" && r.record != nil {
		r.record(req.IncidentID, rec)
	}
}

// handle answers the control socket.
func (r *responder) handle(req control.Request) control.Reply {
	switch req.Op {
	case "respond":
		rec := r.do(response.Request{
			Action: req.Action, Target: req.Target, IncidentID: req.IncidentID, Requester: req.Requester,
			Reason: req.Reason, DryRun: req.DryRun, TTL: req.TTL, StartTime: req.StartTime, StartSlack: req.StartSlack,
		})
		return control.RecordReply(rec)
	case "status":
		return control.Reply{Status: fmt.Sprintf("mode %s; held %v", r.engine.Mode, r.engine.Held())}
	}
	return control.Reply{Error: fmt.Sprintf("unknown op %q", req.Op)}
}

// onAction carries out an action command from the server exactly like an
// operator's request on the control socket: the same engine, safety rules,
// mode and audit log, with requester "server:" and the server's requester.
func (r *responder) onAction(cmd *vigilv1.ActionCommand) *vigilv1.ActionRecord {
	requester := cmd.GetRequester()
	if requester == "" {
		requester = "unknown"
	}
	return r.do(response.Request{
		Action: cmd.GetAction(), Target: cmd.GetTarget(), IncidentID: cmd.GetIncidentId(),
		Requester: "server:" + requester, Reason: cmd.GetReason(), DryRun: cmd.GetDryRun(),
		TTL: time.Duration(cmd.GetTtlSeconds()) * time.Second,
	})
}

// attachNetwork loads the network guard (host blocks, isolation, cgroup
// quarantine) on the configured interfaces; without it those actions fail
// with the reason, and everything else goes on.
func (r *responder) attachNetwork(a *config.Config) {
	g, err := netguard.Open(netguard.Options{Interfaces: a.Response.Interfaces, Never: r.engine.Safety.Protected})
	if err == nil {
		err = g.Attach()
		if err != nil {
			g.Close()
		}
	}
	if err != nil {
		r.log.Warn("network responses unavailable (block, isolate, quarantine)", "error", err)
		return
	}
	r.guard = g
	r.engine.Network = guard{g}
	r.log.Info("network responses ready", "interfaces", g.Interfaces(), "attach", g.Mode(), "never_blocked", r.engine.Safety.Protected)
}

// close detaches the mechanisms and closes the audit log.
func (r *responder) close() {
	if r.guard != nil {
		if err := r.guard.Close(); err != nil {
			r.log.Warn("network guard not detached cleanly", "error", err)
		}
	}
	if r.snapshots != nil {
		r.snapshots.Close()
	}
	r.audit.Close()
}

// guard adapts the network guard to the engine: the cut as audit lines.
type guard struct{ *netguard.Guard }

func (n guard) QuarantineProcesses(dir string, pids []int) (func() error, []string, error) {
	undo, cut, err := n.Guard.QuarantineProcesses(dir, pids)
	return undo, cut.Lines(), err
}

// processes adapts procctl to the engine.
type processes struct{ q *procctl.Quarantine }

func (p processes) KillTree(pid uint32, start uint64) ([]int, error) {
	return procctl.KillTree(pid, start)
}

func (p processes) Freeze(pid uint32, start uint64, name string) (response.Held, error) {
	h, err := p.q.Freeze(pid, start, name)
	if err != nil {
		return nil, err
	}
	return h, nil
}

// files adapts the snapshot store to the engine.
type files struct{ s *snapshot.Store }

// Known reports whether the store has a known-good version of path.
func (f files) Known(path string) bool { return f.s.Known(path) }

// restorable reports whether restore can put path back: the snapshot
// store is attached and has a known-good version of it.
func (r *responder) restorable(path string) bool {
	return r.snapshots != nil && r.snapshots.Known(path)
}

func (f files) Restore(path string) (string, error) {
	r, err := f.s.Restore(path)
	if err != nil {
		return "", err
	}
	return r.String(), nil
}

// attachProcesses readies kill and freeze; without cgroup v2 freeze is
// unavailable. Trees an earlier run left held are taken over, so that
// they can be released.
func (r *responder) attachProcesses(stateDir string) {
	q, err := procctl.NewQuarantine("")
	if err != nil {
		r.log.Warn("process responses unavailable (kill, freeze, quarantine)", "error", err)
		return
	}
	q.StateDir = filepath.Join(stateDir, "held")
	held, err := q.Adopt()
	if err != nil {
		r.log.Warn("trees held by an earlier run not taken over", "error", err)
	}
	for _, h := range held {
		r.engine.Adopt(h.Name(), h)
		r.log.Warn("still holding a process tree from an earlier run", "held", "held:"+h.Name(), "pids", h.PIDs(),
			"release", "vigil-agent respond release held:"+h.Name())
	}
	r.engine.Processes = processes{q}
	r.log.Info("process responses ready", "quarantine", q.Root())
}

// attachFiles opens the snapshot store; on the first start (or after a
// damaged index) it takes the baseline of every watched file.
func (r *responder) attachFiles(stateDir string) {
	s, err := snapshot.Open(filepath.Join(stateDir, "snapshots"), snapshot.Options{})
	if err != nil {
		r.log.Warn("file rollback unavailable (restore)", "error", err)
		return
	}
	if err := s.Damage(); err != nil {
		r.log.Warn("snapshot index was damaged and is rebuilt", "error", err)
	}
	if s.LastSweep().IsZero() {
		rep, err := s.TakeAll()
		if err != nil {
			r.log.Warn("file snapshots not taken", "error", err)
		}
		r.log.Info("file snapshots taken as known-good", "files", len(rep.Taken), "skipped", len(rep.Skipped))
	}
	r.snapshots = s
	r.engine.Files = files{s}
}

// killList computes the kernel kill list from the rules whose response is
// kill in auto mode and whose condition the kernel can check by itself
// (process names and executables only), without the names the agent must
// never kill on sight.
func (r *responder) killList(set *rules.Set) (names, exes []string) {
	for _, rule := range set.Rules() {
		if !rule.Enabled || rule.Response != rules.ResponseKill || r.engine.ModeFor(rule.ID) != response.ModeAuto {
			continue
		}
		n, e, ok := rule.KernelKill()
		if !ok {
			continue
		}
		for _, name := range n {
			if slices.Contains(neverKillNames, name) {
				r.log.Warn("rule would kill a program the agent never kills on sight; left out of the kernel kill list", "rule", rule.ID, "name", name)
				continue
			}
			names = append(names, name)
		}
		for _, exe := range e {
			if slices.Contains(r.engine.Safety.AllowExes, exe) {
				continue
			}
			exes = append(exes, exe)
		}
	}
	return names, exes
}

// neverKillNames are programs a kill-on-exec list must not hold: the
// agent, init, the ways in (ssh, login, su, sudo) and shells.
var neverKillNames = []string{"vigil-agent", "systemd", "init", "sshd", "sshd-session", "login", "su", "sudo",
	"sh", "bash", "dash", "zsh", "busybox"}
