package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/sensor"
)

// loadgenEnv makes the test binary a connect-storm workload instead of
// running tests: N loopback TCP connects, each accepted and closed, like
// scripts/bench/loadgen.
const loadgenEnv = "VIGIL_NET_LOADGEN"

func TestMain(m *testing.M) {
	if v := os.Getenv(loadgenEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err == nil {
			err = connects(n)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func connects(n int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		c.Close()
	}
	return nil
}

// runStorm times one connect storm of n connects in a child process.
func runStorm(b *testing.B, n int) time.Duration {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), loadgenEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("connect storm: %v", err)
	}
	return time.Since(start)
}

// enableBPFStats turns on kernel.bpf_stats_enabled until the benchmark ends.
func enableBPFStats(b *testing.B) {
	const path = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(path)
	if err != nil {
		b.Fatalf("read %s: %v", path, err)
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		b.Fatalf("enable bpf stats: %v", err)
	}
	b.Cleanup(func() { _ = os.WriteFile(path, old, 0o644) })
}

// BenchmarkConnectStorm times 20,000 loopback TCP connects without and with
// the sensor loaded (and its events decoded), alternating rounds, and
// reports the median ratio and the run time of each program per call; "all"
// loads every program, "tcp" only the TCP ones (NoUDPFlows and NoDNS):
//
//	go test -run '^$' -bench ConnectStorm -benchtime 1x ./agent/sensor/network/
func BenchmarkConnectStorm(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts Options
	}{{"all", Options{}}, {"tcp", Options{NoUDPFlows: true, NoDNS: true}}} {
		b.Run(bc.name, func(b *testing.B) { connectStorm(b, bc.opts) })
	}
}

func connectStorm(b *testing.B, opts Options) {
	const n, rounds = 20000, 5
	enableBPFStats(b)
	for b.Loop() {
		var without, with []time.Duration
		runs := map[string][2]uint64{}
		for range rounds {
			without = append(without, runStorm(b, n))

			s, c := startSensorB(b, opts)
			with = append(with, runStorm(b, n))
			for name, p := range s.Programs() {
				st, err := p.Stats()
				if err != nil {
					b.Fatalf("stats of %s: %v", name, err)
				}
				r := runs[name]
				runs[name] = [2]uint64{r[0] + uint64(st.Runtime), r[1] + st.RunCount}
			}
			lost, err := s.Lost()
			c.stop()
			if err != nil || lost != 0 {
				b.Errorf("%d events lost (%v)", lost, err)
			}
			// Connect and two closes per connection at least; the storm's last
			// connections may end before its accept loop reaches them.
			if c.count < 3*n {
				b.Errorf("%d events for %d connections, want at least %d", c.count, n, 3*n)
			}
		}
		slices.Sort(without)
		slices.Sort(with)
		mw, mo := with[rounds/2], without[rounds/2]
		b.ReportMetric(float64(mo.Microseconds())/1000, "ms-without")
		b.ReportMetric(float64(mw.Microseconds())/1000, "ms-with")
		b.ReportMetric(float64(mw)/float64(mo), "ratio")
		for name, r := range runs {
			if r[1] > 0 {
				b.Logf("%-18s %9d runs %7.1f ns/run %7.1f ns/connect", name, r[1],
					float64(r[0])/float64(r[1]), float64(r[0])/float64(rounds*n))
			}
		}
		b.Logf("without %v with %v", without, with)
	}
}

// countingReader drains a sensor and counts its events.
type countingReader struct {
	s     *Sensor
	count int
	done  chan struct{}
}

func startSensorB(b *testing.B, opts Options) (*Sensor, *countingReader) {
	opts.RingSize = 16 << 20
	s, err := Load(opts)
	if err != nil {
		b.Fatalf("load: %v", err)
	}
	c := &countingReader{s: s, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			_, err := s.Next()
			if errors.Is(err, sensor.ErrClosed) {
				return
			}
			c.count++
		}
	}()
	return s, c
}

func (c *countingReader) stop() {
	// Let the reader catch up with the last records before closing.
	time.Sleep(2 * sensor.DefaultPollInterval)
	_ = c.s.Close()
	<-c.done
}
