package anomaly

import (
	"testing"
	"time"
)

func TestGeneralizePath(t *testing.T) {
	for in, want := range map[string]string{
		"/proc/123/status":                               "/proc/#/status",
		"/proc/self/status":                              "/proc/self/status",
		"/home/alice/.cache/x":                           "/home/*/.cache/x",
		"/home/bob":                                      "/home/*",
		"/home/":                                         "/home/",
		"/root/.ssh/authorized_keys":                     "/root/.ssh/authorized_keys",
		"/run/user/1000/bus":                             "/run/user/#/bus",
		"/usr/lib/x86_64-linux-gnu/libc.so.6":            "/usr/lib/x86_#-linux-gnu/libc.so.#",
		"/usr/bin/python3":                               "/usr/bin/python3",
		"/usr/bin/sha256sum":                             "/usr/bin/sha256sum",
		"/var/lib/docker/containers/3f9c0a1b2e":          "/var/lib/docker/containers/#",
		"/tmp/123e4567-e89b-12d3-a456-426614174000.lock": "/tmp/#-#-#-#-#.lock",
		"/var/cache/dead/face":                           "/var/cache/dead/face",
		"/dev/pts/3":                                     "/dev/pts/#",
		"relative/9":                                     "relative/#",
		"":                                               "",
	} {
		got := GeneralizePath(in)
		if got != want {
			t.Errorf("GeneralizePath(%q) = %q, want %q", in, got, want)
		}
		if again := GeneralizePath(got); again != got {
			t.Errorf("GeneralizePath(%q) = %q, not idempotent", got, again)
		}
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 3214: "3,214", 1234567: "1,234,567"} {
		if got := formatCount(n); got != want {
			t.Errorf("formatCount(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		-time.Second:        "0 s",
		45 * time.Second:    "45 s",
		90 * time.Minute:    "90 min",
		26 * time.Hour:      "26 h",
		15 * 24 * time.Hour: "15 d",
	} {
		if got := formatSpan(d); got != want {
			t.Errorf("formatSpan(%v) = %q, want %q", d, got, want)
		}
	}
	for b, want := range map[float64]string{512: "512 B", 102400: "100.0 KiB", 64 << 20: "64.0 MiB"} {
		if got := formatBytes(b); got != want {
			t.Errorf("formatBytes(%v) = %q, want %q", b, got, want)
		}
	}
}
