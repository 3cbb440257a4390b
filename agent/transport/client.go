// Package transport carries the agent's incidents to the Vigil server over
// one long-lived AgentService.Connect stream: it resends what the server has
// not acknowledged after every reconnect, and reconnects with backoff. It
// also takes the analysts' benign verdicts the server sends down the stream
// and adds their suppressions to the agent's feedback file, which the
// running agent rereads, and hands the server's action commands to the
// agent's response engine, sending back the records, and the fleet's rule
// sets to the agent's rules, sending back whether they are in force.
package transport

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/feedback"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// DefaultMaxPending bounds the unacknowledged incidents kept in memory.
const DefaultMaxPending = 100_000

// ErrQueueFull is returned by Send when MaxPending incidents await an ack.
var ErrQueueFull = errors.New("incident queue full: the server has not acknowledged earlier incidents")

// Client sends incidents to the server. Configure the exported fields, then
// call Run once; Send may be called from any goroutine before and during Run.
type Client struct {
	// Addr is the server's gRPC address, host:port.
	Addr string
	// Hello is sent first on every connection.
	Hello *vigilv1.Hello
	// Heartbeat, if set, builds the heartbeats sent every HeartbeatInterval.
	Heartbeat func() *vigilv1.Heartbeat
	// HeartbeatInterval defaults to 10 s.
	HeartbeatInterval time.Duration
	// MaxPending defaults to DefaultMaxPending.
	MaxPending int
	// TLS, when set, is the TLS configuration to connect with (the
	// server's CA and the agent's certificate); nil means plaintext.
	TLS *tls.Config
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// OutboxDir, when set, keeps every unacknowledged incident on disk, one
	// file per incident, so that nothing is lost when the agent restarts
	// before the server has acknowledged it; Restore reads it back.
	OutboxDir string
	// FeedbackFile, when set, is the agent's feedback file (see package
	// feedback): the suppressions of every Suppressions message from the
	// server are appended to it, skipping ones already there (a withdrawn
	// verdict removes its incident's suppressions), and the server is told
	// with SuppressionsApplied; the hello lists the incidents it holds. When empty, such messages
	// are logged and dropped.
	FeedbackFile string
	// OnAction, when set, carries out an ActionCommand from the server and
	// returns the record to answer with; the daemon runs it through its
	// response engine. It runs in a goroutine of its own, off the stream's
	// receive loop, so a slow action delays nothing else; it may be called
	// for several commands at once. When nil, commands are answered with a
	// record whose result is "refused".
	OnAction func(*vigilv1.ActionCommand) *vigilv1.ActionRecord
	// OnRuleSet, when set, applies a RuleSet from the server and returns
	// the answer; the daemon compiles it into the agent's rules. It runs on
	// the stream's receive loop, one set at a time in the order they came,
	// so it should not take long (compiling a set takes well under a
	// second). When nil, sets are answered as refused.
	OnRuleSet func(*vigilv1.RuleSet) *vigilv1.RuleSetResult
	// Policy, when set, returns the version and hash of the server rule
	// set in force, sent in every hello and heartbeat.
	Policy func() (version uint64, hash string)

	mu        sync.Mutex
	nextSeq   uint64
	pending   map[uint64]*vigilv1.IncidentReport
	wake      chan struct{}
	connected bool
	acked     uint64
	rejected  uint64
	verdicts  uint64
	withdrawn uint64
	ruleSets  uint64
}

func (c *Client) init() {
	if c.pending == nil {
		c.pending = make(map[uint64]*vigilv1.IncidentReport)
		c.wake = make(chan struct{}, 1)
	}
}

// Send queues an incident. It is kept (on disk too, with OutboxDir) until
// the server acknowledges it.
func (c *Client) Send(inc *vigilv1.Incident) error {
	c.mu.Lock()
	c.init()
	max := c.MaxPending
	if max <= 0 {
		max = DefaultMaxPending
	}
	if len(c.pending) >= max {
		c.mu.Unlock()
		return ErrQueueFull
	}
	if c.OutboxDir != "" {
		if err := c.saveToOutbox(inc); err != nil {
			c.mu.Unlock()
			return err
		}
	}
	c.enqueueLocked(inc)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// enqueueLocked gives inc the next sequence number and queues it.
func (c *Client) enqueueLocked(inc *vigilv1.Incident) {
	c.nextSeq++
	c.pending[c.nextSeq] = &vigilv1.IncidentReport{Sequence: c.nextSeq, Incident: inc}
}

// Stats reports the client's state.
type Stats struct {
	// Connected is set while a stream to the server is up.
	Connected bool
	// Pending counts incidents not yet acknowledged.
	Pending int
	// Acked counts incidents acknowledged since start.
	Acked uint64
	// Rejected counts incidents the server refused since start.
	Rejected uint64
	// Verdicts counts the Suppressions messages written to FeedbackFile
	// since start (resends included).
	Verdicts uint64
	// Withdrawals counts the withdrawn verdicts (Suppressions.withdrawn)
	// applied to FeedbackFile since start.
	Withdrawals uint64
	// RuleSets counts the RuleSet messages answered since start, applied
	// or not.
	RuleSets uint64
}

// Stats returns the client's current state.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Connected: c.connected, Pending: len(c.pending), Acked: c.acked, Rejected: c.rejected, Verdicts: c.verdicts, Withdrawals: c.withdrawn, RuleSets: c.ruleSets}
}

// Run connects and keeps the stream up until ctx ends, reconnecting with
// exponential backoff (0.2 s doubling to 10 s) after each failure.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	c.init()
	c.mu.Unlock()
	log := c.logger()
	creds := insecure.NewCredentials()
	if c.TLS != nil {
		creds = credentials.NewTLS(c.TLS)
	}
	conn, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("server address %q: %w", c.Addr, err)
	}
	defer conn.Close()
	client := vigilv1.NewAgentServiceClient(conn)

	const minBackoff, maxBackoff = 200 * time.Millisecond, 10 * time.Second
	backoff := minBackoff
	for {
		start := time.Now()
		err := c.session(ctx, client, log)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > maxBackoff {
			backoff = minBackoff
		}
		log.Warn("server connection lost, retrying", "server", c.Addr, "error", err, "retry_in", backoff, "pending", c.Stats().Pending)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// session runs one stream: hello, every pending report in order, then new
// reports and heartbeats as they come, while a goroutine takes the acks.
func (c *Client) session(ctx context.Context, client vigilv1.AgentServiceClient, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Connect(ctx, grpc.WaitForReady(false))
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	hello := &vigilv1.Hello{}
	if c.Hello != nil {
		hello = proto.Clone(c.Hello).(*vigilv1.Hello)
	}
	if c.Policy != nil {
		hello.PolicyVersion, hello.PolicyHash = c.Policy()
	}
	if c.FeedbackFile != "" {
		// So that the server withdraws the labels withdrawn meanwhile.
		if list, err := feedback.Load(c.FeedbackFile); err != nil {
			log.Warn("read feedback for the hello", "error", err)
		} else {
			hello.FeedbackIncidentIds = feedback.IncidentIDs(list)
		}
	}
	if err := stream.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Hello{Hello: hello}}); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}

	// The receiver hands the answers to verdicts, commands and rule sets
	// to this loop, the stream's only sender.
	applied := make(chan *vigilv1.SuppressionsApplied, 64)
	results := make(chan *vigilv1.ActionResult, 64)
	ruleResults := make(chan *vigilv1.RuleSetResult, 8)
	recvErr := make(chan error, 1)
	go func() { recvErr <- c.receive(ctx, stream, applied, results, ruleResults) }()

	c.setConnected(true)
	defer c.setConnected(false)
	log.Info("connected to server", "server", c.Addr)

	interval := c.HeartbeatInterval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()

	var sentUpTo uint64 // a new stream resends everything pending
	for {
		for _, rep := range c.unsentAfter(sentUpTo) {
			if err := stream.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Incident{Incident: rep}}); err != nil {
				return fmt.Errorf("send incident: %w", err)
			}
			sentUpTo = rep.Sequence
		}
		select {
		case <-ctx.Done():
			_ = stream.CloseSend()
			return ctx.Err()
		case err := <-recvErr:
			return err
		case <-c.wake:
		case a := <-applied:
			if err := stream.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_SuppressionsApplied{SuppressionsApplied: a}}); err != nil {
				return fmt.Errorf("send suppressions applied: %w", err)
			}
		case r := <-results:
			if err := stream.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_ActionResult{ActionResult: r}}); err != nil {
				return fmt.Errorf("send action result: %w", err)
			}
		case r := <-ruleResults:
			if err := stream.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_RuleSetResult{RuleSetResult: r}}); err != nil {
				return fmt.Errorf("send rule set result: %w", err)
			}
		case <-ticker.C:
			if c.Heartbeat != nil {
				hb := c.Heartbeat()
				if c.Policy != nil {
					hb.PolicyVersion, hb.PolicyHash = c.Policy()
				}
				if err := stream.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Heartbeat{Heartbeat: hb}}); err != nil {
					return fmt.Errorf("send heartbeat: %w", err)
				}
			}
		}
	}
}

// receive takes the server's messages until the stream ends: it settles
// acknowledged and rejected reports, applies verdicts, queueing their
// answers on applied, starts each action command, whose answer goes on
// results, and applies each rule set, whose answer goes on ruleResults.
func (c *Client) receive(ctx context.Context, stream grpc.BidiStreamingClient[vigilv1.AgentMessage, vigilv1.ServerMessage],
	applied chan<- *vigilv1.SuppressionsApplied, results chan<- *vigilv1.ActionResult, ruleResults chan<- *vigilv1.RuleSetResult) error {
	for {
		msg, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		if rs := msg.GetRuleSet(); rs != nil {
			r := c.applyRuleSet(rs)
			select {
			case ruleResults <- r:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if cmd := msg.GetActionCommand(); cmd != nil {
			go func() {
				r := &vigilv1.ActionResult{CommandId: cmd.GetCommandId(), Record: c.runAction(cmd)}
				select {
				case results <- r:
				case <-ctx.Done(): // the stream is gone; the server answers its caller UNAVAILABLE
				}
			}()
		}
		if v := msg.GetSuppressions(); v != nil {
			if a := c.applyVerdict(v); a != nil {
				select {
				case applied <- a:
				default: // the answer is informational; never block receiving on it
				}
			}
		}
		if ack := msg.GetAck(); ack != nil && c.settle(ack.Sequence) {
			c.mu.Lock()
			c.acked++
			c.mu.Unlock()
		}
		if rej := msg.GetReject(); rej != nil && c.settle(rej.Sequence) {
			// Resending would be refused again: drop it, loudly.
			c.mu.Lock()
			c.rejected++
			c.mu.Unlock()
			c.logger().Error("server rejected incident", "incident_id", rej.IncidentId, "reason", rej.Reason)
		}
	}
}

// runAction carries out one command through OnAction.
func (c *Client) runAction(cmd *vigilv1.ActionCommand) *vigilv1.ActionRecord {
	log := c.logger().With("command_id", cmd.GetCommandId(), "action", cmd.GetAction(), "target", cmd.GetTarget())
	log.Info("action requested by the server", "requester", cmd.GetRequester(), "dry_run", cmd.GetDryRun())
	if c.OnAction == nil {
		log.Warn("server sent an action command but this agent takes none; refused")
		id, _ := uuid.NewV7()
		return &vigilv1.ActionRecord{
			Id: id.String(), Time: timestamppb.Now(), Action: cmd.GetAction(), Target: cmd.GetTarget(), IncidentId: cmd.GetIncidentId(),
			Requester: "server:" + cmd.GetRequester(), Reason: cmd.GetReason(), DryRun: cmd.GetDryRun(),
			Result: "refused", Detail: "this agent takes no action commands from the server",
		}
	}
	return c.OnAction(cmd)
}

// applyRuleSet applies one rule set through OnRuleSet.
func (c *Client) applyRuleSet(rs *vigilv1.RuleSet) *vigilv1.RuleSetResult {
	var r *vigilv1.RuleSetResult
	if c.OnRuleSet == nil {
		c.logger().Warn("server sent a rule set but this agent takes none; refused", "version", rs.GetVersion())
		r = &vigilv1.RuleSetResult{Version: rs.GetVersion(), Hash: rs.GetHash(), Time: timestamppb.Now(),
			Error: "this agent takes no rule sets from the server"}
	} else {
		r = c.OnRuleSet(rs)
	}
	c.mu.Lock()
	c.ruleSets++
	c.mu.Unlock()
	return r
}

// applyVerdict appends the suppressions of one verdict to FeedbackFile (or,
// for a withdrawal, removes the incident's suppressions from it) and
// returns the answer for the server, or nil when they were not written (the
// server sends the verdict again at the next connect).
func (c *Client) applyVerdict(v *vigilv1.Suppressions) *vigilv1.SuppressionsApplied {
	log := c.logger().With("incident_id", v.GetIncidentId())
	if c.FeedbackFile == "" {
		log.Warn("server sent a verdict but this agent keeps no feedback file; ignored")
		return nil
	}
	if v.GetWithdrawn() {
		removed, err := feedback.Remove(c.FeedbackFile, v.GetIncidentId())
		if err != nil {
			log.Error("withdraw the server's verdict from the feedback file", "file", c.FeedbackFile, "error", err)
			return nil
		}
		c.mu.Lock()
		c.withdrawn++
		c.mu.Unlock()
		if removed > 0 {
			log.Info("analyst verdict withdrawn on the server removed from feedback", "removed_suppressions", removed, "file", c.FeedbackFile)
		}
		return &vigilv1.SuppressionsApplied{IncidentId: v.GetIncidentId(), Removed: uint32(removed)}
	}
	list := feedback.FromProto(v.GetSuppressions())
	for _, s := range list {
		if s.RuleID == "" {
			log.Error("server sent a suppression without rule_id; verdict ignored")
			return nil
		}
	}
	added, err := feedback.Append(c.FeedbackFile, list)
	if err != nil {
		log.Error("write the server's verdict to the feedback file", "file", c.FeedbackFile, "error", err)
		return nil
	}
	c.mu.Lock()
	c.verdicts++
	c.mu.Unlock()
	if added > 0 {
		log.Info("analyst verdict from the server added to feedback", "new_suppressions", added, "file", c.FeedbackFile)
	}
	return &vigilv1.SuppressionsApplied{IncidentId: v.GetIncidentId(), Added: uint32(added)}
}

// settle forgets a report the server has answered, in memory and on disk,
// and reports whether it was pending.
func (c *Client) settle(seq uint64) bool {
	c.mu.Lock()
	rep, ok := c.pending[seq]
	delete(c.pending, seq)
	c.mu.Unlock()
	if ok && c.OutboxDir != "" {
		if err := os.Remove(c.outboxPath(rep.Incident.GetId())); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.logger().Error("remove acknowledged incident from outbox", "error", err)
		}
	}
	return ok
}

// unsentAfter returns the pending reports with a sequence above seq, in order.
func (c *Client) unsentAfter(seq uint64) []*vigilv1.IncidentReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*vigilv1.IncidentReport
	for s, rep := range c.pending {
		if s > seq {
			out = append(out, rep)
		}
	}
	slices.SortFunc(out, func(a, b *vigilv1.IncidentReport) int { return cmp.Compare(a.Sequence, b.Sequence) })
	return out
}

func (c *Client) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.Default()
	}
	return c.Logger
}

func (c *Client) setConnected(v bool) {
	c.mu.Lock()
	c.connected = v
	c.mu.Unlock()
}
