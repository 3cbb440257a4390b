package network

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/hostinfo"
	"github.com/vigil-sensor/vigil/agent/kernelfs"
	"github.com/vigil-sensor/vigil/internal/netnstest"
	"github.com/vigil-sensor/vigil/internal/sensortest"
	"github.com/vigil-sensor/vigil/internal/testutil"
	"golang.org/x/sys/unix"
)

// collector runs a loaded sensor and hands decoded events to the test.
type collector = sensortest.Collector

func startSensor(t *testing.T, opts Options) (*Sensor, *collector) {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := kernelfs.EnsureMounted(kernelfs.Needed); err != nil {
		t.Fatalf("mount kernel file systems: %v", err)
	}
	boot, err := hostinfo.BootTime()
	if err != nil {
		t.Fatalf("boot time: %v", err)
	}
	opts.BootTime = boot
	s, err := Load(opts)
	if err != nil {
		t.Fatalf("load network sensor: %v", err)
	}
	c := sensortest.Collect(t, s)
	return s, c
}

// waitFor returns the first event match accepts.
func waitFor[T any](t *testing.T, c *collector, what string, match func(*T) bool) *T {
	t.Helper()
	return sensortest.WaitFor(t, c, what, match)
}

var (
	testPID  = uint32(os.Getpid())
	testComm = func() string {
		c := filepath.Base(os.Args[0])
		if len(c) > 15 {
			c = c[:15]
		}
		return c
	}()
)

// checkProcess asserts that p is this test process.
func checkProcess(t *testing.T, what string, p event.Process) {
	t.Helper()
	if p.PID != testPID || p.PPID != uint32(os.Getppid()) || p.UID != 0 || p.EUID != 0 || p.Comm != testComm {
		t.Errorf("%s process = pid %d ppid %d uid %d euid %d comm %q; want pid %d ppid %d uid 0 euid 0 comm %q",
			what, p.PID, p.PPID, p.UID, p.EUID, p.Comm, testPID, os.Getppid(), testComm)
	}
	if p.StartTime == 0 || p.CgroupID == 0 {
		t.Errorf("%s process: start time %d, cgroup id %d: want both set", what, p.StartTime, p.CgroupID)
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	panic("unexpected address type")
}

func TestTCPConnectAcceptClose(t *testing.T) {
	// One slot: of the two ends of each connection, the second (the
	// accepted one) is tracked in the overflow hash.
	for _, slots := range []uint32{0, 1} {
		t.Run(fmt.Sprintf("slots=%d", slots), func(t *testing.T) {
			_, c := startSensor(t, Options{TCPSlots: slots})
			p := newPair(t)
			for _, tc := range []struct {
				name           string
				server, client netip.Addr
			}{{"ipv4", p.a4, p.b4}, {"ipv6", p.a6, p.b6}} {
				t.Run(tc.name, func(t *testing.T) {
					testTCP(t, c, p, tc.server, tc.client)
				})
			}
		})
	}
}

// testTCP connects from the client address in namespace b to a server in
// namespace a, sends 3000 bytes one way and 5000 the other, closes, and
// checks the connect, accept and both close events.
func testTCP(t *testing.T, c *collector, p *pair, serverIP, clientIP netip.Addr) {
	const toServer, toClient = 3000, 5000
	ln := netnstest.In(t, p.a, func() (net.Listener, error) {
		return net.Listen("tcp", netip.AddrPortFrom(serverIP, 0).String())
	})
	defer ln.Close()
	server := addrPort(ln.Addr())

	served := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer conn.Close()
		if _, err := io.ReadFull(conn, make([]byte, toServer)); err != nil {
			served <- err
			return
		}
		if _, err := conn.Write(make([]byte, toClient)); err != nil {
			served <- err
			return
		}
		// Wait for the client's FIN, so that both sides saw everything.
		_, err = io.Copy(io.Discard, conn)
		served <- err
	}()

	before := time.Now()
	conn := netnstest.In(t, p.b, func() (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP.AsSlice()}}
		return d.Dial("tcp", server.String())
	})
	client := addrPort(conn.LocalAddr())
	if _, err := conn.Write(make([]byte, toServer)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, toClient)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := <-served; err != nil {
		t.Fatalf("server: %v", err)
	}

	connect := waitFor(t, c, "tcp connect", func(e *event.TCPConnect) bool { return e.Local == client })
	checkProcess(t, "connect", connect.Process)
	if connect.Remote != server || connect.Failed || connect.Cookie == 0 {
		t.Errorf("connect: remote %s failed %v cookie %d; want %s, false, set", connect.Remote, connect.Failed, connect.Cookie, server)
	}
	if connect.Time.Before(before.Add(-time.Second)) || connect.Time.After(time.Now().Add(time.Second)) {
		t.Errorf("connect time %s is not around now", connect.Time)
	}

	accept := waitFor(t, c, "tcp accept", func(e *event.TCPAccept) bool { return e.Remote == client })
	checkProcess(t, "accept", accept.Process)
	if accept.Local != server || accept.Cookie == 0 || accept.Cookie == connect.Cookie {
		t.Errorf("accept: local %s cookie %d; want %s, set and not the client's %d", accept.Local, accept.Cookie, server, connect.Cookie)
	}
	if accept.Established.IsZero() || accept.Established.After(accept.Time) {
		t.Errorf("accept: established %s, accepted %s: want established first", accept.Established, accept.Time)
	}

	closed := map[event.Direction]*event.TCPClose{}
	for len(closed) < 2 {
		e := waitFor(t, c, "tcp close", func(e *event.TCPClose) bool {
			return e.Cookie == connect.Cookie || e.Cookie == accept.Cookie
		})
		closed[e.Direction] = e
	}
	out, inb := closed[event.Outbound], closed[event.Inbound]
	if out == nil || inb == nil {
		t.Fatalf("close events: %+v; want one outbound and one inbound", closed)
	}
	checkProcess(t, "outbound close", out.Process)
	checkProcess(t, "inbound close", inb.Process)
	if out.Local != client || out.Remote != server || out.BytesSent != toServer || out.BytesReceived != toClient || out.NoProcess {
		t.Errorf("outbound close: %s -> %s sent %d received %d noprocess %v; want %s -> %s sent %d received %d",
			out.Local, out.Remote, out.BytesSent, out.BytesReceived, out.NoProcess, client, server, toServer, toClient)
	}
	if inb.Local != server || inb.Remote != client || inb.BytesSent != toClient || inb.BytesReceived != toServer || inb.NoProcess {
		t.Errorf("inbound close: %s <- %s sent %d received %d noprocess %v; want %s <- %s sent %d received %d",
			inb.Local, inb.Remote, inb.BytesSent, inb.BytesReceived, inb.NoProcess, server, client, toClient, toServer)
	}
	if !out.Established.Equal(connect.Time) || !inb.Established.Equal(accept.Established) {
		t.Errorf("established times: close %s / %s, want connect %s / accept %s", out.Established, inb.Established, connect.Time, accept.Established)
	}
	if out.Duration() <= 0 || inb.Duration() <= 0 {
		t.Errorf("durations %s / %s: want positive", out.Duration(), inb.Duration())
	}
}

func TestTCPConnectRefused(t *testing.T) {
	_, c := startSensor(t, Options{})
	p := newPair(t)
	// A port nothing listens on: the peer answers the SYN with a reset.
	ln := netnstest.In(t, p.a, func() (net.Listener, error) { return net.Listen("tcp", netip.AddrPortFrom(p.a4, 0).String()) })
	server := addrPort(ln.Addr())
	ln.Close()
	dialErr := netnstest.In(t, p.b, func() (error, error) {
		_, err := net.Dial("tcp", server.String())
		return err, nil // a refusal is the expected result, not a setup failure
	})
	if !errors.Is(dialErr, unix.ECONNREFUSED) {
		t.Fatalf("dial a closed port: %v, want connection refused", dialErr)
	}
	connect := waitFor(t, c, "failed tcp connect", func(e *event.TCPConnect) bool { return e.Remote == server })
	checkProcess(t, "connect", connect.Process)
	if !connect.Failed || connect.Local.Addr() != p.b4 || connect.Local.Port() == 0 {
		t.Errorf("refused connect: failed %v local %s; want true, %s with a port", connect.Failed, connect.Local, p.b4)
	}
}

// dnsQuery is a hand-built query for vigil-test.example, type A, id 0x4242.
var dnsQuery = []byte{
	0x42, 0x42, // id
	0x01, 0x00, // flags: recursion desired
	0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 1 question
	10, 'v', 'i', 'g', 'i', 'l', '-', 't', 'e', 's', 't',
	7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0,
	0x00, 0x01, // type A
	0x00, 0x01, // class IN
}

// dnsAnswer answers query with one A record for addr and one AAAA record for addr6.
func dnsAnswer(query []byte, addr, addr6 netip.Addr) []byte {
	resp := append([]byte{}, query...)
	resp[2] = 0x81 // response, recursion desired
	resp[3] = 0x80 // recursion available, no error
	resp[7] = 2    // two answers
	a4, a6 := addr.As4(), addr6.As16()
	resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
	resp = append(resp, a4[:]...)
	resp = append(resp, 0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16)
	return append(resp, a6[:]...)
}

func TestUDPFlowsAndDNS(t *testing.T) {
	_, c := startSensor(t, Options{})
	p := newPair(t)
	for _, tc := range []struct {
		name           string
		server, client netip.Addr
	}{{"ipv4", p.a4, p.b4}, {"ipv6", p.a6, p.b6}} {
		t.Run(tc.name, func(t *testing.T) {
			testDNS(t, c, p, tc.server, tc.client)
		})
	}
}

// testDNS sends the hand-built query from namespace b to a resolver on port
// 53 in namespace a that answers it, and checks the UDP flow of each side and
// the DNS query and response.
func testDNS(t *testing.T, c *collector, p *pair, serverIP, clientIP netip.Addr) {
	answer4, answer6 := netip.MustParseAddr("10.200.99.77"), netip.MustParseAddr("fd00::99:77")
	resolver := netnstest.In(t, p.a, func() (*net.UDPConn, error) {
		return net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(serverIP, 53)))
	})
	defer resolver.Close()
	server := netip.AddrPortFrom(serverIP, 53)
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := resolver.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = resolver.WriteToUDPAddrPort(dnsAnswer(buf[:n], answer4, answer6), from)
		}
	}()

	conn := netnstest.In(t, p.b, func() (*net.UDPConn, error) {
		return net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(clientIP, 0)))
	})
	defer conn.Close()
	client := addrPort(conn.LocalAddr())
	buf := make([]byte, 512)
	// Two round trips on the same flow: each side's flow is reported once.
	for range 2 {
		if _, err := conn.WriteToUDPAddrPort(dnsQuery, server); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := conn.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("read answer: %v", err)
		}
	}

	out := waitFor(t, c, "outbound udp flow", func(e *event.UDPFlow) bool { return e.Local == client })
	checkProcess(t, "outbound udp flow", out.Process)
	if out.Remote != server || out.Direction != event.Outbound {
		t.Errorf("outbound udp flow: remote %s direction %s; want %s outbound", out.Remote, out.Direction, server)
	}
	inb := waitFor(t, c, "inbound udp flow", func(e *event.UDPFlow) bool { return e.Remote == client })
	checkProcess(t, "inbound udp flow", inb.Process)
	if inb.Local != server || inb.Direction != event.Inbound {
		t.Errorf("inbound udp flow: local %s direction %s; want %s inbound", inb.Local, inb.Direction, server)
	}

	query := waitFor(t, c, "dns query", func(e *event.DNS) bool {
		return e.Local == client && e.Direction == event.Outbound
	})
	checkProcess(t, "dns query", query.Process)
	if query.Remote != server || query.ID != 0x4242 || query.Response || query.Name != "vigil-test.example" ||
		query.QType != 1 || query.NoProcess || query.Truncated || len(query.Answers) != 0 {
		t.Errorf("dns query = %+v; want id 0x4242 query vigil-test.example type 1 to %s", query, server)
	}
	resp := waitFor(t, c, "dns response", func(e *event.DNS) bool {
		return e.Local == client && e.Direction == event.Inbound
	})
	if resp.Remote != server || resp.ID != 0x4242 || !resp.Response || resp.RCode != 0 || resp.Name != "vigil-test.example" ||
		resp.QType != 1 || !resp.NoProcess || resp.Process.PID != 0 || resp.Truncated ||
		len(resp.Answers) != 2 || resp.Answers[0] != answer4 || resp.Answers[1] != answer6 {
		t.Errorf("dns response = %+v; want id 0x4242 response for vigil-test.example with answers %s %s from %s", resp, answer4, answer6, server)
	}

	// The second round trip reported no flow again: a fresh flow is the next UDP flow event.
	marker := netnstest.In(t, p.b, func() (*net.UDPConn, error) {
		return net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(clientIP, 0)))
	})
	defer marker.Close()
	markerAddr := addrPort(marker.LocalAddr())
	if _, err := marker.WriteToUDPAddrPort([]byte("marker"), netip.AddrPortFrom(serverIP, 9)); err != nil {
		t.Fatal(err)
	}
	next := waitFor(t, c, "marker udp flow", func(e *event.UDPFlow) bool {
		return e.Process.PID == testPID && (e.Local.Addr() == clientIP || e.Local.Addr() == serverIP || e.Local.Addr().IsUnspecified())
	})
	if next.Local != markerAddr {
		t.Errorf("udp flow after the second round trip: %s -> %s; want only the marker flow from %s", next.Local, next.Remote, markerAddr)
	}
}
