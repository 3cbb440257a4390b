package seqmodel

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
)

// The GRU language model behind KindRNN and KindMix.
//
// Hyper-parameters were chosen by held-out likelihood inside the ADFA-LD
// training set only (every fifth trace held out, the rest fitted), never on
// validation/ or attack/. Held-out negative log-likelihood per syscall:
//
//	Markov (Witten-Bell, order 6)        1.245
//	GRU 64 units, epochs 2/5/8/10        1.306 / 1.137 / 1.097 / 1.085
//	GRU 128 units, epochs 5/8/10         1.058 / 0.999 / 0.991
//	mixture, GRU 64 weight 0.3/0.5/0.7   0.973 / 0.959 / 0.971
//	mixture, GRU 128, weight 0.5         0.923
//	geometric mean of the two, GRU 64    1.165
//
// 128 units fit better but train about three times slower (some 2.7
// minutes on two cores against 55 s), so 64 units and 10 epochs (where the
// held-out curve flattens) are the defaults, with an equal-weight mixture.
//
// For the record, the detection figures these settings gave afterwards on
// validation/ versus attack/ (not used to choose anything), as AUC:
// Markov 0.8493; GRU 64 0.848, mixture 0.853; GRU 128 0.848, mixture
// 0.850; geometric mean 0.849. The better language model does not tell the
// attacks apart better, so the Markov model stays the default.

// GRU hyper-parameters; see above for how they were chosen.
const (
	// DefaultHidden is the default width of the GRU state.
	DefaultHidden = 64
	// DefaultEpochs is the default number of passes over the training traces.
	DefaultEpochs = 10
	// DefaultSeed seeds the weight initialisation and the shuffling of the
	// traces between epochs; a fixed seed makes training reproducible.
	DefaultSeed = 1
	// MaxHidden bounds Options.Hidden.
	MaxHidden = 512
)

// Training settings of the recurrent model that are not options.
const (
	rnnStreams  = 16    // sequences trained side by side per update
	rnnShards   = 4     // fixed gradient partitions, whatever the core count
	rnnBPTT     = 32    // steps of truncated back-propagation through time
	rnnLR       = 0.005 // Adam step size
	rnnLRDecay  = 0.8   // step size factor per epoch
	rnnClip     = 5     // global gradient norm clip
	rnnBeta1    = 0.9
	rnnBeta2    = 0.999
	rnnAdamEps  = 1e-8
	rnnInitSeed = 0x5eed_6c72 // second word of the PCG state
)

// rnn is a one-layer GRU language model over a closed vocabulary.
//
// Input and output tokens are dense indices: index 0..nsym-1 is a syscall
// seen in training (in ascending order of syscall number), nsym is the
// unknown token (any other value) and, on the input side only, nsym+1 is the
// start-of-trace marker. The input side is a table giving, for each input
// token, its contribution to the three gate pre-activations: the same as a
// learnt embedding followed by a dense layer, at the cost of one lookup.
//
// The parameters live in one flat slice so that gradients, Adam moments and
// the file format handle them in one piece.
type rnn struct {
	hidden int
	syms   []int       // syscall number of each known index, ascending
	index  map[int]int // syscall number -> index
	w      []float32   // all parameters, laid out as by offsets()
}

// rnnLayout gives the offsets of each parameter block in rnn.w.
type rnnLayout struct {
	x, u, b, o, ob, total int
}

// nin and nout are the input and output vocabulary sizes.
func (r *rnn) nin() int  { return len(r.syms) + 2 }
func (r *rnn) nout() int { return len(r.syms) + 1 }

func (r *rnn) layout() rnnLayout {
	h := r.hidden
	var l rnnLayout
	l.x = 0                 // nin x 3h input table (gates z, r, n)
	l.u = l.x + r.nin()*3*h // 3h x h recurrent weights
	l.b = l.u + 3*h*h       // 3h recurrent biases
	l.o = l.b + 3*h         // nout x h output weights
	l.ob = l.o + r.nout()*h // nout output biases
	l.total = l.ob + r.nout()
	return l
}

// newRNN returns an untrained network over the given syscalls.
func newRNN(hidden int, syms []int) *rnn {
	r := &rnn{hidden: hidden, syms: syms, index: make(map[int]int, len(syms))}
	for i, s := range syms {
		r.index[s] = i
	}
	r.w = make([]float32, r.layout().total)
	return r
}

// tokenIndex maps a syscall number to its output index.
func (r *rnn) tokenIndex(tok int) int {
	if i, ok := r.index[tok]; ok {
		return i
	}
	return len(r.syms)
}

// startIndex is the input index of the start-of-trace marker.
func (r *rnn) startIndex() int { return len(r.syms) + 1 }

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// axpy adds alpha*x to y.
func axpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		y[i] += alpha * x[i]
		y[i+1] += alpha * x[i+1]
		y[i+2] += alpha * x[i+2]
		y[i+3] += alpha * x[i+3]
	}
	for ; i < len(x); i++ {
		y[i] += alpha * x[i]
	}
}

func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }
func tanh32(x float32) float32  { return float32(math.Tanh(float64(x))) }

// step is the state a GRU step keeps for back-propagation.
type step struct {
	in, out int       // input and target indices
	reset   bool      // the previous state was the zero start state
	z, r, n []float32 // gates
	un      []float32 // U_n h_prev + b_n
	h       []float32 // new state
	p       []float32 // output distribution
}

func newStep(h, nout int) step {
	buf := make([]float32, 5*h+nout)
	return step{z: buf[:h], r: buf[h : 2*h], n: buf[2*h : 3*h], un: buf[3*h : 4*h], h: buf[4*h : 5*h], p: buf[5*h:]}
}

// forward runs one GRU step from state hp on input index in, filling st's
// gates and new state. The output distribution is left to output.
func (r *rnn) forward(l rnnLayout, hp []float32, in int, st *step) {
	H := r.hidden
	x := r.w[l.x+in*3*H : l.x+(in+1)*3*H]
	u := r.w[l.u : l.u+3*H*H]
	b := r.w[l.b : l.b+3*H]
	for i := 0; i < H; i++ {
		st.z[i] = sigmoid(x[i] + b[i] + dot(u[i*H:(i+1)*H], hp))
		j := H + i
		st.r[i] = sigmoid(x[j] + b[j] + dot(u[j*H:(j+1)*H], hp))
		k := 2*H + i
		st.un[i] = b[k] + dot(u[k*H:(k+1)*H], hp)
	}
	for i := 0; i < H; i++ {
		n := tanh32(x[2*H+i] + st.r[i]*st.un[i])
		st.n[i] = n
		st.h[i] = n + st.z[i]*(hp[i]-n)
	}
}

// output fills p with the output distribution given state h (a softmax
// computed stably).
func (r *rnn) output(l rnnLayout, h, p []float32) {
	H := r.hidden
	wo := r.w[l.o:l.ob]
	ob := r.w[l.ob:l.total]
	mx := float32(math.Inf(-1))
	for v := range p {
		p[v] = ob[v] + dot(wo[v*H:(v+1)*H], h)
		mx = max(mx, p[v])
	}
	var sum float64
	for v := range p {
		e := math.Exp(float64(p[v] - mx))
		p[v] = float32(e)
		sum += e
	}
	inv := float32(1 / sum)
	for v := range p {
		p[v] *= inv
	}
}

// logProb returns log p(target | h) computed in float64, for scoring.
func (r *rnn) logProb(l rnnLayout, h []float32, target int, logits []float64) float64 {
	H := r.hidden
	wo := r.w[l.o:l.ob]
	ob := r.w[l.ob:l.total]
	mx := math.Inf(-1)
	for v := range logits {
		logits[v] = float64(ob[v] + dot(wo[v*H:(v+1)*H], h))
		mx = max(mx, logits[v])
	}
	var sum float64
	for _, g := range logits {
		sum += math.Exp(g - mx)
	}
	return logits[target] - mx - math.Log(sum)
}

// stream is one lane of training: a queue of traces fed one after another,
// with the GRU state carried across truncation windows within a trace.
type stream struct {
	traces [][]int // dense output indices
	t, pos int     // current trace and position in it
	h      []float32
	steps  []step
}

// trainRNN fits a GRU language model to traces (syscall numbers) with
// truncated back-propagation through time and Adam. The streams are split
// into rnnShards fixed shards whose gradients are summed in a fixed order;
// `workers` goroutines share the shards, so the result depends only on the
// traces, hidden, epochs and seed, not on the number of cores. onEpoch, if
// not nil, is called after each epoch.
func trainRNN(traces [][]int, hidden, epochs int, seed uint64, workers int, onEpoch func(epoch int, r *rnn)) *rnn {
	symSet := map[int]bool{}
	for _, tr := range traces {
		for _, t := range tr {
			symSet[t] = true
		}
	}
	syms := make([]int, 0, len(symSet))
	for s := range symSet {
		syms = append(syms, s)
	}
	slices.Sort(syms)
	r := newRNN(hidden, syms)
	l := r.layout()
	rng := rand.New(rand.NewPCG(seed, rnnInitSeed))
	scale := 1 / math.Sqrt(float64(hidden))
	for i := range r.w[:l.b] {
		r.w[i] = float32((2*rng.Float64() - 1) * scale)
	}
	for i := l.o; i < l.ob; i++ {
		r.w[i] = float32((2*rng.Float64() - 1) * scale)
	}
	dense := make([][]int, 0, len(traces))
	for _, tr := range traces {
		if len(tr) == 0 {
			continue
		}
		d := make([]int, len(tr))
		for i, t := range tr {
			d[i] = r.index[t]
		}
		dense = append(dense, d)
	}
	if len(dense) == 0 || epochs <= 0 {
		return r
	}

	workers = max(1, min(workers, rnnShards))
	streams := make([]*stream, rnnStreams)
	for i := range streams {
		streams[i] = &stream{h: make([]float32, hidden), steps: make([]step, rnnBPTT)}
		for j := range streams[i].steps {
			streams[i].steps[j] = newStep(hidden, r.nout())
		}
	}
	grads := make([][]float32, rnnShards)
	counts := make([]int, rnnShards)
	for i := range grads {
		grads[i] = make([]float32, l.total)
	}
	m1 := make([]float32, l.total)
	m2 := make([]float32, l.total)
	order := make([]int, len(dense))
	for i := range order {
		order[i] = i
	}
	lr := rnnLR
	var updates int
	for ep := 0; ep < epochs; ep++ {
		// Deal the shuffled traces to the streams, each to the one with the
		// fewest tokens so far, so that the streams end together.
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		load := make([]int, rnnStreams)
		for _, s := range streams {
			s.traces, s.t, s.pos = s.traces[:0], 0, 0
		}
		for _, i := range order {
			k := 0
			for j := range load {
				if load[j] < load[k] {
					k = j
				}
			}
			streams[k].traces = append(streams[k].traces, dense[i])
			load[k] += len(dense[i])
		}
		for {
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for k := w; k < rnnShards; k += workers {
						g := grads[k]
						clear(g)
						counts[k] = 0
						for si := k; si < rnnStreams; si += rnnShards {
							_, n := r.trainWindow(l, streams[si], g)
							counts[k] += n
						}
					}
				}(w)
			}
			wg.Wait()
			n := 0
			for w := range counts {
				n += counts[w]
			}
			if n == 0 {
				break
			}
			g := grads[0]
			for k := 1; k < rnnShards; k++ {
				axpy(1, grads[k], g)
			}
			// Mean over the predicted tokens, then clip the global norm.
			var norm float64
			inv := float32(1 / float64(n))
			for i := range g {
				g[i] *= inv
				norm += float64(g[i]) * float64(g[i])
			}
			norm = math.Sqrt(norm)
			if norm > rnnClip {
				c := float32(rnnClip / norm)
				for i := range g {
					g[i] *= c
				}
			}
			updates++
			bc1 := 1 - math.Pow(rnnBeta1, float64(updates))
			bc2 := 1 - math.Pow(rnnBeta2, float64(updates))
			step := float32(lr * math.Sqrt(bc2) / bc1)
			for i := range g {
				m1[i] = rnnBeta1*m1[i] + (1-rnnBeta1)*g[i]
				m2[i] = rnnBeta2*m2[i] + (1-rnnBeta2)*g[i]*g[i]
				r.w[i] -= step * m1[i] / (float32(math.Sqrt(float64(m2[i]))) + rnnAdamEps)
			}
		}
		lr *= rnnLRDecay
		if onEpoch != nil {
			onEpoch(ep+1, r)
		}
	}
	return r
}

// trainWindow runs up to rnnBPTT steps of stream s forward and back,
// adding the gradient of the summed negative log-likelihood to g. It
// returns that sum and the number of tokens predicted.
func (r *rnn) trainWindow(l rnnLayout, s *stream, g []float32) (float64, int) {
	H := r.hidden
	T := 0
	var loss float64
	hStart := s.h
	zero := make([]float32, H)
	hp := hStart
	for T < rnnBPTT && s.t < len(s.traces) {
		tr := s.traces[s.t]
		st := &s.steps[T]
		st.reset = s.pos == 0
		if st.reset {
			hp = zero
			st.in = r.startIndex()
		} else {
			st.in = tr[s.pos-1]
		}
		st.out = tr[s.pos]
		r.forward(l, hp, st.in, st)
		r.output(l, st.h, st.p)
		loss -= math.Log(max(float64(st.p[st.out]), 1e-30))
		hp = st.h
		T++
		s.pos++
		if s.pos == len(tr) {
			s.t, s.pos = s.t+1, 0
		}
	}
	if T == 0 {
		return 0, 0
	}
	// Back-propagate through the window; the state at its start is a
	// constant (truncation).
	dh := make([]float32, H)
	dhp := make([]float32, H)
	da := make([]float32, 3*H)
	gx := g[l.x:l.u]
	gu := g[l.u:l.b]
	gb := g[l.b:l.o]
	gwo := g[l.o:l.ob]
	gob := g[l.ob:l.total]
	wo := r.w[l.o:l.ob]
	u := r.w[l.u:l.b]
	for t := T - 1; t >= 0; t-- {
		st := &s.steps[t]
		var prev []float32
		switch {
		case st.reset:
			prev = nil
		case t == 0:
			prev = hStart
		default:
			prev = s.steps[t-1].h
		}
		// Softmax and cross-entropy: d logits = p - onehot(target).
		for v, pv := range st.p {
			d := pv
			if v == st.out {
				d--
			}
			gob[v] += d
			axpy(d, st.h, gwo[v*H:(v+1)*H])
			axpy(d, wo[v*H:(v+1)*H], dh)
		}
		// h = n + z (hp - n).
		gxr := gx[st.in*3*H : (st.in+1)*3*H]
		for i := 0; i < H; i++ {
			hpi := float32(0)
			if prev != nil {
				hpi = prev[i]
			}
			z, rr, n := st.z[i], st.r[i], st.n[i]
			dn := dh[i] * (1 - z)
			dz := dh[i] * (hpi - n)
			dhp[i] = dh[i] * z
			dan := dn * (1 - n*n)
			gxr[2*H+i] += dan
			dun := dan * rr
			dr := dan * st.un[i]
			daz := dz * z * (1 - z)
			dar := dr * rr * (1 - rr)
			gxr[i] += daz
			gxr[H+i] += dar
			da[i], da[H+i], da[2*H+i] = daz, dar, dun
		}
		for j := 0; j < 3*H; j++ {
			gb[j] += da[j]
			if prev != nil {
				axpy(da[j], prev, gu[j*H:(j+1)*H])
				axpy(da[j], u[j*H:(j+1)*H], dhp)
			}
		}
		if st.reset {
			clear(dhp)
		}
		dh, dhp = dhp, dh
	}
	copy(s.h, s.steps[T-1].h)
	return loss, T
}

// rnnState is the per-process state of the recurrent model.
type rnnState struct {
	h      []float32
	st     step
	logits []float64
	in     int
}

func (r *rnn) newState() *rnnState {
	s := &rnnState{
		h:      make([]float32, r.hidden),
		st:     newStep(r.hidden, 0),
		logits: make([]float64, r.nout()),
		in:     r.startIndex(),
	}
	return s
}

// add advances the state by one token and returns the token's negative
// log-likelihood in nats.
func (r *rnn) add(s *rnnState, tok int) float64 {
	l := r.layout()
	r.forward(l, s.h, s.in, &s.st)
	copy(s.h, s.st.h)
	out := r.tokenIndex(tok)
	s.in = out
	return -r.logProb(l, s.h, out, s.logits)
}
