package seqmodel

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// adfaDir is the shared ADFA-LD copy, beside the repository: the repository
// root is two levels above this package. VIGIL_ADFA_LD names another copy.
const adfaDir = "../../../shared/datasets/adfa-ld"

// adfaPath returns where the data set is: $VIGIL_ADFA_LD, else beside the
// repository, else /work/shared (where CI machines keep it).
func adfaPath(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("VIGIL_ADFA_LD"), adfaDir, "/work/shared/datasets/adfa-ld"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if dir, err := filepath.Abs(c); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "training")); err == nil {
				return dir
			}
		}
	}
	t.Fatalf("ADFA-LD data set missing: looked in %q (set VIGIL_ADFA_LD to its directory)", candidates)
	return ""
}

// minAUC is the AUC this model reaches on validation versus attack (0.8493),
// less 0.01 of slack.
const minAUC = 0.839

func TestADFALDEvaluation(t *testing.T) {
	dir := adfaPath(t)
	start := time.Now()
	res, err := Evaluate(filepath.Join(dir, "training"), filepath.Join(dir, "validation"), filepath.Join(dir, "attack"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	t.Logf("ADFA-LD order %d: AUC %.4f, DR@5%%FPR %.3f, DR@1%%FPR %.3f, %v (read %v, train %v, score %v)",
		res.Order, res.AUC, res.DR5, res.DR1, elapsed.Round(time.Millisecond),
		res.ReadTime.Round(time.Millisecond), res.TrainTime.Round(time.Millisecond), res.ScoreTime.Round(time.Millisecond))
	if res.TrainTraces != 833 || res.NormalTraces != 2246 || res.AttackTraces != 553 || res.TrainTokens != 308077 {
		t.Errorf("read %d/%d/%d traces and %d training syscalls, want 833/2246/553 and 308077",
			res.TrainTraces, res.NormalTraces, res.AttackTraces, res.TrainTokens)
	}
	if res.AUC < minAUC {
		t.Errorf("AUC %.4f below %.3f", res.AUC, minAUC)
	}
	if res.FPR5 > 0.05 || res.FPR1 > 0.01 {
		t.Errorf("thresholds overshoot: FPR %.4f at 5%%, %.4f at 1%%", res.FPR5, res.FPR1)
	}
	if res.DR5 < res.DR1 {
		t.Errorf("DR@5%% %.3f below DR@1%% %.3f", res.DR5, res.DR1)
	}
	if elapsed > time.Minute {
		t.Errorf("evaluation took %v, CI budget is 60s", elapsed)
	}
}

func TestAUCAndThreshold(t *testing.T) {
	// 3 of 4 attack/normal pairs ordered right, one tie: (3 + 0.5)/4.
	if got := AUC([]float64{1, 2}, []float64{2, 3}); got != 0.875 {
		t.Errorf("AUC = %v, want 0.875", got)
	}
	normal := []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}
	// 5% of 20 traces is one false positive: threshold 18 lets only 19 by.
	if th, fpr := ThresholdAtFPR(normal, 0.05); th != 18 || fpr != 0.05 {
		t.Errorf("ThresholdAtFPR(5%%) = %v, %v; want 18, 0.05", th, fpr)
	}
	if th, fpr := ThresholdAtFPR(normal, 0.01); th != 19 || fpr != 0 {
		t.Errorf("ThresholdAtFPR(1%%) = %v, %v; want 19, 0", th, fpr)
	}
}
