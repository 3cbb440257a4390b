/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Maps and helpers every family's object has: loss counters, wakeup policy, path scratch. */
#ifndef VIGIL_MAPS_H
#define VIGIL_MAPS_H

#include "types.h"

/*
 * Unread bytes in a ring buffer above which a submit wakes the agent. Below
 * it, records wait for the agent's next poll: waking the reader on every
 * record costs the producing task several microseconds. Set by the agent at
 * load; 0 wakes on every record.
 */
volatile const __u64 wakeup_bytes = 0;

/* submit_record commits a reserved record, waking the reader only past wakeup_bytes. */
static __always_inline void submit_record(void *map, void *rec)
{
	__u64 unread = bpf_ringbuf_query(map, BPF_RB_AVAIL_DATA);
	bpf_ringbuf_submit(rec, unread >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

/* Per-CPU count of records that could not be reserved, indexed by enum event_family. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FAMILY_MAX);
	__type(key, __u32);
	__type(value, __u64);
} lost_events SEC(".maps");

#define PATH_SCRATCH_LEN 4096
#define NAME_MAX_LEN 256

/* Per-CPU scratch space where paths are assembled from their last component backwards. */
struct path_scratch {
	char buf[PATH_SCRATCH_LEN + NAME_MAX_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_scratch);
} path_scratch_map SEC(".maps");

/* count_lost records one record of a family that did not fit into its ring buffer. */
static __always_inline void count_lost(__u32 family)
{
	__u64 *n = bpf_map_lookup_elem(&lost_events, &family);
	if (n)
		*n += 1;
}

#endif /* VIGIL_MAPS_H */
