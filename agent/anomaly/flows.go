package anomaly

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
)

// Defaults of FlowOptions.
const (
	// DefaultFlowWindow is the sliding window of the scan counters.
	DefaultFlowWindow = 60 * time.Second
	// DefaultBeaconMinConnections is how many connections a beacon needs.
	DefaultBeaconMinConnections = 6
	// DefaultBeaconMaxCV is the coefficient of variation of the gaps under
	// which connections are regular.
	DefaultBeaconMaxCV = 0.1
	// DefaultBeaconMinInterval is the shortest mean gap of a beacon.
	DefaultBeaconMinInterval = time.Second
	// DefaultBeaconHistory is how many connection times are kept per
	// executable and destination.
	DefaultBeaconHistory = 16
	// DefaultVolumeRatio is how many times its executable's mean a
	// connection must send to be reported.
	DefaultVolumeRatio = 10
	// DefaultVolumeMinBytes is the least a connection must send to be reported (10 MiB).
	DefaultVolumeMinBytes = 10 << 20
	// DefaultVolumeMinSamples is how many earlier closed connections an
	// executable needs before its volume is scored.
	DefaultVolumeMinSamples = 20
	// DefaultMaxFlowKeys bounds the processes, and separately the inbound
	// sources, whose windows are kept.
	DefaultMaxFlowKeys = 4096
	// DefaultMaxFlowRecords bounds the connections kept in one window.
	DefaultMaxFlowRecords = 1024
	// DefaultMaxFlowTotalRecords bounds the connections kept in all the
	// windows of one direction.
	DefaultMaxFlowTotalRecords = 65536
	// DefaultMaxBeaconPairs bounds the (executable, destination) pairs watched for beacons.
	DefaultMaxBeaconPairs = 8192
	// DefaultMaxVolumeExes bounds the executables whose mean volume is learned.
	DefaultMaxVolumeExes = 1024
)

// FlowOptions tune Flows. Zero (or negative) fields take the defaults.
//
// Memory: a connection in a window costs about 100 bytes with its share of
// the counters; windows are pruned to Window on every event of their key,
// and each direction keeps at most MaxTotalRecords connections (65,536 by
// default: about 7 MB) in at most MaxKeys windows. A beacon pair costs about
// 250 bytes (2 MB for the default 8,192 pairs) and a volume mean 100 bytes.
type FlowOptions struct {
	// Window is the sliding window of PortsToHost and HostsOnPort
	// (DefaultFlowWindow).
	Window time.Duration
	// BeaconMinConnections is how many connections from one executable to
	// one destination a beacon needs (DefaultBeaconMinConnections).
	BeaconMinConnections int
	// BeaconMaxCV is the coefficient of variation (standard deviation over
	// mean) of the gaps under which they are regular (DefaultBeaconMaxCV).
	BeaconMaxCV float64
	// BeaconMinInterval is the shortest mean gap of a beacon
	// (DefaultBeaconMinInterval).
	BeaconMinInterval time.Duration
	// BeaconHistory is how many connection times are kept per pair
	// (DefaultBeaconHistory); the gaps of these are measured.
	BeaconHistory int
	// VolumeRatio is how many times the executable's decayed mean bytes
	// sent a connection must exceed (DefaultVolumeRatio).
	VolumeRatio float64
	// VolumeMinBytes is the least a reported connection sent
	// (DefaultVolumeMinBytes).
	VolumeMinBytes uint64
	// VolumeMinSamples is how many earlier closed connections the
	// executable needs (DefaultVolumeMinSamples).
	VolumeMinSamples int
	// VolumeHalfLife is the half-life of the mean's samples (DefaultHalfLife).
	VolumeHalfLife time.Duration
	// MaxKeys bounds the windows kept, per direction (DefaultMaxFlowKeys).
	MaxKeys int
	// MaxRecords bounds the connections in one window (DefaultMaxFlowRecords);
	// beyond it the oldest are dropped and counts are lower bounds.
	MaxRecords int
	// MaxTotalRecords bounds the connections in all the windows of one
	// direction (DefaultMaxFlowTotalRecords); beyond it the window idle
	// longest is dropped.
	MaxTotalRecords int
	// MaxBeaconPairs bounds the pairs watched for beacons
	// (DefaultMaxBeaconPairs); the one idle longest is dropped first.
	MaxBeaconPairs int
	// MaxVolumeExes bounds the executables whose mean is learned
	// (DefaultMaxVolumeExes); the one idle longest is dropped first.
	MaxVolumeExes int
}

// withDefaults fills the zero fields of o.
func (o FlowOptions) withDefaults() FlowOptions {
	if o.Window <= 0 {
		o.Window = DefaultFlowWindow
	}
	if o.BeaconMinConnections <= 0 {
		o.BeaconMinConnections = DefaultBeaconMinConnections
	}
	if o.BeaconMinConnections < 3 {
		o.BeaconMinConnections = 3 // two gaps at least, or the spread means nothing
	}
	if o.BeaconMaxCV <= 0 {
		o.BeaconMaxCV = DefaultBeaconMaxCV
	}
	if o.BeaconMinInterval <= 0 {
		o.BeaconMinInterval = DefaultBeaconMinInterval
	}
	if o.BeaconHistory <= 0 {
		o.BeaconHistory = DefaultBeaconHistory
	}
	if o.BeaconHistory < o.BeaconMinConnections {
		o.BeaconHistory = o.BeaconMinConnections
	}
	if o.VolumeRatio <= 0 {
		o.VolumeRatio = DefaultVolumeRatio
	}
	if o.VolumeMinBytes == 0 {
		o.VolumeMinBytes = DefaultVolumeMinBytes
	}
	if o.VolumeMinSamples <= 0 {
		o.VolumeMinSamples = DefaultVolumeMinSamples
	}
	if o.VolumeHalfLife <= 0 {
		o.VolumeHalfLife = DefaultHalfLife
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxFlowKeys
	}
	if o.MaxRecords <= 0 {
		o.MaxRecords = DefaultMaxFlowRecords
	}
	if o.MaxTotalRecords <= 0 {
		o.MaxTotalRecords = DefaultMaxFlowTotalRecords
	}
	if o.MaxBeaconPairs <= 0 {
		o.MaxBeaconPairs = DefaultMaxBeaconPairs
	}
	if o.MaxVolumeExes <= 0 {
		o.MaxVolumeExes = DefaultMaxVolumeExes
	}
	return o
}

// NetStats are the counters of one network event. The rules engine copies
// the first four into its input under the same names.
type NetStats struct {
	// PortsToHost is, for an outbound connection, the number of distinct
	// remote ports the process reached on the same remote address in the
	// window; for an inbound one, the number of distinct local ports the
	// remote address reached on the same local address (a port scan).
	PortsToHost int
	// HostsOnPort is, for an outbound connection, the number of distinct
	// remote addresses the process reached on the same remote port in the
	// window (a host sweep); for an inbound one, the number of distinct
	// local addresses the remote address reached on the same local port.
	HostsOnPort int
	// Beacon is set when the executable's latest connections to this
	// destination (at least BeaconMinConnections) came at regular
	// intervals: coefficient of variation of the gaps below BeaconMaxCV and
	// mean gap at least BeaconMinInterval.
	Beacon bool
	// BeaconIntervalMs is the mean gap of a beacon in milliseconds (0 when
	// Beacon is false).
	BeaconIntervalMs int64
	// Findings are the rare-volume findings of a closed connection.
	Findings []Finding
}

// scanKey is who scans: one program run by one user in one login session.
// Processes are not told apart, because a scan is often many processes: a
// shell loop forks a subshell per port (for p in ...; do echo >/dev/tcp/h/$p).
type scanKey struct {
	uid     uint32
	session uint32
	exe     string
}

// compareScanKey orders scanKeys, to break eviction ties.
func compareScanKey(a, b scanKey) int {
	if c := cmp.Compare(a.uid, b.uid); c != 0 {
		return c
	}
	if c := cmp.Compare(a.session, b.session); c != 0 {
		return c
	}
	return cmp.Compare(a.exe, b.exe)
}

// flowRecord is one connection in a window: when, and the far side as the
// window counts it.
type flowRecord struct {
	t    int64
	addr netip.Addr
	port uint16
}

// flowWindow counts the connections of one key in the window: distinct
// ports per address and distinct addresses per port.
type flowWindow struct {
	recs  []flowRecord // oldest first, from head
	head  int
	ports map[netip.Addr]map[uint16]int
	addrs map[uint16]map[netip.Addr]int
	last  int64
}

// add puts a connection in the window, dropping the oldest beyond max.
func (w *flowWindow) add(r flowRecord, max int) {
	if len(w.recs)-w.head >= max {
		w.dropOldest()
	}
	w.recs = append(w.recs, r)
	if w.ports[r.addr] == nil {
		w.ports[r.addr] = make(map[uint16]int)
	}
	w.ports[r.addr][r.port]++
	if w.addrs[r.port] == nil {
		w.addrs[r.port] = make(map[netip.Addr]int)
	}
	w.addrs[r.port][r.addr]++
	if r.t > w.last {
		w.last = r.t
	}
}

// len is the number of connections in the window.
func (w *flowWindow) len() int { return len(w.recs) - w.head }

// prune drops the connections older than before.
func (w *flowWindow) prune(before int64) {
	for w.head < len(w.recs) && w.recs[w.head].t < before {
		w.dropOldest()
	}
}

// dropOldest takes the oldest connection out of the window and its counts.
func (w *flowWindow) dropOldest() {
	r := w.recs[w.head]
	w.head++
	if w.head == len(w.recs) {
		w.recs, w.head = w.recs[:0], 0
	} else if w.head > 64 && w.head > len(w.recs)/2 {
		n := copy(w.recs, w.recs[w.head:])
		w.recs, w.head = w.recs[:n], 0
	}
	if m := w.ports[r.addr]; m != nil {
		if m[r.port] <= 1 {
			delete(m, r.port)
		} else {
			m[r.port]--
		}
		if len(m) == 0 {
			delete(w.ports, r.addr)
		}
	}
	if m := w.addrs[r.port]; m != nil {
		if m[r.addr] <= 1 {
			delete(m, r.addr)
		} else {
			m[r.addr]--
		}
		if len(m) == 0 {
			delete(w.addrs, r.port)
		}
	}
}

// windows is a bounded table of flowWindows by key.
type windows[K comparable] struct {
	m       map[K]*flowWindow
	compare func(a, b K) int
	// total is the number of connections in all windows.
	total int
}

// observe adds a connection to the window of key and returns the distinct
// ports on its address and distinct addresses on its port.
func (ws *windows[K]) observe(key K, r flowRecord, o *FlowOptions) (ports, addrs int) {
	before := r.t - int64(o.Window)
	w := ws.m[key]
	if w == nil {
		if len(ws.m) >= o.MaxKeys {
			ws.evict(before, nil)
		}
		w = &flowWindow{ports: make(map[netip.Addr]map[uint16]int), addrs: make(map[uint16]map[netip.Addr]int)}
		ws.m[key] = w
	}
	n := w.len()
	w.prune(before)
	w.add(r, o.MaxRecords)
	ws.total += w.len() - n
	for ws.total > o.MaxTotalRecords && len(ws.m) > 1 {
		ws.evict(before, w)
	}
	return len(w.ports[r.addr]), len(w.addrs[r.port])
}

// evict drops every window other than keep idle since before; if none is,
// it drops the one idle longest (ties: the smallest key).
func (ws *windows[K]) evict(before int64, keep *flowWindow) {
	n := len(ws.m)
	for k, w := range ws.m {
		if w != keep && w.last < before {
			ws.total -= w.len()
			delete(ws.m, k)
		}
	}
	if len(ws.m) < n {
		return
	}
	var victim K
	oldest, found := int64(math.MaxInt64), false
	for k, w := range ws.m {
		if w == keep {
			continue
		}
		if !found || w.last < oldest || (w.last == oldest && ws.compare(k, victim) < 0) {
			victim, oldest, found = k, w.last, true
		}
	}
	if found {
		ws.total -= ws.m[victim].len()
		delete(ws.m, victim)
	}
}

// beaconKey is an (executable, destination) pair.
type beaconKey struct {
	exe string
	dst netip.AddrPort
}

// compareBeaconKey orders beaconKeys, to break eviction ties.
func compareBeaconKey(a, b beaconKey) int {
	if c := cmp.Compare(a.exe, b.exe); c != 0 {
		return c
	}
	return a.dst.Compare(b.dst)
}

// beaconTimes are the latest connection times of a pair (unix ns, in order).
type beaconTimes struct {
	times []int64
}

// volumeStats is the decayed mean of the bytes an executable's connections sent.
type volumeStats struct {
	// Sum and Count are the decayed sums of bytes and of connections.
	Sum   decayed `json:"sum"`
	Count decayed `json:"count"`
	// N is the number of connections seen.
	N uint64 `json:"n"`
	// Last is the time of the latest connection (unix ns).
	Last int64 `json:"last"`
}

// flowsState is what Flows saves.
type flowsState struct {
	// Volumes are the mean volumes by executable.
	Volumes map[string]*volumeStats `json:"volumes"`
}

// Flows counts scans, recognises beacons and reports connections that send
// far more than usual. It is not safe for concurrent use.
type Flows struct {
	opts    FlowOptions
	out     windows[scanKey]
	in      windows[netip.Addr]
	beacons map[beaconKey]*beaconTimes
	st      flowsState
}

// NewFlows returns an empty Flows.
func NewFlows(opts FlowOptions) *Flows {
	return &Flows{
		opts:    opts.withDefaults(),
		out:     windows[scanKey]{m: make(map[scanKey]*flowWindow), compare: compareScanKey},
		in:      windows[netip.Addr]{m: make(map[netip.Addr]*flowWindow), compare: func(a, b netip.Addr) int { return a.Compare(b) }},
		beacons: make(map[beaconKey]*beaconTimes),
		st:      flowsState{Volumes: make(map[string]*volumeStats)},
	}
}

// exeName names the executable of an event's process for beacons and
// volumes: the process tree's path, else "comm:" and the task name, else "".
func exeName(proc *proctree.Entry, p *event.Process) string {
	if proc != nil && proc.Exe != "" {
		return proc.Exe
	}
	if p.Comm != "" {
		return "comm:" + p.Comm
	}
	return ""
}

// Observe counts one network event and returns its stats. It handles:
//
//   - *event.TCPConnect (established or failed: a sweep mostly fails) and
//     outbound *event.UDPFlow: the window of the program, user and login
//     session (see scanKey) and the beacon of (executable, destination);
//   - *event.TCPAccept and inbound *event.UDPFlow: the window of the remote
//     address, counting the local ports and addresses it reached (only
//     accepted connections are visible, not refused ones);
//   - *event.TCPClose: the executable's mean bytes sent (both directions),
//     with a rare-volume finding when the connection sent more than
//     VolumeRatio times the mean and more than VolumeMinBytes, once the
//     executable has VolumeMinSamples earlier connections.
//
// proc is the event's process as the process tree knows it (may be nil).
// Other events return zero stats.
func (f *Flows) Observe(ev any, proc *proctree.Entry) NetStats {
	switch e := ev.(type) {
	case *event.TCPConnect:
		return f.outbound(e.Time, &e.Process, e.Remote, proc)
	case *event.UDPFlow:
		if e.Direction == event.Inbound {
			return f.inbound(e.Time, e.Local, e.Remote)
		}
		return f.outbound(e.Time, &e.Process, e.Remote, proc)
	case *event.TCPAccept:
		return f.inbound(e.Time, e.Local, e.Remote)
	case *event.TCPClose:
		if e.NoProcess {
			return NetStats{}
		}
		return NetStats{Findings: f.volume(e, proc)}
	}
	return NetStats{}
}

// outbound counts a connection a process opened.
func (f *Flows) outbound(when time.Time, p *event.Process, remote netip.AddrPort, proc *proctree.Entry) NetStats {
	t := when.UnixNano()
	addr := remote.Addr().Unmap()
	var s NetStats
	exe := exeName(proc, p)
	key := scanKey{uid: p.UID, session: p.SessionID, exe: exe}
	if exe == "" {
		key.exe = fmt.Sprintf("pid:%d:%d", p.PID, p.StartTime)
	}
	s.PortsToHost, s.HostsOnPort = f.out.observe(key, flowRecord{t: t, addr: addr, port: remote.Port()}, &f.opts)
	if exe != "" {
		s.Beacon, s.BeaconIntervalMs = f.beacon(beaconKey{exe, netip.AddrPortFrom(addr, remote.Port())}, t)
	}
	return s
}

// inbound counts a connection a remote address opened to this host.
func (f *Flows) inbound(when time.Time, local, remote netip.AddrPort) NetStats {
	var s NetStats
	s.PortsToHost, s.HostsOnPort = f.in.observe(remote.Addr().Unmap(), flowRecord{t: when.UnixNano(), addr: local.Addr().Unmap(), port: local.Port()}, &f.opts)
	return s
}

// beacon adds a connection time to a pair and says whether its latest
// connections are regular, with their mean gap in milliseconds.
func (f *Flows) beacon(k beaconKey, t int64) (bool, int64) {
	b := f.beacons[k]
	if b == nil {
		if len(f.beacons) >= f.opts.MaxBeaconPairs {
			f.evictBeacon()
		}
		b = &beaconTimes{times: make([]int64, 0, f.opts.BeaconHistory)}
		f.beacons[k] = b
	}
	if n := len(b.times); n > 0 && t < b.times[n-1] {
		return false, 0 // out of order: the gaps would be wrong
	}
	if len(b.times) == f.opts.BeaconHistory {
		copy(b.times, b.times[1:])
		b.times = b.times[:len(b.times)-1]
	}
	b.times = append(b.times, t)
	if len(b.times) < f.opts.BeaconMinConnections {
		return false, 0
	}
	gaps := len(b.times) - 1
	mean := float64(b.times[gaps]-b.times[0]) / float64(gaps)
	if mean < float64(f.opts.BeaconMinInterval) {
		return false, 0
	}
	var ss float64
	for i := 1; i < len(b.times); i++ {
		d := float64(b.times[i]-b.times[i-1]) - mean
		ss += d * d
	}
	cv := math.Sqrt(ss/float64(gaps)) / mean
	if cv >= f.opts.BeaconMaxCV {
		return false, 0
	}
	return true, int64(math.Round(mean / float64(time.Millisecond)))
}

// evictBeacon drops the pair idle longest (ties: the smallest key).
func (f *Flows) evictBeacon() {
	var victim beaconKey
	oldest, found := int64(math.MaxInt64), false
	for k, b := range f.beacons {
		last := int64(math.MinInt64)
		if n := len(b.times); n > 0 {
			last = b.times[n-1]
		}
		if !found || last < oldest || (last == oldest && compareBeaconKey(k, victim) < 0) {
			victim, oldest, found = k, last, true
		}
	}
	delete(f.beacons, victim)
}

// volume scores and learns the bytes a closed connection sent.
func (f *Flows) volume(e *event.TCPClose, proc *proctree.Entry) []Finding {
	exe := exeName(proc, &e.Process)
	if exe == "" {
		return nil
	}
	t := e.Time.UnixNano()
	v := f.st.Volumes[exe]
	if v == nil {
		for len(f.st.Volumes) >= f.opts.MaxVolumeExes {
			f.evictVolume()
		}
		v = &volumeStats{Sum: decayed{T: t}, Count: decayed{T: t}}
		f.st.Volumes[exe] = v
	}
	var out []Finding
	sent := float64(e.BytesSent)
	if v.N >= uint64(f.opts.VolumeMinSamples) && e.BytesSent > f.opts.VolumeMinBytes {
		mean := 0.0
		if c := v.Count.at(t, f.opts.VolumeHalfLife); c > 0 {
			mean = v.Sum.at(t, f.opts.VolumeHalfLife) / c
		}
		if sent > f.opts.VolumeRatio*mean {
			dst := e.Remote.String()
			var usual string
			ratio := math.Inf(1)
			if mean >= 1 {
				ratio = sent / mean
				usual = fmt.Sprintf("%s× its usual %s", formatCount(uint64(ratio)), formatBytes(mean))
			} else {
				usual = "where its connections usually send nothing"
			}
			out = append(out, Finding{
				Kind:  KindRareVolume,
				Exe:   exe,
				Item:  dst,
				Score: score(v.N, f.opts.VolumeRatio/ratio, 1),
				Reason: fmt.Sprintf("%s sent %s to %s in one connection, %s (decayed mean of %s earlier connections)",
					exe, formatBytes(sent), dst, usual, formatCount(v.N)),
				Time: e.Time,
			})
		}
	}
	// Learn it.
	v.Sum.add(t, sent, f.opts.VolumeHalfLife)
	v.Count.add(t, 1, f.opts.VolumeHalfLife)
	v.N++
	if t > v.Last {
		v.Last = t
	}
	return out
}

// evictVolume drops the executable idle longest (ties: first by name).
func (f *Flows) evictVolume() {
	victim, oldest, found := "", int64(math.MaxInt64), false
	for k, v := range f.st.Volumes {
		if !found || v.Last < oldest || (v.Last == oldest && k < victim) {
			victim, oldest, found = k, v.Last, true
		}
	}
	delete(f.st.Volumes, victim)
}

// Save writes the learned mean volumes to path (normally
// <state dir>/FlowsFile) atomically, as versioned JSON. Windows and beacon
// times are not saved.
func (f *Flows) Save(path string) error {
	return saveState(path, "flows", &f.st)
}

// Load replaces the learned mean volumes with the contents of path. On
// error nothing changes: a missing file matches fs.ErrNotExist, a damaged
// one ErrCorrupt, one of another version ErrVersion.
func (f *Flows) Load(path string) error {
	var st flowsState
	if err := loadState(path, "flows", &st); err != nil {
		return err
	}
	if st.Volumes == nil {
		st.Volumes = make(map[string]*volumeStats)
	}
	for exe, v := range st.Volumes {
		if v == nil {
			return fmt.Errorf("load flows %s: %w: empty entry for %q", path, ErrCorrupt, exe)
		}
		if err := v.Sum.validate(); err != nil {
			return fmt.Errorf("load flows %s: %w: %s: %w", path, ErrCorrupt, exe, err)
		}
		if err := v.Count.validate(); err != nil {
			return fmt.Errorf("load flows %s: %w: %s: %w", path, ErrCorrupt, exe, err)
		}
	}
	f.st = st
	for len(f.st.Volumes) > f.opts.MaxVolumeExes {
		f.evictVolume()
	}
	return nil
}
