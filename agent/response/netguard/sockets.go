package netguard

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Socket is one socket CutSockets destroyed.
type Socket struct {
	// PIDs are the processes, of those asked about, that held it, in pid
	// order (a socket inherited across fork is held by several).
	PIDs []int
	// Proto is "tcp" or "udp".
	Proto string
	// State is the state it was in: a TCP state ("established",
	// "listen", …) or, for UDP, "connected" or "unconnected".
	State string
	// Local and Remote are its addresses; Remote is unspecified (port 0)
	// for a listening or unconnected socket. IPv4-mapped IPv6 addresses
	// are given in their IPv4 form.
	Local, Remote netip.AddrPort
	// Inode is the socket's inode, as in /proc/<pid>/fd ("socket:[N]").
	Inode uint64
	// Netns is the inode of its network namespace.
	Netns uint64
}

// String reads e.g. "tcp 10.0.0.5:41822 -> 93.184.216.34:443 established (pids [812])".
func (s Socket) String() string {
	return fmt.Sprintf("%s %s -> %s %s (pids %v)", s.Proto, s.Local, s.Remote, s.State, s.PIDs)
}

// Cut is the sockets CutSockets destroyed, in the order of their first
// holder's pid, then inode.
type Cut []Socket

// ByPID returns the sockets of pid that were cut.
func (c Cut) ByPID(pid int) []Socket {
	var out []Socket
	for _, s := range c {
		if slices.Contains(s.PIDs, pid) {
			out = append(out, s)
		}
	}
	return out
}

// Lines returns one line per socket cut (Socket.String), for audit records.
func (c Cut) Lines() []string {
	lines := make([]string, len(c))
	for i, s := range c {
		lines[i] = s.String()
	}
	return lines
}

// CutSockets destroys the TCP and UDP sockets (IPv4 and IPv6) that the
// processes pids hold, wherever their network namespaces are, and returns
// what it destroyed.
//
// A process's sockets are the "socket:[inode]" entries of
// /proc/<pid>/fd. They are looked up by inode in a sock_diag dump of the
// process's network namespace and destroyed with SOCK_DESTROY: a TCP socket
// is closed at once, its peer gets a reset and the process's next send or
// receive on it fails (ECONNABORTED, then EPIPE on sends); a UDP socket is
// disconnected and its next receive fails with ECONNABORTED. A process in
// another namespace is reached from a thread that enters it
// (/proc/<pid>/ns/net) for as long as it takes to open a netlink socket
// there.
//
// Sockets that are not found are skipped: those of other families (unix,
// raw, …), those that closed meanwhile, TCP sockets not bound or connected
// yet, and sockets made in another namespace than the one their process is
// in now. A process that is gone is skipped. On an error the sockets
// already destroyed are returned with it.
//
// A UDP socket survives its destruction: it may still send to an address
// given with each datagram. Quarantine does not see it either (it is
// charged to the cgroup its creator was in), so UDP is cut only for
// connected use.
func CutSockets(pids []int) (Cut, error) {
	// Which sockets each process holds, grouped by network namespace.
	spaces := map[nsKey]*netnsSockets{}
	var order []nsKey
	for _, pid := range pids {
		ns, inodes, err := socketsOf(pid)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			continue // gone
		}
		if err != nil {
			return nil, fmt.Errorf("netguard: cut sockets of %d: %w", pid, err)
		}
		if len(inodes) == 0 {
			continue
		}
		s := spaces[ns]
		if s == nil {
			s = &netnsSockets{key: ns, via: pid, holders: map[uint32][]int{}}
			spaces[ns] = s
			order = append(order, ns)
		}
		for _, ino := range inodes {
			if !slices.Contains(s.holders[ino], pid) {
				s.holders[ino] = append(s.holders[ino], pid)
			}
		}
	}

	// Find and destroy them, one namespace at a time.
	var cut Cut
	for _, key := range order {
		s := spaces[key]
		c, err := s.cut()
		cut = append(cut, c...)
		if err != nil {
			sortCut(cut)
			return cut, fmt.Errorf("netguard: cut sockets in network namespace %d (of pid %d): %w", key.ino, s.via, err)
		}
	}
	sortCut(cut)
	return cut, nil
}

func sortCut(c Cut) {
	slices.SortFunc(c, func(a, b Socket) int {
		return cmp.Or(cmp.Compare(a.PIDs[0], b.PIDs[0]), cmp.Compare(a.Inode, b.Inode))
	})
}

// nsKey names a network namespace by its nsfs device and inode.
type nsKey struct{ dev, ino uint64 }

// netnsSockets is the sockets wanted in one network namespace.
type netnsSockets struct {
	key nsKey
	// via is a process in the namespace, whose /proc/<pid>/ns/net is
	// entered to reach it.
	via int
	// holders are the processes holding each socket inode.
	holders map[uint32][]int
}

// socketsOf returns the network namespace of pid and the inodes of the
// sockets it holds.
func socketsOf(pid int) (nsKey, []uint32, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	var st unix.Stat_t
	if err := unix.Stat(dir+"/ns/net", &st); err != nil {
		return nsKey{}, nil, fmt.Errorf("network namespace: %w", &os.PathError{Op: "stat", Path: dir + "/ns/net", Err: err})
	}
	key := nsKey{dev: st.Dev, ino: st.Ino}
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return key, nil, err
	}
	var inodes []uint32
	for _, fd := range fds {
		target, err := os.Readlink(dir + "/fd/" + fd.Name())
		if err != nil {
			continue // closed meanwhile
		}
		n, ok := strings.CutPrefix(target, "socket:[")
		if !ok {
			continue
		}
		// Socket inodes come from a 32-bit counter; inet_diag reports
		// them as such.
		ino, err := strconv.ParseUint(strings.TrimSuffix(n, "]"), 10, 32)
		if err == nil && !slices.Contains(inodes, uint32(ino)) {
			inodes = append(inodes, uint32(ino))
		}
	}
	return key, inodes, nil
}

// cut dumps the namespace's TCP and UDP sockets, IPv4 and IPv6, and
// destroys the wanted ones.
func (s *netnsSockets) cut() (Cut, error) {
	d, err := openDiag(s.via, s.key)
	if err != nil {
		return nil, err
	}
	defer d.close()

	// Dump every family and protocol first, destroy after: a destroy
	// in the middle of a dump could make it skip sockets.
	var found []diagSocket
	for _, proto := range []uint8{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
		for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
			socks, err := d.dump(family, proto)
			if err != nil {
				return nil, fmt.Errorf("dump %s sockets: %w", protoFamily(family, proto), err)
			}
			for _, ds := range socks {
				if _, ok := s.holders[ds.inode]; ok {
					found = append(found, ds)
				}
			}
		}
	}

	var cut Cut
	for _, ds := range found {
		err := d.destroy(ds)
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESTALE):
			continue // closed, or the id names another socket now
		case err != nil:
			return cut, fmt.Errorf("destroy %s socket %d: %w", protoFamily(ds.family, ds.proto), ds.inode, err)
		}
		pids := slices.Clone(s.holders[ds.inode])
		slices.Sort(pids)
		cut = append(cut, ds.socket(pids, s.key.ino))
	}
	return cut, nil
}

func protoFamily(family, proto uint8) string {
	p, f := "tcp", "4"
	if proto == unix.IPPROTO_UDP {
		p = "udp"
	}
	if family == unix.AF_INET6 {
		f = "6"
	}
	return p + f
}
