// Package app assembles a running Vigil server: the SQLite store, the
// fleet registry, the gRPC handlers and the gRPC server. vigil-server runs
// one; tests start one in-process with Start.
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

	"github.com/vigil-sensor/vigil/server/api"
	"github.com/vigil-sensor/vigil/server/fleet"
	"github.com/vigil-sensor/vigil/server/grpcserver"
	"github.com/vigil-sensor/vigil/server/store"
)

// Config says where a server listens and keeps its data.
type Config struct {
	// Listen is the TCP address to listen on, host:port. Port 0 picks a
	// free port; read it back with Addr. Empty means grpcserver.DefaultAddr.
	Listen string
	// DBPath is the SQLite database file. Its directory is created when
	// missing.
	DBPath string
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// Server is a running Vigil server.
type Server struct {
	store    *store.SQLite
	fleet    *fleet.Registry
	services *api.Services
	grpc     *grpcserver.Server
	lis      net.Listener
	log      *slog.Logger
	served   chan error
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
	if cfg.DBPath == "" {
		return nil, errors.New("start server: no database path")
	}
	if err := os.MkdirAll(filepath.Dir(cfg.DBPath), 0o750); err != nil {
		return nil, fmt.Errorf("start server: create database directory: %w", err)
	}
	if fi, err := os.Stat(cfg.DBPath); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("start server: database path %s is a directory, want a file", cfg.DBPath)
	}
	st, err := store.OpenSQLite(cfg.DBPath)
	if err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	lis, err := grpcserver.Listen(addr)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("start server: %w", err)
	}
	s := &Server{
		store:  st,
		fleet:  fleet.New(),
		grpc:   grpcserver.New(),
		lis:    lis,
		log:    log,
		served: make(chan error, 1),
	}
	s.services = api.New(st, s.fleet, log)
	s.services.Register(s.grpc.Registrar())
	go func() { s.served <- s.grpc.Serve(lis) }()
	return s, nil
}

// Addr is the address the server listens on, host:port, with the real
// port when Config.Listen asked for port 0.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Store is the server's store.
func (s *Server) Store() store.Store { return s.store }

// Fleet is the server's registry of agents.
func (s *Server) Fleet() *fleet.Registry { return s.fleet }

// Served returns a channel that receives the result of serving once
// serving stops: nil after Shutdown, an error when the listener failed.
func (s *Server) Served() <-chan error { return s.served }

// Shutdown ends open streams, stops the gRPC server (waiting for running
// calls until ctx ends, then closing connections) and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	s.services.Shutdown()
	stopErr := s.grpc.Stop(ctx)
	closeErr := s.store.Close()
	return errors.Join(stopErr, closeErr)
}
