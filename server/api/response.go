package api

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/grpcserver"
	"github.com/vigil-sensor/vigil/server/store"
)

// DefaultActionTimeout is how long RequestAction waits for the agent's
// answer when the call's own deadline is later.
const DefaultActionTimeout = 30 * time.Second

// maxRequester bounds RequestActionRequest.requester, in bytes.
const maxRequester = 256

// ResponseService handles ResponseService: it sends action commands down
// the Connect streams of the agents (through the commands router it shares
// with AgentService) and keeps the records they answer with.
type ResponseService struct {
	vigilv1.UnimplementedResponseServiceServer

	// Timeout bounds the wait for an agent's answer; 0 means
	// DefaultActionTimeout.
	Timeout time.Duration

	store    store.Store
	commands *commands
	log      *slog.Logger
}

// RequestAction implements vigilv1.ResponseServiceServer.
func (s *ResponseService) RequestAction(ctx context.Context, req *vigilv1.RequestActionRequest) (*vigilv1.ActionRecord, error) {
	switch {
	case req.GetHostId() == "":
		return nil, status.Error(codes.InvalidArgument, "host_id is empty")
	case req.GetAction() == "":
		return nil, status.Error(codes.InvalidArgument, "action is empty")
	case req.GetTarget() == "":
		return nil, status.Error(codes.InvalidArgument, "target is empty")
	case len(req.GetRequester()) > maxRequester:
		return nil, status.Errorf(codes.InvalidArgument, "requester is longer than %d bytes", maxRequester)
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultActionTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()

	host := req.GetHostId()
	link := s.commands.link(host)
	if link == nil {
		return nil, status.Errorf(codes.Unavailable, "agent of host %s is not connected", host)
	}
	// With tokens, who asks is the token's holder, whatever the request says.
	requester := req.GetRequester()
	if id, ok := grpcserver.CallerIdentity(ctx); ok && id.Name != "" {
		requester = id.Name
	}
	cmd := &vigilv1.ActionCommand{
		CommandId:  uuid.NewString(),
		Action:     req.GetAction(),
		Target:     req.GetTarget(),
		IncidentId: req.GetIncidentId(),
		Reason:     req.GetReason(),
		DryRun:     req.GetDryRun(),
		TtlSeconds: req.GetTtlSeconds(),
		Requester:  requester,
	}
	log := s.log.With("host_id", host, "command_id", cmd.CommandId, "action", cmd.Action, "target", cmd.Target)
	result := s.commands.wait(cmd.CommandId, host)
	defer s.commands.forget(cmd.CommandId)

	// Hand the command to the stream's loop, then wait for the answer.
	select {
	case link.send <- cmd:
	case <-link.gone:
		return nil, status.Errorf(codes.Unavailable, "agent of host %s disconnected", host)
	case <-timer.C:
		return nil, status.Errorf(codes.DeadlineExceeded, "agent of host %s did not take the command within %v", host, timeout)
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	log.Info("action command sent", "requester", cmd.Requester, "dry_run", cmd.DryRun)
	select {
	case rec := <-result:
		return rec, nil
	case <-link.gone:
		return nil, status.Errorf(codes.Unavailable, "agent of host %s disconnected before answering", host)
	case <-timer.C:
		log.Warn("agent did not answer an action command in time", "timeout", timeout)
		return nil, status.Errorf(codes.DeadlineExceeded, "agent of host %s did not answer within %v; see its audit log", host, timeout)
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// ListActions implements vigilv1.ResponseServiceServer.
func (s *ResponseService) ListActions(ctx context.Context, req *vigilv1.ListActionsRequest) (*vigilv1.ListActionsResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	before, err := DecodePageToken(req.GetPageToken())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid page_token: %v", err)
	}
	filter := store.ActionFilter{HostID: req.GetHostId(), IncidentID: req.GetIncidentId()}
	// Read one more than asked to learn whether there is a next page.
	acts, err := s.store.ListActions(ctx, filter, before, size+1)
	if err != nil {
		return nil, storeError(ctx, "list actions", err)
	}
	resp := &vigilv1.ListActionsResponse{}
	if len(acts) > size {
		acts = acts[:size]
		resp.NextPageToken = EncodePageToken(acts[size-1].Cursor)
	}
	for _, a := range acts {
		resp.Actions = append(resp.Actions, &vigilv1.StoredAction{HostId: a.HostID, Record: a.Record})
	}
	return resp, nil
}

// commands routes action commands to the Connect streams of their hosts
// and the agents' results back to the RequestAction calls waiting for
// them. A host normally has one stream; when it briefly has two (a
// reconnect before the old stream ended), commands go to the newest.
type commands struct {
	mu      sync.Mutex
	links   map[string][]*agentLink // by host id, oldest first
	waiting map[string]waiter       // by command id
}

// agentLink is one Connect stream as the router sees it.
type agentLink struct {
	// send is read by the stream's loop, its only sender.
	send chan *vigilv1.ActionCommand
	// gone is closed when the stream ends.
	gone chan struct{}
}

// waiter is a RequestAction call waiting for its result.
type waiter struct {
	host   string
	result chan *vigilv1.ActionRecord // buffered, one
}

func newCommands() *commands {
	return &commands{links: make(map[string][]*agentLink), waiting: make(map[string]waiter)}
}

// attach registers a new stream of host.
func (c *commands) attach(host string) *agentLink {
	l := &agentLink{send: make(chan *vigilv1.ActionCommand), gone: make(chan struct{})}
	c.mu.Lock()
	c.links[host] = append(c.links[host], l)
	c.mu.Unlock()
	return l
}

// detach forgets a stream that ended and wakes the calls using it.
func (c *commands) detach(host string, l *agentLink) {
	c.mu.Lock()
	links := c.links[host]
	for i, x := range links {
		if x == l {
			links = append(links[:i:i], links[i+1:]...)
			break
		}
	}
	if len(links) == 0 {
		delete(c.links, host)
	} else {
		c.links[host] = links
	}
	c.mu.Unlock()
	close(l.gone)
}

// link returns the newest stream of host, or nil.
func (c *commands) link(host string) *agentLink {
	c.mu.Lock()
	defer c.mu.Unlock()
	links := c.links[host]
	if len(links) == 0 {
		return nil
	}
	return links[len(links)-1]
}

// wait registers a command and returns where its result will arrive.
func (c *commands) wait(id, host string) <-chan *vigilv1.ActionRecord {
	w := waiter{host: host, result: make(chan *vigilv1.ActionRecord, 1)}
	c.mu.Lock()
	c.waiting[id] = w
	c.mu.Unlock()
	return w.result
}

// forget drops a command nobody waits for any more.
func (c *commands) forget(id string) {
	c.mu.Lock()
	delete(c.waiting, id)
	c.mu.Unlock()
}

// deliver hands the result of a command to its waiting call and reports
// whether one was waiting. A result from another host than the command
// was sent to is not delivered.
func (c *commands) deliver(host string, res *vigilv1.ActionResult) bool {
	c.mu.Lock()
	w, ok := c.waiting[res.GetCommandId()]
	if ok && w.host == host {
		delete(c.waiting, res.GetCommandId())
	}
	c.mu.Unlock()
	if !ok || w.host != host {
		return false
	}
	w.result <- res.GetRecord()
	return true
}
