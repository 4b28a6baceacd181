package whitelist

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"
)

// Certs is a set of allowed client certificates, by the SHA-256
// fingerprint of the certificate (--allow-cert): it narrows what a
// listener's clientCA= accepts to named certificates. Its contents can be
// replaced while listeners consult it (a reload on SIGHUP).
type Certs struct {
	set atomic.Pointer[map[[sha256.Size]byte]struct{}]
}

// NewCerts parses fingerprints. An empty list allows no certificate.
func NewCerts(fingerprints []string) (*Certs, error) {
	c := &Certs{}
	if err := c.Set(fingerprints); err != nil {
		return nil, err
	}
	return c, nil
}

// Set atomically replaces the fingerprints; on error the set is unchanged.
func (c *Certs) Set(fingerprints []string) error {
	set := make(map[[sha256.Size]byte]struct{}, len(fingerprints))
	for _, s := range fingerprints {
		fp, err := ParseFingerprint(s)
		if err != nil {
			return err
		}
		set[fp] = struct{}{}
	}
	c.set.Store(&set)
	return nil
}

// Allows reports whether cert is one of the allowed certificates.
func (c *Certs) Allows(cert *x509.Certificate) bool {
	_, ok := (*c.set.Load())[sha256.Sum256(cert.Raw)]
	return ok
}

// Len is the number of allowed certificates.
func (c *Certs) Len() int { return len(*c.set.Load()) }

// Fingerprint is cert's SHA-256 fingerprint as openssl prints it
// ("openssl x509 -noout -fingerprint -sha256"): upper-case hex bytes
// separated by colons.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	var b strings.Builder
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}

// ParseFingerprint reads a SHA-256 fingerprint: 64 hex digits, in either
// case, with or without colons between the bytes, optionally after
// "sha256:" or openssl's "sha256 Fingerprint=".
func ParseFingerprint(s string) ([sha256.Size]byte, error) {
	var fp [sha256.Size]byte
	t := strings.TrimSpace(s)
	lower := strings.ToLower(t)
	for _, p := range []string{"sha256 fingerprint=", "sha256:", "sha256="} {
		if strings.HasPrefix(lower, p) {
			t = t[len(p):]
			break
		}
	}
	raw, err := hex.DecodeString(strings.ReplaceAll(t, ":", ""))
	if err != nil || len(raw) != sha256.Size {
		return fp, fmt.Errorf("invalid certificate fingerprint %q: want the 64 hex digits of a SHA-256 fingerprint (openssl x509 -noout -fingerprint -sha256)", s)
	}
	copy(fp[:], raw)
	return fp, nil
}

// ReadCertsFile reads fingerprints from a file, one per line; '#' starts a
// comment. Each is checked.
func ReadCertsFile(path string) ([]string, error) {
	return readList(path, func(line string) []string {
		if line = strings.TrimSpace(line); line == "" {
			return nil
		}
		return []string{line}
	}, func(s string) error {
		_, err := ParseFingerprint(s)
		return err
	})
}
