package ocsf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// Defaults of a Webhook.
const (
	// DefaultWebhookBatch is the most findings one POST carries.
	DefaultWebhookBatch = 100
	// DefaultWebhookQueue is the most findings a Webhook holds while its
	// endpoint is failing; past it the oldest are dropped.
	DefaultWebhookQueue = 10_000
	// DefaultWebhookTimeout bounds one POST.
	DefaultWebhookTimeout = 10 * time.Second
	// DefaultWebhookMinBackoff is the first wait after a failed POST; it
	// doubles after each failure in a row up to DefaultWebhookMaxBackoff.
	DefaultWebhookMinBackoff = 500 * time.Millisecond
	// DefaultWebhookMaxBackoff is the longest wait between attempts.
	DefaultWebhookMaxBackoff = 30 * time.Second
)

// ErrWebhookClosed is returned by Enqueue after Close.
var ErrWebhookClosed = errors.New("ocsf webhook closed")

// Webhook delivers findings to an HTTP endpoint: each POST carries a batch
// of findings as JSON lines (Content-Type application/x-ndjson), in the
// order they were enqueued. Enqueue never blocks: findings wait in memory
// while a goroutine sends them, and a batch that fails (a network error or
// a status other than 2xx) is sent again, after a backoff that doubles up
// to MaxBackoff, until it is delivered or the Webhook is closed. Delivery
// is at least once: a POST whose answer is lost is sent again, so a
// receiver should deduplicate by finding_info.uid and metadata.sequence.
//
// Configure the exported fields, then call Start once.
type Webhook struct {
	// URL is the endpoint. User information in it (https://user:pw@host/)
	// is sent as HTTP basic authentication and hidden in logs.
	URL *url.URL
	// Client sends the requests; nil means a client with Timeout.
	Client *http.Client
	// Timeout bounds one POST when Client is nil; zero means
	// DefaultWebhookTimeout.
	Timeout time.Duration
	// Batch is the most findings per POST; zero means DefaultWebhookBatch.
	Batch int
	// MaxQueue is the most findings held; zero means DefaultWebhookQueue.
	MaxQueue int
	// MinBackoff and MaxBackoff bound the wait between failed attempts;
	// zero means DefaultWebhookMinBackoff and DefaultWebhookMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives failures and recoveries; nil discards them.
	Logger *slog.Logger
	// OnResult, when set, is told after each POST how many findings it
	// carried and whether it failed, and after each drop how many
	// findings were dropped (with an error).
	OnResult func(lines int, err error)

	mu      sync.Mutex
	queue   []queued
	seq     uint64 // of the latest finding queued
	closed  bool
	once    sync.Once
	wake    chan struct{}
	stop    chan struct{} // closed when the sender should give up retrying
	stopped chan struct{} // closed when the sender has returned
}

// queued is one finding waiting for delivery.
type queued struct {
	seq    uint64
	line   []byte
	id     string
	cursor uint64
}

// Start starts the sender. Call it once, before Enqueue and Close.
func (w *Webhook) Start() {
	if w.Client == nil {
		t := w.Timeout
		if t <= 0 {
			t = DefaultWebhookTimeout
		}
		w.Client = &http.Client{Timeout: t}
	}
	w.wake = make(chan struct{}, 1)
	w.stop = make(chan struct{})
	w.stopped = make(chan struct{})
	go w.run()
}

// Enqueue queues the finding of inc (as stored: with its cursor) for
// delivery. It fails only when the finding cannot be encoded or the
// Webhook is closed. When the queue is full, the oldest finding is
// dropped, logged and reported to OnResult.
func (w *Webhook) Enqueue(inc *vigilv1.Incident) error {
	line, err := Marshal(inc)
	if err != nil {
		return err
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrWebhookClosed
	}
	var dropped *queued
	if len(w.queue) >= w.maxQueue() {
		d := w.queue[0]
		dropped = &d
		w.queue = w.queue[1:]
	}
	w.seq++
	w.queue = append(w.queue, queued{seq: w.seq, line: line, id: inc.GetId(), cursor: inc.GetCursor()})
	w.mu.Unlock()
	if dropped != nil {
		err := fmt.Errorf("webhook queue full (%d findings): dropped the oldest", w.maxQueue())
		w.logger().Error("ocsf webhook", "incident_id", dropped.id, "cursor", dropped.cursor, "error", err)
		w.report(1, err)
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

// Pending is the number of findings not yet delivered.
func (w *Webhook) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// Close stops taking findings and waits, until ctx ends, for the sender to
// deliver what is queued. Findings still queued then are given up, logged
// with their cursors (vigilctl incidents export --after-cursor fills the
// gap) and reported to OnResult; Close returns an error saying how many.
func (w *Webhook) Close(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	select {
	case <-w.stopped:
	case <-ctx.Done():
		w.once.Do(func() { close(w.stop) })
		<-w.stopped
	}
	w.mu.Lock()
	left := w.queue
	w.queue = nil
	w.mu.Unlock()
	if len(left) == 0 {
		return nil
	}
	err := fmt.Errorf("ocsf webhook: %d findings not delivered (cursors %d to %d)", len(left), left[0].cursor, left[len(left)-1].cursor)
	w.logger().Error("ocsf webhook gave up at shutdown", "undelivered", len(left),
		"first_cursor", left[0].cursor, "last_cursor", left[len(left)-1].cursor)
	w.report(len(left), err)
	return err
}

// run sends batches until the Webhook is closed and its queue is empty, or
// stop is closed.
func (w *Webhook) run() {
	defer close(w.stopped)
	minB, maxB := w.MinBackoff, w.MaxBackoff
	if minB <= 0 {
		minB = DefaultWebhookMinBackoff
	}
	if maxB <= 0 {
		maxB = DefaultWebhookMaxBackoff
	}
	backoff := minB
	failing := false
	for {
		batch, closed := w.next()
		if len(batch) == 0 {
			if closed {
				return
			}
			select {
			case <-w.wake:
			case <-w.stop:
				return
			}
			continue
		}
		err := w.post(batch)
		w.report(len(batch), err)
		if err == nil {
			// Take the batch off the queue: what is left of it at the
			// front, since a full queue may have dropped some meanwhile.
			last := batch[len(batch)-1].seq
			w.mu.Lock()
			for len(w.queue) > 0 && w.queue[0].seq <= last {
				w.queue = w.queue[1:]
			}
			w.mu.Unlock()
			if failing {
				w.logger().Info("ocsf webhook delivering again", "url", w.URL.Redacted())
				failing = false
			}
			backoff = minB
			continue
		}
		w.logger().Error("ocsf webhook", "url", w.URL.Redacted(), "findings", len(batch),
			"first_cursor", batch[0].cursor, "retry_in", backoff, "error", err)
		failing = true
		select {
		case <-time.After(backoff):
		case <-w.stop:
			return
		}
		backoff = min(2*backoff, maxB)
	}
}

// next returns the oldest queued findings, at most Batch, without taking
// them off the queue, and whether the Webhook is closed.
func (w *Webhook) next() ([]queued, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.Batch
	if n <= 0 {
		n = DefaultWebhookBatch
	}
	n = min(n, len(w.queue))
	return append([]queued(nil), w.queue[:n]...), w.closed
}

// post sends one batch and returns an error unless the endpoint answered
// 2xx.
func (w *Webhook) post(batch []queued) error {
	var body bytes.Buffer
	for _, q := range batch {
		body.Write(q.line)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL.String(), &body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("User-Agent", "vigil-server")
	resp, err := w.Client.Do(req)
	if err != nil {
		return fmt.Errorf("post %d findings: %w", len(batch), err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post %d findings: %s: %q", len(batch), resp.Status, bytes.TrimSpace(snippet))
	}
	return nil
}

func (w *Webhook) maxQueue() int {
	if w.MaxQueue <= 0 {
		return DefaultWebhookQueue
	}
	return w.MaxQueue
}

func (w *Webhook) report(lines int, err error) {
	if w.OnResult != nil && lines > 0 {
		w.OnResult(lines, err)
	}
}

func (w *Webhook) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}

// ParseWebhookURL checks that raw is an absolute http or https URL.
func ParseWebhookURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("webhook url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook url %q: want http:// or https:// and a host", u.Redacted())
	}
	return u, nil
}
