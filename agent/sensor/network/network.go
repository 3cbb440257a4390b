// Package network is the network sensor: outbound and inbound TCP
// connections with their 5-tuple, process, bytes and times; the first
// datagram of each UDP flow of a process; and DNS messages over UDP port 53.
//
// TCP comes from the sock/inet_sock_set_state BTF tracepoint, with accepted
// connections attributed at the exit of accept(2) and accept4(2). UDP flows
// and DNS sent come from a cgroup_skb egress program and cgroup recvmsg4/6
// programs attached to the cgroup v2 root; DNS received from the
// sock/sk_data_ready BTF tracepoint, which sees each datagram queued to a
// UDP socket (no program runs for every received packet).
package network

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/vigil-sensor/vigil/agent/kernelfs"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/bpf"
)

// DefaultRingSize is the default size in bytes of the network ring buffer.
const DefaultRingSize = 4 << 20

// DefaultTCPSlots is the default size of the kernel's table of tracked TCP
// connections, indexed by socket cookie: a connection whose slot is held by
// a live older one is tracked in a hash of at most MaxTCPFlows instead.
const DefaultTCPSlots = 65536

// DefaultMaxTCPFlows is the default number of TCP connections tracked at
// once beyond the slot table; past it the least recently used of those is
// forgotten and its close is not reported.
const DefaultMaxTCPFlows = 65536

// DefaultMaxUDPFlows is the default number of UDP flows remembered as
// reported; a forgotten flow is reported again at its next datagram.
const DefaultMaxUDPFlows = 16384

// Options configures the network sensor. The zero value reports everything.
type Options struct {
	// RingSize is the ring buffer size in bytes: a power of two of at least
	// a page. 0 means DefaultRingSize.
	RingSize uint32
	// PollInterval bounds how long a record waits before the reader looks
	// (0: sensor.DefaultPollInterval).
	PollInterval time.Duration
	// BootTime maps the kernel's since-boot timestamps to wall-clock time.
	BootTime time.Time
	// CgroupPath is the cgroup v2 directory the UDP flow and sent-DNS
	// programs attach to; they see the sockets of every cgroup below it. ""
	// finds the cgroup v2 root in /proc/self/mountinfo. Received DNS is seen
	// for every socket.
	CgroupPath string
	// TCPSlots sizes the table of tracked TCP connections: a power of two
	// (0: DefaultTCPSlots).
	TCPSlots uint32
	// MaxTCPFlows bounds the TCP connections tracked beyond the slot table
	// (0: DefaultMaxTCPFlows).
	MaxTCPFlows uint32
	// MaxUDPFlows bounds the UDP flows remembered (0: DefaultMaxUDPFlows).
	MaxUDPFlows uint32
	// NoUDPFlows turns off UDP flow events.
	NoUDPFlows bool
	// NoDNS turns off DNS events.
	NoDNS bool
}

// Sensor is the loaded and attached network sensor. It implements sensor.Sensor.
type Sensor struct {
	sensor.Base
	objs bpf.NetObjects
	dec  Decoder
}

var _ sensor.Sensor = (*Sensor)(nil)

// Load loads the network programs into the kernel, attaches them and opens
// their ring buffer. It needs tracefs mounted (for the accept tracepoints)
// and, unless both NoUDPFlows and NoDNS are set, a cgroup v2 hierarchy.
// Close undoes all of it.
func Load(opts Options) (*Sensor, error) {
	ringSize := opts.RingSize
	if ringSize == 0 {
		ringSize = DefaultRingSize
	}
	maxTCP, maxUDP := opts.MaxTCPFlows, opts.MaxUDPFlows
	if maxTCP == 0 {
		maxTCP = DefaultMaxTCPFlows
	}
	if maxUDP == 0 {
		maxUDP = DefaultMaxUDPFlows
	}
	slots := opts.TCPSlots
	if slots == 0 {
		slots = DefaultTCPSlots
	}
	if slots&(slots-1) != 0 {
		return nil, fmt.Errorf("network: %d TCP slots: want a power of two", slots)
	}
	wantUDP, wantDNS := !opts.NoUDPFlows, !opts.NoDNS
	cgroupPath := opts.CgroupPath
	if cgroupPath == "" && (wantUDP || wantDNS) {
		var err error
		if cgroupPath, err = kernelfs.CgroupV2Root(); err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
	}
	if err := sensor.Prepare(); err != nil {
		return nil, err
	}

	// Read the object, size its maps and set what it reports before loading it.
	spec, err := bpf.LoadNet()
	if err != nil {
		return nil, fmt.Errorf("read network programs: %w", err)
	}
	if err := sensor.SizeRing(spec, bpf.NetMapNetEvents, ringSize); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	spec.Maps[bpf.NetMapTcpFlows].MaxEntries = maxTCP
	spec.Maps[bpf.NetMapTcpSlots].MaxEntries = slots
	if err := spec.Variables["tcp_slot_mask"].Set(uint64(slots - 1)); err != nil {
		return nil, fmt.Errorf("network: set tcp_slot_mask: %w", err)
	}
	spec.Maps[bpf.NetMapUdpFlows].MaxEntries = maxUDP
	for name, on := range map[string]bool{"want_udp_flows": wantUDP, "want_dns": wantDNS} {
		v, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("network: no %s variable in the object", name)
		}
		var b uint8
		if on {
			b = 1
		}
		if err := v.Set(b); err != nil {
			return nil, fmt.Errorf("network: set %s: %w", name, err)
		}
	}
	s := &Sensor{dec: Decoder{BootTime: opts.BootTime}}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		return nil, sensor.LoadError("network", err)
	}
	s.Init("network", uint32(bpf.NetEventFamilyFAMILY_NETWORK), s.objs.LostEvents, &s.objs)

	// TCP state changes: connect, established, close.
	l, err := link.AttachTracing(link.TracingOptions{Program: s.objs.HandleSetState})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("attach inet_sock_set_state: %w", err)
	}
	s.Attach(l, "tp_btf/inet_sock_set_state")

	// accept(2) and accept4(2) exits, where accepted connections get their process.
	for name, prog := range map[string]*ebpf.Program{"sys_exit_accept4": s.objs.HandleAccept4, "sys_exit_accept": s.objs.HandleAccept} {
		l, err := link.Tracepoint("syscalls", name, prog, nil)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("attach %s: %w", name, err)
		}
		s.Attach(l, "tracepoint/syscalls/"+name)
	}

	// Datagrams queued to UDP sockets: received DNS.
	if wantDNS {
		l, err := link.AttachTracing(link.TracingOptions{Program: s.objs.HandleDataReady})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("attach sk_data_ready: %w", err)
		}
		s.Attach(l, "tp_btf/sk_data_ready")
	}

	// Packets sent by every socket below the cgroup: sent datagrams open UDP
	// flows, and DNS; received datagrams open inbound UDP flows.
	type cgroupProg struct {
		prog   *ebpf.Program
		attach ebpf.AttachType
		hook   string
		on     bool
	}
	for _, c := range []cgroupProg{
		{s.objs.HandleEgress, ebpf.AttachCGroupInetEgress, "cgroup_skb/egress", wantUDP || wantDNS},
		{s.objs.HandleRecvmsg4, ebpf.AttachCGroupUDP4Recvmsg, "cgroup/recvmsg4", wantUDP},
		{s.objs.HandleRecvmsg6, ebpf.AttachCGroupUDP6Recvmsg, "cgroup/recvmsg6", wantUDP},
	} {
		if !c.on {
			continue
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: c.attach, Program: c.prog})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("attach %s to %s: %w", c.hook, cgroupPath, err)
		}
		s.Attach(l, c.hook)
	}

	// Open the ring buffer last, so nothing is read before all hooks are live.
	if err := s.OpenRing(s.objs.NetEvents, opts.PollInterval, s.dec.Decode); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Programs returns the loaded programs by name, for measuring their run time.
func (s *Sensor) Programs() map[string]*ebpf.Program {
	return map[string]*ebpf.Program{
		bpf.NetProgHandleSetState:  s.objs.HandleSetState,
		bpf.NetProgHandleAccept:    s.objs.HandleAccept,
		bpf.NetProgHandleAccept4:   s.objs.HandleAccept4,
		bpf.NetProgHandleEgress:    s.objs.HandleEgress,
		bpf.NetProgHandleDataReady: s.objs.HandleDataReady,
		bpf.NetProgHandleRecvmsg4:  s.objs.HandleRecvmsg4,
		bpf.NetProgHandleRecvmsg6:  s.objs.HandleRecvmsg6,
	}
}
