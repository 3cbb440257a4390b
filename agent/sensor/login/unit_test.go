package login

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"runtime"
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
