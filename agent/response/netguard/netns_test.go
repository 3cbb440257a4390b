package netguard

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vigil-sensor/vigil/internal/netnstest"
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

func newStar(t *testing.T) *star {
	t.Helper()
	n := netnstest.Seq()
	s := &star{
		a4: addr("10.91.%d.1", n), ba4: addr("10.91.%d.2", n),
		a6: addr("fd91:%d::1", n), ba6: addr("fd91:%d::2", n),
		c4: addr("10.92.%d.1", n), bc4: addr("10.92.%d.2", n),
		c6: addr("fd92:%d::1", n), bc6: addr("fd92:%d::2", n),
		bToA: "ngba", bToC: "ngbc",
	}
	s.a, s.b, s.c = netnstest.New(t), netnstest.New(t), netnstest.New(t)
	for _, l := range []struct {
		far           netns.NsHandle
		farIf, nearIf string
		far4, far6    netip.Addr
		near4, near6  netip.Addr
	}{
		{s.a, "ngab", s.bToA, s.a4, s.a6, s.ba4, s.ba6},
		{s.c, "ngcb", s.bToC, s.c4, s.c6, s.bc4, s.bc6},
	} {
		netnstest.Veth(t, l.far, l.farIf, s.b, l.nearIf)
		netnstest.Configure(t, l.far, l.farIf, netip.PrefixFrom(l.far4, 24), netip.PrefixFrom(l.far6, 64))
		netnstest.Configure(t, s.b, l.nearIf, netip.PrefixFrom(l.near4, 24), netip.PrefixFrom(l.near6, 64))
	}
	return s
}

func addr(format string, n uint32) netip.Addr { return netip.MustParseAddr(fmt.Sprintf(format, n)) }

// listen starts a TCP echo server on every address of ns, IPv4 and IPv6,
// and returns its port; t.Cleanup stops it.
func listen(t *testing.T, ns netns.NsHandle) uint16 {
	t.Helper()
	return netnstest.Serve(t, ns, ":0", true).Port()
}

// blockedDial is how long a dial is given before it counts as blocked.
const blockedDial = 250 * time.Millisecond

// mustConnect fails the test unless from reaches to.
func mustConnect(t *testing.T, what string, from netns.NsHandle, to netip.AddrPort) {
	t.Helper()
	if err := netnstest.DialFrom(from, to, 2*time.Second); err != nil {
		t.Fatalf("%s: connect to %s: %v", what, to, err)
	}
}

// mustNotConnect fails the test unless a connect from from to to times out.
func mustNotConnect(t *testing.T, what string, from netns.NsHandle, to netip.AddrPort) {
	t.Helper()
	err := netnstest.DialFrom(from, to, blockedDial)
	if err == nil {
		t.Fatalf("%s: connect to %s succeeded, want a timeout", what, to)
	}
	if !netnstest.TimedOut(err) {
		t.Fatalf("%s: connect to %s: %v, want a timeout", what, to, err)
	}
}
