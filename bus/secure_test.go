package bus

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/comet-go/comet/internal/vtptest"
)

// An external NATS system in operator mode (JWT accounts, a user's .creds
// file) that requires mutual TLS: what --nats-creds and --nats-tls-* are
// for. The bus must store and dedupe through it, and must be refused
// without the credentials or without a client certificate.
func TestExternalBusWithCredentialsAndMutualTLS(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	creds, op, accounts, systemAccount := newTestCredentials(t, dir)

	resolver := &server.MemAccResolver{}
	for pub, claims := range accounts {
		if err := resolver.Store(pub, claims); err != nil {
			t.Fatal(err)
		}
	}
	serverTLS, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: pki.serverCert, KeyFile: pki.serverKey, CaFile: pki.ca, Verify: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := vtptest.NATSServer(t, &server.Options{
		MaxPayload:       2 << 20,
		TrustedOperators: []*jwt.OperatorClaims{op}, AccountResolver: resolver, SystemAccount: systemAccount,
		TLS: true, TLSVerify: true, TLSConfig: serverTLS, TLSTimeout: 5,
	})
	url := "tls://" + srv.Addr().String()

	clientTLS, err := ClientTLS(pki.ca, pki.clientCert, pki.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Open(ctx, Config{URL: url, CredsFile: creds, TLS: clientTLS, Node: "secure", Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open with credentials and client certificate: %v", err)
	}
	defer b.Close()
	ev := testEvent(9001)
	if out, err := b.Ingest(ctx, ev); err != nil || out != Accepted {
		t.Fatalf("first ingest: %v %v", out, err)
	}
	if out, err := b.Ingest(ctx, testEvent(9001)); err != nil || out != Duplicate {
		t.Fatalf("second ingest: %v %v, want Duplicate", out, err)
	}

	// Without credentials: refused by the server, reported as such.
	short, cancelShort := context.WithTimeout(ctx, 10*time.Second)
	defer cancelShort()
	if b2, err := Open(short, Config{URL: url, TLS: clientTLS, Node: "nocreds", Logger: testLogger(t)}); err == nil {
		b2.Close()
		t.Fatal("a client without credentials connected")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("without credentials: %v, want an authorization error", err)
	}
	// Without a client certificate: the TLS handshake fails.
	caOnly, err := ClientTLS(pki.ca, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if b3, err := Open(short, Config{URL: url, CredsFile: creds, TLS: caOnly, Node: "nocert", Logger: testLogger(t)}); err == nil {
		b3.Close()
		t.Fatal("a client without a certificate connected")
	}
}

func TestClientTLSRefusesIncompleteFiles(t *testing.T) {
	if c, err := ClientTLS("", "", ""); c != nil || err != nil {
		t.Errorf("no files: %v %v, want no TLS", c, err)
	}
	if _, err := ClientTLS("", "cert.pem", ""); err == nil {
		t.Error("a certificate without its key accepted")
	}
	bad := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	if _, err := ClientTLS(bad, "", ""); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("garbage CA: %v", err)
	}
	if _, err := ClientTLS("/nonexistent/ca.pem", "", ""); err == nil {
		t.Error("missing CA file accepted")
	}
}

type testPKI struct{ ca, serverCert, serverKey, clientCert, clientKey string }

// newTestPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, as PEM files in dir.
func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "comet test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	p := testPKI{ca: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

// newTestCredentials makes an operator, a system account, an account
// allowed to use JetStream, and a user of it; the user's .creds file is
// written to dir. accounts maps account public keys to their JWTs.
func newTestCredentials(t *testing.T, dir string) (creds string, op *jwt.OperatorClaims, accounts map[string]string, systemAccount string) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Helper()
			t.Fatal(err)
		}
	}
	opKP, err := nkeys.CreateOperator()
	must(err)
	opPub, _ := opKP.PublicKey()
	op = jwt.NewOperatorClaims(opPub)
	op.Name = "comet-test"
	opJWT, err := op.Encode(opKP)
	must(err)
	op, err = jwt.DecodeOperatorClaims(opJWT)
	must(err)

	accounts = make(map[string]string)
	account := func(name string, jetStream bool) nkeys.KeyPair {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, _ := kp.PublicKey()
		claims := jwt.NewAccountClaims(pub)
		claims.Name = name
		if jetStream {
			claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		encoded, err := claims.Encode(opKP)
		must(err)
		accounts[pub] = encoded
		return kp
	}
	sysKP := account("SYS", false)
	systemAccount, _ = sysKP.PublicKey()
	accKP := account("COMET", true)

	userKP, err := nkeys.CreateUser()
	must(err)
	userPub, _ := userKP.PublicKey()
	user := jwt.NewUserClaims(userPub)
	user.Name = "comet"
	userJWT, err := user.Encode(accKP)
	must(err)
	seed, _ := userKP.Seed()
	data, err := jwt.FormatUserConfig(userJWT, seed)
	must(err)
	creds = filepath.Join(dir, "comet.creds")
	must(os.WriteFile(creds, data, 0o600))
	return creds, op, accounts, systemAccount
}
