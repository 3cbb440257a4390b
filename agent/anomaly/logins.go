package anomaly

import (
	"fmt"
	"math"
	"time"

	"github.com/vigil-sensor/vigil/agent/event"
)

// Defaults of LoginOptions.
const (
	// DefaultLoginWindow is the sliding window of the failure counters.
	DefaultLoginWindow = 10 * time.Minute
	// DefaultMinLearnedLogins is how many successful logins of a user must
	// be learned before an hour of day can be unusual for them.
	DefaultMinLearnedLogins = 20
	// DefaultUnusualHourShare is the share of a user's successful logins
	// under which an hour of day is unusual for them (1 %).
	DefaultUnusualHourShare = 0.01
	// DefaultMaxLoginFailures bounds the failures kept in the window.
	DefaultMaxLoginFailures = 16384
	// DefaultMaxLoginUsers bounds the users whose sources and hours are learned.
	DefaultMaxLoginUsers = 1024
	// DefaultMaxSourcesPerUser bounds the sources learned per user.
	DefaultMaxSourcesPerUser = 64
)

// maxRecentLogins bounds the successes remembered to recognise the
// pam_acct_mgmt that follows a pam_authenticate of the same login.
const maxRecentLogins = 1024

// LoginOptions tune Logins. Zero (or negative) fields take the defaults.
//
// Memory: a failure in the window costs about 100 bytes with its share of
// the counters, a learned source about 80 bytes; the defaults bound Logins
// to about 2 MB of failures and, in the worst case, 5 MB of sources for
// 1,024 users of 64 sources each. Only successful logins are learned, so
// failures from many addresses or for many names cannot fill these tables.
type LoginOptions struct {
	// Window is the sliding window of the counters (DefaultLoginWindow).
	Window time.Duration
	// LearningPeriod is how long after the first login event NewSource and
	// UnusualHour stay false while sources and hours are learned
	// (DefaultLearningPeriod).
	LearningPeriod time.Duration
	// MinLearnedLogins is how many successful logins of a user are needed
	// before UnusualHour can be set (DefaultMinLearnedLogins).
	MinLearnedLogins int
	// UnusualHourShare is the share of a user's logins under which an hour
	// is unusual (DefaultUnusualHourShare).
	UnusualHourShare float64
	// Location is the time zone of the hours of day (nil: time.Local).
	Location *time.Location
	// MaxFailures bounds the failures in the window (DefaultMaxLoginFailures);
	// beyond it the oldest are dropped, so counts are then lower bounds.
	MaxFailures int
	// MaxUsers bounds the users learned (DefaultMaxLoginUsers); when full,
	// the user whose last login is oldest is forgotten.
	MaxUsers int
	// MaxSourcesPerUser bounds the sources learned per user
	// (DefaultMaxSourcesPerUser); when full, the source last seen longest
	// ago is forgotten.
	MaxSourcesPerUser int
}

// withDefaults fills the zero fields of o.
func (o LoginOptions) withDefaults() LoginOptions {
	if o.Window <= 0 {
		o.Window = DefaultLoginWindow
	}
	if o.LearningPeriod <= 0 {
		o.LearningPeriod = DefaultLearningPeriod
	}
	if o.MinLearnedLogins <= 0 {
		o.MinLearnedLogins = DefaultMinLearnedLogins
	}
	if o.UnusualHourShare <= 0 {
		o.UnusualHourShare = DefaultUnusualHourShare
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = DefaultMaxLoginFailures
	}
	if o.MaxUsers <= 0 {
		o.MaxUsers = DefaultMaxLoginUsers
	}
	if o.MaxSourcesPerUser <= 0 {
		o.MaxSourcesPerUser = DefaultMaxSourcesPerUser
	}
	return o
}

// LoginStats are the counters and flags of one login event. The rules
// engine copies them into its input under the same names.
type LoginStats struct {
	// FailuresFromSource is the number of failures from the event's source
	// in the window, this event included.
	FailuresFromSource int
	// UsersFromSource is the number of distinct users that failed from the
	// event's source in the window (password spraying).
	UsersFromSource int
	// FailuresForUser is the number of failures for the event's user in the
	// window, from any source.
	FailuresForUser int
	// SourcesForUser is the number of distinct sources that failed for the
	// event's user in the window (distributed guessing).
	SourcesForUser int
	// FailuresBeforeSuccess is, for a success, the number of failures of
	// the same user from the same source in the window (0 for a failure).
	FailuresBeforeSuccess int
	// NewSource is set for a success of a user from a source never seen
	// succeeding for that user since learning began (never during learning).
	NewSource bool
	// UnusualHour is set for a success at an hour of day in which the user
	// has had less than UnusualHourShare of their successful logins, once
	// MinLearnedLogins of them were learned (never during learning).
	UnusualHour bool
	// Learning is set during the learning period.
	Learning bool
}

// SourceKey is the source a login is counted under: the remote host, or
// for a local login (su, sudo, login on a console: no remote host)
// "local:" followed by the service and the terminal, e.g.
// "local:sudo:/dev/pts/0".
func SourceKey(l *event.Login) string {
	if l.RemoteHost != "" {
		return l.RemoteHost
	}
	return "local:" + l.Service + ":" + l.TTY
}

// loginFailure is one failure in the window.
type loginFailure struct {
	t            int64
	source, user string
}

// sourceFailures counts the failures of one source in the window.
type sourceFailures struct {
	n     int
	users map[string]int
}

// userFailures counts the failures for one user in the window.
type userFailures struct {
	n       int
	sources map[string]int
}

// pairKey is a (source, user) pair.
type pairKey struct{ source, user string }

// recentLogin is a success remembered to recognise the account check that
// follows an authentication of the same login.
type recentLogin struct {
	t                      int64
	pid                    uint32
	start                  uint64
	source, user           string
	newSource, unusualHour bool
}

// userHistory is what Logins learned of one user's successful logins.
type userHistory struct {
	// Hours counts the logins per hour of day.
	Hours [24]uint64 `json:"hours"`
	// Total is the number of logins learned.
	Total uint64 `json:"total"`
	// Last is the time of the last login (unix ns).
	Last int64 `json:"last"`
	// Sources maps each source to the time it last succeeded (unix ns).
	Sources map[string]int64 `json:"sources"`
}

// loginsState is what Logins saves.
type loginsState struct {
	// Start is the time of the first login event (unix ns); 0 before any.
	Start int64 `json:"start"`
	// Users are the learned users by name.
	Users map[string]*userHistory `json:"users"`
}

// Logins counts login failures in a sliding window and learns where from
// and when each user logs in. It is not safe for concurrent use.
type Logins struct {
	opts LoginOptions
	st   loginsState

	fails    []loginFailure // oldest first, from head
	head     int
	bySource map[string]*sourceFailures
	byUser   map[string]*userFailures
	byPair   map[pairKey]int
	recent   []recentLogin // oldest first
}

// NewLogins returns an empty Logins whose learning period starts at the
// first login event it observes.
func NewLogins(opts LoginOptions) *Logins {
	return &Logins{
		opts:     opts.withDefaults(),
		st:       loginsState{Users: make(map[string]*userHistory)},
		bySource: make(map[string]*sourceFailures),
		byUser:   make(map[string]*userFailures),
		byPair:   make(map[pairKey]int),
	}
}

// Observe counts one login event and returns its stats. Only
// pam_authenticate and pam_acct_mgmt are counted: a call that did not
// return PAM_SUCCESS is a failure, one that did a success. A login whose
// authentication and account check both succeed (a password login) is
// learned once: the account check of the same process and user reports the
// flags its authentication got. Other operations, and calls whose PAM
// items could not be read (LayoutMismatch, NoHandle), return only Learning.
func (l *Logins) Observe(ev *event.Login) LoginStats {
	if ev == nil {
		return LoginStats{Learning: l.st.Start == 0}
	}
	t := ev.Time.UnixNano()
	if l.st.Start == 0 {
		l.st.Start = t
	}
	stats := LoginStats{Learning: t < l.st.Start+int64(l.opts.LearningPeriod)}
	if ev.Op != event.LoginAuthenticate && ev.Op != event.LoginAccount || ev.LayoutMismatch || ev.NoHandle {
		return stats
	}
	l.prune(t - int64(l.opts.Window))
	source, user := SourceKey(ev), ev.User
	if !ev.Succeeded() {
		l.addFailure(loginFailure{t: t, source: source, user: user})
	} else {
		stats.FailuresBeforeSuccess = l.byPair[pairKey{source, user}]
	}
	if s := l.bySource[source]; s != nil {
		stats.FailuresFromSource, stats.UsersFromSource = s.n, len(s.users)
	}
	if u := l.byUser[user]; u != nil {
		stats.FailuresForUser, stats.SourcesForUser = u.n, len(u.sources)
	}
	if ev.Succeeded() {
		stats.NewSource, stats.UnusualHour = l.success(ev, t, source, user, stats.Learning)
	}
	return stats
}

// success learns a successful login and returns its flags.
func (l *Logins) success(ev *event.Login, t int64, source, user string, learning bool) (newSource, unusualHour bool) {
	for i := len(l.recent) - 1; i >= 0; i-- {
		r := &l.recent[i]
		if r.pid == ev.Process.PID && r.start == ev.Process.StartTime && r.source == source && r.user == user {
			return r.newSource, r.unusualHour
		}
	}
	h := l.st.Users[user]
	if h == nil {
		for len(l.st.Users) >= l.opts.MaxUsers {
			l.evictUser()
		}
		h = &userHistory{Sources: make(map[string]int64)}
		l.st.Users[user] = h
	}
	hour := ev.Time.In(l.opts.Location).Hour()
	if !learning {
		_, known := h.Sources[source]
		newSource = !known
		unusualHour = h.Total >= uint64(l.opts.MinLearnedLogins) &&
			float64(h.Hours[hour]) < l.opts.UnusualHourShare*float64(h.Total)
	}
	// Learn it.
	h.Hours[hour]++
	h.Total++
	if t > h.Last {
		h.Last = t
	}
	if t > h.Sources[source] {
		h.Sources[source] = t
	}
	for len(h.Sources) > l.opts.MaxSourcesPerUser {
		evictOldest(h.Sources, source)
	}
	l.recent = append(l.recent, recentLogin{t: t, pid: ev.Process.PID, start: ev.Process.StartTime,
		source: source, user: user, newSource: newSource, unusualHour: unusualHour})
	if len(l.recent) > maxRecentLogins {
		l.recent = append(l.recent[:0], l.recent[len(l.recent)-maxRecentLogins:]...)
	}
	return newSource, unusualHour
}

// evictUser forgets the user whose last login is oldest (ties: first by name).
func (l *Logins) evictUser() {
	victim, oldest := "", int64(math.MaxInt64)
	for name, h := range l.st.Users {
		if h.Last < oldest || (h.Last == oldest && name < victim) {
			victim, oldest = name, h.Last
		}
	}
	delete(l.st.Users, victim)
}

// evictOldest deletes the key of m with the oldest time other than keep
// (ties: first by name).
func evictOldest(m map[string]int64, keep string) {
	victim, oldest := "", int64(math.MaxInt64)
	found := false
	for k, t := range m {
		if k == keep {
			continue
		}
		if !found || t < oldest || (t == oldest && k < victim) {
			victim, oldest, found = k, t, true
		}
	}
	if found {
		delete(m, victim)
	}
}

// addFailure puts a failure in the window and its counters.
func (l *Logins) addFailure(f loginFailure) {
	if len(l.fails)-l.head >= l.opts.MaxFailures {
		l.dropOldest()
	}
	l.fails = append(l.fails, f)
	s := l.bySource[f.source]
	if s == nil {
		s = &sourceFailures{users: make(map[string]int)}
		l.bySource[f.source] = s
	}
	s.n++
	s.users[f.user]++
	u := l.byUser[f.user]
	if u == nil {
		u = &userFailures{sources: make(map[string]int)}
		l.byUser[f.user] = u
	}
	u.n++
	u.sources[f.source]++
	l.byPair[pairKey{f.source, f.user}]++
}

// prune drops the failures and remembered successes older than before.
func (l *Logins) prune(before int64) {
	for l.head < len(l.fails) && l.fails[l.head].t < before {
		l.dropOldest()
	}
	i := 0
	for i < len(l.recent) && l.recent[i].t < before {
		i++
	}
	if i > 0 {
		l.recent = append(l.recent[:0], l.recent[i:]...)
	}
}

// dropOldest takes the oldest failure out of the window and its counters.
func (l *Logins) dropOldest() {
	f := l.fails[l.head]
	l.fails[l.head] = loginFailure{}
	l.head++
	if l.head == len(l.fails) {
		l.fails, l.head = l.fails[:0], 0
	} else if l.head > 1024 && l.head > len(l.fails)/2 {
		n := copy(l.fails, l.fails[l.head:])
		l.fails, l.head = l.fails[:n], 0
	}
	if s := l.bySource[f.source]; s != nil {
		s.n--
		decrement(s.users, f.user)
		if s.n <= 0 {
			delete(l.bySource, f.source)
		}
	}
	if u := l.byUser[f.user]; u != nil {
		u.n--
		decrement(u.sources, f.source)
		if u.n <= 0 {
			delete(l.byUser, f.user)
		}
	}
	p := pairKey{f.source, f.user}
	if l.byPair[p] <= 1 {
		delete(l.byPair, p)
	} else {
		l.byPair[p]--
	}
}

// decrement lowers a count, deleting it at zero.
func decrement(m map[string]int, k string) {
	if m[k] <= 1 {
		delete(m, k)
	} else {
		m[k]--
	}
}

// Save writes the learned users, sources and hours to path (normally
// <state dir>/LoginsFile) atomically, as versioned JSON. The window of
// failures is not saved.
func (l *Logins) Save(path string) error {
	return saveState(path, "logins", &l.st)
}

// Load replaces the learned users, sources and hours with the contents of
// path; the window is kept. On error nothing changes: a missing file
// matches fs.ErrNotExist, a damaged one ErrCorrupt, one of another version
// ErrVersion.
func (l *Logins) Load(path string) error {
	var st loginsState
	if err := loadState(path, "logins", &st); err != nil {
		return err
	}
	if st.Start < 0 {
		return fmt.Errorf("load logins %s: %w: negative start time", path, ErrCorrupt)
	}
	if st.Users == nil {
		st.Users = make(map[string]*userHistory)
	}
	for name, h := range st.Users {
		if h == nil {
			return fmt.Errorf("load logins %s: %w: empty entry for user %q", path, ErrCorrupt, name)
		}
		var sum uint64
		for _, n := range h.Hours {
			sum += n
		}
		if sum != h.Total {
			return fmt.Errorf("load logins %s: %w: user %q has %d logins by hour but a total of %d", path, ErrCorrupt, name, sum, h.Total)
		}
		if h.Sources == nil {
			h.Sources = make(map[string]int64)
		}
	}
	l.st = st
	for len(l.st.Users) > l.opts.MaxUsers {
		l.evictUser()
	}
	for _, h := range l.st.Users {
		for len(h.Sources) > l.opts.MaxSourcesPerUser {
			evictOldest(h.Sources, "")
		}
	}
	return nil
}
