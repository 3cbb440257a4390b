package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-sensor/vigil/agent/config"
	"github.com/vigil-sensor/vigil/agent/control"
	"github.com/vigil-sensor/vigil/agent/correlate"
	"github.com/vigil-sensor/vigil/agent/response"
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
	queue  chan response.Request
	// record attaches a record to its incident (taking the pipeline's lock).
	record func(incidentID string, rec *vigilv1.ActionRecord)

	auditMu sync.Mutex
	audit   *os.File
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
	return &responder{log: log, engine: e, queue: make(chan response.Request, 256), audit: f}, nil
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

// onResponse turns a rule's response on a new signal into a request, for
// the engine to carry out or refuse by mode. It runs under the pipeline's
// lock, so it only queues.
func (r *responder) onResponse(sig correlate.Signal, incidentID string) {
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
	select {
	case r.queue <- req:
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
		case req := <-r.queue:
			r.do(req)
		}
	}
}

// do carries out one request and files its record.
func (r *responder) do(req response.Request) *vigilv1.ActionRecord {
	rec := r.engine.Do(req)
	r.log.Info("response", "action", rec.GetAction(), "target", rec.GetTarget(), "result", rec.GetResult(),
		"detail", rec.GetDetail(), "requester", rec.GetRequester(), "incident", req.IncidentID, "mode", rec.GetMode())
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
	return rec
}

// handle answers the control socket.
func (r *responder) handle(req control.Request) control.Reply {
	switch req.Op {
	case "respond":
		rec := r.do(response.Request{
			Action: req.Action, Target: req.Target, IncidentID: req.IncidentID, Requester: req.Requester,
			Reason: req.Reason, DryRun: req.DryRun, TTL: req.TTL,
		})
		return control.RecordReply(rec)
	case "status":
		return control.Reply{Status: fmt.Sprintf("mode %s; held %v", r.engine.Mode, r.engine.Held())}
	}
	return control.Reply{Error: fmt.Sprintf("unknown op %q", req.Op)}
}

// close closes the audit log.
func (r *responder) close() { r.audit.Close() }
