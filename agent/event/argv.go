package event

import "strings"

// Bounds on argv, the same for the kernel sensor and for /proc: at most
// MaxArgs arguments and MaxArgsBytes bytes in all; more is cut and marked.
const (
	MaxArgs      = 16
	MaxArgsBytes = 1024
)

// SplitArgv splits NUL-separated argv bytes (as the kernel lays them out,
// and as /proc/<pid>/cmdline shows them) within the bounds, and reports
// whether anything was cut.
func SplitArgv(b []byte) ([]string, bool) {
	truncated := false
	if len(b) > MaxArgsBytes {
		b, truncated = b[:MaxArgsBytes], true
	}
	s := strings.TrimSuffix(string(b), "\x00")
	if s == "" {
		return nil, truncated
	}
	parts := strings.Split(s, "\x00")
	if len(parts) > MaxArgs {
		return parts[:MaxArgs], true
	}
	return parts, truncated
}
