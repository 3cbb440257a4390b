package procctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vigil-sensor/vigil/internal/atomicfile"
)

// heldRecord is what a Held remembers on disk, so that an agent started
// again can release the trees an earlier run held.
type heldRecord struct {
	Name  string               `json:"name"`
	Root  int                  `json:"root"`
	Procs map[string]heldSaved `json:"procs"`
}

// heldSaved is one moved process.
type heldSaved struct {
	Start  uint64 `json:"start"`
	PPID   int    `json:"ppid"`
	Origin string `json:"origin"`
}

// recordPath is where a held tree's record lives ("" without a StateDir).
func (q *Quarantine) recordPath(name string) string {
	if q.StateDir == "" {
		return ""
	}
	return filepath.Join(q.StateDir, name+".json")
}

// saveLocked writes h's record; failing to is reported, not fatal.
func (h *Held) saveLocked() error {
	path := h.q.recordPath(h.name)
	if path == "" {
		return nil
	}
	rec := heldRecord{Name: h.name, Root: h.root, Procs: map[string]heldSaved{}}
	for pid, p := range h.procs {
		rec.Procs[fmt.Sprint(pid)] = heldSaved{Start: p.start, PPID: p.ppid, Origin: p.origin}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("record held tree %s: %w", h.name, err)
	}
	if err := os.MkdirAll(h.q.StateDir, 0o700); err != nil {
		return fmt.Errorf("record held tree %s: %w", h.name, err)
	}
	return atomicfile.WriteFile(path, b, 0o600)
}

// forgetLocked removes h's record.
func (h *Held) forgetLocked() {
	if path := h.q.recordPath(h.name); path != "" {
		_ = os.Remove(path)
	}
}

// Adopt returns the trees an earlier run left held: every leaf of the
// quarantine, with where its processes came from when the earlier run
// recorded it (else they are released to the quarantine's parent cgroups,
// up to the root). Records of leaves that are gone are removed.
func (q *Quarantine) Adopt() ([]*Held, error) {
	entries, err := os.ReadDir(q.root)
	if err != nil {
		return nil, fmt.Errorf("adopt held trees: %w", err)
	}
	var out []*Held
	seen := map[string]bool{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		name := e.Name()
		seen[name] = true
		h := &Held{q: q, name: name, dir: filepath.Join(q.root, name), procs: map[int]heldProc{}}
		if path := q.recordPath(name); path != "" {
			if b, err := os.ReadFile(path); err == nil {
				var rec heldRecord
				if err := json.Unmarshal(b, &rec); err == nil {
					h.root = rec.Root
					for pid, p := range rec.Procs {
						var n int
						if _, err := fmt.Sscan(pid, &n); err == nil {
							h.procs[n] = heldProc{start: p.Start, ppid: p.PPID, origin: p.Origin}
						}
					}
				}
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("adopt held tree %s: %w", name, err)
			}
		}
		out = append(out, h)
	}
	if q.StateDir != "" {
		if files, err := os.ReadDir(q.StateDir); err == nil {
			for _, f := range files {
				if name, ok := strings.CutSuffix(f.Name(), ".json"); ok && !seen[name] {
					_ = os.Remove(filepath.Join(q.StateDir, f.Name()))
				}
			}
		}
	}
	return out, nil
}
