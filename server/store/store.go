// Package store keeps the incidents the server receives and hands them out
// again in cursor order.
//
// A Store gives every incident it inserts a cursor that only grows. Clients
// page through incidents by cursor (List, newest first; After, oldest first)
// and streams follow new incidents by waiting on Changed and reading After
// their last cursor at their own pace, so a slow reader never loses anything.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// ErrNotFound is returned by Get when no incident has the requested id.
var ErrNotFound = errors.New("incident not found")

// ErrInvalid is wrapped by every error that Put returns because the incident
// itself is unacceptable (as opposed to the store failing). Test it with
// errors.Is.
var ErrInvalid = errors.New("invalid incident")

// Store keeps incidents. Implementations are safe for concurrent use.
type Store interface {
	// Put stores an incident and returns its cursor. Incidents are
	// deduplicated by id and revision: when an incident with the same id
	// and the same or a higher revision is already stored, Put stores
	// nothing, returns the stored cursor and inserted=false; when the stored
	// one has a lower revision, Put replaces it, moving it to a new cursor
	// (inserted=true), so that streams following the store see the update. A stored incident gets a cursor larger than every
	// cursor handed out before and its received_time; the caller's message
	// is not modified. Put rejects a nil incident and an id that is empty or
	// not a UUID in canonical lower-case form with an error wrapping
	// ErrInvalid that names the field.
	Put(ctx context.Context, inc *vigilv1.Incident) (cursor uint64, inserted bool, err error)

	// Get returns the incident with this id, with cursor and received_time
	// set, or an error wrapping ErrNotFound.
	Get(ctx context.Context, id string) (*vigilv1.Incident, error)

	// List returns at most limit incidents matching filter with a cursor
	// smaller than beforeCursor, newest (largest cursor) first.
	// beforeCursor 0 starts from the newest incident. A nil filter matches
	// everything. limit must be positive.
	List(ctx context.Context, filter *vigilv1.IncidentFilter, beforeCursor uint64, limit int) ([]*vigilv1.Incident, error)

	// After returns at most limit incidents matching filter with a cursor
	// larger than afterCursor, oldest (smallest cursor) first. A nil filter
	// matches everything. limit must be positive.
	After(ctx context.Context, filter *vigilv1.IncidentFilter, afterCursor uint64, limit int) ([]*vigilv1.Incident, error)

	// UpdateTriage changes the analysts' triage of incident id atomically:
	// it calls update once, inside the store's transaction, with the stored
	// triage (never nil: an incident never triaged has status OPEN and label
	// UNLABELLED), stores what update leaves and returns the incident as now
	// stored. Concurrent updates of one incident are serialized, so none is
	// lost. A triage change moves the incident to a new cursor, as a new
	// revision does, so that streams following the store deliver it again;
	// received_time stays when the incident was last put. When update
	// returns an error nothing is stored and that error is returned. An
	// unknown id is an error wrapping ErrNotFound.
	//
	// Triage is kept apart from what Put stores: Put never changes it (a
	// new revision keeps the incident's triage) and ignores the triage of
	// the incident it is given.
	UpdateTriage(ctx context.Context, id string, update func(*vigilv1.Triage) error) (*vigilv1.Incident, error)

	// Changed returns a channel that is closed by the next Put that inserts
	// an incident, or UpdateTriage that changes one (after Changed was called). Every caller waiting on the
	// same generation is woken at once; nothing is ever sent on it. To
	// follow new incidents without missing any: call Changed, read After
	// your last cursor until it returns fewer than limit, then wait on the
	// channel and repeat.
	Changed() <-chan struct{}

	// PutAction stores the record of an action carried out on hostID and
	// returns its cursor among actions (a sequence of its own, apart from
	// incident cursors). Records are deduplicated by host and record id: a
	// record already stored is kept and its cursor returned. It rejects an
	// empty hostID, a nil record and a record without id with an error
	// wrapping ErrInvalid. Storing an action does not fire Changed.
	PutAction(ctx context.Context, hostID string, rec *vigilv1.ActionRecord) (cursor uint64, err error)

	// ListActions returns at most limit stored actions matching filter
	// with a cursor smaller than beforeCursor, newest (largest cursor)
	// first. beforeCursor 0 starts from the newest. limit must be positive.
	ListActions(ctx context.Context, filter ActionFilter, beforeCursor uint64, limit int) ([]Action, error)

	// PutRuleSet stores rs as the fleet's rule set, with the next version:
	// one more than the current set's (1 for the first). When rs.hash is
	// the current set's, nothing is stored and the current set is returned
	// with changed=false. It returns the set as stored (rs with its
	// version; the caller's message is not modified). Concurrent calls,
	// also through other servers sharing a database, each get a version
	// of their own. It rejects a nil set and an empty hash with an error
	// wrapping ErrInvalid. The store does not look at the files: the
	// caller validates them and computes the hash.
	PutRuleSet(ctx context.Context, rs *vigilv1.RuleSet) (stored *vigilv1.RuleSet, changed bool, err error)

	// RuleSet returns the fleet's rule set: the one of the highest version,
	// or an empty set (version 0, no files) when none has been stored.
	RuleSet(ctx context.Context) (*vigilv1.RuleSet, error)

	// Close releases the store. Calls after Close fail.
	Close() error
}

// Action is one stored action record.
type Action struct {
	// Cursor is the action's position among stored actions.
	Cursor uint64
	// HostID is the host the action was carried out on.
	HostID string
	// Record is the agent's record of the action.
	Record *vigilv1.ActionRecord
}

// ActionFilter selects stored actions; empty fields match everything.
type ActionFilter struct {
	// HostID keeps the actions of this host only.
	HostID string
	// IncidentID keeps the actions for this incident only.
	IncidentID string
}

// validateAction checks what PutAction requires. The error wraps
// ErrInvalid.
func validateAction(hostID string, rec *vigilv1.ActionRecord) error {
	switch {
	case hostID == "":
		return fmt.Errorf("%w: action host_id is empty", ErrInvalid)
	case rec == nil:
		return fmt.Errorf("%w: action record is nil", ErrInvalid)
	case rec.GetId() == "":
		return fmt.Errorf("%w: action record id is empty", ErrInvalid)
	}
	return nil
}

// NewTriage returns the triage of an incident no analyst has touched.
func NewTriage() *vigilv1.Triage {
	return &vigilv1.Triage{Status: vigilv1.TriageStatus_TRIAGE_STATUS_OPEN, Label: vigilv1.Label_LABEL_UNLABELLED}
}

// ValidateID reports whether id is acceptable as an incident id: a UUID in
// its canonical 36-character lower-case form. The error wraps ErrInvalid.
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: id is empty", ErrInvalid)
	}
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return fmt.Errorf("%w: id %q is not a canonical lower-case UUID", ErrInvalid, id)
	}
	return nil
}

// Validate checks what Put requires of an incident. The error wraps
// ErrInvalid and names the offending field.
func Validate(inc *vigilv1.Incident) error {
	if inc == nil {
		return fmt.Errorf("%w: incident is nil", ErrInvalid)
	}
	return ValidateID(inc.GetId())
}

// queuedKey is the context key of WithQueued.
type queuedKey struct{}

// WithQueued returns a copy of ctx that makes Put call queued once the
// incident has its place in the order of the store's writes: whatever
// Put is called after queued has run is stored after it. A store that
// commits Puts in groups (SQLite) calls it when the Put joins the queue,
// before the commit, so that a caller may hand over its next incident at
// once and keep its order; a store that writes within the call does not
// call it, and the Put's return means the same. queued is called at most
// once, and must not block.
func WithQueued(ctx context.Context, queued func()) context.Context {
	return context.WithValue(ctx, queuedKey{}, queued)
}

// markQueued calls the function WithQueued put into ctx, if any.
func markQueued(ctx context.Context) {
	if f, ok := ctx.Value(queuedKey{}).(func()); ok {
		f()
	}
}
