package seqmodel

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/vigil-sensor/vigil/internal/atomicfile"
)

const evalUsage = `Usage: vigil-agent model eval --train DIR --normal DIR --attack DIR [flags]

Train the per-executable syscall-sequence model on the traces in --train,
then score every trace in --normal and --attack and report how well the
scores separate the two.

A trace is one file of syscall numbers separated by spaces or newlines
(the ADFA-LD layout); directories are read recursively, so attack runs may
sit in subfolders. Learning uses --train only: --normal and --attack are
only scored, never learnt from.

Reported:
  AUC        area under the ROC curve: the chance that a random attack trace
             scores above a random normal one (1 = perfect, 0.5 = chance)
  DR@5%FPR   share of attack traces flagged when the threshold lets at most
             5% of the normal traces through as false positives
  DR@1%FPR   the same at 1%

A score is the trace's mean surprise in nats per syscall under the model
chosen with --model:
  markov     a smoothed variable-order Markov model (Witten-Bell
             interpolation of windows of length 1..order); the default
  rnn        a GRU language model (--hidden units, trained for --epochs
             passes with a fixed --seed)
  mix        an equal-weight mixture of the two next-syscall probabilities
The neural models take about a minute to train on ADFA-LD.

Example, on ADFA-LD:
  vigil-agent model eval --train adfa-ld/training \
      --normal adfa-ld/validation --attack adfa-ld/attack --save model.bin

Flags:
`

// EvalCommand implements "vigil-agent model eval". args excludes the
// "model eval" words. It returns the process exit status: 0 on success,
// 1 on a failed evaluation, 2 on a usage error.
func EvalCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("model eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	train := fs.String("train", "", "directory of normal traces to learn from (required)")
	normal := fs.String("normal", "", "directory of normal traces to measure false positives on (required)")
	attack := fs.String("attack", "", "directory of attack traces to measure detection on (required)")
	order := fs.Int("order", DefaultOrder, "longest syscall window the Markov model conditions on")
	kindName := fs.String("model", DefaultKind.String(), "scoring `model`: markov, rnn or mix")
	hidden := fs.Int("hidden", DefaultHidden, "GRU state width (rnn and mix)")
	epochs := fs.Int("epochs", DefaultEpochs, "GRU training passes (rnn and mix)")
	seed := fs.Uint64("seed", DefaultSeed, "GRU random seed (rnn and mix); non-zero")
	save := fs.String("save", "", "write the trained model to this `file`")
	top := fs.Int("top", 0, "also list the `n` highest-scoring normal traces (likely false positives) with an explanation")
	fs.Usage = func() {
		io.WriteString(fs.Output(), evalUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "model eval: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"--train", *train}, {"--normal", *normal}, {"--attack", *attack}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "model eval: missing %v (run with --help for usage)\n", missing)
		return 2
	}
	if *order < 1 || *order > MaxOrder {
		fmt.Fprintf(stderr, "model eval: --order must be between 1 and %d, got %d\n", MaxOrder, *order)
		return 2
	}

	kind, err := ParseKind(*kindName)
	if err != nil {
		fmt.Fprintf(stderr, "model eval: --model: %v\n", err)
		return 2
	}
	if *hidden < 1 || *hidden > MaxHidden || *epochs < 1 || *seed == 0 {
		fmt.Fprintf(stderr, "model eval: want 1 <= --hidden <= %d, --epochs >= 1 and --seed != 0\n", MaxHidden)
		return 2
	}

	start := time.Now()
	opts := Options{Order: *order, Kind: kind, Hidden: *hidden, Epochs: *epochs, Seed: *seed}
	res, err := Evaluate(*train, *normal, *attack, opts)
	if err != nil {
		fmt.Fprintf(stderr, "model eval: %v\n", err)
		return 1
	}
	switch res.Kind {
	case KindRNN:
		fmt.Fprintf(stdout, "model      GRU language model, %d units, %d epochs, seed %d\n", res.Hidden, *epochs, *seed)
	case KindMix:
		fmt.Fprintf(stdout, "model      mixture of Markov (Witten-Bell, order %d) and GRU (%d units, %d epochs, seed %d)\n", res.Order, res.Hidden, *epochs, *seed)
	default:
		fmt.Fprintf(stdout, "model      variable-order Markov, Witten-Bell, order %d\n", res.Order)
	}
	fmt.Fprintf(stdout, "traces     train %d (%d syscalls), normal %d, attack %d\n",
		res.TrainTraces, res.TrainTokens, res.NormalTraces, res.AttackTraces)
	fmt.Fprintf(stdout, "AUC        %.4f\n", res.AUC)
	fmt.Fprintf(stdout, "DR@5%%FPR   %.3f  (threshold %.3f nats/syscall, actual FPR %.3f)\n", res.DR5, res.Threshold5, res.FPR5)
	fmt.Fprintf(stdout, "DR@1%%FPR   %.3f  (threshold %.3f nats/syscall, actual FPR %.3f)\n", res.DR1, res.Threshold1, res.FPR1)
	fmt.Fprintf(stdout, "time       read %v, train %v, score %v, total %v\n",
		res.ReadTime.Round(time.Millisecond), res.TrainTime.Round(time.Millisecond),
		res.ScoreTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if *top > 0 {
		idx := make([]int, len(res.NormalScores))
		for i := range idx {
			idx[i] = i
		}
		sortByScoreDesc(idx, res.NormalScores)
		fmt.Fprintf(stdout, "top normal traces by score:\n")
		for _, i := range idx[:min(*top, len(idx))] {
			tr, err := ReadTraceFile(res.NormalPaths[i])
			if err != nil {
				fmt.Fprintf(stderr, "model eval: %v\n", err)
				return 1
			}
			fmt.Fprintf(stdout, "  %.3f %s: %s\n", res.NormalScores[i], res.NormalPaths[i], res.Model.Explain(tr))
		}
	}
	if *save != "" {
		if err := saveFile(res.Model, *save); err != nil {
			fmt.Fprintf(stderr, "model eval: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "saved      %s\n", *save)
	}
	return 0
}

func sortByScoreDesc(idx []int, s []float64) {
	sort.SliceStable(idx, func(a, b int) bool { return s[idx[a]] > s[idx[b]] })
}

// saveFile writes m to path atomically (temporary file, then rename).
func saveFile(m *Model, path string) error {
	var b bytes.Buffer
	if err := m.Save(&b); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	return nil
}
