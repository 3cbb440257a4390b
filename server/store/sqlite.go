package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// schemaVersion is stored in PRAGMA user_version; a file written by a newer
// server is refused rather than misread.
const schemaVersion = 5

const schema = `
CREATE TABLE IF NOT EXISTS incidents (
	cursor      INTEGER PRIMARY KEY AUTOINCREMENT,
	id          TEXT    NOT NULL UNIQUE,
	host_id     TEXT    NOT NULL,
	severity    INTEGER NOT NULL,
	rule_id     TEXT    NOT NULL,
	received_ns INTEGER NOT NULL,
	body        BLOB    NOT NULL,
	revision    INTEGER NOT NULL DEFAULT 0,
	status      INTEGER NOT NULL DEFAULT 1,
	label       INTEGER NOT NULL DEFAULT 1,
	triage      BLOB
);
CREATE INDEX IF NOT EXISTS incidents_host_cursor ON incidents (host_id, cursor);
CREATE INDEX IF NOT EXISTS incidents_rule_cursor ON incidents (rule_id, cursor);
CREATE INDEX IF NOT EXISTS incidents_severity_cursor ON incidents (severity, cursor);
CREATE TABLE IF NOT EXISTS actions (
	cursor      INTEGER PRIMARY KEY AUTOINCREMENT,
	host_id     TEXT    NOT NULL,
	id          TEXT    NOT NULL,
	incident_id TEXT    NOT NULL,
	body        BLOB    NOT NULL,
	UNIQUE (host_id, id)
);
CREATE INDEX IF NOT EXISTS actions_incident_cursor ON actions (incident_id, cursor);
CREATE TABLE IF NOT EXISTS rule_sets (
	version INTEGER PRIMARY KEY,
	hash    TEXT    NOT NULL,
	body    BLOB    NOT NULL
);
`

// The actions table came with version 4 and the rule_sets table with
// version 5; older files get them from the schema's CREATE TABLE IF NOT
// EXISTS.

// triageColumns are the analysts' triage, kept apart from body (what the
// agent reported) so that a new revision cannot overwrite it. status and
// label copy the triage's, for filters; triage is the whole Triage message,
// NULL until an analyst first updates the incident. Added in version 3.
const triageColumns = `
ALTER TABLE incidents ADD COLUMN status INTEGER NOT NULL DEFAULT 1;
ALTER TABLE incidents ADD COLUMN label INTEGER NOT NULL DEFAULT 1;
ALTER TABLE incidents ADD COLUMN triage BLOB;
`

// triageIndexes serve the status and label filters; created after the
// upgrade has added their columns.
const triageIndexes = `
CREATE INDEX IF NOT EXISTS incidents_status_cursor ON incidents (status, cursor);
CREATE INDEX IF NOT EXISTS incidents_label_cursor ON incidents (label, cursor);
`

// busyTimeout is how long a connection waits for another one's write lock.
const busyTimeout = 5 * time.Second

// SQLite is a Store in one SQLite file, in WAL mode so that readers never
// block the writer. Only one server process should use a file at a time:
// Changed only sees the Puts of this process.
//
// Puts are committed in groups: one writer goroutine takes every Put
// waiting when it is free, in the order they came, and stores them in one
// transaction (a group of at most maxPutGroup). Each Put returns only once
// the transaction holding its incident has committed, so an agent's ack
// still means the incident is stored; what the group saves is a commit
// (and its write to the WAL) per incident, and the write lock's hand-over
// between connections. Queries are prepared once per connection and kept.
type SQLite struct {
	db     *sql.DB
	path   string
	notify Notifier

	stmts sync.Map // query text → *sql.Stmt

	puts       chan *putRequest
	closeMu    sync.RWMutex
	closed     bool
	quit       chan struct{}
	writerDone chan struct{}
}

// maxConns bounds the connections to the file. More queries at once than
// that wait for one: SQLite runs each query on one core, and they are
// short.
const maxConns = 8

// maxPutGroup bounds how many Puts the writer commits in one transaction.
const maxPutGroup = 512

// putRequest is one Put waiting for the writer.
type putRequest struct {
	inc  *vigilv1.Incident
	blob []byte
	done chan putResult // buffered: the writer never waits for the caller
}

// putResult is what Put returns.
type putResult struct {
	cursor   uint64
	inserted bool
	err      error
}

// errClosed is returned by calls after Close.
var errClosed = errors.New("store is closed")

var _ Store = (*SQLite)(nil)

// OpenSQLite opens the SQLite database at path, creating the file and the
// schema when they do not exist. The directory must exist.
func OpenSQLite(path string) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("open sqlite: empty path")
	}
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// Keep the connections open: a new one costs its pragmas and a fresh
	// preparation of every statement, and streams query all the time.
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	s := &SQLite{db: db, path: path, puts: make(chan *putRequest, maxPutGroup),
		quit: make(chan struct{}), writerDone: make(chan struct{})}
	if err := s.init(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	go s.writer()
	return s, nil
}

// stmt returns the prepared statement of query, preparing it the first
// time. database/sql prepares it again on each connection that runs it,
// once, and keeps it there.
func (s *SQLite) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// dsn builds the modernc.org/sqlite data source name for path: a file: URI
// (so that a path may hold any character) with the pragmas every connection
// of the pool needs.
func dsn(path string) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + esc +
		"?_pragma=busy_timeout(" + fmt.Sprint(busyTimeout.Milliseconds()) + ")" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(NORMAL)" +
		// Statement journals (which undo one statement of a transaction)
		// in memory: written to a temporary file they cost a write(2) for
		// every page an INSERT touches. Crash recovery never reads them.
		"&_pragma=temp_store(MEMORY)" +
		// Put reads then writes in one transaction: take the write lock at
		// BEGIN so two Puts wait for each other instead of failing.
		"&_txlock=immediate"
}

// init checks the schema version and creates the schema.
func (s *SQLite) init(ctx context.Context) error {
	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > schemaVersion {
		return fmt.Errorf("schema version %d is newer than this server understands (%d)", version, schemaVersion)
	}
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal", mode)
	}
	if _, err := s.db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if version == 1 {
		// Version 1 had no revisions: every stored incident is revision 0.
		if _, err := s.db.ExecContext(ctx, `ALTER TABLE incidents ADD COLUMN revision INTEGER NOT NULL DEFAULT 0`); err != nil {
			return fmt.Errorf("upgrade schema 1 to 2: %w", err)
		}
	}
	if version == 1 || version == 2 {
		// Versions 1 and 2 had no triage: every stored incident is open
		// and unlabelled.
		if _, err := s.db.ExecContext(ctx, triageColumns); err != nil {
			return fmt.Errorf("upgrade schema %d to 3: %w", version, err)
		}
	}
	if _, err := s.db.ExecContext(ctx, triageIndexes); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return fmt.Errorf("write schema version: %w", err)
	}
	return nil
}

// Path returns the file the store was opened on.
func (s *SQLite) Path() string { return s.path }

// The statements of Put.
const (
	sqlitePutLookup = `SELECT cursor, revision, status, label, triage FROM incidents WHERE id = ?`
	sqlitePutDelete = `DELETE FROM incidents WHERE id = ?`
	sqlitePutInsert = `INSERT INTO incidents (id, host_id, severity, rule_id, received_ns, body, revision, status, label, triage)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		 RETURNING cursor`
)

// Put implements Store. It hands the incident to the writer and waits
// until the transaction that stores it has committed (see SQLite); once
// the incident is in the writer's queue it calls the function of
// WithQueued, if ctx has one. When ctx ends first, Put returns ctx's
// error; the incident may be stored all the same, which a resend then
// finds.
func (s *SQLite) Put(ctx context.Context, inc *vigilv1.Incident) (uint64, bool, error) {
	if err := Validate(inc); err != nil {
		return 0, false, err
	}
	blob, err := marshalBody(inc)
	if err != nil {
		return 0, false, err
	}
	req := &putRequest{inc: inc, blob: blob, done: make(chan putResult, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return 0, false, fmt.Errorf("store incident %s: %w", inc.GetId(), errClosed)
	}
	select {
	case s.puts <- req:
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return 0, false, fmt.Errorf("store incident %s: %w", inc.GetId(), ctx.Err())
	}
	s.closeMu.RUnlock()
	markQueued(ctx)
	select {
	case r := <-req.done:
		return r.cursor, r.inserted, r.err
	case <-ctx.Done():
		return 0, false, fmt.Errorf("store incident %s: %w", inc.GetId(), ctx.Err())
	}
}

// writer commits the waiting Puts, a group at a time, until Close; then
// it stores what is still queued and returns.
func (s *SQLite) writer() {
	defer close(s.writerDone)
	group := make([]*putRequest, 0, maxPutGroup)
	for {
		select {
		case r := <-s.puts:
			group = append(group[:0], r)
		case <-s.quit:
			// Close holds no Put back any more: drain what they queued.
			for {
				select {
				case r := <-s.puts:
					s.commitGroup([]*putRequest{r})
				default:
					return
				}
			}
		}
	more:
		for len(group) < maxPutGroup {
			select {
			case r := <-s.puts:
				group = append(group, r)
			default:
				break more
			}
		}
		s.commitGroup(group)
	}
}

// commitGroup stores a group of Puts in one transaction and answers each.
// When the transaction fails, each incident is tried again in a
// transaction of its own, so that one that cannot be stored fails alone.
func (s *SQLite) commitGroup(group []*putRequest) {
	results, err := s.putTx(group)
	if err != nil && len(group) > 1 {
		for _, r := range group {
			res, err := s.putTx([]*putRequest{r})
			if err != nil {
				r.done <- putResult{err: err}
			} else {
				r.done <- res[0]
			}
		}
		return
	}
	for i, r := range group {
		if err != nil {
			r.done <- putResult{err: err}
		} else {
			r.done <- results[i]
		}
	}
}

// putTx stores the group's incidents in one transaction, in order, and
// wakes Changed once when it stored any. A later incident of the group
// sees the earlier ones, so two revisions of one incident in a group are
// handled as they would be one after the other.
func (s *SQLite) putTx(group []*putRequest) ([]putResult, error) {
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store incident %s: %w", group[0].inc.GetId(), err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var stmts [3]*sql.Stmt
	for i, q := range []string{sqlitePutLookup, sqlitePutDelete, sqlitePutInsert} {
		st, err := s.stmt(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("store incident %s: %w", group[0].inc.GetId(), err)
		}
		stmts[i] = tx.StmtContext(ctx, st)
	}
	lookup, del, insert := stmts[0], stmts[1], stmts[2]
	results := make([]putResult, len(group))
	stored := false
	for i, r := range group {
		inc := r.inc
		var cursor int64
		var revision uint32
		// A new revision keeps the triage of the one it replaces.
		status, label := int32(vigilv1.TriageStatus_TRIAGE_STATUS_OPEN), int32(vigilv1.Label_LABEL_UNLABELLED)
		var triage []byte
		err := lookup.QueryRowContext(ctx, inc.GetId()).Scan(&cursor, &revision, &status, &label, &triage)
		switch {
		case err == nil && inc.GetRevision() <= revision:
			// A resend, or an older revision arriving late: keep what is stored.
			results[i] = putResult{cursor: uint64(cursor)}
			continue
		case err == nil:
			// A newer revision replaces the stored one at a new cursor, so that
			// streams deliver the update.
			if _, err := del.ExecContext(ctx, inc.GetId()); err != nil {
				return nil, fmt.Errorf("replace incident %s: %w", inc.GetId(), err)
			}
		case !errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("look up incident %s: %w", inc.GetId(), err)
		}
		err = insert.QueryRowContext(ctx,
			inc.GetId(), inc.GetHostId(), int32(inc.GetSeverity()), inc.GetRuleId(), time.Now().UnixNano(), r.blob, inc.GetRevision(),
			status, label, triage,
		).Scan(&cursor)
		if err != nil {
			return nil, fmt.Errorf("insert incident %s: %w", inc.GetId(), err)
		}
		results[i] = putResult{cursor: uint64(cursor), inserted: true}
		stored = true
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit incident %s: %w", group[0].inc.GetId(), err)
	}
	if stored {
		s.notify.Notify()
	}
	return results, nil
}

// UpdateTriage implements Store. The incident's row is replaced by one at
// the next cursor, as Put does for a new revision.
func (s *SQLite) UpdateTriage(ctx context.Context, id string, update func(*vigilv1.Triage) error) (*vigilv1.Incident, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("update triage of %s: %w", id, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var (
		hostID, ruleID     string
		severity, revision int64
		receivedNS         int64
		blob, oldTriage    []byte
	)
	err = tx.QueryRowContext(ctx,
		`SELECT host_id, severity, rule_id, received_ns, body, revision, triage FROM incidents WHERE id = ?`, id,
	).Scan(&hostID, &severity, &ruleID, &receivedNS, &blob, &revision, &oldTriage)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("update triage of %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("update triage of %s: %w", id, err)
	}
	tr, err := unmarshalTriage(oldTriage)
	if err != nil {
		return nil, fmt.Errorf("update triage of %s: %w", id, err)
	}
	if err := update(tr); err != nil {
		return nil, err
	}
	newTriage, err := proto.MarshalOptions{Deterministic: true}.Marshal(tr)
	if err != nil {
		return nil, fmt.Errorf("update triage of %s: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM incidents WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("update triage of %s: %w", id, err)
	}
	row := tx.QueryRowContext(ctx,
		`INSERT INTO incidents (id, host_id, severity, rule_id, received_ns, body, revision, status, label, triage)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		 RETURNING cursor, received_ns, body, triage`,
		id, hostID, severity, ruleID, receivedNS, blob, revision, int32(tr.GetStatus()), int32(tr.GetLabel()), newTriage)
	inc, err := scanIncident(row)
	if err != nil {
		return nil, fmt.Errorf("update triage of %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit triage of %s: %w", id, err)
	}
	s.notify.Notify()
	return inc, nil
}

// marshalBody encodes what Put stores of an incident: everything the agent
// reported, without the server's fields (cursor, received time, triage).
func marshalBody(inc *vigilv1.Incident) ([]byte, error) {
	body := inc
	if inc.GetCursor() != 0 || inc.GetReceivedTime() != nil || inc.GetTriage() != nil {
		// Agents never set them: copy only when there is something to clear.
		body = proto.Clone(inc).(*vigilv1.Incident)
		body.Cursor = 0
		body.ReceivedTime = nil
		body.Triage = nil
	}
	blob, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("marshal incident %s: %w", inc.GetId(), err)
	}
	return blob, nil
}

// unmarshalTriage decodes a stored triage; no triage (NULL) is NewTriage.
func unmarshalTriage(b []byte) (*vigilv1.Triage, error) {
	if b == nil {
		return NewTriage(), nil
	}
	tr := &vigilv1.Triage{}
	if err := proto.Unmarshal(b, tr); err != nil {
		return nil, fmt.Errorf("unmarshal triage: %w", err)
	}
	return tr, nil
}

// Get implements Store.
func (s *SQLite) Get(ctx context.Context, id string) (*vigilv1.Incident, error) {
	st, err := s.stmt(ctx, `SELECT cursor, received_ns, body, triage FROM incidents WHERE id = ?`)
	if err != nil {
		return nil, fmt.Errorf("get incident %s: %w", id, err)
	}
	inc, err := scanIncident(st.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("get incident %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get incident %s: %w", id, err)
	}
	return inc, nil
}

// List implements Store.
func (s *SQLite) List(ctx context.Context, filter *vigilv1.IncidentFilter, beforeCursor uint64, limit int) ([]*vigilv1.Incident, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list incidents: limit %d is not positive", limit)
	}
	where, args := filterClause(filter)
	if beforeCursor > 0 {
		where = append(where, "cursor < ?")
		args = append(args, clampCursor(beforeCursor))
	}
	out, err := s.query(ctx, where, args, "DESC", limit)
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	return out, nil
}

// After implements Store.
func (s *SQLite) After(ctx context.Context, filter *vigilv1.IncidentFilter, afterCursor uint64, limit int) ([]*vigilv1.Incident, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("read incidents after %d: limit %d is not positive", afterCursor, limit)
	}
	where, args := filterClause(filter)
	where = append(where, "cursor > ?")
	args = append(args, clampCursor(afterCursor))
	out, err := s.query(ctx, where, args, "ASC", limit)
	if err != nil {
		return nil, fmt.Errorf("read incidents after %d: %w", afterCursor, err)
	}
	return out, nil
}

// Changed implements Store.
func (s *SQLite) Changed() <-chan struct{} { return s.notify.Wait() }

// Close implements Store.
func (s *SQLite) Close() error {
	s.closeMu.Lock()
	wasClosed := s.closed
	s.closed = true
	s.closeMu.Unlock()
	if !wasClosed {
		close(s.quit)
	}
	<-s.writerDone
	s.stmts.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close sqlite %s: %w", s.path, err)
	}
	return nil
}

// filterClause turns a filter into WHERE conditions and their arguments.
func filterClause(f *vigilv1.IncidentFilter) ([]string, []any) {
	var where []string
	var args []any
	if h := f.GetHostId(); h != "" {
		where = append(where, "host_id = ?")
		args = append(args, h)
	}
	if r := f.GetRuleId(); r != "" {
		where = append(where, "rule_id = ?")
		args = append(args, r)
	}
	if sev := f.GetMinSeverity(); sev != vigilv1.Severity_SEVERITY_UNSPECIFIED {
		where = append(where, "severity >= ?")
		args = append(args, int32(sev))
	}
	if st := f.GetStatus(); st != vigilv1.TriageStatus_TRIAGE_STATUS_UNSPECIFIED {
		where = append(where, "status = ?")
		args = append(args, int32(st))
	}
	if l := f.GetLabel(); l != vigilv1.Label_LABEL_UNSPECIFIED {
		where = append(where, "label = ?")
		args = append(args, int32(l))
	}
	return where, args
}

// query runs a SELECT over incidents with the given conditions, ordered by
// cursor in direction dir ("ASC" or "DESC").
func (s *SQLite) query(ctx context.Context, where []string, args []any, dir string, limit int) ([]*vigilv1.Incident, error) {
	q := "SELECT cursor, received_ns, body, triage FROM incidents"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY cursor " + dir + " LIMIT ?"
	args = append(args, limit)
	st, err := s.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*vigilv1.Incident
	for rows.Next() {
		inc, err := scanIncident(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, inc)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// scanner is what *sql.Row and *sql.Rows have in common.
type scanner interface {
	Scan(dest ...any) error
}

// scanIncident reads one (cursor, received_ns, body, triage) row.
func scanIncident(row scanner) (*vigilv1.Incident, error) {
	var cursor, receivedNS int64
	var blob, triage []byte
	if err := row.Scan(&cursor, &receivedNS, &blob, &triage); err != nil {
		return nil, err
	}
	inc := &vigilv1.Incident{}
	if err := proto.Unmarshal(blob, inc); err != nil {
		return nil, fmt.Errorf("unmarshal incident at cursor %d: %w", cursor, err)
	}
	if triage != nil {
		inc.Triage = &vigilv1.Triage{}
		if err := proto.Unmarshal(triage, inc.Triage); err != nil {
			return nil, fmt.Errorf("unmarshal triage at cursor %d: %w", cursor, err)
		}
	}
	inc.Cursor = uint64(cursor)
	inc.ReceivedTime = timestamppb.New(time.Unix(0, receivedNS))
	return inc, nil
}

// clampCursor converts a cursor to SQLite's signed integer; cursors never
// exceed math.MaxInt64, so larger values behave like it.
func clampCursor(c uint64) int64 {
	if c > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(c)
}
