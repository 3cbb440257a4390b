// Package seqmodel learns what the syscall-level behaviour of one executable
// normally looks like and scores new traces by how surprising they are.
//
// The model is an interpolated variable-order Markov model (a language model
// over integer tokens) with Witten-Bell smoothing: the probability of the next
// token is estimated from the longest matching context seen in training and
// blended with every shorter context down to a uniform floor, so that a
// window unseen at length 6 still gets a graded probability from its length
// 5, 4, ... suffixes. The score of a trace is its mean negative
// log-likelihood in nats per token: 0 for perfectly predictable behaviour,
// larger for behaviour the training traces make unlikely.
//
// Tokens are small non-negative integers: syscall numbers on ADFA-LD, and the
// event kinds reported by the sensors in the agent.
//
// Options.Kind also offers a neural language model (KindRNN: a GRU trained
// with truncated back-propagation through time and Adam, in pure Go) and a
// per-syscall mixture of the two (KindMix). Both are scored the same way,
// as mean negative log-likelihood per syscall, streaming with a bounded
// per-process state. On ADFA-LD they did not separate attacks from normal
// traces clearly better than the Markov model, which stays the default; see
// rnn.go for the figures, and eval.go for the other trace scores tried
// (aggregations, orders, ensembles, whole-trace nearest neighbours and
// one-class models), none of which beat the mean surprise by more than
// 0.006 of AUC.
//
// Typical use:
//
//	m := seqmodel.New(seqmodel.Options{})
//	for _, tr := range normalTraces {
//		if err := m.Train(tr); err != nil { ... }
//	}
//	m.Finalize()
//	s := m.Score(trace) // higher = more anomalous
//
// After Finalize, Score, Explain, NewScorer, KnownNGrams and Save are safe
// for concurrent use; Train and Finalize are not.
package seqmodel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// DefaultOrder is the default n-gram order (window length) of the model. It
// was chosen by 5-fold cross-validated perplexity inside the ADFA-LD
// training set only: held-out negative log-likelihood per syscall falls from
// 1.93 nats at order 2 to a minimum of 1.26 at order 6 and rises again for
// longer windows (1.30 at 8, 1.35 at 10), which overfit 833 traces.
const DefaultOrder = 6

// MaxOrder bounds Options.Order to keep the per-process state small.
const MaxOrder = 32

// MaxToken is the largest token value the model accepts for training.
const MaxToken = 1<<31 - 2

// unknownToken stands for any out-of-range token at scoring time; it can
// never have been trained, so it is always scored as unseen.
const unknownToken = MaxToken + 1

// ErrNotFinalized is returned by Save when the model has pending training
// that Finalize has not folded in yet.
var ErrNotFinalized = errors.New("seqmodel: model not finalized")

// ErrBadToken is returned by Train for a token outside [0, MaxToken].
var ErrBadToken = errors.New("seqmodel: token out of range")

// ErrFrozen is returned by Train on a loaded model with a neural part: the
// network was fitted to traces the file does not keep, so it cannot be
// trained further.
var ErrFrozen = errors.New("seqmodel: loaded neural model cannot be trained further")

// Kind selects the scoring model.
type Kind int

const (
	// KindMarkov scores with the Witten-Bell variable-order Markov model
	// alone.
	KindMarkov Kind = iota
	// KindRNN scores with the GRU language model alone.
	KindRNN
	// KindMix scores each syscall with an equal-weight mixture of the
	// Markov and GRU next-syscall probabilities.
	KindMix
)

// DefaultKind is the model used when Options.Kind is left at its zero
// value.
const DefaultKind = KindMarkov

// mixWeight is the GRU's weight in KindMix. It was chosen by held-out
// likelihood on a split of the ADFA-LD training set (4/5 to fit, 1/5 held
// out): 0.96 nats per syscall at 0.5, against 0.97 at 0.3 and 0.7.
const mixWeight = 0.5

// String returns the name ParseKind accepts.
func (k Kind) String() string {
	switch k {
	case KindMarkov:
		return "markov"
	case KindRNN:
		return "rnn"
	case KindMix:
		return "mix"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ParseKind returns the Kind named s: "markov", "rnn" or "mix".
func ParseKind(s string) (Kind, error) {
	for _, k := range []Kind{KindMarkov, KindRNN, KindMix} {
		if s == k.String() {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown model kind %q (want markov, rnn or mix)", s)
}

// neural reports whether the kind has a GRU part.
func (k Kind) neural() bool { return k == KindRNN || k == KindMix }

// Options configures a Model. The zero value is valid and selects the
// defaults.
type Options struct {
	// Order is the longest window (n-gram length) the Markov part
	// conditions on; 0 selects DefaultOrder. Values above MaxOrder are
	// clamped. The Markov part is kept for every Kind: KnownNGrams and
	// Explain rely on it.
	Order int
	// Kind selects the scoring model; the zero value is KindMarkov.
	Kind Kind
	// Hidden is the GRU state width for the neural kinds; 0 selects
	// DefaultHidden. Values above MaxHidden are clamped.
	Hidden int
	// Epochs is the number of training passes of the GRU; 0 selects
	// DefaultEpochs.
	Epochs int
	// Seed seeds the GRU's initial weights and trace shuffling; 0 selects
	// DefaultSeed. The same traces, options and seed give the same model.
	Seed uint64
}

func (o Options) withDefaults() Options {
	if o.Order <= 0 {
		o.Order = DefaultOrder
	}
	if o.Order > MaxOrder {
		o.Order = MaxOrder
	}
	if o.Hidden <= 0 {
		o.Hidden = DefaultHidden
	}
	if o.Hidden > MaxHidden {
		o.Hidden = MaxHidden
	}
	if o.Epochs <= 0 {
		o.Epochs = DefaultEpochs
	}
	if o.Seed == 0 {
		o.Seed = DefaultSeed
	}
	return o
}

// ctxStat summarises the continuations of one context.
type ctxStat struct {
	total uint32 // number of times the context was followed by any token
	types uint32 // number of distinct tokens that followed it
}

// Model is a smoothed variable-order Markov model over integer tokens.
//
// Internally every n-gram of length 1..Order is stored under a key made of
// the uvarint encodings of its tokens shifted by one; the value 0 marks the
// start of a trace, so that the first few syscalls of a process (its
// start-up sequence) are modelled as such.
type Model struct {
	order int
	opts  Options // with defaults applied

	// Neural part (Kind RNN or Mix): the training traces are kept until
	// Finalize fits the network to all of them.
	pending [][]int
	net     *rnn
	frozen  bool // loaded from a file: no training traces to refit on

	mu     sync.Mutex
	dirty  bool
	counts map[string]uint32  // n-gram (length 1..order) -> count
	ctxs   map[string]ctxStat // context (length 0..order-1) -> summary
	vocab  int                // distinct trained tokens
	traces int                // number of trained traces
	tokens int                // number of trained tokens
}

// New returns an empty model.
func New(opts Options) *Model {
	opts = opts.withDefaults()
	return &Model{
		order:  opts.Order,
		opts:   opts,
		counts: make(map[string]uint32),
		ctxs:   make(map[string]ctxStat),
	}
}

// Kind returns the scoring model.
func (m *Model) Kind() Kind { return m.opts.Kind }

// Hidden returns the GRU state width; it is meaningful for the neural kinds
// only.
func (m *Model) Hidden() int { return m.opts.Hidden }

// Order returns the model's window length.
func (m *Model) Order() int { return m.order }

// Traces returns the number of traces the model was trained on.
func (m *Model) Traces() int { return m.traces }

// Tokens returns the number of tokens the model was trained on.
func (m *Model) Tokens() int { return m.tokens }

// appendToken appends the key encoding of one token (start marker = -1).
func appendToken(b []byte, tok int) []byte {
	return binary.AppendUvarint(b, uint64(tok+1))
}

// Train adds one normal trace to the model. It rejects a trace holding a
// token outside [0, MaxToken] without changing the model. Call Finalize once
// all traces are in (scoring does it on demand).
func (m *Model) Train(trace []int) error {
	for i, t := range trace {
		if t < 0 || t > MaxToken {
			return fmt.Errorf("train: token %d at position %d: %w", t, i, ErrBadToken)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frozen {
		return fmt.Errorf("train: %w", ErrFrozen)
	}
	if m.opts.Kind.neural() {
		m.pending = append(m.pending, slices.Clone(trace))
	}
	// The padded trace starts with the start marker, then each token; every
	// n-gram ending at a real token is counted for n = 1..order.
	padded := make([]int, 0, len(trace)+1)
	padded = append(padded, -1)
	padded = append(padded, trace...)
	var buf []byte
	for i := 1; i < len(padded); i++ {
		lo := max(0, i-m.order+1)
		buf = buf[:0]
		offs := make([]int, 0, m.order)
		for j := lo; j <= i; j++ {
			offs = append(offs, len(buf))
			buf = appendToken(buf, padded[j])
		}
		// offs[j] starts the n-gram of length len(offs)-j.
		for _, off := range offs {
			m.counts[string(buf[off:])]++
		}
	}
	m.traces++
	m.tokens += len(trace)
	m.dirty = true
	return nil
}

// Finalize derives the context summaries used for scoring from the n-gram
// counts and, for the neural kinds, fits the GRU to every trace trained so
// far. For KindMarkov it is cheap to call again after more training; for
// the neural kinds each call after new training refits the network from
// scratch (seconds to a minute on ADFA-LD), with the same result as a
// single call at the end.
func (m *Model) Finalize() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.finalizeLocked()
}

func (m *Model) ensureFinal() {
	m.mu.Lock()
	if m.dirty {
		m.finalizeLocked()
	}
	m.mu.Unlock()
}

func (m *Model) finalizeLocked() {
	m.ctxs = make(map[string]ctxStat, len(m.counts))
	m.vocab = 0
	for k, c := range m.counts {
		ctx := k[:lastTokenStart(k)]
		s := m.ctxs[ctx]
		s.total += c
		s.types++
		m.ctxs[ctx] = s
		if ctx == "" {
			m.vocab++
		}
	}
	if m.opts.Kind.neural() && !m.frozen {
		m.net = trainRNN(m.pending, m.opts.Hidden, m.opts.Epochs, m.opts.Seed, runtime.GOMAXPROCS(0), nil)
	}
	m.dirty = false
}

// lastTokenStart returns the offset of the last uvarint in key.
func lastTokenStart(k string) int {
	// Every byte of a uvarint but its last has the high bit set, so the last
	// token starts right after the last-but-one byte without it.
	i := len(k) - 1
	for i > 0 && k[i-1]&0x80 != 0 {
		i--
	}
	return i
}

// decodeKey returns the tokens of a key; -1 is the start marker.
func decodeKey(k string) []int {
	var out []int
	b := []byte(k)
	for len(b) > 0 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return nil
		}
		out = append(out, int(v)-1)
		b = b[n:]
	}
	return out
}

// Score returns the mean negative log-likelihood of trace, in nats per
// token; higher is more anomalous. An empty trace scores 0.
func (m *Model) Score(trace []int) float64 {
	s := m.NewScorer()
	for _, t := range trace {
		s.Add(t)
	}
	return s.Score()
}

// Explain returns one plain sentence on why trace scores as it does.
func (m *Model) Explain(trace []int) string {
	s := m.NewScorer()
	for _, t := range trace {
		s.Add(t)
	}
	return s.Explain()
}

// KnownNGrams returns every distinct n-gram of length n seen in training,
// in lexicographic order, for export into an in-kernel filter. Windows that
// overlap the start of a trace are left out. It returns nil unless
// 1 <= n <= Order().
func (m *Model) KnownNGrams(n int) [][]int {
	if n < 1 || n > m.order {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out [][]int
	for k := range m.counts {
		g := decodeKey(k)
		if len(g) != n || slices.Contains(g, -1) {
			continue
		}
		out = append(out, g)
	}
	slices.SortFunc(out, slices.Compare)
	return out
}

// HashNGram returns the 64-bit FNV-1a hash of an n-gram, each token taken as
// a little-endian uint32. It is the key format meant for a BPF hash map of
// known windows, cheap to recompute in the kernel over a ring of the last n
// syscall numbers.
func HashNGram(ngram []int) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for _, t := range ngram {
		v := uint32(t)
		for i := 0; i < 4; i++ {
			h ^= uint64(byte(v >> (8 * i)))
			h *= prime64
		}
	}
	return h
}

// Scorer scores one process's token stream incrementally. Its memory is
// bounded by the model order and, for the neural kinds, the GRU state
// width, whatever the length of the stream. A Scorer is not safe for
// concurrent use; use one per process.
type Scorer struct {
	m       *Model
	net     *rnn      // nil for KindMarkov or an untrained model
	rs      *rnnState // GRU state for net
	hist    []int     // last order-1 tokens, start marker included
	buf     []byte
	offs    []int
	sum     float64
	n       int
	windows int // full windows (order tokens) seen
	unseen  int // full windows never seen in training
	worst   float64
	worstW  []int // window ending at the least likely token
}

// NewScorer returns a Scorer positioned at the start of a new trace.
func (m *Model) NewScorer() *Scorer {
	m.ensureFinal()
	s := &Scorer{
		m:      m,
		hist:   make([]int, 0, m.order),
		buf:    make([]byte, 0, 8*m.order),
		offs:   make([]int, 0, m.order),
		worst:  -1,
		worstW: make([]int, 0, m.order),
	}
	m.mu.Lock()
	if m.opts.Kind.neural() && m.net != nil {
		s.net = m.net
		s.rs = m.net.newState()
	}
	m.mu.Unlock()
	if m.order > 1 {
		s.hist = append(s.hist, -1) // start marker
	}
	return s
}

// Add feeds the next token of the trace and returns its negative
// log-likelihood under the model.
func (s *Scorer) Add(tok int) float64 {
	if tok < 0 || tok > MaxToken {
		tok = unknownToken
	}
	m := s.m
	// Encode history + token once; each context and n-gram is a suffix.
	s.buf = s.buf[:0]
	s.offs = s.offs[:0]
	for _, h := range s.hist {
		s.offs = append(s.offs, len(s.buf))
		s.buf = appendToken(s.buf, h)
	}
	tokOff := len(s.buf)
	s.buf = appendToken(s.buf, tok)

	// Witten-Bell interpolation from the empty context upwards:
	// p_k = (c(ctx,w) + T(ctx) p_{k-1}) / (N(ctx) + T(ctx)).
	p := 1 / float64(m.vocab+1)
	var full uint32
	fullLen := 0
	for k := 0; k <= len(s.hist); k++ {
		ctxOff := tokOff
		if k > 0 {
			ctxOff = s.offs[len(s.hist)-k]
		}
		st, ok := m.ctxs[string(s.buf[ctxOff:tokOff])]
		if !ok || st.total == 0 {
			break
		}
		c := m.counts[string(s.buf[ctxOff:])]
		p = (float64(c) + float64(st.types)*p) / float64(st.total+st.types)
		full, fullLen = c, k+1
	}
	if fullLen < len(s.hist)+1 {
		full = 0 // the longest context itself was never seen
	}
	nll := -math.Log(p)
	if s.net != nil {
		nll = s.net.add(s.rs, tok)
		if m.opts.Kind == KindMix {
			nll = -math.Log(mixWeight*math.Exp(-nll) + (1-mixWeight)*p)
		}
	}

	s.sum += nll
	s.n++
	// Full windows are those of order real tokens, without the start marker.
	window := len(s.hist) == m.order-1 && s.hist[0] != -1 || m.order == 1
	if window {
		s.windows++
		if full == 0 {
			s.unseen++
		}
	}
	if nll > s.worst {
		s.worst = nll
		s.worstW = s.worstW[:0]
		for _, h := range s.hist {
			if h != -1 {
				s.worstW = append(s.worstW, h)
			}
		}
		s.worstW = append(s.worstW, tok)
	}

	// Slide the history.
	if m.order > 1 {
		if len(s.hist) == m.order-1 {
			copy(s.hist, s.hist[1:])
			s.hist = s.hist[:len(s.hist)-1]
		}
		s.hist = append(s.hist, tok)
	}
	return nll
}

// Score returns the mean negative log-likelihood of the tokens added so far,
// in nats per token; 0 before the first token.
func (s *Scorer) Score() float64 {
	if s.n == 0 {
		return 0
	}
	return s.sum / float64(s.n)
}

// Len returns the number of tokens added so far.
func (s *Scorer) Len() int { return s.n }

// Explain returns one plain sentence on the tokens added so far.
func (s *Scorer) Explain() string {
	if s.n == 0 {
		return "empty trace: nothing to score"
	}
	var b strings.Builder
	if s.windows > 0 {
		fmt.Fprintf(&b, "%d of %d syscall windows of length %d never seen in training", s.unseen, s.windows, s.m.order)
	} else {
		fmt.Fprintf(&b, "trace of %d syscalls, shorter than one window of length %d", s.n, s.m.order)
	}
	fmt.Fprintf(&b, ", mean surprise %.2f nats per syscall, the rarest step being ", s.Score())
	for i, t := range s.worstW {
		if i > 0 {
			b.WriteString("→")
		}
		if t == unknownToken {
			b.WriteString("?")
		} else {
			fmt.Fprintf(&b, "%d", t)
		}
	}
	fmt.Fprintf(&b, " (p=%.2g)", math.Exp(-s.worst))
	return b.String()
}
