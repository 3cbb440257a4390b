package grpcserver_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vigil-sensor/vigil/server/grpcserver"
)

func TestListenAddressInUse(t *testing.T) {
	lis, err := grpcserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	addr := lis.Addr().String()
	_, err = grpcserver.Listen(addr)
	want := "listen on " + addr + ": address already in use (is another vigil-server running?): "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("second Listen = %v, want prefix %q", err, want)
	}
}

func TestServeAndStop(t *testing.T) {
	srv := grpcserver.New()
	lis, err := grpcserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check: %v", err)
	}

	// A stream that never ends makes the graceful stop time out and fall
	// back to closing connections.
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer stopCancel()
	start := time.Now()
	if err := srv.Stop(stopCtx); err == nil {
		t.Error("Stop with an open stream returned nil, want the timeout")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stop took %v", d)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want nil after Stop", err)
	}
}
