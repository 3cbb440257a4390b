package app

import (
	"context"
	"net"
	"strings"

	"github.com/vigil-sensor/vigil/server/console"
)

// startConsole serves the web console on addr, when addr is not empty.
// It reads the store directly (reads are neither counted nor exported),
// runs actions and triage through the gRPC handlers, and enforces the
// server's token policy. A console on a loopback address answers only
// requests for a loopback host name, against DNS rebinding.
func (s *Server) startConsole(addr string) error {
	if addr == "" {
		return nil
	}
	h, err := console.Serve(addr, console.New(console.Config{
		Store:        s.store,
		Fleet:        s.fleet,
		Incidents:    s.services.Incident,
		Responses:    s.services.Response,
		Policy:       s.policy,
		LoopbackOnly: loopbackAddr(addr),
		Log:          s.log,
	}))
	if err != nil {
		return err
	}
	s.console = h
	return nil
}

// loopbackAddr reports whether addr, host:port, listens on loopback only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
