// Package app assembles a running Vigil server: the store (SQLite or
// PostgreSQL), the fleet registry, the gRPC handlers and the gRPC server
// with its health and reflection services, the Prometheus metrics and the
// OCSF exports (file and webhook).
// vigil-server runs one; tests start one in-process with Start.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/api"
	"github.com/vigil-sensor/vigil/server/console"
	"github.com/vigil-sensor/vigil/server/fleet"
	"github.com/vigil-sensor/vigil/server/grpcserver"
	"github.com/vigil-sensor/vigil/server/metrics"
	"github.com/vigil-sensor/vigil/server/ocsf"
	"github.com/vigil-sensor/vigil/server/pki"
	"github.com/vigil-sensor/vigil/server/store"
)

// Config says where a server listens and keeps its data.
type Config struct {
	// Listen is the TCP address to listen on, host:port. Port 0 picks a
	// free port; read it back with Addr. Empty means grpcserver.DefaultAddr.
	Listen string
	// DBPath is the SQLite database file, whose directory is created when
	// missing, or a postgres:// or postgresql:// URL of a PostgreSQL
	// database, which several servers may share.
	DBPath string
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// MetricsListen is the TCP address of the Prometheus /metrics
	// endpoint, host:port (port 0 picks one; read it with MetricsAddr).
	// Empty means no metrics endpoint.
	MetricsListen string
	// ExportOCSF names a file that receives every stored incident (each
	// revision) as one line of OCSF Detection Finding JSON, appended.
	// Empty means no export.
	ExportOCSF string
	// ExportWebhook is an http:// or https:// URL that receives every
	// stored incident (each revision still stored when its turn comes) as
	// OCSF JSON lines, POSTed in batches and retried with backoff while
	// the endpoint fails (see ocsf.Webhook). Empty means no webhook.
	ExportWebhook string
	// ConsoleListen is the TCP address of the web console, host:port
	// (port 0 picks one; read it with ConsoleAddr). Empty means no console.
	ConsoleListen string

	// TLSCert and TLSKey are the server's certificate and key files (PEM).
	// When set, the server speaks only TLS. Empty means plaintext.
	TLSCert, TLSKey string
	// ClientCA is a PEM file of the CA that signs agents' certificates.
	// When set (with TLSCert), AgentService requires a client certificate
	// signed by it; other services do not ask for one.
	ClientCA string
	// TokensFile, when set, is a tokens file (see grpcserver.ParseTokens):
	// IncidentService, ResponseService, FleetService and RulesService require a
	// bearer token whose role allows the call.
	TokensFile string
	// AgentRate limits each agent's incident reports to this many a
	// second, with bursts of AgentBurst; reports over the limit are read
	// later, not refused. Zero means no limit.
	AgentRate float64
	// AgentBurst is the burst of AgentRate; zero means 5 s worth.
	AgentBurst int
	// EnrollCA is a CA directory of 'vigil-server ca init' whose key signs
	// the certificates of agents that enroll (EnrollmentService). It needs
	// TLSCert; ClientCA defaults to its ca.pem, and the server presents
	// that CA in its chain. Empty means no enrollment.
	EnrollCA string
	// EnrollTokens is the enrollment tokens file (see package enroll);
	// empty means enroll-tokens.yaml in EnrollCA.
	EnrollTokens string
}

// MethodRoles is the least role each client method needs when tokens are
// checked. Methods not listed need RoleAdmin.
var MethodRoles = map[string]grpcserver.Role{
	vigilv1.IncidentService_ListIncidents_FullMethodName:   grpcserver.RoleViewer,
	vigilv1.IncidentService_GetIncident_FullMethodName:     grpcserver.RoleViewer,
	vigilv1.IncidentService_StreamIncidents_FullMethodName: grpcserver.RoleViewer,
	vigilv1.IncidentService_UpdateIncident_FullMethodName:  grpcserver.RoleResponder,
	vigilv1.ResponseService_ListActions_FullMethodName:     grpcserver.RoleViewer,
	vigilv1.ResponseService_RequestAction_FullMethodName:   grpcserver.RoleResponder,
	vigilv1.FleetService_ListAgents_FullMethodName:         grpcserver.RoleViewer,
	vigilv1.RulesService_GetRuleSet_FullMethodName:         grpcserver.RoleViewer,
	vigilv1.RulesService_SetRuleSet_FullMethodName:         grpcserver.RoleAdmin,
}

// serverOptions builds the TLS credentials, the access policy and the
// interceptors cfg asks for, the metrics interceptor last. It also returns
// the policy, which the web console enforces too.
func serverOptions(cfg Config, m *metrics.Server) ([]grpc.ServerOption, *grpcserver.Policy, error) {
	var opts []grpc.ServerOption
	policy := &grpcserver.Policy{MethodRoles: MethodRoles}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, nil, errors.New("tls certificate and key must be given together")
	}
	if cfg.ClientCA != "" && cfg.TLSCert == "" {
		return nil, nil, errors.New("a client CA needs the server's tls certificate and key")
	}
	if cfg.TLSCert != "" {
		tc, err := pki.ServerConfig(cfg.TLSCert, cfg.TLSKey, cfg.ClientCA)
		if err != nil {
			return nil, nil, err
		}
		if err := chainEnrollCA(tc, cfg.EnrollCA); err != nil {
			return nil, nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
		if cfg.ClientCA != "" {
			policy.CertServices = map[string]bool{vigilv1.AgentService_ServiceDesc.ServiceName: true}
		}
	}
	if cfg.TokensFile != "" {
		t, err := grpcserver.LoadTokens(cfg.TokensFile)
		if err != nil {
			return nil, nil, err
		}
		policy.Tokens = t
		policy.TokenServices = map[string]bool{
			vigilv1.IncidentService_ServiceDesc.ServiceName: true,
			vigilv1.ResponseService_ServiceDesc.ServiceName: true,
			vigilv1.FleetService_ServiceDesc.ServiceName:    true,
			vigilv1.RulesService_ServiceDesc.ServiceName:    true,
		}
	}
	streams := []grpc.StreamServerInterceptor{policy.StreamInterceptor()}
	if cfg.AgentRate < 0 || cfg.AgentBurst < 0 {
		return nil, nil, errors.New("agent rate and burst must not be negative")
	}
	if cfg.AgentRate > 0 {
		burst := cfg.AgentBurst
		if burst == 0 {
			burst = int(max(1, 5*cfg.AgentRate))
		}
		streams = append(streams, newAgentLimiter(cfg.AgentRate, burst).StreamInterceptor())
	}
	streams = append(streams, m.StreamInterceptor())
	return append(opts, grpc.ChainUnaryInterceptor(policy.UnaryInterceptor()), grpc.ChainStreamInterceptor(streams...)), policy, nil
}

// Server is a running Vigil server.
type Server struct {
	store    store.Store
	fleet    *fleet.Registry
	services *api.Services
	grpc     *grpcserver.Server
	lis      net.Listener
	log      *slog.Logger
	served   chan error
	policy   *grpcserver.Policy // who may call what, for gRPC and the console

	observed *observedStore
	metrics  *metrics.HTTPServer // nil without Config.MetricsListen
	console  *console.HTTPServer // nil without Config.ConsoleListen
}

// Start opens the store, listens and serves in the background until
// Shutdown.
func Start(cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	addr := cfg.Listen
	if addr == "" {
		addr = grpcserver.DefaultAddr
	}
	enroller, err := enrollment(&cfg)
	if err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	st, err := openStore(cfg.DBPath)
	if err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	lis, err := grpcserver.Listen(addr)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("start server: %w", err)
	}
	reg := fleet.New()
	m := metrics.NewServer(reg)
	opts, policy, err := serverOptions(cfg, m)
	if err != nil {
		lis.Close()
		st.Close()
		return nil, fmt.Errorf("start server: %w", err)
	}
	s := &Server{
		store:    st,
		fleet:    reg,
		grpc:     grpcserver.New(opts...),
		lis:      lis,
		log:      log,
		served:   make(chan error, 1),
		policy:   policy,
		observed: &observedStore{Store: st, metrics: m, log: log},
	}
	if err := s.startObservability(cfg, m); err != nil {
		lis.Close()
		st.Close()
		return nil, fmt.Errorf("start server: %w", err)
	}
	s.services = api.New(s.observed, s.fleet, log)
	s.services.Register(s.grpc.Registrar())
	s.registerEnrollment(enroller)
	for _, name := range []string{vigilv1.IncidentService_ServiceDesc.ServiceName, vigilv1.AgentService_ServiceDesc.ServiceName,
		vigilv1.ResponseService_ServiceDesc.ServiceName, vigilv1.FleetService_ServiceDesc.ServiceName,
		vigilv1.RulesService_ServiceDesc.ServiceName} {
		s.grpc.Health().SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	if err := s.startConsole(cfg.ConsoleListen); err != nil {
		lis.Close()
		s.Shutdown(context.Background())
		return nil, fmt.Errorf("start server: %w", err)
	}
	go func() { s.served <- s.grpc.Serve(lis) }()
	return s, nil
}

// startObservability opens the OCSF export file, starts the OCSF webhook
// and the metrics endpoint, as configured.
func (s *Server) startObservability(cfg Config, m *metrics.Server) error {
	var hook *ocsf.Webhook
	if cfg.ExportWebhook != "" {
		u, err := ocsf.ParseWebhookURL(cfg.ExportWebhook)
		if err != nil {
			return err
		}
		hook = &ocsf.Webhook{URL: u, Logger: s.log, OnResult: m.ObserveExport}
	}
	if cfg.ExportOCSF != "" {
		f, err := openOCSF(cfg.ExportOCSF)
		if err != nil {
			return fmt.Errorf("open ocsf export file: %w", err)
		}
		s.observed.export = f
	}
	if cfg.MetricsListen != "" {
		h, err := metrics.Serve(cfg.MetricsListen, m.Registry)
		if err != nil {
			if s.observed.export != nil {
				s.observed.export.close()
			}
			return err
		}
		s.metrics = h
	}
	if hook != nil {
		hook.Start()
		s.observed.webhook = hook
	}
	return nil
}

// MetricsAddr is the address of the /metrics endpoint, host:port, or ""
// when there is none.
func (s *Server) MetricsAddr() string {
	if s.metrics == nil {
		return ""
	}
	return s.metrics.Addr()
}

// openTimeout bounds connecting to a PostgreSQL database at startup.
const openTimeout = 30 * time.Second

// openStore opens the PostgreSQL database when db is a postgres:// URL and
// the SQLite file db otherwise, creating the file's directory.
func openStore(db string) (store.Store, error) {
	if db == "" {
		return nil, errors.New("no database path")
	}
	if store.IsPostgresURL(db) {
		ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
		defer cancel()
		return store.OpenPostgres(ctx, db)
	}
	if err := os.MkdirAll(filepath.Dir(db), 0o750); err != nil {
		return nil, fmt.Errorf("create database directory: %w", err)
	}
	if fi, err := os.Stat(db); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("database path %s is a directory, want a file", db)
	}
	return store.OpenSQLite(db)
}

// Addr is the address the server listens on, host:port, with the real
// port when Config.Listen asked for port 0.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Store is the server's store, as the handlers use it: Puts through it
// are counted in the metrics and exported.
func (s *Server) Store() store.Store { return s.observed }

// Fleet is the server's registry of agents.
func (s *Server) Fleet() *fleet.Registry { return s.fleet }

// Served returns a channel that receives the result of serving once
// serving stops: nil after Shutdown, an error when the listener failed.
func (s *Server) Served() <-chan error { return s.served }

// Shutdown ends open streams, stops the gRPC server (waiting for running
// calls until ctx ends, then closing connections), stops the metrics
// endpoint, closes the export file, gives the OCSF webhook until ctx ends
// to deliver what it holds, and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	s.services.Shutdown()
	stopErr := s.grpc.Stop(ctx)
	consoleErr := s.stopConsole(ctx)
	var metricsErr, exportErr error
	if s.metrics != nil {
		metricsErr = s.metrics.Shutdown(ctx)
	}
	if s.observed.export != nil {
		exportErr = s.observed.export.close()
	}
	var webhookErr error
	if s.observed.webhook != nil {
		webhookErr = s.observed.webhook.Close(ctx)
	}
	closeErr := s.store.Close()
	return errors.Join(stopErr, consoleErr, metricsErr, exportErr, webhookErr, closeErr)
}
