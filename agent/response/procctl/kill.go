package procctl

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxPasses bounds how often a tree is read again while it still grows.
const maxPasses = 64

// KillTree sends SIGKILL to the process (pid, startTime) and to every
// descendant, and returns the pids it killed, the process first.
// startTime is the start in ns since boot (as the sensors report it, or
// /proc/<pid>/stat's starttime in ns). It refuses pid 1, kernel threads,
// the calling process and a tree that holds it, and a pid now held by
// another process.
//
// A dying parent's children are handed to another reaper and leave its
// tree, and a running process may fork while it is read, so the tree is
// first stopped (SIGSTOP) and read again until a pass finds no one new; then
// every stopped process is killed. Each signal goes through a pidfd opened
// and checked against the process's start time, so a pid reused meanwhile
// is never signalled.
func KillTree(pid uint32, startTime uint64) (killed []int, err error) {
	root, err := target(pid, startTime)
	if err != nil {
		return nil, fmt.Errorf("kill tree: %w", err)
	}

	// Stop the tree, reading it again until it no longer grows.
	stopped := map[int]uint64{} // pid -> start time
	var order []int
	grown := true
	for pass := 0; grown; pass++ {
		if pass == maxPasses {
			err = fmt.Errorf("kill tree of %d: still growing after %d passes", pid, maxPasses)
			break
		}
		all, serr := snapshot()
		if serr != nil {
			err = fmt.Errorf("kill tree of %d: %w", pid, serr)
			break
		}
		if st, ok := all[root.pid]; !ok || st.start != root.start {
			break // the process is gone: its descendants left the tree
		}
		tree := descendants(all, root.pid)
		if pass == 0 {
			if cerr := checkTree(root, tree); cerr != nil {
				return nil, fmt.Errorf("kill tree: %w", cerr)
			}
		}
		grown = false
		for _, st := range tree {
			if s, ok := stopped[st.pid]; ok && s == st.start {
				continue
			}
			grown = true
			// A stopped process cannot fork any more: a group signal
			// pending during fork makes the fork fail and restart.
			if serr := signal(st, unix.SIGSTOP); serr == nil {
				stopped[st.pid] = st.start
				order = append(order, st.pid)
			} else if !errors.Is(serr, syscall.ESRCH) {
				err = fmt.Errorf("kill tree of %d: stop %d: %w", pid, st.pid, serr)
			}
		}
	}

	// Kill every process stopped, even when the tree could not be read to
	// its end: a half-killed tree is better than a stopped one.
	for _, p := range order {
		kerr := signal(stat{pid: p, start: stopped[p]}, unix.SIGKILL)
		switch {
		case kerr == nil:
			killed = append(killed, p)
		case !errors.Is(kerr, syscall.ESRCH) && err == nil:
			err = fmt.Errorf("kill tree of %d: kill %d: %w", pid, p, kerr)
		}
	}
	if len(killed) == 0 && err == nil {
		err = fmt.Errorf("kill tree of %d: %w", pid, os.ErrProcessDone)
	}
	return killed, err
}

// signal sends sig to the process st names through a pidfd, after checking
// that the pid still names that process. It returns ESRCH when the process
// is gone or its pid now names another one.
func signal(st stat, sig unix.Signal) error {
	fd, err := unix.PidfdOpen(st.pid, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// The pidfd pins the process that held the pid at open; if the pid
	// still shows the same start time, that process is the one meant.
	now, err := readStat(st.pid)
	if err != nil || now.start != st.start {
		return syscall.ESRCH
	}
	return unix.PidfdSendSignal(fd, sig, nil, 0)
}
