// Package sensortest helps kernel tests of the sensor families: it reads a
// loaded sensor in the background and waits for the events a test expects.
package sensortest

import (
	"errors"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/agent/sensor"
)

// Timeout is how long WaitFor waits for an event.
const Timeout = 5 * time.Second

// Collector holds the events read from a sensor, in order; events beyond
// its buffer (65,536) are dropped, as tests wait for a few.
type Collector struct {
	// Events are the decoded events, as sensor.Sensor.Next returns them.
	Events chan any
}

// Collect reads s in the background until the test ends; at cleanup it
// closes s, which ends the reader, and reports a failed close.
func Collect(t *testing.T, s sensor.Sensor) *Collector {
	t.Helper()
	c := &Collector{Events: make(chan any, 1<<16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := s.Next()
			if errors.Is(err, sensor.ErrClosed) {
				return
			}
			if err != nil {
				t.Errorf("next: %v", err)
				return
			}
			select {
			case c.Events <- ev:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		<-done
	})
	return c
}

// WaitFor returns the first event of type *T that match accepts, failing
// the test after Timeout.
func WaitFor[T any](t *testing.T, c *Collector, what string, match func(*T) bool) *T {
	t.Helper()
	deadline := time.After(Timeout)
	for {
		select {
		case ev := <-c.Events:
			if e, ok := ev.(*T); ok && match(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event within %s", what, Timeout)
		}
	}
}
