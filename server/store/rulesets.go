package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// pgRuleSetLock is the key of the advisory lock that serializes rule set
// versions across servers sharing a database. ("vigil" in ASCII, then 2.)
const pgRuleSetLock int64 = 0x76_69_67_69_6c_00_00_02

// validateRuleSet checks what PutRuleSet requires. The error wraps
// ErrInvalid.
func validateRuleSet(rs *vigilv1.RuleSet) error {
	switch {
	case rs == nil:
		return fmt.Errorf("%w: rule set is nil", ErrInvalid)
	case rs.GetHash() == "":
		return fmt.Errorf("%w: rule set hash is empty", ErrInvalid)
	}
	return nil
}

// nextRuleSet returns what PutRuleSet stores after current (nil: none):
// rs with the next version, or nil when rs has current's hash.
func nextRuleSet(current, rs *vigilv1.RuleSet) (*vigilv1.RuleSet, []byte, error) {
	if current != nil && current.GetHash() == rs.GetHash() {
		return nil, nil, nil
	}
	next := proto.Clone(rs).(*vigilv1.RuleSet)
	next.Version = current.GetVersion() + 1
	blob, err := proto.Marshal(next)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal rule set: %w", err)
	}
	return next, blob, nil
}

// unmarshalRuleSet decodes a stored rule set.
func unmarshalRuleSet(blob []byte) (*vigilv1.RuleSet, error) {
	rs := &vigilv1.RuleSet{}
	if err := proto.Unmarshal(blob, rs); err != nil {
		return nil, fmt.Errorf("unmarshal rule set: %w", err)
	}
	return rs, nil
}

// PutRuleSet implements Store.
func (s *SQLite) PutRuleSet(ctx context.Context, rs *vigilv1.RuleSet) (*vigilv1.RuleSet, bool, error) {
	if err := validateRuleSet(rs); err != nil {
		return nil, false, err
	}
	// The transaction takes the write lock at BEGIN (see dsn), so versions
	// are handed out one at a time.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, fmt.Errorf("store rule set: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	current, err := sqliteRuleSet(ctx, tx)
	if err != nil {
		return nil, false, err
	}
	next, blob, err := nextRuleSet(current, rs)
	if err != nil || next == nil {
		return current, false, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO rule_sets (version, hash, body) VALUES (?, ?, ?)`,
		int64(next.GetVersion()), next.GetHash(), blob); err != nil {
		return nil, false, fmt.Errorf("store rule set %d: %w", next.GetVersion(), err)
	}
	if err := tx.Commit(); err != nil {
		return nil, false, fmt.Errorf("store rule set %d: %w", next.GetVersion(), err)
	}
	return next, true, nil
}

// RuleSet implements Store.
func (s *SQLite) RuleSet(ctx context.Context) (*vigilv1.RuleSet, error) {
	rs, err := sqliteRuleSet(ctx, s.db)
	if err != nil || rs != nil {
		return rs, err
	}
	return &vigilv1.RuleSet{}, nil
}

// sqliteRuleSet reads the rule set of the highest version, nil when none.
func sqliteRuleSet(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (*vigilv1.RuleSet, error) {
	var blob []byte
	err := q.QueryRowContext(ctx, `SELECT body FROM rule_sets ORDER BY version DESC LIMIT 1`).Scan(&blob)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read rule set: %w", err)
	}
	return unmarshalRuleSet(blob)
}

// PutRuleSet implements Store.
func (p *Postgres) PutRuleSet(ctx context.Context, rs *vigilv1.RuleSet) (*vigilv1.RuleSet, bool, error) {
	if err := validateRuleSet(rs); err != nil {
		return nil, false, err
	}
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("store rule set: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	// One server at a time reads the current version and takes the next.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, pgRuleSetLock); err != nil {
		return nil, false, fmt.Errorf("store rule set: lock: %w", err)
	}
	current, err := pgRuleSet(ctx, tx)
	if err != nil {
		return nil, false, err
	}
	next, blob, err := nextRuleSet(current, rs)
	if err != nil || next == nil {
		return current, false, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO rule_sets (version, hash, body) VALUES ($1, $2, $3)`,
		int64(next.GetVersion()), next.GetHash(), blob); err != nil {
		return nil, false, fmt.Errorf("store rule set %d: %w", next.GetVersion(), err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, false, fmt.Errorf("store rule set %d: %w", next.GetVersion(), err)
	}
	return next, true, nil
}

// RuleSet implements Store.
func (p *Postgres) RuleSet(ctx context.Context) (*vigilv1.RuleSet, error) {
	rs, err := pgRuleSet(ctx, p.pool)
	if err != nil || rs != nil {
		return rs, err
	}
	return &vigilv1.RuleSet{}, nil
}

// pgRuleSet reads the rule set of the highest version, nil when none.
func pgRuleSet(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (*vigilv1.RuleSet, error) {
	var blob []byte
	err := q.QueryRow(ctx, `SELECT body FROM rule_sets ORDER BY version DESC LIMIT 1`).Scan(&blob)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read rule set: %w", err)
	}
	return unmarshalRuleSet(blob)
}
