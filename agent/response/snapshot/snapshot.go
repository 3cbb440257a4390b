// Package snapshot keeps known-good copies of the files an attacker changes
// to persist or escalate (accounts, sudoers, SSH keys, cron, systemd units,
// PAM, shell profiles, ld.so.preload) and puts a tampered file back: its
// content, mode and owner, or removes a file that was not there.
//
// A Store lives in a directory of the agent's state (STATE/snapshots):
//
//	index.json           path → versions, replaced with internal/atomicfile
//	index.json.damaged   the last index that could not be read, kept aside
//	blobs/ab/abcd…       file contents named by their SHA-256 (0600)
//	lock                 flock held while the store is open
//
// The store never follows a symbolic link placed on the way to a watched
// file: every directory from the root down is opened with O_NOFOLLOW, and
// the file itself is read, replaced and removed relative to its directory's
// descriptor (see Restore).
package snapshot

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sensor/vigil/internal/atomicfile"
)

// Defaults for the zero values of Options.
const (
	// DefaultMaxVersions is how many versions are kept per path.
	DefaultMaxVersions = 5
	// DefaultMaxFileSize is the largest file kept, in bytes.
	DefaultMaxFileSize = 1 << 20
	// DefaultMaxTotalSize bounds the bytes of all blobs together.
	DefaultMaxTotalSize = 64 << 20
)

// indexFormat is the version of index.json this package writes.
const indexFormat = 1

// DefaultPaths returns the patterns kept when Options.Paths is empty: the
// files attackers change to keep access or gain privilege.
func DefaultPaths() []string {
	return []string{
		"/etc/passwd",
		"/etc/shadow",
		"/etc/group",
		"/etc/gshadow",
		"/etc/sudoers",
		"/etc/sudoers.d/*",
		"/root/.ssh/authorized_keys",
		"/home/*/.ssh/authorized_keys",
		"/etc/crontab",
		"/etc/cron.d/*",
		"/etc/cron.{hourly,daily,weekly,monthly}/*",
		"/var/spool/cron/crontabs/*",
		"/etc/systemd/system/*.service",
		"/etc/systemd/system/*.timer",
		"/etc/ld.so.preload",
		"/etc/pam.d/*",
		"/etc/profile",
		"/etc/profile.d/*",
		"/root/.bashrc",
		"/root/.profile",
	}
}

// Errors a caller can test for with errors.Is.
var (
	// ErrNotCovered: the path matches none of the store's patterns.
	ErrNotCovered = errors.New("not covered by the snapshot patterns")
	// ErrNoSnapshot: nothing is known about the path.
	ErrNoSnapshot = errors.New("no snapshot of this path")
	// ErrNotKept: the last snapshot of the path was skipped (too large, not
	// a regular file, under a symbolic link), so its known-good state is
	// unknown.
	ErrNotKept = errors.New("last snapshot was skipped")
	// ErrTooLarge: the file is over Options.MaxFileSize.
	ErrTooLarge = errors.New("file too large")
	// ErrNotRegular: the path is neither a regular file nor a symbolic link.
	ErrNotRegular = errors.New("not a regular file or symbolic link")
	// ErrSymlinkDir: a directory on the way to the path is a symbolic link,
	// which the store refuses to read or write through.
	ErrSymlinkDir = errors.New("is a symbolic link: refusing to go through it")
	// ErrStoreFull: the blob would take the store over Options.MaxTotalSize
	// even after dropping every version that is not the latest of its path.
	ErrStoreFull = errors.New("snapshot store full")
	// ErrIndexDamaged: index.json could not be read and was set aside.
	ErrIndexDamaged = errors.New("snapshot index damaged")
	// ErrInUse: another Store holds the directory.
	ErrInUse = errors.New("snapshot store in use by another process")
	// ErrBlobDamaged: a version's stored content is missing or does not
	// match its hash.
	ErrBlobDamaged = errors.New("stored content missing or damaged")
	// ErrIsDirectory: Restore would have to replace or remove a directory.
	ErrIsDirectory = errors.New("is a directory: not replaced")
)

// Options configures a Store.
type Options struct {
	// Root is the directory all paths live under ("/" when empty); tests
	// point it at a temporary tree. Paths in the API and the index are
	// given as seen from Root ("/etc/passwd").
	Root string
	// Paths are the glob patterns of the files kept (DefaultPaths when
	// empty): absolute, with the syntax of path.Match plus "{a,b}"
	// alternatives (not nested). "*" does not cross "/".
	Paths []string
	// MaxVersions is how many versions are kept per path
	// (DefaultMaxVersions when zero).
	MaxVersions int
	// MaxFileSize is the largest file kept, in bytes; larger files are
	// skipped with ErrTooLarge (DefaultMaxFileSize when zero).
	MaxFileSize int64
	// MaxTotalSize bounds the bytes of all blobs (DefaultMaxTotalSize when
	// zero).
	MaxTotalSize int64
}

// Version is one snapshot of a path.
type Version struct {
	// Hash is the SHA-256 of the content, in hex (regular files only).
	Hash string `json:"hash,omitempty"`
	// Link is the target of a symbolic link (symbolic links only).
	Link string `json:"link,omitempty"`
	// Mode holds the permission bits with setuid, setgid and sticky
	// (mode & 07777).
	Mode uint32 `json:"mode"`
	// UID and GID are the owner.
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// Size is the content's length in bytes (a link's: its target's length).
	Size int64 `json:"size"`
	// Taken is when the snapshot was taken.
	Taken time.Time `json:"taken"`
	// Absent is set when the path did not exist: restoring it removes
	// whatever is there.
	Absent bool `json:"absent,omitempty"`
}

// Kind is what a Version or State holds.
func (v Version) Kind() Kind {
	switch {
	case v.Absent:
		return KindAbsent
	case v.Link != "":
		return KindSymlink
	default:
		return KindFile
	}
}

// state is the State the path has when this version is in place.
func (v Version) state() State {
	return State{Kind: v.Kind(), Size: v.Size, Hash: v.Hash, Link: v.Link, Mode: v.Mode, UID: v.UID, GID: v.GID}
}

// Report says what TakeAll did with each path, sorted by path.
type Report struct {
	// Taken are the paths that got a new version (including a new "absent"
	// version for a kept path that disappeared).
	Taken []string
	// Unchanged are the paths whose latest version still holds.
	Unchanged []string
	// Skipped are the paths not kept, each with its reason.
	Skipped []Skip
}

// Skip is a path TakeAll could not keep.
type Skip struct {
	// Path is the path as seen from the root.
	Path string
	// Err is the reason (errors.Is with ErrTooLarge, ErrNotRegular,
	// ErrSymlinkDir, ErrStoreFull, or an I/O error).
	Err error
}

// index is the content of index.json.
type index struct {
	// Format is indexFormat.
	Format int `json:"format"`
	// Paths maps each path to its versions, oldest first.
	Paths map[string][]Version `json:"paths"`
	// Swept maps each pattern to the time TakeAll last listed it: a path it
	// covers that has no version was absent then.
	Swept map[string]time.Time `json:"swept,omitempty"`
	// Unkept maps the paths whose last snapshot was skipped to the reason.
	Unkept map[string]string `json:"unkept,omitempty"`
}

// Store keeps snapshots. Its methods are safe for concurrent use.
type Store struct {
	dir      string
	root     string
	patterns []string // Options.Paths as given, in order
	globs    []string // the patterns with their alternatives expanded
	maxVers  int
	maxFile  int64
	maxTotal int64

	mu     sync.Mutex
	lock   *os.File
	idx    index
	blobs  map[string]int64 // hash → size of every blob on disk
	total  int64            // sum of blobs
	damage error
	now    func() time.Time
}

// Open opens or creates the store in dir. A damaged index is set aside as
// index.json.damaged and the store starts empty, keeping the blobs; Damage
// reports it. Only one Store may hold dir at a time (ErrInUse).
func Open(dir string, opts Options) (*Store, error) {
	s := &Store{
		dir:      dir,
		root:     opts.Root,
		patterns: opts.Paths,
		maxVers:  opts.MaxVersions,
		maxFile:  opts.MaxFileSize,
		maxTotal: opts.MaxTotalSize,
		blobs:    map[string]int64{},
		now:      func() time.Time { return time.Now().UTC() },
	}
	if s.root == "" {
		s.root = "/"
	}
	if !filepath.IsAbs(s.root) {
		return nil, fmt.Errorf("open snapshot store: root %q is not an absolute path", s.root)
	}
	s.root = filepath.Clean(s.root)
	if len(s.patterns) == 0 {
		s.patterns = DefaultPaths()
	}
	for _, p := range s.patterns {
		if !path.IsAbs(p) {
			return nil, fmt.Errorf("open snapshot store: pattern %q is not an absolute path", p)
		}
		for _, g := range expandBraces(p) {
			if _, err := path.Match(g, "/"); err != nil {
				return nil, fmt.Errorf("open snapshot store: pattern %q: %w", p, err)
			}
			s.globs = append(s.globs, g)
		}
	}
	switch {
	case s.maxVers < 0, s.maxFile < 0, s.maxTotal < 0:
		return nil, fmt.Errorf("open snapshot store: negative limit (versions %d, file size %d, total size %d)", s.maxVers, s.maxFile, s.maxTotal)
	}
	if s.maxVers == 0 {
		s.maxVers = DefaultMaxVersions
	}
	if s.maxFile == 0 {
		s.maxFile = DefaultMaxFileSize
	}
	if s.maxTotal == 0 {
		s.maxTotal = DefaultMaxTotalSize
	}

	if err := os.MkdirAll(filepath.Join(dir, "blobs"), 0o700); err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("open snapshot store %s: %w", dir, ErrInUse)
		}
		return nil, fmt.Errorf("open snapshot store %s: lock: %w", dir, err)
	}
	s.lock = lock
	if err := s.scanBlobs(); err != nil {
		s.Close()
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	if err := s.load(); err != nil {
		s.Close()
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	return s, nil
}

// Close releases the store's directory. The Store must not be used after.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close() // closing the descriptor drops the flock
	s.lock = nil
	if err != nil {
		return fmt.Errorf("close snapshot store: %w", err)
	}
	return nil
}

// Damage reports why the index found at Open could not be used (wrapping
// ErrIndexDamaged), or nil when it was read whole or did not exist.
func (s *Store) Damage() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.damage
}

// LastSweep returns when TakeAll last ran (zero when it never has): a store
// with no baseline yet needs one.
func (s *Store) LastSweep() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last time.Time
	for _, t := range s.idx.Swept {
		if t.After(last) {
			last = t
		}
	}
	return last
}

// Patterns returns the patterns the store keeps, as configured.
func (s *Store) Patterns() []string {
	return slices.Clone(s.patterns)
}

// Covers reports whether path matches one of the store's patterns.
func (s *Store) Covers(p string) bool {
	return s.coveringPattern(p) != ""
}

// Versions returns the versions kept for path, oldest first (nil when none).
func (s *Store) Versions(p string) []Version {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.idx.Paths[path.Clean(p)])
}

// Known reports whether Restore has a known-good state to put back for
// path: a version, or a TakeAll since which the path was never seen
// (restoring it removes the file), and the last snapshot was not skipped.
func (s *Store) Known(p string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.latest(path.Clean(p))
	return err == nil
}

// latest returns the state Restore puts back for the clean path p.
func (s *Store) latest(p string) (Version, error) {
	if reason, ok := s.idx.Unkept[p]; ok {
		return Version{}, fmt.Errorf("%w (%s)", ErrNotKept, reason)
	}
	if vs := s.idx.Paths[p]; len(vs) > 0 {
		return vs[len(vs)-1], nil
	}
	// A path a sweep covered but never saw was absent at that sweep.
	var swept time.Time
	for _, pat := range s.patterns {
		t, ok := s.idx.Swept[pat]
		if !ok || !matchAny(expandBraces(pat), p) {
			continue
		}
		if t.After(swept) {
			swept = t
		}
	}
	if swept.IsZero() {
		return Version{}, ErrNoSnapshot
	}
	return Version{Absent: true, Taken: swept}, nil
}

// coveringPattern returns the first pattern that matches p, or "".
func (s *Store) coveringPattern(p string) string {
	for _, pat := range s.patterns {
		if matchAny(expandBraces(pat), p) {
			return pat
		}
	}
	return ""
}

// checkPath cleans p and checks that it is absolute and covered.
func (s *Store) checkPath(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("%q is not an absolute path", p)
	}
	p = path.Clean(p)
	if p == "/" {
		return "", fmt.Errorf("%s: %w", p, ErrNotCovered)
	}
	if !s.Covers(p) {
		return "", fmt.Errorf("%s: %w", p, ErrNotCovered)
	}
	return p, nil
}

func matchAny(globs []string, p string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, p); ok {
			return true
		}
	}
	return false
}

// expandBraces expands "{a,b}" alternatives: "/etc/cron.{daily,weekly}/*"
// gives "/etc/cron.daily/*" and "/etc/cron.weekly/*". Braces do not nest.
func expandBraces(p string) []string {
	i := strings.IndexByte(p, '{')
	if i < 0 {
		return []string{p}
	}
	j := strings.IndexByte(p[i:], '}')
	if j < 0 {
		return []string{p}
	}
	var out []string
	for _, alt := range strings.Split(p[i+1:i+j], ",") {
		out = append(out, expandBraces(p[:i]+alt+p[i+j+1:])...)
	}
	return out
}

// load reads index.json, setting a damaged one aside.
func (s *Store) load() error {
	name := filepath.Join(s.dir, "index.json")
	s.idx = newIndex()
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	var idx index
	if err := json.Unmarshal(data, &idx); err != nil {
		return s.setAside(name, err)
	}
	if err := idx.validate(); err != nil {
		return s.setAside(name, err)
	}
	if idx.Paths == nil {
		idx.Paths = map[string][]Version{}
	}
	if idx.Swept == nil {
		idx.Swept = map[string]time.Time{}
	}
	if idx.Unkept == nil {
		idx.Unkept = map[string]string{}
	}
	s.idx = idx
	// A lower MaxVersions than the index was written with applies now.
	pruned := false
	for p, vs := range s.idx.Paths {
		if len(vs) == 0 {
			delete(s.idx.Paths, p)
			continue
		}
		if s.prune(p) {
			pruned = true
		}
	}
	if pruned {
		return s.save()
	}
	return nil
}

// setAside renames a damaged index out of the way and starts empty.
func (s *Store) setAside(name string, cause error) error {
	aside := name + ".damaged"
	if err := os.Rename(name, aside); err != nil {
		return fmt.Errorf("set damaged index aside: %w", err)
	}
	s.damage = fmt.Errorf("%w: %v; kept as %s, starting empty (blobs kept)", ErrIndexDamaged, cause, aside)
	return s.save()
}

func newIndex() index {
	return index{
		Format: indexFormat,
		Paths:  map[string][]Version{},
		Swept:  map[string]time.Time{},
		Unkept: map[string]string{},
	}
}

// validate checks what the rest of the package relies on.
func (x *index) validate() error {
	if x.Format != indexFormat {
		return fmt.Errorf("format %d, want %d", x.Format, indexFormat)
	}
	for p, vs := range x.Paths {
		if !path.IsAbs(p) || path.Clean(p) != p {
			return fmt.Errorf("path %q is not clean and absolute", p)
		}
		for i, v := range vs {
			kinds := 0
			if v.Absent {
				kinds++
			}
			if v.Link != "" {
				kinds++
			}
			if v.Hash != "" {
				kinds++
				if !validHash(v.Hash) {
					return fmt.Errorf("%s version %d: hash %q is not a SHA-256", p, i, v.Hash)
				}
			}
			if kinds != 1 {
				return fmt.Errorf("%s version %d: want exactly one of hash, link, absent", p, i)
			}
			if v.Mode > 0o7777 {
				return fmt.Errorf("%s version %d: mode %o out of range", p, i, v.Mode)
			}
		}
	}
	return nil
}

func validHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil && strings.ToLower(h) == h
}

// save writes index.json.
func (s *Store) save() error {
	data, err := json.MarshalIndent(&s.idx, "", "  ")
	if err != nil {
		return fmt.Errorf("encode index: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(s.dir, "index.json"), data, 0o600); err != nil {
		return fmt.Errorf("write index: %w", err)
	}
	return nil
}

// blobPath is where the blob with this hash lives.
func (s *Store) blobPath(hash string) string {
	return filepath.Join(s.dir, "blobs", hash[:2], hash)
}

// scanBlobs counts the blobs on disk and removes temporaries a crash left.
func (s *Store) scanBlobs() error {
	top := filepath.Join(s.dir, "blobs")
	subs, err := os.ReadDir(top)
	if err != nil {
		return fmt.Errorf("list blobs: %w", err)
	}
	for _, sub := range subs {
		if !sub.IsDir() {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(top, sub.Name()))
		if err != nil {
			return fmt.Errorf("list blobs: %w", err)
		}
		for _, e := range entries {
			name := filepath.Join(top, sub.Name(), e.Name())
			if strings.HasPrefix(e.Name(), ".") {
				os.Remove(name) // an unfinished atomicfile temporary
				continue
			}
			if !validHash(e.Name()) || !e.Type().IsRegular() {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue
			}
			s.blobs[e.Name()] = info.Size()
			s.total += info.Size()
		}
	}
	return nil
}

// referenced returns the hashes some version points to.
func (s *Store) referenced() map[string]bool {
	refs := map[string]bool{}
	for _, vs := range s.idx.Paths {
		for _, v := range vs {
			if v.Hash != "" {
				refs[v.Hash] = true
			}
		}
	}
	return refs
}

// prune drops the oldest versions of p beyond MaxVersions and removes the
// blobs no version points to any more. It reports whether it dropped any.
func (s *Store) prune(p string) bool {
	vs := s.idx.Paths[p]
	if len(vs) <= s.maxVers {
		return false
	}
	drop := vs[:len(vs)-s.maxVers]
	s.idx.Paths[p] = slices.Clone(vs[len(vs)-s.maxVers:])
	s.dropBlobs(drop)
	return true
}

// dropBlobs removes the blobs of the dropped versions that nothing else
// references. Blobs the index never referenced (left by a damaged index)
// are not touched here; makeRoom takes them when space runs out.
func (s *Store) dropBlobs(dropped []Version) {
	refs := s.referenced()
	for _, v := range dropped {
		if v.Hash == "" || refs[v.Hash] {
			continue
		}
		s.removeBlob(v.Hash)
	}
}

func (s *Store) removeBlob(hash string) {
	size, ok := s.blobs[hash]
	if !ok {
		return
	}
	if err := os.Remove(s.blobPath(hash)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return // still on disk, still counted
	}
	delete(s.blobs, hash)
	s.total -= size
}

// makeRoom frees space for n more bytes of blobs: first blobs no version
// references, then the oldest versions that are not the latest of their
// path.
func (s *Store) makeRoom(n int64) error {
	if s.total+n <= s.maxTotal {
		return nil
	}
	// What the latest versions hold cannot be freed: fail before dropping
	// anything when even the rest would not make room.
	var pinned int64
	seen := map[string]bool{}
	for _, vs := range s.idx.Paths {
		if h := vs[len(vs)-1].Hash; h != "" && !seen[h] {
			seen[h] = true
			pinned += s.blobs[h]
		}
	}
	if pinned+n > s.maxTotal {
		return fmt.Errorf("%w: %d bytes more would exceed %d", ErrStoreFull, n, s.maxTotal)
	}
	refs := s.referenced()
	var orphans []string
	for h := range s.blobs {
		if !refs[h] {
			orphans = append(orphans, h)
		}
	}
	sort.Strings(orphans)
	for _, h := range orphans {
		if s.total+n <= s.maxTotal {
			return nil
		}
		s.removeBlob(h)
	}
	for s.total+n > s.maxTotal {
		// The oldest version that is not the latest of its path.
		var oldest string
		var when time.Time
		for p, vs := range s.idx.Paths {
			if len(vs) < 2 {
				continue
			}
			if oldest == "" || vs[0].Taken.Before(when) || (vs[0].Taken.Equal(when) && p < oldest) {
				oldest, when = p, vs[0].Taken
			}
		}
		if oldest == "" {
			return fmt.Errorf("%w: %d bytes more would exceed %d", ErrStoreFull, n, s.maxTotal)
		}
		vs := s.idx.Paths[oldest]
		s.idx.Paths[oldest] = slices.Clone(vs[1:])
		s.dropBlobs(vs[:1])
	}
	return nil
}
