package file

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// openLoop opens, reads and closes a file n times, by absolute path or
// relative to dirfd, and returns the time it took.
func openLoop(b *testing.B, dirfd int, path string, n int) time.Duration {
	b.Helper()
	buf := make([]byte, 64)
	start := time.Now()
	for i := 0; i < n; i++ {
		fd, err := unix.Openat(dirfd, path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := unix.Read(fd, buf); err != nil {
			b.Fatal(err)
		}
		unix.Close(fd)
	}
	return time.Since(start)
}

// BenchmarkUnwatchedOpen measures 200,000 open/read/close of an unwatched
// file with and without the sensor (every kind on, default policy),
// alternating runs, and reports the median ratio and the programs' own
// run time per open from bpf_stats.
func BenchmarkUnwatchedOpen(b *testing.B) {
	for _, mode := range []string{"absolute", "relative"} {
		b.Run(mode, func(b *testing.B) {
			root := testRoot(b, "bench")
			if err := unix.Mkdir(filepath.Join(root, "d"), 0o755); err != nil {
				b.Fatal(err)
			}
			file := filepath.Join(root, "d", "f")
			if err := writeFile(file); err != nil {
				b.Fatal(err)
			}
			dirfd, path := unix.AT_FDCWD, file
			if mode == "relative" {
				fd, err := unix.Open(filepath.Join(root, "d"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
				if err != nil {
					b.Fatal(err)
				}
				defer unix.Close(fd)
				dirfd, path = fd, "f"
			}
			const n = 200_000
			var off, on []float64
			var bpfNs []float64
			for i := 0; i < b.N; i++ {
				// A: without the sensor; B: with it, bpf_stats off (they cost
				// time themselves); then one more run with bpf_stats on for
				// the programs' own run time.
				off = append(off, float64(openLoop(b, dirfd, path, n))/n)
				s := load(b, Options{})
				on = append(on, float64(openLoop(b, dirfd, path, n))/n)
				stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
				if err != nil {
					b.Fatal(err)
				}
				enter, exit := s.coll.Programs["enter_openat"], s.coll.Programs["handle_sys_exit"]
				es0, _ := enter.Stats()
				xs0, _ := exit.Stats()
				openLoop(b, dirfd, path, n)
				es, err := enter.Stats()
				if err != nil {
					b.Fatal(err)
				}
				xs, err := exit.Stats()
				if err != nil {
					b.Fatal(err)
				}
				stats.Close()
				er, ec := es.Runtime-es0.Runtime, es.RunCount-es0.RunCount
				xr, xc := xs.Runtime-xs0.Runtime, xs.RunCount-xs0.RunCount
				bpfNs = append(bpfNs, float64(er+xr)/n)
				b.Logf("run %d: off %.0f ns on %.0f ns; enter_openat %d runs %.0f ns/run, sys_exit %d runs %.0f ns/run",
					i, off[i], on[i], ec, float64(er)/float64(ec), xc, float64(xr)/float64(xc))
				s.Close()
			}
			b.ReportMetric(median(off), "ns/open-off")
			b.ReportMetric(median(on), "ns/open-on")
			b.ReportMetric(median(on)/median(off), "ratio")
			b.ReportMetric(median(bpfNs), "bpf-ns/open")
		})
	}
}

func writeFile(p string) error {
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = unix.Write(fd, []byte("vigil benchmark\n"))
	return err
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}
