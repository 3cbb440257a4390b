package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
