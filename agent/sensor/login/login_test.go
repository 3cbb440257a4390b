package login

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/kernelfs"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// sensorPoll is how long a record may wait in the ring for the reader.
const sensorPoll = sensor.DefaultPollInterval

// collector runs a loaded sensor and keeps every decoded login event.
type collector struct {
	mu     sync.Mutex
	events []*event.Login
}

func startSensor(t *testing.T, opts Options) (*Sensor, *collector) {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := kernelfs.EnsureMounted(kernelfs.Needed); err != nil {
		t.Fatalf("mount kernel file systems: %v", err)
	}
	s, err := Load(opts)
	if err != nil {
		t.Fatalf("load login sensor: %v", err)
	}
	c := &collector{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := s.Next()
			if errors.Is(err, sensor.ErrClosed) {
				return
			}
			if err != nil {
				t.Errorf("next: %v", err)
				return
			}
			l, ok := ev.(*event.Login)
			if !ok {
				t.Errorf("next returned %T, want *event.Login", ev)
				continue
			}
			c.mu.Lock()
			c.events = append(c.events, l)
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		<-done
	})
	return s, c
}

// waitN waits until n events match and returns them in order of arrival.
func (c *collector) waitN(t *testing.T, what string, n int, match func(*event.Login) bool) []*event.Login {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got []*event.Login
		c.mu.Lock()
		for _, ev := range c.events {
			if match(ev) {
				got = append(got, ev)
			}
		}
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			c.dump(t)
			t.Fatalf("%d %s events within 10s, want %d", len(got), what, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *collector) dump(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.events {
		t.Logf("event: %s %v service=%q user=%q ruser=%q rhost=%q tty=%q session=%d proc=%+v", ev.Op, ev.Result, ev.Service, ev.User, ev.RemoteUser, ev.RemoteHost, ev.TTY, ev.SessionID, ev.Process)
	}
}

func checkProcess(t *testing.T, what string, p event.Process, pid, uid uint32, comm string) {
	t.Helper()
	if pid != 0 && p.PID != pid {
		t.Errorf("%s: pid = %d, want %d", what, p.PID, pid)
	}
	if p.UID != uid || p.EUID != uid {
		t.Errorf("%s: uid/euid = %d/%d, want %d", what, p.UID, p.EUID, uid)
	}
	if p.Comm != comm {
		t.Errorf("%s: comm = %q, want %q", what, p.Comm, comm)
	}
	if p.StartTime == 0 || p.CgroupID == 0 {
		t.Errorf("%s: start time %d, cgroup id %d: want both set", what, p.StartTime, p.CgroupID)
	}
}

func checkItems(t *testing.T, ev *event.Login, service, user, ruser, rhost, tty string) {
	t.Helper()
	if ev.Service != service || ev.User != user || ev.RemoteUser != ruser || ev.RemoteHost != rhost || ev.TTY != tty {
		t.Errorf("%s: service/user/ruser/rhost/tty = %q/%q/%q/%q/%q, want %q/%q/%q/%q/%q", ev.Op,
			ev.Service, ev.User, ev.RemoteUser, ev.RemoteHost, ev.TTY, service, user, ruser, rhost, tty)
	}
	if ev.Truncated || ev.LayoutMismatch || ev.NoHandle {
		t.Errorf("%s: flags truncated=%v layout mismatch=%v no handle=%v, want none", ev.Op, ev.Truncated, ev.LayoutMismatch, ev.NoHandle)
	}
	if ev.Duration <= 0 || ev.Duration > time.Minute {
		t.Errorf("%s: duration %v out of range", ev.Op, ev.Duration)
	}
}
