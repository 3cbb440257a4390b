//go:build ignore
/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Login sensor: uprobes and uretprobes on libpam's pam_authenticate,
 * pam_acct_mgmt, pam_open_session and pam_close_session. The entry probe
 * remembers the handle, the return probe reads the handle's items and emits
 * one record with the result.
 */

#include "vmlinux.h"

#if defined(__TARGET_ARCH_arm64)
/*
 * vmlinux.h is generated on x86; arm64's bpf_tracing.h reads the registers
 * through user_pt_regs, the head of arm64's struct pt_regs.
 */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
#endif

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "types.h"
#include "maps.h"
#include "common.h"
#include "login_types.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Ring buffer of the login family. The agent sizes it before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} login_events SEC(".maps");

/* Offsets of the items in struct pam_handle, set by the agent at load. */
volatile const struct pam_layout layout = {
	.caller_is = 8,
	.service = 40,
	.user = 48,
	.rhost = 56,
	.ruser = 64,
	.tty = 72,
};

/* The values _PAM_CALLED_FROM_MODULE and _PAM_CALLED_FROM_APP of caller_is. */
#define PAM_CALLED_FROM_MODULE 1
#define PAM_CALLED_FROM_APP 2

/* A PAM call in flight: what its entry saw. */
struct pam_call {
	__u64 pamh;
	__u64 start_ns;
};

/*
 * Calls in flight, keyed by thread (pid_tgid). LRU, so that calls whose
 * return is never seen (the caller was killed inside PAM) age out.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct pam_call);
} pam_calls SEC(".maps");

/*
 * PAM services the agent does not want to hear about (e.g. "cron"), by
 * name, zero-padded to LOGIN_SERVICE_LEN. Looked up only when the agent put
 * something in it (has_ignored_services).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, char[LOGIN_SERVICE_LEN]);
	__type(value, __u8);
} ignored_services SEC(".maps");

volatile const __u8 has_ignored_services = 0;

/* Force bpf2go to emit Go types for the records. */
const struct login_event *unused_login_event __attribute__((unused));
const enum event_family *unused_event_family __attribute__((unused));
const enum login_event_type *unused_login_event_type __attribute__((unused));
const enum login_flags *unused_login_flags __attribute__((unused));

static __always_inline void enter_pam(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pam_call call = {
		.pamh = PT_REGS_PARM1(ctx),
		.start_ns = bpf_ktime_get_boot_ns(),
	};
	bpf_map_update_elem(&pam_calls, &id, &call, BPF_ANY);
}

/* read_item copies the string the char * at pamh+off points to; an unset item stays empty. */
static __always_inline void read_item(char *dst, __u32 size, __u64 pamh, __u32 off, __u32 *flags)
{
	const char *str = NULL;
	dst[0] = 0;
	if (bpf_probe_read_user(&str, sizeof(str), (void *)(pamh + off)) < 0 || !str)
		return;
	long n = bpf_probe_read_user_str(dst, size, str);
	if (n < 0)
		dst[0] = 0;
	else if (n == size) {
		/* Filled up to the last byte: the item may be longer. */
		char next = 0;
		if (bpf_probe_read_user(&next, 1, str + size - 1) == 0 && next != 0)
			*flags |= LOGIN_ITEM_TRUNCATED;
	}
}

static __always_inline void exit_pam(struct pt_regs *ctx, __u32 type)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pam_call *call = bpf_map_lookup_elem(&pam_calls, &id);
	if (!call)
		return;
	__u64 pamh = call->pamh;
	__u64 start = call->start_ns;
	bpf_map_delete_elem(&pam_calls, &id);

	struct login_event *ev = bpf_ringbuf_reserve(&login_events, sizeof(*ev), 0);
	if (!ev) {
		count_lost(FAMILY_LOGIN);
		return;
	}
	struct task_struct *task = bpf_get_current_task_btf();
	fill_header(&ev->hdr, type);
	fill_process(&ev->proc, task);
	ev->result = (__s32)PT_REGS_RC(ctx);
	ev->flags = 0;
	ev->pad = 0;
	ev->duration_ns = ev->hdr.ktime_boot - start;
	if (bpf_core_field_exists(task->sessionid))
		ev->sessionid = BPF_CORE_READ(task, sessionid);
	else
		ev->sessionid = (__u32)-1;
	ev->service[0] = 0;
	ev->user[0] = 0;
	ev->ruser[0] = 0;
	ev->rhost[0] = 0;
	ev->tty[0] = 0;

	if (!pamh) {
		ev->flags |= LOGIN_NO_HANDLE;
		goto out;
	}
	/*
	 * Back in the application, libpam has set caller_is to APP: anything
	 * else means the handle is not laid out as expected, and its pointers
	 * are not to be trusted.
	 */
	__u32 caller = 0;
	if (bpf_probe_read_user(&caller, sizeof(caller), (void *)(pamh + layout.caller_is)) < 0 ||
	    (caller != PAM_CALLED_FROM_APP && caller != PAM_CALLED_FROM_MODULE)) {
		ev->flags |= LOGIN_LAYOUT_MISMATCH;
		goto out;
	}
	read_item(ev->service, sizeof(ev->service), pamh, layout.service, &ev->flags);
	if (has_ignored_services) {
		/* The key is the whole zero-padded field: clear what follows the name. */
		char key[LOGIN_SERVICE_LEN] = {};
		bpf_probe_read_kernel_str(key, sizeof(key), ev->service);
		if (bpf_map_lookup_elem(&ignored_services, key)) {
			bpf_ringbuf_discard(ev, BPF_RB_NO_WAKEUP);
			return;
		}
	}
	read_item(ev->user, sizeof(ev->user), pamh, layout.user, &ev->flags);
	read_item(ev->ruser, sizeof(ev->ruser), pamh, layout.ruser, &ev->flags);
	read_item(ev->rhost, sizeof(ev->rhost), pamh, layout.rhost, &ev->flags);
	read_item(ev->tty, sizeof(ev->tty), pamh, layout.tty, &ev->flags);
out:
	submit_record(&login_events, ev);
}

#define PAM_PROBES(name, type)                                                                     \
	SEC("uprobe")                                                                              \
	int BPF_KPROBE(enter_##name) { enter_pam(ctx); return 0; }                                 \
	SEC("uretprobe")                                                                           \
	int BPF_KRETPROBE(exit_##name) { exit_pam(ctx, type); return 0; }

PAM_PROBES(pam_authenticate, EVENT_PAM_AUTHENTICATE)
PAM_PROBES(pam_acct_mgmt, EVENT_PAM_ACCT_MGMT)
PAM_PROBES(pam_open_session, EVENT_PAM_OPEN_SESSION)
PAM_PROBES(pam_close_session, EVENT_PAM_CLOSE_SESSION)
