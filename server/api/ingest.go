package api

import (
	"errors"
	"log/slog"
	"sync"

	"google.golang.org/grpc"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/store"
)

// maxInFlight bounds the incident reports of one stream being stored at
// once. When it is reached the stream reads nothing more until the oldest
// is answered, and gRPC's flow control holds the agent back.
const maxInFlight = 256

// ingest stores the incident reports of one Connect stream while the
// stream goes on reading, so that the store can commit many of them (and
// of other streams) in one transaction. Order and durability stay as if
// each were stored in turn: a report is handed to the store only once the
// one before it has its place in the store's order (store.WithQueued), and
// the answers (ack or reject) go out in the order of the reports, each ack
// once its incident is committed. With a store that writes within Put the
// reports are stored one after the other, as before.
type ingest struct {
	a      *AgentService
	stream grpc.BidiStreamingServer[vigilv1.AgentMessage, vigilv1.ServerMessage]
	log    *slog.Logger
	hostID string

	queue []*inflight     // reports not answered yet, oldest first
	done  chan *inflight  // reports whose Put has returned
	last  <-chan struct{} // closed once the newest report's Put is queued
}

// inflight is one report being stored.
type inflight struct {
	seq    uint64
	inc    *vigilv1.Incident
	queued chan struct{} // closed once its Put has its place in the store's order

	finished bool
	rejected error // set: refused before the store
	cursor   uint64
	inserted bool
	err      error
}

func newIngest(a *AgentService, stream grpc.BidiStreamingServer[vigilv1.AgentMessage, vigilv1.ServerMessage], log *slog.Logger, hostID string) *ingest {
	first := make(chan struct{})
	close(first)
	return &ingest{a: a, stream: stream, log: log, hostID: hostID, done: make(chan *inflight, maxInFlight), last: first}
}

// full reports whether the stream must stop reading until an answer.
func (in *ingest) full() bool { return len(in.queue) >= maxInFlight }

// add starts storing one report. It returns an error only when the stream
// must end.
func (in *ingest) add(rep *vigilv1.IncidentReport) error {
	item := &inflight{seq: rep.GetSequence(), inc: rep.GetIncident(), queued: make(chan struct{})}
	in.queue = append(in.queue, item)
	if err := checkReport(in.hostID, item.inc); err != nil {
		item.finished, item.rejected = true, err
		close(item.queued)
		return in.flush()
	}
	if item.inc.GetHostId() == "" {
		item.inc.HostId = in.hostID
	}
	prev := in.last
	in.last = item.queued
	ctx := in.stream.Context()
	go func() {
		var once sync.Once
		queued := func() { once.Do(func() { close(item.queued) }) }
		select {
		case <-prev:
		case <-ctx.Done():
		}
		item.cursor, item.inserted, item.err = in.a.store.Put(store.WithQueued(ctx, queued), item.inc)
		queued()
		in.done <- item
	}()
	return nil
}

// finish takes a report whose Put has returned and sends the answers that
// are due. It returns an error only when the stream must end.
func (in *ingest) finish(item *inflight) error {
	item.finished = true
	return in.flush()
}

// flush answers the oldest reports as long as they are finished.
func (in *ingest) flush() error {
	for len(in.queue) > 0 && in.queue[0].finished {
		item := in.queue[0]
		in.queue[0] = nil
		in.queue = in.queue[1:]
		if err := in.answer(item); err != nil {
			return err
		}
	}
	return nil
}

// answer acknowledges or rejects one report; a store failure ends the
// stream.
func (in *ingest) answer(item *inflight) error {
	ctx := in.stream.Context()
	switch {
	case item.rejected != nil:
		return reject(in.stream, in.log, item.seq, item.inc, item.rejected)
	case errors.Is(item.err, store.ErrInvalid):
		return reject(in.stream, in.log, item.seq, item.inc, item.err)
	case item.err != nil:
		in.log.Error("store incident", "sequence", item.seq, "incident_id", item.inc.GetId(), "error", item.err)
		return storeError(ctx, "store incident "+item.inc.GetId(), item.err)
	}
	in.log.Debug("incident stored", "sequence", item.seq, "incident_id", item.inc.GetId(), "cursor", item.cursor, "duplicate", !item.inserted)
	return in.stream.Send(&vigilv1.ServerMessage{Msg: &vigilv1.ServerMessage_Ack{Ack: &vigilv1.Ack{
		Sequence:   item.seq,
		IncidentId: item.inc.GetId(),
		Cursor:     item.cursor,
	}}})
}

// drain waits for every report being stored and answers them; it returns
// early, with the stream's error, when the stream ends first.
func (in *ingest) drain() error {
	for len(in.queue) > 0 {
		select {
		case item := <-in.done:
			if err := in.finish(item); err != nil {
				return err
			}
		case <-in.stream.Context().Done():
			return in.stream.Context().Err()
		}
	}
	return nil
}
