/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Event structs shared by Vigil's kernel programs and, through bpf2go, its agent. */
#ifndef VIGIL_TYPES_H
#define VIGIL_TYPES_H

#define TASK_COMM_LEN 16
#define FILENAME_MAX_LEN 256
#define EXE_MAX_LEN 1024
#define CWD_MAX_LEN 512
#define ARGS_MAX_LEN 1024

/* Event families: one ring buffer and one loss counter each. */
enum event_family {
	FAMILY_PROCESS = 0,
	FAMILY_FILE = 1,
	FAMILY_LOGIN = 2,
	FAMILY_NETWORK = 3,
	FAMILY_MAX = 8,
};

/*
 * Event types, first field of every record. Each family owns a range and
 * defines its types in its own header: process 1-9 (here), file 10-39
 * (file_types.h), login 40-49 (login_types.h), network 50-69 (net_types.h).
 */
enum event_type {
	EVENT_FORK = 1,
	EVENT_EXEC = 2,
	EVENT_EXIT = 3,
};

/* exec_event.flags */
enum exec_flags {
	EXEC_EXE_DELETED = 1 << 0,    /* the image has no link left */
	EXEC_EXE_MEMFD = 1 << 1,      /* the image is a memfd_create file */
	EXEC_EXE_TRUNCATED = 1 << 2,  /* exe keeps only the tail of a longer path */
	EXEC_ARGS_TRUNCATED = 1 << 3, /* argv was longer than ARGS_MAX_LEN */
	EXEC_CWD_TRUNCATED = 1 << 4,  /* cwd keeps only the tail of a longer path */
	EXEC_KILLED = 1 << 5,         /* on a kill list: SIGKILL sent before the image ran */
};

/* Common header of every record. */
struct event_header {
	__u64 ktime_boot; /* bpf_ktime_get_boot_ns() when the event happened */
	__u32 type;       /* enum event_type */
	__u32 cpu;
};

/* Identity and credentials of the process an event is about. */
struct process_info {
	__u32 pid;  /* thread-group id */
	__u32 tid;  /* id of the thread that caused the event */
	__u32 ppid; /* thread-group id of the real parent */
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u32 loginuid;
	__u32 sessionid; /* audit session id, shared by a login's processes; (u32)-1 when unset */
	__u64 start_boottime; /* task start, ns since boot (what /proc/<pid>/stat reports) */
	__u64 cgroup_id;
	char comm[TASK_COMM_LEN];
};

/* A new process (not a thread) was created. */
struct fork_event {
	struct event_header hdr;
	struct process_info proc; /* the child */
};

/* A process replaced its image. The strings are not NUL-terminated: use the lengths. */
struct exec_event {
	struct event_header hdr;
	struct process_info proc;
	__u32 flags; /* enum exec_flags */
	__u32 filename_len;
	__u32 exe_len;
	__u32 cwd_len;
	__u32 args_len; /* argv as NUL-separated bytes */
	__u32 pad;
	char filename[FILENAME_MAX_LEN]; /* path as given to execve */
	char exe[EXE_MAX_LEN];           /* absolute path of the loaded image */
	char cwd[CWD_MAX_LEN];
	char args[ARGS_MAX_LEN];
};

/* The last thread of a process exited. */
struct exit_event {
	struct event_header hdr;
	struct process_info proc;
	__s32 exit_code; /* wait status: code << 8 | signal */
	__u32 pad;
};

#endif /* VIGIL_TYPES_H */
