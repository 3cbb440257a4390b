// Package response decides whether and how the agent acts on what it
// detects, carries the actions out through the mechanisms of its
// subpackages (procctl: kill and freeze processes; netguard: block
// addresses, isolate the host, quarantine a cgroup's network; snapshot:
// roll files back) and keeps an audit record of every action requested,
// whether carried out, refused or only simulated.
//
// Three modes govern the responses of rules: detect (record only),
// recommend (incidents list recommended actions; an operator approves one
// with a command) and auto (a rule's response runs at once). An operator's
// explicit request runs in recommend and auto modes. Whatever the mode,
// the agent never acts on pid 1, kernel threads, itself, its server's
// address or anything the operator allow-listed.
package response

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/proctree"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// Mode says what the agent does with the responses of rules.
type Mode string

// The modes.
const (
	// ModeDetect records only: no action is carried out.
	ModeDetect Mode = "detect"
	// ModeRecommend lists recommended actions; an operator approves them.
	ModeRecommend Mode = "recommend"
	// ModeAuto carries a rule's response out at once.
	ModeAuto Mode = "auto"
)

// ParseMode reads a mode name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeDetect, ModeRecommend, ModeAuto:
		return m, nil
	}
	return "", fmt.Errorf("response mode %q: want detect, recommend or auto", s)
}

// The actions.
const (
	ActKill        = "kill"         // SIGKILL a process and its descendants
	ActFreeze      = "freeze"       // move a process tree into a quarantine cgroup and freeze it
	ActThaw        = "thaw"         // let a frozen tree run again, still held
	ActRelease     = "release"      // thaw and move a held tree back where it was
	ActQuarantine  = "quarantine"   // hold a process tree and cut its network
	ActBlock       = "block_source" // drop an address or prefix for the whole host
	ActUnblock     = "unblock"      // lift a block
	ActIsolate     = "isolate"      // drop all traffic but the server's and the allow-list's
	ActReleaseHost = "release_host" // end isolation
	ActRestore     = "restore"      // put a watched file back to its last known-good version
)

// Actions lists every action, for help texts and validation.
var Actions = []string{ActKill, ActFreeze, ActThaw, ActRelease, ActQuarantine, ActBlock, ActUnblock, ActIsolate, ActReleaseHost, ActRestore}

// undoes are the actions that only take back an earlier one: they run in
// every mode.
var undoes = []string{ActThaw, ActRelease, ActUnblock, ActReleaseHost}

// The results of an action.
const (
	ResultDone    = "done"
	ResultRefused = "refused"
	ResultFailed  = "failed"
	ResultDryRun  = "dry-run"
)

// Request asks for one action.
type Request struct {
	// Action is one of Actions.
	Action string
	// Target is "pid:N" (kill, freeze, quarantine; thaw and release also
	// take "held:ID"), "addr:PREFIX" or "addr:IP" (block_source, unblock),
	// "file:PATH" (restore) or "host" (isolate, release_host).
	Target string
	// StartTime pins a pid target to one process (ns since boot, as in
	// /proc); 0 takes the process that has the pid now.
	StartTime uint64
	// StartSlack is how far the process's start may be from StartTime (0:
	// the same clock tick): a start time converted from wall-clock time
	// carries the clocks' drift.
	StartSlack time.Duration
	// IncidentID is the incident the action is for, "" for none.
	IncidentID string
	// Rule is the rule whose response this is, for requests of rules.
	Rule string
	// Requester is who asks: "rule:<id>", "operator:<name>", "server:<name>".
	Requester string
	// Reason says why.
	Reason string
	// DryRun checks everything and carries nothing out.
	DryRun bool
	// TTL bounds a block (0: DefaultBlockTTL).
	TTL time.Duration
}

// DefaultBlockTTL is how long a block lasts when the request gives none.
const DefaultBlockTTL = time.Hour

// Safety is what the agent never acts on.
type Safety struct {
	// AgentPID is the agent's own pid.
	AgentPID uint32
	// Protected are addresses never blocked: the server's, the operator's
	// allow-list. Isolation keeps them reachable.
	Protected []netip.Prefix
	// AllowPIDs, AllowExes, AllowUIDs and AllowCgroups are processes never
	// acted on, by pid, executable, user and cgroup v2 id.
	AllowPIDs    []uint32
	AllowExes    []string
	AllowUIDs    []uint32
	AllowCgroups []uint64
}

// Processes kills and holds process trees.
type Processes interface {
	// KillTree kills the process (pid, start time) and its descendants.
	KillTree(pid uint32, startTime uint64) ([]int, error)
	// Freeze moves the process and its descendants into a quarantine
	// cgroup named name and freezes it.
	Freeze(pid uint32, startTime uint64, name string) (Held, error)
}

// Held is a process tree in a quarantine cgroup.
type Held interface {
	// Thaw lets it run, still held.
	Thaw() error
	// Release thaws it and moves its processes back to their cgroups.
	Release() error
	// Dir is the quarantine cgroup's directory.
	Dir() string
	// PIDs are the processes held.
	PIDs() []int
}

// Network enforces host-wide and per-cgroup network responses.
type Network interface {
	// Block drops traffic to and from prefix for ttl.
	Block(prefix netip.Prefix, ttl time.Duration) error
	// Unblock lifts a block.
	Unblock(prefix netip.Prefix) error
	// Isolate drops all traffic but the allowed prefixes'.
	Isolate(allow []netip.Prefix) error
	// Release ends isolation.
	Release() error
	// QuarantineProcesses cuts the network of the cgroup at dir and the
	// connections the processes pids, moved into it, already have. It
	// returns the undo and one line per connection cut.
	QuarantineProcesses(dir string, pids []int) (undo func() error, cut []string, err error)
}

// Files rolls watched files back.
type Files interface {
	// Restore puts path back to its last known-good version and says what changed.
	Restore(path string) (string, error)
}

// KnownFiles is Files that can tell, without restoring, whether path has a
// known-good version; a dry run of restore asks it.
type KnownFiles interface {
	// Known reports whether Restore has a known-good version of path.
	Known(path string) bool
}

// Engine carries out requests. It is safe for concurrent use.
type Engine struct {
	// Mode is the default mode for rules' responses.
	Mode Mode
	// RuleModes override Mode per rule id.
	RuleModes map[string]Mode
	// Safety is what is never acted on.
	Safety Safety
	// Processes, Network and Files carry actions out; a nil one makes its
	// actions fail with a clear reason (e.g. the network guard could not load).
	Processes Processes
	Network   Network
	Files     Files
	// Lookup reads a live process (nil: /proc).
	Lookup func(pid uint32) (proctree.Entry, error)
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// BlockTTL is how long a block lasts when the request gives none (0:
	// DefaultBlockTTL).
	BlockTTL time.Duration

	mu     sync.Mutex
	held   map[string]*hold // by action id
	blocks map[netip.Prefix]time.Time
}

// hold is a process tree the engine holds.
type hold struct {
	id, incident string
	held         Held
	undoNet      func() error
}

// ModeFor returns the mode that governs rule's responses.
func (e *Engine) ModeFor(rule string) Mode {
	if m, ok := e.RuleModes[rule]; ok {
		return m
	}
	if e.Mode == "" {
		return ModeRecommend
	}
	return e.Mode
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// errRefused marks refusals (as opposed to failures).
var errRefused = errors.New("refused")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errRefused, fmt.Sprintf(format, args...))
}

// Do checks and carries out one request and returns its audit record.
func (e *Engine) Do(req Request) *vigilv1.ActionRecord {
	id, _ := uuid.NewV7()
	start := e.now()
	mode := e.Mode
	if req.Rule != "" {
		mode = e.ModeFor(req.Rule)
	}
	if mode == "" {
		mode = ModeRecommend
	}
	rec := &vigilv1.ActionRecord{
		Id: id.String(), Time: timestamppb.New(start), Action: req.Action, Target: req.Target,
		Requester: req.Requester, Reason: req.Reason, Mode: string(mode), DryRun: req.DryRun,
		IncidentId: req.IncidentID,
	}
	detail, err := e.do(req, mode, rec.Id)
	rec.DurationUs = uint64(e.now().Sub(start).Microseconds())
	switch {
	case errors.Is(err, errRefused):
		rec.Result, rec.Detail = ResultRefused, strings.TrimPrefix(err.Error(), errRefused.Error()+": ")
	case err != nil:
		rec.Result, rec.Detail = ResultFailed, err.Error()
	case req.DryRun:
		rec.Result, rec.Detail = ResultDryRun, detail
	default:
		rec.Result, rec.Detail = ResultDone, detail
	}
	return rec
}

// Done returns the audit record of a request something else already
// carried out (the kernel's kill at exec), with what it did.
func (e *Engine) Done(req Request, detail string) *vigilv1.ActionRecord {
	id, _ := uuid.NewV7()
	mode := e.Mode
	if req.Rule != "" {
		mode = e.ModeFor(req.Rule)
	}
	return &vigilv1.ActionRecord{
		Id: id.String(), Time: timestamppb.New(e.now()), Action: req.Action, Target: req.Target,
		Requester: req.Requester, Reason: req.Reason, Mode: string(mode), Result: ResultDone, Detail: detail,
		IncidentId: req.IncidentID,
	}
}

// do runs the checks and the action; with DryRun it stops after the checks
// and says what it would do.
func (e *Engine) do(req Request, mode Mode, id string) (string, error) {
	if !slices.Contains(Actions, req.Action) {
		return "", refuse("unknown action %q (known: %s)", req.Action, strings.Join(Actions, ", "))
	}
	undo := slices.Contains(undoes, req.Action)
	switch {
	case undo:
	case mode == ModeDetect:
		return "", refuse("response mode is detect: the agent only records (set response.mode to recommend or auto)")
	case req.Rule != "" && mode != ModeAuto:
		return "", refuse("response mode for rule %s is %s: an operator approves it (vigil-agent respond approve)", req.Rule, mode)
	}
	kind, value, _ := strings.Cut(req.Target, ":")
	switch req.Action {
	case ActKill, ActFreeze, ActQuarantine:
		if kind != "pid" {
			return "", refuse("%s needs a pid:N target, not %q", req.Action, req.Target)
		}
		p, err := e.process(value, req.StartTime, req.StartSlack)
		if err != nil {
			return "", err
		}
		return e.onProcess(req, p, id)
	case ActThaw, ActRelease:
		return e.onHeld(req, kind, value)
	case ActBlock, ActUnblock:
		if kind != "addr" {
			return "", refuse("%s needs an addr:IP or addr:PREFIX target, not %q", req.Action, req.Target)
		}
		prefix, err := parsePrefix(value)
		if err != nil {
			return "", refuse("%v", err)
		}
		return e.onAddress(req, prefix)
	case ActIsolate, ActReleaseHost:
		if req.Target != "host" {
			return "", refuse("%s needs the target host, not %q", req.Action, req.Target)
		}
		return e.onHost(req)
	case ActRestore:
		if kind != "file" || !strings.HasPrefix(value, "/") {
			return "", refuse("restore needs a file:/absolute/path target, not %q", req.Target)
		}
		if e.Files == nil {
			return "", errors.New("file snapshots are not available on this agent")
		}
		if req.DryRun {
			if k, ok := e.Files.(KnownFiles); ok && !k.Known(value) {
				return "", refuse("%s has no known-good version to restore (no snapshot: not covered by the snapshot patterns, or not snapshotted yet)", value)
			}
			return "would restore " + value + " to its last known-good version", nil
		}
		return e.Files.Restore(value)
	}
	return "", refuse("action %q has no target handler", req.Action)
}

// process resolves a pid target and applies the process safety rules.
func (e *Engine) process(value string, start uint64, slack time.Duration) (proctree.Entry, error) {
	n, err := strconv.ParseUint(value, 10, 32)
	if err != nil || n == 0 {
		return proctree.Entry{}, refuse("%q is not a pid", value)
	}
	pid := uint32(n)
	switch {
	case pid == 1:
		return proctree.Entry{}, refuse("pid 1 (init) is never acted on")
	case pid == e.Safety.AgentPID:
		return proctree.Entry{}, refuse("pid %d is the agent itself", pid)
	case slices.Contains(e.Safety.AllowPIDs, pid):
		return proctree.Entry{}, refuse("pid %d is allow-listed", pid)
	}
	lookup := e.Lookup
	if lookup == nil {
		lookup = func(pid uint32) (proctree.Entry, error) {
			p, err := proctree.ReadProc("/proc", pid)
			if err != nil {
				return proctree.Entry{}, err
			}
			return *p, nil
		}
	}
	p, err := lookup(pid)
	if err != nil {
		return proctree.Entry{}, refuse("pid %d: no such process (%v)", pid, err)
	}
	switch {
	case start != 0 && !sameStart(p, start, slack):
		return p, refuse("pid %d is now another process than the one the incident names (it exited and the pid was reused)", pid)
	case p.Exe == "":
		return p, refuse("pid %d (%s) is a kernel thread", pid, p.Comm)
	case slices.Contains(e.Safety.AllowExes, p.Exe):
		return p, refuse("pid %d runs %s, which is allow-listed", pid, p.Exe)
	case slices.Contains(e.Safety.AllowUIDs, p.UID):
		return p, refuse("pid %d runs as uid %d, which is allow-listed", pid, p.UID)
	case slices.Contains(e.Safety.AllowCgroups, p.CgroupID):
		return p, refuse("pid %d is in an allow-listed cgroup", pid)
	}
	return p, nil
}

// sameStart reports whether p started at start, within slack.
func sameStart(p proctree.Entry, start uint64, slack time.Duration) bool {
	if slack <= 0 {
		return p.SameProcess(start)
	}
	d := time.Duration(int64(p.StartTime) - int64(start))
	return d.Abs() <= slack
}

// onProcess kills, freezes or quarantines a process tree.
func (e *Engine) onProcess(req Request, p proctree.Entry, id string) (string, error) {
	what := fmt.Sprintf("pid %d (%s) and its descendants", p.PID, p.Exe)
	if req.DryRun {
		return "would " + req.Action + " " + what, nil
	}
	if e.Processes == nil {
		return "", errors.New("process control is not available on this agent")
	}
	switch req.Action {
	case ActKill:
		killed, err := e.Processes.KillTree(p.PID, p.StartTime)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("killed %s: pids %v", what, killed), nil
	case ActFreeze, ActQuarantine:
		h, err := e.Processes.Freeze(p.PID, p.StartTime, id)
		if err != nil {
			return "", err
		}
		entry := &hold{id: id, incident: req.IncidentID, held: h}
		var cut []string
		if req.Action == ActQuarantine {
			if e.Network == nil {
				_ = h.Release()
				return "", errors.New("network control is not available on this agent")
			}
			// Still frozen: nothing moves while its sockets are cut.
			undo, c, err := e.Network.QuarantineProcesses(h.Dir(), h.PIDs())
			if err != nil {
				_ = h.Release()
				if len(c) > 0 {
					err = fmt.Errorf("%w (connections already cut: %s)", err, strings.Join(c, "; "))
				}
				return "", err
			}
			entry.undoNet, cut = undo, c
			if err := h.Thaw(); err != nil {
				return "", err
			}
		}
		e.mu.Lock()
		if e.held == nil {
			e.held = map[string]*hold{}
		}
		e.held[id] = entry
		e.mu.Unlock()
		verb := "froze"
		if req.Action == ActQuarantine {
			verb = "cut the network of"
		}
		detail := fmt.Sprintf("%s %s (pids %v) in %s", verb, what, h.PIDs(), h.Dir())
		if req.Action == ActQuarantine {
			detail += "; " + cutDetail(cut)
		}
		return detail + "; release with: vigil-agent respond release held:" + id, nil
	}
	return "", refuse("action %q is not a process action", req.Action)
}

// maxCutListed bounds the connections a quarantine's record lists.
const maxCutListed = 16

// cutDetail says how many connections a quarantine cut, listing the first.
func cutDetail(cut []string) string {
	s := fmt.Sprintf("cut %d connection(s) it already had", len(cut))
	if len(cut) > 0 {
		s += ": " + strings.Join(cut[:min(len(cut), maxCutListed)], "; ")
	}
	if len(cut) > maxCutListed {
		s += fmt.Sprintf("; and %d more", len(cut)-maxCutListed)
	}
	return s
}

// onHeld thaws or releases a held tree, named by held:ID or by a pid in it.
func (e *Engine) onHeld(req Request, kind, value string) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var h *hold
	switch kind {
	case "held":
		h = e.held[value]
	case "pid":
		n, _ := strconv.Atoi(value)
		for _, c := range e.held {
			if slices.Contains(c.held.PIDs(), n) {
				h = c
			}
		}
	default:
		return "", refuse("%s needs a held:ID or pid:N target, not %q", req.Action, req.Target)
	}
	if h == nil {
		return "", refuse("%s: nothing held by that name", req.Target)
	}
	if req.DryRun {
		return fmt.Sprintf("would %s pids %v held in %s", req.Action, h.held.PIDs(), h.held.Dir()), nil
	}
	if req.Action == ActThaw {
		return fmt.Sprintf("thawed pids %v, still held in %s", h.held.PIDs(), h.held.Dir()), h.held.Thaw()
	}
	pids := h.held.PIDs()
	if h.undoNet != nil {
		if err := h.undoNet(); err != nil {
			return "", fmt.Errorf("restore the network of %s: %w", h.held.Dir(), err)
		}
	}
	if err := h.held.Release(); err != nil {
		return "", err
	}
	delete(e.held, h.id)
	return fmt.Sprintf("released pids %v to their cgroups", pids), nil
}

// parsePrefix reads an address or prefix, canonical, never everything.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or prefix", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or prefix", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; write %s", s, p.Masked())
	}
	if p.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("%q would block every address; isolate the host instead", s)
	}
	return p, nil
}

// onAddress blocks or unblocks a prefix.
func (e *Engine) onAddress(req Request, prefix netip.Prefix) (string, error) {
	if req.Action == ActBlock {
		if prefix.Addr().IsLoopback() {
			return "", refuse("%s is a loopback address", prefix)
		}
		for _, p := range e.Safety.Protected {
			if p.Overlaps(prefix) {
				return "", refuse("%s covers %s, which the agent never blocks (its server or the allow-list)", prefix, p)
			}
		}
	}
	ttl := req.TTL
	if ttl <= 0 {
		ttl = e.BlockTTL
	}
	if ttl <= 0 {
		ttl = DefaultBlockTTL
	}
	if req.DryRun {
		if req.Action == ActBlock {
			return fmt.Sprintf("would block %s for %s", prefix, ttl), nil
		}
		return fmt.Sprintf("would unblock %s", prefix), nil
	}
	if e.Network == nil {
		return "", errors.New("network control is not available on this agent")
	}
	if req.Action == ActUnblock {
		if err := e.Network.Unblock(prefix); err != nil {
			return "", err
		}
		return fmt.Sprintf("unblocked %s", prefix), nil
	}
	if err := e.Network.Block(prefix, ttl); err != nil {
		return "", err
	}
	until := e.now().Add(ttl)
	e.mu.Lock()
	if e.blocks == nil {
		e.blocks = map[netip.Prefix]time.Time{}
	}
	e.blocks[prefix] = until
	e.mu.Unlock()
	return fmt.Sprintf("blocked %s until %s", prefix, until.UTC().Format(time.RFC3339)), nil
}

// onHost isolates the host or ends isolation.
func (e *Engine) onHost(req Request) (string, error) {
	if req.DryRun {
		if req.Action == ActIsolate {
			return fmt.Sprintf("would isolate the host, keeping %v reachable", e.Safety.Protected), nil
		}
		return "would end the host's isolation", nil
	}
	if e.Network == nil {
		return "", errors.New("network control is not available on this agent")
	}
	if req.Action == ActReleaseHost {
		if err := e.Network.Release(); err != nil {
			return "", err
		}
		return "isolation ended", nil
	}
	if len(e.Safety.Protected) == 0 {
		return "", refuse("no server address known: isolating would cut the agent off its server")
	}
	if err := e.Network.Isolate(e.Safety.Protected); err != nil {
		return "", err
	}
	return fmt.Sprintf("host isolated: only %v reachable", e.Safety.Protected), nil
}

// Adopt registers a tree an earlier run of the agent held, under the id of
// the action that held it, so that it can be thawed and released.
func (e *Engine) Adopt(id string, h Held) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.held == nil {
		e.held = map[string]*hold{}
	}
	e.held[id] = &hold{id: id, held: h}
}

// Held lists what the engine holds, by action id.
func (e *Engine) Held() map[string][]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string][]int, len(e.held))
	for id, h := range e.held {
		out[id] = h.held.PIDs()
	}
	return out
}
