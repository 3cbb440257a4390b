package network

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/vigil-sensor/vigil/internal/netnstest"
)

// pair is two throwaway network namespaces joined by a veth pair, with
// IPv4 and IPv6 addresses on each end.
type pair struct {
	a, b         netns.NsHandle
	a4, b4       netip.Addr
	a6, b6       netip.Addr
	vethA, vethB string
}

// newPair creates the namespaces and the veth pair; t.Cleanup removes them.
// Nothing is created in the test's own namespace.
func newPair(t *testing.T) *pair {
	t.Helper()
	n := netnstest.Seq()
	p := &pair{
		a4:    netip.MustParseAddr(fmt.Sprintf("10.200.%d.1", n)),
		b4:    netip.MustParseAddr(fmt.Sprintf("10.200.%d.2", n)),
		a6:    netip.MustParseAddr(fmt.Sprintf("fd00::%d:1", n)),
		b6:    netip.MustParseAddr(fmt.Sprintf("fd00::%d:2", n)),
		vethA: fmt.Sprintf("vgla%d", n),
		vethB: fmt.Sprintf("vglb%d", n),
	}
	p.a, p.b = netnstest.New(t), netnstest.New(t)
	netnstest.Veth(t, p.a, p.vethA, p.b, p.vethB)
	netnstest.Configure(t, p.a, p.vethA, netip.PrefixFrom(p.a4, 24), netip.PrefixFrom(p.a6, 64))
	netnstest.Configure(t, p.b, p.vethB, netip.PrefixFrom(p.b4, 24), netip.PrefixFrom(p.b6, 64))
	return p
}
