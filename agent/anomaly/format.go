package anomaly

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// formatCount writes n with thousands separators, e.g. 3,214.
func formatCount(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) <= 3 {
		return s
	}
	out := make([]byte, 0, len(s)+len(s)/3)
	pre := len(s) % 3
	if pre > 0 {
		out = append(out, s[:pre]...)
	}
	for i := pre; i < len(s); i += 3 {
		if len(out) > 0 {
			out = append(out, ',')
		}
		out = append(out, s[i:i+3]...)
	}
	return string(out)
}

// formatSpan writes a duration the way a person would say it, rounded down
// to the largest unit that keeps two or more of it: "45 s", "90 min",
// "26 h", "14 d".
func formatSpan(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
		fallthrough
	case d < 2*time.Minute:
		return strconv.FormatInt(int64(d/time.Second), 10) + " s"
	case d < 2*time.Hour:
		return strconv.FormatInt(int64(d/time.Minute), 10) + " min"
	case d < 48*time.Hour:
		return strconv.FormatInt(int64(d/time.Hour), 10) + " h"
	default:
		return formatCount(uint64(d/(24*time.Hour))) + " d"
	}
}

// formatBytes writes a byte count in binary units with one decimal above
// 1 KiB: "512 B", "100.0 KiB", "64.0 MiB".
func formatBytes(b float64) string {
	if b < 1024 {
		return strconv.FormatFloat(math.Round(b), 'f', 0, 64) + " B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	v := b / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
