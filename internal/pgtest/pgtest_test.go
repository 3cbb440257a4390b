package pgtest_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigil-sensor/vigil/internal/pgtest"
)

// TestStartAndCleanup starts a server in a subtest, uses it, and checks
// that once the subtest is over the server is gone along with its
// directory.
func TestStartAndCleanup(t *testing.T) {
	pgtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var dir, dsn string
	t.Run("server", func(t *testing.T) {
		srv := pgtest.Start(t)
		dir = srv.Dir
		dsn = srv.CreateDatabase(t, "Odd Name")
		if again := srv.CreateDatabase(t, "Odd Name"); again != dsn {
			t.Errorf("CreateDatabase twice: %q then %q", dsn, again)
		}
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect to %s: %v", dsn, err)
		}
		defer conn.Close(ctx)
		var db string
		if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil || db != "Odd Name" {
			t.Fatalf("current_database() = %q, %v", db, err)
		}
		var listen string
		if err := conn.QueryRow(ctx, `SHOW listen_addresses`).Scan(&listen); err != nil || listen != "" {
			t.Errorf("listen_addresses = %q, %v; want none (socket only)", listen, err)
		}
		if !strings.HasPrefix(dsn, "postgres://postgres@/Odd%20Name?") {
			t.Errorf("DSN %q", dsn)
		}
	})
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s still there after the test: %v", dir, err)
	}
	short, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if conn, err := pgx.Connect(short, dsn); err == nil {
		conn.Close(ctx)
		t.Error("server still accepts connections after the test")
	}
}

func TestNew(t *testing.T) {
	dsn := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var one int
	if err := conn.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
}

// TestLaunchDurable starts a server outside the test's cleanup, as a
// benchmark does, with durability on, and checks that Stop removes it.
func TestLaunchDurable(t *testing.T) {
	pgtest.Require(t)
	srv, err := pgtest.Launch(pgtest.Options{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	dsn, err := srv.Database("vigil")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", dsn, err)
	}
	for setting, want := range map[string]string{"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"} {
		var got string
		if err := conn.QueryRow(ctx, "SHOW "+setting).Scan(&got); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", setting, got, err, want)
		}
	}
	conn.Close(ctx)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := os.Stat(srv.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s still there after Stop: %v", srv.Dir, err)
	}
}
