package netguard

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// quarantine is the deny programs attached to one cgroup.
type quarantine struct {
	dir   string
	links []link.Link
	once  sync.Once
	err   error
}

// detach closes the links once.
func (q *quarantine) detach() error {
	q.once.Do(func() {
		var errs []error
		for _, l := range q.links {
			if err := l.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			q.err = fmt.Errorf("release quarantine of %s: %w", q.dir, err)
		}
	})
	return q.err
}

// Quarantine cuts the processes of the cgroup v2 directory cgroupDir (and
// of the cgroups below it) off the network: connect(2) and unconnected
// sends fail with EPERM, and every packet of their sockets is dropped, so
// that established connections stop too. It works in every network
// namespace. The deny programs come after any others already attached to
// the cgroup and do not replace them.
//
// A socket belongs to the cgroup its creator was in when it was made: the
// sockets a process made before it was moved into cgroupDir keep their
// traffic. QuarantineProcesses cuts those too.
//
// It returns the undo, which may be called more than once; Close undoes
// every quarantine still in place.
func (g *Guard) Quarantine(cgroupDir string) (func() error, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(cgroupDir, &fs); err != nil {
		return nil, fmt.Errorf("netguard: quarantine %s: %w", cgroupDir, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Errorf("netguard: quarantine %s: not a cgroup v2 directory", cgroupDir)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, fmt.Errorf("netguard: quarantine %s: %w", cgroupDir, ErrClosed)
	}
	q := &quarantine{dir: cgroupDir}
	// Connects and sends first, then the packets of existing sockets.
	for _, c := range []struct {
		prog   *ebpf.Program
		attach ebpf.AttachType
		hook   string
	}{
		{g.objs.NgQuarantineConnect4, ebpf.AttachCGroupInet4Connect, "cgroup/connect4"},
		{g.objs.NgQuarantineConnect6, ebpf.AttachCGroupInet6Connect, "cgroup/connect6"},
		{g.objs.NgQuarantineSendmsg4, ebpf.AttachCGroupUDP4Sendmsg, "cgroup/sendmsg4"},
		{g.objs.NgQuarantineSendmsg6, ebpf.AttachCGroupUDP6Sendmsg, "cgroup/sendmsg6"},
		{g.objs.NgQuarantineEgress, ebpf.AttachCGroupInetEgress, "cgroup_skb/egress"},
		{g.objs.NgQuarantineIngress, ebpf.AttachCGroupInetIngress, "cgroup_skb/ingress"},
	} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupDir, Attach: c.attach, Program: c.prog})
		if err != nil {
			_ = q.detach()
			return nil, fmt.Errorf("netguard: quarantine %s: attach %s: %w", cgroupDir, c.hook, err)
		}
		q.links = append(q.links, l)
	}
	g.quarantines[q] = struct{}{}
	undo := func() error {
		g.mu.Lock()
		delete(g.quarantines, q)
		g.mu.Unlock()
		if err := q.detach(); err != nil {
			return fmt.Errorf("netguard: %w", err)
		}
		return nil
	}
	return undo, nil
}

// QuarantineProcesses quarantines the cgroup v2 directory cgroupDir (see
// Quarantine) and then cuts the TCP and UDP sockets that the processes
// pids, moved into it, already hold (see CutSockets): those sockets are
// charged to the cgroups the processes came from, where the deny programs
// do not see them. The programs come first, so that nothing the processes
// open after the cut gets through.
//
// It returns the undo of the quarantine (destroyed sockets stay
// destroyed) and the sockets it cut. On an error nothing stays attached,
// and the sockets already cut are returned with it.
func (g *Guard) QuarantineProcesses(cgroupDir string, pids []int) (undo func() error, cut Cut, err error) {
	undo, err = g.Quarantine(cgroupDir)
	if err != nil {
		return nil, nil, err
	}
	cut, err = CutSockets(pids)
	if err != nil {
		if uerr := undo(); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return nil, cut, err
	}
	return undo, cut, nil
}
