package api

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/enroll"
	"github.com/vigil-sensor/vigil/server/pki"
)

// EnrollmentService handles EnrollmentService: it issues agent
// certificates through an enroll.Authority.
type EnrollmentService struct {
	vigilv1.UnimplementedEnrollmentServiceServer

	authority *enroll.Authority
	log       *slog.Logger
}

// NewEnrollment returns the handler of EnrollmentService over a.
func NewEnrollment(a *enroll.Authority, log *slog.Logger) *EnrollmentService {
	return &EnrollmentService{authority: a, log: log}
}

// maxCSR bounds the certificate signing request accepted.
const maxCSR = 16 << 10

// Enroll implements vigilv1.EnrollmentServiceServer.
func (s *EnrollmentService) Enroll(ctx context.Context, req *vigilv1.EnrollRequest) (*vigilv1.EnrollResponse, error) {
	from := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		from = p.Addr.String()
	}
	if req.GetToken() == "" {
		return nil, status.Error(codes.Unauthenticated, "enroll: no token")
	}
	if len(req.GetCsr()) == 0 || len(req.GetCsr()) > maxCSR {
		return nil, status.Errorf(codes.InvalidArgument, "enroll: want a certificate signing request of 1 to %d bytes", maxCSR)
	}
	issued, err := s.authority.Enroll(req.GetToken(), req.GetCsr(), from)
	if err != nil {
		code := codes.Internal
		switch {
		case errors.Is(err, enroll.ErrUnknownToken):
			code = codes.Unauthenticated
		case errors.Is(err, enroll.ErrTokenUsed), errors.Is(err, enroll.ErrTokenExpired):
			code = codes.PermissionDenied
		case errors.Is(err, pki.ErrBadCSR), errors.Is(err, enroll.ErrBadName):
			code = codes.InvalidArgument
		}
		s.log.Warn("enrollment refused", "peer", from, "code", code, "error", err)
		if code == codes.Internal {
			return nil, status.Error(code, "enroll: the server could not issue a certificate")
		}
		return nil, status.Error(code, err.Error())
	}
	cert := issued.Cert
	s.log.Info("agent enrolled", "name", cert.Subject.CommonName, "serial", cert.SerialNumber.Text(16),
		"not_after", cert.NotAfter, "peer", from)
	return &vigilv1.EnrollResponse{
		Certificate:   issued.CertPEM,
		CaCertificate: s.authority.CA.CertPEM(),
		Name:          cert.Subject.CommonName,
		NotAfter:      timestamppb.New(cert.NotAfter),
	}, nil
}
