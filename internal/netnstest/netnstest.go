// Package netnstest gives tests throwaway network namespaces joined by
// veth pairs, and runs code inside them. It needs root. Nothing it makes
// outlives the test: namespaces are closed and veth pairs deleted by
// t.Cleanup.
package netnstest

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

// Here stands for the namespace the caller is already in (the test's
// own): Do runs f without switching, and netlink works there.
const Here = netns.NsHandle(-1)

var seq atomic.Uint32

// Seq returns 1, 2, 3… on successive calls in a test binary: a number no
// other call returns, for names and addresses unique to one test's set-up.
func Seq() uint32 { return seq.Add(1) }

// New creates a network namespace with lo up, leaving the calling thread
// where it was; t.Cleanup closes the handle (the namespace goes away with
// its last user).
func New(t testing.TB) netns.NsHandle {
	t.Helper()
	ns := In(t, Here, func() (netns.NsHandle, error) {
		return netns.New() // the thread dies in it: Do never unlocks
	})
	t.Cleanup(func() { ns.Close() })
	h := handle(t, ns)
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

// Do runs f on a thread in ns (Here: the thread stays where it is) and
// returns its result. The thread is never unlocked, so it ends with f's
// goroutine and never carries the namespace elsewhere. Sockets f makes
// stay in ns and may be used from any goroutine afterwards; processes it
// starts are born in ns.
func Do[T any](ns netns.NsHandle, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if ns != Here {
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

// In is Do that fails the test when f (or entering ns) fails.
func In[T any](t testing.TB, ns netns.NsHandle, f func() (T, error)) T {
	t.Helper()
	v, err := Do(ns, f)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Veth makes a veth pair, end a in namespace na and end b in nb (either
// may be Here); t.Cleanup deletes the pair.
func Veth(t testing.TB, na netns.NsHandle, a string, nb netns.NsHandle, b string) {
	t.Helper()
	h := handle(t, na)
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}
	if nb != Here {
		veth.PeerNamespace = netlink.NsFd(nb)
	}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s/%s: %v", a, b, err)
	}
	t.Cleanup(func() {
		h := handle(t, na)
		defer h.Close()
		// Deleting one end deletes both; gone already is fine.
		if l, err := h.LinkByName(a); err == nil {
			if err := h.LinkDel(l); err != nil {
				t.Errorf("delete veth %s: %v", a, err)
			}
		}
	})
}

// Configure gives interface name in ns the addresses, usable at once (no
// duplicate address detection), and brings it up.
func Configure(t testing.TB, ns netns.NsHandle, name string, addrs ...netip.Prefix) {
	t.Helper()
	h := handle(t, ns)
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	for _, a := range addrs {
		na := &netlink.Addr{
			IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())},
			Flags: unix.IFA_F_NODAD,
		}
		if err := h.AddrAdd(l, na); err != nil {
			t.Fatalf("add %s to %s: %v", a, name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("%s up: %v", name, err)
	}
}

// DefaultRoute routes everything in ns through gateway gw.
func DefaultRoute(t testing.TB, ns netns.NsHandle, gw netip.Addr) {
	t.Helper()
	h := handle(t, ns)
	defer h.Close()
	if err := h.RouteAdd(&netlink.Route{Gw: gw.AsSlice()}); err != nil {
		t.Fatalf("default route via %s: %v", gw, err)
	}
}

// Serve accepts TCP connections on addr in ns until the test ends,
// echoing what it reads when echo is set and closing them at once
// otherwise, and returns the address it listens on.
func Serve(t testing.TB, ns netns.NsHandle, addr string, echo bool) netip.AddrPort {
	t.Helper()
	ln := In(t, ns, func() (net.Listener, error) { return net.Listen("tcp", addr) })
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if echo {
					_, _ = io.Copy(c, c)
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// Dial connects from the calling thread's namespace to to within timeout
// and closes the connection.
func Dial(to netip.AddrPort, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", to.String(), timeout)
	if err != nil {
		return err
	}
	return c.Close()
}

// DialFrom is Dial from namespace ns.
func DialFrom(ns netns.NsHandle, to netip.AddrPort, timeout time.Duration) error {
	_, err := Do(ns, func() (struct{}, error) { return struct{}{}, Dial(to, timeout) })
	return err
}

// TimedOut reports whether err is a network timeout: what a connect whose
// packets are dropped ends with.
func TimedOut(err error) bool {
	var nerr net.Error
	return errors.As(err, &nerr) && nerr.Timeout()
}

// handle opens a netlink handle in ns, failing the test when it cannot.
func handle(t testing.TB, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	return h
}
