package app

import (
	"context"

	"github.com/vigil-sensor/vigil/server/console"
)

// startConsole serves the web console on addr, when addr is not empty.
// It reads the store directly: reads are neither counted nor exported.
func (s *Server) startConsole(addr string) error {
	if addr == "" {
		return nil
	}
	h, err := console.Serve(addr, console.New(s.store, s.fleet, s.log))
	if err != nil {
		return err
	}
	s.console = h
	return nil
}

// ConsoleAddr is the address the web console is served on, host:port, or
// "" when there is none.
func (s *Server) ConsoleAddr() string {
	if s.console == nil {
		return ""
	}
	return s.console.Addr()
}

// stopConsole stops the web console, if any, ending its event streams.
func (s *Server) stopConsole(ctx context.Context) error {
	if s.console == nil {
		return nil
	}
	return s.console.Shutdown(ctx)
}
