package kernelfs

import (
	"errors"
	"strings"
	"testing"
)

func TestCgroupV2Root(t *testing.T) {
	info := strings.Join([]string{
		`24 29 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw`,
		`30 24 0:26 / /sys/fs/cgroup ro shared:9 - tmpfs tmpfs ro,mode=755`,
		`31 30 0:27 / /sys/fs/cgroup/unified\040v2 rw shared:10 - cgroup2 cgroup2 rw,nsdelegate`,
	}, "\n")
	got, err := cgroupV2Root(strings.NewReader(info))
	if err != nil || got != "/sys/fs/cgroup/unified v2" {
		t.Errorf("cgroupV2Root = %q, %v; want /sys/fs/cgroup/unified v2", got, err)
	}
	// A bind mount of a sub-cgroup is not the root.
	_, err = cgroupV2Root(strings.NewReader(`40 30 0:27 /user.slice /mnt rw - cgroup2 cgroup2 rw`))
	if !errors.Is(err, ErrNoCgroupV2) {
		t.Errorf("cgroupV2Root of a sub-cgroup mount: %v, want ErrNoCgroupV2", err)
	}
}
