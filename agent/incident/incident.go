// Package incident turns a group of correlated signals into an incident in
// the wire format: who, what, where and why, the process with its ancestry,
// the timeline of signals, a score, the likely cause in one sentence and
// the responses that fit.
//
// The incident's header (rule, title, ATT&CK) comes from the primary
// signal: the first one, in time, at the highest severity. Its process is
// the primary signal's process or, when the primary signal is host-level
// (failed logins from an address), the process of the latest signal that
// has one. See cause for the cause sentence and actions for the
// recommended actions.
package incident

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/correlate"
	"github.com/vigil-sensor/vigil/agent/proctree"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// ErrNoSignals is returned by Build for a group without signals.
var ErrNoSignals = errors.New("group has no signals")

// maxAlso bounds the other signals the description lists by title.
const maxAlso = 3

// Builder builds incidents for one host. It implements correlate.Builder.
type Builder struct {
	// HostID and Hostname identify the host.
	HostID, Hostname string
	// BootTime converts start times since boot to wall-clock time.
	BootTime time.Time
	// UserName resolves a uid to a name; nil leaves names empty.
	UserName func(uid uint32) string
	// Listening reports whether process pid, started at startTime (ns since
	// boot), holds a listening socket, so that the cause can call a service
	// a network service; nil calls every service just a service.
	Listening func(pid uint32, startTime uint64) bool
	// Restorable reports whether restore has a known-good version of path
	// to put back (the snapshot store covers it); restore is recommended
	// only for such files. nil recommends it for every file a rule names.
	Restorable func(path string) bool
}

var _ correlate.Builder = (*Builder)(nil)

// Build returns revision g.Revision of incident g.ID, built from g's
// signals (oldest first).
func (b *Builder) Build(g correlate.Group) (*vigilv1.Incident, error) {
	sigs := g.Signals
	if len(sigs) == 0 {
		return nil, fmt.Errorf("build incident %s: %w", g.ID, ErrNoSignals)
	}
	p := primary(sigs)
	prim := &sigs[p]
	inc := &vigilv1.Incident{
		Id:          g.ID,
		Revision:    g.Revision,
		HostId:      b.HostID,
		Hostname:    b.Hostname,
		Time:        timestamppb.New(sigs[0].Time),
		Severity:    prim.Severity,
		Title:       prim.Title,
		Description: description(sigs, p, g.Omitted),
		RuleId:      prim.RuleID,
		Attack:      cloneAttack(prim.Attack),
		Score:       Score(sigs),
	}
	focus := focusOf(sigs, p)
	if focus != nil {
		inc.Process = b.process(focus.Process)
		for i := range focus.Ancestors {
			inc.Ancestors = append(inc.Ancestors, b.process(&focus.Ancestors[i]))
		}
		inc.Login = loginOf(sigs, focus)
	} else if prim.Login != nil {
		inc.Login = proto.CloneOf(prim.Login)
	}
	for i := range sigs {
		inc.Signals = append(inc.Signals, b.signal(&sigs[i]))
	}
	inc.Related = b.related(sigs, focus)
	// A login is the entry point whenever one of the signals came from a
	// login session, even when the shown process did not: the cause then
	// follows that signal's process chain from the login.
	causeFocus := focus
	if inc.Login == nil {
		for i := range sigs {
			if sigs[i].Login != nil && sigs[i].Process != nil {
				inc.Login, causeFocus = proto.CloneOf(sigs[i].Login), &sigs[i]
				break
			}
		}
	}
	inc.Cause = b.cause(sigs, p, causeFocus, inc.Login)
	inc.RecommendedActions = b.actions(sigs)
	for _, a := range g.Actions {
		inc.Actions = append(inc.Actions, proto.CloneOf(a))
	}
	return inc, nil
}

// primary returns the index of the first signal at the highest severity.
func primary(sigs []correlate.Signal) int {
	p := 0
	for i := range sigs {
		if sigs[i].Severity > sigs[p].Severity {
			p = i
		}
	}
	return p
}

// focusOf returns the signal whose process the incident shows: the primary
// signal, or the latest signal with a process when the primary is
// host-level; nil when no signal has a process.
func focusOf(sigs []correlate.Signal, p int) *correlate.Signal {
	if sigs[p].Process != nil {
		return &sigs[p]
	}
	for i := len(sigs) - 1; i >= 0; i-- {
		if sigs[i].Process != nil {
			return &sigs[i]
		}
	}
	return nil
}

// loginOf returns the login session of focus's process: its own Login, or
// that of another signal of the same session.
func loginOf(sigs []correlate.Signal, focus *correlate.Signal) *vigilv1.Login {
	if focus.Login != nil {
		return proto.CloneOf(focus.Login)
	}
	for i := range sigs {
		if l := sigs[i].Login; l != nil && l.SessionId == focus.Process.SessionID {
			return proto.CloneOf(l)
		}
	}
	return nil
}

// Score combines the signals' scores as independent evidence:
// 100·(1 − Π(1 − s/100)), rounded to one decimal. Folded repeats do not
// count again.
func Score(sigs []correlate.Signal) float64 {
	miss := 1.0
	for i := range sigs {
		s := min(max(sigs[i].Score, 0), 100)
		miss *= 1 - s/100
	}
	return math.Round((1-miss)*1000) / 10
}

// description is the primary signal's reason (else its title, else its
// rule id) with its repeats, then the titles of up to maxAlso other signals.
func description(sigs []correlate.Signal, p, omitted int) string {
	prim := &sigs[p]
	var b strings.Builder
	switch {
	case prim.Reason != "":
		b.WriteString(prim.Reason)
	case prim.Title != "":
		b.WriteString(prim.Title)
	default:
		b.WriteString(prim.RuleID)
	}
	if prim.Repeats > 0 {
		fmt.Fprintf(&b, " (seen %d more %s)", prim.Repeats, plural(prim.Repeats, "time", "times"))
	}
	var also []string
	for i := range sigs {
		t := sigs[i].Title
		if i == p || t == "" || t == prim.Title || slices.Contains(also, t) {
			continue
		}
		also = append(also, t)
	}
	more := omitted
	if len(also) > maxAlso {
		more += len(also) - maxAlso
		also = also[:maxAlso]
	}
	if len(also) > 0 {
		b.WriteString("; also: " + strings.Join(also, ", "))
		if more > 0 {
			fmt.Fprintf(&b, " and %d more", more)
		}
	} else if more > 0 {
		fmt.Fprintf(&b, "; also %d more %s", more, plural(more, "signal", "signals"))
	}
	return b.String()
}

// signal is sig on the wire.
func (b *Builder) signal(s *correlate.Signal) *vigilv1.Signal {
	out := &vigilv1.Signal{
		Time:       timestamppb.New(s.Time),
		Source:     s.Source,
		RuleId:     s.RuleID,
		Title:      s.Title,
		Severity:   s.Severity,
		Attack:     cloneAttack(s.Attack),
		Reason:     s.Reason,
		Score:      s.Score,
		RemoteHost: s.RemoteHost,
		Repeats:    uint32(max(s.Repeats, 0)),
		Object:     s.Object,
	}
	if out.RemoteHost == "" {
		out.RemoteHost = s.RemoteAddr
	}
	if out.Object == "" {
		out.Object = s.File
	}
	if out.Object == "" {
		out.Object = s.RemoteAddr
	}
	if s.Process != nil {
		out.Pid, out.Exe = s.Process.PID, s.Process.Exe
		if len(s.Ancestors) > 0 {
			out.ParentExe = s.Ancestors[0].Exe
		}
	}
	return out
}

// related returns the processes of the signals other than focus, each with
// the ancestors needed to link it to what is already shown, so that the
// whole tree can be drawn. A process is listed once (by pid and start time).
func (b *Builder) related(sigs []correlate.Signal, focus *correlate.Signal) []*vigilv1.Process {
	var shown []*proctree.Entry
	if focus != nil {
		shown = append(shown, focus.Process)
		for i := range focus.Ancestors {
			shown = append(shown, &focus.Ancestors[i])
		}
	}
	var out []*vigilv1.Process
	add := func(e *proctree.Entry) bool {
		for _, s := range shown {
			if s.PID == e.PID && s.SameProcess(e.StartTime) {
				return false
			}
		}
		shown = append(shown, e)
		out = append(out, b.process(e))
		return true
	}
	for i := range sigs {
		s := &sigs[i]
		if s.Process == nil || !add(s.Process) {
			continue
		}
		for j := range s.Ancestors {
			if !add(&s.Ancestors[j]) {
				break
			}
		}
	}
	return out
}

// process is e on the wire; the one conversion of a cache entry.
func (b *Builder) process(e *proctree.Entry) *vigilv1.Process {
	p := &vigilv1.Process{
		Pid:           e.PID,
		Ppid:          e.PPID,
		StartTime:     timestamppb.New(b.BootTime.Add(time.Duration(e.StartTime))),
		Uid:           e.UID,
		Gid:           e.GID,
		LoginUid:      e.LoginUID,
		SessionId:     e.SessionID,
		Comm:          e.Comm,
		Exe:           e.Exe,
		Args:          e.Args,
		ArgsTruncated: e.ArgsTruncated,
		Cwd:           e.Cwd,
		CgroupId:      e.CgroupID,
		ExeDeleted:    e.ExeDeleted,
		ExeMemfd:      e.ExeMemfd,
		Exited:        e.Exited,
		ExitCode:      e.ExitCode,
	}
	if b.UserName != nil {
		p.User = b.UserName(e.UID)
	}
	return p
}

func cloneAttack(a *vigilv1.Attack) *vigilv1.Attack {
	if a == nil {
		return nil
	}
	return proto.CloneOf(a)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
