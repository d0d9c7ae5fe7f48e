package main

import (
	"flag"
	"fmt"
	"log/slog"
	"time"

	"vncedge/proxy/record"
)

// recordOptions are the session-recording flags (issue 17).
type recordOptions struct {
	dir, input string
	required   bool
	retention  time.Duration
}

func defineRecordFlags(fs *flag.FlagSet, ro *recordOptions) {
	fs.StringVar(&ro.dir, "record", "", "record every VNC channel under this directory: DIR/{organization}/{kind}/{id}/{start}-{client_id}.vncrec (see docs/RECORDING.md)")
	fs.StringVar(&ro.input, "record-input", record.Config{}.Input.String(), "viewer input kept in recordings: none, pointer or all (all includes keystrokes)")
	fs.BoolVar(&ro.required, "record-required", false, "end a session whose recording fails (close 1011 record-failed) instead of noting a gap")
	fs.DurationVar(&ro.retention, "record-retention", 0, "delete recordings older than this (0: keep)")
}

// recorder builds the Recorder; nil without --record.
func (ro *recordOptions) recorder(log *slog.Logger) (*record.Recorder, error) {
	mode, err := record.ParseInputMode(ro.input)
	if err != nil {
		return nil, fmt.Errorf("--record-input: %w", err)
	}
	if ro.dir == "" {
		return nil, nil
	}
	rc, err := record.New(record.Config{Dir: ro.dir, Input: mode, Required: ro.required, Retention: ro.retention, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--record: %w", err)
	}
	return rc, nil
}
