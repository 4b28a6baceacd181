package endpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/comet-go/comet/whitelist"
)

// MinVersion is the oldest TLS version spoken on any endpoint.
const MinVersion = tls.VersionTLS12

// ServerTLS is the TLS of one listener: its certificate chain and, with
// ClientCA, the CAs its clients' certificates must be issued by. Reload
// re-reads the files; handshakes after it use what was read.
type ServerTLS struct {
	spec  TLS
	allow *whitelist.Certs
	cur   atomic.Pointer[tls.Config] // the files as last read
	conf  *tls.Config                // for tls.Server: hands every handshake cur
}

// NewServerTLS reads t's files. allow, if set, narrows the client
// certificates clientCA= verifies to those it lists.
func NewServerTLS(t *TLS, allow *whitelist.Certs) (*ServerTLS, error) {
	s := &ServerTLS{spec: *t, allow: allow}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	s.conf = &tls.Config{
		MinVersion: MinVersion,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load(), nil
		},
	}
	return s, nil
}

// Reload re-reads the certificate, key, chain and client CA files. On
// error nothing changes: the files read before stay in use.
func (s *ServerTLS) Reload() error {
	t := &s.spec
	keyPEM, err := os.ReadFile(t.PrivateKey)
	if err != nil {
		return fmt.Errorf("privateKey: %w", err)
	}
	certName, certPEM := "certKey "+t.CertKey, keyPEM
	if t.CertKey == t.PrivateKey {
		certName = "privateKey " + t.PrivateKey + " (without certKey= it holds the certificate too)"
	} else if certPEM, err = os.ReadFile(t.CertKey); err != nil {
		return fmt.Errorf("certKey: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("%s with privateKey %s: %w", certName, t.PrivateKey, err)
	}
	if err := checkValidity(cert.Leaf, time.Now()); err != nil {
		return fmt.Errorf("%s: %w", certName, err)
	}
	if t.ExtraCertChain != "" {
		chain, err := readCerts(t.ExtraCertChain)
		if err != nil {
			return fmt.Errorf("extraCertChain: %w", err)
		}
		for _, c := range chain {
			cert.Certificate = append(cert.Certificate, c.Raw)
		}
	}
	conf := &tls.Config{
		MinVersion:   MinVersion,
		MaxVersion:   t.MaxVersion,
		Certificates: []tls.Certificate{cert},
	}
	if t.ClientCA != "" {
		cas, err := readCerts(t.ClientCA)
		if err != nil {
			return fmt.Errorf("clientCA: %w", err)
		}
		pool := x509.NewCertPool()
		for _, c := range cas {
			pool.AddCert(c)
		}
		// Asked for, not checked by crypto/tls: verifyClient checks it, so
		// that each refusal has a typed reason (Failure).
		conf.ClientAuth = tls.RequestClientCert
		conf.ClientCAs = pool // named in the request, so clients pick the right certificate
		conf.VerifyConnection = func(cs tls.ConnectionState) error { return verifyClient(cs, pool, s.allow) }
	}
	s.cur.Store(conf)
	return nil
}

// MutualTLS reports whether clients must present a certificate.
func (s *ServerTLS) MutualTLS() bool { return s.spec.ClientCA != "" }

// Handshake runs the server side of the TLS handshake on conn, which must
// finish by deadline. On success the deadline is cleared for the caller to
// set its own; on failure the error is a *HandshakeError and the caller
// closes conn (after counting the failure, say).
func (s *ServerTLS) Handshake(conn net.Conn, deadline time.Time) (*tls.Conn, error) {
	conn.SetDeadline(deadline)
	tc := tls.Server(conn, s.conf)
	if err := tc.HandshakeContext(context.Background()); err != nil {
		return nil, newHandshakeError(conn.RemoteAddr().String(), err)
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// verifyClient checks a client certificate against the client CAs and
// the allow list.
func verifyClient(cs tls.ConnectionState, roots *x509.CertPool, allow *whitelist.Certs) error {
	if len(cs.PeerCertificates) == 0 {
		return &verifyError{FailNoCertificate, errors.New("the client sent no certificate and this listener requires one (clientCA=)")}
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return &verifyError{classify(err), fmt.Errorf("client certificate %q: %w", leaf.Subject.String(), err)}
	}
	if allow != nil && !allow.Allows(leaf) {
		return &verifyError{FailNotAllowed, fmt.Errorf("client certificate %q (SHA-256 %s) is not one of --allow-cert",
			leaf.Subject.String(), whitelist.Fingerprint(leaf))}
	}
	return nil
}

type verifyError struct {
	failure Failure
	err     error
}

func (e *verifyError) Error() string { return e.err.Error() }
func (e *verifyError) Unwrap() error { return e.err }

// ClientTLS is the TLS of one target: the CAs trusted to issue its
// certificate (trustRoots= or the system's) and this side's client
// certificate, if any. Reload re-reads the files.
type ClientTLS struct {
	spec TLS
	cur  atomic.Pointer[tls.Config]
}

// NewClientTLS reads t's files.
func NewClientTLS(t *TLS) (*ClientTLS, error) {
	c := &ClientTLS{spec: *t}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload re-reads the trust roots and the client certificate. On error
// nothing changes.
func (c *ClientTLS) Reload() error {
	t := &c.spec
	conf := &tls.Config{MinVersion: MinVersion, ServerName: t.ServerName}
	if t.TrustRoots != "" {
		pool, err := readTrustRoots(t.TrustRoots)
		if err != nil {
			return fmt.Errorf("trustRoots: %w", err)
		}
		conf.RootCAs = pool
	}
	if t.Certificate != "" {
		certPEM, err := os.ReadFile(t.Certificate)
		if err != nil {
			return fmt.Errorf("certificate: %w", err)
		}
		keyPEM := certPEM
		if t.PrivateKey != "" {
			if keyPEM, err = os.ReadFile(t.PrivateKey); err != nil {
				return fmt.Errorf("privateKey: %w", err)
			}
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("certificate %s: %w", t.Certificate, err)
		}
		if err := checkValidity(cert.Leaf, time.Now()); err != nil {
			return fmt.Errorf("certificate %s: %w", t.Certificate, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	c.cur.Store(conf)
	return nil
}

// Handshake runs the client side of the TLS handshake on conn, which must
// finish by deadline. On failure the error is a *HandshakeError and the
// caller closes conn.
func (c *ClientTLS) Handshake(ctx context.Context, conn net.Conn, deadline time.Time) (*tls.Conn, error) {
	conn.SetDeadline(deadline)
	tc := tls.Client(conn, c.cur.Load())
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, newHandshakeError(conn.RemoteAddr().String(), err)
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// checkValidity refuses a certificate of this side that peers would
// refuse: expired, or not valid yet.
func checkValidity(leaf *x509.Certificate, now time.Time) error {
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("certificate %q expired on %s", leaf.Subject.String(), leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("certificate %q is not valid before %s", leaf.Subject.String(), leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// readCerts reads every PEM certificate in a file; a file without one is
// an error (Twisted's, for extraCertChain).
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return out, nil
}

// readTrustRoots reads the CA certificates of a trustRoots directory: the
// files whose names end in .pem, as Twisted reads them. A .pem file that
// cannot be read or holds no certificate is an error (Twisted skips it);
// so is a directory without one.
func readTrustRoots(dir string) (*x509.CertPool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for _, e := range entries {
		if !strings.EqualFold(filepath.Ext(e.Name()), ".pem") || e.IsDir() {
			continue
		}
		certs, err := readCerts(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			pool.AddCert(c)
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("%s has no *.pem file with a certificate", dir)
	}
	return pool, nil
}

// Identity is what a TLS peer's certificate says of it.
type Identity struct {
	Subject string // the certificate's subject, as "CN=...,O=..."
	SHA256  string // the certificate's fingerprint (whitelist.Fingerprint)
}

// PeerIdentity is the certificate conn's peer presented in its TLS
// handshake: a client's certificate on an ssl: listener with clientCA=
// (verified), the server's on a tls: target. ok is false for plaintext
// connections and for clients without a certificate.
func PeerIdentity(conn net.Conn) (id Identity, ok bool) {
	s, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return Identity{}, false
	}
	certs := s.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return Identity{}, false
	}
	return Identity{Subject: certs[0].Subject.String(), SHA256: whitelist.Fingerprint(certs[0])}, true
}

// PeerLogAttrs are the log attributes of the certificate a peer presented
// (peer_cert, peer_cert_sha256); none for plaintext connections and
// clients without one.
func PeerLogAttrs(conn net.Conn) []any {
	id, ok := PeerIdentity(conn)
	if !ok {
		return nil
	}
	return []any{"peer_cert", id.Subject, "peer_cert_sha256", id.SHA256}
}

// Failure is why a TLS handshake failed.
type Failure uint8

const (
	// FailNotTLS: the peer does not speak TLS (plaintext on a TLS port, or
	// a TLS client on a plaintext one).
	FailNotTLS Failure = iota + 1
	// FailTimeout: the handshake did not finish in time.
	FailTimeout
	// FailClosed: the peer closed or reset the connection.
	FailClosed
	// FailNoCertificate: a client sent no certificate to a listener with
	// clientCA=.
	FailNoCertificate
	// FailUnknownAuthority: the peer's certificate is not issued by a
	// trusted CA (self-signed, or another CA).
	FailUnknownAuthority
	// FailExpired: the peer's certificate expired, or is not valid yet.
	FailExpired
	// FailHostname: the server's certificate is not valid for the host
	// dialed.
	FailHostname
	// FailNotAllowed: a verified client certificate that --allow-cert
	// does not list.
	FailNotAllowed
	// FailRefused: the peer refused the handshake with an alert (it did
	// not accept this side's certificate, or no common version).
	FailRefused
	// FailOther: anything else.
	FailOther
)

// AllFailures lists every Failure: metrics export each with its count,
// zero included, so that a rate exists before the first failure.
func AllFailures() []Failure {
	out := make([]Failure, 0, FailOther)
	for f := FailNotTLS; f <= FailOther; f++ {
		out = append(out, f)
	}
	return out
}

func (f Failure) String() string {
	switch f {
	case FailNotTLS:
		return "not_tls"
	case FailTimeout:
		return "timeout"
	case FailClosed:
		return "closed"
	case FailNoCertificate:
		return "no_certificate"
	case FailUnknownAuthority:
		return "unknown_authority"
	case FailExpired:
		return "expired"
	case FailHostname:
		return "hostname"
	case FailNotAllowed:
		return "not_allowed"
	case FailRefused:
		return "refused_by_peer"
	}
	return "other"
}

// what is the failure in words, for the start of a log line's reason.
func (f Failure) what() string {
	switch f {
	case FailNotTLS:
		return "the peer does not speak TLS"
	case FailTimeout:
		return "handshake not finished in time"
	case FailClosed:
		return "the peer closed the connection during the handshake (not a TLS port?)"
	case FailNoCertificate:
		return "no client certificate"
	case FailUnknownAuthority:
		return "certificate not issued by a trusted CA"
	case FailExpired:
		return "certificate expired or not yet valid"
	case FailHostname:
		return "certificate not valid for the host name"
	case FailNotAllowed:
		return "client certificate not allowed"
	case FailRefused:
		return "the peer refused the handshake"
	}
	return "handshake failed"
}

// HandshakeError is a failed TLS handshake: with whom, and why.
type HandshakeError struct {
	Peer    string
	Failure Failure
	Err     error
}

func (e *HandshakeError) Error() string {
	return "TLS handshake with " + e.Peer + ": " + e.Failure.what() + ": " + e.Err.Error()
}

func (e *HandshakeError) Unwrap() error { return e.Err }

func newHandshakeError(peer string, err error) *HandshakeError {
	return &HandshakeError{Peer: peer, Failure: classify(err), Err: err}
}

func classify(err error) Failure {
	var (
		ve        *verifyError
		header    tls.RecordHeaderError
		host      x509.HostnameError
		authority x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		op        *net.OpError
		ne        net.Error
	)
	switch {
	case errors.As(err, &ve):
		return ve.failure
	case errors.As(err, &header):
		return FailNotTLS
	case errors.As(err, &host):
		return FailHostname
	case errors.As(err, &authority):
		return FailUnknownAuthority
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return FailExpired
	case errors.As(err, &op) && op.Op == "remote error":
		return FailRefused
	case errors.As(err, &ne) && ne.Timeout():
		return FailTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return FailClosed
	}
	return FailOther
}
