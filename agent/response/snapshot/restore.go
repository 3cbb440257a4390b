package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Action is what Restore did to the path.
type Action string

// The actions a Result reports.
const (
	// ActionNone: the path already matched the snapshot.
	ActionNone Action = "none"
	// ActionWritten: the file or link was written back from the snapshot.
	ActionWritten Action = "written"
	// ActionRemoved: the path was added after the snapshot and was removed.
	ActionRemoved Action = "removed"
)

// Result says what Restore changed, for the audit record.
type Result struct {
	// Path is the path restored, as seen from the root.
	Path string
	// Version is the snapshot put back.
	Version Version
	// Action is what was done.
	Action Action
	// Before and After are the path's state around the restore.
	Before, After State
	// ContentChanged, ModeChanged and OwnerChanged say which of content
	// (or kind, or link target), mode and owner the restore changed.
	ContentChanged, ModeChanged, OwnerChanged bool
}

// String describes the result in one line for an audit record, e.g.
// "restored /etc/passwd: content 1342 -> 1316 bytes, mode 0666 -> 0644,
// owner 65534:65534 -> 0:0". It names sizes and modes, never content.
func (r Result) String() string {
	switch r.Action {
	case ActionNone:
		return fmt.Sprintf("%s already matches its snapshot of %s", r.Path, r.Version.Taken.Format(time.RFC3339))
	case ActionRemoved:
		return fmt.Sprintf("removed %s (%s, %d bytes, added after the snapshot of %s)", r.Path, r.Before.Kind, r.Before.Size, r.Version.Taken.Format(time.RFC3339))
	}
	var parts []string
	if r.ContentChanged {
		switch {
		case r.Before.Kind == KindSymlink || r.After.Kind == KindSymlink:
			parts = append(parts, fmt.Sprintf("%s %q -> %s %q", r.Before.Kind, r.Before.Link, r.After.Kind, r.After.Link))
		case r.Before.Kind != r.After.Kind:
			parts = append(parts, fmt.Sprintf("%s -> %s of %d bytes", r.Before.Kind, r.After.Kind, r.After.Size))
		default:
			parts = append(parts, fmt.Sprintf("content %d -> %d bytes", r.Before.Size, r.After.Size))
		}
	}
	if r.ModeChanged {
		parts = append(parts, fmt.Sprintf("mode %04o -> %04o", r.Before.Mode, r.After.Mode))
	}
	if r.OwnerChanged {
		parts = append(parts, fmt.Sprintf("owner %d:%d -> %d:%d", r.Before.UID, r.Before.GID, r.After.UID, r.After.GID))
	}
	if len(parts) == 0 {
		parts = append(parts, "rewritten")
	}
	return "restored " + r.Path + ": " + strings.Join(parts, ", ")
}

// Restore puts back the latest version of path: its content, mode and
// owner (or its link target), or removes the path if the latest version is
// absent or the path was added after a TakeAll that covered it.
//
// A file is replaced atomically: a temporary in the same directory is
// written, chowned, chmodded, synced and renamed over the path, and the
// directory is synced. Symbolic links are never followed. If the path
// itself has been replaced by a symbolic link, the link is replaced (or
// removed) as a directory entry and its target is left alone. If a
// directory on the way is a symbolic link, Restore refuses with
// ErrSymlinkDir and changes nothing. A directory at the path is never
// replaced (ErrIsDirectory).
//
// A path with no snapshot is ErrNoSnapshot; one whose last snapshot was
// skipped is ErrNotKept. When the restore was made but the path does not
// match the snapshot afterwards (it was changed again meanwhile), Result
// is filled in and the error says so.
func (s *Store) Restore(p string) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return Result{}, fmt.Errorf("restore %s: %w", p, ErrClosed)
	}
	clean, err := s.checkPath(p)
	if err != nil {
		return Result{}, fmt.Errorf("restore: %w", err)
	}
	v, err := s.latest(clean)
	if err != nil {
		return Result{Path: clean}, fmt.Errorf("restore %s: %w", clean, err)
	}
	return s.restore(clean, v)
}

// RestoreVersion is Restore with the version whose content hash is hash
// (the latest such version of path), even an older one, and even when the
// last snapshot was skipped.
func (s *Store) RestoreVersion(p, hash string) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return Result{}, fmt.Errorf("restore %s: %w", p, ErrClosed)
	}
	clean, err := s.checkPath(p)
	if err != nil {
		return Result{}, fmt.Errorf("restore: %w", err)
	}
	vs := s.idx.Paths[clean]
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].Hash == hash && hash != "" {
			return s.restore(clean, vs[i])
		}
	}
	return Result{Path: clean}, fmt.Errorf("restore %s: version %s: %w", clean, hash, ErrNoSnapshot)
}

// restore puts version v back at the clean path p.
func (s *Store) restore(p string, v Version) (Result, error) {
	res := Result{Path: p, Version: v}
	want := v.state()
	var data []byte
	if v.Kind() == KindFile {
		var err error
		if data, err = s.readBlob(v.Hash); err != nil {
			return res, fmt.Errorf("restore %s: %w", p, err)
		}
	}

	d, name, err := openParent(s.root, p)
	if errors.Is(err, fs.ErrNotExist) && v.Absent {
		res.Action, res.Before, res.After = ActionNone, want, want
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("restore %s: %w", p, err)
	}
	defer d.close()

	before, _, err := readState(d, name, s.maxFile)
	if err != nil && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrNotRegular) {
		return res, fmt.Errorf("restore %s: %w", p, err)
	}
	res.Before = before
	if before.same(want) {
		res.Action, res.After = ActionNone, before
		return res, nil
	}
	if before.Kind == KindOther && isDir(d, name) {
		return res, fmt.Errorf("restore %s: %w", p, ErrIsDirectory)
	}

	switch v.Kind() {
	case KindAbsent:
		err = remove(d, name)
		res.Action = ActionRemoved
	case KindSymlink:
		err = replaceLink(d, name, v.Link, v.UID, v.GID)
		res.Action = ActionWritten
	default:
		err = replaceFile(d, name, data, v.Mode, v.UID, v.GID)
		res.Action = ActionWritten
	}
	if err != nil {
		res.Action = ActionNone
		return res, fmt.Errorf("restore %s: %w", p, err)
	}

	after, _, err := readState(d, name, s.maxFile)
	if err != nil {
		return res, fmt.Errorf("restore %s: check: %w", p, err)
	}
	res.After = after
	res.ContentChanged = before.Kind != after.Kind || before.Hash != after.Hash || before.Link != after.Link || before.Size != after.Size
	res.ModeChanged = before.Kind != KindAbsent && after.Kind != KindAbsent && before.Mode != after.Mode
	res.OwnerChanged = before.Kind != KindAbsent && after.Kind != KindAbsent && (before.UID != after.UID || before.GID != after.GID)
	if !after.same(want) {
		return res, fmt.Errorf("restore %s: changed again during the restore (now %s, %d bytes)", p, after.Kind, after.Size)
	}
	return res, nil
}

// readBlob reads and checks the content with this hash.
func (s *Store) readBlob(hash string) ([]byte, error) {
	data, err := os.ReadFile(s.blobPath(hash))
	if err != nil {
		return nil, fmt.Errorf("content %s: %w: %w", hash, ErrBlobDamaged, err)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != hash {
		return nil, fmt.Errorf("content %s: %w: hash mismatch", hash, ErrBlobDamaged)
	}
	return data, nil
}

// isDir reports whether name in d is a directory (not following links).
func isDir(d dirHandle, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}
