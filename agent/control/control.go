// Package control is how commands on the host talk to the running agent:
// a Unix socket in the agent's state directory, readable by root only,
// carrying one JSON request and one JSON reply per connection. vigil-agent
// respond uses it to have the agent carry out, or simulate, a response.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// SocketName is the socket's name in the state directory.
const SocketName = "control.sock"

// Request asks the agent for one thing.
type Request struct {
	// Op is "respond" (carry out Action) or "status".
	Op string `json:"op"`
	// Action, Target, IncidentID, Reason, DryRun and TTL describe a
	// response (see agent/response.Request).
	Action     string        `json:"action,omitempty"`
	Target     string        `json:"target,omitempty"`
	IncidentID string        `json:"incident_id,omitempty"`
	Reason     string        `json:"reason,omitempty"`
	DryRun     bool          `json:"dry_run,omitempty"`
	TTL        time.Duration `json:"ttl,omitempty"`
	// Requester names who asks, e.g. "operator:alice".
	Requester string `json:"requester,omitempty"`
	// StartTime pins a pid target to one process (ns since boot); 0: the
	// process that has the pid now.
	StartTime uint64 `json:"start_time,omitempty"`
	// StartSlack is how far the start may be off (see response.Request).
	StartSlack time.Duration `json:"start_slack,omitempty"`
}

// Reply is the agent's answer.
type Reply struct {
	// Error is set when the request could not be handled at all.
	Error string `json:"error,omitempty"`
	// Record is the audit record of a response (protojson of ActionRecord).
	Record json.RawMessage `json:"record,omitempty"`
	// Status is a short text for "status".
	Status string `json:"status,omitempty"`
}

// Handler answers requests.
type Handler func(Request) Reply

// RecordReply wraps an audit record in a reply.
func RecordReply(rec *vigilv1.ActionRecord) Reply {
	b, err := protojson.Marshal(rec)
	if err != nil {
		return Reply{Error: fmt.Sprintf("encode record: %v", err)}
	}
	return Reply{Record: b}
}

// Serve listens on the socket in dir until ctx ends. It replaces a stale
// socket file left by an agent that died.
func Serve(ctx context.Context, dir string, h Handler, log *slog.Logger) error {
	path := filepath.Join(dir, SocketName)
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				_ = os.Remove(path)
				return nil
			}
			return fmt.Errorf("control socket: %w", err)
		}
		go serveOne(c, h, log)
	}
}

func serveOne(c net.Conn, h Handler, log *slog.Logger) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	var req Request
	dec := json.NewDecoder(bufio.NewReader(c))
	dec.DisallowUnknownFields()
	var reply Reply
	if err := dec.Decode(&req); err != nil {
		reply = Reply{Error: fmt.Sprintf("bad request: %v", err)}
	} else {
		reply = h(req)
	}
	if err := json.NewEncoder(c).Encode(reply); err != nil && log != nil {
		log.Warn("control reply not sent", "error", err)
	}
}

// ErrNoAgent is returned when no agent listens on the socket.
var ErrNoAgent = errors.New("no vigil-agent is running with this state directory")

// Call sends one request to the agent whose state directory is dir.
func Call(dir string, req Request, timeout time.Duration) (Reply, error) {
	path := filepath.Join(dir, SocketName)
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return Reply{}, fmt.Errorf("%w (%s: %v)", ErrNoAgent, path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Reply{}, fmt.Errorf("send to the agent: %w", err)
	}
	var reply Reply
	if err := json.NewDecoder(c).Decode(&reply); err != nil {
		return Reply{}, fmt.Errorf("read the agent's reply: %w", err)
	}
	return reply, nil
}

// DecodeRecord decodes the audit record of a reply.
func (r Reply) DecodeRecord() (*vigilv1.ActionRecord, error) {
	rec := &vigilv1.ActionRecord{}
	if err := protojson.Unmarshal(r.Record, rec); err != nil {
		return nil, fmt.Errorf("decode the agent's record: %w", err)
	}
	return rec, nil
}
