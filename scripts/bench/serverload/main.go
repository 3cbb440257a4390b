// Command serverload measures vigil-server under load, through its real
// binary and the real protocol: N simulated agents, each speaking
// AgentService.Connect through the agent's own client (agent/transport:
// hello, then incidents with sequence numbers, each kept pending until the
// server acknowledges it), send incidents that the agent's incident builder
// makes (process, ancestry, timeline, cause, recommended actions).
//
// For each store (SQLite, then PostgreSQL in a private, throwaway cluster
// started through internal/pgtest) it runs two phases, each on a fresh
// server and a fresh database:
//
//   - ingest: every agent sends -incidents incidents as fast as the server
//     acknowledges them; the figure is incidents acknowledged (so stored
//     and committed) per second, from the first send to the last ack.
//   - latency: -subscribers clients follow IncidentService.StreamIncidents
//     while the agents send -latency-incidents incidents in all at
//     -latency-rate a second; each incident carries its send time (in its
//     time field) and each subscriber records receive time minus send
//     time; the figures are p50, p99 and max over every delivery.
//
// It prints one line per phase and a summary in Markdown. Everything it
// starts (servers, PostgreSQL, agents' streams, temporary files) is
// stopped and removed when it ends, also on error, timeout or SIGINT.
//
//	serverload [-server bin/vigil-server] [-stores sqlite,postgres] [-agents 8] [-incidents 10000]
//	           [-subscribers 100] [-latency-incidents 1500] [-latency-rate 100] [-timeout 10m]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/transport"
	"github.com/vigil-sensor/vigil/internal/pgtest"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// config is what the flags set.
type config struct {
	serverBin        string
	stores           []string
	agents           int
	perAgent         int
	subscribers      int
	latencyIncidents int
	latencyRate      float64
	workDir          string
	timeout          time.Duration
	pgDurable        bool
	keepLogs         bool
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "serverload:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "serverload:", err)
		cancel()
		stop()
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("serverload", flag.ContinueOnError)
	fs.StringVar(&cfg.serverBin, "server", "bin/vigil-server", "the vigil-server binary to run (make build)")
	stores := fs.String("stores", "sqlite,postgres", "stores to measure, in order: sqlite, postgres")
	fs.IntVar(&cfg.agents, "agents", 8, "simulated agents")
	fs.IntVar(&cfg.perAgent, "incidents", 10_000, "incidents each agent sends in the ingest phase")
	fs.IntVar(&cfg.subscribers, "subscribers", 100, "StreamIncidents clients in the latency phase")
	fs.IntVar(&cfg.latencyIncidents, "latency-incidents", 1500, "incidents sent in all in the latency phase")
	fs.Float64Var(&cfg.latencyRate, "latency-rate", 100, "incidents a second, all agents together, in the latency phase")
	fs.StringVar(&cfg.workDir, "work", "", "directory for temporary files (default: the system's)")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "give up after this long in all")
	fs.BoolVar(&cfg.pgDurable, "pg-durable", true, "run PostgreSQL with fsync and synchronous commit on, as in production (false: the tests' fast settings)")
	fs.BoolVar(&cfg.keepLogs, "keep-logs", false, "keep the servers' logs (their directory is printed)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(*stores, ",") {
		switch s = strings.TrimSpace(s); s {
		case "sqlite", "postgres":
			cfg.stores = append(cfg.stores, s)
		case "":
		default:
			return cfg, fmt.Errorf("-stores: unknown store %q (want sqlite or postgres)", s)
		}
	}
	switch {
	case len(cfg.stores) == 0:
		return cfg, errors.New("-stores: no store")
	case cfg.agents < 1 || cfg.perAgent < 1 || cfg.subscribers < 0 || cfg.latencyIncidents < 0:
		return cfg, errors.New("-agents and -incidents must be positive, -subscribers and -latency-incidents not negative")
	case cfg.latencyIncidents > 0 && cfg.latencyRate <= 0:
		return cfg, errors.New("-latency-rate must be positive")
	}
	return cfg, nil
}

// ingestResult is what the ingest phase measured.
type ingestResult struct {
	store      string
	incidents  int
	elapsed    time.Duration
	cpu        cpuUse
	bytesPerIn int
}

// latencyResult is what the latency phase measured.
type latencyResult struct {
	store       string
	incidents   int
	subscribers int
	sendRate    float64 // achieved
	deliveries  int
	p50, p99    time.Duration
	max         time.Duration
	cpu         cpuUse
}

// cpuUse is CPU time spent during a phase.
type cpuUse struct {
	server, db, bench time.Duration
	wall              time.Duration
}

func run(ctx context.Context, cfg config) error {
	bin, err := filepath.Abs(cfg.serverBin)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable vigil-server (make build)", cfg.serverBin)
	}
	cfg.serverBin = bin
	work, err := os.MkdirTemp(cfg.workDir, "vigil-serverload-")
	if err != nil {
		return err
	}
	defer func() {
		if cfg.keepLogs {
			fmt.Fprintf(os.Stderr, "serverload: logs kept in %s\n", work)
			return
		}
		os.RemoveAll(work)
	}()

	printHeader(cfg)
	var ingests []ingestResult
	var latencies []latencyResult
	for _, st := range cfg.stores {
		var pg *pgtest.Server
		if st == "postgres" {
			pg, err = pgtest.Launch(pgtest.Options{Durable: cfg.pgDurable})
			if err != nil {
				return fmt.Errorf("start PostgreSQL: %w", err)
			}
			fmt.Printf("postgres: private server in %s (%s, durable=%v)\n", pg.Dir, pgVersion(pg), cfg.pgDurable)
		}
		in, lat, err := measureStore(ctx, cfg, work, st, pg)
		if pg != nil {
			if stopErr := pg.Stop(); stopErr != nil {
				err = errors.Join(err, fmt.Errorf("stop PostgreSQL: %w", stopErr))
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
		ingests = append(ingests, in)
		if lat != nil {
			latencies = append(latencies, *lat)
		}
	}
	printSummary(cfg, ingests, latencies)
	return nil
}

// measureStore runs both phases against one kind of store.
func measureStore(ctx context.Context, cfg config, work, st string, pg *pgtest.Server) (ingestResult, *latencyResult, error) {
	db := func(phase string) (string, error) {
		if pg != nil {
			return pg.Database(phase)
		}
		dir := filepath.Join(work, st+"-"+phase)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		return filepath.Join(dir, "server.db"), nil
	}
	dsn, err := db("ingest")
	if err != nil {
		return ingestResult{}, nil, err
	}
	srv, err := startServer(ctx, cfg.serverBin, dsn, filepath.Join(work, st+"-ingest.log"))
	if err != nil {
		return ingestResult{}, nil, err
	}
	in, err := ingest(ctx, cfg, srv, pg)
	in.store = st
	err = errors.Join(err, srv.stop())
	if err != nil {
		return in, nil, fmt.Errorf("ingest: %w", err)
	}
	fmt.Printf("%-8s ingest:  %d agents x %d incidents (%d B each on the wire): %d stored in %.2f s = %.0f incidents/s (CPU: server %.2f s, db %.2f s, this program %.2f s)\n",
		st, cfg.agents, cfg.perAgent, in.bytesPerIn, in.incidents, in.elapsed.Seconds(), in.rate(),
		in.cpu.server.Seconds(), in.cpu.db.Seconds(), in.cpu.bench.Seconds())
	if cfg.latencyIncidents == 0 {
		return in, nil, nil
	}

	if dsn, err = db("latency"); err != nil {
		return in, nil, err
	}
	if srv, err = startServer(ctx, cfg.serverBin, dsn, filepath.Join(work, st+"-latency.log")); err != nil {
		return in, nil, err
	}
	lat, err := latency(ctx, cfg, srv, pg)
	lat.store = st
	if err = errors.Join(err, srv.stop()); err != nil {
		return in, nil, fmt.Errorf("latency: %w", err)
	}
	fmt.Printf("%-8s latency: %d incidents at %.0f/s to %d subscribers (%d deliveries): p50 %.2f ms, p99 %.2f ms, max %.2f ms (CPU: server %.2f s, db %.2f s, this program %.2f s over %.1f s)\n",
		st, lat.incidents, lat.sendRate, lat.subscribers, lat.deliveries, ms(lat.p50), ms(lat.p99), ms(lat.max),
		lat.cpu.server.Seconds(), lat.cpu.db.Seconds(), lat.cpu.bench.Seconds(), lat.cpu.wall.Seconds())
	return in, &lat, nil
}

func (r ingestResult) rate() float64 { return float64(r.incidents) / r.elapsed.Seconds() }

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// server is a running vigil-server process.
type server struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{}
	log    string
}

// startedLine is how vigil-server logs the address it listens on.
var startedLine = regexp.MustCompile(`msg="vigil-server started" listen=(\S+)`)

// startServer starts vigil-server on a free loopback port with the given
// database (no metrics, no console) and waits until it says it listens.
// Its log goes to logPath.
func startServer(ctx context.Context, bin, db, logPath string) (*server, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--db", db, "--metrics", "", "--console", "")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &server{cmd: cmd, exited: make(chan struct{}), log: logPath}
	addr := make(chan string, 1)
	go func() {
		defer logFile.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			if m := startedLine.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(logFile, stderr)
	}()
	go func() { _ = cmd.Wait(); close(s.exited) }()
	select {
	case s.addr = <-addr:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("vigil-server exited at start (%v):\n%s", cmd.ProcessState, tail(logPath))
	case <-time.After(30 * time.Second):
		err = errors.New("vigil-server did not start within 30 s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = s.stop()
	return nil, fmt.Errorf("%w:\n%s", err, tail(logPath))
}

// stop ends the server with SIGTERM, or SIGKILL when it has not stopped
// within 15 s.
func (s *server) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("vigil-server did not stop within 15 s of SIGTERM; killed:\n%s", tail(s.log))
	}
	if st := s.cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("vigil-server exited with %v:\n%s", st, tail(s.log))
	}
	return nil
}

// tail returns the last lines of a log file.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// agents is a set of simulated agents: one transport.Client each.
type agents struct {
	clients []*transport.Client
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

// startAgents connects n agents to addr and waits until every one is
// connected. Each may keep up to maxPending incidents unacknowledged.
func startAgents(ctx context.Context, addr string, n, maxPending int) (*agents, error) {
	actx, cancel := context.WithCancel(ctx)
	a := &agents{cancel: cancel}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for i := range n {
		c := &transport.Client{
			Addr: addr,
			Hello: &vigilv1.Hello{
				HostId: hostID(i), Hostname: fmt.Sprintf("web-%02d", i+1), KernelRelease: "6.8.0-bench",
				AgentVersion: "serverload", Capabilities: []string{"process", "file", "login", "network"},
			},
			MaxPending: maxPending,
			Logger:     log.With("agent", hostID(i)),
		}
		a.clients = append(a.clients, c)
		a.done.Add(1)
		go func() {
			defer a.done.Done()
			_ = c.Run(actx)
		}()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		up := 0
		for _, c := range a.clients {
			if c.Stats().Connected {
				up++
			}
		}
		if up == n {
			return a, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			a.stop()
			return nil, fmt.Errorf("only %d of %d agents connected within 15 s", up, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hostID(i int) string { return fmt.Sprintf("bench-host-%02d", i+1) }

// totals adds up the agents' acknowledged and rejected incidents.
func (a *agents) totals() (acked, rejected uint64) {
	for _, c := range a.clients {
		st := c.Stats()
		acked += st.Acked
		rejected += st.Rejected
	}
	return acked, rejected
}

// waitAcked waits until the agents have want incidents acknowledged in all
// and returns when the last one was seen, or fails on a rejection or at
// the deadline.
func (a *agents) waitAcked(ctx context.Context, want uint64, deadline time.Duration) (time.Time, error) {
	end := time.Now().Add(deadline)
	for {
		acked, rejected := a.totals()
		now := time.Now()
		switch {
		case rejected > 0:
			return now, fmt.Errorf("the server rejected %d incidents", rejected)
		case acked >= want:
			return now, nil
		case now.After(end):
			return now, fmt.Errorf("%d of %d incidents acknowledged after %v", acked, want, deadline)
		case ctx.Err() != nil:
			return now, ctx.Err()
		}
		time.Sleep(time.Millisecond)
	}
}

// stop disconnects the agents.
func (a *agents) stop() {
	a.cancel()
	a.done.Wait()
}

// phaseDeadline bounds one phase's waiting.
const phaseDeadline = 3 * time.Minute

// ingest sends every agent's incidents as fast as they are acknowledged.
func ingest(ctx context.Context, cfg config, srv *server, pg *pgtest.Server) (ingestResult, error) {
	// Build every incident first, so that building them costs nothing
	// during the measurement.
	incs := make([][]*vigilv1.Incident, cfg.agents)
	size := 0
	for i := range incs {
		st := newStories(hostID(i), fmt.Sprintf("web-%02d", i+1))
		incs[i] = make([]*vigilv1.Incident, cfg.perAgent)
		for j := range incs[i] {
			inc, err := st.next()
			if err != nil {
				return ingestResult{}, err
			}
			incs[i][j] = inc
			size += proto.Size(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Incident{Incident: &vigilv1.IncidentReport{Sequence: uint64(j + 1), Incident: inc}}})
		}
	}
	total := cfg.agents * cfg.perAgent
	res := ingestResult{incidents: total, bytesPerIn: size / total}

	ag, err := startAgents(ctx, srv.addr, cfg.agents, cfg.perAgent)
	if err != nil {
		return res, err
	}
	defer ag.stop()
	meter := startMeter(srv, pg)
	start := time.Now()
	for i, c := range ag.clients {
		go func() {
			for _, inc := range incs[i] {
				if err := c.Send(inc); err != nil {
					panic(err) // MaxPending holds them all
				}
			}
		}()
	}
	end, err := ag.waitAcked(ctx, uint64(total), phaseDeadline)
	res.elapsed = end.Sub(start)
	res.cpu = meter.read()
	if err != nil {
		return res, err
	}
	return res, checkStored(ctx, srv.addr, uint64(total))
}

// checkStored checks that the server's newest incident has cursor want:
// the database was fresh, so every acknowledged incident is stored once.
func checkStored(ctx context.Context, addr string, want uint64) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := vigilv1.NewIncidentServiceClient(conn).ListIncidents(ctx, &vigilv1.ListIncidentsRequest{PageSize: 1})
	if err != nil {
		return fmt.Errorf("list incidents: %w", err)
	}
	var got uint64
	if len(resp.GetIncidents()) > 0 {
		got = resp.GetIncidents()[0].GetCursor()
	}
	if got != want {
		return fmt.Errorf("the newest stored incident has cursor %d, want %d", got, want)
	}
	return nil
}

// latency measures the time from an agent's send to each subscriber.
func latency(ctx context.Context, cfg config, srv *server, pg *pgtest.Server) (latencyResult, error) {
	res := latencyResult{incidents: cfg.latencyIncidents, subscribers: cfg.subscribers}
	sctx, cancelSubs := context.WithCancel(ctx)
	defer cancelSubs()

	// The subscribers, each on a connection of its own, as separate
	// clients would be; every stream is up before the first send.
	samples := make([][]time.Duration, cfg.subscribers)
	var subsDone sync.WaitGroup
	var subErr atomic.Pointer[error]
	for i := range cfg.subscribers {
		conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return res, err
		}
		defer conn.Close()
		stream, err := vigilv1.NewIncidentServiceClient(conn).StreamIncidents(sctx, &vigilv1.StreamIncidentsRequest{})
		if err != nil {
			return res, fmt.Errorf("subscriber %d: %w", i, err)
		}
		if _, err := stream.Header(); err != nil {
			return res, fmt.Errorf("subscriber %d: %w", i, err)
		}
		samples[i] = make([]time.Duration, 0, cfg.latencyIncidents)
		subsDone.Add(1)
		go func() {
			defer subsDone.Done()
			for len(samples[i]) < cfg.latencyIncidents {
				inc, err := stream.Recv()
				if err != nil {
					if sctx.Err() == nil {
						err = fmt.Errorf("subscriber %d after %d incidents: %w", i, len(samples[i]), err)
						subErr.CompareAndSwap(nil, &err)
					}
					return
				}
				samples[i] = append(samples[i], time.Since(inc.GetTime().AsTime()))
			}
		}()
	}

	incs := make([][]*vigilv1.Incident, cfg.agents)
	for i := range cfg.latencyIncidents {
		incs[i%cfg.agents] = append(incs[i%cfg.agents], nil)
	}
	for i := range incs {
		st := newStories(hostID(i), fmt.Sprintf("web-%02d", i+1))
		for j := range incs[i] {
			inc, err := st.next()
			if err != nil {
				return res, err
			}
			incs[i][j] = inc
		}
	}
	ag, err := startAgents(ctx, srv.addr, cfg.agents, cfg.latencyIncidents)
	if err != nil {
		return res, err
	}
	defer ag.stop()

	// Each agent sends at its share of the rate, the agents' sends spread
	// evenly over the interval. The send time goes in the incident's time.
	meter := startMeter(srv, pg)
	interval := time.Duration(float64(cfg.agents) / cfg.latencyRate * float64(time.Second))
	start := time.Now()
	var sent sync.WaitGroup
	lastSend := make([]time.Time, len(ag.clients))
	for i, c := range ag.clients {
		sent.Add(1)
		go func() {
			defer sent.Done()
			offset := interval * time.Duration(i) / time.Duration(cfg.agents)
			for j, inc := range incs[i] {
				if d := time.Until(start.Add(offset + interval*time.Duration(j))); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				inc.Time = timestamppb.Now()
				if err := c.Send(inc); err != nil {
					panic(err) // MaxPending holds them all
				}
			}
			lastSend[i] = time.Now()
		}()
	}
	sent.Wait()
	sendEnd := slices.MaxFunc(lastSend, time.Time.Compare)
	if _, err := ag.waitAcked(ctx, uint64(cfg.latencyIncidents), phaseDeadline); err != nil {
		return res, err
	}
	waited := make(chan struct{})
	go func() { subsDone.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(phaseDeadline):
		return res, errors.New("subscribers did not receive every incident in time")
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.cpu = meter.read()
	if p := subErr.Load(); p != nil {
		return res, *p
	}
	res.sendRate = float64(cfg.latencyIncidents) / sendEnd.Sub(start).Seconds()
	var all []time.Duration
	for _, s := range samples {
		all = append(all, s...)
	}
	slices.Sort(all)
	res.deliveries = len(all)
	res.p50, res.p99, res.max = quantile(all, 0.50), quantile(all, 0.99), all[len(all)-1]
	return res, nil
}

// quantile returns the q-quantile of sorted samples (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// meter measures the CPU time of the server, the database (PostgreSQL's
// processes; SQLite runs inside the server) and this program.
type meter struct {
	srv              *server
	pg               *pgtest.Server
	start            time.Time
	server, db, self time.Duration
}

func startMeter(srv *server, pg *pgtest.Server) *meter {
	m := &meter{srv: srv, pg: pg, start: time.Now()}
	m.server, m.db, m.self = m.sample()
	return m
}

// read returns the CPU used since startMeter.
func (m *meter) read() cpuUse {
	s, d, b := m.sample()
	return cpuUse{server: s - m.server, db: d - m.db, bench: b - m.self, wall: time.Since(m.start)}
}

func (m *meter) sample() (server, db, self time.Duration) {
	server = procCPU(m.srv.cmd.Process.Pid)
	if m.pg != nil {
		db = pgCPU(m.pg)
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return server, db, self
}

// clockTick is the unit of /proc/PID/stat's times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// procStat returns a process's parent pid and CPU time (user + system).
func procStat(pid int) (ppid int, cpu time.Duration, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	// The fields after the command name, which is in parentheses: state is
	// field 3 of the whole line, ppid 4, utime 14, stime 15.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ppid, time.Duration(ut+st) * clockTick, true
}

func procCPU(pid int) time.Duration {
	_, cpu, _ := procStat(pid)
	return cpu
}

// pgCPU returns the CPU time of the private PostgreSQL server's processes
// now running: the postmaster (its pid is the first line of
// postmaster.pid) and its children.
func pgCPU(pg *pgtest.Server) time.Duration {
	b, err := os.ReadFile(filepath.Join(pg.Dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	master, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return 0
	}
	total := procCPU(master)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, cpu, ok := procStat(pid); ok && ppid == master {
			total += cpu
		}
	}
	return total
}

// pgVersion returns the version of PostgreSQL's server programs.
func pgVersion(pg *pgtest.Server) string {
	out, err := exec.Command(filepath.Join(pg.BinDir, "postgres"), "--version").Output()
	if err != nil {
		return "PostgreSQL"
	}
	return strings.TrimSpace(string(out))
}

// printHeader says what is measured where.
func printHeader(cfg config) {
	var uts syscall.Utsname
	_ = syscall.Uname(&uts)
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("vigil-server load: %s; %d CPUs, Linux %s, %s; load average at start %s\n",
		cfg.serverBin, runtime.NumCPU(), utsString(uts.Release[:]), runtime.Version(),
		strings.Join(strings.Fields(string(load))[:3], " "))
}

func utsString(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// printSummary prints the results as Markdown tables, ready to quote.
func printSummary(cfg config, ingests []ingestResult, latencies []latencyResult) {
	fmt.Println()
	fmt.Printf("Ingest: %d agents, %d incidents each, acknowledged after commit (target: 20,000/s on SQLite)\n\n", cfg.agents, cfg.perAgent)
	fmt.Println("| store | incidents | seconds | incidents/s | server CPU µs/incident | db CPU µs/incident |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range ingests {
		n := float64(r.incidents)
		fmt.Printf("| %s | %d | %.2f | %s | %.0f | %.0f |\n", r.store, r.incidents, r.elapsed.Seconds(), thousands(r.rate()),
			float64(r.cpu.server.Microseconds())/n, float64(r.cpu.db.Microseconds())/n)
	}
	if len(latencies) == 0 {
		return
	}
	fmt.Println()
	fmt.Printf("Latency, agent send to subscriber: %d agents, %d subscribers (target: p99 under 50 ms)\n\n", cfg.agents, cfg.subscribers)
	fmt.Println("| store | incidents | sent/s | deliveries | p50 ms | p99 ms | max ms |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range latencies {
		fmt.Printf("| %s | %d | %.0f | %d | %.2f | %.2f | %.2f |\n", r.store, r.incidents, r.sendRate, r.deliveries,
			ms(r.p50), ms(r.p99), ms(r.max))
	}
}

// thousands formats a rate with thousands separators: 21,345.
func thousands(f float64) string {
	s := strconv.FormatInt(int64(math.Round(f)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
