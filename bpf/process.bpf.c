//go:build ignore
/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Process lifecycle sensor: fork, exec and exit of every process. */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "types.h"
#include "maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Upper bound on path components walked; deeper paths are marked truncated. */
#define MAX_PATH_COMPONENTS 64

/* Force bpf2go to emit Go types for the records. */
const struct fork_event *unused_fork_event __attribute__((unused));
const struct exec_event *unused_exec_event __attribute__((unused));
const struct exit_event *unused_exit_event __attribute__((unused));
const enum event_family *unused_event_family __attribute__((unused));
const enum event_type *unused_event_type __attribute__((unused));
const enum exec_flags *unused_exec_flags __attribute__((unused));

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
	info->pad = 0;
	info->start_boottime = BPF_CORE_READ(task, group_leader, start_boottime);
	info->cgroup_id = bpf_get_current_cgroup_id();
	BPF_CORE_READ_STR_INTO(&info->comm, task, comm);
}

/* State of one path walk, carried across bpf_loop iterations. */
struct path_walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	__u32 off;      /* the path is scratch->buf[off, PATH_SCRATCH_LEN) */
	bool truncated; /* still set when the walk stopped before the root */
};

/* path_walk_step prepends one component (or crosses one mount); returns 1 to stop. */
static long path_walk_step(__u64 index, struct path_walk *w)
{
	__u32 zero = 0;
	struct path_scratch *scratch = bpf_map_lookup_elem(&path_scratch_map, &zero);
	if (!scratch)
		return 1;

	/* Plain locals: BPF_CORE_READ would relocate the path_walk fields too. */
	struct dentry *dentry = w->dentry;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;
	struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);

	if (dentry == mnt_root) {
		/* Top of this mount: continue at its mount point in the parent mount. */
		struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
		if (mnt_parent == mnt) {
			w->truncated = false;
			return 1;
		}
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = mnt_parent;
		w->vfsmnt = &mnt_parent->mnt;
		return 0;
	}

	struct qstr name = BPF_CORE_READ(dentry, d_name);
	__u32 len = name.len;
	if (len > NAME_MAX_LEN - 1)
		len = NAME_MAX_LEN - 1;
	__u32 off = w->off;
	if (off > PATH_SCRATCH_LEN || len + 1 > off)
		return 1;
	off -= len + 1;
	if (bpf_probe_read_kernel(&scratch->buf[(off + 1) & (PATH_SCRATCH_LEN - 1)],
				  len & (NAME_MAX_LEN - 1), name.name) < 0)
		return 1;
	scratch->buf[off & (PATH_SCRATCH_LEN - 1)] = '/';
	w->off = off;

	if (dentry == parent) {
		/* A root that is not a mount's root: a pseudo file such as a memfd. */
		w->truncated = false;
		return 1;
	}
	w->dentry = parent;
	return 0;
}

/*
 * build_path writes the absolute path of (dentry, vfsmnt) into the per-CPU
 * scratch buffer, last component first, and returns the offset where it
 * starts: the path is scratch->buf[off, PATH_SCRATCH_LEN). *truncated is set
 * when the walk gave up before reaching the root.
 */
static __always_inline __u32 build_path(struct path_scratch *scratch, struct dentry *dentry,
					struct vfsmount *vfsmnt, bool *truncated)
{
	struct path_walk w = {
		.dentry = dentry,
		.vfsmnt = vfsmnt,
		.mnt = container_of(vfsmnt, struct mount, mnt),
		.off = PATH_SCRATCH_LEN,
		.truncated = true,
	};
	bpf_loop(MAX_PATH_COMPONENTS, path_walk_step, &w, 0);
	*truncated = w.truncated;

	__u32 off = w.off;
	if (off > PATH_SCRATCH_LEN)
		off = PATH_SCRATCH_LEN;
	if (off == PATH_SCRATCH_LEN) {
		/* The root directory itself. */
		off--;
		scratch->buf[off & (PATH_SCRATCH_LEN - 1)] = '/';
	}
	return off;
}

/*
 * copy_path (max must be a power of two) copies the tail of the assembled path (at most max - 1 bytes, so
 * the basename survives truncation) into dst and returns its length.
 */
static __always_inline __u32 copy_path(char *dst, __u32 max, struct path_scratch *scratch,
				       __u32 off, bool *truncated)
{
	__u32 len = PATH_SCRATCH_LEN - off;
	if (len > max - 1) {
		off = PATH_SCRATCH_LEN - (max - 1);
		len = max - 1;
		*truncated = true;
	}
	/* max is a power of two: the mask changes nothing but proves the bound to the verifier. */
	barrier_var(len);
	len &= max - 1;
	if (bpf_probe_read_kernel(dst, len, &scratch->buf[off & (PATH_SCRATCH_LEN - 1)]) < 0)
		return 0;
	return len;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	/* Threads share their process's identity: only new processes matter. */
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
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
	ev->flags = 0;
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
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
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
