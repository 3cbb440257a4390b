package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/grpcserver"
	"github.com/vigil-sensor/vigil/server/store"
)

const (
	// DefaultPageSize is the page size of ListIncidents when the request
	// leaves it 0.
	DefaultPageSize = 50
	// MaxPageSize is the largest page ListIncidents returns; larger
	// requests are cut down to it.
	MaxPageSize = 1000
	// streamBatch is how many incidents StreamIncidents reads from the
	// store at a time.
	streamBatch = 256
)

// IncidentService handles IncidentService.
type IncidentService struct {
	vigilv1.UnimplementedIncidentServiceServer

	store store.Store
	log   *slog.Logger
	done  <-chan struct{}
	// reads shares the reads of streams that wake together.
	reads sharedReads
}

// ListIncidents implements vigilv1.IncidentServiceServer.
func (s *IncidentService) ListIncidents(ctx context.Context, req *vigilv1.ListIncidentsRequest) (*vigilv1.ListIncidentsResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	before, err := DecodePageToken(req.GetPageToken())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid page_token: %v", err)
	}
	// Read one more than asked to learn whether there is a next page.
	incs, err := s.store.List(ctx, req.GetFilter(), before, size+1)
	if err != nil {
		return nil, storeError(ctx, "list incidents", err)
	}
	resp := &vigilv1.ListIncidentsResponse{Incidents: incs}
	if len(incs) > size {
		resp.Incidents = incs[:size]
		resp.NextPageToken = EncodePageToken(incs[size-1].GetCursor())
	}
	return resp, nil
}

// GetIncident implements vigilv1.IncidentServiceServer.
func (s *IncidentService) GetIncident(ctx context.Context, req *vigilv1.GetIncidentRequest) (*vigilv1.Incident, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id is empty")
	}
	inc, err := s.store.Get(ctx, req.GetId())
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "incident %s not found", req.GetId())
	}
	if err != nil {
		return nil, storeError(ctx, "get incident", err)
	}
	return inc, nil
}

// StreamIncidents implements vigilv1.IncidentServiceServer. It sends every
// stored incident after the request's cursor, oldest first, a batch at a
// time, then waits for the store to change and goes on from the last
// cursor sent. It reads at the pace the client receives (Send blocks on
// flow control), so a slow client is never dropped and never loses an
// incident. It ends when the client goes away or the server shuts down.
// checkResumable refuses a resume cursor beyond the newest stored incident:
// cursors are never reused, so such a client was following another
// database (replaced, or another server) and would wait forever.
func (s *IncidentService) checkResumable(ctx context.Context, after uint64) error {
	if after == 0 {
		return nil
	}
	newest, err := s.store.List(ctx, nil, 0, 1)
	if err != nil {
		return storeError(ctx, "read incidents", err)
	}
	var last uint64
	if len(newest) > 0 {
		last = newest[0].GetCursor()
	}
	if after > last {
		return status.Errorf(codes.FailedPrecondition,
			"after_cursor %d is beyond the newest stored incident (cursor %d): this server's store is not the one the cursor came from", after, last)
	}
	return nil
}

func (s *IncidentService) StreamIncidents(req *vigilv1.StreamIncidentsRequest, stream grpc.ServerStreamingServer[vigilv1.Incident]) error {
	ctx := stream.Context()
	// Send headers at once so that a client knows the stream is up before
	// the first incident arrives.
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	filter := req.GetFilter()
	cursor := req.GetAfterCursor()
	if err := s.checkResumable(ctx, cursor); err != nil {
		return err
	}
	for {
		select {
		case <-s.done:
			return errShuttingDown
		default:
		}
		// Take the change channel before reading, so that a Put between
		// the read and the wait still wakes us.
		changed := s.store.Changed()
		batch, err := s.reads.after(ctx, s.store, changed, filter, cursor, streamBatch)
		if err != nil {
			return storeError(ctx, "read incidents", err)
		}
		for _, inc := range batch {
			if err := stream.Send(inc); err != nil {
				return err
			}
			cursor = inc.GetCursor()
		}
		if len(batch) == streamBatch {
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.done:
			return errShuttingDown
		}
	}
}

// Limits of UpdateIncidentRequest.
const (
	// MaxNoteBytes is the longest note UpdateIncident accepts.
	MaxNoteBytes = 4096
	// MaxAuthorBytes is the longest author UpdateIncident accepts.
	MaxAuthorBytes = 256
)

// UpdateIncident implements vigilv1.IncidentServiceServer. It checks the
// request, then changes the triage in one store transaction: the status
// and label when set, a note appended when given, the label's author and
// time when the label changes, and updated_time always.
func (s *IncidentService) UpdateIncident(ctx context.Context, req *vigilv1.UpdateIncidentRequest) (*vigilv1.Incident, error) {
	if err := checkUpdate(req); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	// With tokens, the author is the token's holder, whatever the request
	// says (as RequestAction does with its requester).
	author := req.GetAuthor()
	if id, ok := grpcserver.CallerIdentity(ctx); ok && id.Name != "" {
		author = id.Name
	}
	inc, err := s.store.UpdateTriage(ctx, req.GetId(), func(tr *vigilv1.Triage) error {
		now := timestamppb.Now()
		if st := req.GetStatus(); st != vigilv1.TriageStatus_TRIAGE_STATUS_UNSPECIFIED {
			tr.Status = st
		}
		if l := req.GetLabel(); l != vigilv1.Label_LABEL_UNSPECIFIED && l != tr.GetLabel() {
			tr.Label, tr.LabelTime, tr.LabelAuthor = l, now, author
		}
		if n := req.GetNote(); n != "" {
			tr.Notes = append(tr.Notes, &vigilv1.Note{Time: now, Author: author, Text: n})
		}
		tr.UpdatedTime = now
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "incident %s not found", req.GetId())
	}
	if err != nil {
		return nil, storeError(ctx, "update incident", err)
	}
	s.log.Info("incident triaged", "incident_id", inc.GetId(), "author", author,
		"status", inc.GetTriage().GetStatus(), "label", inc.GetTriage().GetLabel(), "note", req.GetNote() != "")
	return inc, nil
}

// checkUpdate checks an UpdateIncidentRequest; the error names the field.
func checkUpdate(req *vigilv1.UpdateIncidentRequest) error {
	if req.GetId() == "" {
		return errors.New("id is empty")
	}
	if _, ok := vigilv1.TriageStatus_name[int32(req.GetStatus())]; !ok {
		return fmt.Errorf("status: unknown value %d", req.GetStatus())
	}
	if _, ok := vigilv1.Label_name[int32(req.GetLabel())]; !ok {
		return fmt.Errorf("label: unknown value %d", req.GetLabel())
	}
	if n := len(req.GetNote()); n > MaxNoteBytes {
		return fmt.Errorf("note is %d bytes, at most %d", n, MaxNoteBytes)
	}
	if n := len(req.GetAuthor()); n > MaxAuthorBytes {
		return fmt.Errorf("author is %d bytes, at most %d", n, MaxAuthorBytes)
	}
	if req.GetStatus() == vigilv1.TriageStatus_TRIAGE_STATUS_UNSPECIFIED && req.GetLabel() == vigilv1.Label_LABEL_UNSPECIFIED && req.GetNote() == "" {
		return errors.New("nothing to update: set status, label or note")
	}
	return nil
}

// pageTokenPrefix versions the page token format.
const pageTokenPrefix = "v1:"

// EncodePageToken returns the opaque page token that continues a listing
// below cursor.
func EncodePageToken(cursor uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + strconv.FormatUint(cursor, 10)))
}

// DecodePageToken returns the cursor a page token continues below; the
// empty token means from the newest incident (0).
func DecodePageToken(token string) (uint64, error) {
	if token == "" {
		return 0, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return 0, errors.New("not a token from next_page_token")
	}
	rest, ok := strings.CutPrefix(string(raw), pageTokenPrefix)
	if !ok {
		return 0, errors.New("not a token from next_page_token")
	}
	c, err := strconv.ParseUint(rest, 10, 64)
	if err != nil || c == 0 {
		return 0, errors.New("not a token from next_page_token")
	}
	return c, nil
}
