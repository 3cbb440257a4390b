package login

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/bpf"
)

func TestFindLibPAMAgreesWithLdconfig(t *testing.T) {
	out, err := exec.Command("/sbin/ldconfig", "-p").Output()
	if err != nil {
		t.Fatalf("ldconfig -p: %v", err)
	}
	arch := map[string]string{"amd64": "x86-64", "arm64": "AArch64"}[runtime.GOARCH]
	m := regexp.MustCompile(`(?m)^\s+libpam\.so\.0 \(libc6,` + arch + `[^)]*\) => (\S+)$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("ldconfig -p lists no %s libpam.so.0; install libpam0g:\n%s", arch, out)
	}
	data, err := os.ReadFile(LdCachePath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := lookupLdCache(data, LibPAMName, archFlags())
	if err != nil || got != string(m[1]) {
		t.Errorf("lookupLdCache = %q, %v; want %q", got, err, m[1])
	}
	if path, err := FindLibPAM(); err != nil || path != string(m[1]) {
		t.Errorf("FindLibPAM = %q, %v; want %q", path, err, m[1])
	}
	if _, err := lookupLdCache(data, "libvigil-none.so.0", archFlags()); err == nil {
		t.Error("lookupLdCache found a library that does not exist")
	}
	if _, err := lookupLdCache([]byte("garbage"), LibPAMName, archFlags()); err == nil {
		t.Error("lookupLdCache accepted a file that is no cache")
	}
}

func TestLoadWithoutLibPAM(t *testing.T) {
	_, err := Load(Options{LibPAM: "/nonexistent/vigil/libpam.so.0"})
	if !errors.Is(err, ErrNoLibPAM) {
		t.Fatalf("Load with a missing libpam: %v, want ErrNoLibPAM", err)
	}
}

func TestLoadRejectsUnknownOp(t *testing.T) {
	if _, err := Load(Options{Ops: []event.LoginOp{99}}); err == nil {
		t.Fatal("Load accepted an unknown PAM call")
	}
}

func setCString(dst []int8, s string) {
	for i := range len(s) {
		dst[i] = int8(s[i])
	}
}

func TestDecode(t *testing.T) {
	var rec bpf.LoginLoginEvent
	rec.Hdr.Type = uint32(bpf.LoginLoginEventTypeEVENT_PAM_OPEN_SESSION)
	rec.Hdr.KtimeBoot = uint64(5 * time.Second)
	rec.Proc.Pid, rec.Proc.Tid, rec.Proc.Ppid = 10, 11, 1
	rec.Proc.Loginuid = 1000
	rec.Proc.StartBoottime = 42
	setCString(rec.Proc.Comm[:], "sshd")
	rec.Result = 14
	rec.Flags = uint32(bpf.LoginLoginFlagsLOGIN_ITEM_TRUNCATED)
	rec.Sessionid = 7
	rec.DurationNs = 1500
	setCString(rec.Service[:], "sshd")
	setCString(rec.User[:], "alice")
	setCString(rec.Rhost[:], "192.0.2.1")
	setCString(rec.Tty[:], "ssh")
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&rec)), unsafe.Sizeof(rec))

	boot := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := Decoder{BootTime: boot}
	got, err := d.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := &event.Login{
		Time:       boot.Add(5 * time.Second),
		Process:    event.Process{PID: 10, TID: 11, PPID: 1, LoginUID: 1000, StartTime: 42, Comm: "sshd"},
		Op:         event.LoginOpenSession,
		Result:     event.PAMSessionErr,
		Service:    "sshd",
		User:       "alice",
		RemoteHost: "192.0.2.1",
		TTY:        "ssh",
		SessionID:  7,
		Duration:   1500,
		Truncated:  true,
	}
	if l, ok := got.(*event.Login); !ok || *l != *want {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
	if s := want.Result.String(); s != "PAM_SESSION_ERR" {
		t.Errorf("result name %q, want PAM_SESSION_ERR", s)
	}
	if s := event.PAMResult(77).String(); s != "PAMResult(77)" {
		t.Errorf("unknown result name %q", s)
	}

	if _, err := d.Decode(raw[:100]); !errors.Is(err, sensor.ErrShortRecord) {
		t.Errorf("short record: %v, want ErrShortRecord", err)
	}
	rec.Hdr.Type = 3
	if _, err := d.Decode(raw); !errors.Is(err, sensor.ErrUnknownType) {
		t.Errorf("process-family type: %v, want ErrUnknownType", err)
	}
}

func TestSkipNullCheck(t *testing.T) {
	for _, c := range []struct {
		code []byte
		want bool
	}{
		{[]byte{0x48, 0x85, 0xff, 0x74, 0x1b, 0x83, 0x7f, 0x08}, true},  // test %rdi,%rdi; je short
		{[]byte{0x48, 0x85, 0xff, 0x0f, 0x84, 0x10, 0x00, 0x00}, true},  // test %rdi,%rdi; je near
		{[]byte{0x48, 0x85, 0xff, 0x48, 0x89, 0xe5, 0x00, 0x00}, false}, // test, then a mov
		{[]byte{0x55, 0x53, 0x48, 0x83, 0xec, 0x18, 0x00, 0x00}, false}, // push %rbp; push %rbx; ...
		{[]byte{0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x85, 0xff, 0x74}, false}, // endbr64 first
		{[]byte{0x48, 0x85, 0xff}, false},                               // too short to tell
	} {
		if got := skipNullCheck(c.code); got != c.want {
			t.Errorf("skipNullCheck(% x) = %v, want %v", c.code, got, c.want)
		}
	}
}

func TestEntryOffsetsOfLibPAM(t *testing.T) {
	path, err := FindLibPAM()
	if err != nil {
		t.Fatal(err)
	}
	var syms []string
	for _, op := range AllOps {
		syms = append(syms, symbols[op])
	}
	offs, err := entryOffsets(path, syms)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dyn, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range syms {
		i := slices.IndexFunc(dyn, func(s elf.Symbol) bool { return s.Name == name })
		if i < 0 {
			t.Fatalf("%s has no symbol %s", path, name)
		}
		code := functionStart(f, dyn[i].Value)
		want := uint64(0)
		if f.Machine == elf.EM_X86_64 && skipNullCheck(code) {
			want = 3
		}
		if offs[name] != want {
			t.Errorf("%s: entry offset %d, want %d (starts with % x)", name, offs[name], want, code)
		}
	}
}
