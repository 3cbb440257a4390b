// Package metrics exposes vigil-server's Prometheus metrics: what the
// ingest stored, how long the store took, who is connected and what the
// agents report about themselves in their heartbeats. Serve puts them on an
// HTTP listener at /metrics.
//
// Metrics:
//
//	vigil_server_incidents_received_total    counter: incident reports given to the store (Put calls)
//	vigil_server_incidents_stored_total      counter: reports stored (new incidents and higher revisions)
//	vigil_server_incidents_duplicate_total   counter: reports the store already had (same or higher revision)
//	vigil_server_incidents_failed_total      counter: reports the store refused or failed to store
//	vigil_server_store_put_seconds           histogram: time of one store Put
//	vigil_server_export_lines_total          counter: OCSF lines written by --export-ocsf or delivered by --export-webhook
//	vigil_server_export_errors_total         counter: OCSF lines that could not be written, or whose webhook POST failed (each attempt)
//	vigil_server_stream_clients              gauge: open IncidentService.StreamIncidents calls
//	vigil_server_agents_connected            gauge: agents with an open Connect stream
//	vigil_server_agent_up{host,host_id}      gauge: 1 while that agent is connected, else 0
//	vigil_server_agent_events_total{host,host_id}
//	                                         counter: events the agent decoded (latest heartbeat)
//	vigil_server_agent_events_lost_total{host,host_id,family}
//	                                         counter: events the kernel dropped, per family (latest heartbeat)
//	vigil_server_agent_rss_bytes{host,host_id}
//	                                         gauge: the agent's resident memory (latest heartbeat)
//	vigil_server_agent_pending_incidents{host,host_id}
//	                                         gauge: incidents the agent has sent and not seen acknowledged
//
// The per-agent counters come from the agent's own counts since it started,
// so they reset when an agent restarts; Prometheus's rate() handles that.
// host is the agent's hostname (its host id when it sent none).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/fleet"
)

// DefaultAddr is where vigil-server serves /metrics unless told otherwise.
const DefaultAddr = "127.0.0.1:9470"

// Server holds vigil-server's metrics. Its methods are safe for concurrent
// use.
type Server struct {
	// Registry holds every metric below, and the fleet's.
	Registry *prometheus.Registry

	received, stored, duplicates, failed prometheus.Counter
	putSeconds                           prometheus.Histogram
	exportLines, exportErrors            prometheus.Counter
	streamClients                        prometheus.Gauge
}

// NewServer returns the server's metrics, reading agents from reg at each
// scrape.
func NewServer(reg *fleet.Registry) *Server {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &Server{
		Registry:     prometheus.NewRegistry(),
		received:     counter("vigil_server_incidents_received_total", "Incident reports given to the store."),
		stored:       counter("vigil_server_incidents_stored_total", "Incident reports stored: new incidents and higher revisions."),
		duplicates:   counter("vigil_server_incidents_duplicate_total", "Incident reports the store already had at the same or a higher revision."),
		failed:       counter("vigil_server_incidents_failed_total", "Incident reports the store refused or failed to store."),
		exportLines:  counter("vigil_server_export_lines_total", "OCSF lines appended to the --export-ocsf file or delivered to the --export-webhook endpoint."),
		exportErrors: counter("vigil_server_export_errors_total", "OCSF lines that could not be written, or whose webhook POST failed (counted at each attempt)."),
		putSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vigil_server_store_put_seconds",
			Help:    "Time of one store Put, in seconds.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		streamClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_server_stream_clients",
			Help: "Open IncidentService.StreamIncidents calls.",
		}),
	}
	m.Registry.MustRegister(m.received, m.stored, m.duplicates, m.failed, m.putSeconds,
		m.exportLines, m.exportErrors, m.streamClients, &fleetCollector{reg: reg})
	return m
}

// ObservePut records one store Put that took d.
func (m *Server) ObservePut(d time.Duration, inserted bool, err error) {
	m.received.Inc()
	m.putSeconds.Observe(d.Seconds())
	switch {
	case err != nil:
		m.failed.Inc()
	case inserted:
		m.stored.Inc()
	default:
		m.duplicates.Inc()
	}
}

// ObserveExport records lines OCSF lines of an export sink: written or
// delivered when err is nil, failed otherwise.
func (m *Server) ObserveExport(lines int, err error) {
	if err != nil {
		m.exportErrors.Add(float64(lines))
		return
	}
	m.exportLines.Add(float64(lines))
}

// StreamInterceptor counts open StreamIncidents calls.
func (m *Server) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if info.FullMethod == vigilv1.IncidentService_StreamIncidents_FullMethodName {
			m.streamClients.Inc()
			defer m.streamClients.Dec()
		}
		return handler(srv, ss)
	}
}

// Descriptions of the metrics read from the fleet at each scrape.
var (
	agentsConnectedDesc = prometheus.NewDesc("vigil_server_agents_connected",
		"Agents with an open Connect stream.", nil, nil)
	agentUpDesc = prometheus.NewDesc("vigil_server_agent_up",
		"1 while the agent is connected, 0 after it went away.", []string{"host", "host_id"}, nil)
	agentEventsDesc = prometheus.NewDesc("vigil_server_agent_events_total",
		"Events the agent decoded since it started, from its latest heartbeat.", []string{"host", "host_id"}, nil)
	agentLostDesc = prometheus.NewDesc("vigil_server_agent_events_lost_total",
		"Events the kernel could not put into a full ring buffer since the agent started, per family, from its latest heartbeat.",
		[]string{"host", "host_id", "family"}, nil)
	agentRSSDesc = prometheus.NewDesc("vigil_server_agent_rss_bytes",
		"The agent's resident memory, from its latest heartbeat.", []string{"host", "host_id"}, nil)
	agentPendingDesc = prometheus.NewDesc("vigil_server_agent_pending_incidents",
		"Incidents the agent sent and has not seen acknowledged, from its latest heartbeat.", []string{"host", "host_id"}, nil)
)

// fleetCollector reads the fleet registry at each scrape.
type fleetCollector struct {
	reg *fleet.Registry
}

// Describe implements prometheus.Collector.
func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{agentsConnectedDesc, agentUpDesc, agentEventsDesc, agentLostDesc, agentRSSDesc, agentPendingDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	connected := 0
	for _, a := range c.reg.Agents() {
		host := a.Hello.GetHostname()
		if host == "" {
			host = a.HostID
		}
		up := 0.0
		if a.Connections > 0 {
			connected++
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(agentUpDesc, prometheus.GaugeValue, up, host, a.HostID)
		hb := a.LastHeartbeat
		if hb == nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(agentEventsDesc, prometheus.CounterValue, float64(hb.GetEventsTotal()), host, a.HostID)
		for family, n := range hb.GetEventsLost() {
			ch <- prometheus.MustNewConstMetric(agentLostDesc, prometheus.CounterValue, float64(n), host, a.HostID, family)
		}
		ch <- prometheus.MustNewConstMetric(agentRSSDesc, prometheus.GaugeValue, float64(hb.GetRssBytes()), host, a.HostID)
		ch <- prometheus.MustNewConstMetric(agentPendingDesc, prometheus.GaugeValue, float64(hb.GetPendingIncidents()), host, a.HostID)
	}
	ch <- prometheus.MustNewConstMetric(agentsConnectedDesc, prometheus.GaugeValue, float64(connected))
}

// HTTPServer serves /metrics on a TCP listener.
type HTTPServer struct {
	srv *http.Server
	lis net.Listener
}

// Serve listens on addr (host:port; port 0 picks a free one) and serves
// the metrics of g at /metrics in the background until Shutdown.
func Serve(addr string, g prometheus.Gatherer) (*HTTPServer, error) {
	lis, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("metrics: listen on %s: address already in use: %w", addr, err)
	}
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	h := &HTTPServer{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		lis: lis,
	}
	go h.srv.Serve(lis) //nolint:errcheck // ends with ErrServerClosed at Shutdown
	return h, nil
}

// Addr is the address the metrics are served on, host:port.
func (h *HTTPServer) Addr() string { return h.lis.Addr().String() }

// Shutdown stops serving, waiting for running scrapes until ctx ends.
func (h *HTTPServer) Shutdown(ctx context.Context) error {
	if err := h.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	return nil
}
