package api_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

func TestUpdateIncident(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	inc := putN(t, e.store, 1, "host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)[0]

	got, err := e.incs.UpdateIncident(ctx, &vigilv1.UpdateIncidentRequest{
		Id: inc.GetId(), Status: vigilv1.TriageStatus_TRIAGE_STATUS_ACKNOWLEDGED, Note: "looking", Author: "alice",
	})
	if err != nil {
		t.Fatalf("UpdateIncident: %v", err)
	}
	tr := got.GetTriage()
	if tr.GetStatus() != vigilv1.TriageStatus_TRIAGE_STATUS_ACKNOWLEDGED || tr.GetLabel() != vigilv1.Label_LABEL_UNLABELLED ||
		len(tr.GetNotes()) != 1 || tr.GetNotes()[0].GetText() != "looking" || tr.GetNotes()[0].GetAuthor() != "alice" ||
		tr.GetUpdatedTime() == nil || tr.GetLabelTime() != nil {
		t.Errorf("triage after first update = %v", tr)
	}
	if got.GetCursor() <= inc.GetCursor() {
		t.Errorf("cursor %d after update, want > %d", got.GetCursor(), inc.GetCursor())
	}

	got, err = e.incs.UpdateIncident(ctx, &vigilv1.UpdateIncidentRequest{
		Id: inc.GetId(), Label: vigilv1.Label_LABEL_MALICIOUS, Note: "confirmed", Author: "bob",
	})
	if err != nil {
		t.Fatalf("UpdateIncident: %v", err)
	}
	tr = got.GetTriage()
	if tr.GetStatus() != vigilv1.TriageStatus_TRIAGE_STATUS_ACKNOWLEDGED || tr.GetLabel() != vigilv1.Label_LABEL_MALICIOUS ||
		tr.GetLabelAuthor() != "bob" || tr.GetLabelTime() == nil || len(tr.GetNotes()) != 2 || tr.GetNotes()[1].GetText() != "confirmed" {
		t.Errorf("triage after second update = %v", tr)
	}
	read, err := e.incs.GetIncident(ctx, &vigilv1.GetIncidentRequest{Id: inc.GetId()})
	if err != nil || !proto.Equal(read, got) {
		t.Errorf("GetIncident after update = %v, %v; want %v", read, err, got)
	}
	list, err := e.incs.ListIncidents(ctx, &vigilv1.ListIncidentsRequest{Filter: &vigilv1.IncidentFilter{Label: vigilv1.Label_LABEL_MALICIOUS}})
	if err != nil || len(list.GetIncidents()) != 1 {
		t.Errorf("ListIncidents label MALICIOUS = %d incidents, %v; want 1", len(list.GetIncidents()), err)
	}
}

func TestUpdateIncidentErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	inc := putN(t, e.store, 1, "host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)[0]
	tests := []struct {
		name string
		req  *vigilv1.UpdateIncidentRequest
		code codes.Code
		msg  string
	}{
		{"unknown id", &vigilv1.UpdateIncidentRequest{Id: storetest.NewID(), Note: "x"}, codes.NotFound, "not found"},
		{"malformed id", &vigilv1.UpdateIncidentRequest{Id: "nope", Note: "x"}, codes.NotFound, "not found"},
		{"empty id", &vigilv1.UpdateIncidentRequest{Note: "x"}, codes.InvalidArgument, "id is empty"},
		{"unknown status", &vigilv1.UpdateIncidentRequest{Id: inc.GetId(), Status: 9}, codes.InvalidArgument, "status: unknown value 9"},
		{"unknown label", &vigilv1.UpdateIncidentRequest{Id: inc.GetId(), Label: -1}, codes.InvalidArgument, "label: unknown value -1"},
		{"long note", &vigilv1.UpdateIncidentRequest{Id: inc.GetId(), Note: strings.Repeat("x", 4097)}, codes.InvalidArgument, "note is 4097 bytes"},
		{"long author", &vigilv1.UpdateIncidentRequest{Id: inc.GetId(), Note: "x", Author: strings.Repeat("a", 257)}, codes.InvalidArgument, "author is 257 bytes"},
		{"nothing", &vigilv1.UpdateIncidentRequest{Id: inc.GetId(), Author: "alice"}, codes.InvalidArgument, "nothing to update"},
	}
	for _, tt := range tests {
		_, err := e.incs.UpdateIncident(ctx, tt.req)
		if st, _ := status.FromError(err); st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
			t.Errorf("%s: error = %v, want %v containing %q", tt.name, err, tt.code, tt.msg)
		}
	}
	// A note of exactly 4 KiB is fine, and nothing failed changed anything.
	got, err := e.incs.UpdateIncident(ctx, &vigilv1.UpdateIncidentRequest{Id: inc.GetId(), Note: strings.Repeat("x", 4096)})
	if err != nil || len(got.GetTriage().GetNotes()) != 1 || got.GetTriage().GetStatus() != vigilv1.TriageStatus_TRIAGE_STATUS_OPEN {
		t.Errorf("4 KiB note: %v, %v", got.GetTriage(), err)
	}
}

// TestTriageSurvivesAgentRevision has an agent send a new revision of an
// incident an analyst triaged: the report replaces the incident and keeps
// the triage, and a stream sees both changes.
func TestTriageSurvivesAgentRevision(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	stream := connect(t, e, "host-a")
	inc := storetest.NewIncident("host-a", "r1", vigilv1.Severity_SEVERITY_HIGH)
	inc.Revision = 1
	send(t, stream, report(1, inc))
	recvAck(t, stream)
	triaged, err := e.incs.UpdateIncident(ctx, &vigilv1.UpdateIncidentRequest{
		Id: inc.GetId(), Status: vigilv1.TriageStatus_TRIAGE_STATUS_ACKNOWLEDGED, Note: "mine", Author: "alice",
	})
	if err != nil {
		t.Fatal(err)
	}
	rev := proto.Clone(inc).(*vigilv1.Incident)
	rev.Revision = 2
	rev.Title = "two"
	send(t, stream, report(2, rev))
	ack := recvAck(t, stream)
	got, err := e.incs.GetIncident(ctx, &vigilv1.GetIncidentRequest{Id: inc.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetTitle() != "two" || got.GetCursor() != ack.GetCursor() || !proto.Equal(got.GetTriage(), triaged.GetTriage()) {
		t.Errorf("after revision 2: title %q cursor %d (ack %d) triage %v, want triage %v",
			got.GetTitle(), got.GetCursor(), ack.GetCursor(), got.GetTriage(), triaged.GetTriage())
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := e.incs.StreamIncidents(sctx, &vigilv1.StreamIncidentsRequest{AfterCursor: triaged.GetCursor() - 1})
	if err != nil {
		t.Fatal(err)
	}
	if first := recvN(t, s, 1)[0]; first.GetCursor() != ack.GetCursor() {
		t.Errorf("stream after the triage cursor sent cursor %d, want %d", first.GetCursor(), ack.GetCursor())
	}
}
