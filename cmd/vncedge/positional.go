package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// usageLine is the command line vncedge takes, websockify's order included.
const usageLine = "usage: vncedge [flags] [[SOURCE_ADDR:]SOURCE_PORT [TARGET_ADDR:TARGET_PORT]]"

// parseInterleaved parses args with fs, allowing flags after positional
// arguments as websockify (optparse) does, and returns the positional ones.
// "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// applyPositional takes websockify's positional arguments: the listen
// address, then the target. They may not repeat --listen or --target.
func applyPositional(o *options, pos []string, set map[string]bool) error {
	if len(pos) > 2 {
		return fmt.Errorf("too many arguments %q; %s", pos, usageLine)
	}
	if len(pos) >= 1 {
		if set["listen"] {
			return fmt.Errorf("listen address given twice (--listen and %q); %s", pos[0], usageLine)
		}
		o.listen = pos[0]
	}
	if len(pos) == 2 {
		if set["target"] {
			return fmt.Errorf("target given twice (--target and %q); %s", pos[1], usageLine)
		}
		o.target = pos[1]
	}
	return nil
}

// normalizeListen accepts what websockify accepts for its source: host:port,
// [v6]:port, or a bare port, which (as in websockify) means every address.
// allAddrs reports the bare-port case, which the start-up line points out.
func normalizeListen(s string) (addr string, allAddrs bool, err error) {
	if p, err := strconv.Atoi(s); err == nil {
		if p < 0 || p > 65535 {
			return "", false, fmt.Errorf("port %d out of range", p)
		}
		return ":" + s, true, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", false, fmt.Errorf("want host:port or a port, got %q: %w", s, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return "", false, fmt.Errorf("want a port from 0 to 65535, got %q", s)
	}
	return s, host == "", nil
}

// normalizeTarget reads a websockify-style target, host:port or [v6]:port
// without a scheme, as tcp://host:port; URLs pass unchanged.
func normalizeTarget(s string) (string, error) {
	if s == "" || strings.Contains(s, "://") {
		return s, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("want tcp://host:port, ws://…, wss://… or host:port, got %q", s)
	}
	if host == "" {
		return "", errors.New("target " + strconv.Quote(s) + " names no host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("target %q: want a port from 1 to 65535", s)
	}
	return "tcp://" + net.JoinHostPort(host, port), nil
}

// describeResolver names the resolver for the start-up line, with its target
// or source (never a credential).
func describeResolver(o *options) []any {
	switch {
	case o.tokenSecretFile != "" || o.tokenPublicKeys != "":
		return []any{"resolver", "token"}
	case o.controlPlane != "":
		return []any{"resolver", "control-plane", "control_plane", redactURL(o.controlPlane)}
	case o.target != "":
		return []any{"resolver", "target", "target", redactURL(o.target)}
	case o.sessions != "":
		return []any{"resolver", "sessions", "sessions_file", o.sessions}
	}
	return nil
}

// redactURL drops userinfo and the query (where credentials ride) from raw.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// addrString is a listener's bound address, or fallback before it is bound.
func addrString(a net.Addr, fallback string) string {
	if a == nil {
		return fallback
	}
	return a.String()
}

// listenPort is the port of --listen, for the demo page's WebSockets.
func (o *options) listenPort() (int, error) {
	_, port, err := net.SplitHostPort(o.listen)
	if err != nil {
		return 0, fmt.Errorf("--listen: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return 0, fmt.Errorf("--listen: %w", err)
	}
	return p, nil
}
