package fleet

import (
	"fmt"
	"testing"
	"time"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// TestRecentLosses: losses count while they grew within LossWindow, so a
// one-time loss at start-up clears; a restarted agent counts from zero.
func TestRecentLosses(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	now := t0
	r := New()
	r.now = func() time.Time { return now }
	r.Connected(&vigilv1.Hello{HostId: "h"}, "peer")
	beat := func(at time.Duration, lost map[string]uint64) {
		now = t0.Add(at)
		r.Heartbeat("h", &vigilv1.Heartbeat{EventsLost: lost})
	}
	recent := func(at time.Duration) string {
		a, _ := r.Get("h")
		return fmt.Sprint(a.RecentLosses(t0.Add(at)))
	}
	if got := recent(0); got != "map[]" {
		t.Errorf("before any heartbeat: %s", got)
	}
	// A loss at start-up, then none: it counts for LossWindow, then clears.
	beat(0, map[string]uint64{"file": 7, "process": 0})
	for _, tc := range []struct {
		at   time.Duration
		lost map[string]uint64
		want string
	}{
		{0, nil, "map[file:7]"},
		{10 * time.Second, map[string]uint64{"file": 7, "process": 0}, "map[file:7]"},
		{4*time.Minute + 50*time.Second, map[string]uint64{"file": 7, "process": 0}, "map[file:7]"},
		{5*time.Minute + 10*time.Second, map[string]uint64{"file": 7, "process": 0}, "map[]"},
		{6 * time.Minute, map[string]uint64{"file": 7, "process": 0}, "map[]"},
		// New losses count again, only the growth.
		{7 * time.Minute, map[string]uint64{"file": 9, "process": 3}, "map[file:2 process:3]"},
		{11 * time.Minute, map[string]uint64{"file": 9, "process": 3}, "map[file:2 process:3]"},
		{12*time.Minute + 10*time.Second, map[string]uint64{"file": 9, "process": 3}, "map[]"},
		// The agent restarted: its counts start again from zero.
		{13 * time.Minute, map[string]uint64{"file": 1, "process": 0}, "map[file:1]"},
	} {
		if tc.lost != nil {
			beat(tc.at, tc.lost)
		}
		if got := recent(tc.at); got != tc.want {
			t.Errorf("at %v: recent losses %s, want %s", tc.at, got, tc.want)
		}
	}
	// Without a new heartbeat, the window still moves on.
	if got := recent(19 * time.Minute); got != "map[]" {
		t.Errorf("6 minutes after the restart's loss: %s, want map[]", got)
	}
}
