package transport

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/vigil-sensor/vigil/internal/atomicfile"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// outboxExt ends the name of every outbox file: <incident id>.pb.
const outboxExt = ".pb"

func (c *Client) outboxPath(id string) string {
	return filepath.Join(c.OutboxDir, id+outboxExt)
}

// saveToOutbox writes inc durably: to a temporary file, synced, then
// renamed into place, so that a crash leaves either the whole incident or
// nothing.
func (c *Client) saveToOutbox(inc *vigilv1.Incident) error {
	id := inc.GetId()
	if id == "" || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("outbox: incident id %q cannot name a file", id)
	}
	b, err := proto.Marshal(inc)
	if err != nil {
		return fmt.Errorf("outbox: encode incident %s: %w", id, err)
	}
	if err := os.MkdirAll(c.OutboxDir, 0o700); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if err := atomicfile.WriteFile(c.outboxPath(id), b, 0o600); err != nil {
		return fmt.Errorf("outbox: incident %s: %w", id, err)
	}
	return nil
}

// Restore queues the incidents left in OutboxDir by an earlier run, oldest
// first (UUIDv7 ids sort by time), and returns how many. Call it before
// Run. A file that cannot be read is renamed to <name>.bad, named in the
// returned error, and the others are still queued.
func (c *Client) Restore() (int, error) {
	if c.OutboxDir == "" {
		return 0, nil
	}
	entries, err := os.ReadDir(c.OutboxDir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read outbox: %w", err)
	}
	var names []string
	for _, e := range entries {
		switch name := e.Name(); {
		case e.IsDir():
		case strings.HasSuffix(name, outboxExt):
			names = append(names, name)
		case strings.HasPrefix(name, ".") && strings.Contains(name, outboxExt+".tmp"):
			// Half-written by a run that died before Send returned: the
			// incident was never promised, and the file is of no use.
			_ = os.Remove(filepath.Join(c.OutboxDir, name))
		}
	}
	slices.Sort(names)

	var bad []error
	var restored []*vigilv1.Incident
	for _, name := range names {
		p := filepath.Join(c.OutboxDir, name)
		b, err := os.ReadFile(p)
		inc := &vigilv1.Incident{}
		if err == nil {
			err = proto.Unmarshal(b, inc)
		}
		if err == nil && inc.GetId()+outboxExt != name {
			err = fmt.Errorf("holds incident %q", inc.GetId())
		}
		if err != nil {
			_ = os.Rename(p, p+".bad")
			bad = append(bad, fmt.Errorf("outbox file %s set aside as %s.bad: %w", name, name, err))
			continue
		}
		restored = append(restored, inc)
	}
	c.mu.Lock()
	c.init()
	for _, inc := range restored {
		c.enqueueLocked(inc)
	}
	c.mu.Unlock()
	return len(restored), errors.Join(bad...)
}
