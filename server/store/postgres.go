package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// pgSchemaVersion is stored in vigil_schema; a database written by a newer
// server is refused rather than misread.
const pgSchemaVersion = 4

// pgSchemaLock is the key of the advisory lock that serializes schema
// creation, so that servers starting at the same time do not trip over
// each other's CREATE TABLE IF NOT EXISTS. ("vigil" in ASCII, then 1.)
const pgSchemaLock int64 = 0x76_69_67_69_6c_00_00_01

// pgSchema creates the tables. incident_cursor is a single row holding the
// last cursor handed out: see Postgres for why cursors do not come from a
// sequence.
const pgSchema = `
CREATE TABLE IF NOT EXISTS vigil_schema (
	version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
	cursor      BIGINT      PRIMARY KEY,
	id          UUID        NOT NULL UNIQUE,
	host_id     TEXT        NOT NULL,
	severity    INTEGER     NOT NULL,
	rule_id     TEXT        NOT NULL,
	revision    BIGINT      NOT NULL,
	received_at TIMESTAMPTZ NOT NULL,
	body        BYTEA       NOT NULL,
	status      INTEGER     NOT NULL DEFAULT 1,
	label       INTEGER     NOT NULL DEFAULT 1,
	triage      BYTEA
);
CREATE INDEX IF NOT EXISTS incidents_host_cursor ON incidents (host_id, cursor);
CREATE INDEX IF NOT EXISTS incidents_rule_cursor ON incidents (rule_id, cursor);
CREATE INDEX IF NOT EXISTS incidents_severity_cursor ON incidents (severity, cursor);
CREATE TABLE IF NOT EXISTS incident_cursor (
	only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
	last     BIGINT  NOT NULL
);
INSERT INTO incident_cursor (last) VALUES (0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS actions (
	cursor      BIGSERIAL PRIMARY KEY,
	host_id     TEXT      NOT NULL,
	id          TEXT      NOT NULL,
	incident_id TEXT      NOT NULL,
	body        BYTEA     NOT NULL,
	UNIQUE (host_id, id)
);
CREATE INDEX IF NOT EXISTS actions_host_cursor ON actions (host_id, cursor);
CREATE INDEX IF NOT EXISTS actions_incident_cursor ON actions (incident_id, cursor);
CREATE TABLE IF NOT EXISTS rule_sets (
	version BIGINT PRIMARY KEY,
	hash    TEXT   NOT NULL,
	body    BYTEA  NOT NULL
);
`

// pgTriage upgrades a version 1 schema, which had no triage, and creates
// the indexes of the status and label filters. status and label copy the
// triage's, for filters; triage is the whole Triage message, NULL until an
// analyst first updates the incident. pgPut never touches these columns, so
// a new revision keeps its incident's triage.
const pgTriage = `
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS status INTEGER NOT NULL DEFAULT 1;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS label INTEGER NOT NULL DEFAULT 1;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS triage BYTEA;
CREATE INDEX IF NOT EXISTS incidents_status_cursor ON incidents (status, cursor);
CREATE INDEX IF NOT EXISTS incidents_label_cursor ON incidents (label, cursor);
`

// pgPut inserts an incident, or replaces a stored one with a lower
// revision, at the next cursor. The UPDATE of incident_cursor locks its
// only row until the transaction ends; see Postgres. It returns no row when
// the stored revision is the same or higher.
const pgPut = `
WITH next AS (
	UPDATE incident_cursor SET last = last + 1 RETURNING last
)
INSERT INTO incidents AS i (cursor, id, host_id, severity, rule_id, revision, received_at, body)
SELECT last, $1::uuid, $2::text, $3::integer, $4::text, $5::bigint, $6::timestamptz, $7::bytea FROM next
ON CONFLICT (id) DO UPDATE SET
	cursor      = EXCLUDED.cursor,
	host_id     = EXCLUDED.host_id,
	severity    = EXCLUDED.severity,
	rule_id     = EXCLUDED.rule_id,
	revision    = EXCLUDED.revision,
	received_at = EXCLUDED.received_at,
	body        = EXCLUDED.body
WHERE i.revision < EXCLUDED.revision
RETURNING cursor`

// PostgresChannel is the LISTEN/NOTIFY channel on which every Put that
// stores an incident notifies the other servers sharing the database.
const PostgresChannel = "vigil_incidents"

// listenerAppName is the application_name of the connection that listens
// on PostgresChannel, to tell it apart in pg_stat_activity.
const listenerAppName = "vigil-server listener"

// Reconnect delays of the listener after its connection failed.
const (
	listenRetryMin = 50 * time.Millisecond
	listenRetryMax = 5 * time.Second
)

// Postgres is a Store in a PostgreSQL database that several server
// processes may share: Put is safe against the others' Puts, and Changed
// fires for their Puts too (through LISTEN/NOTIFY).
//
// Cursors come from a one-row counter table, incident_cursor, that Put
// increments in the transaction that stores the incident. The row lock the
// increment takes is held until that transaction commits, so cursor
// assignment and commit are serialized across all servers: a transaction
// can take cursor n+1 only after the one that took n has committed and is
// visible (PostgreSQL releases a transaction's locks after making its
// commit visible). A reader that has seen cursor n+1 has therefore seen
// every smaller cursor, and following After(cursor) never skips a row that
// commits late. A sequence (BIGSERIAL) would not do: nextval is not
// transactional, so a transaction could take n, another take n+1 and
// commit first, and a reader would move past n before it appears. Holding
// the lock costs one short critical section per stored incident (the
// INSERT and the COMMIT); resends of stored incidents take no lock.
type Postgres struct {
	pool   *pgxpool.Pool
	target string
	// token is the payload of this store's notifications, so that its
	// listener ignores them (Put wakes local waiters itself, at once).
	token  string
	notify Notifier

	cancel     context.CancelFunc
	listenDone chan struct{}
	closeOnce  sync.Once
}

var _ Store = (*Postgres)(nil)

// IsPostgresURL reports whether s is a postgres:// or postgresql:// URL
// rather than a SQLite path.
func IsPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// RedactDSN returns dsn with its password (in the user info or a password
// parameter) replaced by xxxxx, for logs and error messages.
func RedactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && IsPostgresURL(dsn) {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	for _, secret := range dsnSecrets(dsn) {
		dsn = strings.ReplaceAll(dsn, secret, "xxxxx")
	}
	return dsn
}

// dsnSecrets returns the passwords written in dsn, in every form they may
// appear in (as written, and decoded).
func dsnSecrets(dsn string) []string {
	var out []string
	add := func(s string) {
		if s != "" {
			out = append(out, s)
		}
	}
	if u, err := url.Parse(dsn); err == nil && IsPostgresURL(dsn) {
		if pw, ok := u.User.Password(); ok {
			add(pw)
			add(url.PathEscape(pw))
			add(url.QueryEscape(pw))
			// As written in the URL, between the first ':' of the user
			// info and the '@'.
			if rest := strings.SplitN(strings.SplitN(dsn, "://", 2)[1], "@", 2); len(rest) == 2 {
				if _, raw, ok := strings.Cut(rest[0], ":"); ok {
					add(raw)
				}
			}
		}
		for _, pw := range u.Query()["password"] {
			add(pw)
			add(url.QueryEscape(pw))
		}
	} else {
		// key=value form: password=secret or password='secret'.
		for _, f := range strings.Fields(dsn) {
			if v, ok := strings.CutPrefix(f, "password="); ok {
				add(strings.Trim(v, "'"))
			}
		}
	}
	// Longest first, so that a secret containing another is replaced whole.
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// redactedError is an error whose message has the DSN's passwords removed;
// errors.Is and errors.As still see the original.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactError removes the passwords of dsn from err's message.
func redactError(err error, dsn string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, secret := range dsnSecrets(dsn) {
		msg = strings.ReplaceAll(msg, secret, "xxxxx")
	}
	return &redactedError{msg: msg, err: err}
}

// OpenPostgres connects to the PostgreSQL database named by dsn (a
// postgres:// URL or a key=value connection string, as libpq takes them),
// creates the schema when it is missing and starts listening for other
// servers' incidents. ctx bounds the opening only; the store lives until
// Close. Errors name the server and database but never the password.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, redactError(fmt.Errorf("open postgres: %w", err), dsn)
	}
	target := describe(cfg.ConnConfig.Config.Host, cfg.ConnConfig.Config.Port, cfg.ConnConfig.Config.Database)
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "vigil-server"
	}
	fail := func(err error) (*Postgres, error) {
		return nil, redactError(fmt.Errorf("open postgres %s: %w", target, err), dsn)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	tok := make([]byte, 8)
	_, _ = rand.Read(tok)
	p := &Postgres{pool: pool, target: target, token: hex.EncodeToString(tok), listenDone: make(chan struct{})}
	if err := p.init(ctx); err != nil {
		pool.Close()
		return fail(err)
	}
	// Listen before returning, so that every Put another server makes
	// after OpenPostgres returns wakes Changed.
	lcfg := cfg.ConnConfig.Copy()
	lcfg.RuntimeParams["application_name"] = listenerAppName
	conn, err := p.connectListener(ctx, lcfg)
	if err != nil {
		pool.Close()
		return fail(fmt.Errorf("listen on %s: %w", PostgresChannel, err))
	}
	lctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go p.listen(lctx, lcfg, conn)
	return p, nil
}

// describe names a database for messages: database on host:port.
func describe(host string, port uint16, database string) string {
	if strings.HasPrefix(host, "/") {
		return fmt.Sprintf("database %s on %s/.s.PGSQL.%d", database, host, port)
	}
	return fmt.Sprintf("database %s on %s:%d", database, host, port)
}

// init checks the schema version and creates the schema, holding an
// advisory lock so that servers starting together take turns.
func (p *Postgres) init(ctx context.Context) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, pgSchemaLock); err != nil {
		return fmt.Errorf("lock schema: %w", err)
	}
	if _, err := tx.Exec(ctx, pgSchema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	var version int
	err = tx.QueryRow(ctx, `SELECT version FROM vigil_schema`).Scan(&version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, `INSERT INTO vigil_schema (version) VALUES ($1)`, pgSchemaVersion); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read schema version: %w", err)
	case version > pgSchemaVersion:
		return fmt.Errorf("schema version %d is newer than this server understands (%d)", version, pgSchemaVersion)
	case version < pgSchemaVersion:
		if _, err := tx.Exec(ctx, `UPDATE vigil_schema SET version = $1`, pgSchemaVersion); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, pgTriage); err != nil {
		return fmt.Errorf("upgrade schema to %d: %w", pgSchemaVersion, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit schema: %w", err)
	}
	return nil
}

// Target names the database the store uses (never the password).
func (p *Postgres) Target() string { return p.target }

// Put implements Store.
func (p *Postgres) Put(ctx context.Context, inc *vigilv1.Incident) (uint64, bool, error) {
	if err := Validate(inc); err != nil {
		return 0, false, err
	}
	id := uuid.MustParse(inc.GetId())
	blob, err := marshalBody(inc)
	if err != nil {
		return 0, false, err
	}

	// A resend of a stored revision (the common duplicate) is answered
	// without a transaction and without taking the cursor lock.
	var cursor, revision int64
	err = p.pool.QueryRow(ctx, `SELECT cursor, revision FROM incidents WHERE id = $1`, id).Scan(&cursor, &revision)
	switch {
	case err == nil && int64(inc.GetRevision()) <= revision:
		return uint64(cursor), false, nil
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return 0, false, fmt.Errorf("look up incident %s: %w", inc.GetId(), err)
	}

	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("store incident %s: %w", inc.GetId(), err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	err = tx.QueryRow(ctx, pgPut,
		id, inc.GetHostId(), int32(inc.GetSeverity()), inc.GetRuleId(), int64(inc.GetRevision()), time.Now(), blob,
	).Scan(&cursor)
	if errors.Is(err, pgx.ErrNoRows) {
		// Another server stored this revision or a newer one since the
		// look-up. Roll back to give the cursor back, then report theirs.
		if err := tx.Rollback(ctx); err != nil {
			return 0, false, fmt.Errorf("store incident %s: %w", inc.GetId(), err)
		}
		if err := p.pool.QueryRow(ctx, `SELECT cursor FROM incidents WHERE id = $1`, id).Scan(&cursor); err != nil {
			return 0, false, fmt.Errorf("look up incident %s: %w", inc.GetId(), err)
		}
		return uint64(cursor), false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("insert incident %s: %w", inc.GetId(), err)
	}
	// Delivered to the listeners when (and only if) the transaction commits.
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, PostgresChannel, p.token); err != nil {
		return 0, false, fmt.Errorf("notify incident %s: %w", inc.GetId(), err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, false, fmt.Errorf("commit incident %s: %w", inc.GetId(), err)
	}
	p.notify.Notify()
	return uint64(cursor), true, nil
}

// UpdateTriage implements Store. It takes the next cursor first, as Put
// does, so that the row lock on incident_cursor orders it with every Put
// and UpdateTriage of every server (and the two lock in the same order),
// then locks the incident's row, applies update and moves the row to the
// new cursor. For an unknown id it rolls back, giving the cursor back.
func (p *Postgres) UpdateTriage(ctx context.Context, id string, update func(*vigilv1.Triage) error) (*vigilv1.Incident, error) {
	if ValidateID(id) != nil {
		return nil, fmt.Errorf("update triage of %s: %w", id, ErrNotFound)
	}
	uid := uuid.MustParse(id)
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("update triage of %s: %w", id, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	var cursor int64
	if err := tx.QueryRow(ctx, `UPDATE incident_cursor SET last = last + 1 RETURNING last`).Scan(&cursor); err != nil {
		return nil, fmt.Errorf("update triage of %s: %w", id, err)
	}
	var old []byte
	err = tx.QueryRow(ctx, `SELECT triage FROM incidents WHERE id = $1 FOR UPDATE`, uid).Scan(&old)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("update triage of %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("update triage of %s: %w", id, err)
	}
	tr, err := unmarshalTriage(old)
	if err != nil {
		return nil, fmt.Errorf("update triage of %s: %w", id, err)
	}
	if err := update(tr); err != nil {
		return nil, err
	}
	blob, err := proto.MarshalOptions{Deterministic: true}.Marshal(tr)
	if err != nil {
		return nil, fmt.Errorf("update triage of %s: %w", id, err)
	}
	row := tx.QueryRow(ctx,
		`UPDATE incidents SET cursor = $2, status = $3, label = $4, triage = $5 WHERE id = $1
		 RETURNING cursor, received_at, body, triage`,
		uid, cursor, int32(tr.GetStatus()), int32(tr.GetLabel()), blob)
	inc, err := scanPGIncident(row)
	if err != nil {
		return nil, fmt.Errorf("update triage of %s: %w", id, err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, PostgresChannel, p.token); err != nil {
		return nil, fmt.Errorf("notify triage of %s: %w", id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit triage of %s: %w", id, err)
	}
	p.notify.Notify()
	return inc, nil
}

// Get implements Store.
func (p *Postgres) Get(ctx context.Context, id string) (*vigilv1.Incident, error) {
	if ValidateID(id) != nil {
		// Nothing is stored under an id Put would refuse.
		return nil, fmt.Errorf("get incident %s: %w", id, ErrNotFound)
	}
	row := p.pool.QueryRow(ctx, `SELECT cursor, received_at, body, triage FROM incidents WHERE id = $1`, uuid.MustParse(id))
	inc, err := scanPGIncident(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get incident %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get incident %s: %w", id, err)
	}
	return inc, nil
}

// List implements Store.
func (p *Postgres) List(ctx context.Context, filter *vigilv1.IncidentFilter, beforeCursor uint64, limit int) ([]*vigilv1.Incident, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list incidents: limit %d is not positive", limit)
	}
	where, args := pgFilter(filter)
	if beforeCursor > 0 {
		args = append(args, clampCursor(beforeCursor))
		where = append(where, "cursor < $"+strconv.Itoa(len(args)))
	}
	out, err := p.query(ctx, where, args, "DESC", limit)
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	return out, nil
}

// After implements Store.
func (p *Postgres) After(ctx context.Context, filter *vigilv1.IncidentFilter, afterCursor uint64, limit int) ([]*vigilv1.Incident, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("read incidents after %d: limit %d is not positive", afterCursor, limit)
	}
	where, args := pgFilter(filter)
	args = append(args, clampCursor(afterCursor))
	where = append(where, "cursor > $"+strconv.Itoa(len(args)))
	out, err := p.query(ctx, where, args, "ASC", limit)
	if err != nil {
		return nil, fmt.Errorf("read incidents after %d: %w", afterCursor, err)
	}
	return out, nil
}

// Changed implements Store. The channel is closed by this store's Puts as
// soon as they commit, and by other servers' Puts when their notification
// arrives. After the listening connection was lost and made again it is
// closed once as well, since notifications may have been missed meanwhile.
func (p *Postgres) Changed() <-chan struct{} { return p.notify.Wait() }

// Close implements Store.
func (p *Postgres) Close() error {
	p.closeOnce.Do(func() {
		p.cancel()
		<-p.listenDone
		p.pool.Close()
	})
	return nil
}

// pgFilter turns a filter into WHERE conditions with numbered parameters
// and their arguments.
func pgFilter(f *vigilv1.IncidentFilter) ([]string, []any) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, cond+" $"+strconv.Itoa(len(args)))
	}
	if h := f.GetHostId(); h != "" {
		add("host_id =", h)
	}
	if r := f.GetRuleId(); r != "" {
		add("rule_id =", r)
	}
	if sev := f.GetMinSeverity(); sev != vigilv1.Severity_SEVERITY_UNSPECIFIED {
		add("severity >=", int32(sev))
	}
	if st := f.GetStatus(); st != vigilv1.TriageStatus_TRIAGE_STATUS_UNSPECIFIED {
		add("status =", int32(st))
	}
	if l := f.GetLabel(); l != vigilv1.Label_LABEL_UNSPECIFIED {
		add("label =", int32(l))
	}
	return where, args
}

// query runs a SELECT over incidents with the given conditions, ordered by
// cursor in direction dir ("ASC" or "DESC").
func (p *Postgres) query(ctx context.Context, where []string, args []any, dir string, limit int) ([]*vigilv1.Incident, error) {
	q := "SELECT cursor, received_at, body, triage FROM incidents"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += " ORDER BY cursor " + dir + " LIMIT $" + strconv.Itoa(len(args))
	rows, err := p.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*vigilv1.Incident
	for rows.Next() {
		inc, err := scanPGIncident(rows)
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

// scanPGIncident reads one (cursor, received_at, body, triage) row.
func scanPGIncident(row pgx.Row) (*vigilv1.Incident, error) {
	var cursor int64
	var received time.Time
	var blob, triage []byte
	if err := row.Scan(&cursor, &received, &blob, &triage); err != nil {
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
	inc.ReceivedTime = timestamppb.New(received)
	return inc, nil
}

// connectListener opens a connection that listens on PostgresChannel.
func (p *Postgres) connectListener(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+PostgresChannel); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// listen wakes Changed for every notification from another store until
// ctx ends. When the connection fails it connects again, waiting longer
// after each failure in a row, and wakes Changed once it listens again.
func (p *Postgres) listen(ctx context.Context, cfg *pgx.ConnConfig, conn *pgx.Conn) {
	defer close(p.listenDone)
	retry := listenRetryMin
	for {
		if conn != nil {
			for {
				n, err := conn.WaitForNotification(ctx)
				if err != nil {
					break
				}
				if n.Payload != p.token {
					p.notify.Notify()
				}
			}
			conn.Close(context.Background())
			conn = nil
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
		retry = min(2*retry, listenRetryMax)
		c, err := p.connectListener(ctx, cfg)
		if err != nil {
			continue
		}
		conn, retry = c, listenRetryMin
		// Notifications sent while nobody listened are lost: let every
		// waiter read again.
		p.notify.Notify()
	}
}
