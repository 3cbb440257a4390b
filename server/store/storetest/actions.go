package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/store"
)

// actionTests are the conformance tests of PutAction and ListActions.
var actionTests = []struct {
	name string
	fn   func(t *testing.T, open Opener)
}{
	{"ActionsPutList", testActionsPutList},
	{"ActionsFiltersAndPaging", testActionsFiltersAndPaging},
	{"ActionsDedup", testActionsDedup},
	{"ActionsValidation", testActionsValidation},
	{"ActionsPersistence", testActionsPersistence},
}

// NewActionRecord returns a valid action record for incidentID (which may
// be empty), with a fresh id.
func NewActionRecord(action, target, incidentID string) *vigilv1.ActionRecord {
	return &vigilv1.ActionRecord{
		Id: uuid.Must(uuid.NewV7()).String(), Time: timestamppb.New(time.Now().Truncate(time.Microsecond)),
		Action: action, Target: target, Requester: "server:alice", Reason: "test", Mode: "auto",
		Result: "done", Detail: "killed 1 process", DurationUs: 42, IncidentId: incidentID,
	}
}

// putAction stores rec for host and returns its cursor.
func putAction(t *testing.T, s store.Store, host string, rec *vigilv1.ActionRecord) uint64 {
	t.Helper()
	c, err := s.PutAction(context.Background(), host, rec)
	if err != nil {
		t.Fatalf("PutAction(%s): %v", rec.GetId(), err)
	}
	if c == 0 {
		t.Fatalf("PutAction(%s): cursor 0", rec.GetId())
	}
	return c
}

// listActions lists actions and fails the test on an error.
func listActions(t *testing.T, s store.Store, f store.ActionFilter, before uint64, limit int) []store.Action {
	t.Helper()
	got, err := s.ListActions(context.Background(), f, before, limit)
	if err != nil {
		t.Fatalf("ListActions(%+v, %d, %d): %v", f, before, limit, err)
	}
	return got
}

// wantActions compares actions with the records expected, in order.
func wantActions(t *testing.T, got []store.Action, host []string, want []*vigilv1.ActionRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d actions, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].HostID != host[i] || !proto.Equal(got[i].Record, want[i]) {
			t.Errorf("action %d = %s %v, want %s %v", i, got[i].HostID, got[i].Record, host[i], want[i])
		}
	}
}

func testActionsPutList(t *testing.T, open Opener) {
	s := openStore(t, open)
	if got := listActions(t, s, store.ActionFilter{}, 0, 10); len(got) != 0 {
		t.Fatalf("empty store lists %d actions", len(got))
	}
	a := NewActionRecord("kill", "pid:4242", "")
	b := NewActionRecord("block_source", "addr:203.0.113.7/32", "")
	ca := putAction(t, s, "host-a", a)
	cb := putAction(t, s, "host-b", b)
	if cb <= ca {
		t.Errorf("cursors %d then %d: want increasing", ca, cb)
	}
	got := listActions(t, s, store.ActionFilter{}, 0, 10)
	wantActions(t, got, []string{"host-b", "host-a"}, []*vigilv1.ActionRecord{b, a})
	if got[0].Cursor != cb || got[1].Cursor != ca {
		t.Errorf("cursors %d, %d; want %d, %d", got[0].Cursor, got[1].Cursor, cb, ca)
	}
}

func testActionsFiltersAndPaging(t *testing.T, open Opener) {
	s := openStore(t, open)
	inc := uuid.Must(uuid.NewV7()).String()
	var recs []*vigilv1.ActionRecord
	var hosts []string
	for i := range 6 {
		host, incID := "host-a", ""
		if i%2 == 1 {
			host = "host-b"
		}
		if i%3 == 0 {
			incID = inc
		}
		r := NewActionRecord("kill", "pid:1000", incID)
		putAction(t, s, host, r)
		recs, hosts = append(recs, r), append(hosts, host)
	}
	// Newest first: indexes 5, 4, ... 0.
	rev := func(idx ...int) ([]string, []*vigilv1.ActionRecord) {
		var h []string
		var r []*vigilv1.ActionRecord
		for _, i := range idx {
			h, r = append(h, hosts[i]), append(r, recs[i])
		}
		return h, r
	}
	h, r := rev(4, 2, 0)
	wantActions(t, listActions(t, s, store.ActionFilter{HostID: "host-a"}, 0, 10), h, r)
	h, r = rev(3, 0)
	wantActions(t, listActions(t, s, store.ActionFilter{IncidentID: inc}, 0, 10), h, r)
	h, r = rev(3)
	wantActions(t, listActions(t, s, store.ActionFilter{HostID: "host-b", IncidentID: inc}, 0, 10), h, r)

	// Two pages of three.
	page1 := listActions(t, s, store.ActionFilter{}, 0, 3)
	h, r = rev(5, 4, 3)
	wantActions(t, page1, h, r)
	page2 := listActions(t, s, store.ActionFilter{}, page1[2].Cursor, 3)
	h, r = rev(2, 1, 0)
	wantActions(t, page2, h, r)
	if got := listActions(t, s, store.ActionFilter{}, page2[2].Cursor, 3); len(got) != 0 {
		t.Errorf("page after the oldest has %d actions", len(got))
	}
	if _, err := s.ListActions(context.Background(), store.ActionFilter{}, 0, 0); err == nil {
		t.Error("ListActions with limit 0: no error")
	}
}

func testActionsDedup(t *testing.T, open Opener) {
	s := openStore(t, open)
	r := NewActionRecord("kill", "pid:4242", "")
	c1 := putAction(t, s, "host-a", r)
	c2 := putAction(t, s, "host-a", r)
	if c1 != c2 {
		t.Errorf("same record put twice: cursors %d and %d, want the same", c1, c2)
	}
	// The same id on another host is another action.
	c3 := putAction(t, s, "host-b", r)
	if c3 == c1 {
		t.Errorf("same id on another host got the same cursor %d", c3)
	}
	if got := listActions(t, s, store.ActionFilter{}, 0, 10); len(got) != 2 {
		t.Errorf("%d actions stored, want 2", len(got))
	}
}

func testActionsValidation(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		host string
		rec  *vigilv1.ActionRecord
	}{
		{"no host", "", NewActionRecord("kill", "pid:1", "")},
		{"nil record", "host-a", nil},
		{"no id", "host-a", &vigilv1.ActionRecord{Action: "kill"}},
	} {
		if _, err := s.PutAction(ctx, tc.host, tc.rec); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: PutAction error %v, want ErrInvalid", tc.name, err)
		}
	}
	if got := listActions(t, s, store.ActionFilter{}, 0, 10); len(got) != 0 {
		t.Errorf("%d actions stored after invalid puts", len(got))
	}
}

func testActionsPersistence(t *testing.T, open Opener) {
	n := name(t)
	s := open(t, n)
	r := NewActionRecord("isolate", "host", "")
	c := putAction(t, s, "host-a", r)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, n)
	defer s.Close()
	got := listActions(t, s, store.ActionFilter{}, 0, 10)
	wantActions(t, got, []string{"host-a"}, []*vigilv1.ActionRecord{r})
	if got[0].Cursor != c {
		t.Errorf("cursor after reopening %d, want %d", got[0].Cursor, c)
	}
}
