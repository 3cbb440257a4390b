// Package grpcserver runs a gRPC server on a TCP listener: construction
// with keepalive settings, the standard health and reflection services,
// serving and graceful stop. It knows nothing of Vigil's services; package
// api provides those.
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// DefaultAddr is the address vigil-server listens on and vigilctl dials
// when told nothing else.
const DefaultAddr = "127.0.0.1:7470"

// Keepalive settings. Agents and clients should ping no more often than
// MinClientPingInterval, or the server closes their connection.
const (
	// PingInterval is how long a connection may be idle before the server
	// pings the client.
	PingInterval = 30 * time.Second
	// PingTimeout is how long the server waits for the ping's answer
	// before it closes the connection.
	PingTimeout = 10 * time.Second
	// MinClientPingInterval is the shortest ping interval a client may use.
	MinClientPingInterval = 10 * time.Second
)

// MaxMsgSize is the largest message the server accepts, 4 MiB. A larger
// one fails its call with codes.ResourceExhausted.
const MaxMsgSize = 4 << 20

// Listen opens a TCP listener on addr (host:port; port 0 picks a free one).
// When the address is taken the error says so.
func Listen(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listen on %s: address already in use (is another vigil-server running?): %w", addr, err)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return lis, nil
}

// Server is a gRPC server with Vigil's transport settings.
type Server struct {
	gs     *grpc.Server
	health *health.Server
}

// New returns a server with keepalive settings and the MaxMsgSize limit on
// received messages, and opts added to them (TLS credentials and the
// interceptors of a Policy, for example). It
// offers grpc.health.v1.Health, whose overall status ("") is SERVING from
// the start (set the status of each service with Health), and server
// reflection, so that tools such as grpcurl can list and describe every
// service without the .proto files. Register services on Registrar before
// calling Serve.
func New(opts ...grpc.ServerOption) *Server {
	base := []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    PingInterval,
			Timeout: PingTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             MinClientPingInterval,
			PermitWithoutStream: true,
		}),
		grpc.MaxRecvMsgSize(MaxMsgSize),
	}
	s := &Server{gs: grpc.NewServer(append(base, opts...)...), health: health.NewServer()}
	healthpb.RegisterHealthServer(s.gs, s.health)
	reflection.Register(s.gs)
	return s
}

// Health is the server's health service. Set a service's status with
// SetServingStatus(name, status), name being the full service name such
// as "vigil.v1.IncidentService".
func (s *Server) Health() *health.Server { return s.health }

// Registrar is where services are registered.
func (s *Server) Registrar() grpc.ServiceRegistrar { return s.gs }

// Serve accepts connections on lis until Stop. It returns nil after Stop.
func (s *Server) Serve(lis net.Listener) error {
	if err := s.gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve grpc on %s: %w", lis.Addr(), err)
	}
	return nil
}

// Stop sets every health status to NOT_SERVING, stops accepting
// connections and waits for running calls to finish; when ctx ends first
// it closes every connection at once and returns ctx's error.
func (s *Server) Stop(ctx context.Context) error {
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() {
		s.gs.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		s.gs.Stop()
		<-stopped
		return fmt.Errorf("graceful stop: %w", ctx.Err())
	}
}
