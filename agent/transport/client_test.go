package transport

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/app"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startServer(t *testing.T, addr, db string) *app.Server {
	t.Helper()
	srv, err := app.Start(app.Config{Listen: addr, DBPath: db})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func stopServer(t *testing.T, srv *app.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// storedIDs lists every incident id the server holds, oldest first.
func storedIDs(t *testing.T, srv *app.Server) []string {
	t.Helper()
	incs, err := srv.Store().After(context.Background(), nil, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(incs))
	for i, inc := range incs {
		ids[i] = inc.Id
	}
	return ids
}

// TestIncidentsSurviveServerDowntime queues incidents while the server is
// down, starts it, restarts it in the middle of a second batch, and checks
// every incident is stored exactly once, in the order it was sent.
func TestIncidentsSurviveServerDowntime(t *testing.T) {
	addr, db := freeAddr(t), filepath.Join(t.TempDir(), "server.db")
	c := &Client{Addr: addr, Hello: &vigilv1.Hello{HostId: "host-a", Hostname: "a"}, HeartbeatInterval: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	var sent []string
	send := func(n int) {
		for range n {
			inc := storetest.NewIncident("host-a", "exec-from-tmp", vigilv1.Severity_SEVERITY_MEDIUM)
			if err := c.Send(inc); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, inc.Id)
		}
	}

	// Nothing listens yet: the incidents wait.
	send(50)
	time.Sleep(300 * time.Millisecond)
	if st := c.Stats(); st.Connected || st.Pending != 50 {
		t.Fatalf("with no server: %+v, want 50 pending, not connected", st)
	}

	srv := startServer(t, addr, db)
	waitUntil(t, "the first 50 to be acknowledged", func() bool { return c.Stats().Pending == 0 })

	// Restart the server while a second batch is on its way.
	send(200)
	stopServer(t, srv)
	send(50)
	srv = startServer(t, addr, db)
	defer stopServer(t, srv)
	waitUntil(t, "all 300 to be acknowledged", func() bool { return c.Stats().Pending == 0 })

	got := storedIDs(t, srv)
	if len(got) != len(sent) {
		t.Fatalf("stored %d incidents, sent %d", len(got), len(sent))
	}
	for i := range sent {
		if got[i] != sent[i] {
			t.Fatalf("stored incident %d is %s, sent %s: order or identity differs", i, got[i], sent[i])
		}
	}
	if st := c.Stats(); st.Acked != 300 || !st.Connected {
		t.Errorf("stats %+v, want 300 acked and connected", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v after cancel, want nil", err)
	}
}

func TestSendRefusesWhenQueueIsFull(t *testing.T) {
	c := &Client{Addr: freeAddr(t), MaxPending: 2}
	for i := range 2 {
		if err := c.Send(storetest.NewIncident("h", "r", vigilv1.Severity_SEVERITY_LOW)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := c.Send(storetest.NewIncident("h", "r", vigilv1.Severity_SEVERITY_LOW)); err != ErrQueueFull {
		t.Fatalf("third send: %v, want ErrQueueFull", err)
	}
}

func TestRejectedIncidentIsDroppedNotResent(t *testing.T) {
	addr := freeAddr(t)
	srv := startServer(t, addr, filepath.Join(t.TempDir(), "server.db"))
	defer stopServer(t, srv)
	c := &Client{Addr: addr, Hello: &vigilv1.Hello{HostId: "host-a"}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()

	bad := storetest.NewIncident("host-b", "r", vigilv1.Severity_SEVERITY_LOW) // another host's
	good := storetest.NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW)
	for _, inc := range []*vigilv1.Incident{bad, good} {
		if err := c.Send(inc); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "both reports answered", func() bool { return c.Stats().Pending == 0 })
	if st := c.Stats(); st.Acked != 1 || st.Rejected != 1 {
		t.Fatalf("stats %+v, want 1 acked and 1 rejected", st)
	}
	if got := storedIDs(t, srv); len(got) != 1 || got[0] != good.Id {
		t.Fatalf("stored %v, want only %s", got, good.Id)
	}
}

// TestOutboxSurvivesAgentRestart queues incidents while the server is down,
// stops the client (the agent exits), starts a new one on the same outbox
// and checks that it delivers them once the server is up, in order, and
// empties the outbox.
func TestOutboxSurvivesAgentRestart(t *testing.T) {
	addr, outbox := freeAddr(t), filepath.Join(t.TempDir(), "outbox")
	hello := &vigilv1.Hello{HostId: "host-a"}

	first := &Client{Addr: addr, Hello: hello, OutboxDir: outbox}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	var sent []string
	for range 5 {
		inc := storetest.NewIncident("host-a", "exec-from-tmp", vigilv1.Severity_SEVERITY_MEDIUM)
		if err := first.Send(inc); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, inc.Id)
	}
	cancel()
	<-done

	// A broken file beside them is set aside, not fatal; a temporary file
	// of a write the agent died in is removed.
	if err := os.WriteFile(filepath.Join(outbox, "garbage.pb"), []byte("not a protobuf \xff\xff"), 0o600); err != nil {
		t.Fatal(err)
	}
	halfWritten := filepath.Join(outbox, ".0193a000-0000-7000-8000-000000000009.pb.tmp123456")
	if err := os.WriteFile(halfWritten, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}

	second := &Client{Addr: addr, Hello: hello, OutboxDir: outbox}
	n, err := second.Restore()
	if n != 5 || err == nil || !strings.Contains(err.Error(), "garbage.pb set aside as garbage.pb.bad") {
		t.Fatalf("Restore = %d, %v; want 5 and an error naming garbage.pb", n, err)
	}
	if _, err := os.Stat(halfWritten); !os.IsNotExist(err) {
		t.Errorf("half-written outbox file left: %v", err)
	}
	srv := startServer(t, addr, filepath.Join(t.TempDir(), "server.db"))
	defer stopServer(t, srv)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = second.Run(ctx) }()
	waitUntil(t, "the restored incidents to be acknowledged", func() bool { return second.Stats().Pending == 0 })

	if got := storedIDs(t, srv); strings.Join(got, ",") != strings.Join(sent, ",") {
		t.Fatalf("stored %v, want %v", got, sent)
	}
	left, _ := filepath.Glob(filepath.Join(outbox, "*.pb"))
	if len(left) != 0 {
		t.Errorf("outbox still holds %v after every ack", left)
	}
}
