package cli

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// resolveHost returns the host id that host names: host itself when an
// agent the server knows has that host id, else the host id of the one
// agent whose hostname it is. Several agents with that hostname, or none
// with that id or hostname, is an error. "" stays "". A server that does
// not let the caller list agents gets host as given.
func (a *app) resolveHost(ctx context.Context, conn grpc.ClientConnInterface, host string) (string, error) {
	return a.resolveHostOrStored(ctx, conn, host, false)
}

// resolveStoredHost is resolveHost for filters on stored incidents: a host
// id no agent has since the server started is still one when incidents of
// it are stored.
func (a *app) resolveStoredHost(ctx context.Context, conn grpc.ClientConnInterface, host string) (string, error) {
	return a.resolveHostOrStored(ctx, conn, host, true)
}

func (a *app) resolveHostOrStored(ctx context.Context, conn grpc.ClientConnInterface, host string, stored bool) (string, error) {
	if host == "" {
		return "", nil
	}
	callCtx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	resp, err := vigilv1.NewFleetServiceClient(conn).ListAgents(callCtx, &vigilv1.ListAgentsRequest{})
	if err != nil {
		if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unimplemented {
			return host, nil
		}
		return "", a.rpcError("list agents", err)
	}
	var ids []string
	for _, ag := range resp.GetAgents() {
		if ag.GetHostId() == host {
			return host, nil
		}
		if ag.GetHostname() == host {
			ids = append(ids, ag.GetHostId())
		}
	}
	if len(ids) == 0 && stored {
		callCtx, cancel := context.WithTimeout(ctx, a.timeout)
		defer cancel()
		resp, err := vigilv1.NewIncidentServiceClient(conn).ListIncidents(callCtx, &vigilv1.ListIncidentsRequest{
			Filter: &vigilv1.IncidentFilter{HostId: host}, PageSize: 1,
		})
		if err != nil {
			return "", a.rpcError("list incidents", err)
		}
		if len(resp.GetIncidents()) > 0 {
			return host, nil
		}
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("no agent has host id or hostname %q (see 'vigilctl agents')", host)
	case 1:
		return ids[0], nil
	default:
		return "", fmt.Errorf("hostname %q is ambiguous: agents %s have it; give the host id", host, strings.Join(ids, ", "))
	}
}
