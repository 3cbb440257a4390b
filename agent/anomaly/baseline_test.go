package anomaly

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/proctree"
)

// t0 is the time of the first event of every test workload.
var t0 = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

const (
	nginx  = "/usr/sbin/nginx"
	logger = "/usr/bin/logger"
)

// nginxEntry is the nginx master as the process tree knows it.
var nginxEntry = &proctree.Entry{PID: 100, PPID: 1, StartTime: 1e9, UID: 0, Exe: nginx, Comm: "nginx"}

// step is one event of a workload with the entries Observe is given.
type step struct {
	ev           any
	proc, parent *proctree.Entry
}

// execStep is nginx starting exe as www-data (uid 33).
func execStep(at time.Time, pid uint32, exe string) step {
	ev := &event.Exec{Time: at, Process: event.Process{PID: pid, PPID: nginxEntry.PID, UID: 33, StartTime: uint64(at.UnixNano())}, Exe: exe, Filename: exe}
	child := &proctree.Entry{PID: pid, PPID: nginxEntry.PID, UID: 33, Exe: exe}
	return step{ev: ev, proc: child, parent: nginxEntry}
}

// nginxWorkload is 50 rounds over just under 2 h (one every 144 s) from
// start: nginx starts logger, reads /proc/<pid>/status, a user's page and
// its log, connects to the database and looks its name up.
func nginxWorkload(start time.Time) []step {
	var out []step
	users := []string{"alice", "bob", "carol"}
	for i := range 50 {
		at := start.Add(time.Duration(i) * 144 * time.Second)
		pid := uint32(2000 + i)
		p := event.Process{PID: nginxEntry.PID, StartTime: nginxEntry.StartTime, Comm: "nginx"}
		out = append(out,
			execStep(at, pid, logger),
			step{ev: &event.File{Time: at.Add(time.Second), Process: p, Op: event.FileOpen, Path: "/proc/" + strconv.Itoa(int(pid)) + "/status", Read: true}, proc: nginxEntry},
			step{ev: &event.File{Time: at.Add(2 * time.Second), Process: p, Op: event.FileOpen, Path: "/home/" + users[i%3] + "/public_html/index.html", Read: true}, proc: nginxEntry},
			step{ev: &event.File{Time: at.Add(3 * time.Second), Process: p, Op: event.FileOpen, Path: "/var/log/nginx/access.log", Write: true}, proc: nginxEntry},
			step{ev: &event.DNS{Time: at.Add(4 * time.Second), Process: p, Direction: event.Outbound, Name: "db.internal", QType: 1}, proc: nginxEntry},
			step{ev: &event.TCPConnect{Time: at.Add(5 * time.Second), Process: p, Remote: netip.MustParseAddrPort("10.0.0.20:5432")}, proc: nginxEntry},
		)
	}
	return out
}

// run observes steps and returns every finding.
func run(b *Baseline, steps []step) []Finding {
	var out []Finding
	for _, s := range steps {
		out = append(out, b.Observe(s.ev, s.proc, s.parent)...)
	}
	return out
}

// learnedBaseline is a baseline with a 2 h learning period that learned
// nginxWorkload from t0.
func learnedBaseline(t *testing.T) *Baseline {
	t.Helper()
	b := NewBaseline(BaselineOptions{LearningPeriod: 2 * time.Hour})
	if f := run(b, nginxWorkload(t0)); len(f) != 0 {
		t.Fatalf("findings during learning: %+v", f)
	}
	if !b.Learning() {
		t.Fatal("Learning() = false before the learning period ended")
	}
	return b
}

// replayWithShell is nginxWorkload after learning, with nginx starting
// /bin/sh 10 s after round 24 began (when 75 children were started).
func replayWithShell() []step {
	start := t0.Add(2 * time.Hour)
	steps := nginxWorkload(start)
	inject := execStep(start.Add(24*144*time.Second+10*time.Second), 9999, "/bin/sh")
	return append(steps[:25*6:25*6], append([]step{inject}, steps[25*6:]...)...)
}

const shellReason = "/usr/sbin/nginx started /bin/sh, which it has not started in 75 earlier executions over 2 h"

func TestBaselineReplayIsQuiet(t *testing.T) {
	b := learnedBaseline(t)
	if f := run(b, nginxWorkload(t0.Add(2*time.Hour))); len(f) != 0 {
		t.Fatalf("replay of the learned workload: %d findings, first %+v", len(f), f[0])
	}
	if b.Learning() {
		t.Fatal("Learning() = true after the learning period")
	}
	if got, want := b.LearningEnds(), t0.Add(2*time.Hour); !got.Equal(want) {
		t.Fatalf("LearningEnds() = %v, want %v", got, want)
	}
	// nginx, logger; nginx learned one child, three file patterns and two
	// destinations, logger one user.
	if exes, items := b.Len(); exes != 2 || items != 7 {
		t.Fatalf("Len() = %d, %d; want 2, 7", exes, items)
	}
}

func TestBaselineFindsInjectedShell(t *testing.T) {
	b := learnedBaseline(t)
	got := run(b, replayWithShell())
	want := []Finding{{
		Kind:   KindRareChild,
		Exe:    nginx,
		Item:   "/bin/sh",
		Score:  450.0 / 460.0, // 300 learned + 150 replayed observations of nginx
		Reason: shellReason,
		Time:   t0.Add(2*time.Hour + 24*144*time.Second + 10*time.Second),
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("findings:\n got %+v\nwant %+v", got, want)
	}
}

func TestBaselineFirstOfKind(t *testing.T) {
	b := NewBaseline(BaselineOptions{LearningPeriod: time.Minute})
	p := event.Process{PID: 7, Comm: "cron"}
	proc := &proctree.Entry{PID: 7, Exe: "/usr/sbin/cron"}
	for i := range 12 {
		b.Observe(&event.File{Time: t0.Add(time.Duration(i) * time.Second), Process: p, Path: "/etc/crontab"}, proc, nil)
	}
	at := t0.Add(2 * time.Hour)
	got := b.Observe(&event.TCPConnect{Time: at, Process: p, Remote: netip.MustParseAddrPort("[2001:db8::1]:443")}, proc, nil)
	want := []Finding{{
		Kind: KindRareDestination, Exe: "/usr/sbin/cron", Item: "[2001:db8::1]:443", Score: 12.0 / 22.0,
		Reason: "/usr/sbin/cron connected to [2001:db8::1]:443, its first network destination in 12 earlier events over 2 h",
		Time:   at,
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("findings:\n got %+v\nwant %+v", got, want)
	}
	// A new user of a learned executable.
	got = b.Observe(&event.Exec{Time: at, Process: event.Process{PID: 8, UID: 1000}, Exe: "/usr/sbin/cron"}, proc, nil)
	if len(got) != 1 || got[0].Kind != KindRareUser || got[0].Item != "1000" ||
		got[0].Reason != "/usr/sbin/cron ran as uid 1000, its first execution seen in 13 earlier events over 2 h" {
		t.Fatalf("rare user: %+v", got)
	}
}

func TestBaselineDecay(t *testing.T) {
	b := NewBaseline(BaselineOptions{LearningPeriod: 10 * time.Second, HalfLife: time.Hour, MinHistory: 4})
	p := event.Process{PID: 7, Comm: "backup"}
	proc := &proctree.Entry{PID: 7, Exe: "/usr/bin/backup"}
	connect := func(at time.Time) []Finding {
		return b.Observe(&event.TCPConnect{Time: at, Process: p, Remote: netip.MustParseAddrPort("10.0.0.9:873")}, proc, nil)
	}
	for range 4 {
		connect(t0) // weight 4
	}
	// After three half-lives the weight is 0.5: still known. It is then 1.5.
	if f := connect(t0.Add(3 * time.Hour)); len(f) != 0 {
		t.Fatalf("after 3 half-lives: %+v", f)
	}
	// Two more half-lives: 0.375, below 0.5.
	at := t0.Add(5 * time.Hour)
	got := connect(at)
	want := []Finding{{
		Kind: KindRareDestination, Exe: "/usr/bin/backup", Item: "10.0.0.9:873",
		Score:  (5.0 / 15.0) * (1 - 0.375/0.5),
		Reason: "/usr/bin/backup connected to 10.0.0.9:873, which it has not connected to for 2 h (5 earlier network events over 5 h)",
		Time:   at,
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("findings:\n got %+v\nwant %+v", got, want)
	}
	// Seen again at once: known again.
	if f := connect(at.Add(time.Second)); len(f) != 0 {
		t.Fatalf("right after being seen: %+v", f)
	}
}

func TestBaselineSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), BaselineFile)
	b := learnedBaseline(t)
	if err := b.Save(path); err != nil {
		t.Fatal(err)
	}
	loaded := NewBaseline(BaselineOptions{LearningPeriod: 2 * time.Hour})
	if err := loaded.Load(path); err != nil {
		t.Fatal(err)
	}
	if loaded.Learning() != b.Learning() || !loaded.LearningEnds().Equal(b.LearningEnds()) {
		t.Fatal("learning period not restored")
	}
	want := run(b, replayWithShell())
	got := run(loaded, replayWithShell())
	if len(want) != 1 || !reflect.DeepEqual(got, want) {
		t.Fatalf("after Load:\n got %+v\nwant %+v", got, want)
	}
	// No temporary file is left behind.
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != BaselineFile {
		t.Fatalf("state dir holds %v", entries)
	}
}

func TestBaselineLoadErrors(t *testing.T) {
	dir := t.TempDir()
	b := learnedBaseline(t)
	exes, items := b.Len()

	missing := filepath.Join(dir, "missing.json")
	err := b.Load(missing)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}

	corrupt := filepath.Join(dir, "corrupt.json")
	if err := os.WriteFile(corrupt, []byte(`{"format":"vigil-anomaly-baseline","version":1,"state":{"exes":`), 0o600); err != nil {
		t.Fatal(err)
	}
	err = b.Load(corrupt)
	if !errors.Is(err, ErrCorrupt) || err.Error() != "load baseline "+corrupt+": corrupt state file: unexpected EOF" {
		t.Fatalf("corrupt file: %v", err)
	}

	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = b.Load(garbage)
	if !errors.Is(err, ErrCorrupt) || err.Error() != "load baseline "+garbage+": corrupt state file: invalid character 'o' in literal null (expecting 'u')" {
		t.Fatalf("garbage file: %v", err)
	}

	wrongKind := filepath.Join(dir, "logins.json")
	if err := NewLogins(LoginOptions{}).Save(wrongKind); err != nil {
		t.Fatal(err)
	}
	err = b.Load(wrongKind)
	if !errors.Is(err, ErrCorrupt) || err.Error() != `load baseline `+wrongKind+`: corrupt state file: format is "vigil-anomaly-logins", want "vigil-anomaly-baseline"` {
		t.Fatalf("logins file: %v", err)
	}

	newer := filepath.Join(dir, "newer.json")
	if err := os.WriteFile(newer, []byte(`{"format":"vigil-anomaly-baseline","version":2,"state":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	err = b.Load(newer)
	if !errors.Is(err, ErrVersion) || err.Error() != "load baseline "+newer+": unsupported state file version 2 (this agent reads 1)" {
		t.Fatalf("newer file: %v", err)
	}

	negative := filepath.Join(dir, "negative.json")
	if err := os.WriteFile(negative, []byte(`{"format":"vigil-anomaly-baseline","version":1,"state":{"start":1,"now":2,"exes":{"/bin/x":{"activity":{"w":-1,"t":1}}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	err = b.Load(negative)
	if !errors.Is(err, ErrCorrupt) || err.Error() != "load baseline "+negative+": corrupt state file: /bin/x: activity: impossible weight -1" {
		t.Fatalf("negative weight: %v", err)
	}

	// Nothing was lost on the way.
	if e, i := b.Len(); e != exes || i != items {
		t.Fatalf("Len() after failed loads = %d, %d; want %d, %d", e, i, exes, items)
	}
	if got := run(b, replayWithShell()); len(got) != 1 || got[0].Reason != shellReason {
		t.Fatalf("after failed loads: %+v", got)
	}
}

func TestBaselineAccept(t *testing.T) {
	b := learnedBaseline(t)
	if err := b.Accept(KindRareChild, nginx, "/bin/sh"); err != nil {
		t.Fatal(err)
	}
	if got := run(b, replayWithShell()); len(got) != 0 {
		t.Fatalf("accepted behaviour still reported: %+v", got)
	}
	// A different child is still rare.
	at := t0.Add(5 * time.Hour)
	got := b.Observe(execStep(at, 7777, "/usr/bin/python3").ev, nil, nginxEntry)
	if len(got) != 1 || got[0].Kind != KindRareChild || got[0].Item != "/usr/bin/python3" {
		t.Fatalf("other child: %+v", got)
	}

	// Learn a file finding: the path is generalised, so another user's
	// copy of it is known too.
	if err := b.Learn(Finding{Kind: KindRareFile, Exe: nginx, Item: "/home/dave/.ssh/authorized_keys", Time: at}); err != nil {
		t.Fatal(err)
	}
	p := event.Process{PID: nginxEntry.PID, StartTime: nginxEntry.StartTime}
	if f := b.Observe(&event.File{Time: at, Process: p, Path: "/home/erin/.ssh/authorized_keys"}, nginxEntry, nil); len(f) != 0 {
		t.Fatalf("learned file still reported: %+v", f)
	}
	if f := b.Observe(&event.File{Time: at, Process: p, Path: "/etc/shadow"}, nginxEntry, nil); len(f) != 1 || f[0].Kind != KindRareFile {
		t.Fatalf("other file: %+v", f)
	}

	if err := b.Accept(KindRareVolume, nginx, "10.0.0.1:443"); err == nil ||
		err.Error() != "accept rare-volume: a Baseline learns only rare-child, rare-file, rare-destination and rare-user" {
		t.Fatalf("Accept(rare-volume) = %v", err)
	}
	if err := NewBaseline(BaselineOptions{}).Accept(KindRareChild, nginx, "/bin/sh"); err == nil ||
		err.Error() != "accept rare-child /usr/sbin/nginx /bin/sh: the baseline has seen no event yet, so it has no time to record the behaviour at" {
		t.Fatalf("Accept on an empty baseline = %v", err)
	}
}

func TestBaselineCaps(t *testing.T) {
	b := NewBaseline(BaselineOptions{LearningPeriod: time.Hour, MaxExes: 2, MaxItemsPerExe: 3})
	p := event.Process{PID: 1}
	file := func(exe, path string, at time.Duration) {
		b.Observe(&event.File{Time: t0.Add(at), Process: p, Path: path}, &proctree.Entry{Exe: exe}, nil)
	}
	// /bin/a: x three times, y twice, z once; then w evicts z.
	for i, path := range []string{"/x", "/x", "/x", "/y", "/y", "/z", "/w"} {
		file("/bin/a", path, time.Duration(i)*time.Second)
	}
	items := b.st.Exes["/bin/a"].File.Items
	if _, ok := items["/z"]; ok || len(items) != 3 {
		t.Fatalf("items of /bin/a: %v", items)
	}
	// /bin/b is less active than /bin/a; /bin/c takes its place.
	file("/bin/b", "/x", 10*time.Second)
	file("/bin/c", "/x", 11*time.Second)
	if _, ok := b.st.Exes["/bin/b"]; ok || len(b.st.Exes) != 2 {
		t.Fatalf("exes: %v", b.st.Exes)
	}
}
