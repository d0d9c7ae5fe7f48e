package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"vncedge/proxy/record"
)

// runReplay is `vncedge replay`: serve a recording to WebSocket VNC viewers,
// export it, print its info, or list a recording directory.
//
//	vncedge replay FILE [--listen ADDR] [--speed X]
//	vncedge replay --export websockify [--output OUT] FILE
//	vncedge replay --info FILE
//	vncedge replay --list DIR
func runReplay(args []string) error { return replayMain(args, os.Stdout) }

// replayMain is runReplay writing its output (info, list, export to "-") to stdout.
func replayMain(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("vncedge replay", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:6090", "address to serve the replay on (WebSocket VNC at any path; noVNC at /novnc/ when installed)")
	speed := fs.Float64("speed", 1, "playback speed (2: twice as fast)")
	export := fs.String("export", "", "write the recording in another format instead of serving it: websockify (VNC_frame_data)")
	output := fs.String("output", "-", "file --export writes (-: standard output)")
	info := fs.Bool("info", false, "print identity, duration, sizes and the annotation timeline")
	list := fs.Bool("list", false, "list the recordings under the directory given instead of FILE")
	novnc := fs.String("novnc", "/usr/share/novnc", "noVNC directory served at /novnc/ (empty: none)")
	anyFormat := fs.Bool("any-format", false, "serve recordings in pixel formats noVNC cannot show")
	origins := fs.String("allowed-origins", "", "comma-separated browser origins allowed besides the replay's own host; * allows any")
	var file string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		if file != "" {
			return fmt.Errorf("replay: one FILE, got %q and %q", file, fs.Arg(0))
		}
		file, rest = fs.Arg(0), fs.Args()[1:]
	}
	if file == "" {
		return errors.New("replay: FILE is required (vncedge replay FILE [--listen ADDR] [--speed X])")
	}
	if *list {
		return listRecordings(stdout, file)
	}
	s, err := record.Load(file)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	switch {
	case *info:
		record.WriteInfo(stdout, s)
		return nil
	case *export == "websockify":
		w := stdout
		if *output != "-" {
			f, err := os.Create(*output)
			if err != nil {
				return err
			}
			defer f.Close()
			w = f
		}
		return record.ExportWebsockify(w, s)
	case *export != "":
		return fmt.Errorf("replay: --export %q: want websockify", *export)
	}
	if !(*speed > 0) {
		return errors.New("replay: --speed must be > 0")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ro := record.ReplayOptions{Speed: *speed, Logger: log, AnyFormat: *anyFormat}
	for _, o := range strings.Split(*origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			ro.AllowedOrigins = append(ro.AllowedOrigins, o)
		}
	}
	rp := record.NewReplayer(s, ro)
	if err := rp.Check(); err != nil {
		log.Warn("viewers will be refused", "reason", err.Error())
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	page := ""
	if *novnc != "" {
		if st, err := os.Stat(filepath.Join(*novnc, "vnc.html")); err == nil && !st.IsDir() {
			mux.Handle("/novnc/", http.StripPrefix("/novnc/", http.FileServer(http.Dir(*novnc))))
			host, port, _ := net.SplitHostPort(ln.Addr().String())
			page = "http://" + ln.Addr().String() + "/novnc/vnc.html?autoconnect=true&path=replay&host=" + host + "&port=" + port
		}
	}
	mux.Handle("/", rp)
	log.Info("replay listening", "addr", ln.Addr().String(), "file", file, "duration", s.Duration.Round(time.Millisecond).String(), "page", page)
	if page != "" {
		fmt.Fprintln(os.Stderr, "watch it at", page, "(to start 30 s in: path=replay%3Foffset%3D30)")
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// listRecordings prints one line per recording under dir.
func listRecordings(w io.Writer, dir string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".vncrec") {
			return err
		}
		s, err := record.Load(p)
		if err != nil {
			fmt.Fprintf(w, "%s\t(unreadable: %v)\n", p, err)
			return nil
		}
		h := s.Header
		fmt.Fprintf(w, "%s\t%s/%s\torg=%s\tclient=%s\tstart=%s\tduration=%s\tbytes=%s\n", p, h.Kind, h.ID, h.Organization, h.ClientID,
			h.Start.UTC().Format(time.RFC3339), s.Duration.Round(time.Second), strconv.FormatInt(s.Server, 10))
		return nil
	})
}
