package netguard

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// star is three throwaway network namespaces: b in the middle, joined to a
// by one veth pair and to c by another. Each link has an IPv4 /24 and an
// IPv6 /64. Nothing is created in the test's own namespace.
type star struct {
	a, b, c netns.NsHandle
	// a4, a6: a's addresses; ba4, ba6: b's on the a link.
	a4, a6, ba4, ba6 netip.Addr
	// c4, c6: c's addresses; bc4, bc6: b's on the c link.
	c4, c6, bc4, bc6 netip.Addr
	// Interface names inside b.
	bToA, bToC string
}

var starSeq atomic.Uint32

func newStar(t *testing.T) *star {
	t.Helper()
	n := starSeq.Add(1)
	s := &star{
		a4: addr("10.91.%d.1", n), ba4: addr("10.91.%d.2", n),
		a6: addr("fd91:%d::1", n), ba6: addr("fd91:%d::2", n),
		c4: addr("10.92.%d.1", n), bc4: addr("10.92.%d.2", n),
		c6: addr("fd92:%d::1", n), bc6: addr("fd92:%d::2", n),
		bToA: "ngba", bToC: "ngbc",
	}
	s.a, s.b, s.c = newNetns(t), newNetns(t), newNetns(t)
	for _, l := range []struct {
		far           netns.NsHandle
		farIf, nearIf string
		far4, far6    netip.Addr
		near4, near6  netip.Addr
	}{
		{s.a, "ngab", s.bToA, s.a4, s.a6, s.ba4, s.ba6},
		{s.c, "ngcb", s.bToC, s.c4, s.c6, s.bc4, s.bc6},
	} {
		joinNetns(t, l.far, s.b, l.farIf, l.nearIf)
		configure(t, l.far, l.farIf, l.far4, l.far6)
		configure(t, s.b, l.nearIf, l.near4, l.near6)
	}
	return s
}

func addr(format string, n uint32) netip.Addr { return netip.MustParseAddr(fmt.Sprintf(format, n)) }

// newNetns creates a namespace with lo up, leaving the calling thread where
// it was; t.Cleanup closes it (it goes away with its last user).
func newNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	ns := inNetns(t, 0, func() (netns.NsHandle, error) {
		return netns.New() // the thread dies in it: inNetns never unlocks
	})
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("find lo: %v", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("lo up: %v", err)
	}
	return ns
}

// joinNetns makes a veth pair, end a in namespace na and end b in nb.
func joinNetns(t *testing.T, na, nb netns.NsHandle, a, b string) {
	t.Helper()
	h, err := netlink.NewHandleAt(na)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b, PeerNamespace: netlink.NsFd(nb)}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s/%s: %v", a, b, err)
	}
}

// configure gives interface name in ns its addresses and brings it up.
func configure(t *testing.T, ns netns.NsHandle, name string, v4, v6 netip.Addr) {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	for _, a := range []netip.Prefix{netip.PrefixFrom(v4, 24), netip.PrefixFrom(v6, 64)} {
		na := &netlink.Addr{
			IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())},
			Flags: unix.IFA_F_NODAD, // usable at once
		}
		if err := h.AddrAdd(l, na); err != nil {
			t.Fatalf("add %s to %s: %v", a, name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("%s up: %v", name, err)
	}
}

// inNetns runs f on a thread in ns (0: the thread is left where it is) and
// returns its result. The thread is never unlocked, so it ends with f's
// goroutine and never carries the namespace elsewhere. Sockets f makes
// stay in ns.
func inNetns[T any](t *testing.T, ns netns.NsHandle, f func() (T, error)) T {
	t.Helper()
	v, err := tryNetns(ns, f)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func tryNetns[T any](ns netns.NsHandle, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if ns != 0 {
			if err := netns.Set(ns); err != nil {
				ch <- result{err: fmt.Errorf("enter netns: %w", err)}
				return
			}
		}
		v, err := f()
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

// listen starts a TCP echo server on every address of ns, IPv4 and IPv6;
// t.Cleanup stops it.
func listen(t *testing.T, ns netns.NsHandle) uint16 {
	t.Helper()
	return listenOn(t, ns, ":0")
}

// listenOn starts a TCP echo server on addr in ns; t.Cleanup stops it.
func listenOn(t *testing.T, ns netns.NsHandle, addr string) uint16 {
	t.Helper()
	ln := inNetns(t, ns, func() (net.Listener, error) { return net.Listen("tcp", addr) })
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// dial connects from ns to to within timeout and closes the connection.
func dial(ns netns.NsHandle, to netip.AddrPort, timeout time.Duration) error {
	_, err := tryNetns(ns, func() (struct{}, error) { return struct{}{}, dialHere(to, timeout) })
	return err
}

// dialHere connects from the calling thread's namespace.
func dialHere(to netip.AddrPort, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", to.String(), timeout)
	if err != nil {
		return err
	}
	return c.Close()
}

// blockedDial is how long a dial is given before it counts as blocked.
const blockedDial = 250 * time.Millisecond

// mustConnect fails the test unless from reaches to.
func mustConnect(t *testing.T, what string, from netns.NsHandle, to netip.AddrPort) {
	t.Helper()
	if err := dial(from, to, 2*time.Second); err != nil {
		t.Fatalf("%s: connect to %s: %v", what, to, err)
	}
}

// mustNotConnect fails the test unless a connect from from to to times out.
func mustNotConnect(t *testing.T, what string, from netns.NsHandle, to netip.AddrPort) {
	t.Helper()
	err := dial(from, to, blockedDial)
	var nerr net.Error
	if err == nil {
		t.Fatalf("%s: connect to %s succeeded, want a timeout", what, to)
	}
	if !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Fatalf("%s: connect to %s: %v, want a timeout", what, to, err)
	}
}
