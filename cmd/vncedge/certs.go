package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certFiles serves the listener's certificate from --cert and --key and
// reloads it when either file changes (checked at most once a second, on a
// handshake): a renewed certificate is picked up without a restart, and a
// broken renewal keeps the last good one (and says so).
type certFiles struct {
	cert, key string
	log       *slog.Logger

	mu      sync.Mutex
	current *tls.Certificate
	stamp   string // the files' sizes and mtimes when current was loaded
	checked time.Time
}

func newCertFiles(cert, key string, log *slog.Logger) (*certFiles, error) {
	if key == "" {
		key = cert // one PEM file with both, as websockify's self.pem
	}
	c := &certFiles{cert: cert, key: key, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certFiles) fileStamp() string {
	s := ""
	for _, f := range []string{c.cert, c.key} {
		if st, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d/%d;", st.Size(), st.ModTime().UnixNano())
		}
	}
	return s
}

func (c *certFiles) load() error {
	stamp := c.fileStamp()
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return fmt.Errorf("--cert %s / --key %s: %w", c.cert, c.key, err)
	}
	c.current, c.stamp = &pair, stamp
	return nil
}

// get is tls.Config.GetCertificate.
func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= time.Second {
		c.checked = now
		if c.fileStamp() != c.stamp {
			old := c.current
			if err := c.load(); err != nil {
				c.current = old
				c.stamp = c.fileStamp() // do not retry every second until the files change again
				c.log.Error("certificate reload failed; keeping the previous one", "err", err)
			} else {
				c.log.Info("certificate reloaded", "cert", c.cert)
			}
		}
	}
	return c.current, nil
}

// tlsConfig is the listener's TLS configuration.
func (c *certFiles) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.get, NextProtos: []string{"http/1.1"}}
}
