package event

import (
	"net/netip"
	"time"
)

// Direction says which side opened a network flow.
type Direction uint8

const (
	// Outbound flows were opened by this host (connect, first datagram sent).
	Outbound Direction = iota + 1
	// Inbound flows were opened by the peer (accept, first datagram received).
	Inbound
)

// String returns "outbound" or "inbound".
func (d Direction) String() string {
	switch d {
	case Outbound:
		return "outbound"
	case Inbound:
		return "inbound"
	default:
		return "unknown"
	}
}

// TCPConnect reports an outbound TCP connection that was established, or
// that failed (refused, timed out) when Failed is set.
type TCPConnect struct {
	// Time is when the connection was established or failed.
	Time time.Time
	// Process is the process that called connect.
	Process Process
	// Local is the local address and port (IPv4-mapped IPv6 addresses are unmapped).
	Local netip.AddrPort
	// Remote is the peer's address and port.
	Remote netip.AddrPort
	// Cookie is the kernel's socket cookie, the same in the TCPClose of this connection.
	Cookie uint64
	// Failed is set when the connection never reached ESTABLISHED.
	Failed bool
}

// TCPAccept reports that a process accepted an inbound TCP connection.
type TCPAccept struct {
	// Time is when accept returned the connection.
	Time time.Time
	// Process is the process that accepted it.
	Process Process
	// Local is the local address and port (IPv4-mapped IPv6 addresses are unmapped).
	Local netip.AddrPort
	// Remote is the peer's address and port.
	Remote netip.AddrPort
	// Cookie is the kernel's socket cookie, the same in the TCPClose of this connection.
	Cookie uint64
	// Established is when the handshake completed (before the accept).
	Established time.Time
}

// TCPClose reports the end of a TCP connection reported by a TCPConnect or
// established inbound.
type TCPClose struct {
	// Time is when the connection reached the CLOSE state.
	Time time.Time
	// Process is the process that connected or accepted; zero when NoProcess.
	Process Process
	// NoProcess is set for an inbound connection no task accepted with accept(2).
	NoProcess bool
	// Direction says whether the connection was connected or accepted.
	Direction Direction
	// Local is the local address and port (IPv4-mapped IPv6 addresses are unmapped).
	Local netip.AddrPort
	// Remote is the peer's address and port.
	Remote netip.AddrPort
	// Cookie is the kernel's socket cookie.
	Cookie uint64
	// Established is when the connection was established.
	Established time.Time
	// BytesSent is the payload bytes sent and acknowledged by the peer.
	BytesSent uint64
	// BytesReceived is the payload bytes received.
	BytesReceived uint64
}

// Duration is how long the connection was established.
func (c *TCPClose) Duration() time.Duration { return c.Time.Sub(c.Established) }

// UDPFlow reports the first datagram of a (process, local port, remote
// address and port) UDP flow; later datagrams of the flow are not reported.
type UDPFlow struct {
	// Time is when the first datagram was sent or received.
	Time time.Time
	// Process is the process that sent or received it.
	Process Process
	// Direction is Outbound when the process sent first.
	Direction Direction
	// Local is the local address and port; the address is unspecified for a
	// datagram received on a socket bound to the wildcard address.
	Local netip.AddrPort
	// Remote is the peer's address and port.
	Remote netip.AddrPort
}

// DNS reports one DNS message carried over UDP port 53.
type DNS struct {
	// Time is when the datagram was sent or received.
	Time time.Time
	// Process is the sender of an outbound message; zero when NoProcess.
	Process Process
	// NoProcess is set for inbound messages (they arrive outside any task).
	NoProcess bool
	// Direction is Outbound for datagrams this host sent.
	Direction Direction
	// Local is the local address and port.
	Local netip.AddrPort
	// Remote is the peer's address and port.
	Remote netip.AddrPort
	// ID is the DNS message id, the same in a query and its response.
	ID uint16
	// Response is set for responses, clear for queries.
	Response bool
	// RCode is the response code (0: no error, 3: no such name).
	RCode uint8
	// Name is the first question's name without the final dot, e.g. "example.com".
	Name string
	// QType is the first question's type, e.g. 1 for A, 28 for AAAA.
	QType uint16
	// Answers are the addresses of the A and AAAA answers of a response.
	Answers []netip.Addr
	// CNAMEs are the targets of CNAME answers, without the final dot.
	CNAMEs []string
	// Truncated is set when the sensor captured only the start of the
	// message or the message could not be parsed in full.
	Truncated bool
}
