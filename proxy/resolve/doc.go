// Package resolve holds vncedge's platform resolvers: they authenticate a
// viewer's upgrade request on the reference platform's routes and turn it
// into a [proxy.Route].
//
// Routes are /v1/stream/vnc/{kind}/{id} and /v1/stream/messages/{kind}/{id},
// also under /api, with kind one of browser_session, task and workflow_run.
// The query carries client_id (required) and a credential: apikey, or
// token=Bearer <jwt>; the x-api-key and Authorization headers work too (see
// [Credentials]).
//
// [TokenResolver] checks signed JWTs and needs no network call; the token's
// expiry ends the session. [HTTPResolver] asks a control plane and is also
// the [proxy.Verifier] that re-checks liveness; many viewers of one session
// share its calls. Both answer refusals as *upgrade.Error: 400 without
// client_id, 401 without or with bad credentials, 403 for another
// organization's session, 404 for an unknown one, 409 for a session that is
// not live, 503 when the control plane cannot be reached.
//
// Credentials never appear in error messages.
package resolve
