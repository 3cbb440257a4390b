package network

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// pair is two throwaway network namespaces joined by a veth pair, with
// IPv4 and IPv6 addresses on each end.
type pair struct {
	a, b         netns.NsHandle
	a4, b4       netip.Addr
	a6, b6       netip.Addr
	vethA, vethB string
}

var pairSeq atomic.Uint32

// newPair creates the namespaces and the veth pair; t.Cleanup removes them.
// Nothing is created in the test's own namespace.
func newPair(t *testing.T) *pair {
	t.Helper()
	n := pairSeq.Add(1)
	p := &pair{
		a4:    netip.MustParseAddr(fmt.Sprintf("10.200.%d.1", n)),
		b4:    netip.MustParseAddr(fmt.Sprintf("10.200.%d.2", n)),
		a6:    netip.MustParseAddr(fmt.Sprintf("fd00::%d:1", n)),
		b6:    netip.MustParseAddr(fmt.Sprintf("fd00::%d:2", n)),
		vethA: fmt.Sprintf("vgla%d", n),
		vethB: fmt.Sprintf("vglb%d", n),
	}
	var err error
	if p.a, err = newNS(); err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() { p.a.Close() })
	if p.b, err = newNS(); err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() { p.b.Close() })

	// The veth pair is born in namespace a with its peer in namespace b.
	ha, err := netlink.NewHandleAt(p.a)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	defer ha.Close()
	hb, err := netlink.NewHandleAt(p.b)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	defer hb.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: p.vethA},
		PeerName:      p.vethB,
		PeerNamespace: netlink.NsFd(p.b),
	}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, side := range []struct {
		h      *netlink.Handle
		name   string
		v4, v6 netip.Addr
	}{{ha, p.vethA, p.a4, p.a6}, {hb, p.vethB, p.b4, p.b6}} {
		if err := configure(side.h, side.name, side.v4, side.v6); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// newNS creates a namespace and returns a handle on it, leaving the
// calling thread where it was.
func newNS() (netns.NsHandle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return 0, fmt.Errorf("get netns: %w", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		return 0, fmt.Errorf("new netns: %w", err)
	}
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the new namespace: let it die with the goroutine.
		runtime.LockOSThread()
		ns.Close()
		return 0, fmt.Errorf("return to netns: %w", err)
	}
	return ns, nil
}

// configure brings up lo and the veth end name with its addresses.
func configure(h *netlink.Handle, name string, v4, v6 netip.Addr) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	for _, a := range []struct {
		ip   netip.Addr
		bits int
	}{{v4, 24}, {v6, 64}} {
		addr := &netlink.Addr{
			IPNet: &net.IPNet{IP: a.ip.AsSlice(), Mask: net.CIDRMask(a.bits, a.ip.BitLen())},
			Flags: unix.IFA_F_NODAD, // usable at once, no duplicate address detection
		}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add %s to %s: %w", a.ip, name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	return nil
}

// in runs f on a thread switched into ns. Sockets f creates stay in ns and
// may be used from any goroutine afterwards.
func in[T any](t *testing.T, ns netns.NsHandle, f func() (T, error)) T {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread never leaves ns: it ends with this goroutine, still locked.
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			ch <- result{err: fmt.Errorf("enter netns: %w", err)}
			return
		}
		v, err := f()
		ch <- result{v, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}
