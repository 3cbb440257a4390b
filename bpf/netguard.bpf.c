//go:build ignore
/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Network responses (netguard).
 *
 * Host packet filter, one TC program per direction (attached with TCX, or
 * as a clsact filter on older kernels): a packet whose peer (the source on
 * ingress, the destination on egress) is in a blocked LPM trie is dropped,
 * unless the block has expired (its end is checked here, in CLOCK_BOOTTIME,
 * so a block ends at its TTL even before user space removes the entry). In
 * isolation mode every IP packet is dropped unless its peer is in the
 * allowed trie. Loopback, ARP and IPv6 neighbour discovery always pass, so
 * that allowed peers stay reachable. A packet that passes goes on to the
 * next program or filter (TCX_NEXT / TC_ACT_UNSPEC).
 *
 * Cgroup quarantine: cgroup_skb programs that drop every packet and
 * connect/sendmsg programs that refuse every call (EPERM), attached to one
 * cgroup v2 directory.
 */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "netguard_types.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_ICMPV6 58
#define LOOPBACK_IFINDEX 1

/* TC verdicts, the same numbers as TCX_NEXT and TCX_DROP. */
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_SHOT 2

/* ICMPv6 router solicitation .. redirect: neighbour discovery (RFC 4861). */
#define ND_FIRST 133
#define ND_LAST 137

/* How many expired entries a lookup steps over before it gives up. */
#define MAX_EXPIRED_STEPS 8

/* Blocked IPv4 prefixes. The agent sizes the tries before load. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct ng_key4);
	__type(value, struct ng_block);
} ng_block4 SEC(".maps");

/* Blocked IPv6 prefixes. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct ng_key6);
	__type(value, struct ng_block);
} ng_block6 SEC(".maps");

/* IPv4 peers reachable in isolation. The value is unused. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct ng_key4);
	__type(value, __u8);
} ng_allow4 SEC(".maps");

/* IPv6 peers reachable in isolation. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct ng_key6);
	__type(value, __u8);
} ng_allow6 SEC(".maps");

/* Mode of the host filter (struct ng_config): entry 0. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ng_config);
} ng_mode SEC(".maps");

/* Per-CPU counters, indexed by enum ng_counter. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NG_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} ng_counters SEC(".maps");

/* Keep the types user space mirrors in the object's BTF. */
const struct ng_config *unused_ng_config __attribute__((unused));
const enum ng_flags *unused_ng_flags __attribute__((unused));
const enum ng_counter *unused_ng_counter __attribute__((unused));

static __always_inline void count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&ng_counters, &which);
	if (n)
		*n += 1;
}

/*
 * is_blocked looks key up in a blocked trie. key starts with its prefix
 * length, which is shortened past each expired entry so that a shorter
 * prefix that still blocks is found.
 */
static __always_inline bool is_blocked(void *trie, void *key)
{
	__u32 *prefixlen = key;
	__u64 now = 0;

	for (int i = 0; i < MAX_EXPIRED_STEPS; i++) {
		struct ng_block *b = bpf_map_lookup_elem(trie, key);
		if (!b)
			return false;
		if (b->expires == 0)
			return true;
		if (!now)
			now = bpf_ktime_get_boot_ns();
		if (now < b->expires)
			return true;
		if (b->prefixlen == 0)
			return false;
		*prefixlen = b->prefixlen - 1;
	}
	return false;
}

/* verdict counts a packet with the outcome of the checks and returns the TC action. */
static __always_inline int verdict(bool blocked, bool allowed, bool isolate)
{
	if (blocked) {
		count(NG_DROP_BLOCKED);
		return TC_ACT_SHOT;
	}
	if (isolate && !allowed) {
		count(NG_DROP_ISOLATED);
		return TC_ACT_SHOT;
	}
	count(NG_PASSED);
	return TC_ACT_UNSPEC;
}

static __always_inline int filter4(struct __sk_buff *skb, bool ingress, bool isolate)
{
	struct iphdr ip;
	if (bpf_skb_load_bytes_relative(skb, 0, &ip, sizeof(ip), BPF_HDR_START_NET))
		return verdict(false, false, isolate); /* too short to have a peer */
	__be32 peer = ingress ? ip.saddr : ip.daddr;
	if ((bpf_ntohl(peer) >> 24) == 127)
		return TC_ACT_UNSPEC; /* loopback */

	struct ng_key4 key = {.prefixlen = 32};
	__builtin_memcpy(key.addr, &peer, sizeof(peer));
	bool blocked = is_blocked(&ng_block4, &key);
	bool allowed = false;
	if (!blocked && isolate) {
		key.prefixlen = 32;
		allowed = bpf_map_lookup_elem(&ng_allow4, &key) != NULL;
	}
	return verdict(blocked, allowed, isolate);
}

static __always_inline bool is_loopback6(const struct in6_addr *a)
{
	return a->in6_u.u6_addr32[0] == 0 && a->in6_u.u6_addr32[1] == 0 &&
	       a->in6_u.u6_addr32[2] == 0 && a->in6_u.u6_addr32[3] == bpf_htonl(1);
}

static __always_inline int filter6(struct __sk_buff *skb, bool ingress, bool isolate)
{
	struct ipv6hdr ip;
	if (bpf_skb_load_bytes_relative(skb, 0, &ip, sizeof(ip), BPF_HDR_START_NET))
		return verdict(false, false, isolate);
	/* Neighbour discovery keeps every peer, allowed ones included, reachable. */
	if (ip.nexthdr == IPPROTO_ICMPV6) {
		__u8 type;
		if (!bpf_skb_load_bytes_relative(skb, sizeof(ip), &type, 1, BPF_HDR_START_NET) &&
		    type >= ND_FIRST && type <= ND_LAST)
			return TC_ACT_UNSPEC;
	}
	struct in6_addr *peer = ingress ? &ip.saddr : &ip.daddr;
	if (is_loopback6(peer))
		return TC_ACT_UNSPEC;

	struct ng_key6 key = {.prefixlen = 128};
	__builtin_memcpy(key.addr, peer, sizeof(key.addr));
	bool blocked = is_blocked(&ng_block6, &key);
	bool allowed = false;
	if (!blocked && isolate) {
		key.prefixlen = 128;
		allowed = bpf_map_lookup_elem(&ng_allow6, &key) != NULL;
	}
	return verdict(blocked, allowed, isolate);
}

static __always_inline int filter(struct __sk_buff *skb, bool ingress)
{
	if (skb->ifindex == LOOPBACK_IFINDEX)
		return TC_ACT_UNSPEC;
	__u32 zero = 0;
	struct ng_config *cfg = bpf_map_lookup_elem(&ng_mode, &zero);
	bool isolate = cfg && (cfg->flags & NG_ISOLATE);

	switch (skb->protocol) {
	case bpf_htons(ETH_P_IP):
		return filter4(skb, ingress, isolate);
	case bpf_htons(ETH_P_IPV6):
		return filter6(skb, ingress, isolate);
	default:
		return TC_ACT_UNSPEC; /* ARP and everything else that is not IP */
	}
}

SEC("tc")
int ng_ingress(struct __sk_buff *skb)
{
	return filter(skb, true);
}

SEC("tc")
int ng_egress(struct __sk_buff *skb)
{
	return filter(skb, false);
}

/* Quarantine: every packet of a socket of the cgroup is dropped. */
SEC("cgroup_skb/ingress")
int ng_quarantine_ingress(struct __sk_buff *skb)
{
	count(NG_DROP_QUARANTINE);
	return 0;
}

SEC("cgroup_skb/egress")
int ng_quarantine_egress(struct __sk_buff *skb)
{
	count(NG_DROP_QUARANTINE);
	return 0;
}

/* Quarantine: connect(2) and unconnected sends fail with EPERM. */
SEC("cgroup/connect4")
int ng_quarantine_connect4(struct bpf_sock_addr *ctx)
{
	count(NG_DENY_QUARANTINE);
	return 0;
}

SEC("cgroup/connect6")
int ng_quarantine_connect6(struct bpf_sock_addr *ctx)
{
	count(NG_DENY_QUARANTINE);
	return 0;
}

SEC("cgroup/sendmsg4")
int ng_quarantine_sendmsg4(struct bpf_sock_addr *ctx)
{
	count(NG_DENY_QUARANTINE);
	return 0;
}

SEC("cgroup/sendmsg6")
int ng_quarantine_sendmsg6(struct bpf_sock_addr *ctx)
{
	count(NG_DENY_QUARANTINE);
	return 0;
}
