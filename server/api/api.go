// Package api implements the server's gRPC services: AgentService, through
// which agents report incidents and answer commands, IncidentService,
// through which analysts and programs read them, ResponseService, through
// which they ask agents to respond, FleetService, which lists the
// agents, and RulesService, through which admins set the rules every agent
// runs. It holds handlers only; listening,
// keepalive and shutdown of the gRPC server live in package grpcserver.
package api

import (
	"context"
	"log/slog"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/fleet"
	"github.com/vigil-sensor/vigil/server/store"
)

// Services holds the handlers of every service the server offers, over one
// store and one fleet registry.
type Services struct {
	// Agent handles AgentService.
	Agent *AgentService
	// Incident handles IncidentService.
	Incident *IncidentService
	// Response handles ResponseService.
	Response *ResponseService
	// Fleet handles FleetService.
	Fleet *FleetService
	// Rules handles RulesService.
	Rules *RulesService

	done     chan struct{}
	doneOnce sync.Once
}

// New returns the handlers over st, recording agents in reg and logging
// to log.
func New(st store.Store, reg *fleet.Registry, log *slog.Logger) *Services {
	done := make(chan struct{})
	cmds := newCommands()
	ruleSets := &store.Notifier{}
	return &Services{
		Agent:    &AgentService{store: st, fleet: reg, commands: cmds, ruleSets: ruleSets, log: log, done: done},
		Incident: &IncidentService{store: st, log: log, done: done},
		Response: &ResponseService{store: st, commands: cmds, log: log},
		Fleet:    &FleetService{fleet: reg},
		Rules:    &RulesService{store: st, fleet: reg, changed: ruleSets, log: log},
		done:     done,
	}
}

// Register registers every service with r.
func (s *Services) Register(r grpc.ServiceRegistrar) {
	vigilv1.RegisterAgentServiceServer(r, s.Agent)
	vigilv1.RegisterIncidentServiceServer(r, s.Incident)
	vigilv1.RegisterResponseServiceServer(r, s.Response)
	vigilv1.RegisterFleetServiceServer(r, s.Fleet)
	vigilv1.RegisterRulesServiceServer(r, s.Rules)
}

// Shutdown ends every open stream (agent connections and incident streams)
// with codes.Unavailable, so that a graceful stop of the gRPC server does
// not wait for streams that would otherwise run forever. Clients reconnect
// and resume from their last cursor; agents resend what was not
// acknowledged. New streams that start after Shutdown end at once.
func (s *Services) Shutdown() {
	s.doneOnce.Do(func() { close(s.done) })
}

// errShuttingDown ends streams when the server stops.
var errShuttingDown = status.Error(codes.Unavailable, "server is shutting down")

// storeError turns an error of the store into a gRPC status: the context's
// own status when the call was canceled or timed out, Internal otherwise.
func storeError(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return status.FromContextError(ctxErr).Err()
	}
	return status.Errorf(codes.Internal, "%s: %v", op, err)
}
