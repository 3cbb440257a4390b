package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-sensor/vigil/agent/config"
	"github.com/vigil-sensor/vigil/agent/feedback"
	"github.com/vigil-sensor/vigil/agent/hostinfo"
	"github.com/vigil-sensor/vigil/agent/incident"
	"github.com/vigil-sensor/vigil/agent/pipeline"
	"github.com/vigil-sensor/vigil/agent/replay"
	"github.com/vigil-sensor/vigil/agent/rules"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/render"
)

const replayUsage = `vigil-agent replay [flags] FILE...

Runs recorded events through the agent's detection (rules, anomaly
baseline, correlation) without the kernel, and prints the incidents they
raise. Record events with: vigil-agent --record FILE. Files are read in
order as one stream: one JSON object per line, {"type":"exec","event":{...}}.
Blank lines and lines starting with # are skipped.

The baseline starts empty unless --state-dir names a directory with one (an
agent's state dir, or one written by an earlier replay with --save): give a
recording of normal activity first, then the one to judge, with a
--learning-period shorter than the first.

Examples:
  vigil-agent replay incident.jsonl
  vigil-agent replay --learning-period 1m --json normal.jsonl suspicious.jsonl
  vigil-agent replay --feedback /var/lib/vigil-agent/feedback.json day.jsonl

Flags:
`

// runReplay implements "vigil-agent replay".
func runReplay(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil-agent replay", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), replayUsage)
		fs.PrintDefaults()
	}
	def := config.Default().Detection
	rulesDir := fs.String("rules-dir", "", "operator rules `directory` loaded after the built-in set (default: built-in rules only)")
	stateDir := fs.String("state-dir", "", "`directory` with a learned baseline to start from (default: start empty)")
	save := fs.Bool("save", false, "write the learned baseline back to --state-dir at the end")
	learning := fs.Duration("learning-period", def.LearningPeriod, "how long after the first event the baseline only learns")
	window := fs.Duration("correlation-window", def.CorrelationWindow, "how long an incident stays open for related signals")
	noAnomaly := fs.Bool("no-anomaly", false, "rules only: no anomaly baseline")
	feedbackFile := fs.String("feedback", "", "analyst feedback `file` (feedback.json) whose suppressions apply")
	asJSON := fs.Bool("json", false, "print each incident as one JSON line (the final revision)")
	logLevel := fs.String("log-level", "warn", "log `level` on stderr: debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "vigil-agent replay: %v (see vigil-agent replay --help)\n", err)
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "vigil-agent replay: no recording given (see vigil-agent replay --help)")
		return 2
	}
	if *save && *stateDir == "" {
		fmt.Fprintln(stderr, "vigil-agent replay: --save needs --state-dir")
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "vigil-agent replay: --log-level %q: want debug, info, warn or error\n", *logLevel)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var dirs []string
	if *rulesDir != "" {
		dirs = append(dirs, *rulesDir)
	}
	set, err := rules.Load(dirs...)
	if err != nil {
		fmt.Fprintf(stderr, "vigil-agent replay: load rules: %v\n", err)
		return 1
	}
	engine := rules.NewEngine(set, rules.Options{})
	var order []string
	latest := map[string]*vigilv1.Incident{}
	users := &hostinfo.Users{}
	pipe, err := pipeline.New(pipeline.Options{
		Builder:           &incident.Builder{HostID: "replay", Hostname: "replay", UserName: users.Name},
		Engine:            engine,
		Anomaly:           !*noAnomaly,
		LearningPeriod:    *learning,
		StateDir:          *stateDir,
		CorrelationWindow: *window,
		Logger:            log,
		Emit: func(inc *vigilv1.Incident) {
			if _, ok := latest[inc.GetId()]; !ok {
				order = append(order, inc.GetId())
			}
			latest[inc.GetId()] = inc
		},
	})
	if err != nil {
		fmt.Fprintf(stderr, "vigil-agent replay: %v\n", err)
		return 1
	}
	if !*save {
		// Learn from the state dir, but leave it as it was.
		pipe.DiscardState()
	}
	if *feedbackFile != "" {
		list, err := feedback.Load(*feedbackFile)
		if err != nil {
			fmt.Fprintf(stderr, "vigil-agent replay: %v\n", err)
			return 1
		}
		pipe.SetSuppressions(list)
	}
	events := 0
	for _, file := range fs.Args() {
		list, err := replay.ReadFile(file)
		if err != nil {
			fmt.Fprintf(stderr, "vigil-agent replay: %v\n", err)
			return 1
		}
		for _, ev := range list {
			pipe.Handle(ev)
		}
		events += len(list)
	}
	if err := pipe.Close(); err != nil {
		fmt.Fprintf(stderr, "vigil-agent replay: %v\n", err)
		return 1
	}
	for _, id := range order {
		if err := printIncident(stdout, latest[id], *asJSON); err != nil {
			fmt.Fprintf(stderr, "vigil-agent replay: %v\n", err)
			return 1
		}
	}
	st := pipe.Stats()
	fmt.Fprintf(stderr, "replayed %d events: %d rule matches, %d anomalies, %d suppressed by feedback, %d incidents\n",
		events, st.RuleMatches, st.Findings, st.Suppressed, len(order))
	return 0
}

// printIncident writes one incident as a JSON line or as a short story.
func printIncident(w io.Writer, inc *vigilv1.Incident, asJSON bool) error {
	if asJSON {
		b, err := protojson.Marshal(inc)
		if err != nil {
			return fmt.Errorf("encode incident: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s  [%s]  %s  (score %.1f)\n", render.Severity(inc.GetSeverity()), inc.GetRuleId(),
		inc.GetAttack().GetTechniqueId(), render.Printable(inc.GetTitle()), inc.GetScore())
	if c := inc.GetCause(); c != "" {
		b.WriteString("  cause: " + render.Printable(c) + "\n")
	}
	b.WriteString(render.Timeline(inc.GetSignals()))
	for _, a := range inc.GetRecommendedActions() {
		fmt.Fprintf(&b, "  recommended: %s %s\n", render.Printable(a.GetAction()), render.Printable(a.GetTarget()))
	}
	_, err := io.WriteString(w, b.String()+"\n")
	return err
}
