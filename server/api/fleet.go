package api

import (
	"context"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/fleet"
)

// FleetService handles FleetService from the fleet registry.
type FleetService struct {
	vigilv1.UnimplementedFleetServiceServer

	fleet *fleet.Registry
}

// ListAgents implements vigilv1.FleetServiceServer.
func (s *FleetService) ListAgents(context.Context, *vigilv1.ListAgentsRequest) (*vigilv1.ListAgentsResponse, error) {
	agents := s.fleet.Agents()
	resp := &vigilv1.ListAgentsResponse{Agents: make([]*vigilv1.Agent, 0, len(agents))}
	for _, a := range agents {
		resp.Agents = append(resp.Agents, a.Proto())
	}
	return resp, nil
}
