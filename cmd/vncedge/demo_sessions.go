package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"

	"vncedge/cmd/vncedge/demo"
	"vncedge/proxy"
	"vncedge/rfbparse"
)

// runSessionsDemo is `vncedge demo --sessions FILE`: vncedge resolving the
// sessions file, and the viewer page (VNC and message channels, take
// control, clipboard) on the admin server for the file's first
// browser_session (else its first session), with an API key of its
// organization in the page's address.
func runSessionsDemo(o *options) error {
	if o.admin == "" {
		return errors.New("demo: the viewer page is served by the admin server: set --admin")
	}
	b, err := os.ReadFile(o.sessions)
	if err != nil {
		return fmt.Errorf("sessions file: %w", err)
	}
	f, err := proxy.ParseSessionsFile(o.sessions, b, rfbparse.Agent)
	if err != nil {
		return err
	}
	rt := f.Sessions[0]
	for _, s := range f.Sessions {
		if s.Kind == "browser_session" {
			rt = s
			break
		}
	}
	key := ""
	for _, org := range f.Organizations {
		for _, k := range org.APIKeys {
			if org.ID == rt.Organization && k.Role == proxy.RoleController && key == "" {
				key = k.Key
			}
		}
	}
	if key == "" {
		return fmt.Errorf("demo: organization %q has no controller api key", rt.Organization)
	}
	listenPort, err := o.listenPort()
	if err != nil {
		return err
	}
	if o.origins == "" {
		o.origins = demo.AdminOrigins(o.admin)
	}
	fmt.Printf("\n  vncedge demo, %s/%s from %s: open %s?apikey=%s\n\n", rt.Kind, rt.ID, o.sessions,
		demo.PageURL(o.admin), url.QueryEscape(key))
	return serve(o, demo.Handler(demo.PageConfig{ListenPort: listenPort, Kind: rt.Kind, ID: rt.ID, Clipboard: rt.CDPURL != ""}))
}
