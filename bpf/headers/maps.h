/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Maps and helpers every family's object has: loss counters, wakeup policy, path scratch. */
#ifndef VIGIL_MAPS_H
#define VIGIL_MAPS_H

#include "types.h"

/*
 * When a record wakes the agent. Waking the ring-buffer reader costs the
 * producing task several microseconds (an IPI on this kind of VM), so a
 * record wakes it only when the ring holds wakeup_bytes unread, or when no
 * record of this object has woken it for wakeup_interval_ns; the others wait
 * for the next wakeup or for the reader's slow poll. A lone event is thus
 * seen at once, a storm costs at most one wakeup per interval. Both are set
 * by the agent at load; 0 wakes on every record.
 */
volatile const __u64 wakeup_bytes = 0;
volatile const __u64 wakeup_interval_ns = 0;

/* last_wakeup_ns is when a record of this object last woke the reader (races are harmless). */
__u64 last_wakeup_ns = 0;

/* wakeup_flags decides whether the record about to be committed wakes the reader. */
static __always_inline __u64 wakeup_flags(void *map)
{
	__u64 now = bpf_ktime_get_ns();
	if (bpf_ringbuf_query(map, BPF_RB_AVAIL_DATA) >= wakeup_bytes ||
	    now - last_wakeup_ns >= wakeup_interval_ns) {
		last_wakeup_ns = now;
		return BPF_RB_FORCE_WAKEUP;
	}
	return BPF_RB_NO_WAKEUP;
}

/* submit_record commits a reserved record (see wakeup_flags). */
static __always_inline void submit_record(void *map, void *rec)
{
	bpf_ringbuf_submit(rec, wakeup_flags(map));
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
