/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Records of the network family: TCP connect/accept/close, UDP flows, DNS packets. */
#ifndef VIGIL_NET_TYPES_H
#define VIGIL_NET_TYPES_H

#include "types.h"

/* Event types of the network family (range 50-69). */
enum net_event_type {
	EVENT_TCP_CONNECT = 50, /* an outbound connection was established (or failed) */
	EVENT_TCP_ACCEPT = 51,  /* a process accepted an inbound connection */
	EVENT_TCP_CLOSE = 52,   /* a tracked connection reached TCP_CLOSE */
	EVENT_UDP_FLOW = 53,    /* first datagram of a (process, local, remote) UDP flow */
	EVENT_DNS = 54,         /* a UDP datagram to or from port 53, with its payload */
};

/* tcp_event.flags, udp_event.flags and dns_event.flags */
enum net_flags {
	NET_OUTBOUND = 1 << 0,       /* the host opened the flow (connect, first send) */
	NET_INBOUND = 1 << 1,        /* the peer opened the flow (accept, first receive) */
	NET_CONNECT_FAILED = 1 << 2, /* SYN_SENT went to CLOSE: refused or timed out */
	NET_NO_PROCESS = 1 << 3,     /* proc is empty: the event happened outside any task */
	NET_DNS_TRUNCATED = 1 << 4,  /* the payload was longer than DNS_PAYLOAD_MAX */
};

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

#define DNS_PORT 53
#define DNS_PAYLOAD_MAX 512 /* a power of two: the copy length is masked with it */

/* Endpoints of a flow as seen from this host. Addresses in network byte order. */
struct net_tuple {
	__u8 laddr[16]; /* local address; IPv4 in the first 4 bytes */
	__u8 raddr[16]; /* remote address */
	__u16 lport;    /* host byte order */
	__u16 rport;    /* host byte order */
	__u16 family;   /* AF_INET or AF_INET6 */
	__u16 proto;    /* IPPROTO_TCP or IPPROTO_UDP */
};

/* EVENT_TCP_CONNECT, EVENT_TCP_ACCEPT and EVENT_TCP_CLOSE. */
struct tcp_event {
	struct event_header hdr;
	struct process_info proc; /* the connecting or accepting process */
	struct net_tuple tuple;
	__u64 cookie;           /* socket cookie: the same for every event of one connection */
	__u64 established_boot; /* when the connection became ESTABLISHED (0 if it never did) */
	__u64 bytes_acked;      /* close only: payload bytes sent and acknowledged by the peer */
	__u64 bytes_received;   /* close only: payload bytes received */
	__u32 flags;            /* enum net_flags */
	__u32 pad;
};

/* EVENT_UDP_FLOW */
struct udp_event {
	struct event_header hdr;
	struct process_info proc;
	struct net_tuple tuple;
	__u32 flags; /* NET_OUTBOUND (first sent) or NET_INBOUND (first received) */
	__u32 pad;
};

/* EVENT_DNS: the DNS message is decoded in user space. */
struct dns_event {
	struct event_header hdr;
	struct process_info proc; /* the sender for outbound packets; empty for inbound */
	struct net_tuple tuple;
	__u32 flags;       /* NET_OUTBOUND or NET_INBOUND, NET_NO_PROCESS, NET_DNS_TRUNCATED */
	__u32 payload_len; /* bytes of payload captured */
	__u8 payload[DNS_PAYLOAD_MAX];
};

/* State kept per tracked TCP socket (key: struct sock pointer). */
struct tcp_flow {
	struct process_info proc;
	__u64 cookie;
	__u64 established_boot;
	__u32 flags;
	__u32 pad;
};

/*
 * Key of the seen-UDP-flow map. The local address is left out: a socket bound
 * to the wildcard address does not know it when it receives.
 */
struct udp_flow_key {
	__u32 pid;
	__u16 family;
	__u16 lport;
	__u16 rport;
	__u16 pad;
	__u8 raddr[16];
};

#ifdef __BPF__
/*
 * fill_process_btf is common.h's fill_process for a BTF-typed task pointer
 * (bpf_get_current_task_btf, tp_btf arguments): the same fields, read with
 * direct loads instead of one bpf_probe_read_kernel call per field, which
 * makes it several times cheaper on the hot connect and accept paths.
 */
static __always_inline void fill_process_btf(struct process_info *info, struct task_struct *task)
{
	info->pid = task->tgid;
	info->tid = task->pid;
	info->ppid = task->real_parent->tgid;
	const struct cred *cred = task->real_cred;
	info->uid = cred->uid.val;
	info->gid = cred->gid.val;
	info->euid = cred->euid.val;
	if (bpf_core_field_exists(task->loginuid))
		info->loginuid = task->loginuid.val;
	else
		info->loginuid = (__u32)-1;
	if (bpf_core_field_exists(task->sessionid))
		info->sessionid = task->sessionid;
	else
		info->sessionid = (__u32)-1;
	info->start_boottime = task->group_leader->start_boottime;
	info->cgroup_id = task->cgroups->dfl_cgrp->kn->id;
	__builtin_memcpy(info->comm, task->comm, TASK_COMM_LEN);
}
#endif

#endif /* VIGIL_NET_TYPES_H */
