// Package enroll gets the agent its client certificate from vigil-server
// (EnrollmentService): it makes a private key on this host, sends a
// certificate signing request with an enrollment token over TLS, checks
// what comes back and writes the key, the certificate and the server's CA
// into the state directory (config.EnrolledTLS), where the agent finds
// them at its next start. The key never leaves the host.
//
// The agent must trust the server before it sends the token: either the
// CA file that signed the server's certificate, or the SHA-256
// fingerprint of that CA ('vigil-server ca fingerprint'), which the server
// presents in its handshake when it offers enrollment.
package enroll

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/vigil-sensor/vigil/agent/config"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
)

// ErrEnrolled is returned by Enroll when the state directory already holds
// a certificate and Options.Force is not set.
var ErrEnrolled = errors.New("already enrolled")

// Options say where to enroll and how to trust the server.
type Options struct {
	// Server is the server's gRPC address, host:port.
	Server string
	// Token is the enrollment token.
	Token string
	// CAFile is a PEM file of the CA that signed the server's certificate.
	// Either it or CAFingerprint must be set.
	CAFile string
	// CAFingerprint is the SHA-256 of that CA's certificate, hex, with or
	// without "sha256:" and colons.
	CAFingerprint string
	// Name is the certificate name to ask for; empty means the host name.
	// A token made for a name gets that name instead.
	Name string
	// StateDir is the agent's state directory.
	StateDir string
	// Force replaces an existing enrollment.
	Force bool
	// Timeout bounds the call; zero means 30 s.
	Timeout time.Duration
}

// Result is a finished enrollment.
type Result struct {
	// TLS names the files written.
	TLS config.TLS
	// Name is the certificate's name.
	Name string
	// NotAfter is when the certificate expires.
	NotAfter time.Time
}

// Enroll enrolls the agent with opt.Server and writes the files.
func Enroll(ctx context.Context, opt Options) (*Result, error) {
	files := config.EnrolledTLS(opt.StateDir)
	if _, err := os.Stat(files.Cert); err == nil && !opt.Force {
		return nil, fmt.Errorf("enroll: %w: %s exists (use --force to enroll again)", ErrEnrolled, files.Cert)
	}
	if opt.Token == "" {
		return nil, errors.New("enroll: no token")
	}
	host, _, err := net.SplitHostPort(opt.Server)
	if err != nil {
		return nil, fmt.Errorf("enroll: server address %q: %w", opt.Server, err)
	}
	tc, anchor, err := trust(opt, host)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	name := opt.Name
	if name == "" {
		if name, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("enroll: host name: %w", err)
		}
	}

	// The key is made here and stays here; only the request goes out.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("enroll: generate key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		return nil, fmt.Errorf("enroll: certificate request: %w", err)
	}

	timeout := opt.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := grpc.NewClient(opt.Server, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return nil, fmt.Errorf("enroll: server address %q: %w", opt.Server, err)
	}
	defer conn.Close()
	resp, err := vigilv1.NewEnrollmentServiceClient(conn).Enroll(ctx, &vigilv1.EnrollRequest{Token: opt.Token, Csr: csr})
	if err != nil {
		return nil, fmt.Errorf("enroll with %s: %w", opt.Server, err)
	}
	cert, err := checkIssued(resp, key)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	ca := anchor()
	if len(ca) == 0 {
		return nil, errors.New("enroll: the server's CA is unknown after the handshake")
	}

	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("enroll: encode key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(files.Cert), 0o700); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	// The certificate goes last: its presence marks a finished enrollment.
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{files.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
		{files.CA, ca, 0o644},
		{files.Cert, resp.GetCertificate(), 0o644},
	} {
		if err := writeFile(f.path, f.data, f.mode); err != nil {
			return nil, fmt.Errorf("enroll: %w", err)
		}
	}
	return &Result{TLS: files, Name: cert.Subject.CommonName, NotAfter: cert.NotAfter}, nil
}

// trust builds the TLS configuration that checks the server before the
// token is sent, and a function that returns, once the handshake is done,
// the PEM of the CA it trusted, which becomes the agent's tls.ca.
func trust(opt Options, host string) (*tls.Config, func() []byte, error) {
	switch {
	case opt.CAFile != "" && opt.CAFingerprint != "":
		return nil, nil, errors.New("give the server's CA file or its fingerprint, not both")
	case opt.CAFile != "":
		b, err := os.ReadFile(opt.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("server ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, nil, fmt.Errorf("server ca: %s holds no PEM certificate", opt.CAFile)
		}
		return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, func() []byte { return b }, nil
	case opt.CAFingerprint != "":
		want, err := parseFingerprint(opt.CAFingerprint)
		if err != nil {
			return nil, nil, err
		}
		var (
			mu     sync.Mutex
			anchor []byte
		)
		tc := &tls.Config{
			MinVersion: tls.VersionTLS12,
			// The usual check cannot run without the CA; the callback
			// below makes it with the CA found by its fingerprint.
			InsecureSkipVerify: true,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				ca, err := verifyPinned(raw, want, host)
				if err == nil {
					mu.Lock()
					anchor = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
					mu.Unlock()
				}
				return err
			},
		}
		return tc, func() []byte {
			mu.Lock()
			defer mu.Unlock()
			return anchor
		}, nil
	default:
		return nil, nil, errors.New("give the server's CA file (--tls-ca) or its fingerprint (--ca-fingerprint)")
	}
}

// parseFingerprint reads a hex SHA-256, with or without "sha256:" and
// colons.
func parseFingerprint(s string) ([]byte, error) {
	h := strings.ToLower(strings.TrimSpace(s))
	h = strings.TrimPrefix(h, "sha256:")
	h = strings.ReplaceAll(h, ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("ca fingerprint %q: want the hex SHA-256 of the CA certificate ('vigil-server ca fingerprint DIR')", s)
	}
	return b, nil
}

// verifyPinned checks the server's chain: one certificate in it must have
// the fingerprint want and be a CA, and the server's certificate must be
// valid for host under it.
func verifyPinned(raw [][]byte, want []byte, host string) (*x509.Certificate, error) {
	if len(raw) == 0 {
		return nil, errors.New("server sent no certificate")
	}
	var ca *x509.Certificate
	inter := x509.NewCertPool()
	for _, r := range raw {
		sum := sha256.Sum256(r)
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return nil, fmt.Errorf("server certificate: %w", err)
		}
		if bytes.Equal(sum[:], want) {
			ca = c
		} else {
			inter.AddCert(c)
		}
	}
	if ca == nil {
		return nil, errors.New("the server's chain holds no certificate with the CA fingerprint given (is --enroll-ca set on the server, and is the fingerprint that of its ca.pem?)")
	}
	if !ca.IsCA {
		return nil, errors.New("the certificate with the fingerprint given is not a CA")
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	return ca, nil
}

// checkIssued checks that the certificate is for key, is a client
// certificate, and that the CA that came with it signed it.
func checkIssued(resp *vigilv1.EnrollResponse, key *ecdsa.PrivateKey) (*x509.Certificate, error) {
	blk, _ := pem.Decode(resp.GetCertificate())
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("the server sent no PEM certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("the issued certificate is not for this agent's key")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(resp.GetCaCertificate()) {
		return nil, errors.New("the server sent no PEM CA certificate")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	return cert, nil
}

// writeFile replaces path atomically with data.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
