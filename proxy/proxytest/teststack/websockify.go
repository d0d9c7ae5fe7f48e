package teststack

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// StartWebsockify runs websockify on a free 127.0.0.1 port relaying
// WebSocket connections to target (host:port), waits until it accepts
// connections, and stops it when the test ends. It returns the listen address
// (use ws://ADDR/). It skips the test when websockify is not installed.
func StartWebsockify(t testing.TB, target string) string {
	t.Helper()
	return startWebsockify(t, target)
}

// StartWebsockifyTLS is StartWebsockify with TLS only (wss://ADDR/): it
// generates a test CA and a server certificate for 127.0.0.1 and localhost in
// t.TempDir(), and returns the listen address and a pool holding the CA.
func StartWebsockifyTLS(t testing.TB, target string) (string, *x509.CertPool) {
	t.Helper()
	Require(t, "websockify")
	dir := t.TempDir()
	pool, err := WriteTestCert(dir)
	if err != nil {
		t.Fatalf("teststack: %v", err)
	}
	addr := startWebsockify(t, target,
		"--cert", filepath.Join(dir, "cert.pem"),
		"--key", filepath.Join(dir, "key.pem"),
		"--ssl-only")
	return addr, pool
}

func startWebsockify(t testing.TB, target string, flags ...string) string {
	t.Helper()
	Require(t, "websockify")
	p, addr, err := startRetry(3, func() (*Proc, string, error) {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		addr := hostPort(port)
		args := append(append([]string(nil), flags...), addr, target)
		p, err := startProc("websockify", nil, args...)
		if err != nil {
			return nil, "", err
		}
		return p, addr, nil
	}, nil)
	if err != nil {
		t.Fatalf("teststack: start websockify: %v", err)
	}
	t.Cleanup(p.Stop)
	return addr
}

// WriteTestCert creates a test CA and a server certificate signed by it for
// IP 127.0.0.1 and DNS name localhost (ECDSA P-256, valid for a day). It
// writes dir/cert.pem (server then CA certificate), dir/key.pem (PKCS #8
// server key) and dir/ca.pem, and returns a pool holding the CA.
func WriteTestCert(dir string) (*x509.CertPool, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vncedge test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("creating server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding server key: %w", err)
	}
	certPEM := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	files := map[string][]byte{
		"cert.pem": certPEM,
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		"ca.pem":   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, nil
}

// URL returns "scheme://addr/" for a listen address.
func URL(scheme, addr string) string { return scheme + "://" + addr + "/" }
