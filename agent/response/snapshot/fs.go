package snapshot

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Kind is what is at a path.
type Kind string

// The kinds a path can hold.
const (
	// KindAbsent: nothing is there.
	KindAbsent Kind = "absent"
	// KindFile: a regular file.
	KindFile Kind = "file"
	// KindSymlink: a symbolic link.
	KindSymlink Kind = "symlink"
	// KindOther: a directory, FIFO, socket or device.
	KindOther Kind = "other"
)

// State is what a path held at one moment, as reported in a Result. It
// never carries the content itself (the path may be /etc/shadow).
type State struct {
	// Kind is what was there.
	Kind Kind
	// Size is the content's length in bytes (a link's: its target's).
	Size int64
	// Hash is the SHA-256 of a regular file's content in hex, empty for
	// other kinds and for files over the size limit.
	Hash string
	// Link is a symbolic link's target.
	Link string
	// Mode holds the permission bits with setuid, setgid and sticky.
	Mode uint32
	// UID and GID are the owner.
	UID, GID uint32
}

// same reports whether a and b are the same content, mode and owner.
func (a State) same(b State) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case KindAbsent:
		return true
	case KindSymlink:
		return a.Link == b.Link && a.UID == b.UID && a.GID == b.GID
	default:
		return a.Hash != "" && a.Hash == b.Hash && a.Mode == b.Mode && a.UID == b.UID && a.GID == b.GID
	}
}

// dirHandle is an open directory on the way to a path.
type dirHandle struct {
	fd   int
	path string // as seen from the root
}

func (d dirHandle) close() { unix.Close(d.fd) }

// openParent opens the directory holding the clean absolute path p under
// root, one component at a time with O_NOFOLLOW, and returns it with the
// final name. A symbolic link on the way is ErrSymlinkDir; a missing
// directory is an error satisfying errors.Is(err, fs.ErrNotExist).
func openParent(root, p string) (dirHandle, string, error) {
	dir, name := path.Split(p)
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return dirHandle{}, "", &os.PathError{Op: "open", Path: root, Err: err}
	}
	walked := "/"
	for _, c := range strings.Split(strings.Trim(dir, "/"), "/") {
		if c == "" {
			continue
		}
		walked = path.Join(walked, c)
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			var st unix.Stat_t
			isLink := unix.Fstatat(fd, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
			unix.Close(fd)
			if isLink {
				return dirHandle{}, "", fmt.Errorf("directory %s %w", walked, ErrSymlinkDir)
			}
			return dirHandle{}, "", &os.PathError{Op: "open", Path: walked, Err: err}
		}
		unix.Close(fd)
		fd = next
	}
	return dirHandle{fd: fd, path: path.Clean(dir)}, name, nil
}

// readState returns what name in d holds, with the content of a regular
// file up to limit bytes. A larger file gives its State without Hash and
// ErrTooLarge; a directory, FIFO, socket or device gives KindOther and
// ErrNotRegular. Nothing is followed: a symbolic link is reported as one.
func readState(d dirHandle, name string, limit int64) (State, []byte, error) {
	var st unix.Stat_t
	err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return State{Kind: KindAbsent}, nil, nil
	}
	if err != nil {
		return State{}, nil, fmt.Errorf("stat: %w", err)
	}
	s := State{Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, Size: st.Size}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(d.fd, name, buf)
		if err != nil {
			return State{}, nil, fmt.Errorf("read link: %w", err)
		}
		s.Kind, s.Link, s.Size = KindSymlink, string(buf[:n]), int64(n)
		return s, nil, nil
	case unix.S_IFREG:
	default:
		s.Kind = KindOther
		return s, nil, fmt.Errorf("%w (mode %o)", ErrNotRegular, st.Mode&unix.S_IFMT)
	}
	s.Kind = KindFile
	if st.Size > limit {
		return s, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, st.Size, limit)
	}
	// O_NONBLOCK: should the file turn into a FIFO between the stat and the
	// open, the open does not hang; the fstat below then refuses it.
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return State{}, nil, fmt.Errorf("open: %w", err)
	}
	f := os.NewFile(uintptr(fd), path.Join(d.path, name))
	defer f.Close()
	if err := unix.Fstat(fd, &st); err != nil {
		return State{}, nil, fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return State{Kind: KindOther}, nil, fmt.Errorf("%w (changed while read)", ErrNotRegular)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return State{}, nil, fmt.Errorf("read: %w", err)
	}
	s.Mode, s.UID, s.GID, s.Size = st.Mode&0o7777, st.Uid, st.Gid, int64(len(data))
	if int64(len(data)) > limit {
		return s, nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, limit)
	}
	sum := sha256.Sum256(data)
	s.Hash = hex.EncodeToString(sum[:])
	return s, data, nil
}

// tempName returns a fresh name for a temporary beside the target: hidden
// and without the target's suffix, so that cron, sudo, systemd and
// profile.d ignore it for the moment it exists.
func tempName() string {
	var b [8]byte
	rand.Read(b[:])
	return ".vigil-restore-" + hex.EncodeToString(b[:])
}

// replaceFile puts a regular file with data, mode and owner at name in d:
// it writes a temporary in the same directory, sets its owner and then its
// mode (chown clears setuid and setgid), syncs it, renames it over name and
// syncs the directory. Whatever name was (file, symbolic link, FIFO) is
// replaced as a directory entry, never opened.
func replaceFile(d dirHandle, name string, data []byte, mode, uid, gid uint32) error {
	tmp := tempName()
	fd, err := unix.Openat(d.fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create temporary: %w", err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	done := false
	defer func() {
		if !done {
			f.Close()
			unix.Unlinkat(d.fd, tmp, 0)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write temporary: %w", err)
	}
	if err := unix.Fchown(fd, int(uid), int(gid)); err != nil {
		return fmt.Errorf("chown temporary: %w", err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("chmod temporary: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync temporary: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close temporary: %w", err)
	}
	if err := unix.Renameat(d.fd, tmp, d.fd, name); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		done = true
		return fmt.Errorf("rename into place: %w", err)
	}
	done = true
	syncDir(d)
	return nil
}

// replaceLink puts a symbolic link to target, owned by uid:gid, at name in
// d, by renaming a new link over whatever is there.
func replaceLink(d dirHandle, name, target string, uid, gid uint32) error {
	tmp := tempName()
	if err := unix.Symlinkat(target, d.fd, tmp); err != nil {
		return fmt.Errorf("create temporary link: %w", err)
	}
	if err := unix.Fchownat(d.fd, tmp, int(uid), int(gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return fmt.Errorf("chown temporary link: %w", err)
	}
	if err := unix.Renameat(d.fd, tmp, d.fd, name); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return fmt.Errorf("rename into place: %w", err)
	}
	syncDir(d)
	return nil
}

// remove unlinks name in d (a file, link, FIFO: never a directory).
func remove(d dirHandle, name string) error {
	if err := unix.Unlinkat(d.fd, name, 0); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	syncDir(d)
	return nil
}

// syncDir flushes d so that a rename or unlink survives a crash. A failure
// leaves the change made: not reported, as in internal/atomicfile.
func syncDir(d dirHandle) { _ = unix.Fsync(d.fd) }
