package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestInitAndIssue(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, []string{"vigil.example", "10.0.0.5"}); err != nil {
		t.Fatal(err)
	}
	if err := Init(dir, []string{"vigil.example"}); !errors.Is(err, ErrExists) {
		t.Errorf("second Init: %v, want ErrExists", err)
	}
	roots, err := CertPool(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	srv := readCert(t, filepath.Join(dir, ServerFile))
	for _, host := range []string{"vigil.example", "10.0.0.5"} {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	certFile, _, err := IssueAgent(dir, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	agent := readCert(t, certFile)
	if agent.Subject.CommonName != "web-1" {
		t.Errorf("agent certificate names %q", agent.Subject.CommonName)
	}
	if _, err := agent.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("agent certificate: %v", err)
	}
	if _, err := agent.Verify(x509.VerifyOptions{Roots: roots}); err == nil {
		t.Error("agent certificate verifies as a server certificate")
	}
	for _, bad := range []string{"", "../x", "ca", "server"} {
		if _, _, err := IssueAgent(dir, bad); err == nil {
			t.Errorf("IssueAgent(%q) succeeded", bad)
		}
	}
	if _, _, err := IssueAgent(t.TempDir(), "web-2"); err == nil {
		t.Error("IssueAgent without a CA succeeded")
	}
}

func readCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", file)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
