/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Helpers every family uses to fill the common parts of its records. */
#ifndef VIGIL_COMMON_H
#define VIGIL_COMMON_H

#include "types.h"

static __always_inline void fill_header(struct event_header *hdr, __u32 type)
{
	hdr->ktime_boot = bpf_ktime_get_boot_ns();
	hdr->type = type;
	hdr->cpu = bpf_get_smp_processor_id();
}

/* fill_process copies the identity of task (any thread of the process) into info. */
static __always_inline void fill_process(struct process_info *info, struct task_struct *task)
{
	info->pid = BPF_CORE_READ(task, tgid);
	info->tid = BPF_CORE_READ(task, pid);
	info->ppid = BPF_CORE_READ(task, real_parent, tgid);
	info->uid = BPF_CORE_READ(task, real_cred, uid.val);
	info->gid = BPF_CORE_READ(task, real_cred, gid.val);
	info->euid = BPF_CORE_READ(task, real_cred, euid.val);
	if (bpf_core_field_exists(task->loginuid))
		info->loginuid = BPF_CORE_READ(task, loginuid.val);
	else
		info->loginuid = (__u32)-1;
	if (bpf_core_field_exists(task->sessionid))
		info->sessionid = BPF_CORE_READ(task, sessionid);
	else
		info->sessionid = (__u32)-1;
	info->start_boottime = BPF_CORE_READ(task, group_leader, start_boottime);
	/* The task's own cgroup v2, not current's: a forked child may start in another one. */
	info->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	BPF_CORE_READ_STR_INTO(&info->comm, task, comm);
}

#endif /* VIGIL_COMMON_H */
