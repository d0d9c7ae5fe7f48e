package resolve

import (
	"net/http"
	"strings"

	"vncedge/proxy"
	"vncedge/proxy/upgrade"
)

// CredKind says what kind of credential a viewer presented.
type CredKind uint8

const (
	// CredNone: no credential.
	CredNone CredKind = iota
	// CredAPIKey: an API key (query apikey, header x-api-key), forwarded as
	// x-api-key.
	CredAPIKey
	// CredJWT: a bearer token (query token, header Authorization), forwarded
	// as Authorization: Bearer.
	CredJWT
)

// String returns "none", "api-key" or "jwt".
func (k CredKind) String() string {
	switch k {
	case CredAPIKey:
		return "api-key"
	case CredJWT:
		return "jwt"
	}
	return "none"
}

// Credentials extracts the viewer's client_id and credential from an upgrade
// request. The credential comes from the first non-empty of: query apikey,
// query token ("Bearer <jwt>" or the bare jwt), header x-api-key, header
// Authorization ("Bearer <jwt>"; other schemes are ignored). A missing
// client_id is a 400 *upgrade.Error, a missing credential a 401 one.
func Credentials(r *upgrade.Request) (clientID, credential string, kind CredKind, err error) {
	clientID = strings.TrimSpace(r.Query.Get("client_id"))
	if clientID == "" {
		return "", "", CredNone, &upgrade.Error{Status: http.StatusBadRequest, Message: "missing client_id"}
	}
	if k := strings.TrimSpace(r.Query.Get("apikey")); k != "" {
		return clientID, k, CredAPIKey, nil
	}
	if t := bearer(r.Query.Get("token"), true); t != "" {
		return clientID, t, CredJWT, nil
	}
	if k := strings.TrimSpace(r.Get("x-api-key")); k != "" {
		return clientID, k, CredAPIKey, nil
	}
	if t := bearer(r.Get("Authorization"), false); t != "" {
		return clientID, t, CredJWT, nil
	}
	return "", "", CredNone, &upgrade.Error{Status: http.StatusUnauthorized, Message: "missing credentials"}
}

// bearer returns the token of "Bearer <token>" (scheme matched without regard
// to case), or "" for any other value. With bare, a value without a scheme is
// taken as the token itself.
func bearer(v string, bare bool) string {
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "bearer") {
		return ""
	}
	if len(v) > len("bearer ") && strings.EqualFold(v[:len("bearer ")], "bearer ") {
		return strings.TrimSpace(v[len("bearer "):])
	}
	if bare && !strings.ContainsAny(v, " \t") {
		return v
	}
	return ""
}

// StreamPath splits the request's raw path into channel ("vnc" or
// "messages"), kind and id (proxy.ParseStreamTarget: an encoded slash is not a
// separator, ids are proxy.ValidID); any other path is a 404 *upgrade.Error.
func StreamPath(r *upgrade.Request) (channel, kind, id string, err error) {
	channel, kind, id, ok := proxy.ParseStreamTarget(r)
	if !ok {
		return "", "", "", &upgrade.Error{Status: http.StatusNotFound, Message: "unknown route"}
	}
	return channel, kind, id, nil
}

// wireCredential is the form a route keeps in proxy.Route.Credential: API
// keys as they are, JWTs as "Bearer <jwt>", so a Verifier can forward the
// credential the way the viewer presented it.
func wireCredential(kind CredKind, cred string) string {
	if kind == CredJWT {
		return "Bearer " + cred
	}
	return cred
}

// forwardHeader returns the header field that forwards a route's credential
// (see wireCredential) to the control plane.
func forwardHeader(wire string) (name, value string) {
	if t := bearer(wire, false); t != "" {
		return "Authorization", "Bearer " + t
	}
	return "X-Api-Key", wire
}
