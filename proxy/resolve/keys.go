package resolve

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// minRSABits is the smallest RSA modulus accepted for RS256.
const minRSABits = 2048

// LoadPublicKeys reads token verification keys from PEM files. Each file may
// hold several blocks: "PUBLIC KEY" (PKIX, Ed25519 or RSA), "RSA PUBLIC KEY"
// (PKCS #1) or "CERTIFICATE" (the certificate's key; the certificate itself
// is not checked). Other block types, other key algorithms and RSA keys under
// 2048 bits are errors.
func LoadPublicKeys(paths ...string) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("token keys: %w", err)
		}
		k, err := ParsePublicKeys(b)
		if err != nil {
			return nil, fmt.Errorf("token keys %s: %w", p, err)
		}
		keys = append(keys, k...)
	}
	return keys, nil
}

// ParsePublicKeys parses the PEM blocks of data as [LoadPublicKeys] does.
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		var k any
		var err error
		switch blk.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
				k = c.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %d: type %q is not a public key", n, blk.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		if err := checkPublicKey(k); err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return keys, nil
}

// checkPublicKey accepts the key types TokenResolver verifies with.
func checkPublicKey(k any) error {
	switch k := k.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return errors.New("malformed Ed25519 public key")
		}
	case *rsa.PublicKey:
		if k == nil || k.N == nil || k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA public key shorter than %d bits", minRSABits)
		}
	default:
		return fmt.Errorf("unsupported public key type %T (want Ed25519 or RSA)", k)
	}
	return nil
}
