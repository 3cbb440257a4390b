// Package pki is Vigil's small development certificate authority: it
// makes an ECDSA P-256 CA, the server's certificate and one certificate per
// agent, writes them as PEM files, and builds the TLS configurations the
// server, the agents and vigilctl use. It is meant for test and small
// deployments; a site with its own PKI gives vigil-server and the agents
// certificates from it instead.
package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names inside a CA directory.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	ServerFile    = "server.pem"
	ServerKeyFile = "server-key.pem"
)

// Validity periods.
const (
	// CAValidity is how long a CA made by NewCA is valid.
	CAValidity = 10 * 365 * 24 * time.Hour
	// LeafValidity is how long a server or agent certificate is valid.
	LeafValidity = 2 * 365 * 24 * time.Hour
)

// ErrExists is returned by Init when the directory already holds a CA.
var ErrExists = errors.New("a CA already exists there")

// CA is a certificate authority: its certificate and private key.
type CA struct {
	// Cert is the CA's certificate.
	Cert *x509.Certificate
	// Key is the CA's private key.
	Key *ecdsa.PrivateKey
}

// Pair is a certificate and its private key, PEM-encoded.
type Pair struct {
	// CertPEM is the certificate.
	CertPEM []byte
	// KeyPEM is the private key (PKCS #8).
	KeyPEM []byte
}

// NewCA makes a self-signed CA named name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ca key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Vigil"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse ca certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// CertPEM is the CA's certificate, PEM-encoded.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Issue signs a new key for name. hosts (DNS names or IP addresses) go
// into the subject alternative names; a certificate with hosts is for a
// server, one without is for a client (an agent).
func (ca *CA) Issue(name string, hosts []string) (*Pair, error) {
	if name == "" {
		return nil, errors.New("issue certificate: empty name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	tmpl := leafTemplate(name)
	if len(hosts) > 0 {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return &Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// leafTemplate is the template of a client certificate for name, valid
// for LeafValidity from an hour ago.
func leafTemplate(name string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Vigil"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(LeafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// ErrBadCSR is wrapped by the errors of ParseCSR.
var ErrBadCSR = errors.New("bad certificate signing request")

// ParseCSR reads a PKCS #10 certificate signing request, PEM or DER, and
// checks its signature and that its key is ECDSA (P-256 or larger),
// Ed25519 or RSA of at least 2048 bits. Errors wrap ErrBadCSR.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%w: PEM block %q, want CERTIFICATE REQUEST", ErrBadCSR, blk.Type)
		}
		b = blk.Bytes
	}
	csr, err := x509.ParseCertificateRequest(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadCSR, err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize < 256 {
			return nil, fmt.Errorf("%w: ECDSA key of %d bits, want at least 256", ErrBadCSR, k.Curve.Params().BitSize)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%w: RSA key of %d bits, want at least 2048", ErrBadCSR, k.N.BitLen())
		}
	default:
		return nil, fmt.Errorf("%w: unsupported key type %T", ErrBadCSR, csr.PublicKey)
	}
	return csr, nil
}

// SignClient signs a client certificate for name over the public key of
// csr (see ParseCSR), and returns it PEM-encoded and parsed. Only the key
// is taken from the request: name, validity and usage are the CA's.
func (ca *CA) SignClient(csr *x509.CertificateRequest, name string) ([]byte, *x509.Certificate, error) {
	if name == "" {
		return nil, nil, errors.New("sign client certificate: empty name")
	}
	der, err := x509.CreateCertificate(rand.Reader, leafTemplate(name), ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign client certificate for %s: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse client certificate for %s: %w", name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert, nil
}

// Fingerprint is the SHA-256 of a certificate's DER bytes, as
// "sha256:" and lower-case hex: what 'vigil-agent enroll
// --ca-fingerprint' takes.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// serial returns a random 128-bit serial number.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// Init makes a CA in dir (created when missing) and a server certificate
// for hosts: ca.pem, ca-key.pem, server.pem and server-key.pem. It refuses
// to overwrite an existing CA.
func Init(dir string, hosts []string) error {
	if len(hosts) == 0 {
		return errors.New("ca init: no server host names or addresses")
	}
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return fmt.Errorf("ca init %s: %w", dir, ErrExists)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	ca, err := NewCA("Vigil development CA")
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return fmt.Errorf("ca init: encode key: %w", err)
	}
	srv, err := ca.Issue(hosts[0], hosts)
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	return writeFiles(dir, map[string][]byte{
		CAFile:        ca.CertPEM(),
		CAKeyFile:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		ServerFile:    srv.CertPEM,
		ServerKeyFile: srv.KeyPEM,
	})
}

// IssueAgent signs a client certificate for the agent name with the CA in
// dir and writes NAME.pem and NAME-key.pem there. It returns their paths.
func IssueAgent(dir, name string) (certFile, keyFile string, err error) {
	if name == "" || name != filepath.Base(name) || name == "ca" || name == "server" {
		return "", "", fmt.Errorf("ca issue: %q is not a usable agent name", name)
	}
	ca, err := LoadCA(dir)
	if err != nil {
		return "", "", fmt.Errorf("ca issue: %w", err)
	}
	p, err := ca.Issue(name, nil)
	if err != nil {
		return "", "", fmt.Errorf("ca issue: %w", err)
	}
	certFile, keyFile = name+".pem", name+"-key.pem"
	if err := writeFiles(dir, map[string][]byte{certFile: p.CertPEM, keyFile: p.KeyPEM}); err != nil {
		return "", "", err
	}
	return filepath.Join(dir, certFile), filepath.Join(dir, keyFile), nil
}

// LoadCA reads ca.pem and ca-key.pem from dir.
func LoadCA(dir string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load ca from %s: %w", dir, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("load ca from %s: %w", dir, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA {
		return nil, fmt.Errorf("load ca from %s: not an ECDSA CA certificate and key", dir)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// writeFiles writes each file into dir, private keys and all, readable by
// the owner only.
func writeFiles(dir string, files map[string][]byte) error {
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// CertPool reads the PEM certificates in file into a pool.
func CertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("ca file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// ServerConfig is the TLS configuration of a server with certFile and
// keyFile. With clientCAFile, clients may present a certificate and one
// they present must be signed by that CA; whether a certificate is
// required is decided per service (see grpcserver.Policy). TLS 1.2 is the
// minimum.
func ServerConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load server certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pool, err := CertPool(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client ca: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// ClientConfig is the TLS configuration of a client that trusts the
// servers signed by caFile (the system's roots when empty) and presents
// certFile and keyFile when both are given.
func ClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := CertPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("client certificate and key must be given together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
