package anomaly

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
)

var (
	nmap   = &proctree.Entry{PID: 300, StartTime: 5e9, Exe: "/usr/bin/nmap"}
	beacon = &proctree.Entry{PID: 301, StartTime: 6e9, Exe: "/tmp/.x/agent"}
)

// connect is a TCPConnect of proc to remote at.
func connect(at time.Time, proc *proctree.Entry, remote string, failed bool) *event.TCPConnect {
	return &event.TCPConnect{Time: at, Process: event.Process{PID: proc.PID, StartTime: proc.StartTime},
		Remote: netip.MustParseAddrPort(remote), Failed: failed}
}

func TestFlowsPortSweep(t *testing.T) {
	f := NewFlows(FlowOptions{})
	var s NetStats
	for port := 1; port <= 20; port++ {
		at := t0.Add(time.Duration(port) * 100 * time.Millisecond)
		s = f.Observe(connect(at, nmap, netip.AddrPortFrom(netip.MustParseAddr("10.0.0.9"), uint16(port)).String(), true), nmap)
	}
	if want := (NetStats{PortsToHost: 20, HostsOnPort: 1}); !reflect.DeepEqual(s, want) {
		t.Fatalf("port sweep: %+v, want %+v", s, want)
	}
	// Another process of the same program, user and session counts with it:
	// a shell loop scans with one subshell per port.
	other := &proctree.Entry{PID: 302, StartTime: 7e9, Exe: "/usr/bin/nmap"}
	if s = f.Observe(connect(t0.Add(3*time.Second), other, "10.0.0.9:21", true), other); s.PortsToHost != 21 {
		t.Fatalf("other process of the same program: %+v", s)
	}
	// Another program is counted apart, even with the same pid.
	reused := &proctree.Entry{PID: nmap.PID, StartTime: 9e9, Exe: "/usr/bin/ssh"}
	if s = f.Observe(connect(t0.Add(3*time.Second), reused, "10.0.0.9:22", false), reused); s.PortsToHost != 1 {
		t.Fatalf("other program: %+v", s)
	}
	// So is the same program run by another user.
	ev := connect(t0.Add(3*time.Second), other, "10.0.0.9:23", true)
	ev.Process.UID = 1000
	if s = f.Observe(ev, other); s.PortsToHost != 1 {
		t.Fatalf("other user: %+v", s)
	}
	// A window after the sweep it is forgotten.
	if s = f.Observe(connect(t0.Add(3*time.Second+time.Minute+time.Millisecond), nmap, "10.0.0.9:443", false), nmap); s.PortsToHost != 1 {
		t.Fatalf("after the window: %+v", s)
	}
}

func TestFlowsHostSweep(t *testing.T) {
	f := NewFlows(FlowOptions{})
	var s NetStats
	for i := 1; i <= 30; i++ {
		addr := netip.AddrFrom4([4]byte{10, 0, 1, byte(i)})
		s = f.Observe(connect(t0.Add(time.Duration(i)*time.Second), nmap, netip.AddrPortFrom(addr, 22).String(), true), nmap)
	}
	if want := (NetStats{PortsToHost: 1, HostsOnPort: 30}); !reflect.DeepEqual(s, want) {
		t.Fatalf("host sweep: %+v, want %+v", s, want)
	}
}

func TestFlowsInboundScan(t *testing.T) {
	f := NewFlows(FlowOptions{})
	var s NetStats
	for port := 20; port < 30; port++ {
		s = f.Observe(&event.TCPAccept{Time: t0.Add(time.Duration(port) * time.Millisecond),
			Local:  netip.AddrPortFrom(netip.MustParseAddr("192.168.1.10"), uint16(port)),
			Remote: netip.MustParseAddrPort("203.0.113.5:40000")}, nil)
	}
	if want := (NetStats{PortsToHost: 10, HostsOnPort: 1}); !reflect.DeepEqual(s, want) {
		t.Fatalf("inbound scan: %+v, want %+v", s, want)
	}
	// Another source starts from one.
	s = f.Observe(&event.UDPFlow{Time: t0.Add(time.Second), Direction: event.Inbound,
		Local: netip.MustParseAddrPort("192.168.1.10:53"), Remote: netip.MustParseAddrPort("203.0.113.6:5353")}, nil)
	if want := (NetStats{PortsToHost: 1, HostsOnPort: 1}); !reflect.DeepEqual(s, want) {
		t.Fatalf("other source: %+v, want %+v", s, want)
	}
}

func TestFlowsBeacon(t *testing.T) {
	f := NewFlows(FlowOptions{})
	// Eight connects 30 s apart, each moved by at most 1 %; first and last
	// exact, so the mean gap is 30 s.
	offsets := []time.Duration{0, 30300, 59800, 90200, 119700, 150300, 179800, 210000}
	var got []NetStats
	for _, ms := range offsets {
		got = append(got, f.Observe(connect(t0.Add(ms*time.Millisecond), beacon, "198.51.100.7:443", false), beacon))
	}
	for i, s := range got[:5] {
		if s.Beacon || s.BeaconIntervalMs != 0 {
			t.Fatalf("connect %d: %+v", i+1, s)
		}
	}
	if s := got[5]; !s.Beacon || s.BeaconIntervalMs != 30060 {
		t.Fatalf("sixth connect: %+v, want a beacon of 30060 ms", s)
	}
	if s := got[7]; !s.Beacon || s.BeaconIntervalMs != 30000 {
		t.Fatalf("eighth connect: %+v, want a beacon of 30000 ms", s)
	}
}

func TestFlowsNoBeacon(t *testing.T) {
	for name, gaps := range map[string][]float64{
		"irregular":   {5, 40, 12, 60, 3, 30, 25},
		"sub-second":  {0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5},
		"one too few": {30, 30, 30, 30},
		"one outlier": {30, 30, 30, 30, 30, 30, 90},
	} {
		f := NewFlows(FlowOptions{})
		at := t0
		s := f.Observe(connect(at, beacon, "198.51.100.7:443", false), beacon)
		for _, g := range gaps {
			at = at.Add(time.Duration(float64(g) * float64(time.Second)))
			s = f.Observe(connect(at, beacon, "198.51.100.7:443", false), beacon)
		}
		if s.Beacon || s.BeaconIntervalMs != 0 {
			t.Errorf("%s: %+v", name, s)
		}
	}
}

// closeConn is a TCPClose of proc's connection to remote that sent n bytes.
func closeConn(at time.Time, proc *proctree.Entry, remote string, n uint64) *event.TCPClose {
	return &event.TCPClose{Time: at, Process: event.Process{PID: proc.PID, StartTime: proc.StartTime, Comm: "backup"},
		Direction: event.Outbound, Remote: netip.MustParseAddrPort(remote), Established: at.Add(-time.Second), BytesSent: n}
}

func TestFlowsVolume(t *testing.T) {
	backup := &proctree.Entry{PID: 400, Exe: "/usr/bin/backup"}
	f := NewFlows(FlowOptions{})
	// All at one time, so that no decay blurs the exact mean.
	at := t0
	for range 20 {
		if s := f.Observe(closeConn(at, backup, "198.51.100.7:443", 100<<10), backup); len(s.Findings) != 0 {
			t.Fatalf("learning volume: %+v", s)
		}
	}
	// More than ten times the mean but under 10 MiB: nothing.
	if s := f.Observe(closeConn(at, backup, "198.51.100.7:443", 5<<20), backup); len(s.Findings) != 0 {
		t.Fatalf("5 MiB: %+v", s.Findings)
	}
	s := f.Observe(closeConn(at, backup, "198.51.100.7:443", 64<<20), backup)
	if len(s.Findings) != 1 {
		t.Fatalf("64 MiB: %+v", s.Findings)
	}
	got := s.Findings[0]
	// The mean now includes the 5 MiB connection: (20×100 KiB + 5 MiB)/21.
	mean := (20*float64(100<<10) + float64(5<<20)) / 21
	want := Finding{Kind: KindRareVolume, Exe: "/usr/bin/backup", Item: "198.51.100.7:443",
		Score:  (21.0 / 31.0) * (1 - 10/(float64(64<<20)/mean)),
		Reason: "/usr/bin/backup sent 64.0 MiB to 198.51.100.7:443 in one connection, 193× its usual 339.0 KiB (decayed mean of 21 earlier connections)",
		Time:   at}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("finding:\n got %+v\nwant %+v", got, want)
	}
	// Too few samples: nothing, however much.
	fresh := &proctree.Entry{PID: 401, Exe: "/usr/bin/rclone"}
	if s := f.Observe(closeConn(at, fresh, "198.51.100.8:443", 1<<30), fresh); len(s.Findings) != 0 {
		t.Fatalf("first connection: %+v", s.Findings)
	}
}

func TestFlowsSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FlowsFile)
	backup := &proctree.Entry{PID: 400, Exe: "/usr/bin/backup"}
	f := NewFlows(FlowOptions{})
	for i := range 20 {
		f.Observe(closeConn(t0.Add(time.Duration(i)*time.Minute), backup, "198.51.100.7:443", 100<<10), backup)
	}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	loaded := NewFlows(FlowOptions{})
	if err := loaded.Load(path); err != nil {
		t.Fatal(err)
	}
	ev := closeConn(t0.Add(time.Hour), backup, "198.51.100.7:443", 64<<20)
	want, got := f.Observe(ev, backup), loaded.Observe(ev, backup)
	if len(want.Findings) != 1 || !reflect.DeepEqual(got, want) {
		t.Fatalf("after load:\n got %+v\nwant %+v", got, want)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"format":"vigil-anomaly-flows","version":1,"state":{"volumes":{"/x":{"sum":{"w":1,"t":0},"count":{"w":1,"t":0},"n":1,"last":0,"extra":1}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := loaded.Load(bad); !errors.Is(err, ErrCorrupt) || err.Error() != "load flows "+bad+`: corrupt state file: json: unknown field "extra"` {
		t.Fatalf("unknown field: %v", err)
	}
}

func TestFlowsCaps(t *testing.T) {
	f := NewFlows(FlowOptions{MaxKeys: 2, MaxRecords: 3, MaxBeaconPairs: 2})
	procs := []*proctree.Entry{{PID: 1, Exe: "/a"}, {PID: 2, Exe: "/b"}, {PID: 3, Exe: "/c"}}
	for i, p := range procs {
		f.Observe(connect(t0.Add(time.Duration(i)*time.Second), p, "10.0.0.1:80", false), p)
	}
	if _, ok := f.out.m[scanKey{exe: "/a"}]; ok || len(f.out.m) != 2 || len(f.beacons) != 2 {
		t.Fatalf("keys: %d windows, %d beacon pairs", len(f.out.m), len(f.beacons))
	}
	var s NetStats
	for port := 1; port <= 5; port++ {
		s = f.Observe(connect(t0.Add(5*time.Second), procs[2], netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), uint16(port)).String(), true), procs[2])
	}
	if s.PortsToHost != 3 {
		t.Fatalf("capped window: %+v", s)
	}
	if f.out.total != 4 {
		t.Fatalf("total connections: %d, want 4", f.out.total)
	}

	// All windows together: the one idle longest goes.
	g := NewFlows(FlowOptions{MaxTotalRecords: 4})
	for i, p := range procs {
		for j := range 2 {
			g.Observe(connect(t0.Add(time.Duration(2*i+j)*time.Second), p, "10.0.0.1:80", false), p)
		}
	}
	if _, ok := g.out.m[scanKey{exe: "/a"}]; ok || len(g.out.m) != 2 || g.out.total != 4 {
		t.Fatalf("total cap: %d windows, %d connections", len(g.out.m), g.out.total)
	}
	// Windows idle for a whole window go first, and the count follows.
	g.Observe(connect(t0.Add(time.Hour), procs[0], "10.0.0.1:80", false), procs[0])
	g.Observe(connect(t0.Add(time.Hour), procs[0], "10.0.0.1:81", false), procs[0])
	g.Observe(connect(t0.Add(time.Hour), procs[0], "10.0.0.1:82", false), procs[0])
	if len(g.out.m) != 1 || g.out.total != 3 {
		t.Fatalf("after idle windows: %d windows, %d connections", len(g.out.m), g.out.total)
	}
}
