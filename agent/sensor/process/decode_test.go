package process

import (
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/bpf"
)

// execRecord lays out an exec record as the kernel does.
func execRecord(exe, cwd string, argv ...string) []byte {
	var rec bpf.ProcessExecEvent
	rec.Hdr.Type = uint32(bpf.ProcessEventTypeEVENT_EXEC)
	put := func(dst []int8, s string) uint32 {
		for i := range len(s) {
			dst[i] = int8(s[i])
		}
		return uint32(len(s))
	}
	rec.ExeLen = put(rec.Exe[:], exe)
	rec.FilenameLen = put(rec.Filename[:], exe)
	rec.CwdLen = put(rec.Cwd[:], cwd)
	rec.ArgsLen = put(rec.Args[:], strings.Join(argv, "\x00")+"\x00")
	put(rec.Proc.Comm[:], "true")
	return slices.Clone(unsafe.Slice((*byte)(unsafe.Pointer(&rec)), unsafe.Sizeof(rec)))
}

func TestDecoderSharesStringsOfRepeatedExecs(t *testing.T) {
	var d Decoder
	decode := func(raw []byte) *event.Exec {
		t.Helper()
		ev, err := d.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		return ev.(*event.Exec)
	}
	a := decode(execRecord("/usr/bin/true", "/", "/bin/true"))
	b := decode(execRecord("/usr/bin/true", "/", "/bin/true"))
	if a.Exe != "/usr/bin/true" || a.Cwd != "/" || a.Process.Comm != "true" || !slices.Equal(a.Args, []string{"/bin/true"}) {
		t.Fatalf("decoded %+v", a)
	}
	if unsafe.StringData(a.Exe) != unsafe.StringData(b.Exe) || unsafe.StringData(a.Process.Comm) != unsafe.StringData(b.Process.Comm) ||
		unsafe.SliceData(a.Args) != unsafe.SliceData(b.Args) {
		t.Error("two execs of the same program do not share their strings")
	}
	c := decode(execRecord("/usr/bin/ls", "/tmp", "ls", "-l"))
	if c.Exe != "/usr/bin/ls" || c.Cwd != "/tmp" || !slices.Equal(c.Args, []string{"ls", "-l"}) || c.ArgsTruncated {
		t.Fatalf("decoded %+v", c)
	}

	// Argv cut at MaxArgs is reported as cut every time, not only the first.
	many := make([]string, event.MaxArgs+2)
	for i := range many {
		many[i] = "x"
	}
	for range 2 {
		if x := decode(execRecord("/usr/bin/echo", "/", many...)); !x.ArgsTruncated || len(x.Args) != event.MaxArgs {
			t.Fatalf("args %d truncated %v, want %d and true", len(x.Args), x.ArgsTruncated, event.MaxArgs)
		}
	}

	// The tables stay bounded.
	for i := range maxInternedStrings + 10 {
		decode(execRecord("/opt/p"+strings.Repeat("a", i%7)+string(rune('a'+i%26))+strings.Repeat("b", i/26), "/", "p"))
	}
	if len(d.strs) > maxInternedStrings || len(d.argv) > maxInternedArgv {
		t.Errorf("tables hold %d strings and %d argv, bounds %d and %d", len(d.strs), len(d.argv), maxInternedStrings, maxInternedArgv)
	}
}
