package resolve

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"vncedge/proxy"
	"vncedge/rfbparse"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type testKeys struct {
	secret, otherSecret []byte
	ed, otherEd         ed25519.PrivateKey
	rsa, otherRSA       *rsa.PrivateKey
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func mustKeys(t *testing.T) testKeys {
	t.Helper()
	keysOnce.Do(func() {
		keys.secret = []byte("0123456789abcdef0123456789abcdef")
		keys.otherSecret = []byte("fedcba9876543210fedcba9876543210")
		_, keys.ed, _ = ed25519.GenerateKey(rand.Reader)
		_, keys.otherEd, _ = ed25519.GenerateKey(rand.Reader)
		keys.rsa, _ = rsa.GenerateKey(rand.Reader, 2048)
		keys.otherRSA, _ = rsa.GenerateKey(rand.Reader, 2048)
	})
	if keys.ed == nil || keys.rsa == nil || keys.otherRSA == nil {
		t.Fatal("key generation failed")
	}
	return keys
}

func newTokenResolver(t *testing.T, mod func(*TokenConfig)) *TokenResolver {
	t.Helper()
	k := mustKeys(t)
	cfg := TokenConfig{
		HS256Secret:    k.secret,
		PublicKeys:     []crypto.PublicKey{k.ed.Public(), &k.rsa.PublicKey},
		DefaultControl: rfbparse.Agent,
		Now:            func() time.Time { return t0 },
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := NewTokenResolver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func claims() TokenClaims {
	return TokenClaims{
		Org: "o_1", Kind: "browser_session", ID: "pbs_1",
		BrowserAddress: "wss://edge.example/pbs_1/tk/devtools/browser/b1",
		RegisteredClaims: jwt.RegisteredClaims{
			ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour)),
		},
	}
}

func mint(t *testing.T, m jwt.SigningMethod, key any, c TokenClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const vncPath = "/v1/stream/vnc/browser_session/pbs_1"

func tokenRequest(tok, clientID string) url.Values {
	return url.Values{"client_id": {clientID}, "token": {"Bearer " + tok}}
}

func TestTokenValid(t *testing.T) {
	k := mustKeys(t)
	r := newTokenResolver(t, nil)
	for _, tc := range []struct {
		name string
		m    jwt.SigningMethod
		key  any
	}{
		{"HS256", jwt.SigningMethodHS256, k.secret},
		{"EdDSA", jwt.SigningMethodEdDSA, k.ed},
		{"RS256", jwt.SigningMethodRS256, k.rsa},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := claims()
			c.CDPURL = "ws://10.0.0.1:9222/devtools/browser/x"
			tok := mint(t, tc.m, tc.key, c)
			rt, err := r.Resolve(context.Background(), request(vncPath, tokenRequest(tok, "c1")))
			if err != nil {
				t.Fatal(err)
			}
			if rt.Kind != "browser_session" || rt.ID != "pbs_1" || rt.Organization != "o_1" || rt.ClientID != "c1" {
				t.Errorf("route identity = %+v", rt)
			}
			if rt.Upstream.String() != "wss://edge.example/vnc/pbs_1/tk" {
				t.Errorf("upstream = %s", rt.Upstream)
			}
			if rt.CDPURL != c.CDPURL {
				t.Errorf("cdp = %q", rt.CDPURL)
			}
			if !rt.Expires.Equal(t0.Add(time.Hour)) {
				t.Errorf("expires = %v", rt.Expires)
			}
			if rt.Control != rfbparse.Agent {
				t.Errorf("control = %v", rt.Control)
			}
			if rt.Credential != "Bearer "+tok || rt.Live != r {
				t.Errorf("credential or live not set")
			}
		})
	}
}

func TestTokenAuthorizationHeaderAndBindings(t *testing.T) {
	k := mustKeys(t)
	r := newTokenResolver(t, func(c *TokenConfig) { c.UpstreamAPIKey = "edge-key" })
	c := claims()
	c.ClientID = "c1"
	c.Upstream = "wss://vnc.example/s"
	tok := mint(t, jwt.SigningMethodHS256, k.secret, c)

	rt, err := r.Resolve(context.Background(), request(vncPath, url.Values{"client_id": {"c1"}},
		[2]string{"authorization", "Bearer " + tok}))
	if err != nil {
		t.Fatal(err)
	}
	if rt.Upstream.String() != "wss://vnc.example/s" || rt.Header.Get("x-api-key") != "edge-key" {
		t.Errorf("upstream %s header %v: explicit upstream with edge key expected", rt.Upstream, rt.Header)
	}
	// The message channel of the same session resolves too.
	if _, err := r.Resolve(context.Background(), request("/api/v1/stream/messages/browser_session/pbs_1", tokenRequest(tok, "c1"))); err != nil {
		t.Errorf("messages channel: %v", err)
	}
}

func TestTokenRefusals(t *testing.T) {
	k := mustKeys(t)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	pkix, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	pkixPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	hs := func(c TokenClaims) string { return mint(t, jwt.SigningMethodHS256, k.secret, c) }
	valid := hs(claims())

	rsaOnly := newTokenResolver(t, func(c *TokenConfig) { c.HS256Secret = nil; c.PublicKeys = []crypto.PublicKey{&k.rsa.PublicKey} })
	all := newTokenResolver(t, nil)

	tests := []struct {
		name     string
		r        *TokenResolver
		tok      string
		clientID string
		path     string
		status   int
	}{
		{name: "expired", tok: hs(with(claims(), func(c *TokenClaims) { c.ExpiresAt = jwt.NewNumericDate(t0.Add(-time.Minute)) })), status: 401},
		{name: "nbf in future", tok: hs(with(claims(), func(c *TokenClaims) { c.NotBefore = jwt.NewNumericDate(t0.Add(time.Minute)) })), status: 401},
		{name: "no exp", tok: hs(with(claims(), func(c *TokenClaims) { c.ExpiresAt = nil })), status: 401},
		{name: "forged signature", tok: forge(t, valid), status: 401},
		{name: "wrong HS256 secret", tok: mint(t, jwt.SigningMethodHS256, k.otherSecret, claims()), status: 401},
		{name: "wrong Ed25519 key", tok: mint(t, jwt.SigningMethodEdDSA, k.otherEd, claims()), status: 401},
		{name: "wrong RSA key", tok: mint(t, jwt.SigningMethodRS256, k.otherRSA, claims()), status: 401},
		{name: "alg none", tok: mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims()), status: 401},
		{name: "alg none hand-made", tok: noneToken(t, claims()), status: 401},
		{name: "RSA PEM as HS256 secret", r: rsaOnly, tok: mint(t, jwt.SigningMethodHS256, pubPEM, claims()), status: 401},
		{name: "RSA PKIX PEM as HS256 secret", r: rsaOnly, tok: mint(t, jwt.SigningMethodHS256, pkixPEM, claims()), status: 401},
		{name: "RSA DER as HS256 secret", r: rsaOnly, tok: mint(t, jwt.SigningMethodHS256, pkix, claims()), status: 401},
		{name: "RSA PEM as HS256 secret, HS256 enabled", tok: mint(t, jwt.SigningMethodHS256, pubPEM, claims()), status: 401},
		{name: "HS256 on an RSA-only resolver", r: rsaOnly, tok: valid, status: 401},
		{name: "RS384 not enabled", tok: mint(t, jwt.SigningMethodRS384, k.rsa, claims()), status: 401},
		{name: "kind mismatch", tok: hs(with(claims(), func(c *TokenClaims) { c.Kind = "task" })), status: 403},
		{name: "id mismatch", tok: hs(with(claims(), func(c *TokenClaims) { c.ID = "pbs_2" })), status: 403},
		{name: "client_id binding mismatch", tok: hs(with(claims(), func(c *TokenClaims) { c.ClientID = "other" })), status: 403},
		{name: "no org", tok: hs(with(claims(), func(c *TokenClaims) { c.Org = "" })), status: 401},
		{name: "no upstream", tok: hs(with(claims(), func(c *TokenClaims) { c.BrowserAddress = "" })), status: 401},
		{name: "garbage", tok: "not-a-jwt", status: 401},
		{name: "missing client_id", tok: valid, clientID: "-", status: 400},
		{name: "unknown route", tok: valid, path: "/v1/stream/vnc/session/pbs_1", status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.r
			if r == nil {
				r = all
			}
			path := tt.path
			if path == "" {
				path = vncPath
			}
			q := tokenRequest(tt.tok, "c1")
			if tt.clientID == "-" {
				q.Del("client_id")
			}
			rt, err := r.Resolve(context.Background(), request(path, q))
			if got := status(err); got != tt.status {
				t.Fatalf("route set %v, err = %v; want status %d", rt != nil, err, tt.status)
			}
			if strings.Contains(err.Error(), tt.tok) {
				t.Errorf("error quotes the token: %v", err)
			}
		})
	}

	// An API key is not a token.
	_, err := all.Resolve(context.Background(), request(vncPath, url.Values{"client_id": {"c1"}, "apikey": {"k"}}))
	if status(err) != 401 {
		t.Errorf("api key: err = %v, want 401", err)
	}
	// The refused tokens' claims were otherwise good: the valid one passes.
	if _, err := all.Resolve(context.Background(), request(vncPath, tokenRequest(valid, "c1"))); err != nil {
		t.Errorf("valid token: %v", err)
	}
}

func with(c TokenClaims, f func(*TokenClaims)) TokenClaims { f(&c); return c }

// forge changes the payload of a signed token and keeps its signature.
func forge(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(payload), `"o_1"`, `"o_2"`, 1)
	if forged == string(payload) {
		t.Fatal("nothing to forge")
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
	return strings.Join(parts, ".")
}

// noneToken builds an unsigned token by hand, with an empty signature.
func noneToken(t *testing.T, c TokenClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SigningString()
	if err != nil {
		t.Fatal(err)
	}
	_, payload, _ := strings.Cut(s, ".")
	return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + payload + "."
}

func TestTokenLeewayAndExpiry(t *testing.T) {
	k := mustKeys(t)
	now := t0
	r := newTokenResolver(t, func(c *TokenConfig) {
		c.Leeway = 10 * time.Second
		c.Now = func() time.Time { return now }
	})
	c := claims()
	c.ExpiresAt = jwt.NewNumericDate(t0.Add(-5 * time.Second)) // expired, within leeway
	rt, err := r.Resolve(context.Background(), request(vncPath, tokenRequest(mint(t, jwt.SigningMethodEdDSA, k.ed, c), "c1")))
	if err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	if want := t0.Add(5 * time.Second); !rt.Expires.Equal(want) {
		t.Fatalf("expires = %v, want exp + leeway = %v", rt.Expires, want)
	}
	if err := rt.Live.Verify(context.Background(), rt); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	now = rt.Expires
	err = rt.Live.Verify(context.Background(), rt)
	if !errors.Is(err, ErrTokenExpired) || !errors.Is(err, proxy.ErrSessionEnded) || Reason(err) != "token-expired" {
		t.Fatalf("at expiry: err = %v (reason %q)", err, Reason(err))
	}
}

func TestNewTokenResolverConfig(t *testing.T) {
	k := mustKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		cfg  TokenConfig
	}{
		{"nothing", TokenConfig{}},
		{"short secret", TokenConfig{HS256Secret: []byte("short")}},
		{"small RSA key", TokenConfig{PublicKeys: []crypto.PublicKey{&small.PublicKey}}},
		{"private key", TokenConfig{PublicKeys: []crypto.PublicKey{k.ed}}},
		{"negative leeway", TokenConfig{HS256Secret: k.secret, Leeway: -time.Second}},
	} {
		if _, err := NewTokenResolver(tt.cfg); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}

func TestLoadPublicKeys(t *testing.T) {
	k := mustKeys(t)
	dir := t.TempDir()
	edDER, _ := x509.MarshalPKIXPublicKey(k.ed.Public())
	rsaDER, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	both := append(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: edDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER})...)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.otherRSA.PublicKey)})
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := LoadPublicKeys(write("both.pem", both), write("pkcs1.pem", pkcs1))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d keys, want 3", len(got))
	}
	r, err := NewTokenResolver(TokenConfig{PublicKeys: got, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{
		mint(t, jwt.SigningMethodEdDSA, k.ed, claims()),
		mint(t, jwt.SigningMethodRS256, k.rsa, claims()),
		mint(t, jwt.SigningMethodRS256, k.otherRSA, claims()),
	} {
		if _, err := r.Resolve(context.Background(), request(vncPath, tokenRequest(tok, "c1"))); err != nil {
			t.Errorf("loaded keys: %v", err)
		}
	}

	priv, _ := x509.MarshalPKCS8PrivateKey(k.ed)
	for name, b := range map[string][]byte{
		"private.pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}),
		"empty.pem":   []byte("no pem here\n"),
		"broken.pem":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}),
	} {
		if _, err := LoadPublicKeys(write(name, b)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := LoadPublicKeys(filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("missing file: accepted")
	}
}
