package process

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vigil-sensor/vigil/agent/event"
	"github.com/vigil-sensor/vigil/agent/sensor"
	"github.com/vigil-sensor/vigil/internal/sensortest"
)

// copyExe copies executable src to dst.
func copyExe(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestKillAtExec puts copies of touch on the kill lists, by path and by
// name, and checks that a listed one dies by SIGKILL before it creates its
// marker, that its exec event says so, and that unlisted ones run.
func TestKillAtExec(t *testing.T) {
	s, c := startSensor(t, Options{})
	t.Cleanup(func() { _ = s.SetKillList(nil, nil) })

	// A throwaway directory on a disk file system (not tmpfs), with two
	// copies of touch: distinct inodes, short distinct names.
	dir, err := os.MkdirTemp("/var/cache", "vigil-kill-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	listed := fmt.Sprintf("vk%d", os.Getpid()%1000000)
	other := listed + "b"
	listedPath, otherPath := filepath.Join(dir, listed), filepath.Join(dir, other)
	copyExe(t, "/usr/bin/touch", listedPath)
	copyExe(t, "/usr/bin/touch", otherPath)

	n := 0
	// run runs exe with a fresh marker and checks whether it was killed
	// (status, marker, exec and exit events); it returns the exec event.
	run := func(exe string, wantKilled bool) *event.Exec {
		t.Helper()
		n++
		marker := filepath.Join(dir, fmt.Sprintf("marker-%d", n))
		cmd := exec.Command(exe, marker)
		err := cmd.Run()
		pid := cmd.Process.Pid
		var exitErr *exec.ExitError
		switch {
		case wantKilled:
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !errors.As(err, &exitErr) || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Errorf("%s: %v (status %v), want killed by SIGKILL", filepath.Base(exe), err, cmd.ProcessState)
			}
			if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: marker exists (%v): the image ran", filepath.Base(exe), err)
			}
		default:
			if err != nil {
				t.Errorf("%s: %v, want it to run", filepath.Base(exe), err)
			}
			if _, err := os.Stat(marker); err != nil {
				t.Errorf("%s: no marker: %v", filepath.Base(exe), err)
			}
		}
		ex := execOf(t, c, pid)
		if ex.Killed != wantKilled {
			t.Errorf("%s: exec event Killed = %v, want %v", filepath.Base(exe), ex.Killed, wantKilled)
		}
		exit := exitOf(t, c, pid)
		if wantKilled {
			if exit.ExitCode != int32(syscall.SIGKILL) {
				t.Errorf("%s: exit code %#x, want %#x", filepath.Base(exe), exit.ExitCode, int32(syscall.SIGKILL))
			}
			t.Logf("%s: exec to exit %v", filepath.Base(exe), exit.Time.Sub(ex.Time))
		}
		return ex
	}

	// By path: the listed copy dies, the other copy of the same binary runs.
	if err := s.SetKillList([]string{listedPath}, nil); err != nil {
		t.Fatal(err)
	}
	if ex := run(listedPath, true); ex.Exe != listedPath || ex.Process.Comm != listed {
		t.Errorf("killed exec: exe %q comm %q, want %q %q", ex.Exe, ex.Process.Comm, listedPath, listed)
	}
	run(otherPath, false)

	// By name: the other copy dies; the first, off the list now, runs.
	if err := s.SetKillList(nil, []string{other}); err != nil {
		t.Fatal(err)
	}
	run(otherPath, true)
	run(listedPath, false)

	// Through a symlink, the name is the link's, the inode the target's.
	link := filepath.Join(dir, "lnk")
	if err := os.Symlink(listedPath, link); err != nil {
		t.Fatal(err)
	}
	if err := s.SetKillList([]string{link}, nil); err != nil {
		t.Fatal(err)
	}
	run(link, true)
	run(otherPath, false)

	// A script runs as its interpreter's image, so it is listed by name.
	script := filepath.Join(dir, "vks")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec /usr/bin/touch \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.SetKillList(nil, []string{"vks"}); err != nil {
		t.Fatal(err)
	}
	if ex := run(script, true); ex.Filename != script || ex.Exe == script {
		t.Errorf("killed script: filename %q exe %q, want %q and its interpreter", ex.Filename, ex.Exe, script)
	}

	// Empty lists kill nothing.
	if err := s.SetKillList(nil, nil); err != nil {
		t.Fatal(err)
	}
	run(listedPath, false)
	run(otherPath, false)
}

// TestKillListErrors checks that a bad entry is refused with a message
// naming it and leaves the lists as they were.
func TestKillListErrors(t *testing.T) {
	s, c := startSensor(t, Options{})
	t.Cleanup(func() { _ = s.SetKillList(nil, nil) })
	const keep = "vigil-nokill"
	if err := s.SetKillList(nil, []string{keep}); err != nil {
		t.Fatal(err)
	}

	missing := "/var/cache/vigil-no-such-exe"
	err := s.SetKillList([]string{missing}, nil)
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing executable: %v, want an error naming %s", err, missing)
	}
	if err := s.SetKillList(nil, []string{"sixteen-bytes-xx"}); err == nil ||
		err.Error() != `kill list: bad task name "sixteen-bytes-xx": longer than 15 bytes (the kernel keeps only "sixteen-bytes-x")` {
		t.Errorf("long name: %v", err)
	}

	// The earlier list is still in force: a task renamed to keep is killed
	// at its next exec (comm is set from the exec'd file's base name).
	dir, err := os.MkdirTemp("/var/cache", "vigil-kill-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := filepath.Join(dir, keep)
	copyExe(t, "/bin/true", p)
	cmd := exec.Command(p)
	if err := cmd.Run(); err == nil {
		t.Errorf("%s ran after the failed updates; want it still killed", keep)
	}
	ex := sensortest.WaitFor(t, c, "exec", func(e *event.Exec) bool { return e.Process.PID == uint32(cmd.Process.Pid) })
	if !ex.Killed {
		t.Errorf("exec event Killed = false")
	}
}

func TestKillNameKey(t *testing.T) {
	k, err := killNameKey("fifteen-bytes-x")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(sensor.Bytes(k.Comm[:], 15)); got != "fifteen-bytes-x" || k.Comm[15] != 0 {
		t.Errorf("key %q, want the name NUL-terminated", got)
	}
	for _, bad := range []string{"", "sixteen-bytes-xx", "a\x00b"} {
		if _, err := killNameKey(bad); !errors.Is(err, ErrBadKillName) {
			t.Errorf("name %q: %v, want ErrBadKillName", bad, err)
		}
	}
}
