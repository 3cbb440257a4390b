// Package render turns incidents into text for people (an aligned table,
// a one-line-per-incident feed, a detail view with the process tree) and
// into JSON lines for programs.
package render

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// TimeFormat is how times are shown: UTC, to the second.
const TimeFormat = "2006-01-02T15:04:05Z"

// header is the table's column titles.
var header = []string{"CURSOR", "TIME", "SEVERITY", "HOST", "RULE", "TECHNIQUE", "PID", "EXE", "TITLE"}

// Table writes incidents as a table with aligned columns and a header line.
func Table(w io.Writer, incs []*vigilv1.Incident) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, inc := range incs {
		fmt.Fprintln(tw, strings.Join(row(inc), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// feedWidths are the column widths of Feed lines, so that lines printed
// one at a time still line up while values fit.
var feedWidths = []int{7, 20, 8, 16, 24, 10, 7, 24}

// FeedHeader returns the header line that goes above Feed lines.
func FeedHeader() string {
	return feedLine(header)
}

// Feed returns one incident as one line with the columns of FeedHeader,
// for output that cannot wait for the whole table.
//
// A revision after the first, which correlation made by adding a signal,
// says so at the end of its title: "(rev 3: +signal RULE)", so that the
// lines tail prints for one incident tell its revisions apart.
func Feed(inc *vigilv1.Incident) string {
	cells := row(inc)
	if r := inc.GetRevision(); r > 1 {
		note := fmt.Sprintf("(rev %d", r)
		if s := newestSignal(inc); s != nil && s.GetRuleId() != "" {
			note += ": +signal " + Printable(s.GetRuleId())
		}
		cells[len(cells)-1] += " " + note + ")"
	}
	return feedLine(cells)
}

// feedLine pads every cell but the last to its width.
func feedLine(cells []string) string {
	var b strings.Builder
	for i, c := range cells {
		if i < len(feedWidths) {
			fmt.Fprintf(&b, "%-*s  ", feedWidths[i], c)
			continue
		}
		b.WriteString(c)
	}
	return strings.TrimRight(b.String(), " ")
}

// row returns the table cells of one incident.
func row(inc *vigilv1.Incident) []string {
	host := inc.GetHostname()
	if host == "" {
		host = inc.GetHostId()
	}
	pid, exe := "", inc.GetProcess().GetExe()
	if p := inc.GetProcess(); p != nil {
		pid = strconv.FormatUint(uint64(p.GetPid()), 10)
	}
	if s := newestWithProcess(inc); s != nil {
		pid, exe = strconv.FormatUint(uint64(s.GetPid()), 10), s.GetExe()
	}
	return []string{
		strconv.FormatUint(inc.GetCursor(), 10),
		Time(LatestTime(inc)),
		Severity(inc.GetSeverity()),
		dash(host),
		dash(inc.GetRuleId()),
		dash(inc.GetAttack().GetTechniqueId()),
		dash(pid),
		dash(exe),
		dash(inc.GetTitle()),
	}
}

// LatestTime returns when an incident last changed on its host: the time
// of its newest signal, or its own time when it has no signals. A
// correlated incident's later revisions so show when they were updated,
// not when the first signal came.
func LatestTime(inc *vigilv1.Incident) *timestamppb.Timestamp {
	latest := inc.GetTime()
	for _, s := range inc.GetSignals() {
		if t := s.GetTime(); t != nil && (latest == nil || t.AsTime().After(latest.AsTime())) {
			latest = t
		}
	}
	return latest
}

// newestWithProcess returns the newest signal that names a process, or nil.
func newestWithProcess(inc *vigilv1.Incident) *vigilv1.Signal {
	var newest *vigilv1.Signal
	for _, s := range inc.GetSignals() {
		if s.GetPid() == 0 {
			continue
		}
		if newest == nil || !s.GetTime().AsTime().Before(newest.GetTime().AsTime()) {
			newest = s
		}
	}
	return newest
}

// newestSignal returns the newest signal of an incident (the last one of
// equal time), or nil when it has none.
func newestSignal(inc *vigilv1.Incident) *vigilv1.Signal {
	var newest *vigilv1.Signal
	for _, s := range inc.GetSignals() {
		if newest == nil || !s.GetTime().AsTime().Before(newest.GetTime().AsTime()) {
			newest = s
		}
	}
	return newest
}

// dash stands in for an empty cell and makes the text safe for a
// terminal (see Printable).
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return Printable(s)
}

// Printable returns s with control characters and invalid UTF-8 escaped Go
// style (\x1b, \n, ...), so that text an attacker chose, such as a file
// name, cannot move the cursor, retitle the terminal or break a table row.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

// Count returns n with the noun that fits it: "1 file", "2 files", "0 files".
func Count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// Time formats a timestamp in UTC, or "-" when it is unset.
func Time(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format(TimeFormat)
}

// Severity names a severity in lower case: "info", "low", "medium",
// "high", "critical" ("unspecified" for the zero value).
func Severity(s vigilv1.Severity) string {
	name, ok := vigilv1.Severity_name[int32(s)]
	if !ok {
		return strconv.Itoa(int(s))
	}
	return strings.ToLower(strings.TrimPrefix(name, "SEVERITY_"))
}

// ParseSeverity reads a severity name as Severity writes it, in any case,
// with or without the SEVERITY_ prefix.
func ParseSeverity(s string) (vigilv1.Severity, error) {
	name := "SEVERITY_" + strings.TrimPrefix(strings.ToUpper(s), "SEVERITY_")
	v, ok := vigilv1.Severity_value[name]
	if !ok || v == 0 {
		return 0, fmt.Errorf("unknown severity %q (want info, low, medium, high or critical)", s)
	}
	return vigilv1.Severity(v), nil
}

// JSONLine writes an incident as one line of JSON (protojson field names).
func JSONLine(w io.Writer, inc *vigilv1.Incident) error {
	b, err := protojson.Marshal(inc)
	if err != nil {
		return fmt.Errorf("encode incident %s: %w", inc.GetId(), err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write incident %s: %w", inc.GetId(), err)
	}
	return nil
}

// Show writes an incident's details and its process tree: the ancestry
// from the oldest ancestor (normally pid 1) down to the process that
// triggered the rule, one process a line, each indented under its parent.
func Show(w io.Writer, inc *vigilv1.Incident) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	field := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, dash(v)) }
	field("Incident", inc.GetId())
	field("Title", inc.GetTitle())
	field("Severity", Severity(inc.GetSeverity()))
	field("Time", Time(inc.GetTime()))
	field("Received", Time(inc.GetReceivedTime()))
	field("Cursor", strconv.FormatUint(inc.GetCursor(), 10))
	host := inc.GetHostname()
	switch {
	case host == "":
		host = inc.GetHostId()
	case inc.GetHostId() != "":
		host += " (" + inc.GetHostId() + ")"
	}
	field("Host", host)
	field("Rule", inc.GetRuleId())
	field("ATT&CK", attack(inc.GetAttack()))
	if l := inc.GetLogin(); l != nil {
		field("Login", LoginLine(l))
	}
	if inc.GetScore() > 0 {
		field("Score", strconv.FormatFloat(inc.GetScore(), 'f', 1, 64)+" / 100")
	}
	if r := inc.GetRevision(); r > 1 {
		field("Revision", strconv.FormatUint(uint64(r), 10)+" (updated as correlated signals arrived)")
	}
	if c := inc.GetCause(); c != "" {
		field("Cause", c)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write incident: %w", err)
	}

	var b strings.Builder
	if d := inc.GetDescription(); d != "" {
		// The description quotes what the host saw (a process's
		// arguments, a file name), so a newline in it is escaped like any
		// other control character: it must not start a line of its own
		// that could pass for part of this output.
		b.WriteString("\n  " + Printable(d) + "\n")
	}
	if sigs := inc.GetSignals(); len(sigs) > 0 {
		b.WriteString("\nTimeline\n")
		b.WriteString(Timeline(sigs))
	}
	b.WriteString("\nProcess tree\n")
	b.WriteString(Tree(inc))
	if rel := inc.GetRelated(); len(rel) > 0 {
		b.WriteString("\nRelated processes\n")
		for _, p := range rel {
			b.WriteString("  " + Process(p) + "\n")
		}
	}
	if acts := inc.GetRecommendedActions(); len(acts) > 0 {
		b.WriteString("\nRecommended actions\n")
		for i, a := range acts {
			fmt.Fprintf(&b, "  %d. %s %s: %s\n", i+1, Printable(a.GetAction()), Printable(a.GetTarget()), Printable(a.GetReason()))
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write incident: %w", err)
	}
	return nil
}

// Timeline formats an incident's signals, oldest first, one a line:
// "TIME SEVERITY RULE [TECHNIQUE] pid PID EXE: REASON (N repeats)".
func Timeline(sigs []*vigilv1.Signal) string {
	var b strings.Builder
	for _, s := range sigs {
		fmt.Fprintf(&b, "  %s  %-8s %s", Time(s.GetTime()), Severity(s.GetSeverity()), Printable(s.GetRuleId()))
		if t := s.GetAttack().GetTechniqueId(); t != "" {
			b.WriteString(" [" + Printable(t) + "]")
		}
		if s.GetPid() != 0 {
			fmt.Fprintf(&b, " pid %d %s", s.GetPid(), Printable(s.GetExe()))
		} else if h := s.GetRemoteHost(); h != "" {
			b.WriteString(" from " + Printable(h))
		}
		b.WriteString(": " + Printable(s.GetReason()))
		if n := s.GetRepeats(); n > 0 {
			b.WriteString(" (" + Count(int(n), "repeat", "repeats") + ")")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// LoginLine formats a login session as "sshd login of alice from
// 203.0.113.7 on ssh at 2026-12-03T16:13:20Z (session 12, pid 4242)".
func LoginLine(l *vigilv1.Login) string {
	var b strings.Builder
	b.WriteString(dash(l.GetService()) + " login of " + dash(l.GetUser()))
	if h := l.GetRemoteHost(); h != "" {
		b.WriteString(" from " + h)
	}
	if tty := l.GetTty(); tty != "" {
		b.WriteString(" on " + tty)
	}
	fmt.Fprintf(&b, " at %s (session %d, pid %d)", Time(l.GetTime()), l.GetSessionId(), l.GetPid())
	return b.String()
}

// attack formats an ATT&CK mapping as "TA0002 Execution / T1059.004 Unix Shell".
func attack(a *vigilv1.Attack) string {
	tactic := strings.TrimSpace(a.GetTacticId() + " " + a.GetTactic())
	tech := strings.TrimSpace(a.GetTechniqueId() + " " + a.GetTechnique())
	switch {
	case tactic == "":
		return tech
	case tech == "":
		return tactic
	}
	return tactic + " / " + tech
}

// Tree returns the process tree of an incident, oldest ancestor first,
// each line ending in a newline; the triggering process is marked.
func Tree(inc *vigilv1.Incident) string {
	chain := slices.Clone(inc.GetAncestors())
	slices.Reverse(chain)
	if p := inc.GetProcess(); p != nil {
		chain = append(chain, p)
	}
	if len(chain) == 0 {
		return "  (no process recorded)\n"
	}
	var b strings.Builder
	for depth, p := range chain {
		if depth > 0 {
			b.WriteString(strings.Repeat("   ", depth-1) + "└─ ")
		}
		b.WriteString(Process(p))
		if p == inc.GetProcess() {
			b.WriteString("   <- triggered the rule")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Process formats one process as "PID USER EXE ARGV...", with notes on a
// deleted or memfd executable, truncated arguments and exit.
func Process(p *vigilv1.Process) string {
	user := p.GetUser()
	if user == "" {
		user = "uid " + strconv.FormatUint(uint64(p.GetUid()), 10)
	}
	parts := []string{strconv.FormatUint(uint64(p.GetPid()), 10), Printable(user), dash(p.GetExe())}
	if p.GetExeDeleted() {
		parts = append(parts, "(deleted)")
	}
	if p.GetExeMemfd() {
		parts = append(parts, "(memfd)")
	}
	for _, a := range p.GetArgs() {
		parts = append(parts, quote(shorten(a)))
	}
	if p.GetArgsTruncated() {
		parts = append(parts, "…")
	}
	if p.GetExited() {
		parts = append(parts, fmt.Sprintf("(exited, status %d)", p.GetExitCode()))
	}
	return strings.Join(parts, " ")
}

// MaxArgShown is how many bytes of one argument a process line shows; the
// rest is elided ("…"), so that one huge argument does not drown the tree.
// --json shows every byte the agent kept.
const MaxArgShown = 120

func shorten(a string) string {
	if len(a) <= MaxArgShown {
		return a
	}
	cut := MaxArgShown
	for cut > 0 && !utf8.RuneStart(a[cut]) {
		cut--
	}
	return a[:cut] + "…"
}

// quote returns an argument as is when it is plain, Go-quoted when it is
// empty or holds spaces, quotes or control characters.
func quote(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == '"' || r == '\'' || r == '\\' || r == 0x7f
	}) {
		return strconv.Quote(s)
	}
	return s
}
