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

	"github.com/vigil-sensor/vigil/agent/rules"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/store"
)

// ruleSetTests are the conformance tests of PutRuleSet and RuleSet.
var ruleSetTests = []struct {
	name string
	fn   func(t *testing.T, open Opener)
}{
	{"RuleSetEmpty", testRuleSetEmpty},
	{"RuleSetVersions", testRuleSetVersions},
	{"RuleSetValidation", testRuleSetValidation},
	{"RuleSetPersistence", testRuleSetPersistence},
	{"RuleSetConcurrent", testRuleSetConcurrent},
}

// NewRuleSet returns a rule set of one file with content, hashed, not yet
// stored (version 0), set by by.
func NewRuleSet(content, by string) *vigilv1.RuleSet {
	files := []*vigilv1.RuleFile{{Name: "fleet.yaml", Content: content}}
	return &vigilv1.RuleSet{
		Hash: rules.HashRuleFiles(files), Files: files, SetBy: by,
		SetTime: timestamppb.New(time.Now().Truncate(time.Microsecond)),
	}
}

// putRuleSet stores rs and fails the test on an error.
func putRuleSet(t *testing.T, s store.Store, rs *vigilv1.RuleSet) (*vigilv1.RuleSet, bool) {
	t.Helper()
	got, changed, err := s.PutRuleSet(context.Background(), rs)
	if err != nil {
		t.Fatalf("PutRuleSet: %v", err)
	}
	return got, changed
}

// currentRuleSet reads the rule set and fails the test on an error.
func currentRuleSet(t *testing.T, s store.Store) *vigilv1.RuleSet {
	t.Helper()
	got, err := s.RuleSet(context.Background())
	if err != nil {
		t.Fatalf("RuleSet: %v", err)
	}
	return got
}

// withVersion returns a copy of rs with version v.
func withVersion(rs *vigilv1.RuleSet, v uint64) *vigilv1.RuleSet {
	c := proto.Clone(rs).(*vigilv1.RuleSet)
	c.Version = v
	return c
}

func testRuleSetEmpty(t *testing.T, open Opener) {
	s := openStore(t, open)
	got := currentRuleSet(t, s)
	if got == nil || got.GetVersion() != 0 || len(got.GetFiles()) != 0 || got.GetHash() != "" {
		t.Errorf("RuleSet of an empty store = %v, want version 0 without files", got)
	}
}

func testRuleSetVersions(t *testing.T, open Opener) {
	s := openStore(t, open)
	a := NewRuleSet("rules: []\n", "alice")
	got, changed := putRuleSet(t, s, a)
	if !changed || !proto.Equal(got, withVersion(a, 1)) {
		t.Fatalf("first PutRuleSet = %v, changed %v; want version 1 of it", got, changed)
	}
	if a.GetVersion() != 0 {
		t.Errorf("PutRuleSet modified its argument: version %d", a.GetVersion())
	}
	if cur := currentRuleSet(t, s); !proto.Equal(cur, withVersion(a, 1)) {
		t.Errorf("RuleSet = %v, want version 1 of the set", cur)
	}
	// The same files again, by someone else: nothing changes.
	again := proto.Clone(a).(*vigilv1.RuleSet)
	again.SetBy = "bob"
	got, changed = putRuleSet(t, s, again)
	if changed || !proto.Equal(got, withVersion(a, 1)) {
		t.Errorf("PutRuleSet of the same hash = %v, changed %v; want version 1 as stored, unchanged", got, changed)
	}
	// Other files: version 2, which RuleSet returns from now on.
	b := NewRuleSet("lists: {x: [a]}\n", "bob")
	got, changed = putRuleSet(t, s, b)
	if !changed || got.GetVersion() != 2 || !proto.Equal(got, withVersion(b, 2)) {
		t.Fatalf("second PutRuleSet = %v, changed %v; want version 2", got, changed)
	}
	if cur := currentRuleSet(t, s); !proto.Equal(cur, withVersion(b, 2)) {
		t.Errorf("RuleSet = %v, want version 2", cur)
	}
	// Back to the first files: a new version, not the old one.
	got, changed = putRuleSet(t, s, a)
	if !changed || got.GetVersion() != 3 {
		t.Errorf("PutRuleSet of earlier files = version %d, changed %v; want 3, true", got.GetVersion(), changed)
	}
	// A set without files is a set too.
	empty := &vigilv1.RuleSet{Hash: rules.HashRuleFiles(nil), SetBy: "carol"}
	if got, changed = putRuleSet(t, s, empty); !changed || got.GetVersion() != 4 || len(got.GetFiles()) != 0 {
		t.Errorf("PutRuleSet without files = %v, changed %v; want version 4", got, changed)
	}
}

func testRuleSetValidation(t *testing.T, open Opener) {
	s := openStore(t, open)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		rs   *vigilv1.RuleSet
	}{
		{"nil", nil},
		{"no hash", &vigilv1.RuleSet{Files: []*vigilv1.RuleFile{{Name: "a.yaml"}}}},
	} {
		if _, _, err := s.PutRuleSet(ctx, tc.rs); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: PutRuleSet error %v, want ErrInvalid", tc.name, err)
		}
	}
	if cur := currentRuleSet(t, s); cur.GetVersion() != 0 {
		t.Errorf("version %d stored after invalid puts", cur.GetVersion())
	}
}

func testRuleSetPersistence(t *testing.T, open Opener) {
	n := name(t)
	s := open(t, n)
	putRuleSet(t, s, NewRuleSet("rules: []\n", "alice"))
	b := NewRuleSet("lists: {x: [a]}\n", "bob")
	putRuleSet(t, s, b)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, n)
	defer s.Close()
	if cur := currentRuleSet(t, s); !proto.Equal(cur, withVersion(b, 2)) {
		t.Errorf("RuleSet after reopening = %v, want version 2", cur)
	}
	c := NewRuleSet("macros: {m: 'true'}\n", "carol")
	if got, _ := putRuleSet(t, s, c); got.GetVersion() != 3 {
		t.Errorf("PutRuleSet after reopening: version %d, want 3", got.GetVersion())
	}
}

// testRuleSetConcurrent sets distinct sets at once: each gets a version of
// its own, and the versions are 1 to n.
func testRuleSetConcurrent(t *testing.T, open Opener) {
	s := openStore(t, open)
	const n = 8
	var wg sync.WaitGroup
	versions := make(chan uint64, n)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, changed, err := s.PutRuleSet(context.Background(), NewRuleSet(fmt.Sprintf("# set %d\n", i), "alice"))
			if err != nil || !changed {
				errs <- fmt.Errorf("PutRuleSet %d: changed %v, %v", i, changed, err)
				return
			}
			versions <- got.GetVersion()
		}()
	}
	wg.Wait()
	close(versions)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[uint64]bool{}
	for v := range versions {
		if seen[v] || v < 1 || v > n {
			t.Errorf("version %d handed out twice or out of 1..%d", v, n)
		}
		seen[v] = true
	}
	if cur := currentRuleSet(t, s); cur.GetVersion() != n {
		t.Errorf("RuleSet version %d after %d puts", cur.GetVersion(), n)
	}
}
