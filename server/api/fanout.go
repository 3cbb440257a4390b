package api

import (
	"context"
	"sync"

	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/store"
)

// sharedReads lets the incident streams that wake on the same change
// share their reads of the store: streams that follow the same filter
// from the same cursor (every client that keeps up, typically) make one
// After call between them and send the same messages, instead of one
// query and one decoding of every incident per stream.
//
// A read is shared only among streams that took the same Changed channel
// before reading, so that a stream never gets a result older than its own
// wake-up channel: whatever was stored after the shared read began closes
// that channel, and the stream reads again.
type sharedReads struct {
	mu    sync.Mutex
	reads map[readKey]*sharedRead
}

// readKey names one read: the change channel the readers took, the filter
// (its encoding) and the cursor.
type readKey struct {
	changed <-chan struct{}
	filter  string
	after   uint64
	limit   int
}

// sharedRead is one After call and its result, ready once done is closed.
type sharedRead struct {
	done chan struct{}
	incs []*vigilv1.Incident
	err  error
}

// after returns st.After(filter, after, limit), read once for every caller
// that passes the same changed channel (the one it took from st.Changed
// before calling) and arguments while the read runs or after it. The
// incidents returned are shared: callers must not modify them.
func (r *sharedReads) after(ctx context.Context, st store.Store, changed <-chan struct{}, filter *vigilv1.IncidentFilter, after uint64, limit int) ([]*vigilv1.Incident, error) {
	fkey, err := proto.MarshalOptions{Deterministic: true}.Marshal(filter)
	if err != nil {
		return st.After(ctx, filter, after, limit)
	}
	key := readKey{changed: changed, filter: string(fkey), after: after, limit: limit}
	r.mu.Lock()
	if r.reads == nil {
		r.reads = map[readKey]*sharedRead{}
	}
	read, ok := r.reads[key]
	if !ok {
		// Forget the reads of generations that are over: nobody joins them.
		for k := range r.reads {
			select {
			case <-k.changed:
				delete(r.reads, k)
			default:
			}
		}
		read = &sharedRead{done: make(chan struct{})}
		r.reads[key] = read
	}
	r.mu.Unlock()
	if !ok {
		// Read for everyone: one caller going away must not fail the others.
		read.incs, read.err = st.After(context.WithoutCancel(ctx), filter, after, limit)
		if read.err != nil {
			r.mu.Lock()
			delete(r.reads, key) // let the next caller try again
			r.mu.Unlock()
		}
		close(read.done)
	}
	select {
	case <-read.done:
		return read.incs, read.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
