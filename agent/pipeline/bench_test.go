package pipeline

import (
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
)

// BenchmarkHandleExecStorm measures the pipeline on what an exec storm
// brings: fork, exec of /usr/bin/true from a shell, exit (one op = the three
// events), with the baseline learning.
func BenchmarkHandleExecStorm(b *testing.B) {
	var c collector
	p := newPipeline(&testing.T{}, time.Hour, &c)
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	shell := event.Process{PID: 500, PPID: 1, StartTime: 1e9, Comm: "sh", SessionID: event.NoSessionID, LoginUID: event.NoLoginUID}
	p.Handle(&event.Exec{Time: t0, Process: shell, Exe: "/usr/bin/dash", Filename: "/bin/sh", Args: []string{"sh", "-c", "loop"}, Cwd: "/"})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		at := t0.Add(time.Duration(i) * time.Microsecond)
		child := event.Process{PID: uint32(1000 + i%30000), PPID: 500, StartTime: uint64(2e9) + uint64(i), Comm: "sh", SessionID: event.NoSessionID, LoginUID: event.NoLoginUID}
		p.Handle(&event.Fork{Time: at, Process: child})
		child.Comm = "true"
		p.Handle(&event.Exec{Time: at, Process: child, Exe: "/usr/bin/true", Filename: "/bin/true", Args: []string{"/bin/true"}, Cwd: "/"})
		p.Handle(&event.Exit{Time: at, Process: child})
	}
}
