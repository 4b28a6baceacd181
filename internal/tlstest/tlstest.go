// Package tlstest makes X.509 certificates for tests with crypto/x509: a
// CA, the certificates it issues (servers, clients, expired ones) and
// self-signed ones, written as PEM files into the test's directory the way
// an operator would give them to the broker. It also runs VTP peers on
// Twisted, as Comet is, for interoperability tests.
package tlstest

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

var serial atomic.Int64

// CA is a certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	t    testing.TB
}

// Cert is a certificate with its key.
type Cert struct {
	Cert    *x509.Certificate
	CertPEM []byte
	KeyPEM  []byte
	t       testing.TB
}

// Options describe a certificate to issue; zero values make a certificate
// valid from an hour ago for a day, for server and client use.
type Options struct {
	CN        string
	Names     []string // DNS names or IP addresses
	NotBefore time.Time
	NotAfter  time.Time
	// Usage restricts the extended key usage; nil allows server and
	// client authentication.
	Usage []x509.ExtKeyUsage
}

// NewCA makes a root CA named cn.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	return newCA(t, cn, nil)
}

// NewIntermediate makes a CA named cn whose certificate parent issues.
func NewIntermediate(t testing.TB, parent *CA, cn string) *CA {
	t.Helper()
	return newCA(t, cn, parent)
}

func newCA(t testing.TB, cn string, parent *CA) *CA {
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Comet tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	issuer, issuerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, issuerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key, t: t}
}

// PEM is the CA's certificate.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Pool is a certificate pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// WriteFile writes the CA's certificate to dir/name and returns the path.
func (ca *CA) WriteFile(dir, name string) string {
	return write(ca.t, filepath.Join(dir, name), ca.PEM())
}

// Issue makes a certificate signed by the CA.
func (ca *CA) Issue(o Options) *Cert {
	ca.t.Helper()
	return issue(ca.t, o, ca.Cert, ca.Key)
}

// SelfSigned makes a certificate signed by its own key.
func SelfSigned(t testing.TB, o Options) *Cert {
	t.Helper()
	return issue(t, o, nil, nil)
}

func issue(t testing.TB, o Options, parent *x509.Certificate, parentKey crypto.Signer) *Cert {
	key := newKey(t)
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(24 * time.Hour)
	}
	if o.Usage == nil {
		o.Usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: o.CN, Organization: []string{"Comet tests"}},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  o.Usage,
	}
	for _, n := range o.Names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		t:       t,
	}
}

// WriteFiles writes the certificate to dir/base.crt and its key to
// dir/base.key, and returns both paths.
func (c *Cert) WriteFiles(dir, base string) (certFile, keyFile string) {
	return write(c.t, filepath.Join(dir, base+".crt"), c.CertPEM), write(c.t, filepath.Join(dir, base+".key"), c.KeyPEM)
}

// WriteCombined writes the certificate and its key into one file, as
// Twisted's privateKey= alone expects, and returns its path.
func (c *Cert) WriteCombined(dir, name string) string {
	return write(c.t, filepath.Join(dir, name), append(append([]byte{}, c.CertPEM...), c.KeyPEM...))
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func write(t testing.TB, path string, data []byte) string {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TwistedPython is the interpreter with Debian's Twisted and pyOpenSSL
// (python3-twisted, which .ci/run installs).
const TwistedPython = "/usr/bin/python3"

// NeedTwisted skips the test without Twisted, or fails it in CI, where it
// must be installed.
func NeedTwisted(t testing.TB) {
	t.Helper()
	if err := exec.Command(TwistedPython, "-c", "import twisted.internet.endpoints, OpenSSL").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Twisted is missing in CI (apt-get install python3-twisted): %v", err)
		}
		t.Skipf("no Twisted for %s (apt-get install python3-twisted): %v", TwistedPython, err)
	}
}

// TwistedPeer is a VTP peer on Twisted's endpoints (twisted_vtp.py): an
// author, a subscriber or a broadcaster, given the endpoint description
// Comet would be given.
type TwistedPeer struct {
	cmd   *exec.Cmd
	lines chan map[string]any
	err   bytes.Buffer
}

// StartTwisted runs twisted_vtp.py with args (its usage says which). It is
// killed when the test ends.
func StartTwisted(t testing.TB, args ...string) *TwistedPeer {
	t.Helper()
	NeedTwisted(t)
	_, here, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(here), "twisted_vtp.py")
	p := &TwistedPeer{cmd: exec.Command(TwistedPython, append([]string{script}, args...)...), lines: make(chan map[string]any, 64)}
	p.cmd.Stderr = &p.err
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				p.lines <- m
			}
		}
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
	return p
}

// Next is the peer's next output line, or an error when it printed one,
// ended, or said nothing within d.
func (p *TwistedPeer) Next(d time.Duration) (map[string]any, error) {
	select {
	case m, ok := <-p.lines:
		if !ok {
			return nil, fmt.Errorf("twisted peer ended: %s", p.err.String())
		}
		if e, ok := m["error"]; ok {
			return m, fmt.Errorf("twisted peer: %v", e)
		}
		return m, nil
	case <-time.After(d):
		return nil, fmt.Errorf("twisted peer said nothing for %v", d)
	}
}

// PKI is what a TLS test needs, written into a test directory: a CA that
// issues the brokers' certificates, a trustRoots directory holding it, and
// a CA that issues the clients' certificates (clientCA=).
type PKI struct {
	t            testing.TB
	Dir          string
	CA           *CA
	Trust        string // a trustRoots directory holding CA
	ClientCA     *CA
	ClientCAFile string // ClientCA's certificate, for clientCA=
}

// NewPKI makes both CAs.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{t: t, Dir: t.TempDir(), CA: NewCA(t, "Broker CA"), ClientCA: NewCA(t, "Client CA")}
	p.Trust = filepath.Join(p.Dir, "trust")
	if err := os.Mkdir(p.Trust, 0o700); err != nil {
		t.Fatal(err)
	}
	p.CA.WriteFile(p.Trust, "ca.pem")
	p.ClientCAFile = p.ClientCA.WriteFile(p.Dir, "client-ca.pem")
	return p
}

// SSL writes a broker certificate named name, valid for 127.0.0.1 and
// localhost, and returns an ssl: description listening on 127.0.0.1 with
// it (any free port), followed by extra (":clientCA=...", say).
func (p *PKI) SSL(name, extra string) string {
	p.t.Helper()
	cert, key := p.CA.Issue(Options{CN: name, Names: []string{"127.0.0.1", "localhost"}}).WriteFiles(p.Dir, name)
	return "ssl:0:interface=127.0.0.1:privateKey=" + key + ":certKey=" + cert + extra
}

// Client writes a client certificate named name, issued by ClientCA, and
// returns the tls: parameters that present it.
func (p *PKI) Client(name string) string {
	p.t.Helper()
	cert, key := p.ClientCA.Issue(Options{CN: name}).WriteFiles(p.Dir, "client-"+name)
	return ":certificate=" + cert + ":privateKey=" + key
}

// Target is a tls: description of addr (HOST:PORT of a listener on
// 127.0.0.1) trusting CA, followed by extra.
func (p *PKI) Target(addr, extra string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.t.Fatal(err)
	}
	return "tls:" + host + ":" + port + ":trustRoots=" + p.Trust + extra
}

// ExpiredServer is a TLS listener on 127.0.0.1 whose certificate, issued
// by ca for 127.0.0.1, expired a day ago; it completes each handshake and
// closes. (It is crypto/tls's own listener: the broker refuses to load an
// expired certificate.) It returns the address.
func ExpiredServer(t testing.TB, ca *CA) string {
	t.Helper()
	old := ca.Issue(Options{CN: "expired", Names: []string{"127.0.0.1"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	pair, err := tls.X509KeyPair(old.CertPEM, old.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String()
}
