package auth

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Identity is what a valid token says. A connection keeps it for its life,
// so it holds what plugins are given and no more: the claims as the token's
// own payload JSON (an object, compacted) rather than a decoded map, which
// plugins receive as JSON anyway, and a copy of the token that does not
// keep the buffer it was read from (a handshake's request line) alive.
type Identity struct {
	UserID    string
	Claims    json.RawMessage // the token's payload: a JSON object, compact
	ExpiresAt time.Time       // zero when the token does not expire
	Token     string
}

// Tokens verifies and mints HS256 tokens with one secret.
type Tokens struct {
	secret []byte
	now    func() time.Time
}

// NewTokens returns a verifier for secret.
func NewTokens(secret string) *Tokens {
	return &Tokens{secret: []byte(secret), now: time.Now}
}

// ErrNoSecret means no token secret is configured, so no token can be valid.
var ErrNoSecret = errors.New("no token secret is configured (auth.token_secret)")

// Verify checks a token's signature, algorithm and expiry and returns the
// identity it carries. The error says what is wrong, for the client.
func (t *Tokens) Verify(token string) (*Identity, error) {
	if len(t.secret) == 0 {
		return nil, ErrNoSecret
	}
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return t.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(t.now))
	if err != nil {
		switch {
		case parsed != nil && parsed.Method != nil && parsed.Method.Alg() != "HS256":
			return nil, fmt.Errorf("token signed with %s: herald accepts HS256 tokens only", parsed.Method.Alg())
		case errors.Is(err, jwt.ErrTokenExpired):
			return nil, errors.New("token expired")
		case errors.Is(err, jwt.ErrTokenMalformed):
			return nil, errors.New("token malformed")
		case errors.Is(err, jwt.ErrTokenSignatureInvalid):
			return nil, errors.New("token signature invalid")
		default:
			return nil, fmt.Errorf("token invalid: %w", err)
		}
	}
	sub, isString := claims["sub"].(string)
	switch {
	case claims["sub"] != nil && !isString:
		return nil, errors.New(`token's "sub" claim must be a string (the user id)`)
	case sub == "":
		return nil, errors.New(`token has no "sub" claim`)
	}
	payload, err := payloadJSON(token)
	if err != nil {
		return nil, err
	}
	id := &Identity{UserID: sub, Claims: payload, Token: strings.Clone(token)}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		id.ExpiresAt = exp.Time
	}
	return id, nil
}

// payloadJSON returns the payload segment of a token that parsed, decoded
// and compacted into a slice of its own. The parse decoded the same segment
// into a JSON object, so neither step fails on a verified token; they are
// checked all the same.
func payloadJSON(token string) (json.RawMessage, error) {
	_, rest, _ := strings.Cut(token, ".")
	seg, _, _ := strings.Cut(rest, ".")
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, fmt.Errorf("token malformed: payload: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("token malformed: payload: %w", err)
	}
	if buf.Len() == len(raw) {
		return raw, nil // already compact: raw is exactly its length
	}
	out := make(json.RawMessage, buf.Len())
	copy(out, buf.Bytes())
	return out, nil
}

// Mint signs a token for sub valid for ttl (0: no expiry) with extra claims.
// A negative ttl is an error (it would mean a token that is already
// expired, and silently minting one that never expires instead is worse),
// and so is an extra claim that Mint sets itself: "sub" (give sub), "exp"
// and "iat" (give ttl).
func (t *Tokens) Mint(sub string, ttl time.Duration, extra map[string]any) (string, error) {
	if len(t.secret) == 0 {
		return "", ErrNoSecret
	}
	if ttl < 0 {
		return "", fmt.Errorf("mint token: ttl %s is negative: give a positive ttl, or 0 for a token that never expires", ttl)
	}
	claims := jwt.MapClaims{}
	for k, v := range extra {
		switch k {
		case "sub":
			return "", errors.New(`mint token: extra claim "sub" would be replaced by the subject: give the subject instead`)
		case "exp", "iat":
			return "", fmt.Errorf("mint token: extra claim %q is set from the ttl: give the ttl instead", k)
		}
		claims[k] = v
	}
	now := t.now()
	claims["sub"] = sub
	claims["iat"] = now.Unix()
	if ttl > 0 {
		claims["exp"] = now.Add(ttl).Unix()
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// APIKeys checks backend keys in constant time.
type APIKeys struct{ keys [][]byte }

// NewAPIKeys returns a checker for keys (empty keys are ignored).
func NewAPIKeys(keys []string) *APIKeys {
	a := &APIKeys{}
	for _, k := range keys {
		if k != "" {
			a.keys = append(a.keys, []byte(k))
		}
	}
	return a
}

// Valid reports whether key is one of the configured keys.
func (a *APIKeys) Valid(key string) bool {
	ok := 0
	for _, k := range a.keys {
		ok |= subtle.ConstantTimeCompare(k, []byte(key))
	}
	return ok == 1 && key != ""
}

// BearerToken returns the token of an "Authorization: Bearer" header.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Origins checks the Origin header of WebSocket upgrades.
type Origins struct {
	allowed map[string]bool
	any     bool
}

// NewOrigins allows the given origins; "*" allows every origin.
func NewOrigins(allowed []string) *Origins {
	o := &Origins{allowed: make(map[string]bool)}
	for _, a := range allowed {
		if a == "*" {
			o.any = true
		}
		o.allowed[strings.ToLower(strings.TrimRight(a, "/"))] = true
	}
	return o
}

// Check allows requests without an Origin (non-browser clients), requests
// from an allowed origin, and same-host requests.
func (o *Origins) Check(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || o.any {
		return true
	}
	if o.allowed[strings.ToLower(origin)] {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}
