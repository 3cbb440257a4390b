package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/store"
)

// triageTests are the suite's tests of UpdateTriage; Run runs them too.
var triageTests = []struct {
	name string
	fn   func(t *testing.T, open Opener)
}{
	{"TriageUpdate", testTriageUpdate},
	{"TriageKeptByRevision", testTriageKeptByRevision},
	{"TriageNotFound", testTriageNotFound},
	{"TriageUpdateError", testTriageUpdateError},
	{"TriageFilters", testTriageFilters},
	{"TriageChanged", testTriageChanged},
	{"TriagePersistence", testTriagePersistence},
	{"TriageConcurrent", testTriageConcurrent},
}

// triaged is the triage the tests set: acknowledged, benign, one note.
func triaged(tr *vigilv1.Triage) {
	at := timestamppb.New(IncidentTime.Add(time.Hour))
	tr.Status = vigilv1.TriageStatus_TRIAGE_STATUS_ACKNOWLEDGED
	tr.Label = vigilv1.Label_LABEL_BENIGN
	tr.LabelTime, tr.LabelAuthor, tr.UpdatedTime = at, "alice", at
	tr.Notes = append(tr.Notes, &vigilv1.Note{Time: at, Author: "alice", Text: "our nightly build"})
}

// wantTriaged is the triage triaged leaves on an incident never triaged.
func wantTriaged() *vigilv1.Triage {
	tr := store.NewTriage()
	triaged(tr)
	return tr
}

// updateTriage calls UpdateTriage with fn and fails the test on an error.
func updateTriage(t *testing.T, s store.Store, id string, fn func(*vigilv1.Triage)) *vigilv1.Incident {
	t.Helper()
	inc, err := s.UpdateTriage(context.Background(), id, func(tr *vigilv1.Triage) error { fn(tr); return nil })
	if err != nil {
		t.Fatalf("UpdateTriage(%s): %v", id, err)
	}
	return inc
}

// get reads incident id and fails the test on an error.
func get(t *testing.T, s store.Store, id string) *vigilv1.Incident {
	t.Helper()
	inc, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return inc
}

func testTriageUpdate(t *testing.T, open Opener) {
	s := openStore(t, open)
	inc := NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)
	c1 := put(t, s, inc)
	c2 := put(t, s, NewIncident("host-a", "r2", vigilv1.Severity_SEVERITY_LOW))
	if got := get(t, s, inc.GetId()); got.GetTriage() != nil {
		t.Fatalf("triage of a new incident = %v, want unset", got.GetTriage())
	}
	var seen *vigilv1.Triage
	got := updateTriage(t, s, inc.GetId(), func(tr *vigilv1.Triage) {
		seen = proto.Clone(tr).(*vigilv1.Triage)
		triaged(tr)
	})
	if !proto.Equal(seen, store.NewTriage()) {
		t.Errorf("update saw triage %v, want %v", seen, store.NewTriage())
	}
	if !proto.Equal(got.GetTriage(), wantTriaged()) {
		t.Errorf("UpdateTriage returned triage %v, want %v", got.GetTriage(), wantTriaged())
	}
	if got.GetCursor() <= c2 {
		t.Errorf("cursor after UpdateTriage = %d, want > %d (a triage change moves the incident)", got.GetCursor(), c2)
	}
	stored := get(t, s, inc.GetId())
	if !proto.Equal(stored, got) {
		t.Errorf("Get after UpdateTriage differs from what UpdateTriage returned:\n got %v\nwant %v", stored, got)
	}
	want := proto.Clone(inc).(*vigilv1.Incident)
	want.Triage = wantTriaged()
	wantStored(t, stored, want, got.GetCursor(), stored.GetReceivedTime().AsTime(), stored.GetReceivedTime().AsTime())
	all, err := s.After(context.Background(), nil, 0, 10)
	if err != nil {
		t.Fatalf("After: %v", err)
	}
	if w := []uint64{c2, got.GetCursor()}; !equal(cursors(all), w) {
		t.Errorf("After cursors = %v, want %v (cursor %d is gone)", cursors(all), w, c1)
	}

	// A second update sees the first one's triage and adds to it.
	got = updateTriage(t, s, inc.GetId(), func(tr *vigilv1.Triage) {
		if !proto.Equal(tr, wantTriaged()) {
			t.Errorf("second update saw %v, want %v", tr, wantTriaged())
		}
		tr.Status = vigilv1.TriageStatus_TRIAGE_STATUS_RESOLVED
		tr.Notes = append(tr.Notes, &vigilv1.Note{Author: "bob", Text: "closed"})
	})
	if n := len(got.GetTriage().GetNotes()); n != 2 || got.GetTriage().GetStatus() != vigilv1.TriageStatus_TRIAGE_STATUS_RESOLVED {
		t.Errorf("after second update: status %v, %d notes; want RESOLVED, 2", got.GetTriage().GetStatus(), n)
	}
}

func testTriageKeptByRevision(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	inc := NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)
	inc.Revision = 1
	put(t, s, inc)
	tc := updateTriage(t, s, inc.GetId(), triaged).GetCursor()

	// The agent's next revision replaces what it reported and keeps the
	// analysts' triage, even when it carries a triage of its own.
	rev := proto.Clone(inc).(*vigilv1.Incident)
	rev.Revision = 2
	rev.Title = "revision 2"
	rev.Triage = &vigilv1.Triage{Status: vigilv1.TriageStatus_TRIAGE_STATUS_RESOLVED, Label: vigilv1.Label_LABEL_MALICIOUS}
	c := put(t, s, rev)
	if c <= tc {
		t.Errorf("cursor of revision 2 = %d, want > %d", c, tc)
	}
	got := get(t, s, inc.GetId())
	if got.GetTitle() != "revision 2" || got.GetRevision() != 2 {
		t.Errorf("after revision 2: title %q revision %d", got.GetTitle(), got.GetRevision())
	}
	if !proto.Equal(got.GetTriage(), wantTriaged()) {
		t.Errorf("triage after revision 2 = %v, want %v", got.GetTriage(), wantTriaged())
	}
	// A resend changes nothing either.
	if _, inserted, err := s.Put(ctx, rev); err != nil || inserted {
		t.Errorf("resend of revision 2 = inserted %v, %v", inserted, err)
	}
	if got := get(t, s, inc.GetId()); !proto.Equal(got.GetTriage(), wantTriaged()) {
		t.Errorf("triage after resend = %v, want %v", got.GetTriage(), wantTriaged())
	}

	// A triage an agent sends with a new incident is not stored.
	fresh := NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)
	fresh.Triage = wantTriaged()
	put(t, s, fresh)
	if got := get(t, s, fresh.GetId()); got.GetTriage() != nil {
		t.Errorf("Put stored the agent's triage %v", got.GetTriage())
	}
}

func testTriageNotFound(t *testing.T, open Opener) {
	s := openStore(t, open)
	put(t, s, NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH))
	for _, id := range []string{NewID(), "not-a-uuid", ""} {
		called := false
		_, err := s.UpdateTriage(context.Background(), id, func(*vigilv1.Triage) error { called = true; return nil })
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UpdateTriage(%q) = %v, want ErrNotFound", id, err)
		}
		if called {
			t.Errorf("UpdateTriage(%q) called update", id)
		}
	}
	// The failed updates took no cursor a reader could wait on forever.
	c := put(t, s, NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH))
	all, err := s.After(context.Background(), nil, 0, 10)
	if err != nil || len(all) != 2 || all[1].GetCursor() != c {
		t.Errorf("After = %v, %v; want 2 incidents ending at cursor %d", cursors(all), err, c)
	}
}

func testTriageUpdateError(t *testing.T, open Opener) {
	s := openStore(t, open)
	inc := NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)
	c := put(t, s, inc)
	boom := errors.New("boom")
	_, err := s.UpdateTriage(context.Background(), inc.GetId(), func(tr *vigilv1.Triage) error {
		triaged(tr)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateTriage = %v, want the update's error", err)
	}
	got := get(t, s, inc.GetId())
	if got.GetTriage() != nil || got.GetCursor() != c {
		t.Errorf("after a failed update: triage %v cursor %d, want unset and %d", got.GetTriage(), got.GetCursor(), c)
	}
}

func testTriageFilters(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	open1 := NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)
	benign := NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)
	resolved := NewIncident("host-b", "r1", vigilv1.Severity_SEVERITY_HIGH)
	for _, inc := range []*vigilv1.Incident{open1, benign, resolved} {
		put(t, s, inc)
	}
	updateTriage(t, s, benign.GetId(), triaged) // acknowledged, benign
	updateTriage(t, s, resolved.GetId(), func(tr *vigilv1.Triage) {
		tr.Status = vigilv1.TriageStatus_TRIAGE_STATUS_RESOLVED
		tr.Label = vigilv1.Label_LABEL_MALICIOUS
	})
	tests := []struct {
		filter *vigilv1.IncidentFilter
		want   []string // oldest cursor first
	}{
		{&vigilv1.IncidentFilter{Status: vigilv1.TriageStatus_TRIAGE_STATUS_OPEN}, []string{open1.GetId()}},
		{&vigilv1.IncidentFilter{Status: vigilv1.TriageStatus_TRIAGE_STATUS_ACKNOWLEDGED}, []string{benign.GetId()}},
		{&vigilv1.IncidentFilter{Status: vigilv1.TriageStatus_TRIAGE_STATUS_RESOLVED}, []string{resolved.GetId()}},
		{&vigilv1.IncidentFilter{Label: vigilv1.Label_LABEL_UNLABELLED}, []string{open1.GetId()}},
		{&vigilv1.IncidentFilter{Label: vigilv1.Label_LABEL_BENIGN}, []string{benign.GetId()}},
		{&vigilv1.IncidentFilter{Label: vigilv1.Label_LABEL_BENIGN, HostId: "host-b"}, nil},
		{&vigilv1.IncidentFilter{Label: vigilv1.Label_LABEL_MALICIOUS, HostId: "host-b"}, []string{resolved.GetId()}},
		{&vigilv1.IncidentFilter{}, []string{open1.GetId(), benign.GetId(), resolved.GetId()}},
	}
	for _, tt := range tests {
		got, err := s.After(ctx, tt.filter, 0, 10)
		if err != nil {
			t.Fatalf("After(%v): %v", tt.filter, err)
		}
		if !equal(ids(got), tt.want) {
			t.Errorf("After(%v) = %v, want %v", tt.filter, ids(got), tt.want)
		}
		list, err := s.List(ctx, tt.filter, 0, 10)
		if err != nil {
			t.Fatalf("List(%v): %v", tt.filter, err)
		}
		if len(list) != len(tt.want) {
			t.Errorf("List(%v) = %v, want %d incidents", tt.filter, ids(list), len(tt.want))
		}
	}
}

func testTriageChanged(t *testing.T, open Opener) {
	s := openStore(t, open)
	inc := NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)
	put(t, s, inc)
	ch := s.Changed()
	updateTriage(t, s, inc.GetId(), triaged)
	if !closed(ch) {
		t.Fatal("Changed channel not closed by UpdateTriage")
	}
}

func testTriagePersistence(t *testing.T, open Opener) {
	n := name(t)
	s := open(t, n)
	inc := NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)
	put(t, s, inc)
	want := updateTriage(t, s, inc.GetId(), triaged)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = open(t, n)
	t.Cleanup(func() { s.Close() })
	if got := get(t, s, inc.GetId()); !proto.Equal(got, want) {
		t.Errorf("after reopen:\n got %v\nwant %v", got, want)
	}
}

func testTriageConcurrent(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	inc := NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)
	inc.Revision = 1
	put(t, s, inc)
	// Analysts add notes while the agent sends new revisions: every note
	// and the last revision are kept.
	const writers, each, revisions = 4, 10, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := s.UpdateTriage(ctx, inc.GetId(), func(tr *vigilv1.Triage) error {
					tr.Notes = append(tr.Notes, &vigilv1.Note{Author: fmt.Sprint(w), Text: fmt.Sprint(i)})
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := uint32(2); r <= revisions; r++ {
			rev := proto.Clone(inc).(*vigilv1.Incident)
			rev.Revision = r
			if _, _, err := s.Put(ctx, rev); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent update: %v", err)
	}
	got := get(t, s, inc.GetId())
	if got.GetRevision() != revisions {
		t.Errorf("revision = %d, want %d", got.GetRevision(), revisions)
	}
	seen := map[string]bool{}
	for _, n := range got.GetTriage().GetNotes() {
		seen[n.GetAuthor()+"/"+n.GetText()] = true
	}
	if len(seen) != writers*each || len(got.GetTriage().GetNotes()) != writers*each {
		t.Errorf("%d notes (%d distinct) kept, want %d", len(got.GetTriage().GetNotes()), len(seen), writers*each)
	}
	all, err := s.After(ctx, nil, 0, 10)
	if err != nil || len(all) != 1 {
		t.Errorf("After = %d incidents, %v; want 1", len(all), err)
	}
}
