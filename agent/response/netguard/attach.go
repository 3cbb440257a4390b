package netguard

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// clsactPriority is the priority of the guard's clsact filters: first, so
// that no earlier filter can pass a packet the guard would drop.
const clsactPriority = 1

// clsactHandle is the handle of the guard's clsact filters ("vg").
const clsactHandle = 0x7667

// attachment is one program attached in one direction of one interface.
type attachment struct {
	iface string
	// tcx is the TCX link, or nil for a clsact filter.
	tcx link.Link
	// filter is the clsact filter, or nil for a TCX link.
	filter *netlink.BpfFilter
	// qdisc is the clsact qdisc the guard created for this filter, to
	// remove with its last filter; nil when it was there before.
	qdisc netlink.Qdisc
}

// direction pairs a program with where it goes.
type direction struct {
	prog   *ebpf.Program
	tcx    ebpf.AttachType
	parent uint32
	name   string
}

func (g *Guard) directions() []direction {
	return []direction{
		{g.objs.NgIngress, ebpf.AttachTCXIngress, netlink.HANDLE_MIN_INGRESS, "ingress"},
		{g.objs.NgEgress, ebpf.AttachTCXEgress, netlink.HANDLE_MIN_EGRESS, "egress"},
	}
}

// attachTCX links both programs at the head of the interface's TCX
// chains. It returns an error matching ebpf.ErrNotSupported when the kernel
// has no TCX.
func (g *Guard) attachTCX(l netlink.Link) error {
	name := l.Attrs().Name
	for _, d := range g.directions() {
		tl, err := link.AttachTCX(link.TCXOptions{
			Interface: l.Attrs().Index,
			Program:   d.prog,
			Attach:    d.tcx,
			Anchor:    link.Head(),
		})
		if err != nil {
			return fmt.Errorf("tcx %s: %w", d.name, err)
		}
		g.attached = append(g.attached, attachment{iface: name, tcx: tl})
	}
	return nil
}

// attachClsact adds both programs as direct-action filters of the
// interface's clsact qdisc, creating the qdisc when there is none.
func (g *Guard) attachClsact(l netlink.Link) error {
	attrs := l.Attrs()
	// Use the interface's clsact qdisc if it has one; create it otherwise.
	qdiscs, err := g.nl.QdiscList(l)
	if err != nil {
		return fmt.Errorf("list qdiscs: %w", err)
	}
	var created netlink.Qdisc
	found := false
	for _, q := range qdiscs {
		if q.Type() == "clsact" {
			found = true
			break
		}
	}
	if !found {
		q := &netlink.GenericQdisc{
			QdiscAttrs: netlink.QdiscAttrs{
				LinkIndex: attrs.Index,
				Handle:    netlink.MakeHandle(0xffff, 0),
				Parent:    netlink.HANDLE_CLSACT,
			},
			QdiscType: "clsact",
		}
		if err := g.nl.QdiscAdd(q); err != nil {
			return fmt.Errorf("add clsact qdisc: %w", err)
		}
		created = q
	}
	for i, d := range g.directions() {
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: attrs.Index,
				Parent:    d.parent,
				Handle:    clsactHandle,
				Protocol:  unix.ETH_P_ALL,
				Priority:  clsactPriority,
			},
			Fd:           d.prog.FD(),
			Name:         "vigil_netguard_" + d.name,
			DirectAction: true,
		}
		a := attachment{iface: attrs.Name, filter: f}
		if i == 0 {
			// Detached last (detachAll goes backwards), the first filter
			// of the interface takes the qdisc with it.
			a.qdisc = created
		}
		if err := g.nl.FilterAdd(f); err != nil {
			if created != nil {
				_ = g.nl.QdiscDel(created)
			}
			return fmt.Errorf("add clsact %s filter: %w", d.name, err)
		}
		g.attached = append(g.attached, a)
	}
	return nil
}

// detachAll undoes every attachment, last first.
func (g *Guard) detachAll() error {
	var errs []error
	for i := len(g.attached) - 1; i >= 0; i-- {
		if err := g.detach(g.attached[i]); err != nil {
			errs = append(errs, fmt.Errorf("detach from %s: %w", g.attached[i].iface, err))
		}
	}
	g.attached = nil
	g.mode = ModeNone
	return errors.Join(errs...)
}

// detach removes one attachment. A clsact qdisc the guard created goes
// with its last filter, unless someone else added filters to it since.
func (g *Guard) detach(a attachment) error {
	if a.tcx != nil {
		return a.tcx.Close()
	}
	if err := g.nl.FilterDel(a.filter); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete clsact filter: %w", err)
	}
	if a.qdisc == nil {
		return nil
	}
	link, err := g.nl.LinkByIndex(a.filter.LinkIndex)
	if err != nil {
		return nil // the interface is gone, and its qdisc with it
	}
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		others, err := g.nl.FilterList(link, parent)
		if err != nil {
			return fmt.Errorf("list clsact filters: %w", err)
		}
		if len(others) > 0 {
			return nil // somebody else's filters: leave the qdisc to them
		}
	}
	if err := g.nl.QdiscDel(a.qdisc); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete clsact qdisc: %w", err)
	}
	return nil
}
