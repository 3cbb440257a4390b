package seqmodel

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"
)

// ErrNoTraces is returned when a trace directory holds no trace file.
var ErrNoTraces = errors.New("seqmodel: no traces found")

// Trace is one parsed trace file.
type Trace struct {
	// Path is the file the trace was read from.
	Path string
	// Tokens are its syscall numbers in order.
	Tokens []int
}

// ReadTraceFile parses one trace: integers separated by white space, over
// any number of lines. A token that is not a non-negative integer gives an
// error naming the file, line and token.
func ReadTraceFile(path string) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read trace: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	var out []int
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		for i := 0; i < len(b); {
			for i < len(b) && isSpace(b[i]) {
				i++
			}
			j := i
			for j < len(b) && !isSpace(b[j]) {
				j++
			}
			if j == i {
				break
			}
			v, err := strconv.Atoi(string(b[i:j]))
			if err != nil || v < 0 || v > MaxToken {
				return nil, fmt.Errorf("%s:%d: token %q is not a syscall number (a non-negative integer)", path, line, b[i:j])
			}
			out = append(out, v)
			i = j
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read trace %s: %w", path, err)
	}
	return out, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// ReadTraceDir reads every regular file under dir, recursively, as one trace
// each, in lexical path order. Hidden files (name starting with a dot) are
// skipped. It fails if dir is missing or holds no trace.
func ReadTraceDir(dir string) ([]Trace, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("trace directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("trace directory %s: not a directory", dir)
	}
	var paths []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name()[0] == '.' && p != dir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", dir, err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("trace directory %s: %w", dir, ErrNoTraces)
	}
	out := make([]Trace, len(paths))
	errs := make([]error, len(paths))
	parallel(len(paths), func(i int) {
		out[i].Path = paths[i]
		out[i].Tokens, errs[i] = ReadTraceFile(paths[i])
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// parallel runs f(0..n-1) on GOMAXPROCS goroutines.
func parallel(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// Result is the outcome of Evaluate.
type Result struct {
	// Kind is the scoring model evaluated.
	Kind Kind
	// Order is the window length of the evaluated model's Markov part.
	Order int
	// Hidden is the GRU state width (neural kinds only).
	Hidden int
	// TrainTraces, NormalTraces and AttackTraces count the traces read.
	TrainTraces, NormalTraces, AttackTraces int
	// TrainTokens counts the syscalls learnt from.
	TrainTokens int
	// AUC is the area under the ROC curve of attack versus normal scores
	// (ties count one half).
	AUC float64
	// DR5 and DR1 are the fractions of attack traces scoring above
	// Threshold5 and Threshold1.
	DR5, DR1 float64
	// Threshold5 and Threshold1 are the smallest scores exceeded by at most
	// 5% and 1% of the normal traces.
	Threshold5, Threshold1 float64
	// FPR5 and FPR1 are the false-positive rates actually reached at those
	// thresholds (at most 0.05 and 0.01).
	FPR5, FPR1 float64
	// NormalScores and AttackScores are the per-trace scores, in the order
	// of NormalPaths and AttackPaths.
	NormalScores, AttackScores []float64
	// NormalPaths and AttackPaths name the scored files.
	NormalPaths, AttackPaths []string
	// ReadTime, TrainTime and ScoreTime split the wall-clock time.
	ReadTime, TrainTime, ScoreTime time.Duration
	// Model is the trained model.
	Model *Model
}

// Scoring alternatives tried on ADFA-LD (issue 4, item 6).
//
// The trace score stays the mean surprise per syscall under the order-6
// Witten-Bell model (AUC 0.849, DR@5%FPR 0.309, DR@1%FPR 0.170). The issue
// asked for AUC 0.95; nothing below came near it, and nothing beat the
// mean surprise by more than 0.006. The alternatives were
// prototyped outside the repository and measured, for the record, on
// validation/ versus attack/ (AUC; all learn from training/ only). Since
// none was adopted, those figures chose nothing; adopting the best of them
// on that evidence (order 10, 0.855) would have been tuning on the test
// traces, and the gain is within what another split could undo.
//
//	aggregation of per-syscall surprise (order 6)
//	  mean (the score)                                     0.849
//	  max over sliding windows of 10 / 20 / 50 / 100       0.632 / 0.650 / 0.747 / 0.816
//	  mean of the top 1% / 5% / 10% / 20% / 50%            0.676 / 0.764 / 0.804 / 0.835 / 0.848
//	  fraction above 2 / 4 / 6 / 8 nats                    0.847 / 0.841 / 0.811 / 0.760
//	  mean, surprise clipped at 4 / 6 / 10 nats            0.842 / 0.845 / 0.847
//	  mean over distinct windows of 8                      0.842
//	  mean surprise minus the predictive entropy           0.846
//	  mean without the first 50 syscalls                   0.850
//	  sum / sum÷√n / sum÷n^0.75 / sum÷n^1.25 (n = length)  0.765 / 0.820 / 0.839 / 0.852
//	sequence model variants (mean surprise)
//	  order 2 / 3 / 4 / 8 / 10                             0.782 / 0.836 / 0.844 / 0.853 / 0.855
//	  average over orders 2..10 / 4..10                    0.847 / 0.851
//	  backward model / forward+backward / two-sided        0.850 / 0.850 / 0.846
//	  each n-gram counted once per training trace          0.849
//	  runs of one syscall collapsed                        0.820
//	  cache model adapting to the trace itself             0.834 to 0.845
//	  mixture of 5 / 15 per-cluster Markov models          0.851 / 0.853
//	  GRU, GRU+Markov mixture (see rnn.go)                 0.848 / 0.853
//	whole-trace scorers
//	  1-NN cosine distance, TF-IDF of 1 / 1-2 / 1-3-grams  0.778 / 0.745 / 0.744
//	  3-NN cosine, TF-IDF of 1-4-grams                     0.813
//	  k-NN L1 / Hellinger on n-gram frequencies (n 1..3)   0.765 to 0.810
//	  one-class SVM on TF-IDF of 1-3-grams                 0.830
//	  isolation forest / k-NN on per-trace features of
//	    cross-fitted models (mean, top-10%, rare share)    0.849 / 0.832
//	  Markov surprise less that of the nearest training
//	    traces (cross-fitted), k = 1..20                   0.712 to 0.794
//	  Markov and 1-NN fused (rank mean, calibrated min,
//	    max or mean)                                       0.822 to 0.841
//	  unseen lookahead pairs (distance 1..10)              0.620
//
// Why the ceiling sits near 0.85 on this split: the normal traces to score
// are not all like the training ones (a tenth of validation/ scores above
// 3.3 nats per syscall, 59 of its traces hold syscalls training never saw,
// against 2 attack traces), while many attack traces are ordinary program
// starts (31 begin with the same shell fork-and-exec prefix that 25
// training traces show): under the mean surprise, half the attacks score
// below the 90th percentile of the normal traces. Whole-trace nearest
// neighbours do recognise the 204 validation traces that are exact copies
// of training traces (distance 0), but the sequence model already scores
// every one of them under 0.72 nats per syscall, far below the 5% false
// positive threshold of 4.35.

// Evaluate trains a model on every trace under trainDir and scores the
// traces under normalDir (label normal) and attackDir (label attack). Only
// trainDir is learnt from; the normal scores set the thresholds for the
// detection rates.
func Evaluate(trainDir, normalDir, attackDir string, opts Options) (Result, error) {
	var res Result
	t0 := time.Now()
	dirs := []string{trainDir, normalDir, attackDir}
	sets := make([][]Trace, 3)
	for i, d := range dirs {
		var err error
		if sets[i], err = ReadTraceDir(d); err != nil {
			return res, fmt.Errorf("evaluate: %w", err)
		}
	}
	res.ReadTime = time.Since(t0)

	t1 := time.Now()
	m := New(opts)
	for _, tr := range sets[0] {
		if err := m.Train(tr.Tokens); err != nil {
			return res, fmt.Errorf("evaluate: %s: %w", tr.Path, err)
		}
	}
	m.Finalize()
	res.TrainTime = time.Since(t1)

	t2 := time.Now()
	score := func(ts []Trace) ([]float64, []string) {
		s := make([]float64, len(ts))
		p := make([]string, len(ts))
		parallel(len(ts), func(i int) {
			s[i], p[i] = m.Score(ts[i].Tokens), ts[i].Path
		})
		return s, p
	}
	res.NormalScores, res.NormalPaths = score(sets[1])
	res.AttackScores, res.AttackPaths = score(sets[2])
	res.ScoreTime = time.Since(t2)

	res.Model = m
	res.Kind, res.Order, res.Hidden = m.Kind(), m.Order(), m.Hidden()
	res.TrainTraces, res.NormalTraces, res.AttackTraces = len(sets[0]), len(sets[1]), len(sets[2])
	res.TrainTokens = m.Tokens()
	res.AUC = AUC(res.NormalScores, res.AttackScores)
	res.Threshold5, res.FPR5 = ThresholdAtFPR(res.NormalScores, 0.05)
	res.Threshold1, res.FPR1 = ThresholdAtFPR(res.NormalScores, 0.01)
	res.DR5 = fractionAbove(res.AttackScores, res.Threshold5)
	res.DR1 = fractionAbove(res.AttackScores, res.Threshold1)
	return res, nil
}

// AUC returns the area under the ROC curve for separating pos (attack,
// expected higher) from neg (normal): the probability that a random attack
// outscores a random normal trace, ties counting one half. It is 0.5 when
// either set is empty.
func AUC(neg, pos []float64) float64 {
	if len(neg) == 0 || len(pos) == 0 {
		return 0.5
	}
	type item struct {
		s   float64
		pos bool
	}
	all := make([]item, 0, len(neg)+len(pos))
	for _, s := range neg {
		all = append(all, item{s, false})
	}
	for _, s := range pos {
		all = append(all, item{s, true})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].s < all[j].s })
	// Mann-Whitney U with mid-ranks for ties.
	var rankSum float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].s == all[i].s {
			j++
		}
		mid := float64(i+j+1) / 2 // mean of 1-based ranks i+1..j
		for k := i; k < j; k++ {
			if all[k].pos {
				rankSum += mid
			}
		}
		i = j
	}
	np, nn := float64(len(pos)), float64(len(neg))
	return (rankSum - np*(np+1)/2) / (np * nn)
}

// ThresholdAtFPR returns the smallest normal score t such that at most a
// fraction fpr of the normal scores exceed t, and the fraction that does.
// A trace is flagged when its score is strictly above t.
func ThresholdAtFPR(normal []float64, fpr float64) (threshold, actual float64) {
	if len(normal) == 0 {
		return 0, 0
	}
	s := append([]float64(nil), normal...)
	sort.Float64s(s)
	allowed := int(fpr * float64(len(s))) // traces allowed above t
	t := s[len(s)-1-min(allowed, len(s)-1)]
	return t, fractionAbove(s, t)
}

func fractionAbove(xs []float64, t float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	n := 0
	for _, x := range xs {
		if x > t {
			n++
		}
	}
	return float64(n) / float64(len(xs))
}
