/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Records, enums and policy layouts of the file and syscall family (file.bpf.c). */
#ifndef VIGIL_FILE_TYPES_H
#define VIGIL_FILE_TYPES_H

#include "types.h"

#define FILE_PATH_MAX 256 /* bytes of a path kept in a record (and matched) */
#define FILE_NAME_MAX 64  /* memfd and module names */
#define FSTYPE_MAX 32
#define BPF_NAME_MAX 16 /* BPF_OBJ_NAME_LEN */

/* Event types of the file family (10-39). The event's kind bit is 1 << (type - 10). */
enum file_event_type {
	EVENT_FILE_OPEN = 10,
	EVENT_FILE_RENAME = 11,
	EVENT_FILE_UNLINK = 12,
	EVENT_FILE_CHMOD = 13,
	EVENT_FILE_CHOWN = 14,
	EVENT_FILE_LINK = 15,
	EVENT_FILE_SYMLINK = 16,
	EVENT_CRED_CHANGE = 20,
	EVENT_PTRACE = 21,
	EVENT_MODULE_LOAD = 22,
	EVENT_MODULE_UNLOAD = 23,
	EVENT_MEMFD_CREATE = 24,
	EVENT_MOUNT = 25,
	EVENT_UMOUNT = 26,
	EVENT_BPF_PROG_LOAD = 27,
	EVENT_KILL = 28,
};

#define FILE_EVENT_BASE 10
#define KIND_BIT(type) (1ULL << ((type) - FILE_EVENT_BASE))

/*
 * The syscall behind an event, independent of the architecture's syscall
 * numbers (each tracepoint has its own program, which knows its syscall).
 */
enum file_syscall {
	FSYS_OPEN = 1,
	FSYS_OPENAT,
	FSYS_OPENAT2,
	FSYS_CREAT,
	FSYS_RENAME,
	FSYS_RENAMEAT,
	FSYS_RENAMEAT2,
	FSYS_UNLINK,
	FSYS_UNLINKAT,
	FSYS_RMDIR,
	FSYS_CHMOD,
	FSYS_FCHMOD,
	FSYS_FCHMODAT,
	FSYS_FCHMODAT2,
	FSYS_CHOWN,
	FSYS_LCHOWN,
	FSYS_FCHOWN,
	FSYS_FCHOWNAT,
	FSYS_LINK,
	FSYS_LINKAT,
	FSYS_SYMLINK,
	FSYS_SYMLINKAT,
	FSYS_SETUID,
	FSYS_SETGID,
	FSYS_SETREUID,
	FSYS_SETREGID,
	FSYS_SETRESUID,
	FSYS_SETRESGID,
	FSYS_CAPSET,
	FSYS_PTRACE,
	FSYS_INIT_MODULE,
	FSYS_FINIT_MODULE,
	FSYS_DELETE_MODULE,
	FSYS_MEMFD_CREATE,
	FSYS_MOUNT,
	FSYS_UMOUNT2,
	FSYS_BPF,
	FSYS_KILL,
	FSYS_TKILL,
	FSYS_TGKILL,
};

/* file_event.vflags and other records' vflags. */
enum file_vflags {
	FILE_PATH_TRUNCATED = 1 << 0,  /* path keeps only part of a longer path */
	FILE_PATH2_TRUNCATED = 1 << 1, /* path2 keeps only part of a longer path */
	FILE_PATH_UNRESOLVED = 1 << 2, /* path could not be made absolute (bad dirfd) */
	FILE_PATH2_UNRESOLVED = 1 << 3,
};

/* Watched-path trie value flags (watch_paths map). */
enum watch_flags {
	WATCH_WRITE = 1 << 0,         /* opens for write/create/truncate and metadata changes */
	WATCH_READ = 1 << 1,          /* opens for read too */
	WATCH_WILDCARD_HEAD = 1 << 2, /* a "head/(star)/tail" pattern starts here */
};

/* Filter counters (filter_counters map, per CPU). */
enum file_counter {
	FCOUNT_SEEN = 0,          /* entries of a hooked syscall whose kind is enabled */
	FCOUNT_FILTERED_PATH = 1, /* dropped: no watched path */
	FCOUNT_FILTERED_ALLOW = 2, /* dropped: allow-listed pid, cgroup or executable, or not the target cgroup */
	FCOUNT_FILTERED_OTHER = 3, /* dropped: uninteresting arguments (own kill, ptrace peek, failed cred change...) */
	FCOUNT_EMITTED = 4,       /* records written to the ring buffer */
	FCOUNT_MAX = 8,
};

/* Policy, entry 0 of the file_config array map. */
struct file_config {
	__u64 kinds;        /* KIND_BIT of each enabled event type */
	__u64 only_cgroup;  /* when non-zero, only tasks in this cgroup v2 id are traced */
	__u32 allow_flags;  /* which allow-lists are non-empty (enum allow_flags) */
	__u32 pad;
};

enum allow_flags {
	ALLOW_PIDS = 1 << 0,
	ALLOW_CGROUPS = 1 << 1,
	ALLOW_EXES = 1 << 2,
};

/* Key of the exe allow-list: the executable's inode (kernel dev_t encoding). */
struct exe_key {
	__u64 ino;
	__u32 dev;
	__u32 pad;
};

/* Key of the watched-path LPM trie: prefixlen in bits, then the path bytes. */
struct watch_key {
	__u32 prefixlen;
	char path[FILE_PATH_MAX];
};

struct watch_value {
	__u32 flags;    /* enum watch_flags */
	__u32 head_len; /* for WATCH_WILDCARD_HEAD: bytes before the wildcard component */
};

/* Common start of every file-family record after the header. */
struct syscall_result {
	__s64 ret;  /* the syscall's return value */
	__u32 nr;   /* enum file_syscall */
	__u32 vflags; /* enum file_vflags */
};

/* open, rename, unlink, chmod, chown, link, symlink. Strings are not NUL-terminated: use the lengths. */
struct file_event {
	struct event_header hdr;
	struct process_info proc;
	struct syscall_result sys;
	__u64 flags;    /* open flags, rename flags, unlinkat/AT_ flags */
	__u32 mode;     /* open/creat/chmod mode */
	__u32 uid;      /* chown */
	__u32 gid;      /* chown */
	__u16 path_len;
	__u16 path2_len;
	char path[FILE_PATH_MAX];  /* the file (rename/link: old path; symlink: the new link) */
	char path2[FILE_PATH_MAX]; /* rename/link: new path; symlink: the target as given */
};

/* setuid family and capset: ids before (at entry) and after (at exit). Only successful calls. */
struct cred_ids {
	__u32 uid, euid, suid, fsuid;
	__u32 gid, egid, sgid, fsgid;
	__u64 cap_effective;
	__u64 cap_permitted;
};

struct cred_event {
	struct event_header hdr;
	struct process_info proc;
	struct syscall_result sys;
	__s64 args[3]; /* the ids requested (-1 leaves one unchanged) */
	struct cred_ids old;
	struct cred_ids new;
};

struct ptrace_event {
	struct event_header hdr;
	struct process_info proc;
	struct syscall_result sys;
	__s64 request;
	__u32 target_pid; /* the tracee (PTRACE_TRACEME: the parent) */
	__u32 pad;
};

/* init_module, finit_module (path of the file) and delete_module (name). */
struct module_event {
	struct event_header hdr;
	struct process_info proc;
	struct syscall_result sys;
	__u64 flags;
	__u16 name_len;
	__u16 path_len;
	__u32 pad;
	char name[FILE_NAME_MAX];
	char path[FILE_PATH_MAX];
};

struct memfd_event {
	struct event_header hdr;
	struct process_info proc;
	struct syscall_result sys;
	__u32 flags;
	__u32 name_len;
	char name[FILE_NAME_MAX];
};

/* mount (source, target, fstype) and umount2 (target). */
struct mount_event {
	struct event_header hdr;
	struct process_info proc;
	struct syscall_result sys;
	__u64 flags;
	__u16 source_len;
	__u16 target_len;
	__u16 fstype_len;
	__u16 pad;
	char source[FILE_PATH_MAX];
	char target[FILE_PATH_MAX];
	char fstype[FSTYPE_MAX];
};

/* bpf(BPF_PROG_LOAD). */
struct bpf_prog_event {
	struct event_header hdr;
	struct process_info proc;
	struct syscall_result sys;
	__u32 prog_type;
	__u32 insn_cnt;
	char prog_name[BPF_NAME_MAX];
};

/* kill, tkill, tgkill of another process (signal 0 is not reported). */
struct kill_event {
	struct event_header hdr;
	struct process_info proc;
	struct syscall_result sys;
	__s32 target_pid; /* kill: pid argument (<= 0 for groups); tgkill: tgid; tkill: 0 */
	__s32 target_tid; /* tkill/tgkill: thread id */
	__s32 sig;
	__u32 pad;
};

#endif /* VIGIL_FILE_TYPES_H */
