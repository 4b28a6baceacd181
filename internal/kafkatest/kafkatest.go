// Package kafkatest runs a real Kafka wire protocol for tests: franz-go's
// in-process kfake cluster on loopback ports, with SASL SCRAM-SHA-512 on,
// optionally TLS, and OAUTHBEARER checked against a local OIDC token
// endpoint (OIDC). Nothing is mocked on the client side: the broker's own
// franz-go clients speak to it over TCP.
package kafkatest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The SCRAM-SHA-512 superuser every cluster has; tests use it to produce
// and read back, and give it to the broker (--kafka-user) unless a test
// is about authentication.
const (
	User     = "comet"
	Password = "kafka-test-password"
)

// bridgeUser is the PLAIN identity an accepted OAUTHBEARER session
// becomes inside kfake, which has no OAUTHBEARER of its own.
const (
	bridgeUser = "oauth-bridge"
	bridgePass = "oauth-bridge-password"
)

// Options configure Start. Zero values are fine.
type Options struct {
	Partitions int32    // of the seeded topics; 0 = 1
	Topics     []string // created at start
	// MaxMessageBytes raises the largest record batch the cluster takes
	// (default 1 MiB, Kafka's).
	MaxMessageBytes int
	// TLS serves TLS with a certificate for 127.0.0.1 from a throw-away CA
	// (Cluster.CAFile).
	TLS bool
	// OIDC, if set, makes the cluster accept OAUTHBEARER sessions whose
	// token that endpoint issued and has not expired.
	OIDC *OIDC
	// ReauthEvery, if set, is connections.max.reauth.ms: clients must
	// authenticate again on every connection this often (KIP-368).
	ReauthEvery time.Duration
	// DataDir keeps the cluster's data, so that Restart finds it.
	DataDir string
}

// Cluster is a running kfake cluster.
type Cluster struct {
	*kfake.Cluster
	t      testing.TB
	opts   Options
	addrs  []string
	ports  []int
	caFile string
	tlsCfg *tls.Config

	mu     sync.Mutex
	tokens []Presented
}

// Presented is an OAUTHBEARER token a client presented to the cluster.
type Presented struct {
	Token string
	At    time.Time
	Valid bool
}

// Start starts a cluster for the test; it is closed at the test's end.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: opts}
	if opts.TLS {
		c.caFile, c.tlsCfg = serverTLS(t)
	}
	c.start()
	t.Cleanup(func() { c.Cluster.Close() })
	return c
}

func (c *Cluster) start() {
	c.t.Helper()
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", User, Password),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
		kfake.AllowAutoTopicCreation(),
	}
	if c.ports != nil {
		opts = append(opts, kfake.Ports(c.ports...))
	}
	if c.opts.DataDir != "" {
		opts = append(opts, kfake.DataDir(c.opts.DataDir))
	}
	parts := c.opts.Partitions
	if parts == 0 {
		parts = 1
	}
	opts = append(opts, kfake.DefaultNumPartitions(int(parts)))
	if len(c.opts.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(parts, c.opts.Topics...))
	}
	configs := map[string]string{}
	if c.opts.MaxMessageBytes > 0 {
		configs["message.max.bytes"] = strconv.Itoa(c.opts.MaxMessageBytes)
	}
	if c.opts.ReauthEvery > 0 {
		configs["connections.max.reauth.ms"] = strconv.FormatInt(c.opts.ReauthEvery.Milliseconds(), 10)
	}
	if len(configs) > 0 {
		opts = append(opts, kfake.BrokerConfigs(configs))
	}
	if c.tlsCfg != nil {
		opts = append(opts, kfake.TLS(c.tlsCfg))
	}
	if c.opts.OIDC != nil {
		opts = append(opts, kfake.Superuser("PLAIN", bridgeUser, bridgePass))
	}
	kc, err := kfake.NewCluster(opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.Cluster = kc
	c.addrs = kc.ListenAddrs()
	if c.ports == nil {
		for _, a := range c.addrs {
			_, p, _ := net.SplitHostPort(a)
			n, _ := strconv.Atoi(p)
			c.ports = append(c.ports, n)
		}
	}
	if c.opts.OIDC != nil {
		c.bridgeOAuthBearer()
	}
}

// Stop closes the cluster (its data stays in DataDir); Restart starts it
// again on the same ports.
func (c *Cluster) Stop() { c.Cluster.Close() }

// Restart starts a stopped cluster on the same ports with the same data.
func (c *Cluster) Restart() {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The ports were just released; another process may hold one
		// for a moment.
		ok := true
		for _, p := range c.ports {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.start()
}

// Brokers is the --kafka value of the cluster.
func (c *Cluster) Brokers() string { return strings.Join(c.addrs, ",") }

// BrokerList is the cluster's addresses.
func (c *Cluster) BrokerList() []string { return c.addrs }

// CAFile is the PEM file of the CA of the cluster's TLS certificate.
func (c *Cluster) CAFile() string { return c.caFile }

// PasswordFile writes Password to a file of the test's and returns its
// path.
func PasswordFile(t testing.TB, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Client is a franz-go client of the superuser, for producing and reading
// back; more options are appended.
func (c *Cluster) Client(more ...kgo.Opt) *kgo.Client {
	c.t.Helper()
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.addrs...),
		kgo.SASL(scram.Auth{User: User, Pass: Password}.AsSha512Mechanism()),
		kgo.ProducerBatchCompression(kgo.ZstdCompression()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(16 << 20),
	}
	if c.tlsCfg != nil {
		pool := x509.NewCertPool()
		pem, _ := os.ReadFile(c.caFile)
		pool.AppendCertsFromPEM(pem)
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	cl, err := kgo.NewClient(append(opts, more...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// Produce writes records (Topic and Partition set by the caller) and
// waits until the cluster has them, zstd-compressed as GCN's are.
func (c *Cluster) Produce(cl *kgo.Client, rs ...*kgo.Record) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		c.t.Fatalf("produce: %v", err)
	}
}

// Tokens returns the OAUTHBEARER tokens presented so far, in order.
func (c *Cluster) Tokens() []Presented {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Presented(nil), c.tokens...)
}

// bridgeOAuthBearer makes kfake, which knows PLAIN and SCRAM only, take
// OAUTHBEARER: its control hooks see each SASL request before the
// cluster does. A handshake for OAUTHBEARER proceeds as PLAIN; the
// authenticate request's RFC 7628 client response is read, its bearer
// token checked with the OIDC endpoint (issued by it, not expired), and
// then either refused with SASL_AUTHENTICATION_FAILED or replaced by the
// bridge user's PLAIN credentials, which the cluster accepts. Every token
// presented is recorded.
func (c *Cluster) bridgeOAuthBearer() {
	kc := c.Cluster
	kc.ControlKey(int16(kmsg.SASLHandshake), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		if r := req.(*kmsg.SASLHandshakeRequest); r.Mechanism == "OAUTHBEARER" {
			r.Mechanism = "PLAIN"
		}
		return nil, nil, false
	})
	kc.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		r := req.(*kmsg.SASLAuthenticateRequest)
		msg := string(r.SASLAuthBytes)
		i := strings.Index(msg, "\x01auth=Bearer ")
		if !strings.HasPrefix(msg, "n,") || i < 0 {
			return nil, nil, false // SCRAM or PLAIN: the cluster's own
		}
		tok := msg[i+len("\x01auth=Bearer "):]
		tok, _, _ = strings.Cut(tok, "\x01")
		valid := c.opts.OIDC.Valid(tok)
		c.mu.Lock()
		c.tokens = append(c.tokens, Presented{Token: tok, At: time.Now(), Valid: valid})
		c.mu.Unlock()
		if !valid {
			resp := r.ResponseKind().(*kmsg.SASLAuthenticateResponse)
			resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
			m := "invalid or expired token"
			resp.ErrorMessage = &m
			return resp, nil, true
		}
		r.SASLAuthBytes = []byte("\x00" + bridgeUser + "\x00" + bridgePass)
		return nil, nil, false
	})
}

// serverTLS makes a CA and a certificate for 127.0.0.1 signed by it.
func serverTLS(t testing.TB) (caFile string, cfg *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kafkatest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "kafka-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
	}
}
