package ocsf_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/ocsf"
)

// counts adds up what a Webhook reports to OnResult.
type counts struct {
	delivered, failed atomic.Int64
}

func (c *counts) observe(lines int, err error) {
	if err != nil {
		c.failed.Add(int64(lines))
	} else {
		c.delivered.Add(int64(lines))
	}
}

func incident(cursor uint64) *vigilv1.Incident {
	return &vigilv1.Incident{Id: "0190a0b0-0000-7000-8000-" + pad(cursor), Cursor: cursor, HostId: "h", Title: "t"}
}

func pad(n uint64) string {
	const digits = "0123456789"
	b := []byte("000000000000")
	for i := len(b) - 1; n > 0; i-- {
		b[i] = digits[n%10]
		n /= 10
	}
	return string(b)
}

// TestWebhookQueueFull drops the oldest findings once the queue is full,
// reports them, and delivers the rest in order after the endpoint
// recovers; Close then has nothing left.
func TestWebhookQueueFull(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	var mu sync.Mutex
	var seqs []uint64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			var f ocsf.Finding
			if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
				t.Error(err)
			}
			mu.Lock()
			seqs = append(seqs, f.Metadata.Sequence)
			mu.Unlock()
		}
	}))
	defer hs.Close()
	u, err := ocsf.ParseWebhookURL(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	var c counts
	w := &ocsf.Webhook{URL: u, Batch: 3, MaxQueue: 5, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, OnResult: c.observe}
	w.Start()
	for i := uint64(1); i <= 8; i++ {
		if err := w.Enqueue(incident(i)); err != nil {
			t.Fatal(err)
		}
	}
	if p := w.Pending(); p != 5 {
		t.Errorf("pending %d, want 5 (the queue's size)", p)
	}
	for c.failed.Load() < 3+3 { // the 3 dropped and one failed batch of 3
		time.Sleep(5 * time.Millisecond)
	}
	failing.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []uint64{4, 5, 6, 7, 8}
	if len(seqs) != len(want) {
		t.Fatalf("delivered %v, want %v", seqs, want)
	}
	for i := range want {
		if seqs[i] != want[i] {
			t.Fatalf("delivered %v, want %v", seqs, want)
		}
	}
	if c.delivered.Load() != 5 {
		t.Errorf("delivered count %d, want 5", c.delivered.Load())
	}
	if err := w.Enqueue(incident(9)); err == nil {
		t.Error("Enqueue after Close succeeded")
	}
}

// TestWebhookCloseGivesUp ends Close when its context does, reporting what
// was never delivered.
func TestWebhookCloseGivesUp(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer hs.Close()
	u, _ := ocsf.ParseWebhookURL(hs.URL)
	var c counts
	w := &ocsf.Webhook{URL: u, MinBackoff: time.Millisecond, OnResult: c.observe}
	w.Start()
	for i := uint64(1); i <= 4; i++ {
		if err := w.Enqueue(incident(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	before := time.Now()
	if err := w.Close(ctx); err == nil {
		t.Fatal("Close delivered to a failing endpoint")
	}
	if d := time.Since(before); d > 2*time.Second {
		t.Errorf("Close took %s after its context ended", d)
	}
	if c.delivered.Load() != 0 || c.failed.Load() < 4+4 {
		t.Errorf("delivered %d, failed %d: want 0 and at least 8 (attempts and the 4 given up)", c.delivered.Load(), c.failed.Load())
	}
}
