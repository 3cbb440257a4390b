package fleet_test

import (
	"testing"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/fleet"
)

func TestRegistry(t *testing.T) {
	r := fleet.New()
	if _, ok := r.Get("a"); ok {
		t.Fatal("empty registry knows host a")
	}
	hello := &vigilv1.Hello{HostId: "b", Hostname: "web-1", AgentVersion: "0.1.0"}
	r.Connected(hello, "10.0.0.2:5555")
	r.Connected(&vigilv1.Hello{HostId: "a"}, "10.0.0.1:5555")
	hello.Hostname = "changed after the call"
	r.Heartbeat("b", &vigilv1.Heartbeat{EventsTotal: 42})

	b, ok := r.Get("b")
	if !ok {
		t.Fatal("host b unknown")
	}
	if b.Hello.GetHostname() != "web-1" || b.Peer != "10.0.0.2:5555" || b.Connections != 1 ||
		b.LastHeartbeat.GetEventsTotal() != 42 || b.LastSeen.Before(b.ConnectedAt) {
		t.Errorf("host b = %+v", b)
	}
	b.Hello.Hostname = "caller's copy"
	if again, _ := r.Get("b"); again.Hello.GetHostname() != "web-1" {
		t.Error("Get returned the registry's own Hello")
	}

	r.Disconnected("b")
	r.Disconnected("b") // more disconnects than connects stay at zero
	agents := r.Agents()
	if len(agents) != 2 || agents[0].HostID != "a" || agents[1].HostID != "b" || agents[1].Connections != 0 || agents[0].Connections != 1 {
		t.Errorf("agents = %+v", agents)
	}
}
