// Package procctl acts on processes for the responder: it lists a process
// tree, kills one, and holds one in a quarantine cgroup v2 where it can be
// frozen, thawed, killed or released. Every process is named by its pid and
// start time, so that a pid reused by another process is never acted on.
//
// procctl refuses only what can never be right (pid 1, kernel threads, the
// calling process); the responder adds its own safety rules.
package procctl

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/vigil-sensor/vigil/agent/proctree"
)

// ErrRefused is returned for a process procctl never acts on.
var ErrRefused = errors.New("refused")

// ErrNotSameProcess is returned when a pid names a process that started at
// another time than the caller's: the process exited and its pid was reused.
var ErrNotSameProcess = errors.New("not the same process")

// procRoot is where procfs is mounted.
const procRoot = "/proc"

// pfKthread is PF_KTHREAD, the task flag of kernel threads.
const pfKthread = 0x00200000

// clockTickNS is one USER_HZ tick, the unit of start times in /proc/<pid>/stat.
const clockTickNS = 10_000_000

// stat is what procctl reads of a process from /proc/<pid>/stat.
type stat struct {
	pid   int
	comm  string
	ppid  int
	flags uint64
	// start is the start time in ns since boot, at clock-tick precision.
	start uint64
}

// readStat reads /proc/<pid>/stat.
func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return stat{}, err
	}
	st, err := parseStat(b)
	if err != nil {
		return stat{}, fmt.Errorf("parse stat of %d: %w", pid, err)
	}
	st.pid = pid
	return st, nil
}

// parseStat reads comm, ppid (field 4), flags (9) and starttime (22) from
// the text of /proc/<pid>/stat. comm may hold spaces and parentheses, so
// the fields are counted from its last ')'.
func parseStat(b []byte) (stat, error) {
	open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || close < open {
		return stat{}, errors.New("no comm")
	}
	f := bytes.Fields(b[close+1:]) // f[0] is field 3 (state)
	if len(f) < 20 {
		return stat{}, fmt.Errorf("%d fields after comm, want at least 20", len(f))
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return stat{}, fmt.Errorf("ppid: %w", err)
	}
	flags, err := strconv.ParseUint(string(f[6]), 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("flags: %w", err)
	}
	ticks, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("starttime: %w", err)
	}
	return stat{comm: string(b[open+1 : close]), ppid: ppid, flags: flags, start: ticks * clockTickNS}, nil
}

// sameProcess reports whether a start time in ns since boot (as the
// sensors report it) names the process st describes.
func (st stat) sameProcess(startTime uint64) bool {
	e := proctree.Entry{StartTime: st.start}
	return e.SameProcess(startTime)
}

// snapshot reads the stat of every process under /proc. Processes that
// exit while it reads are left out.
func snapshot() (map[int]stat, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	all := make(map[int]stat, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue
		}
		all[pid] = st
	}
	return all, nil
}

// descendants returns root and its descendants in all, root first and then
// level by level, each level in pid order.
func descendants(all map[int]stat, root int) []stat {
	children := map[int][]int{}
	for pid, st := range all {
		if pid != root {
			children[st.ppid] = append(children[st.ppid], pid)
		}
	}
	out := []stat{all[root]}
	for i := 0; i < len(out); i++ {
		kids := children[out[i].pid]
		sort.Ints(kids)
		for _, k := range kids {
			out = append(out, all[k])
		}
	}
	return out
}

// Tree returns pid and the pids of all its descendants, read from /proc:
// pid first, then its children, their children and so on. A process that
// exits while Tree reads is left out, and one forked meanwhile may be.
func Tree(pid uint32) ([]int, error) {
	all, err := snapshot()
	if err != nil {
		return nil, err
	}
	if _, ok := all[int(pid)]; !ok {
		return nil, fmt.Errorf("process tree of %d: %w", pid, os.ErrNotExist)
	}
	var pids []int
	for _, st := range descendants(all, int(pid)) {
		pids = append(pids, st.pid)
	}
	return pids, nil
}

// target checks that procctl may act on the process (pid, startTime) and
// returns its stat. It refuses pid 1, kernel threads and the calling
// process, and a pid now held by a process other than the one meant.
func target(pid uint32, startTime uint64) (stat, error) {
	switch {
	case pid == 0:
		return stat{}, fmt.Errorf("%w: pid 0 is not a process", ErrRefused)
	case pid == 1:
		return stat{}, fmt.Errorf("%w: pid 1 is init", ErrRefused)
	case int(pid) == os.Getpid():
		return stat{}, fmt.Errorf("%w: pid %d is this process", ErrRefused, pid)
	}
	st, err := readStat(int(pid))
	if err != nil {
		return stat{}, fmt.Errorf("process %d: %w", pid, err)
	}
	if st.flags&pfKthread != 0 {
		return stat{}, fmt.Errorf("%w: pid %d (%s) is a kernel thread", ErrRefused, pid, st.comm)
	}
	if _, err := os.Readlink(filepath.Join(procRoot, strconv.Itoa(int(pid)), "exe")); errors.Is(err, os.ErrNotExist) {
		return stat{}, fmt.Errorf("%w: pid %d (%s) has no executable (a kernel thread or exiting)", ErrRefused, pid, st.comm)
	}
	if !st.sameProcess(startTime) {
		return stat{}, fmt.Errorf("%w: pid %d started at %d ns since boot, not %d", ErrNotSameProcess, pid, st.start, startTime)
	}
	return st, nil
}

// checkTree refuses a tree that holds the calling process (the caller
// would act on itself).
func checkTree(root stat, tree []stat) error {
	self := os.Getpid()
	for _, st := range tree {
		if st.pid == self {
			return fmt.Errorf("%w: the tree of pid %d holds this process (%d)", ErrRefused, root.pid, self)
		}
	}
	return nil
}
