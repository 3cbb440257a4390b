package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/bpf"
)

const (
	afInet  = 2
	afInet6 = 10
)

// Decoder turns raw network-family records into event values. BootTime maps
// the kernel's since-boot timestamps to wall-clock time.
type Decoder struct {
	// BootTime is the wall-clock time of boot (CLOCK_BOOTTIME zero).
	BootTime time.Time

	// The comm of the last record and its string: a storm of events comes
	// from few processes, so most records reuse it instead of allocating.
	lastComm    [16]int8
	lastCommStr string
}

// Decode decodes one record into an *event.TCPConnect, *event.TCPAccept,
// *event.TCPClose, *event.UDPFlow or *event.DNS.
func (d *Decoder) Decode(raw []byte) (any, error) {
	// The type is all of the header needed before the record's own type.
	const typeOff = unsafe.Offsetof(bpf.NetEventHeader{}.Type)
	if len(raw) < int(unsafe.Sizeof(bpf.NetEventHeader{})) {
		var hdr bpf.NetEventHeader
		return nil, sensor.Into(&hdr, raw)
	}
	typ := binary.LittleEndian.Uint32(raw[typeOff:])
	switch bpf.NetNetEventType(typ) {
	case bpf.NetNetEventTypeEVENT_TCP_CONNECT, bpf.NetNetEventTypeEVENT_TCP_ACCEPT, bpf.NetNetEventTypeEVENT_TCP_CLOSE:
		var rec bpf.NetTcpEvent
		if err := sensor.Into(&rec, raw); err != nil {
			return nil, fmt.Errorf("tcp: %w", err)
		}
		return d.tcp(&rec), nil
	case bpf.NetNetEventTypeEVENT_UDP_FLOW:
		var rec bpf.NetUdpEvent
		if err := sensor.Into(&rec, raw); err != nil {
			return nil, fmt.Errorf("udp flow: %w", err)
		}
		local, remote := endpoints(&rec.Tuple)
		return &event.UDPFlow{
			Time:      d.wallTime(rec.Hdr.KtimeBoot),
			Process:   d.processOf(&rec.Proc),
			Direction: direction(rec.Flags),
			Local:     local,
			Remote:    remote,
		}, nil
	case bpf.NetNetEventTypeEVENT_DNS:
		var rec bpf.NetDnsEvent
		if err := sensor.Into(&rec, raw); err != nil {
			return nil, fmt.Errorf("dns: %w", err)
		}
		return d.dns(&rec), nil
	default:
		return nil, fmt.Errorf("%w %d", sensor.ErrUnknownType, typ)
	}
}

func (d *Decoder) tcp(rec *bpf.NetTcpEvent) any {
	flags := bpf.NetNetFlags(rec.Flags)
	local, remote := endpoints(&rec.Tuple)
	when := d.wallTime(rec.Hdr.KtimeBoot)
	var established time.Time
	if rec.EstablishedBoot != 0 {
		established = d.wallTime(rec.EstablishedBoot)
	}
	switch bpf.NetNetEventType(rec.Hdr.Type) {
	case bpf.NetNetEventTypeEVENT_TCP_CONNECT:
		return &event.TCPConnect{
			Time:    when,
			Process: d.processOf(&rec.Proc),
			Local:   local,
			Remote:  remote,
			Cookie:  rec.Cookie,
			Failed:  flags&bpf.NetNetFlagsNET_CONNECT_FAILED != 0,
		}
	case bpf.NetNetEventTypeEVENT_TCP_ACCEPT:
		return &event.TCPAccept{
			Time:        when,
			Process:     d.processOf(&rec.Proc),
			Local:       local,
			Remote:      remote,
			Cookie:      rec.Cookie,
			Established: established,
		}
	default:
		return &event.TCPClose{
			Time:          when,
			Process:       d.processOf(&rec.Proc),
			NoProcess:     flags&bpf.NetNetFlagsNET_NO_PROCESS != 0,
			Direction:     direction(rec.Flags),
			Local:         local,
			Remote:        remote,
			Cookie:        rec.Cookie,
			Established:   established,
			BytesSent:     rec.BytesAcked,
			BytesReceived: rec.BytesReceived,
		}
	}
}

func (d *Decoder) dns(rec *bpf.NetDnsEvent) *event.DNS {
	flags := bpf.NetNetFlags(rec.Flags)
	local, remote := endpoints(&rec.Tuple)
	ev := &event.DNS{
		Time:      d.wallTime(rec.Hdr.KtimeBoot),
		Process:   d.processOf(&rec.Proc),
		NoProcess: flags&bpf.NetNetFlagsNET_NO_PROCESS != 0,
		Direction: direction(rec.Flags),
		Local:     local,
		Remote:    remote,
		Truncated: flags&bpf.NetNetFlagsNET_DNS_TRUNCATED != 0,
	}
	n := min(int(rec.PayloadLen), len(rec.Payload))
	if err := parseDNS(ev, rec.Payload[:n]); err != nil {
		ev.Truncated = true
	}
	return ev
}

// parseDNS fills the message fields of ev from a DNS message, as far as it
// parses: a payload cut short by the sensor still yields the question.
func parseDNS(ev *event.DNS, msg []byte) error {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return fmt.Errorf("dns header: %w", err)
	}
	ev.ID = h.ID
	ev.Response = h.Response
	ev.RCode = uint8(h.RCode)
	questions, err := p.AllQuestions()
	if err != nil {
		return fmt.Errorf("dns questions: %w", err)
	}
	if len(questions) > 0 {
		ev.Name = strings.TrimSuffix(questions[0].Name.String(), ".")
		ev.QType = uint16(questions[0].Type)
	}
	if !h.Response {
		return nil
	}
	for {
		ah, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("dns answer: %w", err)
		}
		switch ah.Type {
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return fmt.Errorf("dns A answer: %w", err)
			}
			ev.Answers = append(ev.Answers, netip.AddrFrom4(r.A))
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return fmt.Errorf("dns AAAA answer: %w", err)
			}
			ev.Answers = append(ev.Answers, netip.AddrFrom16(r.AAAA))
		case dnsmessage.TypeCNAME:
			r, err := p.CNAMEResource()
			if err != nil {
				return fmt.Errorf("dns CNAME answer: %w", err)
			}
			ev.CNAMEs = append(ev.CNAMEs, strings.TrimSuffix(r.CNAME.String(), "."))
		default:
			if err := p.SkipAnswer(); err != nil {
				return fmt.Errorf("dns answer: %w", err)
			}
		}
	}
}

// endpoints converts a record's tuple; IPv4-mapped IPv6 addresses are unmapped.
func endpoints(t *bpf.NetNetTuple) (local, remote netip.AddrPort) {
	return netip.AddrPortFrom(addr(t.Family, &t.Laddr), t.Lport),
		netip.AddrPortFrom(addr(t.Family, &t.Raddr), t.Rport)
}

func addr(family uint16, b *[16]uint8) netip.Addr {
	switch family {
	case afInet:
		return netip.AddrFrom4([4]byte(b[:4]))
	case afInet6:
		return netip.AddrFrom16(*b).Unmap()
	default:
		return netip.Addr{}
	}
}

func direction(flags uint32) event.Direction {
	switch {
	case bpf.NetNetFlags(flags)&bpf.NetNetFlagsNET_OUTBOUND != 0:
		return event.Outbound
	case bpf.NetNetFlags(flags)&bpf.NetNetFlagsNET_INBOUND != 0:
		return event.Inbound
	default:
		return 0
	}
}

func (d *Decoder) wallTime(ktimeBoot uint64) time.Time {
	return d.BootTime.Add(time.Duration(ktimeBoot))
}

// processOf converts a record's process as sensor.ProcessOf does, reusing
// the last comm string instead of allocating one per record.
func (d *Decoder) processOf(p *bpf.NetProcessInfo) event.Process {
	info := bpf.ProcessProcessInfo(*p)
	info.Comm = [16]int8{} // converted below, without allocating when it repeats
	proc := sensor.ProcessOf(info)
	if p.Comm != d.lastComm || d.lastCommStr == "" {
		d.lastComm, d.lastCommStr = p.Comm, sensor.CString(p.Comm[:])
	}
	proc.Comm = d.lastCommStr
	return proc
}
