package seqmodel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// tiny returns an order-2 model trained on the single trace 1 2 1 2.
//
// Counts (S = start of trace): unigrams 1:2, 2:2 (4 tokens, 2 types, so the
// uniform floor is 1/(2+1)); bigrams S1:1, 12:2, 21:1.
func tiny(t *testing.T) *Model {
	t.Helper()
	m := New(Options{Order: 2})
	if err := m.Train([]int{1, 2, 1, 2}); err != nil {
		t.Fatal(err)
	}
	m.Finalize()
	return m
}

func TestTinyExactScores(t *testing.T) {
	m := tiny(t)
	// Token 1 after S: unigram (2 + 2*(1/3))/(4+2) = 4/9; bigram
	// (1 + 1*4/9)/(1+1) = 13/18. Token 2 after 1: unigram 4/9; bigram
	// (2 + 1*4/9)/(2+1) = 22/27. Token 3 after 2: unigram (0 + 2/3)/6 = 1/9;
	// bigram (0 + 1/9)/(1+1) = 1/18; token 3 first, after S, gets the same.
	cases := []struct {
		trace []int
		want  float64
	}{
		{nil, 0},
		{[]int{1, 2}, (math.Log(18.0/13) + math.Log(27.0/22)) / 2},
		{[]int{3}, math.Log(18)},
		{[]int{1, 2, 3}, (math.Log(18.0/13) + math.Log(27.0/22) + math.Log(18)) / 3},
	}
	for _, c := range cases {
		got := m.Score(c.trace)
		if math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Score(%v) = %.15f, want %.15f", c.trace, got, c.want)
		}
		// The streaming scorer must agree exactly with Score.
		s := m.NewScorer()
		for _, tok := range c.trace {
			s.Add(tok)
		}
		if s.Score() != got {
			t.Errorf("Scorer on %v = %v, Score = %v", c.trace, s.Score(), got)
		}
	}
	want := "1 of 2 syscall windows of length 2 never seen in training, mean surprise 1.14 nats per syscall, the rarest step being 2→3 (p=0.056)"
	if got := m.Explain([]int{1, 2, 3}); got != want {
		t.Errorf("Explain = %q\nwant      %q", got, want)
	}
	if got := m.Explain([]int{1}); !strings.HasPrefix(got, "trace of 1 syscalls, shorter than one window of length 2") {
		t.Errorf("Explain(short) = %q", got)
	}
	// An out-of-range token scores like any unseen token.
	if got, want := m.Score([]int{-5}), math.Log(18); math.Abs(got-want) > 1e-12 {
		t.Errorf("Score([-5]) = %v, want %v", got, want)
	}
}

func TestScorerBoundedMemory(t *testing.T) {
	m := tiny(t)
	s := m.NewScorer()
	for i := 0; i < 100000; i++ {
		s.Add(i % 7)
	}
	if len(s.hist) > m.Order()-1 || cap(s.hist) > m.Order() || len(s.worstW) > m.Order() {
		t.Fatalf("scorer state grew: hist %d/%d, worst window %d", len(s.hist), cap(s.hist), len(s.worstW))
	}
	if s.Len() != 100000 {
		t.Fatalf("Len = %d", s.Len())
	}
}

func TestTrainRejectsBadToken(t *testing.T) {
	m := New(Options{})
	if err := m.Train([]int{3, -1}); !errors.Is(err, ErrBadToken) {
		t.Fatalf("Train negative token: err = %v, want ErrBadToken", err)
	}
	if m.Traces() != 0 || m.Tokens() != 0 {
		t.Fatalf("rejected trace was counted: %d traces, %d tokens", m.Traces(), m.Tokens())
	}
}

func TestKnownNGrams(t *testing.T) {
	m := tiny(t)
	if got, want := m.KnownNGrams(1), [][]int{{1}, {2}}; !reflect.DeepEqual(got, want) {
		t.Errorf("KnownNGrams(1) = %v, want %v", got, want)
	}
	// S1 overlaps the start of the trace and is left out.
	if got, want := m.KnownNGrams(2), [][]int{{1, 2}, {2, 1}}; !reflect.DeepEqual(got, want) {
		t.Errorf("KnownNGrams(2) = %v, want %v", got, want)
	}
	if got := m.KnownNGrams(3); got != nil {
		t.Errorf("KnownNGrams(3) = %v, want nil", got)
	}
	h := fnv.New64a()
	for _, v := range []uint32{1, 2, 300} {
		h.Write(binary.LittleEndian.AppendUint32(nil, v))
	}
	if got, want := HashNGram([]int{1, 2, 300}), h.Sum64(); got != want {
		t.Errorf("HashNGram = %#x, want %#x", got, want)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	m := New(Options{Order: 4})
	traces := [][]int{
		{3, 6, 195, 5, 221, 141, 141, 6, 5, 195},
		{3, 6, 195, 195, 5, 221, 6, 221, 3},
		{300, 1000, 70000, 3, 6},
	}
	for _, tr := range traces {
		if err := m.Train(tr); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil {
		t.Fatal(err)
	}
	saved := append([]byte(nil), buf.Bytes()...)
	l, err := Load(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if l.Order() != 4 || l.Traces() != 3 || l.Tokens() != 24 {
		t.Fatalf("loaded order %d, traces %d, tokens %d", l.Order(), l.Traces(), l.Tokens())
	}
	probes := append(traces, []int{6, 195, 5, 999}, []int{70000, 3}, nil)
	for _, p := range probes {
		if a, b := m.Score(p), l.Score(p); a != b {
			t.Errorf("Score(%v): saved %v, loaded %v", p, a, b)
		}
		if a, b := m.Explain(p), l.Explain(p); a != b {
			t.Errorf("Explain(%v): saved %q, loaded %q", p, a, b)
		}
	}
	if !reflect.DeepEqual(m.KnownNGrams(3), l.KnownNGrams(3)) {
		t.Error("KnownNGrams differ after Load")
	}
	var again bytes.Buffer
	if err := l.Save(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(saved, again.Bytes()) {
		t.Error("saving a loaded model gives different bytes")
	}
}

func TestLoadCorrupt(t *testing.T) {
	var buf bytes.Buffer
	if err := tiny(t).Save(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	flip := append([]byte(nil), good...)
	flip[len(flip)-6] ^= 0x40
	version := append([]byte(nil), good...)
	version[len(fileMagic)] = 9
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrFormat},
		{"not a model", []byte("3 6 195 5 221 141 141 6 5 195\n"), ErrFormat},
		{"truncated", good[:len(good)-3], ErrFormat},
		{"flipped bit", flip, ErrFormat},
		{"future version", version, ErrVersion},
	}
	for _, c := range cases {
		_, err := Load(bytes.NewReader(c.data))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestReadTraceErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "sub", "bad.txt")
	if err := os.MkdirAll(filepath.Dir(bad), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("3 6 195\n5 x21 6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadTraceDir(dir)
	if err == nil || !strings.Contains(err.Error(), bad+":2: token \"x21\"") {
		t.Errorf("bad token: err = %v, want it to name %s line 2", err, bad)
	}
	empty := t.TempDir()
	if _, err := ReadTraceDir(empty); !errors.Is(err, ErrNoTraces) {
		t.Errorf("empty dir: err = %v, want ErrNoTraces", err)
	}
	if _, err := ReadTraceDir(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing dir: err = %v, want os.ErrNotExist", err)
	}
}

func TestEvalCommandUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := EvalCommand([]string{"--help"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "Usage: vigil-agent model eval") {
		t.Errorf("--help: code %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := EvalCommand([]string{"--train", "x"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "missing [--normal --attack]") {
		t.Errorf("missing flags: code %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	empty := t.TempDir()
	if code := EvalCommand([]string{"--train", empty, "--normal", empty, "--attack", empty}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "no traces found") {
		t.Errorf("empty dirs: code %d, stderr %q", code, errb.String())
	}
}
