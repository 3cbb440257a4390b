package hostinfo

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestHostIDPrefersMachineIDThenKeepsItsOwn(t *testing.T) {
	dir := t.TempDir()
	saved := MachineIDFiles
	defer func() { MachineIDFiles = saved }()

	machineID := filepath.Join(dir, "machine-id")
	if err := os.WriteFile(machineID, []byte("0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	MachineIDFiles = []string{filepath.Join(dir, "missing"), machineID}
	if id, err := HostID(filepath.Join(dir, "state")); err != nil || id != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("HostID = %q, %v; want the machine id", id, err)
	}

	// No machine id: one is made, saved, and the same one comes back.
	MachineIDFiles = []string{filepath.Join(dir, "missing")}
	state := filepath.Join(dir, "state")
	first, err := HostID(state)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(first) {
		t.Fatalf("made-up host id %q is not 32 hex digits", first)
	}
	second, err := HostID(state)
	if err != nil || second != first {
		t.Fatalf("second HostID = %q, %v; want %q again", second, err, first)
	}
}

func TestBootTimeIsInThePast(t *testing.T) {
	boot, err := BootTime()
	if err != nil {
		t.Fatal(err)
	}
	if !boot.Before(time.Now()) || time.Since(boot) > 10*365*24*time.Hour {
		t.Errorf("boot time %v is implausible", boot)
	}
	if KernelRelease() == "unknown" || KernelRelease() == "" {
		t.Errorf("kernel release %q", KernelRelease())
	}
}

func TestUserNames(t *testing.T) {
	var u Users
	if got := u.Name(0); got != "root" {
		t.Errorf("uid 0 = %q, want root", got)
	}
	if got := u.Name(4_000_000_000); got != "" {
		t.Errorf("unknown uid = %q, want empty", got)
	}
}

func TestUID(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint32
	}{{"root", 0}, {"0", 0}, {"65534", 65534}, {"nobody", 65534}} {
		got, err := UID(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("UID(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	if _, err := UID("no-such-user-vigil"); err == nil || !strings.Contains(err.Error(), `user "no-such-user-vigil"`) {
		t.Errorf("UID of an unknown user: %v", err)
	}
}
