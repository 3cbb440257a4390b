// Package storetest is the conformance test suite every store.Store
// implementation must pass, and helpers that make valid incidents for tests.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/store"
)

// Opener opens the store called name for test t. The first call with a
// name gives an empty store; a later call with the same name (after the
// suite closed the previous store) opens the same storage again, with
// everything that was put into it. The suite uses a different name in each
// subtest. The suite closes every store it opens.
type Opener func(t *testing.T, name string) store.Store

// Run runs the conformance suite against the stores that open makes.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"PutGet", testPutGet},
		{"PutDoesNotModifyArgument", testPutDoesNotModify},
		{"Dedup", testDedup},
		{"Revisions", testRevisions},
		{"CursorsIncrease", testCursorsIncrease},
		{"Validation", testValidation},
		{"GetNotFound", testGetNotFound},
		{"ListPaging", testListPaging},
		{"AfterPaging", testAfterPaging},
		{"Filters", testFilters},
		{"BadLimit", testBadLimit},
		{"Changed", testChanged},
		{"Persistence", testPersistence},
		{"ConcurrentPuts", testConcurrentPuts},
	}
	tests = append(tests, triageTests...)
	tests = append(tests, actionTests...)
	tests = append(tests, ruleSetTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

// name turns the test's name into a store name.
func name(t *testing.T) string {
	return strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
}

// openStore opens a fresh store and closes it when the test ends.
func openStore(t *testing.T, open Opener) store.Store {
	t.Helper()
	s := open(t, name(t))
	t.Cleanup(func() { s.Close() })
	return s
}

// put stores inc and fails the test unless it is inserted.
func put(t *testing.T, s store.Store, inc *vigilv1.Incident) uint64 {
	t.Helper()
	c, inserted, err := s.Put(context.Background(), inc)
	if err != nil {
		t.Fatalf("Put(%s): %v", inc.GetId(), err)
	}
	if !inserted {
		t.Fatalf("Put(%s): inserted = false, want true", inc.GetId())
	}
	if c == 0 {
		t.Fatalf("Put(%s): cursor 0", inc.GetId())
	}
	return c
}

// cursors returns the cursors of incs.
func cursors(incs []*vigilv1.Incident) []uint64 {
	out := make([]uint64, len(incs))
	for i, inc := range incs {
		out[i] = inc.GetCursor()
	}
	return out
}

// ids returns the ids of incs.
func ids(incs []*vigilv1.Incident) []string {
	out := make([]string, len(incs))
	for i, inc := range incs {
		out[i] = inc.GetId()
	}
	return out
}

// equal reports whether two slices hold the same values in the same order.
func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// wantStored checks that got is want as stored at cursor, received between
// from and to.
func wantStored(t *testing.T, got, want *vigilv1.Incident, cursor uint64, from, to time.Time) {
	t.Helper()
	if got.GetCursor() != cursor {
		t.Errorf("cursor = %d, want %d", got.GetCursor(), cursor)
	}
	rt := got.GetReceivedTime().AsTime()
	if got.GetReceivedTime() == nil || rt.Before(from.Add(-time.Millisecond)) || rt.After(to.Add(time.Millisecond)) {
		t.Errorf("received_time = %v, want between %v and %v", got.GetReceivedTime(), from, to)
	}
	cmp := proto.Clone(got).(*vigilv1.Incident)
	cmp.Cursor, cmp.ReceivedTime = 0, nil
	if !proto.Equal(cmp, want) {
		t.Errorf("stored incident differs:\n got %v\nwant %v", cmp, want)
	}
}

func testPutGet(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	inc := NewIncident("host-a", "shell-from-web", vigilv1.Severity_SEVERITY_HIGH)
	from := time.Now()
	c := put(t, s, inc)
	to := time.Now()
	got, err := s.Get(ctx, inc.GetId())
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	wantStored(t, got, inc, c, from, to)

	after, err := s.After(ctx, nil, 0, 10)
	if err != nil {
		t.Fatalf("After: %v", err)
	}
	if len(after) != 1 {
		t.Fatalf("After returned %d incidents, want 1", len(after))
	}
	wantStored(t, after[0], inc, c, from, to)

	list, err := s.List(ctx, nil, 0, 10)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 1 {
		t.Fatalf("List returned %d incidents, want 1", len(list))
	}
	wantStored(t, list[0], inc, c, from, to)
}

func testPutDoesNotModify(t *testing.T, open Opener) {
	s := openStore(t, open)
	inc := NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW)
	before := proto.Clone(inc)
	put(t, s, inc)
	if !proto.Equal(inc, before) {
		t.Errorf("Put modified its argument:\n got %v\nwant %v", inc, before)
	}
}

func testDedup(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	first := NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)
	c1 := put(t, s, first)
	other := put(t, s, NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH))

	again := proto.Clone(first).(*vigilv1.Incident)
	again.Title = "a different title"
	again.HostId = "host-b"
	c2, inserted, err := s.Put(ctx, again)
	if err != nil {
		t.Fatalf("second Put: %v", err)
	}
	if inserted {
		t.Errorf("second Put: inserted = true, want false")
	}
	if c2 != c1 {
		t.Errorf("second Put: cursor = %d, want the original %d", c2, c1)
	}
	got, err := s.Get(ctx, first.GetId())
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.GetTitle() != first.GetTitle() || got.GetHostId() != "host-a" {
		t.Errorf("Get after duplicate Put: title %q host %q, want the original %q %q", got.GetTitle(), got.GetHostId(), first.GetTitle(), "host-a")
	}
	all, err := s.After(ctx, nil, 0, 100)
	if err != nil {
		t.Fatalf("After: %v", err)
	}
	if want := []uint64{c1, other}; !equal(cursors(all), want) {
		t.Errorf("After cursors = %v, want %v", cursors(all), want)
	}
	// A duplicate does not use up a cursor: the next insert is still larger
	// than every earlier one.
	next := put(t, s, NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH))
	if next <= other {
		t.Errorf("cursor after duplicate = %d, want > %d", next, other)
	}
}

// testRevisions checks that a higher revision of a stored incident replaces
// it at a new cursor, and that an equal or lower one changes nothing.
func testRevisions(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	first := NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_MEDIUM)
	first.Revision = 1
	c1 := put(t, s, first)
	other := put(t, s, NewIncident("host-a", "r2", vigilv1.Severity_SEVERITY_LOW))

	second := proto.Clone(first).(*vigilv1.Incident)
	second.Revision = 2
	second.Severity = vigilv1.Severity_SEVERITY_HIGH
	second.Signals = []*vigilv1.Signal{{RuleId: "r1"}, {RuleId: "r3"}}
	c2, inserted, err := s.Put(ctx, second)
	if err != nil {
		t.Fatalf("Put revision 2: %v", err)
	}
	if !inserted || c2 <= other {
		t.Fatalf("Put revision 2: cursor %d inserted %v, want a cursor > %d and inserted", c2, inserted, other)
	}
	got, err := s.Get(ctx, first.GetId())
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.GetRevision() != 2 || got.GetSeverity() != vigilv1.Severity_SEVERITY_HIGH || len(got.GetSignals()) != 2 || got.GetCursor() != c2 {
		t.Errorf("Get after revision 2: revision %d severity %v signals %d cursor %d, want 2 HIGH 2 %d",
			got.GetRevision(), got.GetSeverity(), len(got.GetSignals()), got.GetCursor(), c2)
	}
	all, err := s.After(ctx, nil, 0, 100)
	if err != nil {
		t.Fatalf("After: %v", err)
	}
	if want := []uint64{other, c2}; !equal(cursors(all), want) {
		t.Errorf("After cursors = %v, want %v (the update moved, the old cursor %d is gone)", cursors(all), want, c1)
	}
	// A late revision 1 and a resent revision 2 change nothing.
	for _, rev := range []uint32{1, 2} {
		late := proto.Clone(first).(*vigilv1.Incident)
		late.Revision = rev
		late.Title = "stale"
		c, inserted, err := s.Put(ctx, late)
		if err != nil {
			t.Fatalf("Put revision %d again: %v", rev, err)
		}
		if inserted || c != c2 {
			t.Errorf("Put revision %d again: cursor %d inserted %v, want %d and false", rev, c, inserted, c2)
		}
	}
	got, err = s.Get(ctx, first.GetId())
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.GetTitle() == "stale" {
		t.Error("an older revision overwrote a newer one")
	}
}

func testCursorsIncrease(t *testing.T, open Opener) {
	s := openStore(t, open)
	var prev uint64
	for i := range 20 {
		c := put(t, s, NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW))
		if c <= prev {
			t.Fatalf("put %d: cursor %d not larger than previous %d", i, c, prev)
		}
		prev = c
	}
}

func testValidation(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	withID := func(id string) *vigilv1.Incident {
		inc := NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW)
		inc.Id = id
		return inc
	}
	valid := NewID()
	tests := []struct {
		name string
		inc  *vigilv1.Incident
		want string
	}{
		{"nil", nil, "invalid incident: incident is nil"},
		{"empty id", withID(""), "invalid incident: id is empty"},
		{"not a uuid", withID("not-a-uuid"), `invalid incident: id "not-a-uuid" is not a canonical lower-case UUID`},
		{"upper case", withID(strings.ToUpper(valid)), fmt.Sprintf("invalid incident: id %q is not a canonical lower-case UUID", strings.ToUpper(valid))},
		{"braces", withID("{" + valid + "}"), fmt.Sprintf("invalid incident: id %q is not a canonical lower-case UUID", "{"+valid+"}")},
	}
	for _, tt := range tests {
		c, inserted, err := s.Put(ctx, tt.inc)
		if err == nil {
			t.Errorf("%s: Put succeeded (cursor %d), want error", tt.name, c)
			continue
		}
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: error %v does not wrap ErrInvalid", tt.name, err)
		}
		if err.Error() != tt.want {
			t.Errorf("%s: error %q, want %q", tt.name, err, tt.want)
		}
		if c != 0 || inserted {
			t.Errorf("%s: cursor %d inserted %v, want 0 false", tt.name, c, inserted)
		}
	}
	all, err := s.After(ctx, nil, 0, 100)
	if err != nil {
		t.Fatalf("After: %v", err)
	}
	if len(all) != 0 {
		t.Errorf("invalid puts stored %d incidents", len(all))
	}
}

func testGetNotFound(t *testing.T, open Opener) {
	s := openStore(t, open)
	put(t, s, NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW))
	for _, id := range []string{NewID(), "", "nonsense"} {
		got, err := s.Get(context.Background(), id)
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q) = %v, %v; want ErrNotFound", id, got, err)
		}
	}
}

// putN stores n incidents of host-a and returns their cursors in order.
func putN(t *testing.T, s store.Store, n int) []uint64 {
	t.Helper()
	var out []uint64
	for range n {
		out = append(out, put(t, s, NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_MEDIUM)))
	}
	return out
}

func testListPaging(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	c := putN(t, s, 7)
	pages := []struct {
		before uint64
		limit  int
		want   []uint64
	}{
		{0, 3, []uint64{c[6], c[5], c[4]}},
		{c[4], 3, []uint64{c[3], c[2], c[1]}},
		{c[1], 3, []uint64{c[0]}},
		{c[0], 3, nil},
		{0, 100, []uint64{c[6], c[5], c[4], c[3], c[2], c[1], c[0]}},
		{c[6] + 1000, 2, []uint64{c[6], c[5]}},
		{c[3], 1, []uint64{c[2]}},
	}
	for _, p := range pages {
		got, err := s.List(ctx, nil, p.before, p.limit)
		if err != nil {
			t.Fatalf("List(before %d, limit %d): %v", p.before, p.limit, err)
		}
		if !equal(cursors(got), p.want) {
			t.Errorf("List(before %d, limit %d) cursors = %v, want %v", p.before, p.limit, cursors(got), p.want)
		}
	}
}

func testAfterPaging(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	c := putN(t, s, 7)
	pages := []struct {
		after uint64
		limit int
		want  []uint64
	}{
		{0, 3, []uint64{c[0], c[1], c[2]}},
		{c[2], 3, []uint64{c[3], c[4], c[5]}},
		{c[5], 3, []uint64{c[6]}},
		{c[6], 3, nil},
		{0, 100, c},
		{c[3], 1, []uint64{c[4]}},
	}
	for _, p := range pages {
		got, err := s.After(ctx, nil, p.after, p.limit)
		if err != nil {
			t.Fatalf("After(%d, limit %d): %v", p.after, p.limit, err)
		}
		if !equal(cursors(got), p.want) {
			t.Errorf("After(%d, limit %d) cursors = %v, want %v", p.after, p.limit, cursors(got), p.want)
		}
	}
}

func testFilters(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	type spec struct {
		host, rule string
		sev        vigilv1.Severity
	}
	specs := []spec{
		{"host-a", "r1", vigilv1.Severity_SEVERITY_INFO},     // 0
		{"host-b", "r1", vigilv1.Severity_SEVERITY_HIGH},     // 1
		{"host-a", "r2", vigilv1.Severity_SEVERITY_CRITICAL}, // 2
		{"host-a", "r1", vigilv1.Severity_SEVERITY_MEDIUM},   // 3
		{"host-b", "r2", vigilv1.Severity_SEVERITY_LOW},      // 4
		{"host-c", "r3", vigilv1.Severity_SEVERITY_HIGH},     // 5
	}
	var id []string
	for _, sp := range specs {
		inc := NewIncident(sp.host, sp.rule, sp.sev)
		put(t, s, inc)
		id = append(id, inc.GetId())
	}
	tests := []struct {
		name   string
		filter *vigilv1.IncidentFilter
		want   []int // indexes into specs, oldest first
	}{
		{"nil", nil, []int{0, 1, 2, 3, 4, 5}},
		{"empty", &vigilv1.IncidentFilter{}, []int{0, 1, 2, 3, 4, 5}},
		{"host", &vigilv1.IncidentFilter{HostId: "host-a"}, []int{0, 2, 3}},
		{"rule", &vigilv1.IncidentFilter{RuleId: "r2"}, []int{2, 4}},
		{"severity", &vigilv1.IncidentFilter{MinSeverity: vigilv1.Severity_SEVERITY_HIGH}, []int{1, 2, 5}},
		{"severity info", &vigilv1.IncidentFilter{MinSeverity: vigilv1.Severity_SEVERITY_INFO}, []int{0, 1, 2, 3, 4, 5}},
		{"host and rule", &vigilv1.IncidentFilter{HostId: "host-a", RuleId: "r1"}, []int{0, 3}},
		{"all three", &vigilv1.IncidentFilter{HostId: "host-a", RuleId: "r1", MinSeverity: vigilv1.Severity_SEVERITY_MEDIUM}, []int{3}},
		{"no match", &vigilv1.IncidentFilter{HostId: "host-z"}, nil},
	}
	for _, tt := range tests {
		var want, wantRev []string
		for _, i := range tt.want {
			want = append(want, id[i])
			wantRev = append([]string{id[i]}, wantRev...)
		}
		after, err := s.After(ctx, tt.filter, 0, 100)
		if err != nil {
			t.Fatalf("%s: After: %v", tt.name, err)
		}
		if !equal(ids(after), want) {
			t.Errorf("%s: After ids = %v, want %v", tt.name, ids(after), want)
		}
		list, err := s.List(ctx, tt.filter, 0, 100)
		if err != nil {
			t.Fatalf("%s: List: %v", tt.name, err)
		}
		if !equal(ids(list), wantRev) {
			t.Errorf("%s: List ids = %v, want %v", tt.name, ids(list), wantRev)
		}
	}

	// Filters combine with paging: page through host-a one at a time.
	f := &vigilv1.IncidentFilter{HostId: "host-a"}
	var got []string
	var cursor uint64
	for {
		page, err := s.After(ctx, f, cursor, 1)
		if err != nil {
			t.Fatalf("After paging: %v", err)
		}
		if len(page) == 0 {
			break
		}
		got = append(got, page[0].GetId())
		cursor = page[0].GetCursor()
	}
	if want := []string{id[0], id[2], id[3]}; !equal(got, want) {
		t.Errorf("After paging host-a one at a time = %v, want %v", got, want)
	}
	got = nil
	cursor = 0
	for {
		page, err := s.List(ctx, f, cursor, 2)
		if err != nil {
			t.Fatalf("List paging: %v", err)
		}
		got = append(got, ids(page)...)
		if len(page) < 2 {
			break
		}
		cursor = page[len(page)-1].GetCursor()
	}
	if want := []string{id[3], id[2], id[0]}; !equal(got, want) {
		t.Errorf("List paging host-a two at a time = %v, want %v", got, want)
	}
}

func testBadLimit(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	putN(t, s, 2)
	for _, limit := range []int{0, -1} {
		if got, err := s.List(ctx, nil, 0, limit); err == nil {
			t.Errorf("List(limit %d) = %d incidents, want error", limit, len(got))
		}
		if got, err := s.After(ctx, nil, 0, limit); err == nil {
			t.Errorf("After(limit %d) = %d incidents, want error", limit, len(got))
		}
	}
}

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func testChanged(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	ch1 := s.Changed()
	ch2 := s.Changed()
	if closed(ch1) || closed(ch2) {
		t.Fatal("Changed channel closed before any Put")
	}
	inc := NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW)
	put(t, s, inc)
	if !closed(ch1) || !closed(ch2) {
		t.Fatal("Changed channels not closed by an inserting Put")
	}

	ch3 := s.Changed()
	if closed(ch3) {
		t.Fatal("Changed after a Put returned a closed channel")
	}
	if _, inserted, err := s.Put(ctx, inc); err != nil || inserted {
		t.Fatalf("duplicate Put = inserted %v, %v", inserted, err)
	}
	if _, _, err := s.Put(ctx, nil); err == nil {
		t.Fatal("Put(nil) succeeded")
	}
	if closed(ch3) {
		t.Fatal("Changed channel closed by a Put that inserted nothing")
	}

	// A waiter in another goroutine wakes up.
	woke := make(chan struct{})
	go func() {
		<-ch3
		close(woke)
	}()
	put(t, s, NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW))
	select {
	case <-woke:
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken by Put")
	}
}

func testPersistence(t *testing.T, open Opener) {
	ctx := context.Background()
	n := name(t)
	s := open(t, n)
	a := NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)
	b := NewIncident("host-b", "r2", vigilv1.Severity_SEVERITY_LOW)
	ca := put(t, s, a)
	cb := put(t, s, b)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, n)
	t.Cleanup(func() { s.Close() })
	for _, tc := range []struct {
		inc    *vigilv1.Incident
		cursor uint64
	}{{a, ca}, {b, cb}} {
		got, err := s.Get(ctx, tc.inc.GetId())
		if err != nil {
			t.Fatalf("Get after reopen: %v", err)
		}
		wantStored(t, got, tc.inc, tc.cursor, got.GetReceivedTime().AsTime(), got.GetReceivedTime().AsTime())
	}
	all, err := s.After(ctx, nil, 0, 10)
	if err != nil {
		t.Fatalf("After after reopen: %v", err)
	}
	if want := []uint64{ca, cb}; !equal(cursors(all), want) {
		t.Errorf("After after reopen cursors = %v, want %v", cursors(all), want)
	}
	// Dedup survives the reopen, and new cursors keep growing.
	c, inserted, err := s.Put(ctx, a)
	if err != nil || inserted || c != ca {
		t.Errorf("duplicate Put after reopen = %d, %v, %v; want %d, false, nil", c, inserted, err, ca)
	}
	if c := put(t, s, NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)); c <= cb {
		t.Errorf("cursor after reopen = %d, want > %d", c, cb)
	}
}

func testConcurrentPuts(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	const writers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, _, err := s.Put(ctx, NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Put: %v", err)
	}
	all, err := s.After(ctx, nil, 0, writers*each+10)
	if err != nil {
		t.Fatalf("After: %v", err)
	}
	if len(all) != writers*each {
		t.Fatalf("After returned %d incidents, want %d", len(all), writers*each)
	}
	for i := 1; i < len(all); i++ {
		if all[i].GetCursor() <= all[i-1].GetCursor() {
			t.Fatalf("cursors not increasing at %d: %d then %d", i, all[i-1].GetCursor(), all[i].GetCursor())
		}
	}
}
