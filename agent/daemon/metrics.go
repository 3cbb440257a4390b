package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The agent's Prometheus metrics, served at /metrics when
// Config.MetricsListen is set:
//
//	vigil_agent_events_total{family}         counter: events decoded, per family
//	vigil_agent_events_lost_total{family}    counter: events the kernel dropped on a full ring buffer
//	vigil_agent_incidents_total              counter: incident revisions emitted
//	vigil_agent_responses_total{result}      counter: response records by result (done, refused, failed, dry-run)
//	vigil_agent_rule_eval_errors_total       counter: rule evaluations that failed at run time
//	vigil_agent_pending_incidents            gauge: incidents sent and not yet acknowledged
//	vigil_agent_rss_bytes                    gauge: the agent's resident memory
var (
	eventsDesc     = prometheus.NewDesc("vigil_agent_events_total", "Events decoded, per family.", []string{"family"}, nil)
	lostDesc       = prometheus.NewDesc("vigil_agent_events_lost_total", "Events the kernel could not put into a full ring buffer, per family.", []string{"family"}, nil)
	incidentsDesc  = prometheus.NewDesc("vigil_agent_incidents_total", "Incident revisions emitted.", nil, nil)
	responsesDesc  = prometheus.NewDesc("vigil_agent_responses_total", "Response records, by result.", []string{"result"}, nil)
	evalErrorsDesc = prometheus.NewDesc("vigil_agent_rule_eval_errors_total", "Rule evaluations that failed at run time.", nil, nil)
	pendingDesc    = prometheus.NewDesc("vigil_agent_pending_incidents", "Incidents sent to the server and not yet acknowledged.", nil, nil)
	rssDesc        = prometheus.NewDesc("vigil_agent_rss_bytes", "The agent's resident memory.", nil, nil)
)

// familyCounts counts events per family. The families are fixed before
// the readers start, so counting needs no lock.
type familyCounts map[string]*atomic.Uint64

// resultCounts counts response records by result.
type resultCounts struct {
	mu sync.Mutex
	n  map[string]uint64
}

func (c *resultCounts) add(result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]uint64{}
	}
	c.n[result]++
}

func (c *resultCounts) snapshot() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

// agentMetrics reads the agent's counters at each scrape.
type agentMetrics struct {
	stats      *stats
	lost       func() map[string]uint64
	evalErrors func() uint64
	pending    func() uint64
	rss        func() uint64
}

// Describe implements prometheus.Collector.
func (m *agentMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{eventsDesc, lostDesc, incidentsDesc, responsesDesc, evalErrorsDesc, pendingDesc, rssDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *agentMetrics) Collect(ch chan<- prometheus.Metric) {
	for family, n := range m.stats.families {
		ch <- prometheus.MustNewConstMetric(eventsDesc, prometheus.CounterValue, float64(n.Load()), family)
	}
	for family, n := range m.lost() {
		ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(n), family)
	}
	ch <- prometheus.MustNewConstMetric(incidentsDesc, prometheus.CounterValue, float64(m.stats.incidents.Load()))
	for result, n := range m.stats.responses.snapshot() {
		ch <- prometheus.MustNewConstMetric(responsesDesc, prometheus.CounterValue, float64(n), result)
	}
	ch <- prometheus.MustNewConstMetric(evalErrorsDesc, prometheus.CounterValue, float64(m.evalErrors()))
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(m.pending()))
	ch <- prometheus.MustNewConstMetric(rssDesc, prometheus.GaugeValue, float64(m.rss()))
}

// startMetrics serves m at http://addr/metrics until the returned stop is
// called; addr "" serves nothing. bound is the address listened on.
func startMetrics(addr string, m *agentMetrics, log *slog.Logger) (stop func(), bound string, err error) {
	if addr == "" {
		return func() {}, "", nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(lis) //nolint:errcheck // ends with ErrServerClosed at stop
	log.Info("metrics served", "url", "http://"+lis.Addr().String()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, lis.Addr().String(), nil
}
