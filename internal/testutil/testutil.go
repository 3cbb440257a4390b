// Package testutil holds helpers shared by Vigil's tests.
package testutil

import (
	"os"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where a test that
// needs the kernel must fail instead of skipping.
func InCI() bool {
	return os.Getenv("CI") == "true"
}

// RequireRoot skips a test that needs root when not root, except under CI,
// where it fails: CI runs as root, and a kernel test must never be skipped
// there silently.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if InCI() {
		tb.Fatal("this test needs root, and CI=true forbids skipping it")
	}
	tb.Skip("needs root (loads BPF programs); run the tests as root")
}
