// Package correlate joins detections that belong to one attack story into
// one incident: signals from the same login session, from the same remote
// host, or from the same process tree, while the story is active.
//
// # Grouping
//
// Each signal has up to four keys:
//
//   - its audit login session (Process.SessionID, or Login.SessionId of a
//     login signal), unless it is unset (0xffffffff);
//   - the remote host it came from: RemoteHost of a login signal, and for a
//     process signal the RemoteHost of its session's Login, so that failed
//     logins from an address and what a later session from that address did
//     become one incident;
//   - its process tree: the tree root (see Signal.TreeRoot), by pid and start time;
//   - its process itself, by pid and start time.
//
// A signal joins the open group that shares any of its keys, and all its
// keys are added to the group. A signal whose keys reach two or more groups
// merges them into the oldest; the others' incidents are not reported again
// (their ids keep their last revision on the server). A connection's peer
// (Signal.RemoteAddr) is not a key: unrelated programs talk to the same
// resolvers and mirrors.
//
// A group closes after Options.Window without a new signal (10 minutes by
// default). Times are signal times only: the correlator never reads the
// clock, so a replay of the same signals gives the same groups.
//
// # Revisions
//
// Add returns the incident to send: revision 1 for a new group, and the
// same id with the next revision each time a signal is added to the
// timeline. A signal with the same source, rule, process (or, for a
// host-level signal, remote host and user), file and peer as one already in
// the group is a repeat: it is folded into that signal's Repeats and Add
// returns nil, because an identical detection adds nothing an analyst must
// see at once. The folded count is not lost: the group's next revision
// carries it, and when a group with unsent repeats closes, Flush returns one
// final revision for it.
//
// # Bounds and concurrency
//
// At most Options.MaxGroups groups are open (the least recently active one
// closes to make room) and a group's timeline holds at most
// Options.MaxSignals signals (further ones are counted, not kept). A
// Correlator is not safe for concurrent use: the agent's pipeline calls it
// from under its lock, one signal at a time.
package correlate

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/vigil-sensor/vigil/agent/proctree"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// Defaults of Options.
const (
	// DefaultWindow is how long a group stays open without a new signal.
	DefaultWindow = 10 * time.Minute
	// DefaultMaxGroups bounds the open groups.
	DefaultMaxGroups = 1024
	// DefaultMaxSignals bounds the signals kept in one group's timeline.
	DefaultMaxSignals = 64
)

// Errors of Add and New, to test with errors.Is.
var (
	// ErrInvalidSignal is returned for a signal without a time or rule id,
	// or with an unknown source.
	ErrInvalidSignal = errors.New("invalid signal")
	// ErrNoBuilder is returned by New without a Builder.
	ErrNoBuilder = errors.New("no incident builder")
)

// Group is one story as the Builder sees it: the signals the correlator
// joined, to be turned into one version of one incident.
type Group struct {
	// ID is the incident id, a UUIDv7 that stays the same across revisions.
	ID string
	// Revision is the version of the incident to build, from 1.
	Revision uint32
	// Signals is the timeline, oldest first, with folded repeats counted in
	// each signal's Repeats. The Builder must not keep or change it.
	Signals []Signal
	// Omitted counts the signals left out of the timeline because it was full.
	Omitted int
	// Actions are the audit records of the responses requested for the
	// incident, oldest first. The Builder must not keep or change them.
	Actions []*vigilv1.ActionRecord
}

// Builder turns a group into the incident to send. agent/incident.Builder
// is the agent's.
type Builder interface {
	// Build returns the incident for g.
	Build(g Group) (*vigilv1.Incident, error)
}

// Options tune a Correlator. Zero values take the defaults.
type Options struct {
	// Window is how long a group stays open after its latest signal (DefaultWindow).
	Window time.Duration
	// MaxGroups bounds the open groups (DefaultMaxGroups).
	MaxGroups int
	// MaxSignals bounds one group's timeline (DefaultMaxSignals).
	MaxSignals int
	// NewID makes incident ids (uuid.NewV7 as a string by default).
	NewID func() (string, error)
}

// Correlator groups signals into incidents. It is not safe for concurrent use.
type Correlator struct {
	build  Builder
	opt    Options
	now    time.Time // latest signal (or Flush) time seen
	seq    uint64    // creation order of groups, for deterministic ties
	groups []*group  // open groups, in creation order
	index  map[key]*group
	// finals are final revisions of groups that closed inside Add, kept
	// for the next Flush; errs are the errors of building them.
	finals []*vigilv1.Incident
	errs   []error
}

// group is one open story.
type group struct {
	id       string
	seq      uint64
	revision uint32 // last revision built; 0 before the first
	signals  []Signal
	omitted  int
	keys     []key
	last     time.Time // latest signal time
	dirty    bool      // repeats or omissions not yet in a revision
	actions  []*vigilv1.ActionRecord
}

// keyKind tells the kinds of grouping keys apart.
type keyKind uint8

const (
	keySession keyKind = iota + 1
	keyHost
	keyTree
	keyProcess
)

// key is one grouping key; which fields are used depends on kind.
type key struct {
	kind keyKind
	id   uint64 // session id, or pid
	at   uint64 // start time in clock ticks
	s    string // remote host
}

// tick is the precision of start times read from /proc: one USER_HZ tick.
const tick = uint64(time.Second / 100)

// New returns a correlator that builds incidents with b.
func New(b Builder, opt Options) (*Correlator, error) {
	if b == nil {
		return nil, ErrNoBuilder
	}
	if opt.Window <= 0 {
		opt.Window = DefaultWindow
	}
	if opt.MaxGroups <= 0 {
		opt.MaxGroups = DefaultMaxGroups
	}
	if opt.MaxSignals <= 0 {
		opt.MaxSignals = DefaultMaxSignals
	}
	if opt.NewID == nil {
		opt.NewID = func() (string, error) {
			id, err := uuid.NewV7()
			if err != nil {
				return "", err
			}
			return id.String(), nil
		}
	}
	return &Correlator{build: b, opt: opt, index: make(map[key]*group)}, nil
}

// Len returns the number of open groups.
func (c *Correlator) Len() int { return len(c.groups) }

// Add adds sig and returns the incident to send now: a new incident
// (revision 1), or the next revision of the incident sig joined. It returns
// nil and no error when sig only repeats a signal of its group. The signal
// time advances the correlator's clock, closing groups idle for longer than
// the window; their final revisions wait for the next Flush.
func (c *Correlator) Add(sig Signal) (*vigilv1.Incident, error) {
	if err := normalize(&sig); err != nil {
		return nil, err
	}
	if sig.Time.After(c.now) {
		c.now = sig.Time
	}
	c.expire(false)

	keys := keysOf(&sig)
	var matched []*group
	for _, k := range keys {
		if g, ok := c.index[k]; ok && !slices.Contains(matched, g) {
			matched = append(matched, g)
		}
	}
	var g *group
	merged := false
	switch len(matched) {
	case 0:
		id, err := c.opt.NewID()
		if err != nil {
			return nil, fmt.Errorf("make incident id: %w", err)
		}
		if len(c.groups) >= c.opt.MaxGroups {
			c.closeGroup(c.leastRecent())
		}
		c.seq++
		g = &group{id: id, seq: c.seq}
		c.groups = append(c.groups, g)
	case 1:
		g = matched[0]
	default:
		g = c.merge(matched)
		merged = true
	}
	for _, k := range keys {
		if !slices.Contains(g.keys, k) {
			g.keys = append(g.keys, k)
		}
		c.index[k] = g
	}
	if sig.Time.After(g.last) {
		g.last = sig.Time
	}

	switch {
	case g.fold(&sig):
		g.dirty = true
		if !merged {
			return nil, nil
		}
	case len(g.signals) >= c.opt.MaxSignals:
		g.omitted++
		g.dirty = true
		if !merged {
			return nil, nil
		}
	default:
		g.insert(sig)
	}
	return c.revise(g)
}

// Flush advances the correlator's clock to now, if that is later than the
// latest signal, closes the groups idle for longer than the window and
// returns the final revisions of closed groups that have repeats not yet
// sent, with those of groups Add closed since the last Flush. The agent
// calls it periodically with the wall clock; a replay calls it with event
// times.
func (c *Correlator) Flush(now time.Time) ([]*vigilv1.Incident, error) {
	if now.After(c.now) {
		c.now = now
	}
	c.expire(false)
	return c.takeFinals()
}

// Close closes every group, as at the end of a replay or at shutdown, and
// returns the final revisions Flush would.
func (c *Correlator) Close() ([]*vigilv1.Incident, error) {
	c.expire(true)
	return c.takeFinals()
}

func (c *Correlator) takeFinals() ([]*vigilv1.Incident, error) {
	out, err := c.finals, errors.Join(c.errs...)
	c.finals, c.errs = nil, nil
	return out, err
}

// expire closes the groups idle for longer than the window, or all of them.
func (c *Correlator) expire(all bool) {
	var idle []*group
	for _, g := range c.groups {
		if all || c.now.Sub(g.last) > c.opt.Window {
			idle = append(idle, g)
		}
	}
	for _, g := range idle {
		c.closeGroup(g)
	}
}

// closeGroup forgets g, building its final revision first when it has
// repeats or omissions no revision carried yet. The queue of final
// revisions is bounded by MaxGroups; the oldest is dropped beyond.
func (c *Correlator) closeGroup(g *group) {
	c.groups = slices.DeleteFunc(c.groups, func(o *group) bool { return o == g })
	for _, k := range g.keys {
		if c.index[k] == g {
			delete(c.index, k)
		}
	}
	if !g.dirty {
		return
	}
	inc, err := c.revise(g)
	if err != nil {
		c.errs = append(c.errs, err)
		return
	}
	c.finals = append(c.finals, inc)
	if len(c.finals) > c.opt.MaxGroups {
		c.finals = c.finals[1:]
	}
}

// leastRecent returns the open group with the oldest latest signal.
func (c *Correlator) leastRecent() *group {
	old := c.groups[0]
	for _, g := range c.groups[1:] {
		if g.last.Before(old.last) {
			old = g
		}
	}
	return old
}

// merge joins gs into the one that started first and returns it.
func (c *Correlator) merge(gs []*group) *group {
	slices.SortFunc(gs, func(a, b *group) int {
		if c := a.signals[0].Time.Compare(b.signals[0].Time); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	into := gs[0]
	for _, g := range gs[1:] {
		for _, s := range g.signals {
			if !into.fold(&s) {
				into.insert(s)
			}
		}
		into.omitted += g.omitted
		into.actions = append(into.actions, g.actions...)
		for _, k := range g.keys {
			if !slices.Contains(into.keys, k) {
				into.keys = append(into.keys, k)
			}
			c.index[k] = into
		}
		if g.last.After(into.last) {
			into.last = g.last
		}
		c.groups = slices.DeleteFunc(c.groups, func(o *group) bool { return o == g })
	}
	if extra := len(into.signals) - c.opt.MaxSignals; extra > 0 {
		into.signals = into.signals[:c.opt.MaxSignals]
		into.omitted += extra
	}
	return into
}

// AddAction records a response in the audit trail of incident id and
// returns the incident's next revision, carrying it. ok is false when no
// open group has that id (the incident closed: the caller then revises the
// incident itself from its last revision).
func (c *Correlator) AddAction(id string, rec *vigilv1.ActionRecord) (inc *vigilv1.Incident, ok bool, err error) {
	for _, g := range c.groups {
		if g.id != id {
			continue
		}
		g.actions = append(g.actions, rec)
		inc, err := c.revise(g)
		return inc, true, err
	}
	return nil, false, nil
}

// revise builds the group's next revision.
func (c *Correlator) revise(g *group) (*vigilv1.Incident, error) {
	next := Group{ID: g.id, Revision: g.revision + 1, Signals: g.signals, Omitted: g.omitted, Actions: g.actions}
	inc, err := c.build.Build(next)
	if err != nil {
		return nil, fmt.Errorf("build incident %s revision %d: %w", g.id, next.Revision, err)
	}
	g.revision = next.Revision
	g.dirty = false
	return inc, nil
}

// fold adds sig to the repeats of the identical signal of the group, if
// there is one, and reports whether there was.
func (g *group) fold(sig *Signal) bool {
	for i := range g.signals {
		s := &g.signals[i]
		if !sameSignal(s, sig) {
			continue
		}
		s.Repeats += 1 + sig.Repeats
		s.FailedLogins += sig.FailedLogins
		if first := sig.Time.Add(-sig.Span); first.Before(s.Time.Add(-s.Span)) {
			s.Span = s.Time.Sub(first)
		}
		last := sig.Time
		if sig.LastSeen.After(last) {
			last = sig.LastSeen
		}
		if last.After(s.LastSeen) && last.After(s.Time) {
			s.LastSeen = last
		}
		return true
	}
	return false
}

// insert adds sig to the timeline, after every signal not later than it.
func (g *group) insert(sig Signal) {
	i := len(g.signals)
	for i > 0 && g.signals[i-1].Time.After(sig.Time) {
		i--
	}
	g.signals = slices.Insert(g.signals, i, sig)
}

// sameSignal reports whether b repeats a: same source, rule, process (or
// remote host and user when host-level), file and peer.
func sameSignal(a, b *Signal) bool {
	if a.Source != b.Source || a.RuleID != b.RuleID || a.File != b.File || a.RemoteAddr != b.RemoteAddr || a.Object != b.Object {
		return false
	}
	if (a.Process == nil) != (b.Process == nil) {
		return false
	}
	if a.Process == nil {
		return a.RemoteHost == b.RemoteHost && a.User == b.User
	}
	return a.Process.PID == b.Process.PID && a.Process.StartTime/tick == b.Process.StartTime/tick
}

// normalize checks sig and fills its defaults.
func normalize(sig *Signal) error {
	if sig.Time.IsZero() {
		return fmt.Errorf("%w: rule %q: no time", ErrInvalidSignal, sig.RuleID)
	}
	if sig.RuleID == "" {
		return fmt.Errorf("%w: no rule id", ErrInvalidSignal)
	}
	switch sig.Source {
	case "":
		sig.Source = SourceRule
	case SourceRule, SourceAnomaly, SourceModel:
	default:
		return fmt.Errorf("%w: rule %q: unknown source %q", ErrInvalidSignal, sig.RuleID, sig.Source)
	}
	if sig.Score <= 0 {
		sig.Score = SeverityScore(sig.Severity)
	}
	sig.Score = min(sig.Score, 100)
	sig.Repeats = max(sig.Repeats, 0)
	sig.FailedLogins = max(sig.FailedLogins, 0)
	sig.Span = max(sig.Span, 0)
	sig.LastSeen = time.Time{}
	return nil
}

// keysOf returns the grouping keys of sig.
func keysOf(sig *Signal) []key {
	var keys []key
	if p := sig.Process; p != nil {
		if inSession(p.SessionID) {
			keys = append(keys, key{kind: keySession, id: uint64(p.SessionID)})
		}
	} else if sig.Login != nil && inSession(sig.Login.SessionId) {
		keys = append(keys, key{kind: keySession, id: uint64(sig.Login.SessionId)})
	}
	if sig.RemoteHost != "" {
		keys = append(keys, key{kind: keyHost, s: sig.RemoteHost})
	}
	if h := sig.Login.GetRemoteHost(); h != "" && h != sig.RemoteHost {
		keys = append(keys, key{kind: keyHost, s: h})
	}
	if root, ok := sig.TreeRoot(); ok {
		keys = append(keys, processKey(keyTree, &root))
	}
	if sig.Process != nil {
		keys = append(keys, processKey(keyProcess, sig.Process))
	}
	return keys
}

func processKey(kind keyKind, e *proctree.Entry) key {
	return key{kind: kind, id: uint64(e.PID), at: e.StartTime / tick}
}
