package sensor

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestKernelDev(t *testing.T) {
	for _, c := range []struct{ major, minor, want uint32 }{
		{8, 1, 8<<20 | 1},
		{259, 70000, 259<<20 | 70000},
		{0, 27, 27},
	} {
		if got := KernelDev(unix.Mkdev(c.major, c.minor)); got != c.want {
			t.Errorf("KernelDev(%d:%d) = %#x, want %#x", c.major, c.minor, got, c.want)
		}
	}
}

func TestExeOf(t *testing.T) {
	x, err := ExeOf("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err != nil {
		t.Fatal(err)
	}
	if x.Ino != st.Ino || x.Dev != KernelDev(st.Dev) {
		t.Errorf("ExeOf = %+v, want ino %d dev %#x", x, st.Ino, KernelDev(st.Dev))
	}
	_, err = ExeOf("/no/such/exe")
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "/no/such/exe") {
		t.Errorf("missing executable: %v, want ErrNotExist naming the path", err)
	}
}
