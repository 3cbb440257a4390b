package pipeline

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
)

// run is one process of /opt/app/worker doing steps, exiting after them.
func run(pid uint32, at time.Time, steps ...func(p event.Process, at time.Time) any) []any {
	p := event.Process{PID: pid, PPID: 1, StartTime: uint64(pid) * 1e6, Comm: "worker", SessionID: event.NoSessionID, LoginUID: event.NoLoginUID}
	out := []any{
		&event.Fork{Time: at, Process: p},
		&event.Exec{Time: at, Process: p, Exe: "/opt/app/worker", Filename: "/opt/app/worker", Args: []string{"worker"}, Cwd: "/"},
	}
	for i, step := range steps {
		out = append(out, step(p, at.Add(time.Duration(i+1)*time.Millisecond)))
	}
	return append(out, &event.Exit{Time: at.Add(time.Second), Process: p})
}

func readConf(p event.Process, at time.Time) any {
	return &event.File{Time: at, Process: p, Op: event.FileOpen, Path: "/etc/app.conf", Read: true, Ret: 3}
}

func connect(p event.Process, at time.Time) any {
	return &event.TCPConnect{Time: at, Process: p, Remote: netip.MustParseAddrPort("10.0.0.2:5432")}
}

func setuid(p event.Process, at time.Time) any {
	return &event.CredChange{Time: at, Process: p, Syscall: "setuid", Old: event.Creds{UID: 1000}, New: event.Creds{}}
}

func memfd(p event.Process, at time.Time) any {
	return &event.MemfdCreate{Time: at, Process: p, Name: "x", Ret: 3}
}

func mount(p event.Process, at time.Time) any {
	return &event.Mount{Time: at, Process: p, Syscall: "mount", Source: "/dev/sda1", Target: "/mnt", FSType: "ext4"}
}

// TestSequenceModel learns how a program's processes behave, then flags
// one that acts in an order never seen, and not one that behaves as usual;
// the models survive a save and a load.
func TestSequenceModel(t *testing.T) {
	var c collector
	dir := t.TempDir()
	p := newPipeline(t, time.Hour, &c)
	p.opts.StateDir = dir
	t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	for i := range 30 {
		for _, ev := range run(uint32(1000+i), t0.Add(time.Duration(i)*time.Minute), readConf, connect, readConf, connect) {
			p.Handle(ev)
		}
	}
	if n := len(c.incidents()); n != 0 {
		t.Fatalf("learning raised %d incidents", n)
	}
	if err := p.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, SequencesFile)); err != nil {
		t.Fatalf("models not saved: %v", err)
	}

	// A new pipeline, from the saved state, after the learning period.
	var c2 collector
	q := newPipeline(t, time.Hour, &c2)
	q.opts.StateDir = dir
	q.load()
	later := t0.Add(2 * time.Hour)
	for _, ev := range run(2000, later, readConf, connect, readConf, connect) {
		q.Handle(ev)
	}
	if n := len(c2.incidents()); n != 0 {
		t.Fatalf("a usual run raised %d incidents: %v", n, c2.incidents())
	}
	for _, ev := range run(2001, later.Add(time.Minute), setuid, memfd, mount, setuid) {
		q.Handle(ev)
	}
	got := c2.incidents()
	if len(got) != 1 {
		t.Fatalf("an unusual run raised %d incidents, want 1", len(got))
	}
	var seq []string
	for _, sig := range got[0].GetSignals() {
		if sig.GetSource() == "model" {
			seq = append(seq, sig.GetRuleId()+" "+sig.GetExe())
			want := "/opt/app/worker did things in an order its 30 learned runs never showed: " +
				"exec -> credential change -> memfd_create -> mount -> credential change (mean surprise 5.63 nats per event)"
			if sig.GetReason() != want || sig.GetPid() != 2001 {
				t.Errorf("reason %q pid %d", sig.GetReason(), sig.GetPid())
			}
		}
	}
	if len(seq) != 1 || seq[0] != "model.rare-sequence /opt/app/worker" {
		t.Errorf("model signals %q, want one model.rare-sequence on /opt/app/worker", seq)
	}
}

func TestSequenceFileErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), SequencesFile)
	s := newSequences(time.Hour)
	if err := os.WriteFile(path, []byte("not gob"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := s.load(path)
	if err == nil || !strings.Contains(err.Error(), "load sequence models "+SequencesFile) {
		t.Errorf("load of garbage: %v", err)
	}
	if len(s.models) != 0 {
		t.Error("a failed load changed the models")
	}
}
