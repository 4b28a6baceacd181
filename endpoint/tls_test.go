package endpoint_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/internal/tlstest"
	"github.com/comet-go/comet/whitelist"
)

// serverFor is an ssl: description listening on 127.0.0.1 with a
// certificate for the given names only.
func serverFor(p *tlstest.PKI, name string, extra string, names ...string) string {
	cert, key := p.CA.Issue(tlstest.Options{CN: name, Names: names}).WriteFiles(p.Dir, name)
	return "ssl:0:interface=127.0.0.1:privateKey=" + key + ":certKey=" + cert + extra
}

// listen opens an ssl: description and handshakes every connection,
// reporting each result.
func listen(t *testing.T, desc string, allow *whitelist.Certs) (*endpoint.TLSListener, <-chan result) {
	t.Helper()
	ep, err := endpoint.ParseServer(desc)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := endpoint.ListenConfig{AllowCerts: allow}.Listen(ep)
	if err != nil {
		t.Fatal(err)
	}
	tl, ok := ln.(*endpoint.TLSListener)
	if !ok {
		t.Fatalf("%s: listener %T is not a TLS listener", desc, ln)
	}
	results := make(chan result, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				start := time.Now()
				tc, err := tl.Handshake(conn, start.Add(handshakeTimeout))
				if err != nil {
					conn.Close()
				}
				r := result{err: err, after: time.Since(start)}
				if err == nil {
					r.id, r.ok = endpoint.PeerIdentity(tc)
					r.version = tc.ConnectionState().Version
					io.WriteString(tc, "hello")
					tc.Close()
				}
				results <- r
			}()
		}
	}()
	t.Cleanup(func() { tl.Close(); <-done })
	return tl, results
}

const handshakeTimeout = 2 * time.Second

type result struct {
	err     error
	id      endpoint.Identity
	ok      bool
	version uint16
	after   time.Duration
}

func (r result) failure() endpoint.Failure {
	var he *endpoint.HandshakeError
	if errors.As(r.err, &he) {
		return he.Failure
	}
	return 0
}

func next(t *testing.T, results <-chan result) result {
	t.Helper()
	select {
	case r := <-results:
		return r
	case <-time.After(handshakeTimeout + 5*time.Second):
		t.Fatal("the server reported no handshake")
		return result{}
	}
}

// dial connects to ln with a tls: description built from host and extra
// parameters.
func dial(t *testing.T, ln net.Listener, host, extra string) (net.Conn, error) {
	t.Helper()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return dialHost(t, host, port, extra)
}

// dialAddr is dial to addr, by its IP address.
func dialAddr(t *testing.T, addr, extra string) (net.Conn, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	return dialHost(t, host, port, extra)
}

func dialHost(t *testing.T, host, port, extra string) (net.Conn, error) {
	t.Helper()
	target, err := endpoint.ParseClient("tls:"+host+":"+port+extra, 8099)
	if err != nil {
		t.Fatal(err)
	}
	d, err := endpoint.NewDialer(target, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return d.Dial(context.Background())
}

func failureOf(err error) endpoint.Failure {
	var he *endpoint.HandshakeError
	if errors.As(err, &he) {
		return he.Failure
	}
	return 0
}

func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// A tls: target with trustRoots reaches an ssl: listener made from
// Twisted's parameters, verifying the host; the server sees no client
// certificate (none was asked for), the client sees the server's.
func TestTLSRoundTrip(t *testing.T) {
	p := tlstest.NewPKI(t)
	// Not *.pem: skipped, as Twisted skips it.
	os.WriteFile(filepath.Join(p.Trust, "README"), []byte("not a certificate"), 0o600)
	ln, results := listen(t, p.SSL("server", ""), nil)
	for _, host := range []string{"127.0.0.1", "localhost"} {
		c, err := dial(t, ln, host, ":trustRoots="+p.Trust)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		if got := readAll(t, c); got != "hello" {
			t.Errorf("read %q", got)
		}
		id, ok := endpoint.PeerIdentity(c)
		if !ok || id.Subject != "CN=server,O=Comet tests" || len(id.SHA256) != 95 {
			t.Errorf("server identity %+v %v", id, ok)
		}
		c.Close()
		if r := next(t, results); r.err != nil || r.ok || r.version != tls.VersionTLS13 {
			t.Errorf("server side: %+v", r)
		}
	}
}

// privateKey= alone names one file holding certificate and key (Twisted's
// default); extraCertChain= sends the intermediates a client needs.
func TestTLSCombinedFileAndChain(t *testing.T) {
	p := tlstest.NewPKI(t)
	both := p.CA.Issue(tlstest.Options{CN: "combined", Names: []string{"127.0.0.1"}}).WriteCombined(p.Dir, "both.pem")
	ln, results := listen(t, "ssl:0:interface=127.0.0.1:privateKey="+both, nil)
	c, err := dial(t, ln, "127.0.0.1", ":trustRoots="+p.Trust)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	next(t, results)

	// A leaf issued by an intermediate CA: without the chain the client
	// cannot link it to its root.
	inter := tlstest.NewIntermediate(t, p.CA, "Intermediate CA")
	cert, key := inter.Issue(tlstest.Options{CN: "leaf", Names: []string{"127.0.0.1"}}).WriteFiles(p.Dir, "leaf")
	chain := inter.WriteFile(p.Dir, "chain.pem")
	base := "ssl:0:interface=127.0.0.1:privateKey=" + key + ":certKey=" + cert
	ln, results = listen(t, base, nil)
	if _, err := dial(t, ln, "127.0.0.1", ":trustRoots="+p.Trust); failureOf(err) != endpoint.FailUnknownAuthority {
		t.Errorf("without extraCertChain: %v, want unknown authority", err)
	}
	next(t, results)
	ln, results = listen(t, base+":extraCertChain="+chain, nil)
	c, err = dial(t, ln, "127.0.0.1", ":trustRoots="+p.Trust)
	if err != nil {
		t.Fatalf("with extraCertChain: %v", err)
	}
	c.Close()
	if r := next(t, results); r.err != nil {
		t.Error(r.err)
	}
}

// A client refuses a server it cannot trust, each for its own reason; the
// server's side of each failure is a refusal by the peer.
func TestTLSClientFailures(t *testing.T) {
	p := tlstest.NewPKI(t)
	ln, results := listen(t, serverFor(p, "server", "", "127.0.0.1"), nil)
	other := t.TempDir()
	tlstest.NewCA(t, "Another CA").WriteFile(other, "other.pem")
	for _, c := range []struct {
		host, extra string
		want        endpoint.Failure
	}{
		{"localhost", ":trustRoots=" + p.Trust, endpoint.FailHostname}, // the certificate names 127.0.0.1 only
		{"127.0.0.1", ":trustRoots=" + other, endpoint.FailUnknownAuthority},
		{"127.0.0.1", "", endpoint.FailUnknownAuthority}, // the system's roots do not know a test CA
	} {
		conn, err := dial(t, ln, c.host, c.extra)
		if err == nil {
			conn.Close()
			t.Errorf("%s%s: connected", c.host, c.extra)
			continue
		}
		if failureOf(err) != c.want {
			t.Errorf("%s%s: %v (%v), want %v", c.host, c.extra, err, failureOf(err), c.want)
		}
		if !strings.Contains(err.Error(), "TLS handshake with "+ln.Addr().String()) {
			t.Errorf("error %q does not name the peer", err)
		}
		if r := next(t, results); r.failure() != endpoint.FailRefused {
			t.Errorf("server side of %v: %v", c.want, r.err)
		}
	}
}

// A server certificate that expired (served by a listener that is not
// ours: ours refuses to load one) fails the client's check as expired.
func TestTLSClientRefusesExpiredServer(t *testing.T) {
	p := tlstest.NewPKI(t)
	expired := tlstest.ExpiredServer(t, p.CA)
	if _, err := dialAddr(t, expired, ":trustRoots="+p.Trust); failureOf(err) != endpoint.FailExpired {
		t.Fatalf("%v, want expired", err)
	}
	// And our listener refuses to start with one.
	cert, key := p.CA.Issue(tlstest.Options{CN: "old", NotBefore: time.Now().Add(-48 * time.Hour),
		NotAfter: time.Now().Add(-24 * time.Hour)}).WriteFiles(p.Dir, "old")
	ep, _ := endpoint.ParseServer("ssl:0:interface=127.0.0.1:privateKey=" + key + ":certKey=" + cert)
	if ln, err := ep.Listen(); err == nil || !strings.Contains(err.Error(), "expired") {
		if ln != nil {
			ln.Close()
		}
		t.Fatalf("listening with an expired certificate: %v", err)
	}
}

// With clientCA= the listener wants a certificate from that CA: it
// accepts the right one and shows who it is, and refuses a missing,
// self-signed, other-CA, expired or unlisted one, each with its reason.
func TestMutualTLS(t *testing.T) {
	p := tlstest.NewPKI(t)
	good := p.ClientCA.Issue(tlstest.Options{CN: "broker-b"})
	goodCert, goodKey := good.WriteFiles(p.Dir, "good")
	allow, err := whitelist.NewCerts(nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, results := listen(t, p.SSL("server", ":clientCA="+p.ClientCAFile), nil)
	c, err := dial(t, ln, "127.0.0.1", ":trustRoots="+p.Trust+":certificate="+goodCert+":privateKey="+goodKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); got != "hello" {
		t.Errorf("read %q", got)
	}
	c.Close()
	r := next(t, results)
	if r.err != nil || !r.ok || r.id.Subject != "CN=broker-b,O=Comet tests" || r.id.SHA256 != whitelist.Fingerprint(good.Cert) {
		t.Fatalf("server side: %+v", r)
	}

	self := tlstest.SelfSigned(t, tlstest.Options{CN: "broker-b"})
	alien := tlstest.NewCA(t, "Client CA").Issue(tlstest.Options{CN: "broker-b"}) // same names, another key
	expired := p.ClientCA.Issue(tlstest.Options{CN: "old", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	for _, c := range []struct {
		name string
		cert *tlstest.Cert
		want endpoint.Failure
	}{
		{"none", nil, endpoint.FailNoCertificate},
		{"self-signed", self, endpoint.FailUnknownAuthority},
		{"another CA", alien, endpoint.FailUnknownAuthority},
		{"expired", expired, endpoint.FailExpired},
	} {
		conf := &tls.Config{RootCAs: p.CA.Pool(), ServerName: "127.0.0.1"}
		if c.cert != nil {
			// Sent whatever CAs the server names (Go's client would send
			// nothing; OpenSSL's sends what it has).
			pair, _ := tls.X509KeyPair(c.cert.CertPEM, c.cert.KeyPEM)
			conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		}
		conn, err := tls.Dial("tcp", ln.Addr().String(), conf)
		if err == nil {
			// TLS 1.3: the client finishes first; the refusal arrives as an
			// alert on the first read.
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "remote error") {
			t.Errorf("%s: the client was not told of the refusal: %v", c.name, err)
		}
		r := next(t, results)
		if r.failure() != c.want {
			t.Errorf("%s: server side %v (%v), want %v", c.name, r.err, r.failure(), c.want)
		}
	}

	// --allow-cert narrows what the CA verified, and changes in place.
	ln, results = listen(t, p.SSL("server2", ":clientCA="+p.ClientCAFile), allow)
	desc := ":trustRoots=" + p.Trust + ":certificate=" + goodCert + ":privateKey=" + goodKey
	c, err = dial(t, ln, "127.0.0.1", desc)
	if err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if r := next(t, results); r.failure() != endpoint.FailNotAllowed || !strings.Contains(r.err.Error(), whitelist.Fingerprint(good.Cert)) {
		t.Errorf("unlisted certificate: %v", r.err)
	}
	if err := allow.Set([]string{whitelist.Fingerprint(good.Cert)}); err != nil {
		t.Fatal(err)
	}
	c, err = dial(t, ln, "127.0.0.1", desc)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if r := next(t, results); r.err != nil {
		t.Errorf("listed certificate: %v", r.err)
	}
}

// A plaintext peer on a TLS port is dropped at its first bytes; a silent
// one at the deadline; a TLS client on a plaintext port fails at once.
// Nothing stays behind: goroutines and descriptors return to where they
// were.
func TestTLSPlaintextAndSilentPeers(t *testing.T) {
	p := tlstest.NewPKI(t)
	ln, results := listen(t, p.SSL("server", ""), nil)
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)

	for range 20 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("\x00\x00\x00\x10<?xml version='1.0'?>"))
		r := next(t, results)
		if r.failure() != endpoint.FailNotTLS || r.after > time.Second {
			t.Errorf("plaintext author: %v after %v", r.err, r.after)
		}
		if _, closed, _ := readClosed(c, time.Second); !closed {
			t.Error("plaintext author's connection left open")
		}
		c.Close()
	}
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := next(t, results)
	if r.failure() != endpoint.FailTimeout || r.after < handshakeTimeout-100*time.Millisecond {
		t.Errorf("silent peer: %v after %v", r.err, r.after)
	}
	silent.Close()

	// The reverse: a tls: target that is a plaintext VTP broadcaster, which
	// speaks first.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	go func() {
		for {
			c, err := plain.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("\x00\x00\x00\x05<?xml"))
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	if _, err := dial(t, plain, "127.0.0.1", ":trustRoots="+p.Trust); failureOf(err) != endpoint.FailNotTLS {
		t.Errorf("TLS client on a plaintext port: %v", err)
	}

	if !waitFor(5*time.Second, func() bool { return runtime.NumGoroutine() <= baseG+2 && openFDs(t) <= baseFD+1 }) {
		t.Errorf("after the probes: %d goroutines (%d before), %d descriptors (%d before)",
			runtime.NumGoroutine(), baseG, openFDs(t), baseFD)
	}
}

func readClosed(c net.Conn, d time.Duration) ([]byte, bool, error) {
	c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return b, false, err
	}
	return b, true, nil
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// Reload re-reads the files: handshakes after it see the new certificate;
// a bad file keeps the current one. The same holds for a target's trust
// roots.
func TestTLSReload(t *testing.T) {
	p := tlstest.NewPKI(t)
	desc := p.SSL("server", "")
	ln, results := listen(t, desc, nil)
	serverSubject := func() string {
		c, err := dial(t, ln, "127.0.0.1", ":trustRoots="+p.Trust)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		next(t, results)
		id, _ := endpoint.PeerIdentity(c)
		return id.Subject
	}
	if s := serverSubject(); s != "CN=server,O=Comet tests" {
		t.Fatalf("before: %s", s)
	}
	renewed := p.CA.Issue(tlstest.Options{CN: "renewed", Names: []string{"127.0.0.1"}})
	renewed.WriteFiles(p.Dir, "server")
	if err := ln.Reload(); err != nil {
		t.Fatal(err)
	}
	if s := serverSubject(); s != "CN=renewed,O=Comet tests" {
		t.Fatalf("after reload: %s", s)
	}
	// A key that does not match the certificate: refused, the renewed
	// pair stays.
	other := p.CA.Issue(tlstest.Options{CN: "other"})
	os.WriteFile(filepath.Join(p.Dir, "server.key"), other.KeyPEM, 0o600)
	if err := ln.Reload(); err == nil {
		t.Fatal("a mismatched key was loaded")
	}
	os.Remove(filepath.Join(p.Dir, "server.crt"))
	if err := ln.Reload(); err == nil || !strings.Contains(err.Error(), "certKey") {
		t.Fatalf("a missing certificate: %v", err)
	}
	if s := serverSubject(); s != "CN=renewed,O=Comet tests" {
		t.Fatalf("after failed reloads: %s", s)
	}

	// Client side: trust roots re-read.
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	trust := t.TempDir()
	tlstest.NewCA(t, "Wrong CA").WriteFile(trust, "ca.pem")
	target, _ := endpoint.ParseClient("tls:127.0.0.1:"+port+":trustRoots="+trust, 0)
	d, err := endpoint.NewDialer(target, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dial(context.Background()); failureOf(err) != endpoint.FailUnknownAuthority {
		t.Fatalf("wrong CA: %v", err)
	}
	next(t, results)
	os.WriteFile(filepath.Join(trust, "ca.pem"), []byte("garbage"), 0o600)
	if err := d.Reload(); err == nil {
		t.Fatal("a trustRoots file without a certificate was loaded")
	}
	p.CA.WriteFile(trust, "ca.pem")
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	c, err := d.Dial(context.Background())
	if err != nil {
		t.Fatalf("after reloading the trust roots: %v", err)
	}
	c.Close()
	next(t, results)
}

// sslmethod=TLSv1_2_METHOD keeps to TLS 1.2; nothing older than 1.2 is
// ever spoken.
func TestTLSVersions(t *testing.T) {
	p := tlstest.NewPKI(t)
	ln, results := listen(t, p.SSL("v12", ":sslmethod=TLSv1_2_METHOD"), nil)
	c, err := dial(t, ln, "127.0.0.1", ":trustRoots="+p.Trust)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if r := next(t, results); r.version != tls.VersionTLS12 {
		t.Errorf("negotiated %x, want TLS 1.2", r.version)
	}
	old, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: p.CA.Pool(), ServerName: "127.0.0.1",
		MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		old.Close()
		t.Error("a TLS 1.1 client was served")
	}
	if r := next(t, results); r.err == nil {
		t.Error("the server accepted TLS 1.1")
	}
}

// Files are read when the listener or dialer is made: a missing or bad
// one fails there, naming the parameter.
func TestTLSFilesCheckedAtStart(t *testing.T) {
	p := tlstest.NewPKI(t)
	cert, key := p.CA.Issue(tlstest.Options{CN: "s"}).WriteFiles(p.Dir, "s")
	garbage := filepath.Join(p.Dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not PEM"), 0o600)
	for desc, want := range map[string]string{
		"ssl:0:interface=127.0.0.1": "privateKey: open server.pem", // in the working directory
		"ssl:0:interface=127.0.0.1:privateKey=" + key + ":certKey=" + garbage:                             "certKey",
		"ssl:0:interface=127.0.0.1:privateKey=" + key + ":certKey=" + cert + ":extraCertChain=" + garbage: "extraCertChain",
		"ssl:0:interface=127.0.0.1:privateKey=" + key + ":certKey=" + cert + ":clientCA=" + garbage:       "clientCA",
		"ssl:0:interface=127.0.0.1:privateKey=" + key + ":certKey=" + cert + ":clientCA=/nonexistent":     "clientCA",
	} {
		ep, err := endpoint.ParseServer(desc)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := ep.Listen()
		if err == nil {
			ln.Close()
			t.Errorf("%s: listening", desc)
		} else if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want it to name %s", desc, err, want)
		}
	}
	for desc, want := range map[string]string{
		"tls:h:1:trustRoots=/nonexistent":                        "trustRoots",
		"tls:h:1:trustRoots=" + p.Dir:                            "garbage.pem", // a *.pem without a certificate
		"tls:h:1:certificate=" + cert:                            "certificate", // no key in it
		"tls:h:1:certificate=" + cert + ":privateKey=" + garbage: "certificate",
	} {
		target, err := endpoint.ParseClient(desc, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := endpoint.NewDialer(target, time.Second); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want it to name %s", desc, err, want)
		}
	}
}
