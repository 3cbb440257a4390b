// Package hostinfo tells who this host is: its stable id, name, kernel,
// boot time, and the names of its users.
package hostinfo

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// MachineIDFiles are read in order for the host id.
var MachineIDFiles = []string{"/etc/machine-id", "/var/lib/dbus/machine-id"}

// HostID returns the host's machine id. When the host has none, it makes one
// and keeps it in stateDir/host-id so that it survives restarts.
func HostID(stateDir string) (string, error) {
	for _, f := range append(MachineIDFiles, filepath.Join(stateDir, "host-id")) {
		if b, err := os.ReadFile(f); err == nil {
			if id := strings.TrimSpace(string(b)); id != "" {
				return id, nil
			}
		}
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("make host id: %w", err)
	}
	id := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return "", fmt.Errorf("create state dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, "host-id"), []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save host id: %w", err)
	}
	return id, nil
}

// KernelRelease returns uname -r.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return string(bytes.TrimRight(u.Release[:], "\x00"))
}

// BootTime returns the wall-clock time of boot on the CLOCK_BOOTTIME scale,
// the clock the kernel programs time events with.
func BootTime() (time.Time, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}, fmt.Errorf("read boot clock: %w", err)
	}
	return time.Now().Add(-time.Duration(ts.Nano())), nil
}

// Users resolves uids to names, caching the answers.
type Users struct {
	mu    sync.Mutex
	names map[uint32]string
}

// Name returns the name of uid, or "" when it has none.
func (u *Users) Name(uid uint32) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if name, ok := u.names[uid]; ok {
		return name
	}
	if u.names == nil {
		u.names = make(map[uint32]string)
	}
	name := ""
	if found, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		name = found.Username
	}
	if len(u.names) < 4096 {
		u.names[uid] = name
	}
	return name
}

// UID returns the uid of a user given by name or as a number.
func UID(name string) (uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil
	}
	found, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("user %q: %w", name, err)
	}
	n, err := strconv.ParseUint(found.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %q has uid %q: %w", name, found.Uid, err)
	}
	return uint32(n), nil
}
