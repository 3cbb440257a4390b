package feedback

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"google.golang.org/protobuf/encoding/protojson"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// JournalName is the journal's file name in the agent's state directory.
const JournalName = "incidents.jsonl"

// DefaultJournalBytes is the size at which the journal starts a new file,
// keeping one previous file (so at most twice this on disk).
const DefaultJournalBytes = 16 << 20

// Journal is the agent's local record of the incidents it built, one JSON
// line per revision, so that an incident can be labelled on the host by id.
// It is safe for concurrent use.
type Journal struct {
	// Path is the journal file; Path+".1" holds the previous one.
	Path string
	// MaxBytes is the size at which the journal rotates (0: DefaultJournalBytes).
	MaxBytes int64

	mu sync.Mutex
}

// Add appends one incident revision.
func (j *Journal) Add(inc *vigilv1.Incident) error {
	b, err := protojson.Marshal(inc)
	if err != nil {
		return fmt.Errorf("encode incident %s: %w", inc.GetId(), err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	max := j.MaxBytes
	if max <= 0 {
		max = DefaultJournalBytes
	}
	if st, err := os.Stat(j.Path); err == nil && st.Size()+int64(len(b)) >= max {
		if err := os.Rename(j.Path, j.Path+".1"); err != nil {
			return fmt.Errorf("rotate incident journal: %w", err)
		}
	}
	f, err := os.OpenFile(j.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open incident journal: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("write incident journal: %w", err)
	}
	return nil
}

// ErrUnknownIncident is returned by Find for an id the journal lacks.
var ErrUnknownIncident = errors.New("no such incident in the journal")

// Find returns the latest revision of incident id.
func (j *Journal) Find(id string) (*vigilv1.Incident, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var found *vigilv1.Incident
	for _, p := range []string{j.Path + ".1", j.Path} {
		inc, err := findIn(p, id)
		if err != nil {
			return nil, err
		}
		if inc != nil {
			found = inc
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %s (journal %s)", ErrUnknownIncident, id, j.Path)
	}
	return found, nil
}

// findIn returns the last revision of incident id in one journal file.
func findIn(path, id string) (*vigilv1.Incident, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open incident journal: %w", err)
	}
	defer f.Close()
	var found *vigilv1.Incident
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64<<10), 4<<20)
	quoted := []byte(`"` + id + `"`)
	for line := 1; s.Scan(); line++ {
		if !bytes.Contains(s.Bytes(), quoted) {
			continue
		}
		inc := &vigilv1.Incident{}
		if err := protojson.Unmarshal(s.Bytes(), inc); err != nil {
			return nil, fmt.Errorf("incident journal %s line %d: %w", path, line, err)
		}
		if inc.GetId() == id && (found == nil || inc.GetRevision() >= found.GetRevision()) {
			found = inc
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read incident journal %s: %w", path, err)
	}
	return found, nil
}

// FileState is what Changed compares to notice that a file was replaced or
// written: its inode, size and modification time.
type FileState struct {
	ino, size, mtime int64
}

// Changed reports whether the file at path differs from the state last
// seen, updating it. A missing file has the zero state.
func (s *FileState) Changed(path string) bool {
	var now FileState
	if st, err := os.Stat(path); err == nil {
		now = FileState{size: st.Size(), mtime: st.ModTime().UnixNano()}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			now.ino = int64(sys.Ino)
		}
	}
	changed := now != *s
	*s = now
	return changed
}
