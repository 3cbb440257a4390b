package netguard

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vigil-sensor/vigil/internal/netnstest"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// openIn opens a guard in ns and attaches it there; t.Cleanup closes it.
func openIn(t *testing.T, ns netns.NsHandle, opts Options) *Guard {
	t.Helper()
	testutil.RequireRoot(t)
	g := netnstest.In(t, ns, func() (*Guard, error) {
		g, err := Open(opts)
		if err != nil {
			return nil, err
		}
		if err := g.Attach(); err != nil {
			g.Close()
			return nil, err
		}
		return g, nil
	})
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return g
}

func stats(t *testing.T, g *Guard) Stats {
	t.Helper()
	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// blockLatency blocks peer and returns the time from Block returning to
// the first packet dropped for it, a connect from `from` to `to` started
// right after Block returns.
func blockLatency(t *testing.T, g *Guard, peer netip.Prefix, ttl time.Duration, from netns.NsHandle, to netip.AddrPort) time.Duration {
	t.Helper()
	before := stats(t, g).Blocked
	// A thread waits in the source namespace, ready to connect.
	start := make(chan struct{})
	dialed := make(chan error, 1)
	go func() {
		_, err := netnstest.Do(from, func() (struct{}, error) {
			<-start
			return struct{}{}, netnstest.Dial(to, blockedDial)
		})
		dialed <- err
	}()
	if err := g.Block(peer, ttl); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	close(start)
	for stats(t, g).Blocked == before {
		if time.Since(t0) > time.Second {
			t.Fatal("no packet dropped within 1s of Block")
		}
	}
	lat := time.Since(t0)
	if err := <-dialed; err == nil {
		t.Fatalf("connect from blocked %s succeeded", peer)
	}
	return lat
}

func TestBlock(t *testing.T) {
	for _, fam := range []string{"IPv4", "IPv6"} {
		t.Run(fam, func(t *testing.T) {
			s := newStar(t)
			port := listen(t, s.b)
			// B's addresses on each link, and A's, as seen from B.
			toBfromA, toBfromC, a := netip.AddrPortFrom(s.ba4, port), netip.AddrPortFrom(s.bc4, port), s.a4
			if fam == "IPv6" {
				toBfromA, toBfromC, a = netip.AddrPortFrom(s.ba6, port), netip.AddrPortFrom(s.bc6, port), s.a6
			}
			aPrefix := netip.PrefixFrom(a, a.BitLen())

			g := openIn(t, s.b, Options{ExpireEvery: -1})
			if g.Mode() != ModeTCX {
				t.Fatalf("mode %q, want %q", g.Mode(), ModeTCX)
			}
			if got := g.Interfaces(); !slices.Equal(got, []string{s.bToA, s.bToC}) && !slices.Equal(got, []string{s.bToC, s.bToA}) {
				t.Fatalf("attached to %v, want %s and %s", got, s.bToA, s.bToC)
			}
			mustConnect(t, "before the block, A", s.a, toBfromA)
			mustConnect(t, "before the block, C", s.c, toBfromC)

			// Until Unblock: A is cut off, C is not.
			lat := blockLatency(t, g, aPrefix, 0, s.a, toBfromA)
			t.Logf("%s: Block() returned -> first dropped SYN counted: %s", fam, lat)
			mustNotConnect(t, "blocked A", s.a, toBfromA)
			mustConnect(t, "C while A is blocked", s.c, toBfromC)
			if got := g.Blocks(); len(got) != 1 || got[0].Prefix != aPrefix || !got[0].Expires.IsZero() {
				t.Fatalf("Blocks() = %v, want %s forever", got, aPrefix)
			}
			if err := g.Unblock(aPrefix); err != nil {
				t.Fatal(err)
			}
			if err := g.Unblock(aPrefix); err != nil {
				t.Fatalf("second unblock: %v", err)
			}
			mustConnect(t, "unblocked A", s.a, toBfromA)

			// With a TTL the kernel ends the block by itself, before
			// anything removes the entry.
			const ttl = time.Second
			if err := g.Block(aPrefix, ttl); err != nil {
				t.Fatal(err)
			}
			blocked := time.Now()
			mustNotConnect(t, "A blocked for 1s", s.a, toBfromA)
			for netnstest.DialFrom(s.a, toBfromA, 100*time.Millisecond) != nil {
				if time.Since(blocked) > 3*ttl {
					t.Fatalf("A still blocked %s after a block of %s", time.Since(blocked), ttl)
				}
			}
			if after := time.Since(blocked); after < ttl-50*time.Millisecond {
				t.Fatalf("block of %s ended after %s", ttl, after)
			} else {
				t.Logf("%s: a block of %s let A in again after %s", fam, ttl, after.Round(time.Millisecond))
			}
			if got := g.Blocks(); len(got) != 1 {
				t.Fatalf("Blocks() before Expire = %v, want the expired entry", got)
			}
			for range 2 { // idempotent
				if err := g.Expire(time.Now()); err != nil {
					t.Fatal(err)
				}
				if got := g.Blocks(); len(got) != 0 {
					t.Fatalf("Blocks() after Expire = %v, want none", got)
				}
			}
			st := stats(t, g)
			if st.Blocked == 0 || st.Passed == 0 {
				t.Fatalf("counters %+v: want blocked and passed packets", st)
			}
		})
	}
}

// TestBlockShorterPrefixOutlivesLonger checks that an expired longer prefix
// does not hide a shorter one that still blocks, and the expiry ticker.
func TestBlockShorterPrefixOutlivesLonger(t *testing.T) {
	s := newStar(t)
	port := listen(t, s.b)
	to := netip.AddrPortFrom(s.ba4, port)
	g := openIn(t, s.b, Options{ExpireEvery: 50 * time.Millisecond})
	subnet := netip.PrefixFrom(s.a4, 24).Masked()
	if err := g.Block(subnet, 0); err != nil {
		t.Fatal(err)
	}
	if err := g.Block(netip.PrefixFrom(s.a4, 32), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	mustNotConnect(t, "A under an expired /32 and a live /24", s.a, to)
	if got := g.Blocks(); len(got) != 1 || got[0].Prefix != subnet {
		t.Fatalf("Blocks() = %v, want only %s after the ticker", got, subnet)
	}
	if err := g.Unblock(subnet); err != nil {
		t.Fatal(err)
	}
	mustConnect(t, "A unblocked", s.a, to)
}

func TestIsolate(t *testing.T) {
	s := newStar(t)
	portB, portA, portC := listen(t, s.b), listen(t, s.a), listen(t, s.c)
	// A's IPv4 address is the server (never blocked), its IPv6 address is
	// on the operator's allow-list.
	g := openIn(t, s.b, Options{Never: []netip.Prefix{netip.PrefixFrom(s.a4, 32)}})
	if err := g.Isolate([]netip.Prefix{netip.PrefixFrom(s.a6, 128)}); err != nil {
		t.Fatal(err)
	}
	if !g.Isolated() {
		t.Fatal("Isolated() = false after Isolate")
	}
	// Isolated before any packet: ARP and neighbour discovery must pass.
	mustConnect(t, "A to B over IPv4 (server)", s.a, netip.AddrPortFrom(s.ba4, portB))
	mustConnect(t, "A to B over IPv6 (allowed)", s.a, netip.AddrPortFrom(s.ba6, portB))
	mustConnect(t, "B to A over IPv4", s.b, netip.AddrPortFrom(s.a4, portA))
	mustConnect(t, "B to A over IPv6", s.b, netip.AddrPortFrom(s.a6, portA))
	mustNotConnect(t, "C to B over IPv4", s.c, netip.AddrPortFrom(s.bc4, portB))
	mustNotConnect(t, "C to B over IPv6", s.c, netip.AddrPortFrom(s.bc6, portB))
	mustNotConnect(t, "B to C over IPv4", s.b, netip.AddrPortFrom(s.c4, portC))
	mustConnect(t, "loopback in B", s.b, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), portB))
	if st := stats(t, g); st.Isolated == 0 {
		t.Fatalf("counters %+v: want isolated drops", st)
	}
	// The server cannot be blocked away either.
	if err := g.Block(netip.PrefixFrom(s.a4, 24).Masked(), 0); !errors.Is(err, ErrNever) {
		t.Fatalf("block of the server's subnet: %v, want ErrNever", err)
	}

	if err := g.Release(); err != nil {
		t.Fatal(err)
	}
	if g.Isolated() {
		t.Fatal("Isolated() = true after Release")
	}
	mustConnect(t, "C to B after release", s.c, netip.AddrPortFrom(s.bc4, portB))
	mustConnect(t, "C to B over IPv6 after release", s.c, netip.AddrPortFrom(s.bc6, portB))
}

// TestClsact attaches without TCX: the guard creates a clsact qdisc where
// there is none and removes only that one at Close.
func TestClsact(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStar(t)
	port := listen(t, s.b)
	h, err := netlink.NewHandleAt(s.b)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	hasClsact := func(name string) bool {
		t.Helper()
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		qs, err := h.QdiscList(l)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(qs, func(q netlink.Qdisc) bool { return q.Type() == "clsact" })
	}
	// Someone else's clsact qdisc on the C link.
	lc, err := h.LinkByName(s.bToC)
	if err != nil {
		t.Fatal(err)
	}
	theirs := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: lc.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := h.QdiscAdd(theirs); err != nil {
		t.Fatal(err)
	}

	g := netnstest.In(t, s.b, func() (*Guard, error) {
		g, err := Open(Options{NoTCX: true})
		if err != nil {
			return nil, err
		}
		return g, g.Attach()
	})
	closed := false
	t.Cleanup(func() {
		if !closed {
			g.Close()
		}
	})
	if g.Mode() != ModeClsact {
		t.Fatalf("mode %q, want %q", g.Mode(), ModeClsact)
	}
	if !hasClsact(s.bToA) || !hasClsact(s.bToC) {
		t.Fatal("no clsact qdisc after Attach")
	}
	lat := blockLatency(t, g, netip.PrefixFrom(s.a4, 32), 0, s.a, netip.AddrPortFrom(s.ba4, port))
	t.Logf("clsact: Block() returned -> first dropped SYN counted: %s", lat)
	mustConnect(t, "C while A is blocked", s.c, netip.AddrPortFrom(s.bc4, port))

	closed = true
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if hasClsact(s.bToA) {
		t.Error("the qdisc the guard created is still there after Close")
	}
	if !hasClsact(s.bToC) {
		t.Error("Close removed a clsact qdisc the guard did not create")
	}
	mustConnect(t, "A after Close", s.a, netip.AddrPortFrom(s.ba4, port))
}

func TestBadInput(t *testing.T) {
	never, err := normalizeNever([]netip.Prefix{netip.MustParsePrefix("::ffff:192.0.2.10/128"), netip.MustParsePrefix("2001:db8::7/128")})
	if err != nil {
		t.Fatal(err)
	}
	g := &Guard{never: never}
	p := netip.MustParsePrefix
	for _, c := range []struct {
		prefix netip.Prefix
		ttl    time.Duration
		want   string
		is     error
	}{
		{p("10.1.2.3/8"), 0, "netguard: block 10.1.2.3/8: invalid prefix: not canonical, want 10.0.0.0/8", ErrInvalidPrefix},
		{p("2001:db8::1/32"), 0, "netguard: block 2001:db8::1/32: invalid prefix: not canonical, want 2001:db8::/32", ErrInvalidPrefix},
		{p("::ffff:198.51.100.1/128"), 0, "netguard: block ::ffff:198.51.100.1/128: invalid prefix: IPv4-mapped, use 198.51.100.1/32", ErrInvalidPrefix},
		{netip.Prefix{}, 0, "netguard: block invalid Prefix: invalid prefix", ErrInvalidPrefix},
		{p("0.0.0.0/0"), 0, "netguard: block 0.0.0.0/0: prefix covers every address", ErrAllAddresses},
		{p("::/0"), 0, "netguard: block ::/0: prefix covers every address", ErrAllAddresses},
		{p("127.0.0.1/32"), 0, "netguard: block 127.0.0.1/32: prefix covers loopback", ErrLoopback},
		{p("::1/128"), 0, "netguard: block ::1/128: prefix covers loopback", ErrLoopback},
		{p("0.0.0.0/1"), 0, "netguard: block 0.0.0.0/1: prefix covers loopback", ErrLoopback},
		{p("192.0.2.0/24"), 0, "netguard: block 192.0.2.0/24: prefix covers a peer that is never blocked (192.0.2.10/32)", ErrNever},
		{p("192.0.2.10/32"), 0, "netguard: block 192.0.2.10/32: prefix covers a peer that is never blocked (192.0.2.10/32)", ErrNever},
		{p("2001:db8::/64"), 0, "netguard: block 2001:db8::/64: prefix covers a peer that is never blocked (2001:db8::7/128)", ErrNever},
		{p("198.51.100.0/24"), -time.Second, "netguard: block 198.51.100.0/24: negative TTL -1s", nil},
	} {
		err := g.Block(c.prefix, c.ttl)
		if err == nil || err.Error() != c.want {
			t.Errorf("Block(%s, %s) = %v, want %q", c.prefix, c.ttl, err, c.want)
			continue
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("Block(%s): %v is not %v", c.prefix, err, c.is)
		}
	}
	for _, c := range []struct {
		call func() error
		want string
	}{
		{func() error { return g.Unblock(p("10.0.0.1/8")) }, "netguard: unblock 10.0.0.1/8: invalid prefix: not canonical, want 10.0.0.0/8"},
		{func() error { return g.Isolate([]netip.Prefix{p("10.0.0.1/8")}) }, "netguard: allow 10.0.0.1/8: invalid prefix: not canonical, want 10.0.0.0/8"},
		{func() error { _, err := g.Quarantine("/proc"); return err }, "netguard: quarantine /proc: not a cgroup v2 directory"},
		{func() error { _, err := g.Quarantine("/nonexistent"); return err }, "netguard: quarantine /nonexistent: no such file or directory"},
		{func() error { _, err := Open(Options{Never: []netip.Prefix{{}}}); return err }, "netguard: never-block invalid Prefix: invalid prefix"},
	} {
		if err := c.call(); err == nil || err.Error() != c.want {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
}
