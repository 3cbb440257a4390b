package app_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigil-sensor/vigil/agent/config"
	agentenroll "github.com/vigil-sensor/vigil/agent/enroll"
	"github.com/vigil-sensor/vigil/agent/transport"
	vigilv1 "github.com/vigil-sensor/vigil/proto/vigil/v1"
	"github.com/vigil-sensor/vigil/server/app"
	"github.com/vigil-sensor/vigil/server/enroll"
	"github.com/vigil-sensor/vigil/server/pki"
	"github.com/vigil-sensor/vigil/server/store/storetest"
)

// startEnrolling runs a server with TLS that lets agents enroll with the
// CA in dir; agents must present a certificate of that CA.
func startEnrolling(t *testing.T, dir string) *app.Server {
	t.Helper()
	return start(t, app.Config{
		TLSCert:  filepath.Join(dir, pki.ServerFile),
		TLSKey:   filepath.Join(dir, pki.ServerKeyFile),
		EnrollCA: dir,
	})
}

// newToken adds a token to dir's tokens file, as 'vigil-server ca
// enroll-token' does.
func newToken(t *testing.T, dir string, opt enroll.Options, now time.Time) string {
	t.Helper()
	token, _, err := enroll.Tokens{Path: filepath.Join(dir, enroll.TokensFile)}.Create(opt, now)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// fingerprint is the fingerprint of dir's CA.
func fingerprint(t *testing.T, dir string) string {
	t.Helper()
	ca, err := pki.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	return pki.Fingerprint(ca.Cert)
}

// wantCode checks that err is, or wraps, a gRPC status with code.
func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("%s: %v (code %s), want code %s", what, err, got, code)
	}
}

// TestEnrollThenReport enrolls an agent by the CA's fingerprint over a
// real TLS connection; the agent then reports with the certificate it got.
func TestEnrollThenReport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pki.Init(dir, []string{"localhost", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	token := newToken(t, dir, enroll.Options{}, time.Now())
	srv := startEnrolling(t, dir)

	state := t.TempDir()
	res, err := agentenroll.Enroll(t.Context(), agentenroll.Options{
		Server: srv.Addr(), Token: token, CAFingerprint: fingerprint(t, dir), Name: "web-7", StateDir: state,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Name != "web-7" || time.Until(res.NotAfter) < 365*24*time.Hour {
		t.Errorf("enrolled as %q until %s", res.Name, res.NotAfter)
	}
	files := config.EnrolledTLS(state)
	if fi, err := os.Stat(files.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file %s: %v, mode %v, want 0600", files.Key, err, fi.Mode())
	}
	ca, _ := os.ReadFile(filepath.Join(dir, pki.CAFile))
	if got, _ := os.ReadFile(files.CA); string(got) != string(ca) {
		t.Errorf("%s is not the server's CA", files.CA)
	}
	certPEM, _ := os.ReadFile(files.Cert)
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || cert.Subject.CommonName != "web-7" {
		t.Fatalf("certificate %v, %v: want one for web-7", cert, err)
	}
	// The tokens file records the use and the certificate.
	list, err := enroll.Tokens{Path: filepath.Join(dir, enroll.TokensFile)}.List()
	if err != nil || len(list) != 1 || list[0].Used != 1 || len(list[0].Enrolled) != 1 ||
		list[0].Enrolled[0].Serial != cert.SerialNumber.Text(16) || strings.Contains(string(mustRead(t, filepath.Join(dir, enroll.TokensFile))), token) {
		t.Errorf("tokens file after enrolling: %+v, %v", list, err)
	}

	// The agent, configured from its state directory, reports.
	cfg := config.Default()
	cfg.StateDir = state
	if !cfg.UseEnrolled() {
		t.Fatal("UseEnrolled found no enrolled certificate")
	}
	tc, err := cfg.TLS.Config()
	if err != nil {
		t.Fatal(err)
	}
	c := &transport.Client{Addr: srv.Addr(), Hello: &vigilv1.Hello{HostId: hostID, Hostname: "web-7"}, TLS: tc,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	inc := storetest.NewIncident(hostID, "exec_from_tmp", vigilv1.Severity_SEVERITY_HIGH)
	if err := c.Send(inc); err != nil {
		t.Fatal(err)
	}
	if got := waitStored(t, srv, 1, 10*time.Second); len(got) != 1 || got[0].GetId() != inc.GetId() {
		t.Fatalf("stored %v, want the enrolled agent's incident", got)
	}

	// An agent without a certificate is still refused.
	if err := connectErr(t, dialTLS(t, srv.Addr(), dir, "")); status.Code(err) != codes.Unauthenticated {
		t.Errorf("agent without certificate: %v, want Unauthenticated", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEnrollRefused: an unknown token, a used single-use token, an expired
// token and a wrong fingerprint get no certificate and write nothing.
func TestEnrollRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pki.Init(dir, []string{"localhost", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	srv := startEnrolling(t, dir)
	fp := fingerprint(t, dir)
	enrollWith := func(opt agentenroll.Options) (string, error) {
		opt.Server, opt.StateDir = srv.Addr(), t.TempDir()
		if opt.CAFile == "" && opt.CAFingerprint == "" {
			opt.CAFingerprint = fp
		}
		_, err := agentenroll.Enroll(t.Context(), opt)
		return opt.StateDir, err
	}
	noFiles := func(what, state string) {
		t.Helper()
		if entries, _ := os.ReadDir(filepath.Join(state, config.EnrolledDir)); len(entries) != 0 {
			t.Errorf("%s: wrote %v", what, entries)
		}
	}

	// A token made while the server runs works at once; a second use of
	// the single-use token is refused.
	token := newToken(t, dir, enroll.Options{}, time.Now())
	if _, err := enrollWith(agentenroll.Options{Token: token, Name: "web-1"}); err != nil {
		t.Fatal(err)
	}
	state, err := enrollWith(agentenroll.Options{Token: token, Name: "web-2"})
	wantCode(t, "reused token", err, codes.PermissionDenied)
	if !strings.Contains(err.Error(), "already used") {
		t.Errorf("reused token: %v, want it to say so", err)
	}
	noFiles("reused token", state)

	state, err = enrollWith(agentenroll.Options{Token: "enroll-not-a-token-at-all-000000", Name: "web-3"})
	wantCode(t, "unknown token", err, codes.Unauthenticated)
	noFiles("unknown token", state)

	expired := newToken(t, dir, enroll.Options{TTL: time.Hour}, time.Now().Add(-2*time.Hour))
	state, err = enrollWith(agentenroll.Options{Token: expired, Name: "web-4"})
	wantCode(t, "expired token", err, codes.PermissionDenied)
	noFiles("expired token", state)

	// A bad name is refused without using the token up.
	multi := newToken(t, dir, enroll.Options{Uses: 2}, time.Now())
	_, err = enrollWith(agentenroll.Options{Token: multi, Name: "../etc"})
	wantCode(t, "bad name", err, codes.InvalidArgument)

	// A wrong fingerprint stops the agent before it sends the token.
	other := filepath.Join(t.TempDir(), "other")
	if err := pki.Init(other, []string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	state, err = enrollWith(agentenroll.Options{Token: multi, CAFingerprint: fingerprint(t, other), Name: "web-5"})
	if err == nil || !strings.Contains(err.Error(), "fingerprint") {
		t.Errorf("wrong fingerprint: %v, want the handshake refused", err)
	}
	noFiles("wrong fingerprint", state)

	// With the CA file instead, the token's two uses are still there; a
	// token made for a name gives that name.
	for _, name := range []string{"db-1", "db-2"} {
		if _, err := enrollWith(agentenroll.Options{Token: multi, CAFile: filepath.Join(dir, pki.CAFile), Name: name}); err != nil {
			t.Fatalf("second token, %s: %v", name, err)
		}
	}
	named := newToken(t, dir, enroll.Options{Name: "pinned-host"}, time.Now())
	state, err = enrollWith(agentenroll.Options{Token: named, Name: "anything"})
	if err != nil {
		t.Fatal(err)
	}
	if b := mustRead(t, config.EnrolledTLS(state).Cert); !strings.Contains(certName(t, b), "pinned-host") {
		t.Errorf("named token: certificate for %s", certName(t, b))
	}

	// Several agents racing for one single-use token: exactly one wins.
	race := newToken(t, dir, enroll.Options{}, time.Now())
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := enrollWith(agentenroll.Options{Token: race, Name: "racer-" + string(rune('a'+i))}); err == nil {
				mu.Lock()
				won++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("%d agents enrolled with one single-use token, want 1", won)
	}
}

func certName(t *testing.T, b []byte) string {
	t.Helper()
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.Subject.CommonName
}

// TestEnrollConfig: enrollment needs TLS, a CA with its key, and a client
// CA that holds it.
func TestEnrollConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := pki.Init(dir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := pki.Init(other, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	tlsCert, tlsKey := filepath.Join(dir, pki.ServerFile), filepath.Join(dir, pki.ServerKeyFile)
	for name, cfg := range map[string]app.Config{
		"no tls":            {EnrollCA: dir},
		"no ca key":         {EnrollCA: t.TempDir(), TLSCert: tlsCert, TLSKey: tlsKey},
		"other client ca":   {EnrollCA: dir, TLSCert: tlsCert, TLSKey: tlsKey, ClientCA: filepath.Join(other, pki.CAFile)},
		"tokens without ca": {EnrollTokens: filepath.Join(dir, enroll.TokensFile)},
	} {
		cfg.Listen, cfg.DBPath = "127.0.0.1:0", filepath.Join(t.TempDir(), "db")
		srv, err := app.Start(cfg)
		if err == nil {
			srv.Shutdown(context.Background())
			t.Errorf("%s: Start succeeded", name)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
}
