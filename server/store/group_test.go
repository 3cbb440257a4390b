package store_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/store"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// TestSQLiteGroupCommitKeepsOrder has several chains of Puts made at
// once, each Put of a chain waiting only until the one before it is
// queued (store.WithQueued), as one agent stream's reports are: every
// chain must be stored in its order, each Put must say it was queued, and
// revisions of one incident in a chain must end as the last one.
func TestSQLiteGroupCommitKeepsOrder(t *testing.T) {
	s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const chains, perChain = 8, 200
	cursors := make([][]uint64, chains)
	revised := make([]string, chains)
	var wg sync.WaitGroup
	for c := range chains {
		revised[c] = storetest.NewID()
		var prev <-chan struct{}
		for i := range perChain {
			inc := storetest.NewIncident("host", "r", vigilv1.Severity_SEVERITY_LOW)
			if i%10 == 5 {
				// Revisions 1, 2, ... of one incident, in order.
				inc.Id, inc.Revision = revised[c], uint32(i/10+1)
			}
			queued := make(chan struct{})
			cursors[c] = append(cursors[c], 0)
			wg.Add(1)
			go func(prev <-chan struct{}) {
				defer wg.Done()
				if prev != nil {
					<-prev
				}
				var once sync.Once
				called := false
				ctx := store.WithQueued(context.Background(), func() { once.Do(func() { called = true; close(queued) }) })
				cursor, _, err := s.Put(ctx, inc)
				if err != nil {
					t.Error(err)
				}
				if !called {
					t.Errorf("Put returned without calling the WithQueued function")
					once.Do(func() { close(queued) })
				}
				cursors[c][i] = cursor
			}(prev)
			prev = queued
		}
	}
	wg.Wait()
	for c := range chains {
		var last uint64
		for i, cur := range cursors[c] {
			if i%10 == 5 {
				continue // a revision replaced by the next one keeps no cursor of its own
			}
			if cur <= last {
				t.Fatalf("chain %d: Put %d got cursor %d after %d: out of order", c, i, cur, last)
			}
			last = cur
		}
		got, err := s.Get(context.Background(), revised[c])
		if err != nil {
			t.Fatal(err)
		}
		if want := uint32((perChain-1)/10 + 1); got.GetRevision() != want {
			t.Errorf("chain %d: stored revision %d, want %d", c, got.GetRevision(), want)
		}
	}
}

// TestSQLitePutAfterClose checks that Put fails after Close instead of
// waiting for a writer that is gone.
func TestSQLitePutAfterClose(t *testing.T) {
	s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Put(context.Background(), storetest.NewIncident("host", "r", vigilv1.Severity_SEVERITY_LOW)); err == nil {
		t.Fatal("Put after Close succeeded")
	}
}
