//go:build ignore
/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Network sensor: TCP connect, accept and close with their 5-tuple, bytes and
 * times; the first datagram of each UDP flow per process; DNS packets.
 *
 * TCP: inet_sock_set_state gives every state change of a socket. The
 * connecting task is current at SYN_SENT; the passive ESTABLISHED happens in
 * softirq, so an accepted connection is attributed when accept() returns it.
 * Per-connection state lives in an array slot picked by the socket cookie
 * (an LRU hash when the slot is taken).
 *
 * UDP and DNS: a cgroup_skb egress program on the cgroup v2 root sees every
 * datagram sent (in the sending task), recvmsg4/6 programs see every datagram
 * a task receives with its source address; a LRU map of seen flows keeps one
 * event per flow. DNS payloads (port 53) are copied from the packets sent and
 * from the datagrams queued to UDP sockets (sk_data_ready), and decoded in
 * user space. Nothing runs for each received packet.
 */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "types.h"
#include "maps.h"
#include "common.h"
#include "net_types.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* Ring buffer of the network family. The agent sizes it before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} net_events SEC(".maps");

/*
 * TCP sockets being tracked, by socket cookie (unique for the life of the
 * host, handed out in sequence): slot cookie & tcp_slot_mask of tcp_slots,
 * an array whose lookups the verifier inlines, claimed with a compare and
 * swap. A connection whose slot is held by a live older one goes to the LRU
 * hash tcp_flows instead. The agent sizes both (the array to a power of two)
 * and sets the mask.
 */
#define TCP_SLOTS 65536

volatile const __u64 tcp_slot_mask = TCP_SLOTS - 1;

struct tcp_slot {
	__u64 cookie; /* 0: free */
	struct tcp_flow flow;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TCP_SLOTS);
	__type(key, __u32);
	__type(value, struct tcp_slot);
} tcp_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct tcp_flow);
} tcp_flows SEC(".maps");

/* flow_claim returns zeroed state for the connection with cookie, or NULL when out of room. */
static __always_inline struct tcp_flow *flow_claim(__u64 cookie)
{
	__u32 i = cookie & tcp_slot_mask;
	struct tcp_slot *s = bpf_map_lookup_elem(&tcp_slots, &i);
	if (s) {
		__u64 old = __sync_val_compare_and_swap(&s->cookie, 0, cookie);
		if (old == 0 || old == cookie) {
			__builtin_memset(&s->flow, 0, sizeof(s->flow));
			return &s->flow;
		}
	}
	struct tcp_flow nf = {};
	bpf_map_update_elem(&tcp_flows, &cookie, &nf, BPF_ANY);
	return bpf_map_lookup_elem(&tcp_flows, &cookie);
}

/* flow_find returns the state of the connection with cookie, or NULL when it is not tracked. */
static __always_inline struct tcp_flow *flow_find(__u64 cookie)
{
	__u32 i = cookie & tcp_slot_mask;
	struct tcp_slot *s = bpf_map_lookup_elem(&tcp_slots, &i);
	if (s && s->cookie == cookie)
		return &s->flow;
	return bpf_map_lookup_elem(&tcp_flows, &cookie);
}

/* flow_release forgets the connection with cookie. */
static __always_inline void flow_release(__u64 cookie)
{
	__u32 i = cookie & tcp_slot_mask;
	struct tcp_slot *s = bpf_map_lookup_elem(&tcp_slots, &i);
	if (s && s->cookie == cookie) {
		s->flow.flags = 0;
		__sync_val_compare_and_swap(&s->cookie, cookie, 0);
		return;
	}
	bpf_map_delete_elem(&tcp_flows, &cookie);
}

/* UDP flows already reported. The agent sizes it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct udp_flow_key);
	__type(value, __u8);
} udp_flows SEC(".maps");

/* What the agent asked for; set at load. */
volatile const __u8 want_udp_flows = 1;
volatile const __u8 want_dns = 1;

/* Force bpf2go to emit Go types for the records. */
const struct tcp_event *unused_tcp_event __attribute__((unused));
const struct udp_event *unused_udp_event __attribute__((unused));
const struct dns_event *unused_dns_event __attribute__((unused));
const enum event_family *unused_event_family __attribute__((unused));
const enum net_event_type *unused_net_event_type __attribute__((unused));
const enum net_flags *unused_net_flags __attribute__((unused));

/* read_tuple_btf reads the endpoints of a BTF-typed TCP sock with direct loads. */
static __always_inline void read_tuple_btf(struct net_tuple *t, const struct tcp_sock *tp)
{
	const struct sock_common *skc = &tp->inet_conn.icsk_inet.sk.__sk_common;
	t->family = skc->skc_family;
	t->proto = IPPROTO_TCP;
	t->lport = bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport);
	t->rport = bpf_ntohs(skc->skc_dport);
	if (t->family == AF_INET6) {
		__builtin_memcpy(t->laddr, &skc->skc_v6_rcv_saddr, 16);
		__builtin_memcpy(t->raddr, &skc->skc_v6_daddr, 16);
	} else {
		__builtin_memset(t->laddr, 0, sizeof(t->laddr));
		__builtin_memset(t->raddr, 0, sizeof(t->raddr));
		*(__u32 *)t->laddr = skc->skc_rcv_saddr;
		*(__u32 *)t->raddr = skc->skc_daddr;
	}
}

/*
 * payload_bytes sets the payload bytes a closing connection sent (and had
 * acknowledged) and received. The kernel's counters also count the sequence
 * numbers of control segments: the SYN of an active open, our FIN once acked,
 * the peer's FIN once received.
 */
static __always_inline void payload_bytes(struct tcp_event *ev, const struct tcp_sock *tp,
					  int oldstate, __u32 flags)
{
	__u64 acked = tp->bytes_acked;
	__u64 received = tp->bytes_received;
	if ((flags & NET_OUTBOUND) && acked > 0)
		acked--;
	bool fin_sent = oldstate == TCP_FIN_WAIT1 || oldstate == TCP_FIN_WAIT2 ||
			oldstate == TCP_CLOSING || oldstate == TCP_LAST_ACK;
	if (fin_sent && acked > 0 && tp->snd_una == tp->write_seq)
		acked--;
	/* tcp_fin sets SOCK_DONE when the peer's FIN arrives; a reset does not. */
	unsigned long sk_flags = tp->inet_conn.icsk_inet.sk.__sk_common.skc_flags;
	if ((sk_flags & (1UL << SOCK_DONE)) && received > 0)
		received--;
	ev->bytes_acked = acked;
	ev->bytes_received = received;
}

/* bpf_rdonly_cast views a kernel pointer as a BTF type, for direct (fault-safe) loads. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

/*
 * submit_net commits a record: maps.h's submit_record with the record's own
 * time (CLOCK_BOOTTIME) as the clock of the wakeup policy, one clock read per
 * record instead of two. Every record of this object uses it, so that
 * last_wakeup_ns keeps one clock.
 */
static __always_inline void submit_net(void *rec, __u64 now)
{
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&net_events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ||
	    now - last_wakeup_ns >= wakeup_interval_ns) {
		last_wakeup_ns = now;
		flags = BPF_RB_FORCE_WAKEUP;
	}
	bpf_ringbuf_submit(rec, flags);
}

/*
 * emit_tcp sends one TCP record, at time now (CLOCK_BOOTTIME), about the TCP
 * sock sk with the state kept in f.
 */
static __always_inline void emit_tcp(__u32 type, const struct sock *sk, struct tcp_flow *f,
				     __u32 flags, int oldstate, __u64 now)
{
	struct tcp_event *ev = bpf_ringbuf_reserve(&net_events, sizeof(*ev), 0);
	if (!ev) {
		count_lost(FAMILY_NETWORK);
		return;
	}
	ev->hdr.ktime_boot = now;
	ev->hdr.type = type;
	ev->hdr.cpu = bpf_get_smp_processor_id();
	ev->proc = f->proc;
	/* Every sock tracked is a TCP sock: direct loads, no helper call. */
	const struct tcp_sock *tp = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct tcp_sock));
	read_tuple_btf(&ev->tuple, tp);
	ev->cookie = f->cookie;
	ev->established_boot = f->established_boot;
	if (type == EVENT_TCP_CLOSE) {
		payload_bytes(ev, tp, oldstate, flags);
	} else {
		ev->bytes_acked = 0;
		ev->bytes_received = 0;
	}
	ev->flags = flags;
	ev->pad = 0;
	submit_net(ev, now);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct tcp_flow *f;
	__u64 cookie;

	/* Only three target states matter; the others leave before any other load. */
	if (newstate != TCP_SYN_SENT && newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE)
		return 0;
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;

	switch (newstate) {
	case TCP_SYN_SENT:
		/* connect() in the connecting task: remember who, before the port is even chosen. */
		cookie = bpf_get_socket_cookie((void *)sk);
		f = flow_claim(cookie);
		if (!f)
			return 0;
		fill_process_btf(&f->proc, bpf_get_current_task_btf());
		f->cookie = cookie;
		f->flags = NET_OUTBOUND;
		return 0;
	case TCP_ESTABLISHED:
		if (oldstate == TCP_SYN_SENT) {
			/* Outbound: report now, maybe from softirq, with the remembered task. */
			cookie = sk->__sk_common.skc_cookie.counter; /* 0: never tracked */
			if (!cookie)
				return 0;
			f = flow_find(cookie);
			if (!f || !f->flags)
				return 0;
			/* A connect is reported at the moment it was established. */
			__u64 now = bpf_ktime_get_boot_ns();
			f->established_boot = now;
			emit_tcp(EVENT_TCP_CONNECT, sk, f, f->flags, oldstate, now);
		} else if (oldstate == TCP_SYN_RECV) {
			/* Inbound, in softirq: reported when a task accepts it. */
			cookie = bpf_get_socket_cookie((void *)sk);
			f = flow_claim(cookie);
			if (!f)
				return 0;
			f->established_boot = bpf_ktime_get_boot_ns();
			f->cookie = cookie;
			f->flags = NET_INBOUND | NET_NO_PROCESS;
		}
		return 0;
	case TCP_CLOSE:
		cookie = sk->__sk_common.skc_cookie.counter;
		if (!cookie)
			return 0;
		f = flow_find(cookie);
		if (!f || !f->flags)
			return 0;
		__u64 now = bpf_ktime_get_boot_ns();
		if (!f->established_boot)
			emit_tcp(EVENT_TCP_CONNECT, sk, f, f->flags | NET_CONNECT_FAILED, oldstate, now);
		else
			emit_tcp(EVENT_TCP_CLOSE, sk, f, f->flags, oldstate, now);
		flow_release(cookie);
		return 0;
	}
	return 0;
}

/* on_accept attributes the connection behind the descriptor accept() returned. */
static __always_inline int on_accept(long fd)
{
	if (fd < 0)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct file **fds = task->files->fdt->fd;
	struct file *file = NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	/* Direct (fault-safe) loads instead of one probe read per pointer. */
	file = bpf_rdonly_cast(file, bpf_core_type_id_kernel(struct file));
	struct socket *sock = bpf_rdonly_cast(file->private_data, bpf_core_type_id_kernel(struct socket));
	struct sock *sk = sock->sk;
	if (!sk)
		return 0;
	/* The cookie was handed out when the connection was established. */
	__u64 cookie = sk->__sk_common.skc_cookie.counter;
	if (!cookie)
		return 0;
	struct tcp_flow *f = flow_find(cookie);
	if (!f || !(f->flags & NET_NO_PROCESS))
		return 0;
	fill_process_btf(&f->proc, task);
	f->flags &= ~NET_NO_PROCESS;
	emit_tcp(EVENT_TCP_ACCEPT, sk, f, f->flags, 0, bpf_ktime_get_boot_ns());
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int handle_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int handle_accept(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept(ctx->ret);
}

/* current_process fills info from the current task; false outside any process. */
static __always_inline bool current_process(struct process_info *info)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (!task || BPF_CORE_READ(task, tgid) == 0) {
		__builtin_memset(info, 0, sizeof(*info));
		return false;
	}
	fill_process(info, task);
	return true;
}

/* udp_flow_new reports whether (current process, key) was not seen yet, and marks it seen. */
static __always_inline bool udp_flow_new(struct udp_flow_key *k)
{
	k->pid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_map_lookup_elem(&udp_flows, k))
		return false;
	__u8 one = 1;
	bpf_map_update_elem(&udp_flows, k, &one, BPF_ANY);
	return true;
}

/* emit_udp reports a new UDP flow of the current task. */
static __always_inline void emit_udp(struct net_tuple *t, __u32 flags)
{
	struct udp_event *ev = bpf_ringbuf_reserve(&net_events, sizeof(*ev), 0);
	if (!ev) {
		count_lost(FAMILY_NETWORK);
		return;
	}
	fill_header(&ev->hdr, EVENT_UDP_FLOW);
	if (!current_process(&ev->proc))
		flags |= NET_NO_PROCESS;
	ev->tuple = *t;
	ev->flags = flags;
	ev->pad = 0;
	submit_net(ev, ev->hdr.ktime_boot);
}

/* emit_dns copies the UDP payload at off of a port-53 datagram. */
static __always_inline void emit_dns(struct __sk_buff *skb, struct net_tuple *t, __u32 off,
				     bool egress)
{
	if (off >= skb->len)
		return;
	__u32 len = skb->len - off;
	__u32 flags = egress ? NET_OUTBOUND : NET_INBOUND;
	if (len > DNS_PAYLOAD_MAX) {
		len = DNS_PAYLOAD_MAX;
		flags |= NET_DNS_TRUNCATED;
	}
	struct dns_event *ev = bpf_ringbuf_reserve(&net_events, sizeof(*ev), 0);
	if (!ev) {
		count_lost(FAMILY_NETWORK);
		return;
	}
	fill_header(&ev->hdr, EVENT_DNS);
	/* Inbound packets arrive in softirq: whatever task is current is not the receiver. */
	if (!egress || !current_process(&ev->proc)) {
		__builtin_memset(&ev->proc, 0, sizeof(ev->proc));
		flags |= NET_NO_PROCESS;
	}
	ev->tuple = *t;
	/* len is in [1, DNS_PAYLOAD_MAX]: say so in a way the verifier tracks. */
	__u64 n = len;
	asm volatile("%[n] += -1; %[n] &= %[mask]; %[n] += 1"
		     : [n] "+r"(n)
		     : [mask] "i"(DNS_PAYLOAD_MAX - 1));
	if (bpf_skb_load_bytes(skb, off, ev->payload, n) < 0)
		n = 0;
	ev->payload_len = n;
	ev->flags = flags;
	submit_net(ev, ev->hdr.ktime_boot);
}

/*
 * handle_skb looks at one packet a socket in the cgroup sends: everything but
 * UDP leaves after a few loads. Sent datagrams open UDP flows; port 53 is DNS.
 */
static __always_inline int handle_skb(struct __sk_buff *skb, bool egress)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct net_tuple t;
	__u32 l4;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 *ip = data;
		if ((void *)(ip + 20) > data_end)
			return 1;
		if (ip[9] != IPPROTO_UDP)
			return 1;
		/* Only the first fragment carries the UDP header. */
		if (((ip[6] << 8) | ip[7]) & 0x1fff)
			return 1;
		l4 = (ip[0] & 0xf) * 4;
		__builtin_memset(&t, 0, sizeof(t));
		t.family = AF_INET;
		__builtin_memcpy(egress ? t.laddr : t.raddr, ip + 12, 4);
		__builtin_memcpy(egress ? t.raddr : t.laddr, ip + 16, 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		__u8 *ip6 = data;
		if ((void *)(ip6 + 40) > data_end)
			return 1;
		/* Datagrams behind extension headers are not followed. */
		if (ip6[6] != IPPROTO_UDP)
			return 1;
		l4 = 40;
		__builtin_memset(&t, 0, sizeof(t));
		t.family = AF_INET6;
		__builtin_memcpy(egress ? t.laddr : t.raddr, ip6 + 8, 16);
		__builtin_memcpy(egress ? t.raddr : t.laddr, ip6 + 24, 16);
	} else {
		return 1;
	}

	__be16 ports[2];
	if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)) < 0)
		return 1;
	t.proto = IPPROTO_UDP;
	t.lport = bpf_ntohs(egress ? ports[0] : ports[1]);
	t.rport = bpf_ntohs(egress ? ports[1] : ports[0]);

	if (egress && want_udp_flows) {
		struct udp_flow_key k = {};
		k.family = t.family;
		k.lport = t.lport;
		k.rport = t.rport;
		__builtin_memcpy(k.raddr, t.raddr, 16);
		if (udp_flow_new(&k))
			emit_udp(&t, NET_OUTBOUND);
	}
	if (want_dns && (t.lport == DNS_PORT || t.rport == DNS_PORT))
		emit_dns(skb, &t, l4 + 8, egress);
	return 1;
}

SEC("cgroup_skb/egress")
int handle_egress(struct __sk_buff *skb)
{
	return handle_skb(skb, true);
}

/*
 * emit_dns_queued copies the payload of a port-53 datagram queued to a
 * socket: skb->data is the payload (the UDP header is pulled), the headers
 * are at their offsets from skb->head. Only the linear part is copied: a
 * payload (rarely) in page fragments is reported truncated.
 */
static __always_inline void emit_dns_queued(const struct sk_buff *skb, unsigned char *head,
					    struct net_tuple *t)
{
	__u32 off = (__u32)skb->transport_header + 8;
	__u32 end = (__u32)(skb->data - head) + skb->len;
	__u32 linear_end = end - skb->data_len;
	if (off >= end)
		return;
	__u32 len = end - off;
	__u32 flags = NET_INBOUND | NET_NO_PROCESS;
	if (len > DNS_PAYLOAD_MAX) {
		len = DNS_PAYLOAD_MAX;
		flags |= NET_DNS_TRUNCATED;
	}
	if (off + len > linear_end) {
		len = linear_end > off ? linear_end - off : 0;
		flags |= NET_DNS_TRUNCATED;
	}
	struct dns_event *ev = bpf_ringbuf_reserve(&net_events, sizeof(*ev), 0);
	if (!ev) {
		count_lost(FAMILY_NETWORK);
		return;
	}
	fill_header(&ev->hdr, EVENT_DNS);
	/* Datagrams are queued in softirq: whatever task is current is not the receiver. */
	__builtin_memset(&ev->proc, 0, sizeof(ev->proc));
	ev->tuple = *t;
	__u64 n = len;
	if (n > 0) {
		/* n is in [1, DNS_PAYLOAD_MAX]: say so in a way the verifier tracks. */
		asm volatile("%[n] += -1; %[n] &= %[mask]; %[n] += 1"
			     : [n] "+r"(n)
			     : [mask] "i"(DNS_PAYLOAD_MAX - 1));
		if (bpf_probe_read_kernel(ev->payload, n, head + off) < 0)
			n = 0;
	}
	ev->payload_len = n;
	ev->flags = flags;
	submit_net(ev, ev->hdr.ktime_boot);
}

/*
 * handle_data_ready sees a socket told that data arrived: for a UDP socket,
 * the datagram just queued is the last of its receive queue. Inbound DNS is
 * taken from there, so that no program runs for every received packet; TCP
 * sockets leave after one load.
 */
SEC("tp_btf/sk_data_ready")
int BPF_PROG(handle_data_ready, const struct sock *sk)
{
	if (sk->sk_protocol != IPPROTO_UDP)
		return 0;
	struct sk_buff *skb = sk->sk_receive_queue.prev;
	if (!skb || (void *)skb == (void *)&sk->sk_receive_queue)
		return 0;
	unsigned char *head = skb->head;
	__be16 ports[2];
	if (bpf_probe_read_kernel(ports, sizeof(ports), head + skb->transport_header))
		return 0;
	struct net_tuple t = {};
	t.proto = IPPROTO_UDP;
	t.lport = bpf_ntohs(ports[1]);
	t.rport = bpf_ntohs(ports[0]);
	if (t.lport != DNS_PORT && t.rport != DNS_PORT)
		return 0;
	unsigned char *ip = head + skb->network_header;
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		t.family = AF_INET6;
		if (bpf_probe_read_kernel(t.raddr, 16, ip + 8) ||
		    bpf_probe_read_kernel(t.laddr, 16, ip + 24))
			return 0;
	} else if (skb->protocol == bpf_htons(ETH_P_IP)) {
		t.family = AF_INET;
		if (bpf_probe_read_kernel(t.raddr, 4, ip + 12) ||
		    bpf_probe_read_kernel(t.laddr, 4, ip + 16))
			return 0;
	} else {
		return 0;
	}
	emit_dns_queued(skb, head, &t);
	return 0;
}

/*
 * handle_recvmsg sees a datagram a task receives with its source address
 * (recvfrom, recvmsg with a name): the inbound side of UDP flows.
 */
static __always_inline int handle_recvmsg(struct bpf_sock_addr *ctx, bool v6)
{
	struct bpf_sock *sk = ctx->sk;
	if (!sk || ctx->protocol != IPPROTO_UDP)
		return 1;
	struct net_tuple t = {};
	t.proto = IPPROTO_UDP;
	t.lport = sk->src_port;
	t.rport = bpf_ntohs(ctx->user_port);
	if (!v6) {
		t.family = AF_INET;
		*(__u32 *)t.raddr = ctx->user_ip4;
		*(__u32 *)t.laddr = sk->src_ip4;
	} else {
		__u32 r[4], l[4];
		r[0] = ctx->user_ip6[0];
		r[1] = ctx->user_ip6[1];
		r[2] = ctx->user_ip6[2];
		r[3] = ctx->user_ip6[3];
		l[0] = sk->src_ip6[0];
		l[1] = sk->src_ip6[1];
		l[2] = sk->src_ip6[2];
		l[3] = sk->src_ip6[3];
		/* A v4-mapped peer is an IPv4 flow, as the egress program sees it. */
		if (r[0] == 0 && r[1] == 0 && r[2] == bpf_htonl(0xffff)) {
			t.family = AF_INET;
			*(__u32 *)t.raddr = r[3];
			if (l[0] == 0 && l[1] == 0 && l[2] == bpf_htonl(0xffff))
				*(__u32 *)t.laddr = l[3];
		} else {
			t.family = AF_INET6;
			__builtin_memcpy(t.raddr, r, 16);
			__builtin_memcpy(t.laddr, l, 16);
		}
	}
	struct udp_flow_key k = {};
	k.family = t.family;
	k.lport = t.lport;
	k.rport = t.rport;
	__builtin_memcpy(k.raddr, t.raddr, 16);
	if (udp_flow_new(&k))
		emit_udp(&t, NET_INBOUND);
	return 1;
}

SEC("cgroup/recvmsg4")
int handle_recvmsg4(struct bpf_sock_addr *ctx)
{
	return handle_recvmsg(ctx, false);
}

SEC("cgroup/recvmsg6")
int handle_recvmsg6(struct bpf_sock_addr *ctx)
{
	return handle_recvmsg(ctx, true);
}
