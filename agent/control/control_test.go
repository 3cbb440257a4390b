package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

func TestCallAndServe(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var got Request
	go func() {
		done <- Serve(ctx, dir, func(r Request) Reply {
			got = r
			return RecordReply(&vigilv1.ActionRecord{Id: "a1", Action: r.Action, Target: r.Target, Result: "dry-run"})
		}, nil)
	}()
	path := filepath.Join(dir, SocketName)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v; want mode 0600", st, err)
	}
	req := Request{Op: "respond", Action: "block_source", Target: "addr:203.0.113.7", DryRun: true, TTL: time.Minute, Requester: "operator:alice"}
	reply, err := Call(dir, req, 5*time.Second)
	if err != nil || reply.Error != "" {
		t.Fatalf("Call: %v %q", err, reply.Error)
	}
	rec, err := reply.DecodeRecord()
	if err != nil || rec.GetId() != "a1" || rec.GetAction() != "block_source" || rec.GetTarget() != "addr:203.0.113.7" {
		t.Fatalf("record %v, %v", rec, err)
	}
	if got != req {
		t.Errorf("handler got %+v, want %+v", got, req)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	if _, err := Call(dir, req, time.Second); !errors.Is(err, ErrNoAgent) || !strings.Contains(err.Error(), path) {
		t.Errorf("Call without an agent: %v", err)
	}
}
