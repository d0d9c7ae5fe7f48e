package proxy

import (
	"net/http"

	"vncedge/proxy/upgrade"
)

// refusalAttrs are the log attributes that explain a refused upgrade beyond
// its status: for a refused origin, the Origin and Host the browser sent and
// the flag that allows it.
func refusalAttrs(r *upgrade.Request, he *upgrade.Error) []any {
	if r == nil || he.Status != http.StatusForbidden || r.Origin == "" {
		return nil
	}
	return []any{"origin", r.Origin, "host", r.Host, "flag", "--allowed-origins"}
}
