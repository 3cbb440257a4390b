package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/correlate"
	"github.com/vigil-sensor/vigil/agent/feedback"
	"github.com/vigil-sensor/vigil/agent/incident"
	"github.com/vigil-sensor/vigil/agent/pipeline"
	"github.com/vigil-sensor/vigil/agent/proctree"
	"github.com/vigil-sensor/vigil/agent/replay"
	"github.com/vigil-sensor/vigil/agent/rules"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// feedbackPoll is how often the agent looks for new analyst feedback.
const feedbackPoll = 2 * time.Second

// savePeriod is how often the learned state is written to the state dir.
const savePeriod = 5 * time.Minute

// detection is the agent's detection path with what keeps it current: the
// rules and their reloading, the analyst feedback, the incident journal and
// the optional recording of events.
type detection struct {
	log    *slog.Logger
	engine *rules.Engine
	// loader compiles the rules from their layers; watcher reloads them
	// when the rules directory changes or the server's set does.
	loader  *rules.Loader
	watcher *rules.Watcher
	// serverSet is where the last server rule set applied is kept.
	serverSet string
	pipe      *pipeline.Pipeline
	journal   *feedback.Journal
	recorder  *replay.Writer
	rulesDir  string
	feedback  string
	fbState   feedback.FileState
	send      func(*vigilv1.Incident) error
	allow     rules.Allow
	// onRules is told of every rule set the watcher loads.
	onRules func(*rules.Set)
}

// newDetection loads the rules (the built-in set, the server's set the
// agent last applied and the operator's directory) and the learned state,
// and starts recording when asked.
func newDetection(cfg Config, log *slog.Logger, tree *proctree.Tree, b *incident.Builder,
	send func(*vigilv1.Incident) error, st *stats, onResponse func(correlate.Signal, string)) (*detection, error) {
	a := cfg.Agent
	d := &detection{
		log:       log,
		journal:   &feedback.Journal{Path: filepath.Join(a.StateDir, feedback.JournalName)},
		rulesDir:  a.Detection.RulesDir,
		feedback:  filepath.Join(a.StateDir, feedback.FileName),
		send:      send,
		serverSet: filepath.Join(a.StateDir, rules.ServerSetName),
	}
	var dirs []string
	if d.rulesDir != "" {
		dirs = append(dirs, d.rulesDir)
	}
	server, err := rules.LoadServerSet(d.serverSet)
	if err != nil {
		log.Error("server rule set not loaded: running without it until the server sends it again", "error", err)
		server = nil
	}
	d.loader = rules.NewLoader(server, dirs...)
	set, err := d.loader.Load()
	if err != nil {
		set, err = d.fallbackRules(server, dirs, err)
		if err != nil {
			return nil, err
		}
	}
	if v, _ := set.Server(); v > 0 {
		log.Info("server rule set in force", "version", v, "file", d.serverSet)
	}
	d.engine = rules.NewEngine(set, rules.Options{Probe: rules.ProcProbe{Root: "/proc"}})
	d.watcher = rules.NewWatcher(d.engine, dirs, rules.WatchOptions{
		Load: d.loader.Load,
		OnReload: func(s *rules.Set) {
			v, _ := s.Server()
			d.log.Info("rules reloaded", "rules", len(s.Rules()), "dir", d.rulesDir, "server_version", v)
			if d.onRules != nil {
				d.onRules(s)
			}
		},
		OnError: func(err error) {
			d.log.Error("rules not reloaded; the last good set stays in force", "dir", d.rulesDir, "error", err)
		},
	})
	allow, err := allowList(a.Allow)
	if err != nil {
		return nil, err
	}
	d.engine.SetAllow(allow)
	d.allow = allow
	d.pipe, err = pipeline.New(pipeline.Options{
		Builder:           b,
		Engine:            d.engine,
		Tree:              tree,
		Anomaly:           a.Detection.Anomaly,
		LearningPeriod:    a.Detection.LearningPeriod,
		StateDir:          a.StateDir,
		CorrelationWindow: a.Detection.CorrelationWindow,
		Logger:            log,
		OnResponse:        onResponse,
		Latest:            func(id string) (*vigilv1.Incident, error) { return d.journal.Find(id) },
		Lookup:            proctree.LookupProc,
		Emit: func(inc *vigilv1.Incident) {
			st.incidents.Add(1)
			d.emit(inc)
		},
	})
	if err != nil {
		return nil, err
	}
	d.loadFeedback()
	if cfg.Record != "" {
		d.recorder, err = replay.Create(cfg.Record)
		if err != nil {
			return nil, fmt.Errorf("--record: %w", err)
		}
		log.Info("recording events for replay", "file", cfg.Record)
	}
	return d, nil
}

// fallbackRules finds a set to start on when the layers do not compile
// together (loadErr): the built-in rules with the server's set, then with
// the operator's directory, then alone. The watcher picks up fixed files.
func (d *detection) fallbackRules(server *vigilv1.RuleSet, dirs []string, loadErr error) (*rules.Set, error) {
	for _, e := range rules.Errors(loadErr) {
		d.log.Error("rule file rejected", "problem", e.Error())
	}
	if server != nil {
		if set, err := rules.CompileLayers(server); err == nil {
			d.log.Error("operator rules not loaded: running on the built-in rules and the server's set until they are fixed",
				"dir", d.rulesDir, "error", loadErr)
			return set, nil
		}
		if set, err := rules.CompileLayers(nil, dirs...); err == nil {
			d.log.Error("server rule set not loaded: running on the built-in rules and the operator's until the server sends a good one",
				"file", d.serverSet, "error", loadErr)
			return set, nil
		}
	}
	d.log.Error("operator rules not loaded: running on the built-in rules only until they are fixed", "dir", d.rulesDir, "error", loadErr)
	set, err := rules.CompileLayers(nil)
	if err != nil {
		return nil, fmt.Errorf("load built-in rules: %w", err)
	}
	return set, nil
}

// policy returns the version and hash of the server rule set in force.
func (d *detection) policy() (uint64, string) {
	return d.engine.Set().Server()
}

// applyServerSet puts a rule set from the server in force: it checks it,
// compiles it with the built-in rules and the operator's directory, keeps
// it in the state directory and swaps the engine's rules. When any step
// fails the rules in force stay as they were. It returns the answer for
// the server.
func (d *detection) applyServerSet(rs *vigilv1.RuleSet) *vigilv1.RuleSetResult {
	res := &vigilv1.RuleSetResult{Version: rs.GetVersion(), Hash: rs.GetHash()}
	log := d.log.With("version", rs.GetVersion(), "hash", rs.GetHash(), "files", len(rs.GetFiles()))
	refuse := func(text string, errs []*vigilv1.RuleError) *vigilv1.RuleSetResult {
		log.Error("server rule set refused; the rules in force stay", "error", text)
		res.Error, res.Errors, res.Time = text, errs, timestamppb.Now()
		return res
	}
	if err := rules.CheckServerSet(rs); err != nil {
		return refuse(err.Error(), nil)
	}
	if v, h := d.policy(); v == rs.GetVersion() && h == rs.GetHash() {
		log.Debug("server rule set already in force")
		res.Applied, res.Time = true, timestamppb.Now()
		return res
	}
	if _, err := d.loader.Try(rs); err != nil {
		return refuse(rules.ErrorText(err), rules.ServerErrors(err))
	}
	if err := rules.SaveServerSet(d.serverSet, rs); err != nil {
		return refuse(err.Error(), nil)
	}
	d.loader.SetServer(rs)
	set, err := d.watcher.Reload()
	if err != nil {
		// The operator's files changed since Try and no longer compile
		// with the set: it is kept, and goes in force once they are fixed.
		return refuse(rules.ErrorText(err), rules.ServerErrors(err))
	}
	log.Info("server rule set applied", "rules", len(set.Rules()), "set_by", rs.GetSetBy())
	res.Applied, res.Time = true, timestamppb.Now()
	return res
}

// emit journals an incident revision and queues it for the server.
func (d *detection) emit(inc *vigilv1.Incident) {
	sig := inc.GetSignals()
	last := &vigilv1.Signal{}
	if len(sig) > 0 {
		last = sig[len(sig)-1]
	}
	d.log.Info("incident", "id", inc.GetId(), "revision", inc.GetRevision(), "rule", inc.GetRuleId(),
		"technique", inc.GetAttack().GetTechniqueId(), "severity", inc.GetSeverity().String(),
		"score", inc.GetScore(), "pid", inc.GetProcess().GetPid(), "exe", inc.GetProcess().GetExe(),
		"signal", last.GetRuleId(), "reason", last.GetReason())
	if err := d.journal.Add(inc); err != nil {
		d.log.Warn("incident not journaled: it cannot be labelled on this host", "id", inc.GetId(), "error", err)
	}
	if err := d.send(inc); err != nil {
		d.log.Error("incident not queued for the server", "id", inc.GetId(), "error", err)
	}
}

// loadFeedback applies the feedback file when it changed. Call it with the
// pipeline's lock held (or before the readers start).
func (d *detection) loadFeedback() {
	if !d.fbState.Changed(d.feedback) {
		return
	}
	list, err := feedback.Load(d.feedback)
	if err != nil {
		d.log.Error("analyst feedback not applied; the previous feedback stays in force", "error", err)
		return
	}
	d.pipe.SetSuppressions(list)
	if len(list) > 0 {
		d.log.Info("analyst feedback applied", "suppressions", len(list), "file", d.feedback)
	}
}

// watch reloads rules and feedback when their files change, and saves the
// learned state now and then, until ctx ends. mu is the pipeline's lock.
func (d *detection) watch(ctx context.Context, mu *sync.Mutex) {
	w := d.watcher
	fb := time.NewTicker(feedbackPoll)
	defer fb.Stop()
	save := time.NewTicker(savePeriod)
	defer save.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-fb.C:
			_, _ = w.Check() // errors go to OnError
			mu.Lock()
			d.loadFeedback()
			if d.recorder != nil {
				if err := d.recorder.Flush(); err != nil {
					d.log.Error("recording stopped", "error", err)
					d.recorder = nil
				}
			}
			mu.Unlock()
		case <-save.C:
			mu.Lock()
			err := d.pipe.Save()
			mu.Unlock()
			if err != nil {
				d.log.Warn("learned state not saved", "error", err)
			}
		}
	}
}

// close ends open incidents, saves the learned state and the recording.
func (d *detection) close() {
	if err := d.pipe.Close(); err != nil {
		d.log.Warn("closing detection", "error", err)
	}
	if d.recorder != nil {
		if err := d.recorder.Close(); err != nil {
			d.log.Warn("recording not completely written", "error", err)
		}
	}
}
