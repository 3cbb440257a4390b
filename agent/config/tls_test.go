package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sensor/vigil/server/pki"
)

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Init(dir, []string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	cert, key, err := pki.IssueAgent(dir, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, pki.CAFile)
	cfg, err := Parse([]byte("tls: {ca: " + ca + ", cert: " + cert + ", key: " + key + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := cfg.TLS.Config()
	if err != nil || tc == nil || len(tc.Certificates) != 1 || tc.RootCAs == nil {
		t.Fatalf("TLS config %v, %v: want the CA and one certificate", tc, err)
	}
	if tc, err := Default().TLS.Config(); tc != nil || err != nil {
		t.Errorf("default TLS config %v, %v, want none", tc, err)
	}

	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	for yaml, want := range map[string]string{
		"tls: {cert: " + cert + ", key: " + key + "}":                  "tls.ca: empty",
		"tls: {ca: " + ca + ", cert: " + cert + "}":                    "tls.cert and tls.key: set both",
		"tls: {ca: /nonexistent/ca.pem}":                               "tls.ca: open /nonexistent/ca.pem",
		"tls: {ca: " + junk + "}":                                      "holds no PEM certificate",
		"tls: {ca: " + ca + ", cert: " + cert + ", key: " + junk + "}": "tls.cert and tls.key:",
		"tls: {ca: " + ca + ", crt: x}":                                "crt",
	} {
		if _, err := Parse([]byte(yaml + "\n")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", yaml, err, want)
		}
	}
}
