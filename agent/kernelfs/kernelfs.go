// Package kernelfs checks that the host can run Vigil's kernel programs and
// mounts the kernel file systems the agent needs when they are missing.
package kernelfs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// BTFPath is where the kernel exposes its own BTF type information.
const BTFPath = "/sys/kernel/btf/vmlinux"

// ErrNotRoot is returned by Preflight when the agent runs without root.
var ErrNotRoot = errors.New("vigil-agent must run as root (it loads BPF programs)")

// ErrNoBTF is returned by Preflight when the kernel exposes no BTF.
var ErrNoBTF = errors.New("this kernel has no BTF at " + BTFPath + ": Vigil needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (5.8 or newer)")

// Preflight refuses to go on when the agent is not root or the kernel lacks BTF.
func Preflight() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if _, err := os.Stat(BTFPath); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ErrNoBTF
		}
		return fmt.Errorf("check BTF: %w", err)
	}
	return nil
}

// Mount is a kernel file system the agent may need.
type Mount struct {
	// Path is where it is mounted.
	Path string
	// FSType is the file system type name.
	FSType string
	// Magic is the statfs magic number that identifies it.
	Magic int64
}

// Needed are the file systems the agent mounts when they are missing: bpffs
// for pinning and tracefs for tracepoint ids.
var Needed = []Mount{
	{Path: "/sys/fs/bpf", FSType: "bpf", Magic: unix.BPF_FS_MAGIC},
	{Path: "/sys/kernel/tracing", FSType: "tracefs", Magic: unix.TRACEFS_MAGIC},
}

// EnsureMounted mounts each of mounts that is not mounted yet and returns
// the paths it mounted.
func EnsureMounted(mounts []Mount) ([]string, error) {
	var mounted []string
	for _, m := range mounts {
		var st unix.Statfs_t
		if err := unix.Statfs(m.Path, &st); err == nil && st.Type == m.Magic {
			continue
		}
		if err := os.MkdirAll(m.Path, 0o755); err != nil {
			return mounted, fmt.Errorf("create %s mount point: %w", m.FSType, err)
		}
		if err := unix.Mount(m.FSType, m.Path, m.FSType, 0, ""); err != nil {
			return mounted, fmt.Errorf("mount %s at %s: %w", m.FSType, m.Path, err)
		}
		mounted = append(mounted, m.Path)
	}
	return mounted, nil
}
