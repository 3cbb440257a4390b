package api

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-sensor/vigil/agent/rules"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/fleet"
	"github.com/vigil-sensor/vigil/server/grpcserver"
	"github.com/vigil-sensor/vigil/server/store"
)

// RulesService handles RulesService: it validates rule sets with the
// agents' rule compiler, stores them and wakes every Connect stream of this
// server, which sends the new set to its agent (see AgentService).
type RulesService struct {
	vigilv1.UnimplementedRulesServiceServer

	store store.Store
	fleet *fleet.Registry
	// changed wakes the Connect streams when a new set is stored.
	changed *store.Notifier
	log     *slog.Logger
}

// SetRuleSet implements vigilv1.RulesServiceServer.
func (s *RulesService) SetRuleSet(ctx context.Context, req *vigilv1.SetRuleSetRequest) (*vigilv1.SetRuleSetResponse, error) {
	if len(req.GetRequester()) > maxRequester {
		return nil, status.Errorf(codes.InvalidArgument, "requester is longer than %d bytes", maxRequester)
	}
	files := make([]*vigilv1.RuleFile, len(req.GetFiles()))
	for i, f := range req.GetFiles() {
		files[i] = proto.Clone(f).(*vigilv1.RuleFile)
	}
	slices.SortFunc(files, func(a, b *vigilv1.RuleFile) int { return strings.Compare(a.GetName(), b.GetName()) })
	if err := rules.ValidateRuleFiles(files); err != nil {
		if errors.Is(err, rules.ErrServerSet) {
			return nil, status.Errorf(codes.InvalidArgument, "rule set refused: %v", err)
		}
		if errors.Is(err, rules.ErrInvalid) {
			return nil, status.Errorf(codes.InvalidArgument, "rule set refused:\n%s", rules.ErrorText(err))
		}
		return nil, status.Errorf(codes.Internal, "validate rule set: %v", err)
	}
	setBy := req.GetRequester()
	if id, ok := grpcserver.CallerIdentity(ctx); ok && id.Name != "" {
		setBy = id.Name
	}
	stored, changed, err := s.store.PutRuleSet(ctx, &vigilv1.RuleSet{
		Hash: rules.HashRuleFiles(files), Files: files, SetTime: timestamppb.Now(), SetBy: setBy,
	})
	if err != nil {
		return nil, storeError(ctx, "store rule set", err)
	}
	if changed {
		s.log.Info("rule set stored", "version", stored.GetVersion(), "hash", stored.GetHash(),
			"files", len(files), "set_by", setBy)
		s.changed.Notify()
	} else {
		s.log.Info("rule set unchanged", "version", stored.GetVersion(), "set_by", setBy)
	}
	return &vigilv1.SetRuleSetResponse{
		RuleSet: stored, Changed: changed, AgentsConnected: uint32(s.fleet.ConnectedCount()),
	}, nil
}

// GetRuleSet implements vigilv1.RulesServiceServer.
func (s *RulesService) GetRuleSet(ctx context.Context, _ *vigilv1.GetRuleSetRequest) (*vigilv1.RuleSet, error) {
	rs, err := s.store.RuleSet(ctx)
	if err != nil {
		return nil, storeError(ctx, "read rule set", err)
	}
	return rs, nil
}
