package session

import (
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
)

func open(id uint32, host string) *event.Login {
	return &event.Login{Time: time.Unix(100, 0), Op: event.LoginOpenSession, Result: event.PAMSuccess,
		Service: "sshd", User: "alice", RemoteHost: host, TTY: "ssh", SessionID: id, Process: event.Process{PID: 42}}
}

func TestObserveAndLookup(t *testing.T) {
	tab := New(2)
	tab.Observe(open(7, "10.0.0.9"))
	l, ok := tab.Lookup(7)
	if !ok || l.Service != "sshd" || l.User != "alice" || l.RemoteHost != "10.0.0.9" || l.Tty != "ssh" ||
		l.Pid != 42 || l.SessionId != 7 || !l.Time.AsTime().Equal(time.Unix(100, 0)) {
		t.Fatalf("lookup 7 = %v, %v", l, ok)
	}

	// Only successful session opens with a session id count.
	failed := open(8, "h")
	failed.Result = event.PAMResult(7)
	auth := open(9, "h")
	auth.Op = event.LoginAuthenticate
	unset := open(event.NoSessionID, "h")
	for _, l := range []*event.Login{failed, auth, unset} {
		tab.Observe(l)
	}
	for _, id := range []uint32{8, 9, event.NoSessionID} {
		if _, ok := tab.Lookup(id); ok {
			t.Errorf("session %d recorded", id)
		}
	}

	// Full: the oldest goes.
	tab.Observe(open(10, "a"))
	tab.Observe(open(11, "b"))
	if _, ok := tab.Lookup(7); ok {
		t.Error("oldest session kept past the bound")
	}
	if _, ok := tab.Lookup(11); !ok {
		t.Error("newest session forgotten")
	}
}
