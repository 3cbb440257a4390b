package detect

import (
	"slices"
	"sync"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
)

// RepeatWindow is how long a rule stays quiet for the same executable under
// the same parent after it fired, so that a loop does not raise a flood of
// identical incidents. Repeats are counted in Match.Repeats of the next one.
const RepeatWindow = 10 * time.Second

// Match is one rule that fired on one exec.
type Match struct {
	// Rule is the rule that fired.
	Rule *Rule
	// Reason says in words why.
	Reason string
	// Repeats counts the identical matches suppressed in the RepeatWindow before this one.
	Repeats int
}

// Allow lists processes no rule fires on (the operator's allow-list).
type Allow struct {
	// PIDs are allowed process ids.
	PIDs []uint32
	// Exes are allowed executables, by absolute path.
	Exes []string
	// CgroupIDs are allowed cgroup v2 ids.
	CgroupIDs []uint64
}

func (a *Allow) allows(x *event.Exec) bool {
	return slices.Contains(a.PIDs, x.Process.PID) || slices.Contains(a.Exes, x.Exe) ||
		slices.Contains(a.CgroupIDs, x.Process.CgroupID)
}

// Engine evaluates rules on exec events. It is safe for concurrent use.
type Engine struct {
	rules []*Rule
	probe Probe
	allow Allow

	mu     sync.Mutex
	recent map[repeatKey]*repeat
}

type repeatKey struct {
	rule      string
	exe       string
	ppid      uint32
	parentAge uint64
}

type repeat struct {
	at         time.Time
	suppressed int
}

// NewEngine returns an engine for rules; probe may be nil.
func NewEngine(rules []*Rule, probe Probe) *Engine {
	return &Engine{rules: rules, probe: probe, recent: make(map[repeatKey]*repeat)}
}

// SetAllow replaces the allow-list. Call it before Evaluate is in use.
func (e *Engine) SetAllow(a Allow) { e.allow = a }

// Rules returns the engine's rules.
func (e *Engine) Rules() []*Rule { return e.rules }

// Evaluate runs every rule on x, whose parent is parent (nil if unknown),
// and returns the rules that fired.
func (e *Engine) Evaluate(x *event.Exec, parent *proctree.Entry) []Match {
	if e.allow.allows(x) {
		return nil
	}
	c := &Context{Exec: x, Parent: parent, Probe: e.probe}
	var out []Match
	for _, r := range e.rules {
		reason, ok := r.Match(c)
		if !ok {
			continue
		}
		if repeats, quiet := e.repeated(r, x, parent); !quiet {
			out = append(out, Match{Rule: r, Reason: reason, Repeats: repeats})
		}
	}
	return out
}

// repeated records a match and reports whether it falls in the quiet window
// of an earlier identical one; if not, it returns how many were suppressed.
func (e *Engine) repeated(r *Rule, x *event.Exec, parent *proctree.Entry) (int, bool) {
	key := repeatKey{rule: r.ID, exe: x.Exe, ppid: x.Process.PPID}
	if parent != nil {
		key.parentAge = parent.StartTime
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.recent) > 4096 {
		for k, v := range e.recent {
			if x.Time.Sub(v.at) > RepeatWindow {
				delete(e.recent, k)
			}
		}
	}
	prev, ok := e.recent[key]
	if ok && x.Time.Sub(prev.at) < RepeatWindow {
		prev.suppressed++
		return 0, true
	}
	suppressed := 0
	if ok {
		suppressed = prev.suppressed
	}
	e.recent[key] = &repeat{at: x.Time}
	return suppressed, false
}
