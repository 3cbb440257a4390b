// Package enroll keeps vigil-server's enrollment tokens and issues agents
// their client certificates against them: an agent makes its own key,
// sends a certificate signing request with a token, and the server's CA
// signs it when the token is known, not expired and not used up.
//
// The tokens live in one YAML file (TokensFile in the CA directory by
// default) that holds only each token's SHA-256, its limits and the
// certificates issued with it. 'vigil-server ca enroll-token' adds tokens
// and the server uses them up; both lock the file (through FILE.lock)
// around each read-change-write, and the server reads it afresh for each
// enrollment, so a token made while the server runs works at once.
package enroll

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-sensor/vigil/server/pki"
)

// TokensFile is the tokens file's name in a CA directory.
const TokensFile = "enroll-tokens.yaml"

// Defaults of a new token.
const (
	// DefaultTTL is how long a token is good for.
	DefaultTTL = 24 * time.Hour
	// DefaultUses is how many enrollments a token allows.
	DefaultUses = 1
)

// Errors of Use and Enroll; test them with errors.Is.
var (
	// ErrUnknownToken means no token in the file has that hash.
	ErrUnknownToken = errors.New("unknown enrollment token")
	// ErrTokenUsed means the token has had all its enrollments.
	ErrTokenUsed = errors.New("enrollment token already used")
	// ErrTokenExpired means the token's time is over.
	ErrTokenExpired = errors.New("enrollment token expired")
	// ErrBadName means the name an agent asked for cannot be a
	// certificate name.
	ErrBadName = errors.New("bad agent name")
)

// Token is one entry of the tokens file.
type Token struct {
	// Hash is "sha256:" and the hex SHA-256 of the token.
	Hash string `yaml:"hash"`
	// Name, when set, is the certificate name every enrollment with this
	// token gets, whatever the agent asks for.
	Name string `yaml:"name,omitempty"`
	// Created is when the token was made.
	Created time.Time `yaml:"created"`
	// Expires is when the token stops being good.
	Expires time.Time `yaml:"expires"`
	// Uses is how many enrollments the token allows.
	Uses int `yaml:"uses"`
	// Used counts the enrollments made with it.
	Used int `yaml:"used"`
	// Enrolled lists the certificates issued with it, oldest first.
	Enrolled []Enrollment `yaml:"enrolled,omitempty"`
}

// Enrollment records one certificate issued with a token.
type Enrollment struct {
	// Name is the certificate's common name.
	Name string `yaml:"name"`
	// Serial is the certificate's serial number, hex.
	Serial string `yaml:"serial"`
	// Time is when it was issued.
	Time time.Time `yaml:"time"`
	// NotAfter is when it expires.
	NotAfter time.Time `yaml:"not_after"`
	// Peer is the network address the request came from.
	Peer string `yaml:"peer,omitempty"`
}

// tokensFile is the file's layout.
type tokensFile struct {
	Tokens []Token `yaml:"tokens"`
}

// Tokens is the tokens file at Path.
type Tokens struct {
	// Path is the file; its directory must exist.
	Path string
}

// Options are the limits of a new token.
type Options struct {
	// Name, when set, is the certificate name the token's enrollments get.
	Name string
	// TTL is how long the token is good for; zero means DefaultTTL.
	TTL time.Duration
	// Uses is how many enrollments it allows; zero means DefaultUses.
	Uses int
}

// Create makes a random token, adds its hash to the file (creating the
// file when missing) and returns the token, which is shown only this once,
// and its entry.
func (t Tokens) Create(opt Options, now time.Time) (string, Token, error) {
	if opt.TTL < 0 || opt.Uses < 0 {
		return "", Token{}, errors.New("create enrollment token: negative ttl or uses")
	}
	if opt.Name != "" {
		if err := CheckName(opt.Name); err != nil {
			return "", Token{}, fmt.Errorf("create enrollment token: %w", err)
		}
	}
	if opt.TTL == 0 {
		opt.TTL = DefaultTTL
	}
	if opt.Uses == 0 {
		opt.Uses = DefaultUses
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", Token{}, fmt.Errorf("create enrollment token: %w", err)
	}
	token := "enroll-" + base64.RawURLEncoding.EncodeToString(b)
	entry := Token{
		Hash: hashOf(token), Name: opt.Name, Created: now.UTC().Truncate(time.Second),
		Expires: now.Add(opt.TTL).UTC().Truncate(time.Second), Uses: opt.Uses,
	}
	err := t.update(func(f *tokensFile) error {
		f.Tokens = append(f.Tokens, entry)
		return nil
	})
	if err != nil {
		return "", Token{}, fmt.Errorf("create enrollment token: %w", err)
	}
	return token, entry, nil
}

// List returns the file's tokens; a missing file has none.
func (t Tokens) List() ([]Token, error) {
	var out []Token
	err := t.locked(func() error {
		f, err := t.read()
		out = f.Tokens
		return err
	})
	return out, err
}

// Use checks token at now and, when it is good, calls issue with its entry
// and records the enrollment issue returns as one use, all under the
// file's lock, so that concurrent requests cannot use a token more often
// than it allows. When issue fails, or the file cannot be written, the
// token stays as it was and the error is returned: the caller must not
// hand out what issue made then.
func (t Tokens) Use(token string, now time.Time, issue func(Token) (Enrollment, error)) error {
	return t.update(func(f *tokensFile) error {
		i := find(f.Tokens, token)
		if i < 0 {
			return ErrUnknownToken
		}
		e := &f.Tokens[i]
		switch {
		case e.Used >= e.Uses:
			return fmt.Errorf("%w (%d of %d enrollments)", ErrTokenUsed, e.Used, e.Uses)
		case !now.Before(e.Expires):
			return fmt.Errorf("%w at %s", ErrTokenExpired, e.Expires.Format(time.RFC3339))
		}
		rec, err := issue(*e)
		if err != nil {
			return err
		}
		e.Used++
		e.Enrolled = append(e.Enrolled, rec)
		return nil
	})
}

// find returns the index of the entry of token, or -1, comparing every
// hash in constant time.
func find(tokens []Token, token string) int {
	want := []byte(hashOf(token))
	found := -1
	for i, e := range tokens {
		if subtle.ConstantTimeCompare([]byte(e.Hash), want) == 1 {
			found = i
		}
	}
	return found
}

// hashOf is the file's form of a token's hash.
func hashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// update runs change on the file's contents under its lock and writes the
// result back when change succeeds.
func (t Tokens) update(change func(*tokensFile) error) error {
	return t.locked(func() error {
		f, err := t.read()
		if err != nil {
			return err
		}
		if err := change(&f); err != nil {
			return err
		}
		return t.write(f)
	})
}

// locked runs fn holding an exclusive flock on Path.lock.
func (t Tokens) locked(fn func() error) error {
	l, err := os.OpenFile(t.Path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("lock tokens file: %w", err)
	}
	defer l.Close()
	if err := syscall.Flock(int(l.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock tokens file: %w", err)
	}
	defer syscall.Flock(int(l.Fd()), syscall.LOCK_UN)
	return fn()
}

// read parses the file; a missing file is empty.
func (t Tokens) read() (tokensFile, error) {
	var f tokensFile
	b, err := os.ReadFile(t.Path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("read tokens file: %w", err)
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("parse tokens file %s: %w", t.Path, err)
	}
	return f, nil
}

// header starts the tokens file.
const header = `# Enrollment tokens of vigil-server (--enroll-tokens), made by
# 'vigil-server ca enroll-token'. Only each token's SHA-256 is kept; each
# entry lists the agent certificates issued with it.
`

// write replaces the file atomically, readable by its owner only.
func (t Tokens) write(f tokensFile) error {
	b, err := yaml.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode tokens file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(t.Path), ".enroll-tokens-*")
	if err != nil {
		return fmt.Errorf("write tokens file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(header + string(b)); err != nil {
		tmp.Close()
		return fmt.Errorf("write tokens file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write tokens file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write tokens file: %w", err)
	}
	if err := os.Rename(tmp.Name(), t.Path); err != nil {
		return fmt.Errorf("write tokens file: %w", err)
	}
	return nil
}

// nameRE is what an agent's certificate name may be.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckName reports whether name can be an agent certificate's name:
// letters, digits, '.', '_' and '-', starting with a letter or digit, at
// most 64 bytes, and neither "ca" nor "server". The error wraps ErrBadName.
func CheckName(name string) error {
	if !nameRE.MatchString(name) || name == "ca" || name == "server" {
		return fmt.Errorf("%w: %q: want letters, digits, '.', '_' or '-', at most 64, not ca or server", ErrBadName, name)
	}
	return nil
}

// Authority issues agent certificates: CA signs them against Tokens.
type Authority struct {
	// CA signs the certificates.
	CA *pki.CA
	// Tokens are the enrollment tokens.
	Tokens Tokens
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Issued is a certificate issued by Enroll.
type Issued struct {
	// CertPEM is the certificate, PEM.
	CertPEM []byte
	// Cert is the certificate, parsed.
	Cert *x509.Certificate
}

// Enroll checks the certificate signing request csr (PEM or DER), then
// uses token once and signs a client certificate over the request's key,
// named by the token when it names one and by the request's common name
// otherwise. peer is recorded with the enrollment. Errors wrap
// pki.ErrBadCSR or ErrBadName for a bad request, ErrUnknownToken,
// ErrTokenUsed or ErrTokenExpired for a bad token; nothing is issued and
// the token is not used then.
func (a *Authority) Enroll(token string, csr []byte, peer string) (*Issued, error) {
	req, err := pki.ParseCSR(csr)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	var out *Issued
	err = a.Tokens.Use(strings.TrimSpace(token), now(), func(t Token) (Enrollment, error) {
		name := t.Name
		if name == "" {
			name = req.Subject.CommonName
			if err := CheckName(name); err != nil {
				return Enrollment{}, err
			}
		}
		certPEM, cert, err := a.CA.SignClient(req, name)
		if err != nil {
			return Enrollment{}, err
		}
		out = &Issued{CertPEM: certPEM, Cert: cert}
		return Enrollment{Name: name, Serial: cert.SerialNumber.Text(16), Time: now().UTC().Truncate(time.Second),
			NotAfter: cert.NotAfter.UTC(), Peer: peer}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	return out, nil
}
