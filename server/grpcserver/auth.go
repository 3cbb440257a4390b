package grpcserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Role is what a bearer token allows; each role allows what the ones
// below it do.
type Role int

// The roles, weakest first.
const (
	// RoleNone allows nothing; it is the zero Role.
	RoleNone Role = iota
	// RoleViewer reads: lists, gets and follows.
	RoleViewer
	// RoleResponder also triages incidents and requests responses.
	RoleResponder
	// RoleAdmin may call everything.
	RoleAdmin
)

// String is the role's name as written in a tokens file.
func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleResponder:
		return "responder"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole reads a role name: viewer, responder or admin.
func ParseRole(s string) (Role, error) {
	for _, r := range []Role{RoleViewer, RoleResponder, RoleAdmin} {
		if s == r.String() {
			return r, nil
		}
	}
	return RoleNone, fmt.Errorf("role %q: want viewer, responder or admin", s)
}

// Identity is who a token belongs to.
type Identity struct {
	// Name names the token's holder in logs.
	Name string
	// Role is what the token allows.
	Role Role
}

// Tokens maps the SHA-256 of each bearer token to its identity. Only
// hashes are kept in memory.
type Tokens struct {
	byHash map[[sha256.Size]byte]Identity
}

// tokenEntry is one entry of a tokens file.
type tokenEntry struct {
	Name string `yaml:"name"`
	Role string `yaml:"role"`
}

// ParseTokens reads a tokens file, YAML or JSON: a map from token to its
// holder's name and role,
//
//	"sha256:9f86d0…": {name: alice, role: responder}
//	"s3cret-token":   {name: ci, role: viewer}
//
// A key "sha256:HEX" is the hex SHA-256 of the token (printf %s TOKEN |
// sha256sum), so that the file need not hold the token itself; any other
// key is the token.
func ParseTokens(b []byte) (*Tokens, error) {
	var raw map[string]tokenEntry
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse tokens: %w", err)
	}
	if len(raw) == 0 {
		return nil, errors.New("parse tokens: no tokens")
	}
	t := &Tokens{byHash: make(map[[sha256.Size]byte]Identity, len(raw))}
	for key, e := range raw {
		label := e.Name
		if label == "" {
			return nil, errors.New("parse tokens: a token without a name")
		}
		role, err := ParseRole(e.Role)
		if err != nil {
			return nil, fmt.Errorf("parse tokens: %s: %w", label, err)
		}
		var h [sha256.Size]byte
		if hexSum, ok := strings.CutPrefix(key, "sha256:"); ok {
			b, err := hex.DecodeString(hexSum)
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("parse tokens: %s: %q is not a hex SHA-256", label, key)
			}
			copy(h[:], b)
		} else {
			if len(key) < 16 {
				return nil, fmt.Errorf("parse tokens: %s: token shorter than 16 characters", label)
			}
			h = sha256.Sum256([]byte(key))
		}
		t.byHash[h] = Identity{Name: label, Role: role}
	}
	return t, nil
}

// LoadTokens reads the tokens file at path (see ParseTokens).
func LoadTokens(path string) (*Tokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	t, err := ParseTokens(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Lookup returns the identity of token, comparing hashes in constant time.
func (t *Tokens) Lookup(token string) (Identity, bool) {
	h := sha256.Sum256([]byte(token))
	var found Identity
	ok := false
	for k, id := range t.byHash {
		if subtle.ConstantTimeCompare(k[:], h[:]) == 1 {
			found, ok = id, true
		}
	}
	return found, ok
}

// Policy says who may call what. A method of a service in CertServices
// needs a client certificate verified by the server's TLS configuration
// (its ClientCAs); a method of a service in TokenServices needs a bearer
// token whose role is at least MethodRoles[method], RoleAdmin for methods
// not listed. Other methods (health, reflection) are open. A nil Tokens
// turns the token check off; an empty CertServices the certificate check.
type Policy struct {
	// Tokens are the accepted bearer tokens; nil means none are checked.
	Tokens *Tokens
	// TokenServices are the full service names (vigil.v1.IncidentService)
	// whose methods need a token.
	TokenServices map[string]bool
	// MethodRoles is the least role each full method name
	// (/vigil.v1.IncidentService/List) needs.
	MethodRoles map[string]Role
	// CertServices are the full service names whose methods need a
	// verified client certificate.
	CertServices map[string]bool
}

// identityKey is the context key of the caller's Identity.
type identityKey struct{}

// CallerIdentity returns the identity of the token the call carried, if
// the call was checked against a token.
func CallerIdentity(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// check authorizes a call of fullMethod; it returns the context to call
// the handler with, or a status error.
func (p *Policy) check(ctx context.Context, fullMethod string) (context.Context, error) {
	service := serviceOf(fullMethod)
	if p.CertServices[service] && !verifiedPeer(ctx) {
		return nil, status.Error(codes.Unauthenticated, "a client certificate signed by the server's client CA is required")
	}
	token, _ := bearer(ctx)
	return p.Authorize(ctx, fullMethod, token)
}

// Authorize checks token, the bearer token a call of fullMethod carried
// ("" for none), as the interceptors do for calls over gRPC, so that
// another front end of the same services (the web console) enforces the
// same roles. It returns the context to run the handler with, which
// carries the caller's Identity (see CallerIdentity) when a token was
// checked, or a status error: Unauthenticated for a missing or unknown
// token, PermissionDenied for a role below the method's. When the policy
// checks no tokens, or none for fullMethod's service, it returns ctx.
func (p *Policy) Authorize(ctx context.Context, fullMethod, token string) (context.Context, error) {
	if p == nil || p.Tokens == nil || !p.TokenServices[serviceOf(fullMethod)] {
		return ctx, nil
	}
	if token == "" {
		return nil, status.Error(codes.Unauthenticated, "missing bearer token (authorization: Bearer TOKEN)")
	}
	id, ok := p.Tokens.Lookup(token)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "unknown bearer token")
	}
	need, ok := p.MethodRoles[fullMethod]
	if !ok {
		need = RoleAdmin
	}
	if id.Role < need {
		return nil, status.Errorf(codes.PermissionDenied, "%s (role %s) may not call %s: it needs role %s", id.Name, id.Role, fullMethod, need)
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}

// UnaryInterceptor enforces the policy on unary calls.
func (p *Policy) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := p.check(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor enforces the policy on streaming calls.
func (p *Policy) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := p.check(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	}
}

// contextStream is a server stream with another context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// serviceOf returns the service part of a full method name.
func serviceOf(fullMethod string) string {
	s := strings.TrimPrefix(fullMethod, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// bearer returns the token of the call's authorization header.
func bearer(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		scheme, token, ok := strings.Cut(v, " ")
		if ok && strings.EqualFold(scheme, "bearer") && token != "" {
			return strings.TrimSpace(token), true
		}
	}
	return "", false
}

// verifiedPeer reports whether the caller presented a client certificate
// that the TLS handshake verified.
func verifiedPeer(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	return ok && len(info.State.VerifiedChains) > 0
}

// PeerCertName returns the common name of the caller's verified client
// certificate, or "".
func PeerCertName(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 {
		return ""
	}
	return info.State.VerifiedChains[0][0].Subject.CommonName
}
