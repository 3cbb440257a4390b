package store_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/store"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

func TestSQLiteConformance(t *testing.T) {
	dir := t.TempDir()
	storetest.Run(t, func(t *testing.T, name string) store.Store {
		s, err := store.OpenSQLite(filepath.Join(dir, name+".db"))
		if err != nil {
			t.Fatalf("OpenSQLite: %v", err)
		}
		return s
	})
}

func TestOpenSQLiteWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd?name#with%chars.db")
	s, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file not created at %s: %v", path, err)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("no WAL file next to the database: %v", err)
	}
}

func TestOpenSQLiteErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "server.db")
	_, err := store.OpenSQLite(path)
	if err == nil {
		t.Fatal("OpenSQLite in a missing directory succeeded")
	}
	if !strings.HasPrefix(err.Error(), "open sqlite "+path+": ") {
		t.Errorf("error %q does not name the path", err)
	}

	notDB := filepath.Join(t.TempDir(), "not.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("this is not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenSQLite(notDB); err == nil {
		t.Fatal("OpenSQLite on a text file succeeded")
	}
	if _, err := store.OpenSQLite(""); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("OpenSQLite(\"\") = %v, want an error", err)
	}
}

// TestSQLiteUpgradesSchema1 opens a file written by a server without
// revisions: its incidents stay readable and take revisions afterwards.
func TestSQLiteUpgradesSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	old := storetest.NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_LOW)
	body, err := proto.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE incidents (cursor INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
			host_id TEXT NOT NULL, severity INTEGER NOT NULL, rule_id TEXT NOT NULL, received_ns INTEGER NOT NULL, body BLOB NOT NULL)`,
		`PRAGMA user_version = 1`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO incidents (id, host_id, severity, rule_id, received_ns, body) VALUES (?, 'host-a', 2, 'r1', 1, ?)`, old.GetId(), body); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatalf("open a schema 1 file: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	got, err := s.Get(ctx, old.GetId())
	if err != nil || got.GetCursor() != 1 || got.GetRuleId() != "r1" {
		t.Fatalf("Get after upgrade: %v, %v", got, err)
	}
	update := proto.Clone(old).(*vigilv1.Incident)
	update.Revision = 1
	cursor, inserted, err := s.Put(ctx, update)
	if err != nil || !inserted || cursor != 2 {
		t.Fatalf("Put revision 1 over the upgraded row: cursor %d inserted %v err %v, want 2 true nil", cursor, inserted, err)
	}
	// The upgrade to schema 3 made every incident open and unlabelled, and
	// triage works on the upgraded rows.
	open, err := s.List(ctx, &vigilv1.IncidentFilter{Status: vigilv1.TriageStatus_TRIAGE_STATUS_OPEN, Label: vigilv1.Label_LABEL_UNLABELLED}, 0, 10)
	if err != nil || len(open) != 1 {
		t.Fatalf("List open and unlabelled after upgrade: %d incidents, %v", len(open), err)
	}
	triaged, err := s.UpdateTriage(ctx, old.GetId(), func(tr *vigilv1.Triage) error {
		tr.Status = vigilv1.TriageStatus_TRIAGE_STATUS_RESOLVED
		return nil
	})
	if err != nil || triaged.GetTriage().GetStatus() != vigilv1.TriageStatus_TRIAGE_STATUS_RESOLVED || triaged.GetCursor() != 3 {
		t.Fatalf("UpdateTriage after upgrade: %v, %v", triaged, err)
	}
	// The upgrade to schema 4 added the actions table.
	rec := storetest.NewActionRecord("kill", "pid:4242", old.GetId())
	if _, err := s.PutAction(ctx, "host-a", rec); err != nil {
		t.Fatalf("PutAction after upgrade: %v", err)
	}
	acts, err := s.ListActions(ctx, store.ActionFilter{IncidentID: old.GetId()}, 0, 10)
	if err != nil || len(acts) != 1 || !proto.Equal(acts[0].Record, rec) {
		t.Fatalf("ListActions after upgrade: %v, %v", acts, err)
	}
}
