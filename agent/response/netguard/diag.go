package netguard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The sock_diag messages of the kernel's uapi (linux/inet_diag.h), laid
// out by hand: golang.org/x/sys has the constants but not the structs.
const (
	// sizeofSockID is struct inet_diag_sockid: source and destination
	// ports (big-endian u16 each), source and destination addresses (16
	// bytes each, an IPv4 address in the first 4), the interface index
	// (u32) and the socket's cookie (two u32).
	sizeofSockID = 48
	// sizeofReqV2 is struct inet_diag_req_v2: family, protocol, extensions
	// wanted and a pad byte, the states wanted (a u32 bit mask), then the
	// socket id.
	sizeofReqV2 = 8 + sizeofSockID
	// sizeofDiagMsg is struct inet_diag_msg: family, state, timer and
	// retransmits (a byte each), the socket id, then expires, receive
	// queue, send queue, uid and inode (u32 each).
	sizeofDiagMsg = 4 + sizeofSockID + 5*4
	// offInode is where the inode is in an inet_diag_msg.
	offInode = 4 + sizeofSockID + 4*4
	// allStates asks for sockets in every state.
	allStates = 0xffffffff
	// diagTimeout bounds each wait for the kernel's answer.
	diagTimeout = 5
)

// tcpStates names the TCP states by their number (include/net/tcp_states.h).
var tcpStates = [...]string{1: "established", 2: "syn-sent", 3: "syn-recv", 4: "fin-wait-1", 5: "fin-wait-2",
	6: "time-wait", 7: "close", 8: "close-wait", 9: "last-ack", 10: "listen", 11: "closing", 12: "new-syn-recv"}

// diagSocket is one socket of a sock_diag dump.
type diagSocket struct {
	family, proto, state uint8
	// id is the kernel's identification of the socket, cookie included,
	// as SOCK_DESTROY takes it back.
	id    [sizeofSockID]byte
	inode uint32
}

// socket decodes the socket's addresses.
func (d diagSocket) socket(pids []int, netns uint64) Socket {
	addr := func(b []byte) netip.Addr {
		if d.family == unix.AF_INET {
			return netip.AddrFrom4([4]byte(b[:4]))
		}
		return netip.AddrFrom16([16]byte(b[:16])).Unmap()
	}
	s := Socket{
		PIDs:   pids,
		Proto:  "tcp",
		Local:  netip.AddrPortFrom(addr(d.id[4:20]), binary.BigEndian.Uint16(d.id[0:2])),
		Remote: netip.AddrPortFrom(addr(d.id[20:36]), binary.BigEndian.Uint16(d.id[2:4])),
		Inode:  uint64(d.inode),
		Netns:  netns,
	}
	switch {
	case d.proto == unix.IPPROTO_UDP && d.state == 1:
		s.Proto, s.State = "udp", "connected"
	case d.proto == unix.IPPROTO_UDP:
		s.Proto, s.State = "udp", "unconnected"
	case int(d.state) < len(tcpStates) && tcpStates[d.state] != "":
		s.State = tcpStates[d.state]
	default:
		s.State = "state-" + strconv.Itoa(int(d.state))
	}
	return s
}

// diag is a NETLINK_SOCK_DIAG socket in one network namespace.
type diag struct{ fd int }

// diagSeq numbers the requests of every diag socket.
var diagSeq atomic.Uint32

// openDiag opens a sock_diag socket in the network namespace key, which
// process via is in. A netlink socket stays in the namespace it was made
// in, so only its making needs a thread in there: a locked thread enters
// the namespace, makes it and comes back. A thread that cannot come back
// is never unlocked, so that it ends with its goroutine.
func openDiag(via int, key nsKey) (*diag, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		fd, err, back := openDiagHere(via, key)
		if back {
			runtime.UnlockOSThread()
		}
		ch <- result{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	return &diag{fd: r.fd}, nil
}

// openDiagHere runs on a locked thread. back is false when the thread was
// left in another namespace than its own.
func openDiagHere(via int, key nsKey) (fd int, err error, back bool) {
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return -1, fmt.Errorf("own network namespace: %w", err), true
	}
	defer own.Close()
	if sameNetns(own, key) {
		fd, err := newDiagSocket()
		return fd, err, true
	}

	// Enter the process's namespace, if it is still the one wanted.
	path := "/proc/" + strconv.Itoa(via) + "/ns/net"
	target, err := os.Open(path)
	if err != nil {
		return -1, fmt.Errorf("network namespace of %d: %w", via, err), true
	}
	defer target.Close()
	if !sameNetns(target, key) {
		return -1, fmt.Errorf("process %d moved to another network namespace meanwhile", via), true
	}
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return -1, fmt.Errorf("enter the network namespace of %d: %w", via, err), true
	}
	fd, err = newDiagSocket()
	// And back.
	if berr := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); berr != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("leave the network namespace of %d: %w", via, berr), false
	}
	return fd, err, true
}

// sameNetns reports whether the namespace file f is the namespace key.
func sameNetns(f *os.File, key nsKey) bool {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return st.Dev == key.dev && st.Ino == key.ino
}

// newDiagSocket makes a bound NETLINK_SOCK_DIAG socket in the calling
// thread's namespace, whose reads time out.
func newDiagSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("sock_diag socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind sock_diag socket: %w", err)
	}
	tv := unix.Timeval{Sec: diagTimeout}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("sock_diag socket timeout: %w", err)
	}
	return fd, nil
}

func (d *diag) close() { unix.Close(d.fd) }

// request sends one inet_diag_req_v2 and returns its sequence number.
func (d *diag) request(typ, flags uint16, family, proto uint8, id *[sizeofSockID]byte) (uint32, error) {
	seq := diagSeq.Add(1)
	b := make([]byte, unix.SizeofNlMsghdr+sizeofReqV2)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:4], uint32(len(b)))
	ne.PutUint16(b[4:6], typ)
	ne.PutUint16(b[6:8], flags)
	ne.PutUint32(b[8:12], seq)
	// b[12:16], the port id: 0, the kernel fills it in.
	req := b[unix.SizeofNlMsghdr:]
	req[0], req[1] = family, proto
	ne.PutUint32(req[4:8], allStates)
	if id != nil {
		copy(req[8:], id[:])
	}
	if err := unix.Sendto(d.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("send: %w", err)
	}
	return seq, nil
}

// receive reads the answer to request seq, handing each payload of type
// SOCK_DIAG_BY_FAMILY to each, until the dump is done or, for a request
// with an ack, the ack came. An error answer is returned as its errno.
func (d *diag) receive(seq uint32, each func([]byte)) error {
	buf := make([]byte, 64<<10)
	ne := binary.NativeEndian
	for {
		n, _, err := unix.Recvfrom(d.fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(ne.Uint32(b[0:4]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return fmt.Errorf("receive: bad netlink message length %d", l)
			}
			typ, mseq := ne.Uint16(b[4:6]), ne.Uint32(b[8:12])
			payload := b[unix.SizeofNlMsghdr:l]
			b = b[min(len(b), (l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)):]
			if mseq != seq {
				continue // a late answer to an earlier request
			}
			switch typ {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				// Both start with an int: 0 or a negative errno.
				if len(payload) < 4 {
					return nil
				}
				if e := int32(ne.Uint32(payload[0:4])); e < 0 {
					return unix.Errno(-e)
				}
				return nil
			case unix.SOCK_DIAG_BY_FAMILY:
				each(payload)
			}
		}
	}
}

// dump returns the sockets of a family and protocol in every state.
func (d *diag) dump(family, proto uint8) ([]diagSocket, error) {
	seq, err := d.request(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, family, proto, nil)
	if err != nil {
		return nil, err
	}
	var socks []diagSocket
	err = d.receive(seq, func(p []byte) {
		if len(p) < sizeofDiagMsg {
			return
		}
		s := diagSocket{family: p[0], proto: proto, state: p[1], inode: binary.NativeEndian.Uint32(p[offInode:])}
		copy(s.id[:], p[4:4+sizeofSockID])
		if s.inode != 0 { // time-wait and request sockets have none
			socks = append(socks, s)
		}
	})
	return socks, err
}

// destroy destroys one socket a dump found (SOCK_DESTROY).
func (d *diag) destroy(s diagSocket) error {
	seq, err := d.request(unix.SOCK_DESTROY, unix.NLM_F_REQUEST|unix.NLM_F_ACK, s.family, s.proto, &s.id)
	if err != nil {
		return err
	}
	return d.receive(seq, func([]byte) {})
}
