package rules

import (
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
)

// Match is one rule that fired on one event.
type Match struct {
	// Rule is the rule that fired.
	Rule *Rule
	// Reason says in words why.
	Reason string
	// Repeats counts the identical matches suppressed in the rule's repeat
	// window before this one.
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

func (a *Allow) allows(p *Process) bool {
	return slices.Contains(a.PIDs, p.PID) || slices.Contains(a.Exes, p.Exe) ||
		slices.Contains(a.CgroupIDs, p.CgroupID)
}

// Probe answers questions about live processes that the events do not carry.
type Probe interface {
	// Listening reports whether process pid, started at startTime (ns since
	// boot), holds a listening TCP socket.
	Listening(pid uint32, startTime uint64) bool
}

// Options configure an Engine.
type Options struct {
	// Probe answers the CEL field listening; nil: nothing listens.
	Probe Probe
	// MaxRepeatKeys bounds the repeat-suppression table (0: 4096); past it,
	// entries older than their window are dropped.
	MaxRepeatKeys int
}

// Engine evaluates a rule set on events. It is safe for concurrent use;
// Swap replaces the set atomically while evaluation goes on.
type Engine struct {
	set   atomic.Pointer[Set]
	allow atomic.Pointer[Allow]
	probe Probe
	max   int

	evalErrors atomic.Uint64

	mu     sync.Mutex
	recent map[repeatKey]*repeat
}

type repeatKey struct {
	rule string
	key  string
}

type repeat struct {
	at         time.Time
	window     time.Duration
	suppressed int
}

// NewEngine returns an engine evaluating set.
func NewEngine(set *Set, opts Options) *Engine {
	e := &Engine{probe: opts.Probe, max: opts.MaxRepeatKeys, recent: make(map[repeatKey]*repeat)}
	if e.max <= 0 {
		e.max = 4096
	}
	e.set.Store(set)
	e.allow.Store(&Allow{})
	return e
}

// SetAllow replaces the allow-list.
func (e *Engine) SetAllow(a Allow) { e.allow.Store(&a) }

// Swap makes set the engine's rule set; evaluations already running finish
// with the old one. Repeat counts of rules that keep their id carry over.
func (e *Engine) Swap(set *Set) { e.set.Store(set) }

// Set returns the current rule set.
func (e *Engine) Set() *Set { return e.set.Load() }

// Rules returns the rules of the current set.
func (e *Engine) Rules() []*Rule { return e.set.Load().Rules() }

// EvalErrors counts rule evaluations that failed at run time (and so did
// not fire), e.g. an index out of range in a condition.
func (e *Engine) EvalErrors() uint64 { return e.evalErrors.Load() }

// Evaluate runs the rules of in.Kind on in and returns those that fired and
// are not repeats. It sets the probe of in's processes, so that the CEL
// field listening can be answered.
func (e *Engine) Evaluate(in *Input) []Match {
	set := e.set.Load()
	rules := set.ForKind(in.Kind)
	if len(rules) == 0 || e.allow.Load().allows(&in.Process) {
		return nil
	}
	in.Process.probe, in.Parent.probe = e.probe, e.probe
	for i := range in.Ancestors {
		in.Ancestors[i].probe = e.probe
	}
	act := activation{in}
	var out []Match
	for _, r := range rules {
		if !r.guard.admits(in.Process.Name) || !e.isTrue(r.cond, act) {
			continue
		}
		silenced := false
		for _, x := range r.Exceptions {
			if e.isTrue(x.prg, act) {
				silenced = true
				break
			}
		}
		if silenced {
			continue
		}
		reason := r.ID
		if v, _, err := r.reason.Eval(act); err == nil {
			if s, ok := v.(types.String); ok {
				reason = string(s)
			}
		} else {
			e.evalErrors.Add(1)
		}
		if repeats, quiet := e.repeated(r, in, act); !quiet {
			out = append(out, Match{Rule: r, Reason: reason, Repeats: repeats})
		}
	}
	return out
}

func (e *Engine) isTrue(p cel.Program, act activation) bool {
	v, _, err := p.Eval(act)
	if err != nil {
		e.evalErrors.Add(1)
		return false
	}
	return v == types.True
}

// repeated records a match and reports whether it falls in the quiet window
// of an earlier one with the same key; if not, it returns how many were
// suppressed since the last reported one.
func (e *Engine) repeated(r *Rule, in *Input, act activation) (int, bool) {
	if r.RepeatWindow <= 0 {
		return 0, false
	}
	key := repeatKey{rule: r.ID}
	if r.key != nil {
		v, _, err := r.key.Eval(act)
		if s, ok := v.(types.String); err == nil && ok {
			key.key = string(s)
		}
	} else {
		key.key = in.Process.Exe + "\x00" + strconv.FormatUint(uint64(in.Process.PPID), 10) +
			"\x00" + strconv.FormatUint(in.Parent.StartTime, 10)
	}
	now := in.Time
	if now.IsZero() {
		now = time.Now()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.recent) > e.max {
		for k, v := range e.recent {
			if now.Sub(v.at) > v.window {
				delete(e.recent, k)
			}
		}
	}
	prev, ok := e.recent[key]
	if ok && now.Sub(prev.at) < r.RepeatWindow {
		prev.suppressed++
		return 0, true
	}
	suppressed := 0
	if ok {
		suppressed = prev.suppressed
	}
	e.recent[key] = &repeat{at: now, window: r.RepeatWindow}
	return suppressed, false
}
