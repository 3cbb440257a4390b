// Package netguard carries out the network responses of the agent in the
// kernel: blocking peers (IPv4 and IPv6 prefixes, each with an optional
// TTL), isolating the host so that it talks only to allowed peers (the
// Vigil server and the operator's allow-list), and quarantining a cgroup v2
// so that its processes lose the network.
//
// Blocking and isolation are done by a TC program per direction on each
// watched interface, attached with TCX where the kernel has it and as a
// filter of a clsact qdisc otherwise. A block's end is checked in the
// kernel (CLOCK_BOOTTIME), so it ends at its TTL even before the expired
// entry is removed from the map. Loopback, ARP and IPv6 neighbour discovery
// always pass. Quarantine attaches cgroup_skb programs that drop every
// packet and connect/sendmsg programs that refuse every call (EPERM);
// QuarantineProcesses also destroys, through sock_diag, the sockets the
// quarantined processes made before they were moved into the cgroup, which
// those programs do not see.
//
// A Guard works in the network namespace of the thread that opened it:
// Open and Attach must run there.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/bpf"
)

// DefaultMaxBlocks is the default number of blocked prefixes per address family.
const DefaultMaxBlocks = 65536

// DefaultMaxAllowed is the default number of allowed prefixes per address
// family in isolation.
const DefaultMaxAllowed = 4096

// DefaultExpireEvery is how often, by default, expired blocks are removed
// from the kernel's maps. The kernel stops enforcing a block at its end
// whether or not it was removed.
const DefaultExpireEvery = 10 * time.Second

// Sentinel errors, wrapped with context by the methods that return them.
var (
	// ErrInvalidPrefix: the prefix is not valid, not canonical (bits set
	// past its length) or an IPv4-mapped IPv6 prefix.
	ErrInvalidPrefix = errors.New("invalid prefix")
	// ErrAllAddresses: the prefix is 0.0.0.0/0 or ::/0 (use Isolate).
	ErrAllAddresses = errors.New("prefix covers every address")
	// ErrLoopback: the prefix covers loopback addresses.
	ErrLoopback = errors.New("prefix covers loopback")
	// ErrNever: the prefix covers a peer of Options.Never.
	ErrNever = errors.New("prefix covers a peer that is never blocked")
	// ErrAttached: Attach was called twice.
	ErrAttached = errors.New("already attached")
	// ErrClosed: the guard was closed.
	ErrClosed = errors.New("guard closed")
)

// Options configures a Guard. The zero value watches every interface that
// is up except loopback.
type Options struct {
	// Interfaces names the interfaces the host filter attaches to. Empty:
	// every interface that is up when Attach runs, except loopback ones.
	Interfaces []string
	// Never lists peers that are never blocked and always reachable in
	// isolation: the Vigil server's address at least. IPv4-mapped IPv6
	// prefixes are taken as their IPv4 form; bits past a prefix's length
	// are ignored.
	Never []netip.Prefix
	// MaxBlocks bounds the blocked prefixes per address family (0:
	// DefaultMaxBlocks).
	MaxBlocks uint32
	// MaxAllowed bounds the allowed prefixes per address family in
	// isolation, Never included (0: DefaultMaxAllowed).
	MaxAllowed uint32
	// ExpireEvery is how often expired blocks are removed (0:
	// DefaultExpireEvery; negative: never, the caller calls Expire).
	ExpireEvery time.Duration
	// NoTCX attaches the host filter as clsact filters even where TCX works.
	NoTCX bool
}

// AttachMode says how the host filter is attached to interfaces.
type AttachMode string

const (
	// ModeNone: not attached (yet).
	ModeNone AttachMode = ""
	// ModeTCX: TCX links, first in each interface's chain.
	ModeTCX AttachMode = "tcx"
	// ModeClsact: direct-action BPF filters on a clsact qdisc.
	ModeClsact AttachMode = "clsact"
)

// Guard is the loaded network response programs and their maps. Its
// methods are safe for concurrent use.
type Guard struct {
	mu     sync.Mutex
	objs   bpf.NetguardObjects
	nl     *netlink.Handle
	ns     netns.NsHandle
	never  []netip.Prefix
	ifaces []string
	noTCX  bool

	mode     AttachMode
	attached []attachment

	blocks  map[netip.Prefix]Block
	allowed map[netip.Prefix]struct{}
	isolate bool

	quarantines map[*quarantine]struct{}

	stop   chan struct{}
	done   chan struct{}
	closed bool
}

// Open loads the programs and maps into the kernel, attaching nothing yet.
// It remembers the network namespace of the calling thread, where Attach
// must run. Close undoes it.
func Open(opts Options) (*Guard, error) {
	never, err := normalizeNever(opts.Never)
	if err != nil {
		return nil, err
	}
	maxBlocks, maxAllowed := opts.MaxBlocks, opts.MaxAllowed
	if maxBlocks == 0 {
		maxBlocks = DefaultMaxBlocks
	}
	if maxAllowed == 0 {
		maxAllowed = DefaultMaxAllowed
	}
	if err := sensor.Prepare(); err != nil {
		return nil, fmt.Errorf("netguard: %w", err)
	}

	// Read the object and size its tries before loading it.
	spec, err := bpf.LoadNetguard()
	if err != nil {
		return nil, fmt.Errorf("netguard: read programs: %w", err)
	}
	spec.Maps[bpf.NetguardMapNgBlock4].MaxEntries = maxBlocks
	spec.Maps[bpf.NetguardMapNgBlock6].MaxEntries = maxBlocks
	spec.Maps[bpf.NetguardMapNgAllow4].MaxEntries = maxAllowed
	spec.Maps[bpf.NetguardMapNgAllow6].MaxEntries = maxAllowed

	g := &Guard{
		never:       never,
		ifaces:      opts.Interfaces,
		noTCX:       opts.NoTCX,
		blocks:      make(map[netip.Prefix]Block),
		allowed:     make(map[netip.Prefix]struct{}),
		quarantines: make(map[*quarantine]struct{}),
	}
	if err := spec.LoadAndAssign(&g.objs, nil); err != nil {
		return nil, fmt.Errorf("netguard: %w", sensor.LoadError("netguard", err))
	}

	// A netlink handle bound to this thread's namespace, so that qdiscs
	// are found and removed there whichever thread calls Close.
	if g.ns, err = netns.Get(); err != nil {
		g.objs.Close()
		return nil, fmt.Errorf("netguard: get network namespace: %w", err)
	}
	if g.nl, err = netlink.NewHandleAt(g.ns); err != nil {
		g.ns.Close()
		g.objs.Close()
		return nil, fmt.Errorf("netguard: netlink handle: %w", err)
	}

	// Remove expired blocks in the background.
	every := opts.ExpireEvery
	if every == 0 {
		every = DefaultExpireEvery
	}
	if every > 0 {
		g.stop, g.done = make(chan struct{}), make(chan struct{})
		go g.expireLoop(every)
	}
	return g, nil
}

// normalizeNever checks the never-blocked prefixes and puts them in
// canonical IPv4 or IPv6 form.
func normalizeNever(in []netip.Prefix) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for _, p := range in {
		if !p.IsValid() {
			return nil, fmt.Errorf("netguard: never-block %s: %w", p, ErrInvalidPrefix)
		}
		out = append(out, unmap(p).Masked())
	}
	return out, nil
}

func (g *Guard) expireLoop(every time.Duration) {
	defer close(g.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case now := <-t.C:
			// An error is a map that refused a delete: the entry stays and
			// is tried again next time; the kernel no longer enforces it.
			_ = g.Expire(now)
		}
	}
}

// Attach attaches the host filter, ingress and egress, to the interfaces
// of Options.Interfaces (or every interface that is up except loopback). It
// probes TCX on the first interface and falls back to clsact filters when
// the kernel lacks it. It must run in the network namespace Open ran in.
// On error nothing stays attached.
func (g *Guard) Attach() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return fmt.Errorf("netguard: attach: %w", ErrClosed)
	}
	if g.mode != ModeNone {
		return fmt.Errorf("netguard: attach: %w", ErrAttached)
	}
	if err := g.checkNetns(); err != nil {
		return err
	}
	links, err := g.interfaces()
	if err != nil {
		return err
	}
	mode := ModeTCX
	if g.noTCX {
		mode = ModeClsact
	}
	for _, l := range links {
		name := l.Attrs().Name
		if mode == ModeTCX {
			err := g.attachTCX(l)
			if errors.Is(err, ebpf.ErrNotSupported) && len(g.attached) == 0 {
				// No TCX in this kernel: clsact for every interface.
				mode = ModeClsact
			} else if err != nil {
				g.detachAll()
				return fmt.Errorf("netguard: attach to %s: %w", name, err)
			} else {
				continue
			}
		}
		if err := g.attachClsact(l); err != nil {
			g.detachAll()
			return fmt.Errorf("netguard: attach to %s: %w", name, err)
		}
	}
	g.mode = mode
	return nil
}

// Mode reports how the host filter is attached (ModeNone before Attach).
func (g *Guard) Mode() AttachMode {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mode
}

// Interfaces returns the names of the interfaces the host filter is attached to.
func (g *Guard) Interfaces() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var names []string
	for _, a := range g.attached {
		if len(names) == 0 || names[len(names)-1] != a.iface {
			names = append(names, a.iface)
		}
	}
	return names
}

// checkNetns fails when the calling thread is not in the guard's namespace.
func (g *Guard) checkNetns() error {
	cur, err := netns.Get()
	if err != nil {
		return fmt.Errorf("netguard: get network namespace: %w", err)
	}
	defer cur.Close()
	if !cur.Equal(g.ns) {
		return fmt.Errorf("netguard: attach from network namespace %s, opened in %s: lock the OS thread and enter the namespace", cur, g.ns)
	}
	return nil
}

// interfaces resolves the interfaces to attach to.
func (g *Guard) interfaces() ([]netlink.Link, error) {
	if len(g.ifaces) > 0 {
		links := make([]netlink.Link, 0, len(g.ifaces))
		for _, name := range g.ifaces {
			l, err := g.nl.LinkByName(name)
			if err != nil {
				return nil, fmt.Errorf("netguard: interface %s: %w", name, err)
			}
			links = append(links, l)
		}
		return links, nil
	}
	all, err := g.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("netguard: list interfaces: %w", err)
	}
	var links []netlink.Link
	for _, l := range all {
		flags := l.Attrs().Flags
		if flags&net.FlagUp != 0 && flags&net.FlagLoopback == 0 {
			links = append(links, l)
		}
	}
	if len(links) == 0 {
		return nil, errors.New("netguard: no interface is up besides loopback")
	}
	return links, nil
}

// Close detaches everything the guard attached (host filter and
// quarantines), removes the clsact qdiscs it created and frees its maps.
func (g *Guard) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	stop, done := g.stop, g.done
	g.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	for q := range g.quarantines {
		errs = append(errs, q.detach())
	}
	clear(g.quarantines)
	errs = append(errs, g.detachAll())
	g.nl.Close()
	g.ns.Close()
	if err := g.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close maps and programs: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netguard: close: %w", err)
	}
	return nil
}
