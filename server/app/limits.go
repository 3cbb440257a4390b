package app

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// bucket is a token bucket: rate tokens a second, at most burst saved up.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// reserve takes one token and returns how long to wait before using it:
// zero when one was saved up. Tokens may go negative, so callers that wait
// are served in the order they reserved.
func (b *bucket) reserve(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// agentLimiter limits the incident reports of each agent (by the host_id
// of its hello) to a rate. A report over the limit is not rejected: the
// agent drops a rejected report, so the limiter delays reading it instead.
// The report's ack comes later, gRPC's flow control pushes back on the
// agent, and the agent keeps the report pending until it is stored.
type agentLimiter struct {
	rate, burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
}

// newAgentLimiter limits each agent to rate reports a second with bursts
// of burst.
func newAgentLimiter(rate float64, burst int) *agentLimiter {
	return &agentLimiter{rate: rate, burst: float64(max(burst, 1)), buckets: map[string]*bucket{}}
}

// bucket returns host's bucket, full when new. Buckets live as long as the
// server; there is one per host that ever connected.
func (l *agentLimiter) bucket(host string) *bucket {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[host]
	if !ok {
		b = &bucket{rate: l.rate, burst: l.burst, tokens: l.burst, last: time.Now()}
		l.buckets[host] = b
	}
	return b
}

// StreamInterceptor paces the incident reports read from
// AgentService.Connect streams.
func (l *agentLimiter) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if info.FullMethod != vigilv1.AgentService_Connect_FullMethodName {
			return handler(srv, ss)
		}
		return handler(srv, &limitedStream{ServerStream: ss, limiter: l})
	}
}

// limitedStream waits for a token of its agent's bucket before it returns
// an incident report.
type limitedStream struct {
	grpc.ServerStream
	limiter *agentLimiter
	bucket  *bucket // set by the hello
}

func (s *limitedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	msg, ok := m.(*vigilv1.AgentMessage)
	if !ok {
		return nil
	}
	if h := msg.GetHello(); h != nil && s.bucket == nil {
		s.bucket = s.limiter.bucket(h.GetHostId())
	}
	if msg.GetIncident() == nil || s.bucket == nil {
		return nil
	}
	return sleep(s.Context(), s.bucket.reserve(time.Now()))
}

// sleep waits d or until ctx ends, returning ctx's error then.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}
