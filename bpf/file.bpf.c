//go:build ignore
/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * File and syscall sensor: opens and metadata changes of watched paths,
 * privilege changes, ptrace, module loads, memfd_create, mount, bpf program
 * loads and kills, from the per-syscall tracepoints.
 *
 * Each sys_enter_<syscall> tracepoint has its own small program that filters
 * (enabled kinds, target cgroup, watched path, allow-lists) and, for an event
 * worth reporting, stashes the record in the task's storage. One program on
 * the sys_exit tracepoints of the same syscalls adds the return value (and
 * the new credentials) and writes the record to the ring buffer. A syscall
 * that no filter selects costs its enter program plus one task-storage
 * lookup at exit, and nothing reaches user space.
 *
 * Paths are matched lexically at entry, as the caller passed them: absolute
 * paths as they are, relative ones prefixed with the path of the working
 * directory or of the dirfd's file. Symbolic links and ".." are not
 * resolved (see agent/sensor/file for the limits).
 */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "types.h"
#include "maps.h"
#include "common.h"
#include "path.h"
#include "file_types.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AT_FDCWD -100
#define O_ACCMODE 00000003
#define O_CREAT 00000100
#define O_TRUNC 00001000
#define PTRACE_TRACEME 0
#define PTRACE_ATTACH 16
#define PTRACE_SEIZE 0x4206
#define CMD_BPF_PROG_LOAD 5

/* Layout of every syscalls/sys_enter_* tracepoint record. */
struct sys_enter_ctx {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__u64 args[6];
};

/* Layout of every syscalls/sys_exit_* tracepoint record. */
struct sys_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__s64 ret;
};

/* Ring buffer of the file family. The agent sizes it before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} file_events SEC(".maps");

/* Policy: entry 0, filled by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct file_config);
} file_config_map SEC(".maps");

/* Watched path prefixes, longest match wins. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__type(key, struct watch_key);
	__type(value, struct watch_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} watch_paths SEC(".maps");

/* Allow-lists: events of these processes, cgroups and executables are dropped. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} allow_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} allow_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct exe_key);
	__type(value, __u8);
} allow_exes SEC(".maps");

/* Per-CPU counters of what the filters did, indexed by enum file_counter. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FCOUNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} filter_counters SEC(".maps");

/* Head shared by every record: the exit program fills sys.ret through it. */
struct record_head {
	struct event_header hdr;
	struct process_info proc;
	struct syscall_result sys;
};

/* A record waiting for its syscall to return. */
struct pending {
	__u32 active; /* set at entry, cleared at exit */
	__s32 nr;     /* the architecture's syscall number, checked at exit */
	__u32 size;   /* bytes of rec to write */
	__u32 pad;
	union {
		struct record_head head;
		struct file_event file;
		struct cred_event cred;
		struct ptrace_event ptrace;
		struct module_event module;
		struct memfd_event memfd;
		struct mount_event mount;
		struct bpf_prog_event bpf;
		struct kill_event kill;
	} rec;
};

/* One pending record per task, kept in the task's own storage. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pending);
} pending_map SEC(".maps");

/* Per-CPU room to assemble and match paths. */
struct file_scratch {
	__s32 len[2];  /* resolve_match: length of key[i]'s path, -1 when unreadable */
	__u32 vflags;  /* resolve_match: enum file_vflags bits of both paths */
	__u32 pad;
	struct watch_key key[2];
	struct {
		__u32 prefixlen;
		char path[2 * FILE_PATH_MAX];
	} wild;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct file_scratch);
} file_scratch_map SEC(".maps");

/* Force bpf2go to emit Go types for the records and enums. */
const struct file_event *unused_file_event __attribute__((unused));
const struct cred_event *unused_cred_event __attribute__((unused));
const struct ptrace_event *unused_ptrace_event __attribute__((unused));
const struct module_event *unused_module_event __attribute__((unused));
const struct memfd_event *unused_memfd_event __attribute__((unused));
const struct mount_event *unused_mount_event __attribute__((unused));
const struct bpf_prog_event *unused_bpf_prog_event __attribute__((unused));
const struct kill_event *unused_kill_event __attribute__((unused));
const struct file_config *unused_file_config __attribute__((unused));
const struct watch_key *unused_watch_key __attribute__((unused));
const struct watch_value *unused_watch_value __attribute__((unused));
const struct exe_key *unused_exe_key __attribute__((unused));
const enum file_event_type *unused_file_event_type __attribute__((unused));
const enum file_syscall *unused_file_syscall __attribute__((unused));
const enum file_vflags *unused_file_vflags __attribute__((unused));
const enum watch_flags *unused_watch_flags __attribute__((unused));
const enum file_counter *unused_file_counter __attribute__((unused));
const enum allow_flags *unused_allow_flags __attribute__((unused));
const enum event_family *unused_event_family __attribute__((unused));

static __always_inline void count(__u32 idx)
{
	__u64 *n = bpf_map_lookup_elem(&filter_counters, &idx);
	if (n)
		*n += 1;
}

/* begin returns the policy when events of type are enabled and the task is in scope. */
static __always_inline struct file_config *begin(__u32 type)
{
	__u32 zero = 0;
	struct file_config *cfg = bpf_map_lookup_elem(&file_config_map, &zero);
	if (!cfg || !(cfg->kinds & KIND_BIT(type)))
		return NULL;
	count(FCOUNT_SEEN);
	if (cfg->only_cgroup && bpf_get_current_cgroup_id() != cfg->only_cgroup) {
		count(FCOUNT_FILTERED_ALLOW);
		return NULL;
	}
	return cfg;
}

/* allowed reports whether the current task is allow-listed (its events are dropped). */
static __always_inline bool allowed(struct file_config *cfg)
{
	__u32 flags = cfg->allow_flags;
	if (!flags)
		return false;
	if (flags & ALLOW_PIDS) {
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		if (bpf_map_lookup_elem(&allow_pids, &tgid))
			return true;
	}
	if (flags & ALLOW_CGROUPS) {
		__u64 cg = bpf_get_current_cgroup_id();
		if (bpf_map_lookup_elem(&allow_cgroups, &cg))
			return true;
	}
	if (flags & ALLOW_EXES) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);
		if (inode) {
			struct exe_key key = {
				.ino = BPF_CORE_READ(inode, i_ino),
				.dev = BPF_CORE_READ(inode, i_sb, s_dev),
			};
			if (bpf_map_lookup_elem(&allow_exes, &key))
				return true;
		}
	}
	return false;
}

static __always_inline struct file_scratch *scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&file_scratch_map, &zero);
}

/* fd_file returns the file behind descriptor fd of task, or NULL. */
static __always_inline struct file *fd_file(struct task_struct *task, int fd)
{
	if (fd < 0)
		return NULL;
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned int)fd >= max)
		return NULL;
	struct file **arr = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &arr[fd]);
	return file;
}

/*
 * resolve_path reads the user path upath into key->path, made absolute with
 * the directory of dirfd (or the working directory for AT_FDCWD) when it is
 * relative; upath NULL names dirfd's file itself. It returns the length of
 * the path (the bytes before its NUL) or -1 when it cannot be read. A path
 * longer than FILE_PATH_MAX - 1 keeps its head (what prefixes match) and sets
 * trunc in *vflags; a dirfd that names no file sets unres.
 */
static __always_inline int resolve_path(struct watch_key *key, int dirfd, const char *upath,
					__u32 *vflags, __u32 trunc, __u32 unres)
{
	long n = 1;
	if (upath) {
		/* The hot path: an absolute path is ready as soon as it is read. */
		n = bpf_probe_read_user_str(key->path, FILE_PATH_MAX, upath);
		if (n <= 0)
			return -1;
		if (key->path[0] == '/')
			return n - 1;
	}

	/* Relative: find the directory it is relative to. */
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct dentry *dentry;
	struct vfsmount *mnt;
	if (dirfd == AT_FDCWD) {
		struct fs_struct *fs = BPF_CORE_READ(task, fs);
		dentry = BPF_CORE_READ(fs, pwd.dentry);
		mnt = BPF_CORE_READ(fs, pwd.mnt);
	} else {
		struct file *file = fd_file(task, dirfd);
		if (!file) {
			*vflags |= unres;
			return n - 1;
		}
		dentry = BPF_CORE_READ(file, f_path.dentry);
		mnt = BPF_CORE_READ(file, f_path.mnt);
	}
	__u32 zero = 0;
	struct path_scratch *ps = bpf_map_lookup_elem(&path_scratch_map, &zero);
	if (!ps)
		return -1;
	bool truncated = false;
	__u32 off = build_path(ps, dentry, mnt, &truncated);
	if (truncated)
		*vflags |= trunc;
	if (off > PATH_SCRATCH_LEN - 1)
		return -1;
	/* The root directory: do not double its slash. */
	if (off == PATH_SCRATCH_LEN - 1)
		off = PATH_SCRATCH_LEN;

	/* The directory, then "/" and the relative path without a leading "./". */
	__u32 dlen = PATH_SCRATCH_LEN - off;
	__u32 len = dlen;
	if (len > FILE_PATH_MAX - 1) {
		len = FILE_PATH_MAX - 1;
		*vflags |= trunc;
	}
	barrier_var(len);
	if (bpf_probe_read_kernel(key->path, len & (FILE_PATH_MAX - 1), &ps->buf[off]) < 0)
		return -1;
	if (n > 1) {
		char *rel = &ps->buf[PATH_SCRATCH_LEN];
		long m = bpf_probe_read_user_str(rel, NAME_MAX_LEN, upath);
		if (m <= 0)
			return -1;
		__u32 skip = 0;
		if (rel[0] == '.' && rel[1] == '/')
			skip = 2;
		else if (rel[0] == '.' && m == 2)
			skip = 1; /* "." is the directory itself */
		__u32 rlen = m - 1 - skip;
		if (rlen > 0 && rlen < NAME_MAX_LEN && len < FILE_PATH_MAX - 1) {
			key->path[len & (FILE_PATH_MAX - 1)] = '/';
			len++;
			__u32 room = FILE_PATH_MAX - 1 - len;
			if (rlen > room) {
				rlen = room;
				*vflags |= trunc;
			}
			barrier_var(rlen);
			barrier_var(len);
			if (len > FILE_PATH_MAX - 1)
				return -1;
			if (bpf_probe_read_kernel(&key->path[len], rlen & (FILE_PATH_MAX - 1),
						  &rel[skip & 3]) < 0)
				return -1;
			len += rlen;
		}
	}
	key->path[len & (FILE_PATH_MAX - 1)] = 0;
	return len;
}

/* State of the search for the end of the wildcard component. */
struct slash_walk {
	__u32 key; /* index of the scratch key searched */
	__u32 j;   /* the index looked at */
	__u32 len; /* the path's length */
};

/* find_slash advances w->j to the next '/' (or the end) of the path; returns 1 to stop. */
static long find_slash(__u64 index, struct slash_walk *w)
{
	__u32 zero = 0;
	struct file_scratch *s = bpf_map_lookup_elem(&file_scratch_map, &zero);
	if (!s)
		return 1;
	__u32 j = w->j;
	if (j >= w->len || j >= FILE_PATH_MAX)
		return 1;
	if (s->key[w->key & 1].path[j & (FILE_PATH_MAX - 1)] == '/')
		return 1;
	w->j = j + 1;
	return 0;
}

/*
 * match returns the watch flags of the longest watched prefix of key's path
 * (len bytes), trying a "head/(star)/tail" pattern when the longest prefix is
 * a wildcard head and need is not satisfied yet.
 */
static __always_inline __u32 match(struct file_scratch *s, struct watch_key *key, __u32 len,
				   __u32 need)
{
	key->prefixlen = FILE_PATH_MAX * 8;
	struct watch_value *v = bpf_map_lookup_elem(&watch_paths, key);
	if (!v)
		return 0;
	__u32 flags = v->flags;
	if ((flags & need) || !(flags & WATCH_WILDCARD_HEAD))
		return flags;

	/* Replace the component after the head with "*" and look up again. */
	__u32 head = v->head_len;
	if (head > FILE_PATH_MAX - 1 || len > FILE_PATH_MAX - 1 || head > len)
		return flags;
	struct slash_walk walk = { .key = key == &s->key[1], .j = head, .len = len };
	bpf_loop(FILE_PATH_MAX, find_slash, &walk, 0);
	__u32 j = walk.j;
	if (j > len)
		return flags;
	barrier_var(head);
	if (bpf_probe_read_kernel(s->wild.path, head & (FILE_PATH_MAX - 1), key->path) < 0)
		return flags;
	s->wild.path[head & (FILE_PATH_MAX - 1)] = '*';
	/* The rest, with its NUL. */
	__u32 rest = len - j + 1;
	barrier_var(rest);
	if (bpf_probe_read_kernel(&s->wild.path[(head + 1) & (FILE_PATH_MAX - 1)],
				  rest & (FILE_PATH_MAX - 1), &key->path[j & (FILE_PATH_MAX - 1)]) < 0)
		return flags;
	s->wild.prefixlen = FILE_PATH_MAX * 8;
	struct watch_value *w = bpf_map_lookup_elem(&watch_paths, &s->wild);
	if (w)
		flags |= w->flags;
	return flags;
}

/* stash claims the task's pending record for the syscall of ctx; NULL counts a loss. */
static __always_inline struct pending *stash(struct sys_enter_ctx *ctx)
{
	struct pending *p = bpf_task_storage_get(&pending_map, bpf_get_current_task_btf(), 0,
						 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!p) {
		count_lost(FAMILY_FILE);
		return NULL;
	}
	p->active = 0;
	p->nr = ctx->nr;
	return p;
}

/* fill_head fills the header, the process and the syscall of a pending record. */
static __always_inline void fill_head(struct pending *p, __u32 type, __u32 nr, __u32 vflags)
{
	fill_header(&p->rec.head.hdr, type);
	fill_process(&p->rec.head.proc, (struct task_struct *)bpf_get_current_task());
	p->rec.head.sys.ret = 0;
	p->rec.head.sys.nr = nr;
	p->rec.head.sys.vflags = vflags;
}

/* arm marks the pending record complete; the exit program writes it out. */
static __always_inline void arm(struct pending *p, __u32 size)
{
	p->size = size;
	p->active = 1;
}

/* copy_key copies a resolved path of len bytes into a record's path field. */
static __always_inline __u16 copy_key(char *dst, struct watch_key *key, int len)
{
	if (len <= 0)
		return 0;
	__u32 l = len;
	if (l > FILE_PATH_MAX - 1)
		l = FILE_PATH_MAX - 1;
	barrier_var(l);
	if (bpf_probe_read_kernel(dst, l & (FILE_PATH_MAX - 1), key->path) < 0)
		return 0;
	return l;
}

/* read_str reads a user string into dst (max bytes) and returns its length without NUL. */
static __always_inline __u16 read_str(char *dst, __u32 max, const void *src)
{
	if (!src)
		return 0;
	long n = bpf_probe_read_user_str(dst, max, src);
	return n > 0 ? n - 1 : 0;
}

/*
 * resolve_match resolves the user path upath (relative to dirfd; 0 names
 * dirfd's file) into scratch key[slot], records its length in len[slot] and
 * its flags in vflags, and returns the watch flags of need it matches. raw
 * keeps the path as given and matches it only when absolute (a symlink's
 * target). A global function, so that the verifier checks it once and not
 * once per syscall and path.
 */
__noinline int resolve_match(__u32 slot, int dirfd, __u64 upath, __u32 need, __u32 raw)
{
	__u32 zero = 0;
	struct file_scratch *s = bpf_map_lookup_elem(&file_scratch_map, &zero);
	if (!s)
		return 0;
	slot &= 1;
	struct watch_key *key = &s->key[slot];
	__u32 vflags = 0;
	int len;
	if (raw) {
		long n = bpf_probe_read_user_str(key->path, FILE_PATH_MAX, (const void *)upath);
		len = n > 0 ? n - 1 : -1;
		s->len[slot] = len;
		if (len <= 0 || key->path[0] != '/')
			return 0;
	} else {
		len = resolve_path(key, dirfd, (const char *)upath, &vflags,
				   slot ? FILE_PATH2_TRUNCATED : FILE_PATH_TRUNCATED,
				   slot ? FILE_PATH2_UNRESOLVED : FILE_PATH_UNRESOLVED);
		s->len[slot] = len;
		s->vflags |= vflags;
		if (len < 0)
			return 0;
	}
	return match(s, key, len, need) & need;
}

/* ---- Files: one or two paths, filtered by the watched prefixes. ---- */

/*
 * file_op handles every path-based event: path1 (relative to dfd1) and,
 * when path2 is set, path2 (relative to dfd2, or kept as given when raw2) are
 * matched against the watched prefixes for need; fd_only makes path1 the
 * file of dfd1.
 */
static __always_inline int file_op(struct sys_enter_ctx *ctx, __u32 type, __u32 nr, int dfd1,
				   const char *path1, bool fd_only, int dfd2, const char *path2,
				   bool raw2, __u64 flags, __u32 mode, __u32 uid, __u32 gid, __u32 need)
{
	struct file_config *cfg = begin(type);
	if (!cfg)
		return 0;
	struct file_scratch *s = scratch();
	if (!s)
		return 0;

	s->vflags = 0;
	s->len[1] = -1;
	int watched = resolve_match(0, dfd1, fd_only ? 0 : (__u64)path1, need, 0);
	if (path2 && !watched)
		watched = resolve_match(1, dfd2, (__u64)path2, need, raw2);
	else if (path2)
		resolve_match(1, dfd2, (__u64)path2, 0, raw2);
	/* Setting a setuid or setgid bit is reported wherever the file lives:
	 * a setuid copy of a shell in /tmp is the classic backdoor. */
	if (!watched && type == EVENT_FILE_CHMOD && (mode & 06000))
		watched = WATCH_WRITE;
	if (!watched) {
		count(FCOUNT_FILTERED_PATH);
		return 0;
	}
	if (allowed(cfg)) {
		count(FCOUNT_FILTERED_ALLOW);
		return 0;
	}

	struct pending *p = stash(ctx);
	if (!p)
		return 0;
	fill_head(p, type, nr, s->vflags);
	struct file_event *ev = &p->rec.file;
	ev->flags = flags;
	ev->mode = mode;
	ev->uid = uid;
	ev->gid = gid;
	ev->path_len = copy_key(ev->path, &s->key[0], s->len[0]);
	ev->path2_len = path2 ? copy_key(ev->path2, &s->key[1], s->len[1]) : 0;
	arm(p, sizeof(*ev));
	return 0;
}

static __always_inline int do_open(struct sys_enter_ctx *ctx, __u32 nr, int dfd, const char *path,
				   __u64 flags, __u32 mode)
{
	bool write = (flags & O_ACCMODE) != 0 || (flags & (O_CREAT | O_TRUNC)) != 0;
	return file_op(ctx, EVENT_FILE_OPEN, nr, dfd, path, false, 0, NULL, false, flags, mode, 0,
		       0, write ? WATCH_WRITE : WATCH_READ);
}

#define ENTER(name) SEC("tracepoint/syscalls/sys_enter_" #name) int enter_##name(struct sys_enter_ctx *ctx)
#define ARG(i) (ctx->args[i])
#define PTR(i) ((const char *)ctx->args[i])
#define INT(i) ((int)ctx->args[i])

ENTER(open) { return do_open(ctx, FSYS_OPEN, AT_FDCWD, PTR(0), ARG(1), ARG(2)); }
ENTER(openat) { return do_open(ctx, FSYS_OPENAT, INT(0), PTR(1), ARG(2), ARG(3)); }
ENTER(creat) { return do_open(ctx, FSYS_CREAT, AT_FDCWD, PTR(0), O_CREAT | O_TRUNC | 1, ARG(1)); }
ENTER(openat2)
{
	struct open_how how = {};
	bpf_probe_read_user(&how, sizeof(how), (void *)ARG(2));
	return do_open(ctx, FSYS_OPENAT2, INT(0), PTR(1), how.flags, how.mode);
}

#define FILE_OP1(type, nr, dfd, path, flags, mode, uid, gid)                                          \
	file_op(ctx, type, nr, dfd, path, false, 0, NULL, false, flags, mode, uid, gid, WATCH_WRITE)
#define FILE_OP2(type, nr, dfd1, path1, dfd2, path2, flags)                                           \
	file_op(ctx, type, nr, dfd1, path1, false, dfd2, path2, false, flags, 0, 0, 0, WATCH_WRITE)

ENTER(rename) { return FILE_OP2(EVENT_FILE_RENAME, FSYS_RENAME, AT_FDCWD, PTR(0), AT_FDCWD, PTR(1), 0); }
ENTER(renameat) { return FILE_OP2(EVENT_FILE_RENAME, FSYS_RENAMEAT, INT(0), PTR(1), INT(2), PTR(3), 0); }
ENTER(renameat2)
{
	return FILE_OP2(EVENT_FILE_RENAME, FSYS_RENAMEAT2, INT(0), PTR(1), INT(2), PTR(3), ARG(4));
}
ENTER(link) { return FILE_OP2(EVENT_FILE_LINK, FSYS_LINK, AT_FDCWD, PTR(0), AT_FDCWD, PTR(1), 0); }
ENTER(linkat) { return FILE_OP2(EVENT_FILE_LINK, FSYS_LINKAT, INT(0), PTR(1), INT(2), PTR(3), ARG(4)); }

ENTER(symlink)
{
	return file_op(ctx, EVENT_FILE_SYMLINK, FSYS_SYMLINK, AT_FDCWD, PTR(1), false, 0, PTR(0), true,
		       0, 0, 0, 0, WATCH_WRITE);
}
ENTER(symlinkat)
{
	return file_op(ctx, EVENT_FILE_SYMLINK, FSYS_SYMLINKAT, INT(1), PTR(2), false, 0, PTR(0), true,
		       0, 0, 0, 0, WATCH_WRITE);
}

ENTER(unlink) { return FILE_OP1(EVENT_FILE_UNLINK, FSYS_UNLINK, AT_FDCWD, PTR(0), 0, 0, 0, 0); }
ENTER(unlinkat) { return FILE_OP1(EVENT_FILE_UNLINK, FSYS_UNLINKAT, INT(0), PTR(1), ARG(2), 0, 0, 0); }
ENTER(rmdir) { return FILE_OP1(EVENT_FILE_UNLINK, FSYS_RMDIR, AT_FDCWD, PTR(0), 0, 0, 0, 0); }

ENTER(chmod) { return FILE_OP1(EVENT_FILE_CHMOD, FSYS_CHMOD, AT_FDCWD, PTR(0), 0, ARG(1), 0, 0); }
ENTER(fchmodat) { return FILE_OP1(EVENT_FILE_CHMOD, FSYS_FCHMODAT, INT(0), PTR(1), 0, ARG(2), 0, 0); }
ENTER(fchmodat2)
{
	return FILE_OP1(EVENT_FILE_CHMOD, FSYS_FCHMODAT2, INT(0), PTR(1), ARG(3), ARG(2), 0, 0);
}
ENTER(fchmod)
{
	return file_op(ctx, EVENT_FILE_CHMOD, FSYS_FCHMOD, INT(0), NULL, true, 0, NULL, false, 0,
		       ARG(1), 0, 0, WATCH_WRITE);
}

ENTER(chown) { return FILE_OP1(EVENT_FILE_CHOWN, FSYS_CHOWN, AT_FDCWD, PTR(0), 0, 0, ARG(1), ARG(2)); }
ENTER(lchown) { return FILE_OP1(EVENT_FILE_CHOWN, FSYS_LCHOWN, AT_FDCWD, PTR(0), 0, 0, ARG(1), ARG(2)); }
ENTER(fchownat)
{
	return FILE_OP1(EVENT_FILE_CHOWN, FSYS_FCHOWNAT, INT(0), PTR(1), ARG(4), 0, ARG(2), ARG(3));
}
ENTER(fchown)
{
	return file_op(ctx, EVENT_FILE_CHOWN, FSYS_FCHOWN, INT(0), NULL, true, 0, NULL, false, 0, 0,
		       ARG(1), ARG(2), WATCH_WRITE);
}

/* ---- Privilege changes: old ids at entry, new ids at exit, successful changes only. ---- */

static __always_inline void read_cred(struct cred_ids *ids)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	const struct cred *cred = BPF_CORE_READ(task, real_cred);
	ids->uid = BPF_CORE_READ(cred, uid.val);
	ids->euid = BPF_CORE_READ(cred, euid.val);
	ids->suid = BPF_CORE_READ(cred, suid.val);
	ids->fsuid = BPF_CORE_READ(cred, fsuid.val);
	ids->gid = BPF_CORE_READ(cred, gid.val);
	ids->egid = BPF_CORE_READ(cred, egid.val);
	ids->sgid = BPF_CORE_READ(cred, sgid.val);
	ids->fsgid = BPF_CORE_READ(cred, fsgid.val);
	ids->cap_effective = BPF_CORE_READ(cred, cap_effective.val);
	ids->cap_permitted = BPF_CORE_READ(cred, cap_permitted.val);
}

static __always_inline int do_cred(struct sys_enter_ctx *ctx, __u32 nr, __s64 a0, __s64 a1, __s64 a2)
{
	struct file_config *cfg = begin(EVENT_CRED_CHANGE);
	if (!cfg)
		return 0;
	if (allowed(cfg)) {
		count(FCOUNT_FILTERED_ALLOW);
		return 0;
	}
	struct pending *p = stash(ctx);
	if (!p)
		return 0;
	fill_head(p, EVENT_CRED_CHANGE, nr, 0);
	struct cred_event *ev = &p->rec.cred;
	ev->args[0] = a0;
	ev->args[1] = a1;
	ev->args[2] = a2;
	read_cred(&ev->old);
	__builtin_memset(&ev->new, 0, sizeof(ev->new));
	arm(p, sizeof(*ev));
	return 0;
}

ENTER(setuid) { return do_cred(ctx, FSYS_SETUID, INT(0), -1, -1); }
ENTER(setgid) { return do_cred(ctx, FSYS_SETGID, INT(0), -1, -1); }
ENTER(setreuid) { return do_cred(ctx, FSYS_SETREUID, INT(0), INT(1), -1); }
ENTER(setregid) { return do_cred(ctx, FSYS_SETREGID, INT(0), INT(1), -1); }
ENTER(setresuid) { return do_cred(ctx, FSYS_SETRESUID, INT(0), INT(1), INT(2)); }
ENTER(setresgid) { return do_cred(ctx, FSYS_SETRESGID, INT(0), INT(1), INT(2)); }
ENTER(capset) { return do_cred(ctx, FSYS_CAPSET, -1, -1, -1); }

/* ---- ptrace: attach, seize and traceme only. ---- */

ENTER(ptrace)
{
	__s64 request = ARG(0);
	if (request != PTRACE_ATTACH && request != PTRACE_SEIZE && request != PTRACE_TRACEME)
		return 0;
	struct file_config *cfg = begin(EVENT_PTRACE);
	if (!cfg)
		return 0;
	if (allowed(cfg)) {
		count(FCOUNT_FILTERED_ALLOW);
		return 0;
	}
	struct pending *p = stash(ctx);
	if (!p)
		return 0;
	fill_head(p, EVENT_PTRACE, FSYS_PTRACE, 0);
	struct ptrace_event *ev = &p->rec.ptrace;
	ev->request = request;
	ev->pad = 0;
	if (request == PTRACE_TRACEME) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		ev->target_pid = BPF_CORE_READ(task, real_parent, tgid);
	} else {
		ev->target_pid = ARG(1);
	}
	arm(p, sizeof(*ev));
	return 0;
}

/* ---- Kernel modules. ---- */

static __always_inline int do_module(struct sys_enter_ctx *ctx, __u32 type, __u32 nr, int fd,
				     const char *name, __u64 flags)
{
	struct file_config *cfg = begin(type);
	if (!cfg)
		return 0;
	if (allowed(cfg)) {
		count(FCOUNT_FILTERED_ALLOW);
		return 0;
	}
	struct file_scratch *s = scratch();
	if (!s)
		return 0;
	s->vflags = 0;
	s->len[0] = -1;
	if (fd >= 0)
		resolve_match(0, fd, 0, 0, 0);
	struct pending *p = stash(ctx);
	if (!p)
		return 0;
	fill_head(p, type, nr, s->vflags);
	struct module_event *ev = &p->rec.module;
	ev->flags = flags;
	ev->pad = 0;
	ev->name_len = read_str(ev->name, sizeof(ev->name), name);
	ev->path_len = copy_key(ev->path, &s->key[0], s->len[0]);
	arm(p, sizeof(*ev));
	return 0;
}

ENTER(init_module) { return do_module(ctx, EVENT_MODULE_LOAD, FSYS_INIT_MODULE, -1, NULL, 0); }
ENTER(finit_module)
{
	return do_module(ctx, EVENT_MODULE_LOAD, FSYS_FINIT_MODULE, INT(0), NULL, ARG(2));
}
ENTER(delete_module)
{
	return do_module(ctx, EVENT_MODULE_UNLOAD, FSYS_DELETE_MODULE, -1, PTR(0), ARG(1));
}

/* ---- memfd_create. ---- */

ENTER(memfd_create)
{
	struct file_config *cfg = begin(EVENT_MEMFD_CREATE);
	if (!cfg)
		return 0;
	if (allowed(cfg)) {
		count(FCOUNT_FILTERED_ALLOW);
		return 0;
	}
	struct pending *p = stash(ctx);
	if (!p)
		return 0;
	fill_head(p, EVENT_MEMFD_CREATE, FSYS_MEMFD_CREATE, 0);
	struct memfd_event *ev = &p->rec.memfd;
	ev->flags = ARG(1);
	ev->name_len = read_str(ev->name, sizeof(ev->name), PTR(0));
	arm(p, sizeof(*ev));
	return 0;
}

/* ---- mount and umount2. ---- */

static __always_inline int do_mount(struct sys_enter_ctx *ctx, __u32 type, __u32 nr,
				    const char *source, const char *target, const char *fstype,
				    __u64 flags)
{
	struct file_config *cfg = begin(type);
	if (!cfg)
		return 0;
	if (allowed(cfg)) {
		count(FCOUNT_FILTERED_ALLOW);
		return 0;
	}
	struct file_scratch *s = scratch();
	if (!s)
		return 0;
	s->vflags = 0;
	resolve_match(1, AT_FDCWD, (__u64)target, 0, 0);
	struct pending *p = stash(ctx);
	if (!p)
		return 0;
	fill_head(p, type, nr, s->vflags);
	struct mount_event *ev = &p->rec.mount;
	ev->flags = flags;
	ev->pad = 0;
	ev->source_len = read_str(ev->source, sizeof(ev->source), source);
	ev->target_len = copy_key(ev->target, &s->key[1], s->len[1]);
	ev->fstype_len = read_str(ev->fstype, sizeof(ev->fstype), fstype);
	arm(p, sizeof(*ev));
	return 0;
}

ENTER(mount) { return do_mount(ctx, EVENT_MOUNT, FSYS_MOUNT, PTR(0), PTR(1), PTR(2), ARG(3)); }
ENTER(umount) { return do_mount(ctx, EVENT_UMOUNT, FSYS_UMOUNT2, NULL, PTR(0), NULL, ARG(1)); }

/* ---- bpf(BPF_PROG_LOAD). ---- */

ENTER(bpf)
{
	if (ARG(0) != CMD_BPF_PROG_LOAD)
		return 0;
	struct file_config *cfg = begin(EVENT_BPF_PROG_LOAD);
	if (!cfg)
		return 0;
	if (allowed(cfg)) {
		count(FCOUNT_FILTERED_ALLOW);
		return 0;
	}
	struct pending *p = stash(ctx);
	if (!p)
		return 0;
	fill_head(p, EVENT_BPF_PROG_LOAD, FSYS_BPF, 0);
	struct bpf_prog_event *ev = &p->rec.bpf;
	const union bpf_attr *attr = (const void *)ARG(1);
	__u32 size = ARG(2);
	ev->prog_type = 0;
	ev->insn_cnt = 0;
	__builtin_memset(ev->prog_name, 0, sizeof(ev->prog_name));
	bpf_probe_read_user(&ev->prog_type, sizeof(ev->prog_type), &attr->prog_type);
	bpf_probe_read_user(&ev->insn_cnt, sizeof(ev->insn_cnt), &attr->insn_cnt);
	if (size >= __builtin_offsetof(union bpf_attr, prog_name) + BPF_NAME_MAX)
		bpf_probe_read_user(ev->prog_name, sizeof(ev->prog_name), attr->prog_name);
	arm(p, sizeof(*ev));
	return 0;
}

/* ---- Signals to other processes. ---- */

static __always_inline int do_kill(struct sys_enter_ctx *ctx, __u32 nr, __s32 pid, __s32 tid, __s32 sig)
{
	__u64 id = bpf_get_current_pid_tgid();
	/* Signal 0 only probes; signals to the caller itself are not reported. */
	if (sig == 0 || (pid != 0 && pid == (__s32)(id >> 32)) || (pid == 0 && tid == (__s32)id))
		return 0;
	struct file_config *cfg = begin(EVENT_KILL);
	if (!cfg)
		return 0;
	if (allowed(cfg)) {
		count(FCOUNT_FILTERED_ALLOW);
		return 0;
	}
	struct pending *p = stash(ctx);
	if (!p)
		return 0;
	fill_head(p, EVENT_KILL, nr, 0);
	struct kill_event *ev = &p->rec.kill;
	ev->target_pid = pid;
	ev->target_tid = tid;
	ev->sig = sig;
	ev->pad = 0;
	arm(p, sizeof(*ev));
	return 0;
}

ENTER(kill) { return do_kill(ctx, FSYS_KILL, INT(0), -1, INT(1)); }
ENTER(tkill) { return do_kill(ctx, FSYS_TKILL, 0, INT(0), INT(1)); }
ENTER(tgkill) { return do_kill(ctx, FSYS_TGKILL, INT(0), INT(1), INT(2)); }

/* ---- The exit of every hooked syscall. ---- */

static __always_inline void output(void *rec, __u64 size)
{
	if (bpf_ringbuf_output(&file_events, rec, size, wakeup_flags(&file_events)) < 0) {
		count_lost(FAMILY_FILE);
		return;
	}
	count(FCOUNT_EMITTED);
}

SEC("tracepoint/syscalls/sys_exit")
int handle_sys_exit(struct sys_exit_ctx *ctx)
{
	struct pending *p = bpf_task_storage_get(&pending_map, bpf_get_current_task_btf(), 0, 0);
	if (!p || !p->active)
		return 0;
	p->active = 0;
	/* A record left by a syscall whose exit was not seen (while attaching). */
	if (p->nr != ctx->nr)
		return 0;
	p->rec.head.sys.ret = ctx->ret;
	if (p->rec.head.hdr.type == EVENT_CRED_CHANGE) {
		struct cred_event *ev = &p->rec.cred;
		if (ctx->ret != 0) {
			count(FCOUNT_FILTERED_OTHER);
			return 0;
		}
		read_cred(&ev->new);
		if (ev->new.uid == ev->old.uid && ev->new.euid == ev->old.euid &&
		    ev->new.suid == ev->old.suid && ev->new.fsuid == ev->old.fsuid &&
		    ev->new.gid == ev->old.gid && ev->new.egid == ev->old.egid &&
		    ev->new.sgid == ev->old.sgid && ev->new.fsgid == ev->old.fsgid &&
		    ev->new.cap_effective == ev->old.cap_effective &&
		    ev->new.cap_permitted == ev->old.cap_permitted) {
			count(FCOUNT_FILTERED_OTHER);
			return 0;
		}
	}
	__u64 size = p->size;
	barrier_var(size);
	if (size == 0 || size > sizeof(p->rec))
		return 0;
	barrier_var(size);
	output(&p->rec, size);
	return 0;
}
