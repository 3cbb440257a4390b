package api_test

import (
	"testing"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// TestAgentPipelinedReports sends many reports without waiting for acks,
// as the agent does, with a bad one among them: the answers come in the
// order of the reports, each ack names a stored incident, and the cursors
// follow the order the agent sent them in.
func TestAgentPipelinedReports(t *testing.T) {
	e := newEnv(t)
	agent := connect(t, e, "host-a")
	const n = 600
	incs := make([]*vigilv1.Incident, n)
	for i := range incs {
		incs[i] = storetest.NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW)
		if i == 300 {
			incs[i].Id = "not-a-uuid"
		}
		send(t, agent, report(uint64(i+1), incs[i]))
	}
	var last uint64
	for i := range n {
		msg, err := agent.Recv()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if i == 300 {
			if rej := msg.GetReject(); rej == nil || rej.GetSequence() != uint64(i+1) {
				t.Fatalf("answer %d: %v, want the reject of sequence %d", i, msg, i+1)
			}
			continue
		}
		ack := msg.GetAck()
		if ack == nil || ack.GetSequence() != uint64(i+1) || ack.GetIncidentId() != incs[i].GetId() {
			t.Fatalf("answer %d: %v, want the ack of sequence %d", i, msg, i+1)
		}
		if ack.GetCursor() <= last {
			t.Fatalf("ack %d: cursor %d after %d: out of order", i, ack.GetCursor(), last)
		}
		last = ack.GetCursor()
		stored, err := e.store.Get(t.Context(), ack.GetIncidentId())
		if err != nil || stored.GetCursor() != ack.GetCursor() {
			t.Fatalf("ack %d: stored %v, %v; want it at cursor %d", i, stored.GetCursor(), err, ack.GetCursor())
		}
	}
	// Closing the stream still answers everything sent before.
	for i := range 50 {
		send(t, agent, report(uint64(n+i+1), storetest.NewIncident("host-a", "r", vigilv1.Severity_SEVERITY_LOW)))
	}
	if err := agent.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if ack := recvAck(t, agent); ack.GetSequence() != uint64(n+i+1) {
			t.Fatalf("after CloseSend: ack of sequence %d, want %d", ack.GetSequence(), n+i+1)
		}
	}
}
