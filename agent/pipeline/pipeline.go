// Package pipeline is the agent's detection path, the same for live kernel
// events and for recorded ones (vigil-agent replay): every event updates the
// process tree and the login sessions, feeds the anomaly trackers, is judged
// by the rules, and each rule match or anomaly becomes a signal that
// correlation joins into an incident.
//
// A Pipeline is not safe for concurrent use: the agent's family readers
// hand it one event at a time under a lock.
package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigil-sensor/vigil/agent/anomaly"
	"github.com/vigil-sensor/vigil/agent/correlate"
	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/feedback"
	"github.com/vigil-sensor/vigil/agent/incident"
	"github.com/vigil-sensor/vigil/agent/proctree"
	"github.com/vigil-sensor/vigil/agent/rules"
	"github.com/vigil-sensor/vigil/agent/session"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// Options configure a Pipeline.
type Options struct {
	// Builder identifies the host in incidents and resolves user names.
	Builder *incident.Builder
	// Engine evaluates the rules; the caller may swap its set at any time.
	Engine *rules.Engine
	// Tree is the process tree (nil: a new, empty one).
	Tree *proctree.Tree
	// Anomaly turns the learned baseline on.
	Anomaly bool
	// LearningPeriod is how long the baseline learns before it flags (0: 24 h).
	LearningPeriod time.Duration
	// StateDir keeps the learned baseline between runs ("": not kept).
	StateDir string
	// CorrelationWindow is how long an incident stays open (0: 10 min).
	CorrelationWindow time.Duration
	// Lookup reads a live process the tree does not know yet (nil: none,
	// as in a replay).
	Lookup func(pid uint32) (proctree.Entry, bool)
	// Latest returns the last revision emitted of an incident, for the
	// audit records of incidents correlation has closed (nil: unknown).
	Latest func(id string) (*vigilv1.Incident, error)
	// OnResponse is called, under the caller's lock, for every new signal of
	// a rule that has a response, with the incident the signal joined; the
	// response engine decides (by mode) whether to act. nil: none.
	OnResponse func(sig correlate.Signal, incidentID string)
	// Emit receives every incident revision.
	Emit func(*vigilv1.Incident)
	// Logger receives warnings (nil: slog.Default()).
	Logger *slog.Logger
}

// Stats count what the pipeline did.
type Stats struct {
	// Events is the number of events handled.
	Events uint64
	// RuleMatches and Findings count signals raised by rules and by the baseline.
	RuleMatches, Findings uint64
	// Suppressed counts signals dropped by analyst feedback.
	Suppressed uint64
	// Incidents counts incident revisions emitted.
	Incidents uint64
}

// Pipeline runs detection on a stream of events.
type Pipeline struct {
	opts     Options
	log      *slog.Logger
	tree     *proctree.Tree
	sessions *session.Table
	engine   *rules.Engine
	baseline *anomaly.Baseline
	logins   *anomaly.Logins
	flows    *anomaly.Flows
	seqs     *sequences
	corr     *correlate.Correlator
	supp     *feedback.Set
	accepted map[feedback.Suppression]bool
	stats    Stats
	// in is the rules' input, refilled for every event.
	in   rules.Input
	last time.Time
	// cur, par and anc hold the event's process, its parent and its
	// ancestry, reused from event to event rather than allocated for each;
	// a signal copies what it keeps.
	cur, par proctree.Entry
	anc      []proctree.Entry
}

// New returns a pipeline; with a state directory it loads the baseline
// learned by earlier runs (a damaged file is reported and replaced).
func New(opts Options) (*Pipeline, error) {
	if opts.Builder == nil || opts.Engine == nil || opts.Emit == nil {
		return nil, errors.New("pipeline: Builder, Engine and Emit are required")
	}
	p := &Pipeline{
		opts:     opts,
		log:      opts.Logger,
		tree:     opts.Tree,
		sessions: session.New(0),
		engine:   opts.Engine,
		logins:   anomaly.NewLogins(anomaly.LoginOptions{LearningPeriod: opts.LearningPeriod}),
		flows:    anomaly.NewFlows(anomaly.FlowOptions{}),
		accepted: map[feedback.Suppression]bool{},
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.tree == nil {
		p.tree = proctree.New(0)
	}
	if opts.Anomaly {
		p.baseline = anomaly.NewBaseline(anomaly.BaselineOptions{LearningPeriod: opts.LearningPeriod})
		p.seqs = newSequences(opts.LearningPeriod)
	}
	corr, err := correlate.New(opts.Builder, correlate.Options{Window: opts.CorrelationWindow})
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	p.corr = corr
	if opts.StateDir != "" {
		p.load()
	}
	return p, nil
}

// stateFiles pairs each learned state with its file in the state dir.
func (p *Pipeline) stateFiles() map[string]interface {
	Save(string) error
	Load(string) error
} {
	m := map[string]interface {
		Save(string) error
		Load(string) error
	}{
		anomaly.LoginsFile: p.logins,
		anomaly.FlowsFile:  p.flows,
	}
	if p.baseline != nil {
		m[anomaly.BaselineFile] = p.baseline
	}
	if p.seqs != nil {
		m[SequencesFile] = p.seqs
	}
	return m
}

// load reads the learned state; a missing file is a first run.
func (p *Pipeline) load() {
	for name, s := range p.stateFiles() {
		err := s.Load(filepath.Join(p.opts.StateDir, name))
		switch {
		case err == nil:
			p.log.Info("learned state loaded", "file", name)
		case errors.Is(err, fs.ErrNotExist):
		default:
			p.log.Warn("learned state unreadable, learning again from scratch", "file", name, "error", err)
		}
	}
}

// Save writes the learned state to the state directory, if there is one.
func (p *Pipeline) Save() error {
	if p.opts.StateDir == "" {
		return nil
	}
	var errs []error
	for name, s := range p.stateFiles() {
		if err := s.Save(filepath.Join(p.opts.StateDir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DiscardState keeps the state loaded at New but makes Save a no-op, so a
// replay can start from an agent's learned state without changing it.
func (p *Pipeline) DiscardState() { p.opts.StateDir = "" }

// Tree returns the process tree.
func (p *Pipeline) Tree() *proctree.Tree { return p.tree }

// Stats returns the counters.
func (p *Pipeline) Stats() Stats { return p.stats }

// Learning reports whether the baseline is still learning (false without one).
func (p *Pipeline) Learning() bool { return p.baseline != nil && p.baseline.Learning() }

// SetSuppressions replaces the analyst feedback in force. An anomaly
// suppression not seen before is also learned by the baseline, so the
// behaviour stops being rare.
func (p *Pipeline) SetSuppressions(list []feedback.Suppression) {
	p.supp = feedback.NewSet(list)
	if p.baseline == nil {
		return
	}
	for _, s := range list {
		kind, ok := strings.CutPrefix(s.RuleID, anomalyPrefix)
		if !ok || s.Exe == "" || s.Object == "" || p.accepted[s] {
			continue
		}
		p.accepted[s] = true
		if err := p.baseline.Accept(anomaly.Kind(kind), s.Exe, s.Object); err != nil {
			// An empty baseline cannot learn yet; the suppression still holds.
			p.log.Debug("baseline did not learn a label", "rule", s.RuleID, "exe", s.Exe, "error", err)
		}
	}
}

// Handle runs one event through detection.
func (p *Pipeline) Handle(ev any) {
	p.stats.Events++
	hdr, at, ok := event.Header(ev)
	if !ok {
		return
	}
	if at.After(p.last) {
		p.last = at
	}
	var entry *proctree.Entry
	switch e := ev.(type) {
	case *event.Fork:
		p.tree.Fork(e)
		return
	case *event.Exec:
		p.cur = p.tree.Exec(e)
		entry = &p.cur
	case *event.Login:
		p.sessions.Observe(e)
	}
	if entry == nil {
		entry = p.processOf(hdr)
	}
	if x, ok := ev.(*event.Exit); ok {
		defer p.tree.Exit(x)
	}
	var parent *proctree.Entry
	if x, ok := p.tree.Get(hdr.PPID); ok {
		p.par = x
		parent = &p.par
	}
	// The ancestry is read only when something needs it: the rules' input
	// or a signal. Exits usually need neither.
	var ancestors []proctree.Entry
	haveAncestors := false
	ancestry := func() []proctree.Entry {
		if !haveAncestors {
			haveAncestors = true
			p.anc = p.tree.AppendAncestors(p.anc[:0], hdr.PID)
			if entry == nil && len(p.anc) == 0 && parent != nil {
				p.anc = append(p.anc, *parent)
				p.anc = p.tree.AppendAncestors(p.anc, parent.PID)
			}
			ancestors = p.anc
		}
		return ancestors
	}

	// Build the rules' input only when some rule is on this kind of event:
	// no default rule is about exits (a third of all events) or accepts.
	var in *rules.Input
	if len(p.engine.Set().ForKind(rules.KindOf(ev))) > 0 {
		if p.in.Fill(ev, entry, parent, ancestry(), p.opts.Builder.UserName) {
			in = &p.in
		}
	}
	var findings []anomaly.Finding
	switch e := ev.(type) {
	case *event.Ptrace:
		if in != nil {
			in.Ptrace.TargetExe = p.exeOf(e.TargetPID)
		}
	case *event.Kill:
		if in != nil && e.TargetPID > 0 {
			in.Kill.TargetExe = p.exeOf(uint32(e.TargetPID))
		}
	case *event.Login:
		st := p.logins.Observe(e)
		if in != nil {
			in.Login.FailuresFromSource, in.Login.UsersFromSource = st.FailuresFromSource, st.UsersFromSource
			in.Login.FailuresForUser, in.Login.SourcesForUser = st.FailuresForUser, st.SourcesForUser
			in.Login.FailuresBeforeSuccess = st.FailuresBeforeSuccess
			in.Login.NewSource, in.Login.UnusualHour, in.Login.Learning = st.NewSource, st.UnusualHour, st.Learning
		}
	case *event.TCPConnect, *event.TCPAccept, *event.TCPClose, *event.UDPFlow:
		st := p.flows.Observe(ev, entry)
		if in != nil {
			in.Network.PortsToHost, in.Network.HostsOnPort = st.PortsToHost, st.HostsOnPort
			in.Network.Beacon, in.Network.BeaconIntervalMS = st.Beacon, st.BeaconIntervalMs
		}
		findings = append(findings, st.Findings...)
	}
	if p.baseline != nil {
		switch ev.(type) {
		case *event.Exec, *event.File, *event.TCPConnect, *event.UDPFlow, *event.DNS:
			findings = append(findings, p.baseline.Observe(ev, entry, parent)...)
		}
	}

	if p.seqs != nil {
		if r := p.seqs.observe(ev, at, entry); r != nil {
			p.stats.Findings++
			p.signal(sequenceSignal(r, at, entry, ancestry()), entry, parent)
		}
	}
	if in != nil {
		for _, m := range p.engine.Evaluate(in) {
			p.stats.RuleMatches++
			p.signal(ruleSignal(m, in, entry, ancestry(), killedAtExec(ev)), entry, parent)
		}
	}
	for _, f := range findings {
		p.stats.Findings++
		p.signal(findingSignal(f, at, entry, ancestry()), entry, parent)
	}
}

// Knows reports whether the process tree holds the process of an event
// under the image the event saw (same start time and, for the main
// thread, comm), so that the
// event can be judged with its executable and ancestry.
func (p *Pipeline) Knows(hdr *event.Process) bool {
	x, ok := p.tree.Get(hdr.PID)
	// Only the main thread's comm is the process's: other threads may have
	// names of their own (prctl PR_SET_NAME).
	mainThread := hdr.TID == 0 || hdr.TID == hdr.PID
	return ok && x.SameProcess(hdr.StartTime) && (!mainThread || hdr.Comm == "" || x.Comm == hdr.Comm)
}

// processOf returns the tree's entry for the process of an event of
// another family than the process one. The families are read concurrently,
// so such an event can arrive before the fork or exec of its process has
// been handled: the tree then does not know the process, or knows it under
// its image before exec (another comm). The live process is asked then
// (Options.Lookup), and failing that, what the event says of the process
// stands in.
func (p *Pipeline) processOf(hdr *event.Process) *proctree.Entry {
	if p.Knows(hdr) {
		p.cur, _ = p.tree.Get(hdr.PID)
		return &p.cur
	}
	if p.opts.Lookup != nil {
		if x, ok := p.opts.Lookup(hdr.PID); ok && x.SameProcess(hdr.StartTime) {
			p.cur = x
			return &p.cur
		}
	}
	return fromHeader(hdr)
}

// fromHeader is the process of an event the tree does not know yet.
func fromHeader(h *event.Process) *proctree.Entry {
	return &proctree.Entry{
		PID: h.PID, PPID: h.PPID, StartTime: h.StartTime, UID: h.UID, GID: h.GID,
		LoginUID: h.LoginUID, SessionID: h.SessionID, Comm: h.Comm, CgroupID: h.CgroupID,
	}
}

// exeOf returns the executable of a live process, "" when unknown.
func (p *Pipeline) exeOf(pid uint32) string {
	if x, ok := p.tree.Get(pid); ok {
		return x.Exe
	}
	return ""
}

// signal checks a signal against the analyst's feedback, gives it its
// login session and hands it to correlation.
func (p *Pipeline) signal(sig correlate.Signal, entry, parent *proctree.Entry) {
	key := feedback.Key{RuleID: sig.RuleID, Object: sig.Object}
	if entry != nil {
		key.Exe = entry.Exe
	}
	if parent != nil {
		key.ParentExe = parent.Exe
	}
	if sig.Process == nil {
		key.RemoteHost = sig.RemoteHost
	}
	if s := p.supp.Suppressed(key); s != nil {
		p.stats.Suppressed++
		p.log.Debug("signal suppressed by feedback", "rule", sig.RuleID, "incident", s.IncidentID)
		return
	}
	if sig.Process != nil && sig.Login == nil {
		if l, ok := p.sessions.Lookup(sig.Process.SessionID); ok {
			sig.Login = l
		}
	}
	inc, err := p.corr.Add(sig)
	if err != nil {
		p.log.Error("correlate signal", "rule", sig.RuleID, "error", err)
		return
	}
	p.emit(inc)
	// A repeat (inc nil) was answered when it first came.
	if inc != nil && sig.Response != "" && sig.Response != string(rules.ResponseNone) && p.opts.OnResponse != nil {
		p.opts.OnResponse(sig, inc.GetId())
	}
}

func (p *Pipeline) emit(incs ...*vigilv1.Incident) {
	for _, inc := range incs {
		if inc == nil {
			continue
		}
		p.stats.Incidents++
		p.opts.Emit(inc)
	}
}

// RecordAction adds an audit record to incident id and emits the revision
// that carries it: through correlation while the incident is open, else on
// top of its last revision (Options.Latest).
func (p *Pipeline) RecordAction(id string, rec *vigilv1.ActionRecord) error {
	inc, ok, err := p.corr.AddAction(id, rec)
	if err != nil {
		return err
	}
	if ok {
		p.emit(inc)
		return nil
	}
	if p.opts.Latest == nil {
		return fmt.Errorf("record action on incident %s: not open, and no journal to find it in", id)
	}
	last, err := p.opts.Latest(id)
	if err != nil {
		return fmt.Errorf("record action on incident %s: %w", id, err)
	}
	next := proto.CloneOf(last)
	next.Revision++
	next.Cursor, next.ReceivedTime = 0, nil
	next.Actions = append(next.Actions, rec)
	p.emit(next)
	return nil
}

// Tick closes the incidents whose correlation window has passed at now
// (emitting their final revision when one is pending) and prunes the tree.
func (p *Pipeline) Tick(now time.Time) {
	incs, err := p.corr.Flush(now)
	if err != nil {
		p.log.Error("close incidents", "error", err)
	}
	p.emit(incs...)
	p.tree.Prune()
}

// Close closes every open incident, emitting pending final revisions, and
// saves the learned state.
func (p *Pipeline) Close() error {
	incs, err := p.corr.Close()
	p.emit(incs...)
	return errors.Join(err, p.Save())
}

// anomalyPrefix starts the rule id of every anomaly signal.
const anomalyPrefix = "anomaly."

// ruleSignal turns a rule match on in into a signal.
func ruleSignal(m rules.Match, in *rules.Input, entry *proctree.Entry, ancestors []proctree.Entry, killed bool) correlate.Signal {
	r := m.Rule
	sig := correlate.Signal{
		Time:     in.Time,
		Source:   correlate.SourceRule,
		RuleID:   r.ID,
		Title:    r.Title,
		Severity: r.Severity,
		Attack:   r.Attack,
		Reason:   m.Reason,
		Response: string(r.Response),
		Repeats:  m.Repeats,
	}
	switch in.Kind {
	case "login":
		// A login signal is about the source, not about the PAM process.
		sig.RemoteHost, sig.User, sig.Service = in.Login.RemoteHost, in.Login.User, in.Login.Service
		if !in.Login.Success {
			sig.FailedLogins = max(in.Login.FailuresFromSource, 1)
		}
		return sig
	case "exec":
		sig.KilledAtExec = killed
	case "file":
		sig.File, sig.FileOp = in.File.Path, fileOp(&in.File)
	case "connect", "accept", "close", "udp":
		sig.RemoteAddr = in.Network.RemoteAddr
	case "dns":
		sig.Object = in.Network.Query
	}
	if entry != nil {
		e := *entry
		sig.Process, sig.Ancestors = &e, keep(ancestors)
	}
	return sig
}

// keep copies an ancestry for a signal: the pipeline reuses its storage
// for the next event.
func keep(ancestors []proctree.Entry) []proctree.Entry {
	if len(ancestors) == 0 {
		return nil
	}
	return slices.Clone(ancestors)
}

// killedAtExec reports whether ev is an exec the kernel killed.
func killedAtExec(ev any) bool {
	x, ok := ev.(*event.Exec)
	return ok && x.Killed
}

// fileOp names what a file event did, in correlate's terms.
func fileOp(f *rules.File) string {
	switch {
	case f.Op != "open":
		return f.Op
	case f.Create:
		return correlate.FileCreate
	case f.Write || f.Truncate:
		return correlate.FileWrite
	}
	return correlate.FileRead
}

// modelPrefix starts the rule id of every sequence-model signal.
const modelPrefix = "model."

// sequenceSignal turns a rare sequence into a signal: low severity, like
// any rarity on its own.
func sequenceSignal(r *rareSequence, at time.Time, entry *proctree.Entry, ancestors []proctree.Entry) correlate.Signal {
	sig := correlate.Signal{
		Time:     at,
		Source:   correlate.SourceModel,
		RuleID:   modelPrefix + "rare-sequence",
		Title:    "Program acted in an order it never did while the agent learned",
		Severity: vigilv1.Severity_SEVERITY_LOW,
		Reason:   r.reason,
		Score:    min(95, 50+10*(r.score-seqThreshold)),
	}
	if entry != nil {
		e := *entry
		sig.Process, sig.Ancestors = &e, keep(ancestors)
	}
	return sig
}

// findingTitles are the one-line summaries of anomaly findings.
var findingTitles = map[anomaly.Kind]string{
	anomaly.KindRareChild:       "Program started a child it does not normally start",
	anomaly.KindRareFile:        "Program touched a file it does not normally touch",
	anomaly.KindRareDestination: "Program contacted a destination it does not normally contact",
	anomaly.KindRareUser:        "Program ran as a user it does not normally run as",
	anomaly.KindRareVolume:      "Program sent far more data than it normally does",
}

// findingSignal turns an anomaly finding into a signal. Rarity alone is
// low severity: it raises the score of an incident that rules make, and
// is kept as a low one otherwise.
func findingSignal(f anomaly.Finding, at time.Time, entry *proctree.Entry, ancestors []proctree.Entry) correlate.Signal {
	title := findingTitles[f.Kind]
	if title == "" {
		title = "Rare behaviour"
	}
	if !f.Time.IsZero() {
		at = f.Time
	}
	sig := correlate.Signal{
		Time:     at,
		Source:   correlate.SourceAnomaly,
		RuleID:   anomalyPrefix + string(f.Kind),
		Title:    title,
		Severity: vigilv1.Severity_SEVERITY_LOW,
		Reason:   f.Reason,
		Score:    min(100, f.Score*100),
		Object:   f.Item,
	}
	if entry != nil {
		e := *entry
		sig.Process, sig.Ancestors = &e, keep(ancestors)
	}
	return sig
}
