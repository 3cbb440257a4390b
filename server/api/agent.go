package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/vigil-sensor/vigil/internal/verdict"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/fleet"
	"github.com/vigil-sensor/vigil/server/store"
)

// AgentService handles AgentService.Connect.
//
// Protocol violations end the stream with codes.InvalidArgument: a first
// message that is not a hello, a hello without host_id, and a second hello
// on the same stream. Problems confined to one report do not: a report
// without an incident, with an id that is not a canonical UUID, or whose
// incident names another host than the hello is logged at warn level and
// not acknowledged, and the stream goes on with the agent's other reports.
// (The wire format has no negative acknowledgement, so the agent keeps such
// a report pending; see the proposal in the server's report.) A message of
// a kind this server does not know is logged and ignored, so that newer
// agents can talk to older servers. A store failure ends the stream with
// codes.Internal; the agent reconnects and resends what was not
// acknowledged, which is safe because reports are idempotent by id.
//
// Analysts' benign verdicts go down the same stream as Suppressions
// messages. They are not queued anywhere: the store's incidents are the
// record of what each host must receive. Right after the hello the stream
// sends one message for every incident of the host labelled BENIGN, then
// follows the store (Changed, then After its last cursor with a host and
// label filter) and sends each incident that is labelled BENIGN later or
// that gets a new revision while labelled (a triage change and a revision
// both move the incident to a new cursor). This works the same when the
// label was set through another server sharing a PostgreSQL store. The
// agent applies the suppressions idempotently, so resending at every
// connect is harmless. A label changed from BENIGN is withdrawn the same
// way (Suppressions.withdrawn): at connect for the incidents the hello
// says the agent's feedback holds, then, while the stream holds any such
// incident, by following the host's incidents (all labels) after the
// newest one at connect. Its cost is one indexed query per connected agent
// each time the store changes.
//
// Action commands from ResponseService go down the same stream: the
// stream's loop, its only sender, takes them from the commands router, and
// the agent's ActionResults are stored (whether or not their caller still
// waits) and handed back to the waiting call. A result whose record cannot
// be stored is logged; the stream goes on.
//
// The fleet's rule set (RulesService) goes down the same stream: right
// after the hello when one has been set, then each new version, when
// RulesService wakes the stream (a set stored through this server) or at a
// heartbeat that finds a newer version in the store (one stored through
// another server sharing a PostgreSQL store). The agent's RuleSetResults
// are kept in the fleet registry.
type AgentService struct {
	vigilv1.UnimplementedAgentServiceServer

	store    store.Store
	fleet    *fleet.Registry
	commands *commands
	// ruleSets is notified when RulesService stores a new set.
	ruleSets *store.Notifier
	// ruleSetCache spares the store a read at every agent's heartbeat.
	ruleSetCache ruleSetCache
	log          *slog.Logger
	done         <-chan struct{}
}

// recvResult is one result of stream.Recv.
type recvResult struct {
	msg *vigilv1.AgentMessage
	err error
}

// Connect implements vigilv1.AgentServiceServer.
func (a *AgentService) Connect(stream grpc.BidiStreamingServer[vigilv1.AgentMessage, vigilv1.ServerMessage]) error {
	ctx := stream.Context()
	peerAddr := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		peerAddr = p.Addr.String()
	}

	// The first message must be a hello that names the host.
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return status.Error(codes.InvalidArgument, "stream closed before hello")
	}
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Errorf(codes.InvalidArgument, "first message must be hello, got %s", messageKind(first))
	}
	if hello.GetHostId() == "" {
		return status.Error(codes.InvalidArgument, "hello.host_id is empty")
	}
	hostID := hello.GetHostId()
	log := a.log.With("host_id", hostID, "peer", peerAddr)
	log.Info("agent connected",
		"hostname", hello.GetHostname(),
		"kernel", hello.GetKernelRelease(),
		"version", hello.GetAgentVersion(),
		"capabilities", hello.GetCapabilities())
	a.fleet.Connected(hello, peerAddr)
	defer a.fleet.Disconnected(hostID)
	link := a.commands.attach(hostID)
	defer a.commands.detach(hostID, link)

	// Send the verdicts given while the agent was away, and take the change
	// channel first so that a label given meanwhile wakes the loop.
	changed := a.store.Changed()
	w, err := a.sendWithdrawnAtConnect(stream, log, hostID, hello.GetFeedbackIncidentIds())
	if err != nil {
		log.Warn("agent disconnected", "reason", err)
		return err
	}
	var verdicts uint64 // the cursor of the last incident looked at for verdicts
	if verdicts, err = a.sendVerdicts(stream, log, hostID, verdicts, w); err != nil {
		log.Warn("agent disconnected", "reason", err)
		return err
	}
	// The same for the rule set: take the wake-up channel, then send.
	rulesChanged := a.ruleSets.Wait()
	var ruleSet uint64 // the version of the last rule set sent
	if ruleSet, err = a.sendRuleSet(stream, log, ruleSet, 0); err != nil {
		log.Warn("agent disconnected", "reason", err)
		return err
	}

	// Receive in a goroutine so that Shutdown can end the stream while it
	// waits for the agent. The goroutine ends when the stream does.
	msgs := make(chan recvResult)
	go func() {
		for {
			m, err := stream.Recv()
			select {
			case msgs <- recvResult{m, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	in := newIngest(a, stream, log, hostID)
	for {
		var r recvResult
		recv := msgs
		if in.full() {
			recv = nil // read on once the oldest report is answered
		}
		select {
		case <-a.done:
			log.Info("agent disconnected", "reason", "server shutting down")
			return errShuttingDown
		case <-ctx.Done():
			// The receiver may see the end first and leave without a word.
			log.Info("agent disconnected", "reason", ctx.Err())
			return status.FromContextError(ctx.Err()).Err()
		case <-changed:
			changed = a.store.Changed()
			if verdicts, err = a.sendVerdicts(stream, log, hostID, verdicts, w); err != nil {
				log.Warn("agent disconnected", "reason", err)
				return err
			}
			if err = a.sendWithdrawn(stream, log, hostID, w); err != nil {
				log.Warn("agent disconnected", "reason", err)
				return err
			}
			continue
		case <-rulesChanged:
			rulesChanged = a.ruleSets.Wait()
			if ruleSet, err = a.sendRuleSet(stream, log, ruleSet, 0); err != nil {
				log.Warn("agent disconnected", "reason", err)
				return err
			}
			continue
		case cmd := <-link.send:
			if err := stream.Send(&vigilv1.ServerMessage{Msg: &vigilv1.ServerMessage_ActionCommand{ActionCommand: cmd}}); err != nil {
				log.Warn("agent disconnected", "reason", err)
				return err
			}
			continue
		case item := <-in.done:
			if err := in.finish(item); err != nil {
				log.Warn("agent disconnected", "reason", err)
				return err
			}
			continue
		case r = <-recv:
		}
		if errors.Is(r.err, io.EOF) {
			// Answer what the agent sent before it closed.
			if err := in.drain(); err != nil {
				log.Warn("agent disconnected", "reason", err)
				return err
			}
			log.Info("agent disconnected", "reason", "agent closed the stream")
			return nil
		}
		if r.err != nil {
			log.Info("agent disconnected", "reason", r.err)
			return r.err
		}
		if rep := r.msg.GetIncident(); rep != nil {
			a.fleet.Seen(hostID)
			if err := in.add(rep); err != nil {
				log.Warn("agent disconnected", "reason", err)
				return err
			}
			continue
		}
		if err := a.handle(stream, log, hostID, r.msg); err != nil {
			log.Warn("agent disconnected", "reason", err)
			return err
		}
		if r.msg.GetHeartbeat() != nil {
			// A set stored through another server wakes nothing here.
			if ruleSet, err = a.sendRuleSet(stream, log, ruleSet, ruleSetMaxAge); err != nil {
				log.Warn("agent disconnected", "reason", err)
				return err
			}
		}
	}
}

// ruleSetMaxAge is how old the rule set a heartbeat compares with may be.
const ruleSetMaxAge = 5 * time.Second

// ruleSetCache is the fleet's rule set as last read from the store.
type ruleSetCache struct {
	mu   sync.Mutex
	rs   *vigilv1.RuleSet
	read time.Time
}

// get returns the rule set, read from st unless the one read last is
// younger than maxAge (0: always read).
func (c *ruleSetCache) get(ctx context.Context, st store.Store, maxAge time.Duration) (*vigilv1.RuleSet, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rs != nil && maxAge > 0 && time.Since(c.read) < maxAge {
		return c.rs, nil
	}
	rs, err := st.RuleSet(ctx)
	if err != nil {
		return nil, err
	}
	c.rs, c.read = rs, time.Now()
	return rs, nil
}

// sendRuleSet sends the fleet's rule set when its version is not the one
// last sent (sent), and returns the version sent. The set is read from the
// store unless one read less than maxAge ago is at hand. It returns an
// error only when the stream must end.
func (a *AgentService) sendRuleSet(stream grpc.BidiStreamingServer[vigilv1.AgentMessage, vigilv1.ServerMessage], log *slog.Logger,
	sent uint64, maxAge time.Duration) (uint64, error) {
	ctx := stream.Context()
	rs, err := a.ruleSetCache.get(ctx, a.store, maxAge)
	if err != nil {
		log.Error("read rule set", "error", err)
		return sent, storeError(ctx, "read rule set", err)
	}
	if rs.GetVersion() == 0 || rs.GetVersion() == sent {
		return sent, nil
	}
	if err := stream.Send(&vigilv1.ServerMessage{Msg: &vigilv1.ServerMessage_RuleSet{RuleSet: rs}}); err != nil {
		return sent, err
	}
	log.Info("rule set sent", "version", rs.GetVersion(), "files", len(rs.GetFiles()))
	return rs.GetVersion(), nil
}

// handle processes one message after the hello other than an incident
// report (those go to the stream's ingest). It returns an error only when
// the stream must end.
func (a *AgentService) handle(stream grpc.BidiStreamingServer[vigilv1.AgentMessage, vigilv1.ServerMessage], log *slog.Logger, hostID string, m *vigilv1.AgentMessage) error {
	a.fleet.Seen(hostID)
	switch msg := m.GetMsg().(type) {
	case *vigilv1.AgentMessage_Hello:
		return status.Error(codes.InvalidArgument, "hello sent twice on one stream")
	case *vigilv1.AgentMessage_Heartbeat:
		hb := msg.Heartbeat
		a.fleet.Heartbeat(hostID, hb)
		log.Debug("heartbeat",
			"events_total", hb.GetEventsTotal(),
			"events_lost", hb.GetEventsLost(),
			"rss_bytes", hb.GetRssBytes(),
			"pending_incidents", hb.GetPendingIncidents())
		return nil
	case *vigilv1.AgentMessage_SuppressionsApplied:
		log.Info("agent applied verdict", "incident_id", msg.SuppressionsApplied.GetIncidentId(),
			"new_suppressions", msg.SuppressionsApplied.GetAdded(), "removed_suppressions", msg.SuppressionsApplied.GetRemoved())
		return nil
	case *vigilv1.AgentMessage_ActionResult:
		a.actionResult(stream.Context(), log, hostID, msg.ActionResult)
		return nil
	case *vigilv1.AgentMessage_RuleSetResult:
		res := msg.RuleSetResult
		a.fleet.RuleSetResult(hostID, res)
		if res.GetApplied() {
			log.Info("agent applied rule set", "version", res.GetVersion())
		} else {
			log.Warn("agent refused rule set; it keeps its last good set", "version", res.GetVersion(), "error", res.GetError())
		}
		return nil
	default:
		log.Warn("ignoring agent message of unknown kind")
		return nil
	}
}

// actionResult stores the record of an answered command and hands it to
// the RequestAction call waiting for it. A result that comes too late for
// its call is stored all the same. Failing to store it is logged and does
// not end the stream: the record is in the agent's audit log too.
func (a *AgentService) actionResult(ctx context.Context, log *slog.Logger, hostID string, res *vigilv1.ActionResult) {
	rec := res.GetRecord()
	log = log.With("command_id", res.GetCommandId())
	if rec == nil {
		log.Warn("action result without a record; ignored")
		return
	}
	if _, err := a.store.PutAction(ctx, hostID, rec); err != nil {
		log.Error("store action record", "action_id", rec.GetId(), "error", err)
	}
	if !a.commands.deliver(hostID, res) {
		log.Warn("action result for no waiting request (too late or unknown)", "action_id", rec.GetId(), "result", rec.GetResult())
	}
}

// reject tells the agent one report was refused; the stream goes on.
func reject(stream grpc.BidiStreamingServer[vigilv1.AgentMessage, vigilv1.ServerMessage], log *slog.Logger, seq uint64, inc *vigilv1.Incident, why error) error {
	log.Warn("rejected incident report", "sequence", seq, "incident_id", inc.GetId(), "error", why)
	return stream.Send(&vigilv1.ServerMessage{Msg: &vigilv1.ServerMessage_Reject{Reject: &vigilv1.Reject{
		Sequence:   seq,
		IncidentId: inc.GetId(),
		Reason:     why.Error(),
	}}})
}

// checkReport checks what the agent service requires of a reported
// incident beyond what the store checks.
func checkReport(hostID string, inc *vigilv1.Incident) error {
	if inc == nil {
		return errors.New("incident report without incident")
	}
	if inc.GetId() == "" {
		return errors.New("incident.id is empty")
	}
	if h := inc.GetHostId(); h != "" && h != hostID {
		return fmt.Errorf("incident.host_id %q differs from hello.host_id %q", h, hostID)
	}
	return nil
}

// messageKind names the kind of an agent message for error messages.
func messageKind(m *vigilv1.AgentMessage) string {
	switch m.GetMsg().(type) {
	case *vigilv1.AgentMessage_Hello:
		return "hello"
	case *vigilv1.AgentMessage_Heartbeat:
		return "heartbeat"
	case *vigilv1.AgentMessage_Incident:
		return "incident"
	case *vigilv1.AgentMessage_SuppressionsApplied:
		return "suppressions_applied"
	case *vigilv1.AgentMessage_ActionResult:
		return "action_result"
	case *vigilv1.AgentMessage_RuleSetResult:
		return "rule_set_result"
	default:
		return "an empty or unknown message"
	}
}

// verdictBatch is how many labelled incidents sendVerdicts reads at a time.
const verdictBatch = 256

// sendVerdicts sends a Suppressions message for every incident of host
// labelled BENIGN with a cursor after the given one, oldest first, and
// returns the cursor to go on from. It returns an error only when the
// stream must end.
func (a *AgentService) sendVerdicts(stream grpc.BidiStreamingServer[vigilv1.AgentMessage, vigilv1.ServerMessage], log *slog.Logger, hostID string, after uint64, w *withdrawals) (uint64, error) {
	ctx := stream.Context()
	filter := &vigilv1.IncidentFilter{HostId: hostID, Label: vigilv1.Label_LABEL_BENIGN}
	for {
		incs, err := a.store.After(ctx, filter, after, verdictBatch)
		if err != nil {
			log.Error("read labelled incidents", "error", err)
			return after, storeError(ctx, "read labelled incidents", err)
		}
		for _, inc := range incs {
			after = inc.GetCursor()
			msg := verdict.Message(inc)
			if msg == nil {
				continue
			}
			if err := stream.Send(&vigilv1.ServerMessage{Msg: &vigilv1.ServerMessage_Suppressions{Suppressions: msg}}); err != nil {
				return after, err
			}
			w.hold(inc)
			log.Debug("verdict sent", "incident_id", inc.GetId(), "suppressions", len(msg.GetSuppressions()))
		}
		if len(incs) < verdictBatch {
			return after, nil
		}
	}
}

// maxFeedbackIDs is how many Hello.feedback_incident_ids the server looks
// at; an agent holding more has its oldest labels checked only online.
const maxFeedbackIDs = 10000

// withdrawals follows, for one stream, the incidents whose benign verdict
// the agent holds (those of its hello and those sent since), so that a
// label changed from BENIGN is withdrawn on the agent. Only while it holds
// any does the stream read the host's other incidents after cursor.
type withdrawals struct {
	held   map[string]bool
	cursor uint64
}

// hold records that the agent holds inc's verdict.
func (w *withdrawals) hold(inc *vigilv1.Incident) {
	if len(w.held) == 0 {
		// The withdrawal of inc can only come at a later cursor.
		w.cursor = max(w.cursor, inc.GetCursor())
	}
	w.held[inc.GetId()] = true
}

// withdrawn reports whether inc's label was changed from BENIGN: it is
// set, by an analyst, to something else.
func withdrawn(inc *vigilv1.Incident) bool {
	tr := inc.GetTriage()
	return tr.GetLabel() != vigilv1.Label_LABEL_BENIGN && tr.GetLabelTime() != nil
}

// sendWithdrawal sends the withdrawal of incident id's verdict.
func sendWithdrawal(stream grpc.BidiStreamingServer[vigilv1.AgentMessage, vigilv1.ServerMessage], log *slog.Logger, id string) error {
	msg := &vigilv1.Suppressions{IncidentId: id, Withdrawn: true}
	if err := stream.Send(&vigilv1.ServerMessage{Msg: &vigilv1.ServerMessage_Suppressions{Suppressions: msg}}); err != nil {
		return err
	}
	log.Info("verdict withdrawal sent", "incident_id", id)
	return nil
}

// sendWithdrawnAtConnect looks up the incidents the agent's feedback holds
// (its hello's feedback_incident_ids), sends a withdrawal for each of the
// host's whose label was changed from BENIGN, and returns the others as
// held. It returns an error only when the stream must end.
func (a *AgentService) sendWithdrawnAtConnect(stream grpc.BidiStreamingServer[vigilv1.AgentMessage, vigilv1.ServerMessage], log *slog.Logger,
	hostID string, ids []string) (*withdrawals, error) {
	ctx := stream.Context()
	w := &withdrawals{held: map[string]bool{}}
	if len(ids) == 0 {
		return w, nil
	}
	// Changes after the newest incident now are followed online.
	newest, err := a.store.List(ctx, &vigilv1.IncidentFilter{HostId: hostID}, 0, 1)
	if err != nil {
		log.Error("read newest incident", "error", err)
		return w, storeError(ctx, "read newest incident", err)
	}
	if len(newest) > 0 {
		w.cursor = newest[0].GetCursor()
	}
	if len(ids) > maxFeedbackIDs {
		ids = ids[len(ids)-maxFeedbackIDs:]
	}
	for _, id := range ids {
		inc, err := a.store.Get(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue // labelled on the host only
		}
		if err != nil {
			log.Error("read labelled incident", "incident_id", id, "error", err)
			return w, storeError(ctx, "read labelled incident", err)
		}
		if inc.GetHostId() != hostID {
			continue
		}
		if !withdrawn(inc) {
			w.held[id] = true
			continue
		}
		if err := sendWithdrawal(stream, log, id); err != nil {
			return w, err
		}
	}
	return w, nil
}

// sendWithdrawn sends a withdrawal for every held incident whose label was
// changed from BENIGN after w's cursor, and moves the cursor on. It returns
// an error only when the stream must end.
func (a *AgentService) sendWithdrawn(stream grpc.BidiStreamingServer[vigilv1.AgentMessage, vigilv1.ServerMessage], log *slog.Logger, hostID string, w *withdrawals) error {
	ctx := stream.Context()
	filter := &vigilv1.IncidentFilter{HostId: hostID}
	for len(w.held) > 0 {
		incs, err := a.store.After(ctx, filter, w.cursor, verdictBatch)
		if err != nil {
			log.Error("read changed incidents", "error", err)
			return storeError(ctx, "read changed incidents", err)
		}
		for _, inc := range incs {
			w.cursor = inc.GetCursor()
			if !w.held[inc.GetId()] || !withdrawn(inc) {
				continue
			}
			delete(w.held, inc.GetId())
			if err := sendWithdrawal(stream, log, inc.GetId()); err != nil {
				return err
			}
		}
		if len(incs) < verdictBatch {
			return nil
		}
	}
	return nil
}
