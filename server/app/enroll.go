package app

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/api"
	"github.com/vigil-sensor/vigil/server/enroll"
	"github.com/vigil-sensor/vigil/server/pki"
)

// enrollment checks the enrollment settings of cfg and returns the
// authority that issues agent certificates, or nil when enrollment is off.
// It fills in the defaults: the tokens file in the CA directory, and the
// CA as ClientCA when none is given.
func enrollment(cfg *Config) (*enroll.Authority, error) {
	if cfg.EnrollCA == "" {
		if cfg.EnrollTokens != "" {
			return nil, errors.New("an enrollment tokens file needs the enrollment CA")
		}
		return nil, nil
	}
	if cfg.TLSCert == "" {
		return nil, errors.New("enrollment needs the server's tls certificate and key: tokens must not travel in plaintext")
	}
	ca, err := pki.LoadCA(cfg.EnrollCA)
	if err != nil {
		return nil, fmt.Errorf("enrollment ca: %w", err)
	}
	if cfg.ClientCA == "" {
		cfg.ClientCA = filepath.Join(cfg.EnrollCA, pki.CAFile)
	} else if ok, err := holdsCert(cfg.ClientCA, ca.Cert.Raw); err != nil {
		return nil, fmt.Errorf("client ca: %w", err)
	} else if !ok {
		return nil, fmt.Errorf("client ca %s does not hold the enrollment CA of %s, so enrolled agents could not connect", cfg.ClientCA, cfg.EnrollCA)
	}
	if cfg.EnrollTokens == "" {
		cfg.EnrollTokens = filepath.Join(cfg.EnrollCA, enroll.TokensFile)
	}
	tokens := enroll.Tokens{Path: cfg.EnrollTokens}
	if _, err := tokens.List(); err != nil {
		return nil, fmt.Errorf("enrollment tokens: %w", err)
	}
	return &enroll.Authority{CA: ca, Tokens: tokens}, nil
}

// holdsCert reports whether the PEM file holds the certificate der.
func holdsCert(file string, der []byte) (bool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return false, err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return false, nil
		}
		if blk.Type == "CERTIFICATE" && slices.Equal(blk.Bytes, der) {
			return true, nil
		}
	}
}

// chainEnrollCA appends the CA certificate of the CA directory dir, when
// dir is set, to the chain the server presents, so that an agent that
// trusts the CA by its fingerprint (vigil-agent enroll --ca-fingerprint)
// finds it in the handshake.
func chainEnrollCA(tc *tls.Config, dir string) error {
	if dir == "" || len(tc.Certificates) == 0 {
		return nil
	}
	ca, err := pki.LoadCA(dir)
	if err != nil {
		return fmt.Errorf("enrollment ca: %w", err)
	}
	chain := &tc.Certificates[0]
	for _, c := range chain.Certificate {
		if slices.Equal(c, ca.Cert.Raw) {
			return nil
		}
	}
	chain.Certificate = append(chain.Certificate, ca.Cert.Raw)
	return nil
}

// registerEnrollment offers EnrollmentService through a, when a is set. It
// needs no client certificate and no bearer token.
func (s *Server) registerEnrollment(a *enroll.Authority) {
	if a == nil {
		return
	}
	vigilv1.RegisterEnrollmentServiceServer(s.grpc.Registrar(), api.NewEnrollment(a, s.log))
	s.grpc.Health().SetServingStatus(vigilv1.EnrollmentService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
}
