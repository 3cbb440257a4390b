package correlate

import (
	"path"
	"strings"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// The values of Signal.Source.
const (
	// SourceRule is a match of a detection rule.
	SourceRule = "rule"
	// SourceAnomaly is a finding of a local anomaly scorer.
	SourceAnomaly = "anomaly"
	// SourceModel is a finding of a learned sequence model.
	SourceModel = "model"
)

// The values of Signal.Response, the responses a rule may ask for. They are
// also the actions of an incident's recommended actions.
const (
	// ResponseKill kills the signal's process.
	ResponseKill = "kill"
	// ResponseFreeze freezes the process tree the signal's process belongs to.
	ResponseFreeze = "freeze"
	// ResponseQuarantine moves the signal's executable out of reach.
	ResponseQuarantine = "quarantine"
	// ResponseBlockSource blocks the signal's remote address.
	ResponseBlockSource = "block_source"
	// ResponseIsolate cuts the host off the network except for the server.
	ResponseIsolate = "isolate"
	// ResponseRestore restores the signal's file from a known-good copy.
	ResponseRestore = "restore"
)

// The values of Signal.FileOp.
const (
	// FileRead is an open for reading.
	FileRead = "read"
	// FileWrite is an open for writing or truncating.
	FileWrite = "write"
	// FileCreate is an open that created the file.
	FileCreate = "create"
	// FileRename is a rename; File is the old path.
	FileRename = "rename"
	// FileUnlink is a removal.
	FileUnlink = "unlink"
	// FileChmod is a mode change.
	FileChmod = "chmod"
	// FileChown is an owner change.
	FileChown = "chown"
	// FileLink is a new hard link; File is the existing path.
	FileLink = "link"
	// FileSymlink is a new symbolic link; File is the link.
	FileSymlink = "symlink"
)

// FileModified reports whether a file operation changed the file system,
// that is, anything but FileRead and the empty operation.
func FileModified(op string) bool {
	return op != "" && op != FileRead
}

// Signal is one detection on its way to an incident: a rule match, an
// anomaly finding or a login-level detection. The correlator keeps the
// signal, with its pointers and slices, until its group closes: the caller
// must not change them after Add.
type Signal struct {
	// Time is when the event behind the signal happened. The correlator's
	// only clock: groups open and close by signal times, never by the wall
	// clock, so a replay gives the same incidents.
	Time time.Time
	// Source is what raised the signal: SourceRule, SourceAnomaly or
	// SourceModel; empty means SourceRule.
	Source string
	// RuleID is the rule or detector id, e.g. "shadow-file-read" or
	// "anomaly.rare-child". Required.
	RuleID string
	// Title is the one-line summary.
	Title string
	// Severity ranks the signal on its own.
	Severity vigilv1.Severity
	// Attack is the ATT&CK mapping; nil when the signal has none.
	Attack *vigilv1.Attack
	// Reason says in words why the signal was raised.
	Reason string
	// Score is the signal's own score from 0 to 100; 0 means unset, and Add
	// derives it from Severity (see SeverityScore).
	Score float64
	// Response is the response the rule asks for, one of the Response
	// constants, or empty.
	Response string
	// Repeats counts identical signals the source already folded into this
	// one; the correlator adds the ones it folds.
	Repeats int
	// KilledAtExec is set when the kernel killed the process as it
	// executed (a kill list of the response engine): the response is done.
	KilledAtExec bool
	// Process is the process the signal is about; nil for a host-level
	// signal such as failed logins from a remote address.
	Process *proctree.Entry
	// Ancestors are the process's parent, grandparent and so on (parent
	// first), as proctree.Tree.Ancestors returns them.
	Ancestors []proctree.Entry
	// Login is the login session of the process (from the session table,
	// by Process.SessionID), when known; for a login signal, the session
	// the login opened, if any.
	Login *vigilv1.Login
	// RemoteHost is the source address of a login signal (PAM_RHOST).
	RemoteHost string
	// User is the user a login signal is about.
	User string
	// Service is the PAM service of a login signal, e.g. "sshd".
	Service string
	// FailedLogins is the number of failed logins a login signal stands for
	// (0 when it is not about failures). Folded repeats add theirs.
	FailedLogins int
	// Span is how long before Time the first event the signal stands for
	// happened, e.g. the first of 5 failed logins; 0 for a single event.
	Span time.Duration
	// File is the path of the file the event touched, if any.
	File string
	// FileOp is what the event did to File: one of the File constants.
	FileOp string
	// RemoteAddr is the peer of the event's connection, if any, without port.
	RemoteAddr string
	// Object is what the signal is about beyond its process when that is
	// neither File nor RemoteAddr: a DNS name, a child executable, a user.
	// Analyst feedback matches anomaly signals on it.
	Object string
	// LastSeen is the time of the latest repeat the correlator folded into
	// the signal; zero until it folds one. Callers leave it zero.
	LastSeen time.Time
}

// SeverityScore is the score of a signal that has none of its own: info 10,
// low 25, medium 50, high 75, critical 90, and 0 when unspecified.
func SeverityScore(s vigilv1.Severity) float64 {
	switch s {
	case vigilv1.Severity_SEVERITY_INFO:
		return 10
	case vigilv1.Severity_SEVERITY_LOW:
		return 25
	case vigilv1.Severity_SEVERITY_MEDIUM:
		return 50
	case vigilv1.Severity_SEVERITY_HIGH:
		return 75
	case vigilv1.Severity_SEVERITY_CRITICAL:
		return 90
	}
	return 0
}

// Lineage returns the signal's process with its known ancestors, topmost
// first and the process last; nil for a host-level signal.
func (s *Signal) Lineage() []proctree.Entry {
	if s.Process == nil {
		return nil
	}
	out := make([]proctree.Entry, 0, len(s.Ancestors)+1)
	for i := len(s.Ancestors) - 1; i >= 0; i-- {
		out = append(out, s.Ancestors[i])
	}
	return append(out, *s.Process)
}

// Chain returns the part of the signal's process tree that tells where it
// came from: the tree root (see TreeRoot) first, down to the process. parent
// is the root's parent when the ancestry names it, else nil. chain is empty
// when the process is itself part of the system's plumbing (pid 1, a
// service manager, a listening daemon) or the signal is host-level.
func (s *Signal) Chain() (chain []proctree.Entry, parent *proctree.Entry) {
	lin := s.Lineage()
	for i := range lin {
		if plumbing(lin, i) {
			continue
		}
		if i > 0 {
			parent = &lin[i-1]
		}
		return lin[i:], parent
	}
	return nil, nil
}

// TreeRoot returns the root of the signal's process tree: the topmost
// ancestor (or the process itself) that is not part of the system's
// plumbing. Plumbing is:
//
//   - pid 1 and any process without a parent (pid 2, kthreadd);
//   - service managers and container runtimes, by executable name: see
//     ServiceManager;
//   - listening daemons (sshd, sshd-session's listener, dropbear, cron,
//     crond, atd, anacron, inetd, xinetd) when their parent is plumbing too,
//     that is, the listener itself and not the per-connection or per-job
//     child it forks: "sshd: alice [priv]" under the sshd listener, or the
//     cron child that runs one job, is the root of what it starts.
//
// Two signals whose processes have the same root, identified by pid and
// start time, belong to one story. ok is false for host-level signals and
// for plumbing processes.
func (s *Signal) TreeRoot() (root proctree.Entry, ok bool) {
	chain, _ := s.Chain()
	if len(chain) == 0 {
		return proctree.Entry{}, false
	}
	return chain[0], true
}

// serviceManagers are the executable names of processes that start
// services and containers; exact names, plus the prefixes in
// serviceManagerPrefixes.
var serviceManagers = map[string]bool{
	"systemd": true, "init": true, "upstart": true, "openrc-init": true, "openrc-run": true,
	"runit": true, "runsv": true, "runsvdir": true, "s6-svscan": true, "s6-supervise": true,
	"supervisord": true, "launchd": true, "conmon": true, "runc": true, "crun": true,
	"tini": true, "dumb-init": true, "catatonit": true, "docker-init": true,
}

var serviceManagerPrefixes = []string{"containerd-shim", "docker-containerd-shim"}

// listeners are daemons that fork one child per connection or job; the
// daemon is plumbing, the child is where a story starts.
var listeners = map[string]bool{
	"sshd": true, "dropbear": true, "cron": true, "crond": true, "atd": true, "anacron": true,
	"inetd": true, "xinetd": true,
}

// ServiceManager reports whether e is pid 1, a process without a parent, or
// a service manager or container runtime: systemd (also as a user manager),
// init, upstart, openrc-init, openrc-run, runit, runsv, runsvdir,
// s6-svscan, s6-supervise, supervisord, launchd, conmon, runc, crun, tini,
// dumb-init, catatonit, docker-init and containerd-shim*. A process whose
// parent is one of these is a service.
func ServiceManager(e *proctree.Entry) bool {
	if e.PID <= 1 || e.PPID == 0 {
		return true
	}
	name := ProcessName(e)
	if serviceManagers[name] {
		return true
	}
	for _, p := range serviceManagerPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// plumbing reports whether lin[i] is part of the system's plumbing, given
// that it is below lin[i-1] (or, for i == 0, below the process its PPID names).
func plumbing(lin []proctree.Entry, i int) bool {
	e := &lin[i]
	if ServiceManager(e) {
		return true
	}
	if !listeners[ProcessName(e)] {
		return false
	}
	if i == 0 {
		return e.PPID == 1
	}
	return ServiceManager(&lin[i-1])
}

// ProcessName is the base name of e's executable, or its comm when the
// executable is unknown.
func ProcessName(e *proctree.Entry) string {
	if e.Exe != "" {
		return path.Base(e.Exe)
	}
	return e.Comm
}

// inSession reports whether id is a real audit session id.
func inSession(id uint32) bool {
	return id != event.NoSessionID && id != 0
}
