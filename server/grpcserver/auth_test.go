package grpcserver

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestParseTokens(t *testing.T) {
	sum := sha256.Sum256([]byte("hashed-token-0123456789"))
	yaml := "plain-token-0123456789: {name: vera, role: viewer}\n" +
		"\"sha256:" + hex.EncodeToString(sum[:]) + "\": {name: ada, role: admin}\n"
	json := `{"plain-token-0123456789": {"name": "vera", "role": "viewer"}}`
	for _, src := range []string{yaml, json} {
		tok, err := ParseTokens([]byte(src))
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if id, ok := tok.Lookup("plain-token-0123456789"); !ok || id != (Identity{"vera", RoleViewer}) {
			t.Errorf("plain token: %v %v", id, ok)
		}
		if _, ok := tok.Lookup("nope"); ok {
			t.Error("unknown token found")
		}
	}
	tok, _ := ParseTokens([]byte(yaml))
	if id, ok := tok.Lookup("hashed-token-0123456789"); !ok || id.Role != RoleAdmin {
		t.Errorf("hashed token: %v %v", id, ok)
	}
	for src, want := range map[string]string{
		"":                               "no tokens",
		"short: {name: a, role: viewer}": "shorter than 16",
		"long-enough-token-1: {name: a, role: x}":                `role "x"`,
		"long-enough-token-1: {role: viewer}":                    "without a name",
		"sha256:zz: {name: a, role: viewer}":                     "not a hex SHA-256",
		"long-enough-token-1: {name: a, role: viewer, extra: 1}": "extra",
	} {
		if _, err := ParseTokens([]byte(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTokens(%q) = %v, want an error with %q", src, err, want)
		}
	}
}
