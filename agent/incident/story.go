package incident

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/vigil-sensor/vigil/agent/correlate"
	"github.com/vigil-sensor/vigil/agent/proctree"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// maxChain bounds the processes a cause names; a longer chain keeps its
// first two and last two, with "..." between.
const maxChain = 5

// loginHelpers are the programs between a login and the user's first own
// process (the per-connection sshd and its helpers, login(1)); the cause
// leaves them out of the chain a login started.
var loginHelpers = []string{"sshd", "sshd-session", "sshd-auth", "dropbear", "login"}

// cause names the likely entry point of the story in one plain ASCII
// sentence. In order:
//
//   - when the incident's process is in a login session the agent saw
//     open (or the story is a login without a process): the login, its
//     source, time and the failed logins from that source before it, and
//     the chain of programs the login started:
//     "A login to alice over sshd from 127.0.0.1 at 10:02:03 UTC, after 5
//     failed logins from that address, started bash -> cat, which read
//     /etc/shadow."
//   - when no signal has a process: the failed logins, "5 failed sshd
//     logins for alice from 127.0.0.1 within 1 minute.", or else the
//     primary signal's reason;
//   - when the process tree's root (see correlate.Signal.TreeRoot) was
//     started by a service manager: "The network service nginx (pid 20)
//     started sh -> curl." ("network" when Listening says so);
//   - otherwise the parent chain from the tree root: "Started by cron (pid
//     900) -> sh -> /tmp/x."
//
// A file or peer of the focus signal ends the chain: ", which read
// /etc/shadow", ", which talked to 203.0.113.9".
func (b *Builder) cause(sigs []correlate.Signal, p int, focus *correlate.Signal, login *vigilv1.Login) string {
	var s string
	switch {
	case login != nil:
		s = loginCause(sigs, focus, login)
	case focus == nil:
		s = hostCause(sigs, p)
	default:
		s = b.treeCause(focus)
	}
	return ascii(s)
}

// loginCause tells the story of a login session.
func loginCause(sigs []correlate.Signal, focus *correlate.Signal, l *vigilv1.Login) string {
	var b strings.Builder
	b.WriteString("A login")
	if l.User != "" {
		b.WriteString(" to " + l.User)
	}
	if l.Service != "" {
		b.WriteString(" over " + l.Service)
	}
	switch {
	case l.RemoteHost != "":
		b.WriteString(" from " + l.RemoteHost)
	case l.Tty != "":
		b.WriteString(" on " + l.Tty)
	}
	var at time.Time
	if l.Time != nil {
		at = l.Time.AsTime()
		b.WriteString(" at " + at.UTC().Format("15:04:05") + " UTC")
	}
	if l.RemoteHost != "" {
		n := 0
		for i := range sigs {
			s := &sigs[i]
			if s.FailedLogins > 0 && s.RemoteHost == l.RemoteHost && (at.IsZero() || !s.Time.After(at)) {
				n += s.FailedLogins
			}
		}
		if n > 0 {
			fmt.Fprintf(&b, ", after %d failed %s from that address,", n, plural(n, "login", "logins"))
		}
	}
	if focus != nil {
		if chain := sessionChain(focus, l); len(chain) > 0 {
			b.WriteString(" started " + chainText(chain) + deed(focus, true))
		}
	}
	return strings.TrimSuffix(b.String(), ",") + "."
}

// sessionChain returns the processes of focus's lineage that the login
// started, below the process that opened the session and its helpers.
func sessionChain(focus *correlate.Signal, l *vigilv1.Login) []proctree.Entry {
	lin := focus.Lineage()
	start := -1
	for i := range lin {
		if l.Pid != 0 && lin[i].PID == l.Pid {
			start = i + 1
		}
	}
	if start < 0 {
		start = len(lin) - 1
		for i := range lin {
			if lin[i].SessionID == l.SessionId {
				start = i
				break
			}
		}
	}
	for start < len(lin)-1 {
		name := correlate.ProcessName(&lin[start])
		if name != l.Service && !slices.Contains(loginHelpers, name) {
			break
		}
		start++
	}
	return lin[min(start, len(lin)):]
}

// hostCause tells a story without processes: failed logins, or the primary
// signal's reason.
func hostCause(sigs []correlate.Signal, p int) string {
	host := ""
	if sigs[p].FailedLogins > 0 {
		host = sigs[p].RemoteHost
	} else {
		for i := range sigs {
			if sigs[i].FailedLogins > 0 {
				host = sigs[i].RemoteHost
				break
			}
		}
	}
	n, service := 0, ""
	var users []string
	var first, last time.Time
	for i := range sigs {
		s := &sigs[i]
		if s.FailedLogins == 0 || s.RemoteHost != host {
			continue
		}
		n += s.FailedLogins
		if service == "" {
			service = s.Service
		}
		if s.User != "" && !slices.Contains(users, s.User) {
			users = append(users, s.User)
		}
		if f := s.Time.Add(-s.Span); first.IsZero() || f.Before(first) {
			first = f
		}
		l := s.Time
		if s.LastSeen.After(l) {
			l = s.LastSeen
		}
		if l.After(last) {
			last = l
		}
	}
	if n == 0 {
		r := sigs[p].Reason
		if r == "" {
			r = sigs[p].Title
		}
		return strings.TrimSuffix(r, ".") + "."
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d failed ", n)
	if service != "" {
		b.WriteString(service + " ")
	}
	b.WriteString(plural(n, "login", "logins"))
	switch len(users) {
	case 0:
	case 1:
		b.WriteString(" for " + users[0])
	default:
		fmt.Fprintf(&b, " for %d users", len(users))
	}
	if host != "" {
		b.WriteString(" from " + host)
	}
	if w := within(last.Sub(first)); w != "" {
		b.WriteString(" " + w)
	}
	return b.String() + "."
}

// within says how long a burst lasted, rounded up: "within 40 seconds",
// "within 1 minute", "within 3 hours"; empty for no time at all.
func within(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d < time.Minute:
		n := int((d + time.Second - 1) / time.Second)
		return fmt.Sprintf("within %d %s", n, plural(n, "second", "seconds"))
	case d <= 2*time.Hour:
		n := int((d + time.Minute - 1) / time.Minute)
		return fmt.Sprintf("within %d %s", n, plural(n, "minute", "minutes"))
	default:
		n := int((d + time.Hour - 1) / time.Hour)
		return fmt.Sprintf("within %d hours", n)
	}
}

// treeCause tells where a process outside any known login came from: a
// service, or the parent chain from its tree root.
func (b *Builder) treeCause(focus *correlate.Signal) string {
	chain, parent := focus.Chain()
	proc := focus.Process
	if len(chain) == 0 {
		return fmt.Sprintf("Raised by the system process %s (pid %d)%s.", display(proc), proc.PID, deed(focus, true))
	}
	root := &chain[0]
	if (parent != nil && correlate.ServiceManager(parent)) || (parent == nil && root.PPID == 1) {
		kind := "service"
		if b.Listening != nil && b.Listening(root.PID, root.StartTime) {
			kind = "network service"
		}
		switch {
		case len(chain) > 1:
			return fmt.Sprintf("The %s %s (pid %d) started %s%s.", kind, display(root), root.PID, chainText(chain[1:]), deed(focus, true))
		case deed(focus, false) != "":
			return fmt.Sprintf("The %s %s (pid %d)%s.", kind, display(root), root.PID, deed(focus, false))
		default:
			return fmt.Sprintf("The signal came from the %s %s (pid %d) itself.", kind, display(root), root.PID)
		}
	}
	switch {
	case len(chain) > 1:
		return fmt.Sprintf("Started by %s (pid %d) -> %s%s.", display(root), root.PID, chainText(chain[1:]), deed(focus, true))
	case parent != nil:
		return fmt.Sprintf("Started by %s (pid %d) -> %s%s.", display(parent), parent.PID, display(root), deed(focus, true))
	default:
		return fmt.Sprintf("Started by an unknown parent (pid %d) -> %s%s.", root.PPID, display(root), deed(focus, true))
	}
}

// chainText names processes joined by " -> ", eliding the middle of a long chain.
func chainText(chain []proctree.Entry) string {
	names := make([]string, 0, len(chain))
	for i := range chain {
		names = append(names, display(&chain[i]))
	}
	if len(names) > maxChain {
		names = append(append(names[:2:2], "..."), names[len(names)-2:]...)
	}
	return strings.Join(names, " -> ")
}

// deed is what the focus signal's event did: ", which read /etc/shadow"
// (or " read /etc/shadow" without which), ", which talked to 192.0.2.1";
// empty when the signal names neither a file nor a peer.
func deed(s *correlate.Signal, which bool) string {
	var d string
	switch {
	case s.File != "":
		d = fileVerb(s.FileOp) + " " + s.File
	case s.RemoteAddr != "":
		d = "talked to " + s.RemoteAddr
	default:
		return ""
	}
	if which {
		return ", which " + d
	}
	return " " + d
}

// fileVerb is the past tense of a file operation.
func fileVerb(op string) string {
	switch op {
	case correlate.FileRead:
		return "read"
	case correlate.FileWrite:
		return "wrote"
	case correlate.FileCreate:
		return "created"
	case correlate.FileRename:
		return "renamed"
	case correlate.FileUnlink:
		return "deleted"
	case correlate.FileChmod:
		return "changed the mode of"
	case correlate.FileChown:
		return "changed the owner of"
	case correlate.FileLink:
		return "linked"
	case correlate.FileSymlink:
		return "made the symbolic link"
	}
	return "touched"
}

// systemDirs hold programs a cause names by their base name; anything else
// is named by its full path, which is often the point (/tmp/x).
var systemDirs = []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"}

// systemTrees are directories whose whole subtree counts as systemDirs.
var systemTrees = []string{"/usr/lib/", "/usr/libexec/", "/lib/"}

// display is how a cause names a process.
func display(e *proctree.Entry) string {
	if e.Exe == "" {
		return e.Comm
	}
	if e.ExeDeleted || e.ExeMemfd {
		return e.Exe
	}
	if slices.Contains(systemDirs, path.Dir(e.Exe)) {
		return path.Base(e.Exe)
	}
	for _, t := range systemTrees {
		if strings.HasPrefix(e.Exe, t) {
			return path.Base(e.Exe)
		}
	}
	return e.Exe
}

// ascii replaces every character outside printable ASCII with '?', so that
// names chosen by an attacker cannot break a log line or a terminal.
func ascii(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

// The recommended actions, strongest first: their rank orders them.
var actionRank = map[string]int{
	correlate.ResponseKill:        0,
	correlate.ResponseFreeze:      1,
	correlate.ResponseQuarantine:  2,
	correlate.ResponseBlockSource: 3,
	correlate.ResponseIsolate:     4,
	correlate.ResponseRestore:     5,
}

// restoreTactics are the ATT&CK tactics of rules whose modified file is
// worth restoring: Persistence, Privilege Escalation, Credential Access.
var restoreTactics = []string{"TA0003", "TA0004", "TA0006"}

// actions returns the recommended actions: first the responses rules asked
// for, then the agent's own suggestions, each part in the order kill,
// freeze, quarantine, block_source, isolate, restore, without duplicates
// (same action and target). Rule responses:
//
//   - kill: the signal's process, pid:N;
//   - freeze and quarantine: the signal's process (with its descendants), pid:N;
//   - block_source: the signal's RemoteHost, else RemoteAddr, else its
//     session's source, addr:X;
//   - isolate: the host, host:ID;
//   - restore: the signal's File.
//
// Suggestions: block the source of failed logins; freeze the process of a
// process signal at high severity or above (never its tree root: that is
// often the session an operator works in); restore a file a rule of
// persistence, privilege escalation or credential access saw modified.
// Processes that have exited and pid 1 are never targets.
func (b *Builder) actions(sigs []correlate.Signal) []*vigilv1.RecommendedAction {
	var rules, own []*vigilv1.RecommendedAction
	for i := range sigs {
		if a := b.ruleAction(&sigs[i]); a != nil {
			rules = append(rules, a)
		}
	}
	failures := map[string]int{}
	var hosts []string
	for i := range sigs {
		s := &sigs[i]
		if s.FailedLogins > 0 && s.RemoteHost != "" {
			if failures[s.RemoteHost] == 0 {
				hosts = append(hosts, s.RemoteHost)
			}
			failures[s.RemoteHost] += s.FailedLogins
		}
		if s.Process != nil && s.Severity >= vigilv1.Severity_SEVERITY_HIGH {
			if t := freezeTarget(s); t != nil {
				own = append(own, &vigilv1.RecommendedAction{
					Action: correlate.ResponseFreeze,
					Target: pidTarget(t),
					Reason: ascii(fmt.Sprintf("A %s signal came from %s (pid %d); freezing it and its descendants stops them and keeps them for analysis.",
						severityWord(s.Severity), display(t), t.PID)),
				})
			}
		}
		if s.Source == correlate.SourceRule && s.File != "" && correlate.FileModified(s.FileOp) &&
			s.Attack != nil && slices.Contains(restoreTactics, s.Attack.TacticId) && b.restorable(s.File) {
			who := "a process"
			if s.Process != nil {
				who = fmt.Sprintf("%s (pid %d)", display(s.Process), s.Process.PID)
			}
			own = append(own, &vigilv1.RecommendedAction{
				Action: correlate.ResponseRestore,
				Target: "file:" + s.File,
				Reason: ascii(fmt.Sprintf("%s %s %s, which rule %s watches for %s; restore it from a known-good copy.",
					who, fileVerb(s.FileOp), s.File, s.RuleID, strings.ToLower(s.Attack.Tactic))),
			})
		}
	}
	for _, h := range hosts {
		n := failures[h]
		own = append(own, &vigilv1.RecommendedAction{
			Action: correlate.ResponseBlockSource,
			Target: "addr:" + h,
			Reason: ascii(fmt.Sprintf("%d failed %s came from %s.", n, plural(n, "login", "logins"), h)),
		})
	}
	rank := func(a, b *vigilv1.RecommendedAction) int { return actionRank[a.Action] - actionRank[b.Action] }
	slices.SortStableFunc(rules, rank)
	slices.SortStableFunc(own, rank)
	var out []*vigilv1.RecommendedAction
	for _, a := range append(rules, own...) {
		if !slices.ContainsFunc(out, func(o *vigilv1.RecommendedAction) bool { return o.Action == a.Action && o.Target == a.Target }) {
			out = append(out, a)
		}
	}
	return out
}

// ruleAction is the response rule signal s asks for; nil when it asks for
// none or its target is unknown or not fit.
func (b *Builder) ruleAction(s *correlate.Signal) *vigilv1.RecommendedAction {
	a := &vigilv1.RecommendedAction{Action: s.Response}
	switch s.Response {
	case correlate.ResponseKill:
		if !fitProcess(s.Process) {
			return nil
		}
		a.Target = pidTarget(s.Process)
		a.Reason = fmt.Sprintf("Rule %s asks to kill %s (pid %d).", s.RuleID, display(s.Process), s.Process.PID)
	case correlate.ResponseFreeze:
		t := freezeTarget(s)
		if t == nil {
			return nil
		}
		a.Target = pidTarget(t)
		a.Reason = fmt.Sprintf("Rule %s asks to freeze %s (pid %d) and its descendants.", s.RuleID, display(t), t.PID)
	case correlate.ResponseQuarantine:
		t := freezeTarget(s)
		if t == nil {
			return nil
		}
		a.Target = pidTarget(t)
		a.Reason = fmt.Sprintf("Rule %s asks to cut the network of %s (pid %d) and its descendants.", s.RuleID, display(t), t.PID)
	case correlate.ResponseBlockSource:
		addr := s.RemoteHost
		if addr == "" {
			addr = s.RemoteAddr
		}
		if addr == "" {
			addr = s.Login.GetRemoteHost()
		}
		if addr == "" {
			return nil
		}
		a.Target = "addr:" + addr
		a.Reason = fmt.Sprintf("Rule %s asks to block %s.", s.RuleID, addr)
	case correlate.ResponseIsolate:
		a.Target = "host:" + b.HostID
		a.Reason = fmt.Sprintf("Rule %s asks to cut the host off the network.", s.RuleID)
	case correlate.ResponseRestore:
		if s.File == "" || !b.restorable(s.File) {
			return nil
		}
		a.Target = "file:" + s.File
		a.Reason = fmt.Sprintf("Rule %s asks to restore %s.", s.RuleID, s.File)
	default:
		return nil
	}
	a.Reason = ascii(a.Reason)
	return a
}

// restorable reports whether restore can put path back (see
// Builder.Restorable).
func (b *Builder) restorable(path string) bool {
	return b.Restorable == nil || b.Restorable(path)
}

// freezeTarget is the process to freeze (or quarantine) for s: the
// process itself, with its descendants, when fit, else nil.
func freezeTarget(s *correlate.Signal) *proctree.Entry {
	if fitProcess(s.Process) {
		return s.Process
	}
	return nil
}

// fitProcess reports whether a response may target e: known, running, not pid 1.
func fitProcess(e *proctree.Entry) bool {
	return e != nil && !e.Exited && e.PID > 1
}

func pidTarget(e *proctree.Entry) string { return fmt.Sprintf("pid:%d", e.PID) }

// severityWord names a severity in a sentence.
func severityWord(s vigilv1.Severity) string {
	switch s {
	case vigilv1.Severity_SEVERITY_CRITICAL:
		return "critical"
	case vigilv1.Severity_SEVERITY_HIGH:
		return "high-severity"
	case vigilv1.Severity_SEVERITY_MEDIUM:
		return "medium-severity"
	case vigilv1.Severity_SEVERITY_LOW:
		return "low-severity"
	}
	return "informational"
}
