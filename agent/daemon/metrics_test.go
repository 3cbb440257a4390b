package daemon

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

func TestMetricsScrape(t *testing.T) {
	st := &stats{families: familyCounts{"process": &atomic.Uint64{}, "file": &atomic.Uint64{}}}
	st.families["process"].Add(120)
	st.families["file"].Add(7)
	st.events.Add(127)
	st.incidents.Add(3)
	st.responses.add("done")
	st.responses.add("done")
	st.responses.add("refused")
	m := &agentMetrics{
		stats:      st,
		lost:       func() map[string]uint64 { return map[string]uint64{"process": 5, "file": 0} },
		evalErrors: func() uint64 { return 2 },
		pending:    func() uint64 { return 1 },
		rss:        func() uint64 { return 48 << 20 },
	}
	stop, addr, err := startMetrics("127.0.0.1:0", m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var samples []string
	for line := range strings.Lines(string(body)) {
		if !strings.HasPrefix(line, "#") {
			samples = append(samples, strings.TrimSpace(line))
		}
	}
	want := []string{
		`vigil_agent_events_lost_total{family="file"} 0`,
		`vigil_agent_events_lost_total{family="process"} 5`,
		`vigil_agent_events_total{family="file"} 7`,
		`vigil_agent_events_total{family="process"} 120`,
		`vigil_agent_incidents_total 3`,
		`vigil_agent_pending_incidents 1`,
		`vigil_agent_responses_total{result="done"} 2`,
		`vigil_agent_responses_total{result="refused"} 1`,
		`vigil_agent_rss_bytes 5.0331648e+07`,
		`vigil_agent_rule_eval_errors_total 2`,
	}
	if got := strings.Join(samples, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("samples:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}

	// Off when no address is given.
	stop, addr, err = startMetrics("", m, nil)
	if err != nil || addr != "" {
		t.Errorf(`startMetrics("") = %q, %v`, addr, err)
	}
	stop()
}
