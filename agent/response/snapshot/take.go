package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vigil-sensor/vigil/internal/atomicfile"
)

// ErrClosed: the Store was closed.
var ErrClosed = errors.New("snapshot store closed")

// TakeAll snapshots, as known-good, every file the patterns match now, and
// records as absent every kept path that has disappeared. A path whose
// content, mode and owner equal its latest version gets no new version.
// Each pattern is marked swept: afterwards a path it covers that has no
// version (a cron.d file added later) counts as absent for Restore.
// Files that cannot be kept are listed in Report.Skipped; the error is for
// the store itself (the index could not be written).
func (s *Store) TakeAll() (Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rep Report
	if s.lock == nil {
		return rep, fmt.Errorf("take all: %w", ErrClosed)
	}
	now := s.now()

	set := map[string]bool{}
	root := escapeGlob(s.root)
	for _, g := range s.globs {
		matches, err := filepath.Glob(filepath.Join(root, g))
		if err != nil {
			return rep, fmt.Errorf("take all: pattern %q: %w", g, err)
		}
		for _, m := range matches {
			rel, err := filepath.Rel(s.root, m)
			if err != nil || strings.HasPrefix(rel, "..") {
				continue
			}
			set["/"+filepath.ToSlash(rel)] = true
		}
	}
	// Kept paths the glob no longer finds, and paths skipped last time.
	for p := range s.idx.Paths {
		if s.Covers(p) {
			set[p] = true
		}
	}
	for p := range s.idx.Unkept {
		if s.Covers(p) {
			set[p] = true
		}
	}
	paths := make([]string, 0, len(set))
	for p := range set {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	for _, p := range paths {
		taken, err := s.take(p, now)
		switch {
		case err != nil:
			rep.Skipped = append(rep.Skipped, Skip{Path: p, Err: err})
		case taken:
			rep.Taken = append(rep.Taken, p)
		default:
			rep.Unchanged = append(rep.Unchanged, p)
		}
	}
	for _, pat := range s.patterns {
		s.idx.Swept[pat] = now
	}
	if err := s.save(); err != nil {
		return rep, fmt.Errorf("take all: %w", err)
	}
	return rep, nil
}

// Take snapshots one path as known-good: its content, mode and owner, its
// link target if it is a symbolic link, or "absent" if it does not exist.
// Nothing is recorded when it equals the latest version. A path the
// patterns do not cover is ErrNotCovered; a file that cannot be kept
// (ErrTooLarge, ErrNotRegular, ErrSymlinkDir, ErrStoreFull) is marked so,
// and Restore refuses it until a later Take succeeds.
func (s *Store) Take(p string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return fmt.Errorf("take %s: %w", p, ErrClosed)
	}
	clean, err := s.checkPath(p)
	if err != nil {
		return fmt.Errorf("take: %w", err)
	}
	_, takeErr := s.take(clean, s.now())
	if err := s.save(); err != nil {
		return fmt.Errorf("take %s: %w", clean, err)
	}
	if takeErr != nil {
		return fmt.Errorf("take %s: %w", clean, takeErr)
	}
	return nil
}

// take records the current state of the clean covered path p and reports
// whether that made a new version. On failure p is marked unkept.
func (s *Store) take(p string, now time.Time) (bool, error) {
	st, data, err := s.current(p)
	if err != nil {
		s.idx.Unkept[p] = err.Error()
		return false, err
	}
	vs := s.idx.Paths[p]
	if len(vs) > 0 && vs[len(vs)-1].state().same(st) {
		delete(s.idx.Unkept, p)
		return false, nil
	}
	if st.Kind == KindFile {
		if err := s.putBlob(st.Hash, data); err != nil {
			s.idx.Unkept[p] = err.Error()
			return false, err
		}
	}
	v := Version{
		Hash:   st.Hash,
		Link:   st.Link,
		Mode:   st.Mode,
		UID:    st.UID,
		GID:    st.GID,
		Size:   st.Size,
		Taken:  now,
		Absent: st.Kind == KindAbsent,
	}
	if v.Absent {
		v.Size = 0
	}
	s.idx.Paths[p] = append(s.idx.Paths[p], v)
	s.prune(p)
	delete(s.idx.Unkept, p)
	return true, nil
}

// current reads what p holds now, without following any symbolic link.
func (s *Store) current(p string) (State, []byte, error) {
	d, name, err := openParent(s.root, p)
	if errors.Is(err, fs.ErrNotExist) {
		return State{Kind: KindAbsent}, nil, nil
	}
	if err != nil {
		return State{}, nil, err
	}
	defer d.close()
	return readState(d, name, s.maxFile)
}

// putBlob stores data under its hash unless it is there already.
func (s *Store) putBlob(hash string, data []byte) error {
	if _, ok := s.blobs[hash]; ok {
		return nil
	}
	if err := s.makeRoom(int64(len(data))); err != nil {
		return err
	}
	name := s.blobPath(hash)
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return fmt.Errorf("store content: %w", err)
	}
	if err := atomicfile.WriteFile(name, data, 0o600); err != nil {
		return fmt.Errorf("store content: %w", err)
	}
	s.blobs[hash] = int64(len(data))
	s.total += int64(len(data))
	return nil
}

// escapeGlob quotes the glob metacharacters of a literal path.
func escapeGlob(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
