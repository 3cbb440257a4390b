/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Keys, values and counters of the network response programs (netguard). */
#ifndef VIGIL_NETGUARD_TYPES_H
#define VIGIL_NETGUARD_TYPES_H

/* LPM trie key of an IPv4 prefix: prefixlen bits of addr (network byte order). */
struct ng_key4 {
	__u32 prefixlen;
	__u8 addr[4];
};

/* LPM trie key of an IPv6 prefix. */
struct ng_key6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Value of a blocked prefix. */
struct ng_block {
	/* CLOCK_BOOTTIME ns at which the block ends; 0: it never does. */
	__u64 expires;
	/* Length of the prefix this value belongs to, so that an expired entry
	 * can be stepped over to a shorter prefix that still blocks. */
	__u32 prefixlen;
	__u32 pad;
};

/* ng_config.flags */
enum ng_flags {
	NG_ISOLATE = 1 << 0, /* drop every IP packet whose peer is not allowed */
};

/* The single entry of the config map. */
struct ng_config {
	__u32 flags;
	__u32 pad;
};

/* Indexes of the per-CPU counters map. */
enum ng_counter {
	NG_PASSED = 0,           /* IP packets the host filter let through */
	NG_DROP_BLOCKED = 1,     /* packets dropped because their peer is blocked */
	NG_DROP_ISOLATED = 2,    /* packets dropped by isolation */
	NG_DROP_QUARANTINE = 3,  /* packets of quarantined cgroups dropped */
	NG_DENY_QUARANTINE = 4,  /* connects and sends of quarantined cgroups refused */
	NG_COUNTERS = 5,
};

#endif /* VIGIL_NETGUARD_TYPES_H */
