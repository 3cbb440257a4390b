package event

import (
	"slices"
	"strings"
	"testing"
)

func TestSplitArgvKeepsTheBounds(t *testing.T) {
	long := strings.Repeat("x", 2000)
	args, truncated := SplitArgv([]byte("prog\x00" + long + "\x00"))
	if !truncated || len(args) != 2 || args[0] != "prog" || len(args[1]) != MaxArgsBytes-len("prog\x00") {
		t.Errorf("long cmdline: %d args, truncated=%v, second %d bytes", len(args), truncated, len(args[len(args)-1]))
	}
	many := strings.Repeat("a\x00", 20)
	args, truncated = SplitArgv([]byte(many))
	if !truncated || len(args) != MaxArgs {
		t.Errorf("20 args: kept %d, truncated=%v", len(args), truncated)
	}
	args, truncated = SplitArgv([]byte("sh\x00-c\x00id\x00"))
	if truncated || !slices.Equal(args, []string{"sh", "-c", "id"}) {
		t.Errorf("short cmdline: %q truncated=%v", args, truncated)
	}
}
