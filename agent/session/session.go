// Package session remembers the login sessions the login family saw open,
// by audit session id, so that a process can be traced back to the login
// it came from: every process of a login inherits its session id.
package session

import (
	"sync"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/event"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// DefaultMax bounds the sessions remembered when New is given 0.
const DefaultMax = 4096

// Table is the set of known login sessions. It is safe for concurrent use.
type Table struct {
	mu    sync.Mutex
	max   int
	byID  map[uint32]*vigilv1.Login
	order []uint32 // oldest first, to forget the oldest when full
}

// New returns an empty table holding at most max sessions (0: DefaultMax).
func New(max int) *Table {
	if max <= 0 {
		max = DefaultMax
	}
	return &Table{max: max, byID: make(map[uint32]*vigilv1.Login)}
}

// Observe records a successful session open. Processes of a session may
// outlive its close (nohup, daemons started from a shell), so a closed
// session is kept until the table is full.
func (t *Table) Observe(l *event.Login) {
	if l.Op != event.LoginOpenSession || !l.Succeeded() || l.SessionID == event.NoSessionID {
		return
	}
	login := &vigilv1.Login{
		SessionId:  l.SessionID,
		Service:    l.Service,
		User:       l.User,
		RemoteHost: l.RemoteHost,
		Tty:        l.TTY,
		Time:       timestamppb.New(l.Time),
		Pid:        l.Process.PID,
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byID[l.SessionID]; !ok {
		t.order = append(t.order, l.SessionID)
	}
	t.byID[l.SessionID] = login
	for len(t.order) > t.max {
		delete(t.byID, t.order[0])
		t.order = t.order[1:]
	}
}

// Lookup returns the login session id belongs to, if it was seen.
func (t *Table) Lookup(id uint32) (*vigilv1.Login, bool) {
	if id == event.NoSessionID {
		return nil, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.byID[id]
	return l, ok
}
