package anomaly

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
)

// sshd is a login event of sshd from host for user; ok says whether it succeeded.
func sshd(at time.Time, op event.LoginOp, host, user string, ok bool, pid uint32) *event.Login {
	r := event.PAMAuthErr
	if ok {
		r = event.PAMSuccess
	}
	return &event.Login{Time: at, Process: event.Process{PID: pid, StartTime: uint64(pid) * 1000}, Op: op,
		Result: r, Service: "sshd", User: user, RemoteHost: host, TTY: "ssh"}
}

func TestLoginsFailureCounters(t *testing.T) {
	l := NewLogins(LoginOptions{})
	at := t0
	var s LoginStats
	// Five failures from 10.0.0.5 for alice.
	for i := range 5 {
		s = l.Observe(sshd(at.Add(time.Duration(i)*10*time.Second), event.LoginAuthenticate, "10.0.0.5", "alice", false, 10))
	}
	if want := (LoginStats{FailuresFromSource: 5, UsersFromSource: 1, FailuresForUser: 5, SourcesForUser: 1, Learning: true}); s != want {
		t.Fatalf("after 5 failures: %+v, want %+v", s, want)
	}
	// Spraying four users from 10.0.0.6.
	for i, u := range []string{"root", "admin", "oracle", "test"} {
		s = l.Observe(sshd(at.Add(time.Minute+time.Duration(i)*time.Second), event.LoginAuthenticate, "10.0.0.6", u, false, 11))
	}
	if want := (LoginStats{FailuresFromSource: 4, UsersFromSource: 4, FailuresForUser: 1, SourcesForUser: 1, Learning: true}); s != want {
		t.Fatalf("spraying: %+v, want %+v", s, want)
	}
	// alice from two more sources (an account check failing counts too).
	l.Observe(sshd(at.Add(2*time.Minute), event.LoginAuthenticate, "10.0.0.7", "alice", false, 12))
	s = l.Observe(sshd(at.Add(2*time.Minute+time.Second), event.LoginAccount, "10.0.0.8", "alice", false, 13))
	if want := (LoginStats{FailuresFromSource: 1, UsersFromSource: 1, FailuresForUser: 7, SourcesForUser: 3, Learning: true}); s != want {
		t.Fatalf("distributed: %+v, want %+v", s, want)
	}
	// bob succeeds after three failures.
	for i := range 3 {
		l.Observe(sshd(at.Add(3*time.Minute+time.Duration(i)*time.Second), event.LoginAuthenticate, "10.0.0.9", "bob", false, 14))
	}
	s = l.Observe(sshd(at.Add(3*time.Minute+5*time.Second), event.LoginAuthenticate, "10.0.0.9", "bob", true, 15))
	if want := (LoginStats{FailuresFromSource: 3, UsersFromSource: 1, FailuresForUser: 3, SourcesForUser: 1, FailuresBeforeSuccess: 3, Learning: true}); s != want {
		t.Fatalf("success after failures: %+v, want %+v", s, want)
	}
	// Other operations are not counted.
	if s = l.Observe(sshd(at.Add(3*time.Minute+6*time.Second), event.LoginOpenSession, "10.0.0.9", "bob", true, 15)); s != (LoginStats{Learning: true}) {
		t.Fatalf("session open: %+v", s)
	}
	unreadable := sshd(at.Add(3*time.Minute+7*time.Second), event.LoginAuthenticate, "", "", false, 16)
	unreadable.LayoutMismatch = true
	if s = l.Observe(unreadable); s != (LoginStats{Learning: true}) {
		t.Fatalf("unreadable items: %+v", s)
	}
}

func TestLoginsWindow(t *testing.T) {
	l := NewLogins(LoginOptions{Window: 10 * time.Minute})
	l.Observe(sshd(t0, event.LoginAuthenticate, "10.0.0.5", "alice", false, 10))
	l.Observe(sshd(t0.Add(time.Minute), event.LoginAuthenticate, "10.0.0.5", "bob", false, 10))
	// Exactly one window later the first failure still counts.
	s := l.Observe(sshd(t0.Add(10*time.Minute), event.LoginAuthenticate, "10.0.0.5", "alice", false, 10))
	if s.FailuresFromSource != 3 || s.UsersFromSource != 2 || s.FailuresForUser != 2 {
		t.Fatalf("at the edge of the window: %+v", s)
	}
	// A little later it has left the window.
	s = l.Observe(sshd(t0.Add(10*time.Minute+time.Second), event.LoginAuthenticate, "10.0.0.5", "alice", false, 10))
	if want := (LoginStats{FailuresFromSource: 3, UsersFromSource: 2, FailuresForUser: 2, SourcesForUser: 1, Learning: true}); s != want {
		t.Fatalf("after the first left the window: %+v, want %+v", s, want)
	}
	// Much later everything has left it.
	s = l.Observe(sshd(t0.Add(time.Hour), event.LoginAuthenticate, "10.0.0.5", "bob", true, 11))
	if want := (LoginStats{Learning: true}); s != want {
		t.Fatalf("an hour later: %+v, want %+v", s, want)
	}
	if len(l.bySource) != 0 || len(l.byUser) != 0 || len(l.byPair) != 0 || len(l.fails)-l.head != 0 {
		t.Fatalf("window not emptied: %d sources, %d users, %d pairs, %d failures", len(l.bySource), len(l.byUser), len(l.byPair), len(l.fails)-l.head)
	}
}

func TestLoginsLocalSource(t *testing.T) {
	l := NewLogins(LoginOptions{})
	su := &event.Login{Time: t0, Op: event.LoginAuthenticate, Result: event.PAMAuthErr, Service: "sudo", User: "root", RemoteUser: "mallory", TTY: "/dev/pts/1"}
	if got := SourceKey(su); got != "local:sudo:/dev/pts/1" {
		t.Fatalf("SourceKey = %q", got)
	}
	l.Observe(su)
	other := *su
	other.TTY = "/dev/pts/2"
	s := l.Observe(&other)
	if s.FailuresFromSource != 1 || s.FailuresForUser != 2 || s.SourcesForUser != 2 {
		t.Fatalf("two terminals: %+v", s)
	}
}

func TestLoginsNewSource(t *testing.T) {
	l := NewLogins(LoginOptions{LearningPeriod: time.Hour, Location: time.UTC})
	s := l.Observe(sshd(t0, event.LoginAccount, "10.0.0.1", "alice", true, 10))
	if s.NewSource || !s.Learning {
		t.Fatalf("during learning: %+v", s)
	}
	after := t0.Add(2 * time.Hour)
	if s = l.Observe(sshd(after, event.LoginAccount, "10.0.0.1", "alice", true, 11)); s.NewSource || s.Learning {
		t.Fatalf("learned source: %+v", s)
	}
	if s = l.Observe(sshd(after.Add(time.Minute), event.LoginAccount, "10.0.0.2", "alice", true, 12)); !s.NewSource {
		t.Fatalf("new source: %+v", s)
	}
	if s = l.Observe(sshd(after.Add(2*time.Minute), event.LoginAccount, "10.0.0.2", "alice", true, 13)); s.NewSource {
		t.Fatalf("source seen once already: %+v", s)
	}
	// bob from alice's source is new for bob.
	if s = l.Observe(sshd(after.Add(3*time.Minute), event.LoginAccount, "10.0.0.1", "bob", true, 14)); !s.NewSource {
		t.Fatalf("other user: %+v", s)
	}
	// A password login: authentication and account check of one process
	// report the same flags and are learned once.
	auth := l.Observe(sshd(after.Add(4*time.Minute), event.LoginAuthenticate, "10.0.0.3", "alice", true, 15))
	acct := l.Observe(sshd(after.Add(4*time.Minute+time.Second), event.LoginAccount, "10.0.0.3", "alice", true, 15))
	if !auth.NewSource || !acct.NewSource {
		t.Fatalf("password login: authenticate %+v, account %+v", auth, acct)
	}
	if got := l.st.Users["alice"].Total; got != 5 {
		t.Fatalf("alice's logins learned: %d, want 5", got)
	}
	if s = l.Observe(sshd(after.Add(5*time.Minute), event.LoginAccount, "10.0.0.3", "alice", true, 16)); s.NewSource {
		t.Fatalf("next login from it: %+v", s)
	}
}

// learnHours has user log in n times during learning, at 09:00 to 16:00 UTC.
func learnHours(l *Logins, user string, n int) {
	for i := range n {
		at := t0.Add(time.Duration(9+i%8) * time.Hour).Add(time.Duration(i) * time.Minute)
		l.Observe(sshd(at, event.LoginAccount, "10.0.0.1", user, true, uint32(100+i)))
	}
}

func TestLoginsUnusualHour(t *testing.T) {
	l := NewLogins(LoginOptions{Location: time.UTC})
	learnHours(l, "alice", 20)
	learnHours(l, "bob", 19)
	day2 := t0.Add(48 * time.Hour)
	night, noon := day2.Add(3*time.Hour), day2.Add(10*time.Hour)
	if s := l.Observe(sshd(night, event.LoginAccount, "10.0.0.1", "alice", true, 500)); !s.UnusualHour || s.NewSource || s.Learning {
		t.Fatalf("alice at 03:00: %+v", s)
	}
	if s := l.Observe(sshd(noon, event.LoginAccount, "10.0.0.1", "alice", true, 501)); s.UnusualHour {
		t.Fatalf("alice at 10:00: %+v", s)
	}
	if s := l.Observe(sshd(night, event.LoginAccount, "10.0.0.1", "bob", true, 502)); s.UnusualHour {
		t.Fatalf("bob (19 logins learned) at 03:00: %+v", s)
	}
	// During learning nothing is unusual.
	l2 := NewLogins(LoginOptions{Location: time.UTC})
	learnHours(l2, "carol", 30)
	if s := l2.Observe(sshd(t0.Add(23*time.Hour), event.LoginAccount, "10.0.0.2", "carol", true, 503)); s.UnusualHour || s.NewSource || !s.Learning {
		t.Fatalf("during learning: %+v", s)
	}
}

func TestLoginsSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, LoginsFile)
	l := NewLogins(LoginOptions{Location: time.UTC})
	learnHours(l, "alice", 20)
	if err := l.Save(path); err != nil {
		t.Fatal(err)
	}
	loaded := NewLogins(LoginOptions{Location: time.UTC})
	if err := loaded.Load(path); err != nil {
		t.Fatal(err)
	}
	night := t0.Add(51 * time.Hour)
	for _, x := range []*Logins{l, loaded} {
		s := x.Observe(sshd(night, event.LoginAccount, "10.0.0.9", "alice", true, 900))
		if want := (LoginStats{NewSource: true, UnusualHour: true}); s != want {
			t.Fatalf("after load: %+v, want %+v", s, want)
		}
		if s = x.Observe(sshd(night.Add(time.Hour), event.LoginAccount, "10.0.0.1", "alice", true, 901)); s.NewSource {
			t.Fatalf("learned source after load: %+v", s)
		}
	}
	if err := loaded.Load(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"format":"vigil-anomaly-logins","version":1,"state":{"start":1,"users":{"alice":{"hours":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"total":2,"last":1,"sources":{}}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := loaded.Load(bad); !errors.Is(err, ErrCorrupt) || err.Error() != "load logins "+bad+`: corrupt state file: user "alice" has 1 logins by hour but a total of 2` {
		t.Fatalf("inconsistent file: %v", err)
	}
	// The failed load left what was learned in place.
	if got := loaded.st.Users["alice"].Total; got != 22 {
		t.Fatalf("alice's logins after a failed load: %d, want 22", got)
	}
}
