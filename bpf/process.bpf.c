//go:build ignore
/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Process lifecycle sensor: fork, exec and exit of every process. */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "types.h"
#include "maps.h"
#include "common.h"
#include "path.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Ring buffer of the process family. The agent sizes it before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} process_events SEC(".maps");

/* When set by the agent, only tasks in this cgroup v2 (by id) are reported. */
volatile const __u64 target_cgroup = 0;

/* Key of kill_exes: an executable's inode (kernel dev_t encoding), as in the file family. */
struct kill_exe_key {
	__u64 ino;
	__u32 dev;
	__u32 pad;
};

/* Executables killed at exec, by inode. The agent fills it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct kill_exe_key);
	__type(value, __u8);
} kill_exes SEC(".maps");

/* Key of kill_names: a task name (comm), NUL-padded. */
struct kill_name_key {
	char comm[TASK_COMM_LEN];
};

/* Task names killed at exec: the name the new image runs as. The agent fills it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct kill_name_key);
	__type(value, __u8);
} kill_names SEC(".maps");

/*
 * kill_listed sends SIGKILL to the exec'ing task (current) when its new image
 * or its new name is on a kill list, and reports whether it did. The signal is
 * pending before execve returns to user space, so the image never runs.
 */
static __always_inline bool kill_listed(struct task_struct *task, struct linux_binprm *bprm)
{
	struct inode *inode = BPF_CORE_READ(bprm, file, f_inode);
	struct kill_exe_key exe = {
		.ino = BPF_CORE_READ(inode, i_ino),
		.dev = BPF_CORE_READ(inode, i_sb, s_dev),
	};
	struct kill_name_key name = {};
	BPF_CORE_READ_STR_INTO(&name.comm, task, comm);
	if (!bpf_map_lookup_elem(&kill_exes, &exe) && !bpf_map_lookup_elem(&kill_names, &name))
		return false;
	return bpf_send_signal(9 /* SIGKILL */) == 0;
}

/* selected reports whether task's events are wanted. */
static __always_inline bool selected(struct task_struct *task)
{
	return !target_cgroup || BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id) == target_cgroup;
}

/* Force bpf2go to emit Go types for the records. */
const struct fork_event *unused_fork_event __attribute__((unused));
const struct exec_event *unused_exec_event __attribute__((unused));
const struct exit_event *unused_exit_event __attribute__((unused));
const enum event_family *unused_event_family __attribute__((unused));
const enum event_type *unused_event_type __attribute__((unused));
const enum exec_flags *unused_exec_flags __attribute__((unused));
const struct kill_exe_key *unused_kill_exe_key __attribute__((unused));
const struct kill_name_key *unused_kill_name_key __attribute__((unused));

SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	/* Threads share their process's identity: only new processes matter. */
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid) || !selected(child))
		return 0;

	struct fork_event *ev = bpf_ringbuf_reserve(&process_events, sizeof(*ev), 0);
	if (!ev) {
		count_lost(FAMILY_PROCESS);
		return 0;
	}
	fill_header(&ev->hdr, EVENT_FORK);
	fill_process(&ev->proc, child);
	submit_record(&process_events, ev);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	/* Enforcement first, for every task: the cgroup filter only limits reporting. */
	bool killed = kill_listed(task, bprm);
	if (!selected(task))
		return 0;
	__u32 zero = 0;
	struct path_scratch *scratch = bpf_map_lookup_elem(&path_scratch_map, &zero);
	if (!scratch)
		return 0;

	struct exec_event *ev = bpf_ringbuf_reserve(&process_events, sizeof(*ev), 0);
	if (!ev) {
		count_lost(FAMILY_PROCESS);
		return 0;
	}
	fill_header(&ev->hdr, EVENT_EXEC);
	fill_process(&ev->proc, task);
	ev->flags = killed ? EXEC_KILLED : 0;
	ev->pad = 0;

	/* The path as the caller passed it to execve (may be relative, or a script). */
	long n = bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename),
					   BPF_CORE_READ(bprm, filename));
	ev->filename_len = n > 0 ? n - 1 : 0;

	/* The loaded image, walked from its dentry up to the root. */
	struct file *file = BPF_CORE_READ(bprm, file);
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	bool truncated = false;
	__u32 off = build_path(scratch, dentry, BPF_CORE_READ(file, f_path.mnt), &truncated);
	ev->exe_len = copy_path(ev->exe, EXE_MAX_LEN, scratch, off, &truncated);
	if (truncated)
		ev->flags |= EXEC_EXE_TRUNCATED;
	if (BPF_CORE_READ(dentry, d_inode, __i_nlink) == 0)
		ev->flags |= EXEC_EXE_DELETED;
	char prefix[6] = {};
	bpf_probe_read_kernel(prefix, sizeof(prefix), BPF_CORE_READ(dentry, d_name.name));
	if (prefix[0] == 'm' && prefix[1] == 'e' && prefix[2] == 'm' && prefix[3] == 'f' &&
	    prefix[4] == 'd' && prefix[5] == ':')
		ev->flags |= EXEC_EXE_MEMFD;

	/* The working directory. */
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	truncated = false;
	off = build_path(scratch, BPF_CORE_READ(fs, pwd.dentry), BPF_CORE_READ(fs, pwd.mnt),
			 &truncated);
	ev->cwd_len = copy_path(ev->cwd, CWD_MAX_LEN, scratch, off, &truncated);
	if (truncated)
		ev->flags |= EXEC_CWD_TRUNCATED;

	/* argv, read from the new image's stack where execve just copied it. */
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long arg_start = BPF_CORE_READ(mm, arg_start);
	unsigned long arg_end = BPF_CORE_READ(mm, arg_end);
	__u32 args_len = 0;
	if (arg_end > arg_start) {
		unsigned long want = arg_end - arg_start;
		if (want > ARGS_MAX_LEN) {
			want = ARGS_MAX_LEN;
			ev->flags |= EXEC_ARGS_TRUNCATED;
		}
		args_len = want;
		if (bpf_probe_read_user(ev->args, args_len, (void *)arg_start) < 0)
			args_len = 0;
	}
	ev->args_len = args_len;

	submit_record(&process_events, ev);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_exit, struct task_struct *task)
{
	/* Report the process once, when its last thread is gone. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0 || !selected(task))
		return 0;

	struct exit_event *ev = bpf_ringbuf_reserve(&process_events, sizeof(*ev), 0);
	if (!ev) {
		count_lost(FAMILY_PROCESS);
		return 0;
	}
	fill_header(&ev->hdr, EVENT_EXIT);
	fill_process(&ev->proc, task);
	ev->exit_code = BPF_CORE_READ(task, exit_code);
	ev->pad = 0;
	submit_record(&process_events, ev);
	return 0;
}
