package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigil-sensor/vigil/internal/pgtest"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/store"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// openPG opens a Postgres store on dsn and closes it when the test ends.
func openPG(t *testing.T, dsn string) *store.Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitClosed fails the test unless ch is closed within a few seconds.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("Changed not woken: %s", what)
	}
}

func TestPostgresConformance(t *testing.T) {
	srv := pgtest.Start(t)
	storetest.Run(t, func(t *testing.T, name string) store.Store {
		// One database per store name: reopening a name finds its data.
		dsn := srv.CreateDatabase(t, strings.ToLower(name))
		s, err := store.OpenPostgres(context.Background(), dsn)
		if err != nil {
			t.Fatalf("OpenPostgres: %v", err)
		}
		return s
	})
}

// TestPostgresTwoServers opens two stores on one database, as two servers
// sharing it would: each sees the other's incidents, is woken by them, and
// dedup holds across them.
func TestPostgresTwoServers(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.CreateDatabase(t, "vigil")
	a, b := openPG(t, dsn), openPG(t, dsn)
	ctx := context.Background()

	// A Put through A wakes B and shows in B's After and Get.
	chB := b.Changed()
	inc := storetest.NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)
	c1, inserted, err := a.Put(ctx, inc)
	if err != nil || !inserted {
		t.Fatalf("A.Put: inserted %v, %v", inserted, err)
	}
	waitClosed(t, chB, "B after a Put through A")
	got, err := b.After(ctx, nil, 0, 10)
	if err != nil || len(got) != 1 || got[0].GetId() != inc.GetId() || got[0].GetCursor() != c1 {
		t.Fatalf("B.After = %v, %v; want the incident at cursor %d", got, err, c1)
	}
	if _, err := b.Get(ctx, inc.GetId()); err != nil {
		t.Fatalf("B.Get: %v", err)
	}

	// And the other way round; cursors keep growing across servers.
	chA := a.Changed()
	c2, inserted, err := b.Put(ctx, storetest.NewIncident("host-b", "r2", vigilv1.Severity_SEVERITY_LOW))
	if err != nil || !inserted || c2 <= c1 {
		t.Fatalf("B.Put: cursor %d inserted %v, %v; want > %d", c2, inserted, err, c1)
	}
	waitClosed(t, chA, "A after a Put through B")

	// A resend through B is a duplicate of A's incident.
	chA = a.Changed()
	c, inserted, err := b.Put(ctx, inc)
	if err != nil || inserted || c != c1 {
		t.Fatalf("resend through B: cursor %d inserted %v, %v; want %d false", c, inserted, err, c1)
	}
	// A newer revision through B moves it, and A sees the move.
	update := proto.Clone(inc).(*vigilv1.Incident)
	update.Revision = 1
	c3, inserted, err := b.Put(ctx, update)
	if err != nil || !inserted || c3 <= c2 {
		t.Fatalf("revision 1 through B: cursor %d inserted %v, %v; want > %d", c3, inserted, err, c2)
	}
	waitClosed(t, chA, "A after a revision through B")
	all, err := a.After(ctx, nil, 0, 10)
	if err != nil || len(all) != 2 || all[1].GetCursor() != c3 || all[1].GetRevision() != 1 {
		t.Fatalf("A.After after the revision = %v, %v", all, err)
	}
}

// TestPostgresListenerReconnects ends the listening connections behind the
// stores' backs: they listen again, wake their waiters once, and go on
// seeing each other's Puts.
func TestPostgresListenerReconnects(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.CreateDatabase(t, "vigil")
	a, b := openPG(t, dsn), openPG(t, dsn)
	ch := b.Changed()
	srv.Exec(t, "vigil", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vigil-server listener'`)
	waitClosed(t, ch, "B after its listener reconnected")
	// The wake-up comes once B listens again, so A's next Put reaches it.
	ch = b.Changed()
	if _, _, err := a.Put(context.Background(), storetest.NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW)); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ch, "B after a Put through A once reconnected")
}

// TestPostgresSameIncidentRace has two servers store the same incidents
// at the same time: each incident is inserted by exactly one of them, and
// of two revisions racing, the higher one stays.
func TestPostgresSameIncidentRace(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.CreateDatabase(t, "vigil")
	stores := []store.Store{openPG(t, dsn), openPG(t, dsn)}
	ctx := context.Background()
	const n = 100
	incs := make([]*vigilv1.Incident, n)
	for i := range incs {
		incs[i] = storetest.NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW)
	}
	type result struct {
		cursor   uint64
		inserted bool
	}
	results := make([][n]result, 2)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, inc := range incs {
				// The second writer sends revision 1 of every other incident.
				if w == 1 && i%2 == 1 {
					inc = proto.Clone(inc).(*vigilv1.Incident)
					inc.Revision = 1
				}
				c, ins, err := s.Put(ctx, inc)
				if err != nil {
					errs <- err
					return
				}
				results[w][i] = result{c, ins}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Put: %v", err)
	}
	for i, inc := range incs {
		r0, r1 := results[0][i], results[1][i]
		got, err := stores[0].Get(ctx, inc.GetId())
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if i%2 == 0 {
			// Same revision: exactly one wins, and both report its cursor.
			if r0.inserted == r1.inserted || r0.cursor != r1.cursor || got.GetCursor() != r0.cursor {
				t.Errorf("incident %d: results %+v and %+v, stored at %d; want one insert, one cursor", i, r0, r1, got.GetCursor())
			}
			continue
		}
		// Revision 1 always lands, whether before or after revision 0.
		if !r1.inserted || got.GetRevision() != 1 || got.GetCursor() != r1.cursor {
			t.Errorf("incident %d: revision 1 result %+v, stored revision %d at %d", i, r1, got.GetRevision(), got.GetCursor())
		}
	}
	all, err := stores[1].After(ctx, nil, 0, 10*n)
	if err != nil || len(all) != n {
		t.Fatalf("After: %d incidents, %v; want %d", len(all), err, n)
	}
}

// TestPostgresFollowConcurrentWriters has two servers store 2,000
// incidents each at the same time while a third follows them with Changed
// and After, as a stream does: it must read every incident exactly once,
// in increasing cursor order, skipping none, even though transactions that
// took smaller cursors may commit after larger ones were handed out.
func TestPostgresFollowConcurrentWriters(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.CreateDatabase(t, "vigil")
	writers := []*store.Postgres{openPG(t, dsn), openPG(t, dsn)}
	reader := openPG(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const perStore, goroutines = 2000, 4
	total := perStore * len(writers)
	sent := make(chan string, total)
	var wg sync.WaitGroup
	errs := make(chan error, len(writers)*goroutines)
	for w, s := range writers {
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perStore / goroutines {
					inc := storetest.NewIncident(fmt.Sprintf("host-%d", w), fmt.Sprintf("r%d", g), vigilv1.Severity_SEVERITY_LOW)
					if _, inserted, err := s.Put(ctx, inc); err != nil || !inserted {
						errs <- fmt.Errorf("writer %d: Put: inserted %v, %v", w, inserted, err)
						return
					}
					sent <- inc.GetId()
				}
			}()
		}
	}

	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	// Follow as a stream does: Changed first, then After until a short
	// page. Once the writers have finished before a pass begins, that pass
	// must bring the reader to the total: whatever it still lacks was
	// skipped.
	const page = 100
	seen := make(map[string]bool, total)
	var cursor uint64
	var followErr error
	for followErr == nil {
		changed := reader.Changed()
		last := isClosed(finished)
		for followErr == nil {
			incs, err := reader.After(ctx, nil, cursor, page)
			if err != nil {
				followErr = err
			}
			for _, inc := range incs {
				if inc.GetCursor() <= cursor {
					followErr = fmt.Errorf("cursor %d after %d", inc.GetCursor(), cursor)
					break
				}
				if seen[inc.GetId()] {
					followErr = fmt.Errorf("incident %s read twice", inc.GetId())
					break
				}
				seen[inc.GetId()] = true
				cursor = inc.GetCursor()
			}
			if len(incs) < page {
				break
			}
		}
		if len(seen) == total || followErr != nil {
			break
		}
		if last {
			followErr = fmt.Errorf("the writers finished, and %d incidents were skipped", total-len(seen))
			break
		}
		select {
		case <-changed:
		case <-finished:
		case <-ctx.Done():
			followErr = fmt.Errorf("not woken for the rest: %w", ctx.Err())
		}
	}
	wg.Wait()
	close(errs)
	close(sent)
	for err := range errs {
		t.Error(err)
	}
	if followErr != nil {
		t.Fatalf("following after cursor %d with %d incidents read: %v", cursor, len(seen), followErr)
	}
	missing := 0
	for id := range sent {
		if !seen[id] {
			missing++
		}
	}
	if missing > 0 || len(seen) != total {
		t.Fatalf("read %d incidents, %d of those stored were never read", len(seen), missing)
	}
}

// isClosed reports whether ch is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestOpenPostgresErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tests := []struct {
		name, dsn, want string
	}{
		// Port 1 on loopback: nothing listens there.
		{"refused", "postgres://vigil:Secr3t-pw@127.0.0.1:1/vigil?connect_timeout=5", "open postgres database vigil on 127.0.0.1:1: "},
		{"bad url", "postgres://vigil:Secr3t-pw@127.0.0.1:notaport/vigil", "open postgres: "},
		{"password parameter", "postgresql://vigil@127.0.0.1:1/vigil?password=Secr3t-pw&connect_timeout=5", "open postgres database vigil on 127.0.0.1:1: "},
		{"key value", "host=127.0.0.1 port=1 dbname=vigil password=Secr3t-pw connect_timeout=5", "open postgres database vigil on 127.0.0.1:1: "},
	}
	for _, tt := range tests {
		s, err := store.OpenPostgres(ctx, tt.dsn)
		if err == nil {
			s.Close()
			t.Errorf("%s: OpenPostgres succeeded", tt.name)
			continue
		}
		if strings.Contains(err.Error(), "Secr3t") {
			t.Errorf("%s: error shows the password: %v", tt.name, err)
		}
		if !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: error %q, want it to start with %q", tt.name, err, tt.want)
		}
		if errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: error wraps ErrNotFound", tt.name)
		}
	}
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://vigil:pw@db:5432/vigil":                  "postgres://vigil:xxxxx@db:5432/vigil",
		"postgresql://vigil:p%40ss@db/vigil?sslmode=require": "postgresql://vigil:xxxxx@db/vigil?sslmode=require",
		"postgres://vigil@db/vigil?password=pw":              "postgres://vigil@db/vigil?password=xxxxx",
		"postgres://db/vigil":                                "postgres://db/vigil",
		"host=db password=pw dbname=vigil":                   "host=db password=xxxxx dbname=vigil",
	} {
		if got := store.RedactDSN(in); got != want {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}
