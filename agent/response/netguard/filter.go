package netguard

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/vigil-sensor/vigil/bpf"
)

// Block is one blocked prefix.
type Block struct {
	// Prefix is the blocked peers.
	Prefix netip.Prefix
	// Expires is when the block ends; the zero time: never.
	Expires time.Time
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// unmap turns an IPv4-mapped IPv6 prefix into its IPv4 form.
func unmap(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// checkPrefix refuses a prefix that is invalid, not canonical or
// IPv4-mapped.
func checkPrefix(what string, p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("netguard: %s %s: %w", what, p, ErrInvalidPrefix)
	case p.Addr().Is4In6():
		return fmt.Errorf("netguard: %s %s: %w: IPv4-mapped, use %s", what, p, ErrInvalidPrefix, unmap(p))
	case p.Masked() != p:
		return fmt.Errorf("netguard: %s %s: %w: not canonical, want %s", what, p, ErrInvalidPrefix, p.Masked())
	}
	return nil
}

// checkBlock refuses a prefix that may not be blocked.
func (g *Guard) checkBlock(p netip.Prefix) error {
	if err := checkPrefix("block", p); err != nil {
		return err
	}
	if p.Bits() == 0 {
		return fmt.Errorf("netguard: block %s: %w", p, ErrAllAddresses)
	}
	for _, l := range loopback {
		if p.Overlaps(l) {
			return fmt.Errorf("netguard: block %s: %w", p, ErrLoopback)
		}
	}
	for _, n := range g.never {
		if p.Overlaps(n) {
			return fmt.Errorf("netguard: block %s: %w (%s)", p, ErrNever, n)
		}
	}
	return nil
}

// bootNow reads CLOCK_BOOTTIME, the clock of bpf_ktime_get_boot_ns.
func bootNow() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

// trie returns the map and key of p in the blocked or allowed tries.
func (g *Guard) trie(p netip.Prefix, blocked bool) (*ebpf.Map, any) {
	if p.Addr().Is4() {
		m := g.objs.NgAllow4
		if blocked {
			m = g.objs.NgBlock4
		}
		return m, &bpf.NetguardNgKey4{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()}
	}
	m := g.objs.NgAllow6
	if blocked {
		m = g.objs.NgBlock6
	}
	return m, &bpf.NetguardNgKey6{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}
}

// Block drops every packet to and from the peers of prefix on the watched
// interfaces, for ttl (0: until Unblock). Blocking a prefix again replaces
// its TTL. It refuses a prefix that is not canonical, covers every address,
// loopback or a peer of Options.Never.
func (g *Guard) Block(prefix netip.Prefix, ttl time.Duration) error {
	if err := g.checkBlock(prefix); err != nil {
		return err
	}
	if ttl < 0 {
		return fmt.Errorf("netguard: block %s: negative TTL %s", prefix, ttl)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return fmt.Errorf("netguard: block %s: %w", prefix, ErrClosed)
	}
	b := Block{Prefix: prefix}
	v := bpf.NetguardNgBlock{Prefixlen: uint32(prefix.Bits())}
	if ttl > 0 {
		boot, err := bootNow()
		if err != nil {
			return fmt.Errorf("netguard: block %s: %w", prefix, err)
		}
		v.Expires = uint64(boot + ttl)
		b.Expires = time.Now().Add(ttl)
	}
	m, key := g.trie(prefix, true)
	if err := m.Update(key, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("netguard: block %s: %w", prefix, err)
	}
	g.blocks[prefix] = b
	return nil
}

// Unblock ends the block of prefix. Unblocking a prefix that is not
// blocked does nothing.
func (g *Guard) Unblock(prefix netip.Prefix) error {
	if err := checkPrefix("unblock", prefix); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return fmt.Errorf("netguard: unblock %s: %w", prefix, ErrClosed)
	}
	if err := g.removeBlock(prefix); err != nil {
		return fmt.Errorf("netguard: unblock %s: %w", prefix, err)
	}
	return nil
}

func (g *Guard) removeBlock(prefix netip.Prefix) error {
	m, key := g.trie(prefix, true)
	if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	delete(g.blocks, prefix)
	return nil
}

// Blocks returns the blocked prefixes, expired ones not yet removed
// included, sorted by prefix.
func (g *Guard) Blocks() []Block {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Block, 0, len(g.blocks))
	for _, b := range g.blocks {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Block) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out
}

// Expire removes the blocks that ended at or before now. The kernel stops
// enforcing a block at its end anyway; this frees its entry. Calling it
// again does nothing.
func (g *Guard) Expire(now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	var errs []error
	for p, b := range g.blocks {
		if b.Expires.IsZero() || now.Before(b.Expires) {
			continue
		}
		if err := g.removeBlock(p); err != nil {
			errs = append(errs, fmt.Errorf("netguard: expire %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// Isolate drops every IP packet on the watched interfaces whose peer is
// not in allow or Options.Never. Loopback, ARP and IPv6 neighbour discovery
// still pass. Isolating again replaces the allowed prefixes without a gap.
func (g *Guard) Isolate(allow []netip.Prefix) error {
	want := make(map[netip.Prefix]struct{}, len(allow)+len(g.never))
	for _, p := range allow {
		if err := checkPrefix("allow", p); err != nil {
			return err
		}
		want[p] = struct{}{}
	}
	for _, p := range g.never {
		want[p] = struct{}{}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return fmt.Errorf("netguard: isolate: %w", ErrClosed)
	}
	// Allow the new peers first, then forget the old ones, then isolate:
	// no allowed peer is cut off on the way.
	one := uint8(1)
	for p := range want {
		m, key := g.trie(p, false)
		if err := m.Update(key, &one, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("netguard: isolate: allow %s: %w", p, err)
		}
		g.allowed[p] = struct{}{}
	}
	for p := range g.allowed {
		if _, ok := want[p]; ok {
			continue
		}
		if err := g.removeAllowed(p); err != nil {
			return fmt.Errorf("netguard: isolate: %w", err)
		}
	}
	if err := g.setFlags(uint32(bpf.NetguardNgFlagsNG_ISOLATE)); err != nil {
		return fmt.Errorf("netguard: isolate: %w", err)
	}
	g.isolate = true
	return nil
}

// Release ends isolation and forgets the allowed prefixes.
func (g *Guard) Release() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return fmt.Errorf("netguard: release: %w", ErrClosed)
	}
	if err := g.setFlags(0); err != nil {
		return fmt.Errorf("netguard: release: %w", err)
	}
	g.isolate = false
	for p := range g.allowed {
		if err := g.removeAllowed(p); err != nil {
			return fmt.Errorf("netguard: release: %w", err)
		}
	}
	return nil
}

// Isolated reports whether the host is isolated.
func (g *Guard) Isolated() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.isolate
}

func (g *Guard) removeAllowed(p netip.Prefix) error {
	m, key := g.trie(p, false)
	if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("forget allowed %s: %w", p, err)
	}
	delete(g.allowed, p)
	return nil
}

func (g *Guard) setFlags(flags uint32) error {
	cfg := bpf.NetguardNgConfig{Flags: flags}
	if err := g.objs.NgMode.Put(uint32(0), &cfg); err != nil {
		return fmt.Errorf("set mode: %w", err)
	}
	return nil
}

// Stats are the guard's counters since Open.
type Stats struct {
	// Passed counts IP packets the host filter let through.
	Passed uint64
	// Blocked counts packets dropped because their peer is blocked.
	Blocked uint64
	// Isolated counts packets dropped by isolation.
	Isolated uint64
	// QuarantineDropped counts packets of quarantined cgroups dropped.
	QuarantineDropped uint64
	// QuarantineDenied counts connects and sends of quarantined cgroups refused.
	QuarantineDenied uint64
}

// Stats sums the per-CPU counters.
func (g *Guard) Stats() (Stats, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return Stats{}, fmt.Errorf("netguard: stats: %w", ErrClosed)
	}
	var s Stats
	for _, c := range []struct {
		idx bpf.NetguardNgCounter
		dst *uint64
	}{
		{bpf.NetguardNgCounterNG_PASSED, &s.Passed},
		{bpf.NetguardNgCounterNG_DROP_BLOCKED, &s.Blocked},
		{bpf.NetguardNgCounterNG_DROP_ISOLATED, &s.Isolated},
		{bpf.NetguardNgCounterNG_DROP_QUARANTINE, &s.QuarantineDropped},
		{bpf.NetguardNgCounterNG_DENY_QUARANTINE, &s.QuarantineDenied},
	} {
		var perCPU []uint64
		if err := g.objs.NgCounters.Lookup(uint32(c.idx), &perCPU); err != nil {
			return Stats{}, fmt.Errorf("netguard: read counter %d: %w", c.idx, err)
		}
		for _, n := range perCPU {
			*c.dst += n
		}
	}
	return s, nil
}
