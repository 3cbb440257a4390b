package procctl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sensor/vigil/agent/kernelfs"
)

// DefaultQuarantineName is the quarantine cgroup NewQuarantine makes under
// the cgroup v2 root when given no root.
const DefaultQuarantineName = "vigil.quarantine"

// DefaultTimeout bounds each wait for the kernel: a cgroup to report frozen
// or thawed, killed processes to leave, a released cgroup to be removable.
const DefaultTimeout = 5 * time.Second

// ErrReleased is returned by the methods of a Held that was released.
var ErrReleased = errors.New("quarantine cgroup released")

// Quarantine is a cgroup v2 under which processes are held, one leaf cgroup
// per incident or action. It is safe for concurrent use.
type Quarantine struct {
	// Timeout bounds each wait for the kernel (0: DefaultTimeout).
	Timeout time.Duration
	// StateDir, when set, keeps a record of each held tree, so that an
	// agent started again can Adopt and release them.
	StateDir string

	root  string // the quarantine cgroup's directory
	mount string // where the cgroup v2 hierarchy is mounted
}

// NewQuarantine opens the quarantine cgroup root, a directory in the cgroup
// v2 hierarchy, making it if missing. An empty root means
// DefaultQuarantineName under the hierarchy's mount point.
func NewQuarantine(root string) (*Quarantine, error) {
	mount, err := kernelfs.CgroupV2Root()
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	mount = filepath.Clean(mount)
	if root == "" {
		root = filepath.Join(mount, DefaultQuarantineName)
	}
	root = filepath.Clean(root)
	if !strings.HasPrefix(root, mount+"/") {
		return nil, fmt.Errorf("quarantine %s: not below the cgroup v2 mount %s", root, mount)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(root, &fs); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Errorf("quarantine %s: not a cgroup v2 directory", root)
	}
	return &Quarantine{root: root, mount: mount}, nil
}

// Root returns the quarantine cgroup's directory.
func (q *Quarantine) Root() string { return q.root }

func (q *Quarantine) timeout() time.Duration {
	if q.Timeout > 0 {
		return q.Timeout
	}
	return DefaultTimeout
}

// Held is a process tree held in a leaf cgroup of a quarantine. It is safe
// for concurrent use.
type Held struct {
	q    *Quarantine
	name string
	dir  string
	root int // pid of the process the tree was taken from

	mu       sync.Mutex
	procs    map[int]heldProc // what was moved in, by pid
	released bool
}

// heldProc is a process moved into a leaf and where it came from.
type heldProc struct {
	start  uint64
	ppid   int
	origin string // its cgroup v2 path before, e.g. "/user.slice/session-3.scope"
}

// Freeze moves the process (pid, startTime) and all its descendants into a
// new leaf cgroup called name under the quarantine and freezes it. Each
// process's cgroup v2 is recorded so that Release can put it back. The
// tree is read again after each round of moves until no new descendant
// shows up, since a process may fork while it is moved; a child born after
// its parent moved is born in the leaf. Freeze returns once the kernel
// reports the leaf frozen, or an error after the quarantine's Timeout. It
// refuses pid 1, kernel threads, the calling process and a tree that holds
// it, and a pid now held by another process. On an error nothing stays
// held.
func (q *Quarantine) Freeze(pid uint32, startTime uint64, name string) (*Held, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("freeze %d: %w", pid, err)
	}
	root, err := target(pid, startTime)
	if err != nil {
		return nil, fmt.Errorf("freeze: %w", err)
	}
	all, err := snapshot()
	if err != nil {
		return nil, fmt.Errorf("freeze %d: %w", pid, err)
	}
	if err := checkTree(root, descendants(all, root.pid)); err != nil {
		return nil, fmt.Errorf("freeze: %w", err)
	}

	// A new leaf for this action: an existing one belongs to another.
	dir := filepath.Join(q.root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("freeze %d: make leaf cgroup: %w", pid, err)
	}
	h := &Held{q: q, name: name, dir: dir, root: root.pid, procs: map[int]heldProc{}}
	fail := func(err error) (*Held, error) {
		if rerr := h.Release(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", rerr))
		}
		return nil, err
	}

	// Move the tree in until a pass finds no one new.
	for pass := 0; ; pass++ {
		if pass == maxPasses {
			return fail(fmt.Errorf("freeze %d: tree still growing after %d passes", pid, maxPasses))
		}
		if pass > 0 {
			if all, err = snapshot(); err != nil {
				return fail(fmt.Errorf("freeze %d: %w", pid, err))
			}
		}
		if st, ok := all[root.pid]; !ok || st.start != root.start {
			if pass == 0 {
				return fail(fmt.Errorf("freeze %d: %w", pid, os.ErrProcessDone))
			}
			break // gone: its descendants left the tree
		}
		moved, err := h.moveIn(descendants(all, root.pid))
		if err != nil {
			return fail(fmt.Errorf("freeze %d: %w", pid, err))
		}
		if moved == 0 {
			break
		}
	}

	// Freeze the leaf and wait for the kernel to say it is.
	if err := h.setFrozen(true); err != nil {
		return fail(fmt.Errorf("freeze %d: %w", pid, err))
	}
	h.mu.Lock()
	err = h.saveLocked()
	h.mu.Unlock()
	if err != nil {
		return fail(err)
	}
	return h, nil
}

// checkName checks a leaf cgroup name: one path component of letters,
// digits, '-', '_', '.' and ':', not starting with '.'.
func checkName(name string) error {
	if name == "" || len(name) > 200 || name[0] == '.' {
		return fmt.Errorf("leaf cgroup name %q: want 1 to 200 characters, not starting with '.'", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.:", c)) {
			return fmt.Errorf("leaf cgroup name %q: character %q not allowed", name, c)
		}
	}
	return nil
}

// moveIn moves the processes of tree that are not in the leaf yet into it,
// recording where each came from, and returns how many it moved (a process
// born in the leaf is recorded, not counted). A process that exits
// meanwhile is skipped.
func (h *Held) moveIn(tree []stat) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	leaf := "/" + strings.TrimPrefix(h.dir, h.q.mount+"/")
	moved := 0
	for _, st := range tree {
		if p, ok := h.procs[st.pid]; ok && p.start == st.start {
			continue
		}
		origin, err := cgroupOf(st.pid)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return moved, err
		}
		if origin == leaf {
			// Born in the leaf, after its parent moved: record where it
			// belongs, but it needed no move. Not counting it lets the
			// passes end while a held process keeps forking.
			h.procs[st.pid] = heldProc{start: st.start, ppid: st.ppid, origin: h.originLocked(st.ppid)}
			continue
		}
		if err := writeFile(filepath.Join(h.dir, "cgroup.procs"), strconv.Itoa(st.pid)); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				continue
			}
			return moved, fmt.Errorf("move %d (%s) in: %w", st.pid, st.comm, err)
		}
		h.procs[st.pid] = heldProc{start: st.start, ppid: st.ppid, origin: origin}
		moved++
	}
	return moved, nil
}

// originLocked returns the cgroup a process whose parent is ppid belongs
// in: its nearest recorded ancestor's, else the tree root's.
func (h *Held) originLocked(ppid int) string {
	for range maxPasses {
		p, ok := h.procs[ppid]
		if !ok {
			break
		}
		if p.origin != "" {
			return p.origin
		}
		ppid = p.ppid
	}
	if p, ok := h.procs[h.root]; ok {
		return p.origin
	}
	return "/"
}

// cgroupOf reads the cgroup v2 path of pid from /proc/<pid>/cgroup.
func cgroupOf(pid int) (string, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("process %d: no cgroup v2 line in /proc/%d/cgroup", pid, pid)
}

// Dir returns the leaf cgroup's directory, e.g. for attaching cgroup BPF
// programs to the held processes.
func (h *Held) Dir() string { return h.dir }

// Name returns the leaf cgroup's name.
func (h *Held) Name() string { return h.name }

// PIDs returns the processes in the leaf cgroup now, children born there
// included, in pid order; nil once released. Should the leaf be unreadable,
// it returns the processes Freeze moved in.
func (h *Held) PIDs() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return nil
	}
	pids, err := h.pidsLocked()
	if err != nil {
		pids = pids[:0]
		for pid := range h.procs {
			pids = append(pids, pid)
		}
		slices.Sort(pids)
	}
	return pids
}

func (h *Held) pidsLocked() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(h.dir, "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("list held processes: %w", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// Freeze freezes the held processes again and waits until the kernel
// reports the leaf frozen.
func (h *Held) Freeze() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return ErrReleased
	}
	return h.setFrozen(true)
}

// Thaw lets the held processes run again, still in the leaf, and waits
// until the kernel reports the leaf thawed.
func (h *Held) Thaw() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return ErrReleased
	}
	return h.setFrozen(false)
}

// setFrozen writes cgroup.freeze and waits for cgroup.events to agree.
func (h *Held) setFrozen(frozen bool) error {
	v, what := "0", "thaw"
	if frozen {
		v, what = "1", "freeze"
	}
	if err := writeFile(filepath.Join(h.dir, "cgroup.freeze"), v); err != nil {
		return fmt.Errorf("%s %s: %w", what, h.name, err)
	}
	if err := h.waitEvent("frozen", v); err != nil {
		return fmt.Errorf("%s %s: %w", what, h.name, err)
	}
	return nil
}

// waitEvent waits until cgroup.events shows key with value v, for at most
// the quarantine's Timeout.
func (h *Held) waitEvent(key, v string) error {
	timeout := h.q.timeout()
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(filepath.Join(h.dir, "cgroup.events"))
		if err != nil {
			return err
		}
		for line := range strings.Lines(string(b)) {
			if f := strings.Fields(line); len(f) == 2 && f[0] == key && f[1] == v {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup.events shows no %q %s after %v (a process in uninterruptible sleep delays a freeze)", key, v, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Kill kills every process in the leaf at once (cgroup.kill), children born
// there included, and waits until they are gone. The leaf stays until
// Release.
func (h *Held) Kill() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return ErrReleased
	}
	if err := writeFile(filepath.Join(h.dir, "cgroup.kill"), "1"); err != nil {
		return fmt.Errorf("kill %s: %w", h.name, err)
	}
	if err := h.waitEvent("populated", "0"); err != nil {
		return fmt.Errorf("kill %s: %w", h.name, err)
	}
	return nil
}

// Release moves every process in the leaf back to the cgroup it came from
// (a child born in the leaf goes where its parent came from), thawing it as
// it leaves, and removes the leaf. When a process's cgroup is gone (or
// refuses it) it goes to the nearest ancestor that takes it, at worst the
// hierarchy's root. Release after Release does nothing.
func (h *Held) Release() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return nil
	}
	var errs []error
	// The leaf is still frozen, so no one is born in it meanwhile; a
	// process moved out to a cgroup that is not frozen thaws.
	for pass := 0; ; pass++ {
		pids, err := h.pidsLocked()
		if err != nil {
			return fmt.Errorf("release %s: %w", h.name, err)
		}
		if len(pids) == 0 {
			break
		}
		if pass == maxPasses {
			errs = append(errs, fmt.Errorf("processes %v still in the leaf after %d passes", pids, maxPasses))
			break
		}
		if pass > 0 {
			time.Sleep(5 * time.Millisecond) // exiting processes leave by themselves
		}
		for _, pid := range pids {
			if err := h.moveBackLocked(pid); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			break
		}
	}
	if len(errs) == 0 {
		if err := h.removeLeafLocked(); err != nil {
			errs = append(errs, err)
		} else {
			h.forgetLocked()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release %s: %w", h.name, err)
	}
	h.released = true
	return nil
}

// moveBackLocked moves pid out of the leaf to where it came from, or to the
// nearest ancestor of that which takes it.
func (h *Held) moveBackLocked(pid int) error {
	origin := ""
	st, err := readStat(pid)
	if err != nil {
		return nil // exited
	}
	if p, ok := h.procs[pid]; ok && p.start == st.start {
		origin = p.origin
	} else {
		origin = h.originLocked(st.ppid)
	}
	var first error
	for dest := origin; ; dest = filepath.Dir(dest) {
		err := writeFile(filepath.Join(h.q.mount, dest, "cgroup.procs"), strconv.Itoa(pid))
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.ESRCH):
			return nil
		case first == nil:
			first = err
		}
		if dest == "/" || dest == "." || dest == "" {
			return fmt.Errorf("move %d back to %s: %w", pid, origin, first)
		}
	}
}

// removeLeafLocked removes the leaf cgroup, waiting while processes that
// are exiting still count as in it.
func (h *Held) removeLeafLocked() error {
	deadline := time.Now().Add(h.q.timeout())
	for {
		err := os.Remove(h.dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove leaf cgroup: %w", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// writeFile writes s to an existing cgroup or proc file in one write, which
// is what those files take.
func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(s)
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}
