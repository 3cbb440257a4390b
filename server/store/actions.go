package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// PutAction implements Store.
func (s *SQLite) PutAction(ctx context.Context, hostID string, rec *vigilv1.ActionRecord) (uint64, error) {
	if err := validateAction(hostID, rec); err != nil {
		return 0, err
	}
	blob, err := proto.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("marshal action %s: %w", rec.GetId(), err)
	}
	// The upsert is a no-op on a duplicate that still returns the row.
	var cursor int64
	err = s.db.QueryRowContext(ctx,
		`INSERT INTO actions (host_id, id, incident_id, body) VALUES (?, ?, ?, ?)
		 ON CONFLICT (host_id, id) DO UPDATE SET host_id = excluded.host_id
		 RETURNING cursor`,
		hostID, rec.GetId(), rec.GetIncidentId(), blob).Scan(&cursor)
	if err != nil {
		return 0, fmt.Errorf("store action %s: %w", rec.GetId(), err)
	}
	return uint64(cursor), nil
}

// ListActions implements Store.
func (s *SQLite) ListActions(ctx context.Context, filter ActionFilter, beforeCursor uint64, limit int) ([]Action, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list actions: limit %d is not positive", limit)
	}
	var where []string
	var args []any
	if filter.HostID != "" {
		where, args = append(where, "host_id = ?"), append(args, filter.HostID)
	}
	if filter.IncidentID != "" {
		where, args = append(where, "incident_id = ?"), append(args, filter.IncidentID)
	}
	if beforeCursor > 0 {
		where, args = append(where, "cursor < ?"), append(args, clampCursor(beforeCursor))
	}
	q := "SELECT cursor, host_id, body FROM actions"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY cursor DESC LIMIT ?"
	rows, err := s.db.QueryContext(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("list actions: %w", err)
	}
	defer rows.Close()
	return scanActions(func() bool { return rows.Next() }, rows.Scan, rows.Err)
}

// PutAction implements Store.
func (p *Postgres) PutAction(ctx context.Context, hostID string, rec *vigilv1.ActionRecord) (uint64, error) {
	if err := validateAction(hostID, rec); err != nil {
		return 0, err
	}
	blob, err := proto.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("marshal action %s: %w", rec.GetId(), err)
	}
	var cursor int64
	err = p.pool.QueryRow(ctx,
		`INSERT INTO actions (host_id, id, incident_id, body) VALUES ($1, $2, $3, $4)
		 ON CONFLICT (host_id, id) DO UPDATE SET host_id = EXCLUDED.host_id
		 RETURNING cursor`,
		hostID, rec.GetId(), rec.GetIncidentId(), blob).Scan(&cursor)
	if err != nil {
		return 0, fmt.Errorf("store action %s: %w", rec.GetId(), err)
	}
	return uint64(cursor), nil
}

// ListActions implements Store.
func (p *Postgres) ListActions(ctx context.Context, filter ActionFilter, beforeCursor uint64, limit int) ([]Action, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list actions: limit %d is not positive", limit)
	}
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, cond+" $"+strconv.Itoa(len(args)))
	}
	if filter.HostID != "" {
		add("host_id =", filter.HostID)
	}
	if filter.IncidentID != "" {
		add("incident_id =", filter.IncidentID)
	}
	if beforeCursor > 0 {
		add("cursor <", clampCursor(beforeCursor))
	}
	q := "SELECT cursor, host_id, body FROM actions"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += " ORDER BY cursor DESC LIMIT $" + strconv.Itoa(len(args))
	rows, err := p.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list actions: %w", err)
	}
	defer rows.Close()
	return scanActions(rows.Next, rows.Scan, rows.Err)
}

// scanActions reads (cursor, host_id, body) rows of either database.
func scanActions(next func() bool, scan func(...any) error, rowsErr func() error) ([]Action, error) {
	var out []Action
	for next() {
		var cursor int64
		var host string
		var blob []byte
		if err := scan(&cursor, &host, &blob); err != nil {
			return nil, fmt.Errorf("list actions: %w", err)
		}
		rec := &vigilv1.ActionRecord{}
		if err := proto.Unmarshal(blob, rec); err != nil {
			return nil, fmt.Errorf("unmarshal action at cursor %d: %w", cursor, err)
		}
		out = append(out, Action{Cursor: uint64(cursor), HostID: host, Record: rec})
	}
	if err := rowsErr(); err != nil {
		return nil, fmt.Errorf("list actions: %w", err)
	}
	return out, nil
}
