// Package proctree keeps the agent's view of the processes on the host: a
// bounded cache seeded from /proc at start and kept current by fork, exec
// and exit events, so that every process has its ancestry.
package proctree

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
)

// DefaultMaxEntries bounds the cache when New is given 0.
const DefaultMaxEntries = 65536

// ExitedRetention is how long an exited process stays in the cache, so that
// events of its children that are still in flight find their parent.
const ExitedRetention = 30 * time.Second

// clockTicksNS is the length of one USER_HZ clock tick, the unit of start
// times in /proc/<pid>/stat (USER_HZ is 100 on every Linux architecture Vigil runs on).
const clockTicksNS = uint64(time.Second / 100)

// Entry is what the cache knows of one process.
type Entry struct {
	// PID is the thread-group id.
	PID uint32
	// PPID is the parent's pid.
	PPID uint32
	// StartTime is when the process started, in nanoseconds since boot.
	// Entries seeded from /proc have clock-tick precision.
	StartTime uint64
	// UID, GID and LoginUID are the process's ids at its last exec.
	UID, GID, LoginUID uint32
	// SessionID is the audit session id (event.NoSessionID when unset).
	SessionID uint32
	// Comm is the kernel's task name.
	Comm string
	// Exe is the executable path.
	Exe string
	// Args is argv.
	Args []string
	// Cmdline is Args joined by single spaces, kept with them so that
	// readers (the rules' ancestors, on every event) do not join them again.
	Cmdline string
	// Cwd is the working directory at the last exec.
	Cwd string
	// CgroupID is the cgroup v2 id.
	CgroupID uint64
	// ArgsTruncated is set when Args is incomplete.
	ArgsTruncated bool
	// ExeDeleted and ExeMemfd copy the flags of the last exec.
	ExeDeleted, ExeMemfd bool
	// Exited is set once the process has exited; ExitCode is then its wait status.
	Exited   bool
	ExitCode int32
	// exitedAt is when Exited was set, in Unix nanoseconds (a time.Time
	// would make every entry, of which a storm keeps tens of thousands, a
	// size class larger).
	exitedAt int64
}

// SameProcess reports whether a start time (ns since boot) names the same
// process as the entry, allowing for the clock-tick precision of /proc.
func (e *Entry) SameProcess(startTime uint64) bool {
	return e.StartTime/clockTicksNS == startTime/clockTicksNS
}

// Tree is the process cache. It is safe for concurrent use.
type Tree struct {
	mu      sync.RWMutex
	max     int
	entries map[uint32]*Entry
	now     func() time.Time
}

// New returns an empty cache holding at most max processes (0: DefaultMaxEntries).
func New(max int) *Tree {
	if max <= 0 {
		max = DefaultMaxEntries
	}
	return &Tree{max: max, entries: make(map[uint32]*Entry), now: time.Now}
}

// Len returns the number of cached processes, exited ones included.
func (t *Tree) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.entries)
}

// SeedFromProc adds every process listed under procRoot (normally "/proc").
// Processes that vanish while it reads are skipped.
func (t *Tree) SeedFromProc(procRoot string) error {
	dirs, err := os.ReadDir(procRoot)
	if err != nil {
		return fmt.Errorf("read %s: %w", procRoot, err)
	}
	for _, d := range dirs {
		pid, err := strconv.ParseUint(d.Name(), 10, 32)
		if err != nil {
			continue
		}
		e, err := ReadProc(procRoot, uint32(pid))
		if err != nil {
			continue
		}
		t.put(e)
	}
	return nil
}

// LookupProc reads process pid from /proc, reporting false when it cannot:
// the lookup the detection pipeline falls back on for a process it has not
// seen start.
func LookupProc(pid uint32) (Entry, bool) {
	e, err := ReadProc("/proc", pid)
	if err != nil {
		return Entry{}, false
	}
	return *e, true
}

// ReadProc reads one process from procRoot/<pid>.
func ReadProc(procRoot string, pid uint32) (*Entry, error) {
	dir := filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return nil, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	e, err := parseStat(stat)
	if err != nil {
		return nil, fmt.Errorf("parse stat of %d: %w", pid, err)
	}
	e.PID = pid
	if status, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		e.UID, e.GID = statusIDs(status)
	}
	e.LoginUID = readID(filepath.Join(dir, "loginuid"), event.NoLoginUID)
	e.SessionID = readID(filepath.Join(dir, "sessionid"), event.NoSessionID)
	if exe, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
		if strings.HasSuffix(exe, " (deleted)") {
			e.ExeDeleted = true
			exe = strings.TrimSuffix(exe, " (deleted)")
		}
		e.ExeMemfd = strings.HasPrefix(exe, "/memfd:")
		e.Exe = exe
	}
	if cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
		e.Args, e.ArgsTruncated = event.SplitArgv(cmdline)
		e.Cmdline = strings.Join(e.Args, " ")
	}
	if cwd, err := os.Readlink(filepath.Join(dir, "cwd")); err == nil {
		e.Cwd = cwd
	}
	return e, nil
}

// readID reads a number file such as /proc/<pid>/loginuid, or returns def.
func readID(p string, def uint32) uint32 {
	b, err := os.ReadFile(p)
	if err != nil {
		return def
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return def
	}
	return uint32(v)
}

// parseStat reads comm, ppid and start time from /proc/<pid>/stat.
func parseStat(b []byte) (*Entry, error) {
	open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || close < open {
		return nil, fmt.Errorf("no comm in %q", b)
	}
	fields := strings.Fields(string(b[close+1:]))
	// After comm: state(3) ppid(4) ... starttime(22); fields[0] is field 3.
	if len(fields) < 20 {
		return nil, fmt.Errorf("%d fields after comm, want at least 20", len(fields))
	}
	ppid, err := strconv.ParseUint(fields[1], 10, 32)
	if err != nil {
		return nil, fmt.Errorf("ppid: %w", err)
	}
	ticks, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("starttime: %w", err)
	}
	return &Entry{Comm: string(b[open+1 : close]), PPID: uint32(ppid), StartTime: ticks * clockTicksNS}, nil
}

func statusIDs(status []byte) (uid, gid uint32) {
	for _, line := range strings.Split(string(status), "\n") {
		key, rest, ok := strings.Cut(line, ":")
		if !ok || (key != "Uid" && key != "Gid") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, _ := strconv.ParseUint(f[0], 10, 32)
		if key == "Uid" {
			uid = uint32(v)
		} else {
			gid = uint32(v)
		}
	}
	return uid, gid
}

// Fork records a new process, a copy of its parent until it execs.
func (t *Tree) Fork(f *event.Fork) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := &Entry{
		PID:       f.Process.PID,
		PPID:      f.Process.PPID,
		StartTime: f.Process.StartTime,
		UID:       f.Process.UID,
		GID:       f.Process.GID,
		LoginUID:  f.Process.LoginUID,
		SessionID: f.Process.SessionID,
		Comm:      f.Process.Comm,
		CgroupID:  f.Process.CgroupID,
	}
	if parent, ok := t.entries[f.Process.PPID]; ok {
		e.Exe, e.Args, e.Cmdline, e.ArgsTruncated, e.Cwd = parent.Exe, parent.Args, parent.Cmdline, parent.ArgsTruncated, parent.Cwd
		e.ExeDeleted, e.ExeMemfd = parent.ExeDeleted, parent.ExeMemfd
	}
	t.putLocked(e)
}

// Exec records a process's new image and returns its updated entry (a copy).
func (t *Tree) Exec(x *event.Exec) Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := &Entry{
		PID:           x.Process.PID,
		PPID:          x.Process.PPID,
		StartTime:     x.Process.StartTime,
		UID:           x.Process.UID,
		GID:           x.Process.GID,
		LoginUID:      x.Process.LoginUID,
		SessionID:     x.Process.SessionID,
		Comm:          x.Process.Comm,
		Exe:           x.Exe,
		Args:          x.Args,
		Cmdline:       strings.Join(x.Args, " "),
		ArgsTruncated: x.ArgsTruncated,
		Cwd:           x.Cwd,
		CgroupID:      x.Process.CgroupID,
		ExeDeleted:    x.ExeDeleted,
		ExeMemfd:      x.ExeMemfd,
	}
	t.putLocked(e)
	return *e
}

// Exit marks a process as exited; it is forgotten ExitedRetention later.
func (t *Tree) Exit(x *event.Exit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[x.Process.PID]
	if !ok || !e.SameProcess(x.Process.StartTime) {
		return
	}
	e.Exited, e.ExitCode, e.exitedAt = true, x.ExitCode, t.now().UnixNano()
}

// Get returns a copy of the entry of pid.
func (t *Tree) Get(pid uint32) (Entry, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.entries[pid]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// Ancestors returns copies of the parent, grandparent and so on of pid, up
// to pid 1 or the first ancestor the cache does not know.
func (t *Tree) Ancestors(pid uint32) []Entry { return t.AppendAncestors(nil, pid) }

// AppendAncestors is Ancestors appending to dst, so that a caller asking
// for every event can reuse one slice.
func (t *Tree) AppendAncestors(dst []Entry, pid uint32) []Entry {
	t.mu.RLock()
	defer t.mu.RUnlock()
	start := len(dst)
	e, ok := t.entries[pid]
	for ok && e.PID != 1 && e.PPID != 0 && e.PPID != pid && !hasPID(dst[start:], e.PPID) {
		e, ok = t.entries[e.PPID]
		if ok {
			dst = append(dst, *e)
		}
	}
	return dst
}

// hasPID reports whether an ancestor chain already holds pid (a loop in
// the cache: pids reused while their old entries linger). Chains are a few
// processes long, so a scan costs less than a set.
func hasPID(chain []Entry, pid uint32) bool {
	for i := range chain {
		if chain[i].PID == pid {
			return true
		}
	}
	return false
}

func (t *Tree) put(e *Entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.putLocked(e)
}

// putLocked stores e, replacing any entry of the same pid (a reused pid is a
// new process), and keeps the cache within its bound.
func (t *Tree) putLocked(e *Entry) {
	t.entries[e.PID] = e
	if len(t.entries) > t.max {
		t.pruneLocked()
	}
}

// Prune forgets processes that exited more than ExitedRetention ago.
func (t *Tree) Prune() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked()
}

func (t *Tree) pruneLocked() {
	cutoff := t.now().Add(-ExitedRetention).UnixNano()
	for pid, e := range t.entries {
		if e.Exited && e.exitedAt < cutoff {
			delete(t.entries, pid)
		}
	}
	if len(t.entries) <= t.max {
		return
	}
	// Still full: forget exited processes first, then the oldest live ones.
	victims := make([]*Entry, 0, len(t.entries))
	for _, e := range t.entries {
		victims = append(victims, e)
	}
	sort.Slice(victims, func(i, j int) bool {
		if victims[i].Exited != victims[j].Exited {
			return victims[i].Exited
		}
		return victims[i].StartTime < victims[j].StartTime
	})
	for _, e := range victims[:len(t.entries)-t.max*9/10] {
		delete(t.entries, e.PID)
	}
}
