package enroll_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/server/enroll"
)

func TestTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), enroll.TokensFile)
	tokens := enroll.Tokens{Path: path}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	token, entry, err := tokens.Create(enroll.Options{Uses: 2}, now)
	if err != nil {
		t.Fatal(err)
	}
	if entry.Uses != 2 || !entry.Expires.Equal(now.Add(enroll.DefaultTTL)) {
		t.Errorf("entry %+v", entry)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), token) || !strings.Contains(string(b), entry.Hash) {
		t.Errorf("tokens file holds the token or lacks its hash:\n%s", b)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("tokens file mode %v, %v, want 0600", fi.Mode(), err)
	}

	// A failing issue leaves the token as it was.
	boom := errors.New("boom")
	if err := tokens.Use(token, now, func(enroll.Token) (enroll.Enrollment, error) { return enroll.Enrollment{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("Use with a failing issue: %v", err)
	}
	for i := range 2 {
		if err := tokens.Use(token, now, func(enroll.Token) (enroll.Enrollment, error) { return enroll.Enrollment{Name: "h"}, nil }); err != nil {
			t.Fatalf("use %d: %v", i+1, err)
		}
	}
	ok := func(enroll.Token) (enroll.Enrollment, error) { return enroll.Enrollment{}, nil }
	if err := tokens.Use(token, now, ok); !errors.Is(err, enroll.ErrTokenUsed) {
		t.Errorf("third use: %v, want ErrTokenUsed", err)
	}
	if err := tokens.Use("enroll-nope", now, ok); !errors.Is(err, enroll.ErrUnknownToken) {
		t.Errorf("unknown token: %v, want ErrUnknownToken", err)
	}
	late, _, err := tokens.Create(enroll.Options{TTL: time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := tokens.Use(late, now.Add(time.Minute), ok); !errors.Is(err, enroll.ErrTokenExpired) {
		t.Errorf("expired token: %v, want ErrTokenExpired", err)
	}
	list, err := tokens.List()
	if err != nil || len(list) != 2 || list[0].Used != 2 || len(list[0].Enrolled) != 2 || list[1].Used != 0 {
		t.Errorf("List: %+v, %v", list, err)
	}
	for _, name := range []string{"", "ca", "server", "a/b", ".hidden", strings.Repeat("x", 65)} {
		if err := enroll.CheckName(name); !errors.Is(err, enroll.ErrBadName) {
			t.Errorf("CheckName(%q) = %v", name, err)
		}
	}
}
