// Command vigil-agent is Vigil's host sensor: it loads eBPF programs that
// watch every process on this host, decides which executions are
// suspicious, and sends incidents to the Vigil server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/vigil-sensor/vigil/agent/config"
	"github.com/vigil-sensor/vigil/agent/daemon"
	"github.com/vigil-sensor/vigil/agent/rules"
	"github.com/vigil-sensor/vigil/agent/seqmodel"
)

const usage = `vigil-agent watches the processes of this host with eBPF and reports
suspicious ones to a Vigil server as incidents.

Usage:
  vigil-agent [flags]                 run until Ctrl-C or SIGTERM
  vigil-agent --check [flags]         load every sensor once, print what attached, exit
  vigil-agent rules validate PATH...  check rule files; rules list: the rules in force
  vigil-agent replay FILE...          run recorded events (--record) through detection
  vigil-agent label benign ID         stop an incident's behaviour from raising it again
  vigil-agent respond COMMAND         have the agent kill, freeze, block, isolate, restore...
  vigil-agent enroll --server ADDR --token TOKEN --ca-fingerprint SHA256
                                      get this agent's client certificate from the server
  vigil-agent model eval --train DIR --normal DIR --attack DIR
                                      score the syscall-sequence model (e.g. on ADFA-LD)

It must run as root on a kernel with BTF (/sys/kernel/btf/vmlinux). It
loads its eBPF sensors (processes, files and syscalls, logins, network
flows), builds a process tree (seeded from /proc), judges every event with
its rules (built in, the rule set the server pushes, and
/etc/vigil/rules.d/*.yaml, each reloaded on change) and a baseline it learns, joins related signals into incidents and sends them
to the server, resending until the server acknowledges them. Label an
incident benign with "vigil-agent label" and the same behaviour stops
raising it. It logs to stderr. On Ctrl-C or SIGTERM it detaches every program
before it exits.

Settings come from the config file (default /etc/vigil/agent.yaml, optional;
see configs/agent.yaml for every key); flags given on the command line
override it.

Examples:
  sudo vigil-agent --server 127.0.0.1:7470
  sudo vigil-agent --config /etc/vigil/agent.yaml --check
  sudo vigil-agent --record /var/tmp/events.jsonl      # then: vigil-agent replay /var/tmp/events.jsonl

Flags:
`

func main() {
	os.Exit(run())
}

func run() int {
	if len(os.Args) > 1 {
		if sub, ok := subcommands[os.Args[1]]; ok {
			return sub(os.Args[2:], os.Stdout, os.Stderr)
		}
	}
	fs := flag.NewFlagSet("vigil-agent", flag.ContinueOnError)
	fs.SetOutput(os.Stdout) // --help is asked for: it goes to stdout
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	def := config.Default()
	configPath := fs.String("config", config.DefaultPath, "configuration `file` (YAML); optional unless given")
	server := fs.String("server", def.Server, "gRPC `address` of the Vigil server (env VIGIL_SERVER)")
	ringSize := def.Sensors.Process.RingSize
	fs.Var(&ringSize, "ring-size", "process ring buffer `size`: bytes, or with KiB/MiB (a power of two, at least one page)")
	tlsCA := fs.String("tls-ca", "", "connect with TLS, trusting the server certificates this CA `file` (PEM) signs (config tls.ca)")
	tlsCert := fs.String("tls-cert", "", "the agent's certificate `file` (PEM) for the server's --client-ca (config tls.cert)")
	tlsKey := fs.String("tls-key", "", "the private key `file` (PEM) of --tls-cert (config tls.key)")
	stateDir := fs.String("state-dir", def.StateDir, "`directory` for the agent's state")
	logLevel := fs.String("log-level", def.LogLevel, "log `level`: debug, info, warn or error")
	check := fs.Bool("check", false, "load every sensor once, print which hooks attached and which are unavailable, and exit")
	version := fs.Bool("version", false, "print the version and exit")
	record := fs.String("record", "", "append every event to `file` as JSON lines, for vigil-agent replay")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics at http://`address`/metrics, host:port (default off)")
	cpuProfile := fs.String("cpu-profile", "", "write a Go CPU profile of the run to `file` (for developers: go tool pprof)")
	if err := parseFlags(fs, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "vigil-agent: %v (see vigil-agent --help)\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "vigil-agent: unexpected argument %q (see vigil-agent --help)\n", fs.Arg(0))
		return 2
	}
	if *version {
		fmt.Println("vigil-agent", daemon.Version)
		return 0
	}

	// The file, then the environment, then flags given on the command line.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg, err := config.Load(*configPath, set["config"])
	if err != nil {
		fmt.Fprintf(os.Stderr, "vigil-agent: %v\n", err)
		return 2
	}
	source := *configPath
	if _, err := os.Stat(*configPath); err != nil {
		source = "built-in defaults (no " + *configPath + ")"
	}
	if v := os.Getenv("VIGIL_SERVER"); v != "" && !set["server"] {
		cfg.Server = v
	}
	if set["server"] {
		cfg.Server = *server
	}
	if set["tls-ca"] {
		cfg.TLS.CA = *tlsCA
	}
	if set["tls-cert"] {
		cfg.TLS.Cert = *tlsCert
	}
	if set["tls-key"] {
		cfg.TLS.Key = *tlsKey
	}
	if set["ring-size"] {
		cfg.Sensors.Process.RingSize = ringSize
	}
	if set["state-dir"] {
		cfg.StateDir = *stateDir
	}
	if set["log-level"] {
		cfg.LogLevel = *logLevel
	}
	// Without tls: keys, the files of 'vigil-agent enroll', if any.
	enrolled := cfg.UseEnrolled()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "vigil-agent: %v\n", err)
		return 2
	}

	if *check {
		if err := daemon.Check(cfg, source, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "vigil-agent: %v\n", err)
			return 1
		}
		return 0
	}

	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	log.Info("configuration", "source", source)
	if enrolled {
		log.Info("connecting with the enrolled certificate", "cert", cfg.TLS.Cert)
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vigil-agent: --cpu-profile: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "vigil-agent: --cpu-profile: %v\n", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}

	// The agent's live heap is small (the process tree, the rules, the
	// learned baseline: about 8 MB after an exec storm) and most of what it
	// allocates is garbage within one event, so a heap that may grow to
	// twice the live one mostly holds garbage in resident memory. Half
	// again the live heap keeps the agent within its memory budget for
	// little more collector time (GOGC in the environment still wins).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(agentGCPercent)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, daemon.Config{Agent: cfg, Logger: log, Record: *record, MetricsListen: *metricsAddr}); err != nil {
		log.Error("vigil-agent failed", "error", err)
		return 1
	}
	return 0
}

// agentGCPercent is the agent's GOGC unless the environment sets one.
const agentGCPercent = 50

// subcommands are the commands besides running the agent.
var subcommands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"enroll":  runEnroll,
	"label":   runLabel,
	"model":   runModel,
	"replay":  runReplay,
	"respond": runRespond,
	"rules":   rules.Command,
}

// runModel implements "vigil-agent model": today its one command, eval.
func runModel(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "eval" {
		return seqmodel.EvalCommand(args[1:], stdout, stderr)
	}
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprintln(stdout, "vigil-agent model eval --train DIR --normal DIR --attack DIR: learn the syscall-sequence model from normal traces and measure how well it tells attacks apart (see vigil-agent model eval --help)")
		return 0
	}
	fmt.Fprintln(stderr, "vigil-agent model: want a command: eval (see vigil-agent model eval --help)")
	return 2
}

// parseFlags parses args; the whole usage text is printed for --help only,
// not after every mistake.
func parseFlags(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
	}
	return err
}
