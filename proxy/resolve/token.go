package resolve

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"vncedge/proxy"
	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

// MinHS256SecretSize is the shortest HS256 secret NewTokenResolver accepts.
const MinHS256SecretSize = 32

// TokenConfig configures a [TokenResolver].
type TokenConfig struct {
	// HS256Secret enables HS256 tokens signed with this shared secret (at
	// least MinHS256SecretSize bytes); nil: HS256 is refused.
	HS256Secret []byte
	// PublicKeys enables EdDSA (ed25519.PublicKey) and RS256 (*rsa.PublicKey,
	// at least 2048 bits) tokens; see LoadPublicKeys.
	PublicKeys []crypto.PublicKey
	// Leeway tolerates clock skew on exp and nbf. A session ends at exp +
	// Leeway.
	Leeway time.Duration
	// VNCPort is the websockify port for upstreams derived from a browser
	// address; 0 means DefaultVNCPort.
	VNCPort int
	// UpstreamAPIKey, when set, is sent as x-api-key to wss upstreams derived
	// from a browser address or upstream claim (a routed edge). Tokens are
	// readable by the viewer, so such a key is never carried in a claim.
	UpstreamAPIKey string
	// DefaultControl is who has control when a session starts.
	DefaultControl rfbparse.Interactor
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// TokenClaims are the claims of a stream token. exp is required; nbf is
// honoured when present.
type TokenClaims struct {
	Org            string `json:"org"`                       // organization that owns the session
	Kind           string `json:"kind"`                      // browser_session, task or workflow_run
	ID             string `json:"id"`                        // the session's id on the platform
	Upstream       string `json:"upstream,omitempty"`        // explicit tcp://, ws:// or wss:// upstream; wins over BrowserAddress
	BrowserAddress string `json:"browser_address,omitempty"` // upstream derived as in UpstreamFromBrowserAddress
	CDPURL         string `json:"cdp_url,omitempty"`         // DevTools endpoint; default: a ws(s)/http(s) browser address
	ClientID       string `json:"client_id,omitempty"`       // when set, binds the token to this client_id
	Role           string `json:"role,omitempty"`            // the viewer's role: controller (default) or viewer
	Record         *bool  `json:"record,omitempty"`          // overrides --record for this session
	jwt.RegisteredClaims
}

// TokenResolver resolves streams from signed JWTs with no network call. It is
// also the routes' Verifier: a session ends with [ErrTokenExpired] once its
// token expires.
type TokenResolver struct {
	cfg     TokenConfig
	parser  *jwt.Parser
	ed      jwt.VerificationKeySet
	rsa     jwt.VerificationKeySet
	methods []string
}

// NewTokenResolver checks cfg and returns a resolver that accepts HS256 when
// a secret is configured, EdDSA when an Ed25519 key is, and RS256 when an RSA
// key is. Every algorithm verifies only with keys of its own type, so a
// public key is never usable as an HMAC secret; "none" is never accepted.
func NewTokenResolver(cfg TokenConfig) (*TokenResolver, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("token resolver: negative leeway")
	}
	t := &TokenResolver{cfg: cfg}
	if cfg.HS256Secret != nil {
		if len(cfg.HS256Secret) < MinHS256SecretSize {
			return nil, fmt.Errorf("token resolver: HS256 secret shorter than %d bytes", MinHS256SecretSize)
		}
		t.cfg.HS256Secret = append([]byte(nil), cfg.HS256Secret...)
		t.methods = append(t.methods, jwt.SigningMethodHS256.Alg())
	}
	for i, k := range cfg.PublicKeys {
		if err := checkPublicKey(k); err != nil {
			return nil, fmt.Errorf("token resolver: public key %d: %w", i, err)
		}
		switch k := k.(type) {
		case ed25519.PublicKey:
			t.ed.Keys = append(t.ed.Keys, k)
		case *rsa.PublicKey:
			t.rsa.Keys = append(t.rsa.Keys, k)
		}
	}
	if len(t.ed.Keys) > 0 {
		t.methods = append(t.methods, jwt.SigningMethodEdDSA.Alg())
	}
	if len(t.rsa.Keys) > 0 {
		t.methods = append(t.methods, jwt.SigningMethodRS256.Alg())
	}
	if len(t.methods) == 0 {
		return nil, errors.New("token resolver: no HS256 secret and no public key")
	}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods(t.methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(t.cfg.Now),
		jwt.WithStrictDecoding(),
	)
	return t, nil
}

// keyFor returns the keys for the token's algorithm, and only those: the
// parser has already refused algorithms outside t.methods.
func (t *TokenResolver) keyFor(tok *jwt.Token) (any, error) {
	switch tok.Method {
	case jwt.SigningMethodHS256:
		if t.cfg.HS256Secret != nil {
			return t.cfg.HS256Secret, nil
		}
	case jwt.SigningMethodEdDSA:
		if len(t.ed.Keys) > 0 {
			return t.ed, nil
		}
	case jwt.SigningMethodRS256:
		if len(t.rsa.Keys) > 0 {
			return t.rsa, nil
		}
	}
	return nil, errors.New("no key for the token's algorithm")
}

// Resolve implements proxy.Resolver. The token comes from the query token or
// the Authorization header (see [Credentials]); an API key is refused.
func (t *TokenResolver) Resolve(_ context.Context, r *upgrade.Request) (*proxy.Route, error) {
	_, kind, id, err := StreamPath(r)
	if err != nil {
		return nil, err
	}
	clientID, cred, ck, err := Credentials(r)
	if err != nil {
		return nil, err
	}
	if ck != CredJWT {
		return nil, &upgrade.Error{Status: http.StatusUnauthorized, Message: "a signed token is required"}
	}
	var c TokenClaims
	if _, err := t.parser.ParseWithClaims(cred, &c, t.keyFor); err != nil {
		return nil, tokenError(err)
	}
	if c.Org == "" || c.Kind == "" || c.ID == "" {
		return nil, &upgrade.Error{Status: http.StatusUnauthorized, Message: "token lacks org, kind or id"}
	}
	if c.Kind != kind || c.ID != id {
		return nil, &upgrade.Error{Status: http.StatusForbidden, Message: "token is for another session"}
	}
	if c.ClientID != "" && c.ClientID != clientID {
		return nil, &upgrade.Error{Status: http.StatusForbidden, Message: "token is bound to another client_id"}
	}
	role, err := proxy.ParseRole(c.Role)
	if err != nil {
		return nil, &upgrade.Error{Status: http.StatusUnauthorized, Message: "token has an unknown role"}
	}
	up, hdr, err := UpstreamFromBrowserAddress(c.BrowserAddress, c.Upstream, t.cfg.VNCPort, t.cfg.UpstreamAPIKey)
	if err != nil {
		return nil, &upgrade.Error{Status: http.StatusUnauthorized, Message: "token has no usable upstream"}
	}
	cdp := cdpURL(c.CDPURL, c.BrowserAddress)
	rt := &proxy.Route{
		Kind: kind, ID: id, Organization: c.Org, ClientID: clientID, Role: role,
		Upstream: up, Header: hdr, Control: t.cfg.DefaultControl,
		CDPURL:     cdp,
		CDPHeader:  cdpHeader(up, hdr, cdp, nil),
		Expires:    c.ExpiresAt.Add(t.cfg.Leeway),
		Live:       t,
		Credential: wireCredential(CredJWT, cred),
		Record:     c.Record,
	}
	return rt, nil
}

// Verify implements proxy.Verifier: [ErrTokenExpired] once the route's
// Expires has passed, nil before.
func (t *TokenResolver) Verify(_ context.Context, rt *proxy.Route) error {
	if !rt.Expires.IsZero() && !t.cfg.Now().Before(rt.Expires) {
		return ErrTokenExpired
	}
	return nil
}

// tokenError turns a parse or validation error into a 401 whose message
// names the problem but quotes nothing from the token.
func tokenError(err error) *upgrade.Error {
	msg := "invalid token"
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		msg = "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		msg = "token not valid yet"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		msg = "token lacks exp"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		msg = "token signature invalid"
	}
	return &upgrade.Error{Status: http.StatusUnauthorized, Message: msg}
}

// cdpURL returns explicit, or else the browser address when it is a URL a
// DevTools client can open (ws, wss, http, https), or "".
func cdpURL(explicit, browserAddress string) string {
	if explicit != "" {
		return explicit
	}
	u, err := url.Parse(strings.TrimSpace(browserAddress))
	if err != nil || u.Host == "" {
		return ""
	}
	switch u.Scheme {
	case "ws", "wss", "http", "https":
		return u.String()
	}
	return ""
}
