// Package feedback turns an analyst's verdict on an incident into
// suppressions the running agent applies without a restart: an incident
// labelled benign stops the same behaviour from raising it again, while a
// different behaviour still does.
//
// The agent writes every incident it builds to a journal in its state
// directory; `vigil-agent label benign ID` looks the incident up there and
// appends one suppression per signal to the feedback file, which the agent
// rereads when it changes. A rule signal is suppressed for the same rule,
// executable and parent executable (or, for a host-level signal such as
// failed logins, the same rule and remote host); an anomaly signal also
// becomes a baseline update, so the behaviour stops being rare.
package feedback

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sensor/vigil/internal/atomicfile"
	"github.com/vigil-sensor/vigil/internal/verdict"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// FileName is the feedback file's name in the agent's state directory.
const FileName = "feedback.json"

// Unknown is the Exe or ParentExe of a suppression derived from a signal
// whose executable (or parent's) was not known: it matches only a signal
// whose executable (or parent's) is not known either.
const Unknown = verdict.Unknown

// Suppression stops signals matching it from reaching an incident. Empty
// fields match anything, except RuleID, which is always required; Unknown
// in Exe or ParentExe matches only an empty (unknown) one.
type Suppression struct {
	// IncidentID is the incident the analyst labelled.
	IncidentID string `json:"incident_id"`
	// RuleID is the rule or detector id of the signal, e.g. "exec-from-tmp".
	RuleID string `json:"rule_id"`
	// Exe is the signal's executable.
	Exe string `json:"exe,omitempty"`
	// ParentExe is the executable of its parent.
	ParentExe string `json:"parent_exe,omitempty"`
	// RemoteHost is the remote address of a host-level signal.
	RemoteHost string `json:"remote_host,omitempty"`
	// Object is what an anomaly signal was about (a child executable, a
	// file, a destination, a user): the baseline learns it.
	Object string `json:"object,omitempty"`
	// Source is "rule", "anomaly" or "model", as on the signal.
	Source string `json:"source,omitempty"`
	// Added is when the label was given.
	Added time.Time `json:"added"`
	// By names who labelled it.
	By string `json:"by,omitempty"`
	// Note is the analyst's comment.
	Note string `json:"note,omitempty"`
}

// Key is what a signal is matched on.
type Key struct {
	// RuleID, Exe, ParentExe, RemoteHost and Object are the signal's.
	RuleID, Exe, ParentExe, RemoteHost, Object string
}

// Matches reports whether s suppresses a signal with key k.
func (s *Suppression) Matches(k Key) bool {
	field := func(want, got string) bool { return want == "" || want == got }
	exe := func(want, got string) bool {
		if want == Unknown {
			return got == ""
		}
		return field(want, got)
	}
	return s.RuleID == k.RuleID && exe(s.Exe, k.Exe) && exe(s.ParentExe, k.ParentExe) &&
		field(s.RemoteHost, k.RemoteHost) && field(s.Object, k.Object)
}

// Set is a loaded list of suppressions.
type Set struct {
	list []Suppression
}

// NewSet returns a set of suppressions.
func NewSet(list []Suppression) *Set { return &Set{list: list} }

// Len returns the number of suppressions.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.list)
}

// List returns the suppressions.
func (s *Set) List() []Suppression {
	if s == nil {
		return nil
	}
	return s.list
}

// Suppressed returns the suppression matching k, or nil.
func (s *Set) Suppressed(k Key) *Suppression {
	if s == nil {
		return nil
	}
	for i := range s.list {
		if s.list[i].Matches(k) {
			return &s.list[i]
		}
	}
	return nil
}

// FromIncident derives the suppressions that labelling inc benign adds: one
// per distinct signal (the incident's own rule when it has no timeline).
// The derivation is internal/verdict's, shared with the server.
func FromIncident(inc *vigilv1.Incident, by, note string, now time.Time) []Suppression {
	return FromProto(verdict.Suppressions(inc, by, note, now))
}

// FromProto converts suppressions received from the server.
func FromProto(list []*vigilv1.Suppression) []Suppression {
	var out []Suppression
	for _, p := range list {
		out = append(out, Suppression{
			IncidentID: p.GetIncidentId(),
			RuleID:     p.GetRuleId(),
			Exe:        p.GetExe(),
			ParentExe:  p.GetParentExe(),
			RemoteHost: p.GetRemoteHost(),
			Object:     p.GetObject(),
			Source:     p.GetSource(),
			Added:      p.GetAdded().AsTime().UTC(),
			By:         p.GetBy(),
			Note:       p.GetNote(),
		})
	}
	return out
}

// fileContent is the feedback file's layout.
type fileContent struct {
	// Version is the layout version.
	Version int `json:"version"`
	// Suppressions are the labels given, oldest first.
	Suppressions []Suppression `json:"suppressions"`
}

const fileVersion = 1

// Load reads the feedback file at path; a missing file is an empty list.
func Load(path string) ([]Suppression, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read feedback: %w", err)
	}
	var c fileContent
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("feedback file %s: %w", path, err)
	}
	if c.Version != fileVersion {
		return nil, fmt.Errorf("feedback file %s: version %d, want %d", path, c.Version, fileVersion)
	}
	for i, s := range c.Suppressions {
		if s.RuleID == "" {
			return nil, fmt.Errorf("feedback file %s: suppression %d has no rule_id", path, i+1)
		}
	}
	return c.Suppressions, nil
}

// Append adds suppressions to the feedback file at path, skipping ones
// already there, under a lock so two labellers do not lose each other's
// work; the file is replaced atomically, so a reader never sees half of it.
// It returns how many were new; when none is, the file is left untouched
// (so a resent verdict does not make the agent reload its feedback).
func Append(path string, add []Suppression) (int, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return 0, fmt.Errorf("create feedback dir: %w", err)
	}
	return update(path, func(list []Suppression) ([]Suppression, int) {
		added := 0
		for _, s := range add {
			if !contains(list, s) {
				list = append(list, s)
				added++
			}
		}
		return list, added
	})
}

// Remove deletes every suppression of incident id from the feedback file
// at path, under the same lock as Append, and returns how many it removed;
// when none is, the file is left untouched. This withdraws a benign label.
// (A baseline an anomaly suppression taught stays learnt.)
func Remove(path, id string) (int, error) {
	if _, err := os.Stat(filepath.Dir(path)); errors.Is(err, fs.ErrNotExist) {
		return 0, nil // no state directory: nothing to remove
	}
	return update(path, func(list []Suppression) ([]Suppression, int) {
		keep := list[:0:0]
		for _, s := range list {
			if s.IncidentID != id {
				keep = append(keep, s)
			}
		}
		return keep, len(list) - len(keep)
	})
}

// update changes the feedback file at path under its lock: change gets the
// suppressions in the file and returns the new list and how many it
// changed. With no change the file is left untouched; otherwise it is
// replaced atomically, so a reader never sees half of it.
func update(path string, change func([]Suppression) ([]Suppression, int)) (int, error) {
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, fmt.Errorf("lock feedback: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return 0, fmt.Errorf("lock feedback: %w", err)
	}
	list, err := Load(path)
	if err != nil {
		return 0, err
	}
	list, n := change(list)
	if n == 0 {
		return 0, nil
	}
	b, err := json.MarshalIndent(fileContent{Version: fileVersion, Suppressions: list}, "", "  ")
	if err != nil {
		return 0, fmt.Errorf("encode feedback: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return 0, fmt.Errorf("write feedback: %w", err)
	}
	return n, nil
}

// IncidentIDs returns the distinct incident ids of list, in order.
func IncidentIDs(list []Suppression) []string {
	var ids []string
	seen := map[string]bool{}
	for _, s := range list {
		if s.IncidentID != "" && !seen[s.IncidentID] {
			seen[s.IncidentID] = true
			ids = append(ids, s.IncidentID)
		}
	}
	return ids
}

// contains reports whether list has a suppression matching the same signals as s.
func contains(list []Suppression, s Suppression) bool {
	for _, o := range list {
		if o.RuleID == s.RuleID && o.Exe == s.Exe && o.ParentExe == s.ParentExe &&
			o.RemoteHost == s.RemoteHost && o.Object == s.Object {
			return true
		}
	}
	return false
}

// Describe says in words what a suppression stops.
func (s *Suppression) Describe() string {
	var b strings.Builder
	b.WriteString(s.RuleID)
	switch s.Exe {
	case "":
	case Unknown:
		b.WriteString(" by an unknown program")
	default:
		b.WriteString(" by " + s.Exe)
	}
	switch s.ParentExe {
	case "":
	case Unknown:
		b.WriteString(" under an unknown parent")
	default:
		b.WriteString(" under " + s.ParentExe)
	}
	if s.Object != "" {
		b.WriteString(" on " + s.Object)
	}
	if s.RemoteHost != "" {
		b.WriteString(" from " + s.RemoteHost)
	}
	return b.String()
}
