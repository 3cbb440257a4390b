package app

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/metrics"
	"github.com/vigil-sensor/vigil/server/ocsf"
	"github.com/vigil-sensor/vigil/server/store"
)

// observedStore is the server's store as the handlers see it: every Put is
// counted and timed, and every incident it stores (each new revision) is
// appended to the OCSF file and queued for the OCSF webhook when they are
// configured.
type observedStore struct {
	store.Store
	metrics *metrics.Server
	export  *ocsfFile     // nil: no file export
	webhook *ocsf.Webhook // nil: no webhook export
	log     *slog.Logger
}

// Put implements store.Store.
func (s *observedStore) Put(ctx context.Context, inc *vigilv1.Incident) (uint64, bool, error) {
	start := time.Now()
	cursor, inserted, err := s.Store.Put(ctx, inc)
	s.metrics.ObservePut(time.Since(start), inserted, err)
	if err == nil && inserted && (s.export != nil || s.webhook != nil) {
		s.exportStored(ctx, inc, cursor)
	}
	return cursor, inserted, err
}

// exportStored appends the incident as stored (with its cursor and
// received time) to the OCSF file and queues it for the webhook. A
// failure is logged and counted; it does not fail the Put, since the
// incident is stored. The webhook delivers in the background and counts
// its own results.
func (s *observedStore) exportStored(ctx context.Context, inc *vigilv1.Incident, cursor uint64) {
	stored, err := s.Store.Get(ctx, inc.GetId())
	if err != nil || stored.GetCursor() != cursor {
		// Replaced by a later revision in the meantime, or unreadable:
		// export what was put, at the cursor it got.
		stored = proto.Clone(inc).(*vigilv1.Incident)
		stored.Cursor = cursor
	}
	if s.export != nil {
		err := s.export.write(stored)
		s.metrics.ObserveExport(1, err)
		if err != nil {
			s.log.Error("ocsf export", "incident_id", inc.GetId(), "cursor", cursor, "error", err)
		}
	}
	if s.webhook != nil {
		if err := s.webhook.Enqueue(stored); err != nil {
			s.metrics.ObserveExport(1, err)
			s.log.Error("ocsf webhook", "incident_id", inc.GetId(), "cursor", cursor, "error", err)
		}
	}
}

// ocsfFile appends OCSF findings to a file, one line each.
type ocsfFile struct {
	mu sync.Mutex
	f  *os.File
}

// openOCSF opens (creating it when missing) the file for appending.
func openOCSF(path string) (*ocsfFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	return &ocsfFile{f: f}, nil
}

// write appends one incident's finding.
func (o *ocsfFile) write(inc *vigilv1.Incident) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return ocsf.WriteLine(o.f, inc)
}

// close closes the file.
func (o *ocsfFile) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.f.Close()
}
