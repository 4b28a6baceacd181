package broker_test

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/egress"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/tlstest"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/stages"
	"github.com/comet-go/comet/vtp"
	"github.com/comet-go/comet/whitelist"
)

// TLS on every VTP endpoint (docs/tls.md), through real sockets, with
// certificates made by crypto/x509 (internal/tlstest).

func listenOn(t testing.TB, desc string) endpoint.Endpoint {
	t.Helper()
	ep, err := endpoint.ParseServer(desc)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func target(t testing.TB, desc string, port int) endpoint.Endpoint {
	t.Helper()
	ep, err := endpoint.ParseClient(desc, port)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func dialer(t testing.TB, desc string) *endpoint.Dialer {
	t.Helper()
	d, err := endpoint.NewDialer(target(t, desc, 0), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// startTLS runs a broker whose receive port is ssl: and whose broadcast
// port is ssl: with clientCA= (mutual TLS), logging into log.
func startTLS(t *testing.T, p *tlstest.PKI, name string, log *pgpLog, mutate func(*broker.Config)) *broker.Broker {
	t.Helper()
	return start(t, func(c *broker.Config) {
		c.Receive = []endpoint.Endpoint{listenOn(t, p.SSL(name+"-recv", ""))}
		c.Broadcast = []endpoint.Endpoint{listenOn(t, p.SSL(name, ":clientCA="+p.ClientCAFile))}
		c.Node = name
		if log != nil {
			c.Logger = logTo(log)
		}
		if mutate != nil {
			mutate(c)
		}
	})
}

// submitTLS submits over tls: to the broker's receive port and requires an
// ack.
func submitTLS(t *testing.T, p *tlstest.PKI, b *broker.Broker, payload []byte) {
	t.Helper()
	m, err := vtptest.SubmitVia(dialer(t, p.Target(recvAddr(b), "")), payload, replyTimeout)
	if err != nil || m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("submit over TLS: %+v %v", m, err)
	}
}

// subscribeTLS connects a Comet-like subscriber over tls: with a client
// certificate named name and waits until the broker has its filters.
func subscribeTLS(t *testing.T, p *tlstest.PKI, b *broker.Broker, name string, filters ...string) *vtptest.Subscriber {
	t.Helper()
	s, err := vtptest.DialVia(dialer(t, p.Target(castAddr(b), p.Client(name))), vtptest.Comet, filters...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if !waitUntil(5*time.Second, func() bool { st, ok := stats(b, s.LocalAddr()); return ok && st.Authenticated }) {
		t.Fatalf("TLS subscriber %s not authenticated", name)
	}
	return s
}

// Authors submit over ssl: and subscribers receive over ssl: with client
// certificates: every sample gets Comet's verdict and reaches the
// subscriber byte for byte; the subscriber's certificate is shown in the
// broadcaster's statistics, and logged with the submissions.
func TestTLSSubmitAndSubscribeByteExact(t *testing.T) {
	p := tlstest.NewPKI(t)
	log := &pgpLog{t: t}
	b := startTLS(t, p, "tls", log, nil)
	sub := subscribeTLS(t, p, b, "subscriber-1")
	st, _ := stats(b, sub.LocalAddr())
	if st.CertSubject != "CN=subscriber-1,O=Comet tests" || len(st.CertSHA256) != 95 {
		t.Errorf("subscriber's certificate in the statistics: %q %q", st.CertSubject, st.CertSHA256)
	}
	d := dialer(t, p.Target(recvAddr(b), ""))
	var want [][]byte
	for _, s := range samples(t) {
		m, err := vtptest.SubmitVia(d, s.Data, replyTimeout)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		switch {
		case s.Verdict == "ack" && (m == nil || m.Role != vtp.RoleAck):
			t.Errorf("%s: %+v, want ack", s.Name, m)
		case s.Verdict == "ack":
			want = append(want, s.Data)
		case s.Verdict == "nak" && (m == nil || m.Role != vtp.RoleNak):
			t.Errorf("%s: %+v, want nak", s.Name, m)
		}
	}
	if !sub.WaitEvents(len(want), deliveryWait) {
		t.Fatalf("subscriber got %d of %d events over TLS", sub.Count(), len(want))
	}
	for i, ev := range sub.Events() {
		if !bytes.Equal(ev, want[i]) {
			t.Fatalf("event %d differs from what was submitted", i)
		}
	}
	if !log.waitFor(time.Second, `subscriber connected`) || !strings.Contains(log.String(), "peer_cert=\"CN=subscriber-1,O=Comet tests\"") {
		t.Error("the subscriber's certificate is not in the connection log")
	}
	if n := b.Stats().TLSFailures; len(n) != 0 {
		t.Errorf("TLS failures: %v", n)
	}
}

// Two brokers, each subscribed to the other over tls: with a client
// certificate the other's clientCA= accepts: an event submitted to either
// reaches the other's subscribers byte for byte, and each lists the
// other's certificate among its subscribers. (A is restarted on its ports
// and store to learn B's port, which B's subscription rides out.)
func TestTLSBrokersLinkedBothWays(t *testing.T) {
	p := tlstest.NewPKI(t)
	storeA := t.TempDir()
	// A's ports are below the ephemeral range: while A is down, B's
	// retries could otherwise take A's port as their own.
	ports := vtptest.FreePorts(t, 2)
	onPort := func(desc string, port int) endpoint.Endpoint {
		return listenOn(t, strings.Replace(desc, "ssl:0:", "ssl:"+strconv.Itoa(port)+":", 1))
	}
	recvAt := onPort(p.SSL("broker-a-recv", ""), ports[0])
	castAt := onPort(p.SSL("broker-a", ":clientCA="+p.ClientCAFile), ports[1])
	a1 := start(t, func(c *broker.Config) {
		c.Receive = []endpoint.Endpoint{recvAt}
		c.Broadcast = []endpoint.Endpoint{castAt}
		c.Bus.StoreDir = storeA
		c.Node = "broker-a"
	})
	b := startTLS(t, p, "broker-b", nil, func(c *broker.Config) {
		c.LocalIVO = "ivo://test.broker/b"
		c.Subscribe = []endpoint.Endpoint{target(t, p.Target(castAddr(a1), p.Client("broker-b")), 8099)}
		c.Subscriber.Backoff = fastBackoff
	})
	hasSubscriber := func(x *broker.Broker, cn string) bool {
		return slices.ContainsFunc(x.Stats().Subscribers, func(st egress.SubscriberStats) bool {
			return st.Authenticated && st.CertSubject == "CN="+cn+",O=Comet tests"
		})
	}
	if !waitUntil(10*time.Second, func() bool { return hasSubscriber(a1, "broker-b") }) {
		t.Fatalf("B never subscribed to A over TLS: %+v", a1.Stats())
	}
	if err := a1.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	a := start(t, func(c *broker.Config) {
		c.Receive = []endpoint.Endpoint{recvAt}
		c.Broadcast = []endpoint.Endpoint{castAt}
		c.Bus.StoreDir = storeA
		c.Node = "broker-a"
		c.Subscribe = []endpoint.Endpoint{target(t, p.Target(castAddr(b), p.Client("broker-a")), 8099)}
		c.Subscriber.Backoff = fastBackoff
	})
	if !waitUntil(20*time.Second, func() bool { return hasSubscriber(a, "broker-b") && hasSubscriber(b, "broker-a") }) {
		t.Fatalf("not linked both ways: A's subscribers %+v, B's %+v", a.Stats().Subscribers, b.Stats().Subscribers)
	}
	subA, subB := subscribeTLS(t, p, a, "reader-a"), subscribeTLS(t, p, b, "reader-b")
	evA, ivA := vtptest.WithIVORN(benchEvent(t), "ivo://test.tls/a#1"), "ivo://test.tls/a#1"
	evB, ivB := vtptest.WithIVORN(benchEvent(t), "ivo://test.tls/b#1"), "ivo://test.tls/b#1"
	submitTLS(t, p, a, evA)
	submitTLS(t, p, b, evB)
	for _, c := range []struct {
		name string
		sub  *vtptest.Subscriber
		iv   string
		ev   []byte
	}{{"A to B", subB, ivA, evA}, {"B to A", subA, ivB, evB}} {
		if !c.sub.WaitFor(deliveryWait, func(s *vtptest.Subscriber) bool { return slices.Contains(s.IVORNs(), c.iv) }) {
			t.Fatalf("%s: %s not delivered over the TLS link", c.name, c.iv)
		}
		i := slices.Index(c.sub.IVORNs(), c.iv)
		if !bytes.Equal(c.sub.Events()[i], c.ev) {
			t.Errorf("%s: the event changed on the way", c.name)
		}
	}
}

// With clientCA= the broadcaster serves the subscriber whose certificate
// the CA issued and refuses, each with its reason logged and counted, one
// without a certificate, a self-signed one, one from another CA, an
// expired one and one that --allow-cert does not list; the good
// subscriber is served throughout.
func TestMutualTLSRefusals(t *testing.T) {
	p := tlstest.NewPKI(t)
	log := &pgpLog{t: t}
	good := p.ClientCA.Issue(tlstest.Options{CN: "good"})
	allow, err := whitelist.NewCerts([]string{whitelist.Fingerprint(good.Cert)})
	if err != nil {
		t.Fatal(err)
	}
	b := startTLS(t, p, "mtls", log, func(c *broker.Config) { c.AllowCerts = allow })
	cert, key := good.WriteFiles(p.Dir, "good")
	sub, err := vtptest.DialVia(dialer(t, p.Target(castAddr(b), ":certificate="+cert+":privateKey="+key)), vtptest.Comet)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if !waitUntil(5*time.Second, func() bool { st, ok := stats(b, sub.LocalAddr()); return ok && st.Authenticated }) {
		t.Fatal("the listed subscriber was not served")
	}

	listed := p.ClientCA.Issue(tlstest.Options{CN: "unlisted"})
	cases := []struct {
		name string
		cert *tlstest.Cert
		want endpoint.Failure
	}{
		{"no certificate", nil, endpoint.FailNoCertificate},
		{"self-signed", tlstest.SelfSigned(t, tlstest.Options{CN: "good"}), endpoint.FailUnknownAuthority},
		{"another CA", tlstest.NewCA(t, "Client CA").Issue(tlstest.Options{CN: "good"}), endpoint.FailUnknownAuthority},
		{"expired", p.ClientCA.Issue(tlstest.Options{CN: "old", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}),
			endpoint.FailExpired},
		{"not in --allow-cert", listed, endpoint.FailNotAllowed},
	}
	for i, c := range cases {
		before := b.Stats().TLSFailures[c.want] // self-signed and another CA share a reason
		conf := &tls.Config{RootCAs: p.CA.Pool(), ServerName: "127.0.0.1"}
		if c.cert != nil {
			// Sent whatever the server asks for, as OpenSSL's clients do.
			pair, _ := tls.X509KeyPair(c.cert.CertPEM, c.cert.KeyPEM)
			conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		}
		conn, err := tls.Dial("tcp", castAddr(b), conf)
		if err == nil {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1)) // TLS 1.3: the refusal comes as an alert
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "remote error") {
			t.Errorf("%s: the client was not refused: %v", c.name, err)
		}
		// The client sees the alert before the server has counted it: wait.
		if !waitUntil(5*time.Second, func() bool { return b.Stats().TLSFailures[c.want] == before+1 }) {
			t.Errorf("%s: no %v failure counted: %v", c.name, c.want, b.Stats().TLSFailures)
		}
		waitUntil(5*time.Second, func() bool { return b.Stats().Drops[egress.DropTLS] >= uint64(i+1) })
		if n := b.Stats().Drops[egress.DropTLS]; n != uint64(i+1) {
			t.Errorf("%s: %d refusals counted, want %d", c.name, n, i+1)
		}
	}
	for _, want := range []string{"failure=no_certificate", "failure=unknown_authority", "failure=expired", "failure=not_allowed",
		whitelist.Fingerprint(listed.Cert)} {
		if !log.waitFor(time.Second, want) {
			t.Errorf("log has no %q", want)
		}
	}
	for line := range strings.SplitSeq(log.String(), "\n") {
		if strings.Contains(line, "TLS handshake failed") && !strings.Contains(line, "peer=127.0.0.1:") {
			t.Errorf("a TLS failure logged without the peer: %s", line)
		}
	}
	// The listed subscriber was served throughout.
	ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.tls/mtls#after")
	submitTLS(t, p, b, ev)
	if !sub.WaitFor(deliveryWait, func(s *vtptest.Subscriber) bool { return slices.Contains(s.IVORNs(), "ivo://test.tls/mtls#after") }) {
		t.Fatal("the listed subscriber stopped receiving")
	}
}

// A tls: subscription refuses an upstream whose certificate is for
// another name, issued by a CA it does not trust, or expired: each attempt
// fails with the reason in its log line, is counted, and is retried with
// the back-off.
func TestTLSUpstreamFailuresRetried(t *testing.T) {
	p := tlstest.NewPKI(t)
	other := tlstest.NewPKI(t) // a CA the subscription does not trust
	named := start(t, func(c *broker.Config) {
		c.Receive = nil
		c.Broadcast = []endpoint.Endpoint{listenOn(t, sslFor(t, p, "elsewhere", "broker.example.org"))}
	})
	alien := start(t, func(c *broker.Config) {
		c.Receive = nil
		c.Broadcast = []endpoint.Endpoint{listenOn(t, other.SSL("alien", ""))}
	})
	expired := tlstest.ExpiredServer(t, p.CA)
	for _, c := range []struct {
		name, addr string
		want       endpoint.Failure
		says       string
	}{
		{"wrong host name", castAddr(named), endpoint.FailHostname, "certificate not valid for the host name"},
		{"unknown CA", castAddr(alien), endpoint.FailUnknownAuthority, "certificate signed by unknown authority"},
		{"expired", expired, endpoint.FailExpired, "certificate has expired"},
	} {
		t.Run(c.name, func(t *testing.T) {
			log := &pgpLog{t: t}
			down := start(t, func(cfg *broker.Config) {
				cfg.Receive, cfg.Broadcast = nil, nil
				cfg.Stages.Stages = nil
				cfg.Subscribe = []endpoint.Endpoint{target(t, p.Target(c.addr, ""), 8099)}
				cfg.Subscriber.Backoff = fastBackoff
				cfg.Logger = logTo(log)
			})
			if !waitUntil(10*time.Second, func() bool { return down.Stats().TLSFailures[c.want] >= 3 }) {
				t.Fatalf("%v failures: %v, want at least 3 attempts", c.want, down.Stats().TLSFailures)
			}
			// Each attempt's line is logged just after it is counted.
			log.waitFor(5*time.Second, "attempt=3")
			n := 0
			for line := range strings.SplitSeq(log.String(), "\n") {
				if strings.Contains(line, "upstream connection lost; reconnecting") {
					n++
					if !strings.Contains(line, c.says) || !strings.Contains(line, "TLS handshake with "+c.addr) {
						t.Errorf("log line does not say why: %s", line)
					}
				}
			}
			if n < 3 {
				t.Errorf("%d reconnect lines", n)
			}
		})
	}
}

// sslFor is PKI.SSL with a certificate for names only.
func sslFor(t *testing.T, p *tlstest.PKI, name string, names ...string) string {
	cert, key := p.CA.Issue(tlstest.Options{CN: name, Names: names}).WriteFiles(p.Dir, name)
	return "ssl:0:interface=127.0.0.1:privateKey=" + key + ":certKey=" + cert
}

// OpenPGP works unchanged over TLS: author → A (--sender-auth,
// --subscriber-auth, ssl: with clientCA=) → B (--key-id, a tls:
// subscription with a client certificate) → subscriber: the signed event
// arrives byte-identical, its signature still verifies, and a badly
// signed one is naked over TLS as over TCP.
func TestOpenPGPOverTLS(t *testing.T) {
	p := tlstest.NewPKI(t)
	a := startTLS(t, p, "pgp-a", nil, func(c *broker.Config) {
		c.Receiver.VerifySignature = newTrust(t, []string{"author"}, nil).EventSigner
		c.Broadcaster.VerifySubscriber = newTrust(t, []string{"listener"}, nil).SubscriberSigner
	})
	b := startTLS(t, p, "pgp-b", nil, func(c *broker.Config) {
		c.Receive = nil
		c.Subscribe = []endpoint.Endpoint{target(t, p.Target(castAddr(a), p.Client("pgp-b")), 8099)}
		c.LocalIVO = "ivo://test.broker/downstream"
		c.Subscriber.Backoff = fastBackoff
		c.Subscriber.Sign = listenerSign(t)
	})
	if !waitUntil(10*time.Second, func() bool {
		st := a.Stats().Subscribers
		return len(st) == 1 && st[0].Signer != "" && st[0].CertSubject == "CN=pgp-b,O=Comet tests"
	}) {
		t.Fatalf("B never authenticated to A over TLS: %+v", a.Stats().Subscribers)
	}
	s := subscribeTLS(t, p, b, "reader")
	signed := pgpVector(t, "event-signed-author.xml")
	submitTLS(t, p, a, signed)
	if !s.WaitEvents(1, deliveryWait) {
		t.Fatal("event not relayed through the authenticated TLS hop")
	}
	checkSignedRelay(t, s.Events()[0], signed)
	m, err := vtptest.SubmitVia(dialer(t, p.Target(recvAddr(a), "")), pgpVector(t, "event-signed-author-tampered.xml"), replyTimeout)
	if err != nil || m == nil || m.Role != vtp.RoleNak || !strings.HasPrefix(m.Result, sigRejected) {
		t.Fatalf("tampered event over TLS: %+v %v", m, err)
	}
}

// ReloadTLS re-reads the files: handshakes after it present the new
// certificate; a bad file keeps the current one and names the listener.
func TestTLSReload(t *testing.T) {
	p := tlstest.NewPKI(t)
	b := startTLS(t, p, "reload", nil, nil)
	subject := func() string {
		c, err := dialer(t, p.Target(recvAddr(b), "")).Dial(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		id, _ := endpoint.PeerIdentity(c)
		return id.Subject
	}
	if s := subject(); s != "CN=reload-recv,O=Comet tests" {
		t.Fatalf("before: %s", s)
	}
	p.CA.Issue(tlstest.Options{CN: "renewed", Names: []string{"127.0.0.1"}}).WriteFiles(p.Dir, "reload-recv")
	if err := b.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if s := subject(); s != "CN=renewed,O=Comet tests" {
		t.Fatalf("after reload: %s", s)
	}
	os.WriteFile(filepath.Join(p.Dir, "reload-recv.crt"), []byte("not a certificate"), 0o600)
	err := b.ReloadTLS()
	if err == nil || !strings.Contains(err.Error(), recvAddr(b)) || !strings.Contains(err.Error(), "certKey") {
		t.Fatalf("a bad certificate file: %v", err)
	}
	if s := subject(); s != "CN=renewed,O=Comet tests" {
		t.Fatalf("after a failed reload: %s", s)
	}
}

// Twisted peers (Debian's Twisted and pyOpenSSL, what Comet runs on),
// each given the endpoint description Comet would be given: an author
// submitting over tls: with a client certificate, a subscriber receiving
// over tls:, and an ssl: broadcaster that this broker's tls:
// subscription receives from.
func TestTwistedPeersOverTLS(t *testing.T) {
	tlstest.NeedTwisted(t)
	p := tlstest.NewPKI(t)
	b := startTLS(t, p, "twisted", nil, func(c *broker.Config) {
		c.Receive = []endpoint.Endpoint{listenOn(t, p.SSL("twisted-recv", ":clientCA="+p.ClientCAFile))}
	})
	sub := tlstest.StartTwisted(t, "subscriber", p.Target(castAddr(b), p.Client("twisted-subscriber")), "2")
	if !waitUntil(10*time.Second, func() bool {
		return slices.ContainsFunc(b.Stats().Subscribers, func(st egress.SubscriberStats) bool {
			return st.Authenticated && st.CertSubject == "CN=twisted-subscriber,O=Comet tests"
		})
	}) {
		t.Fatalf("the Twisted subscriber did not authenticate: %+v", b.Stats().Subscribers)
	}

	ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.twisted/author#1")
	file := filepath.Join(t.TempDir(), "event.xml")
	os.WriteFile(file, ev, 0o600)
	author := tlstest.StartTwisted(t, "author", p.Target(recvAddr(b), p.Client("twisted-author")), file)
	m, err := author.Next(20 * time.Second)
	if err != nil || m["receipt"] != "transport:ack" || m["origin"] != "ivo://test.twisted/author#1" {
		t.Fatalf("Twisted author: %v %v", m, err)
	}
	got, err := sub.Next(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := base64.StdEncoding.DecodeString(got["event"].(string)); !bytes.Equal(raw, ev) {
		t.Fatal("the Twisted subscriber got other bytes")
	}

	// A Twisted ssl: broadcaster upstream, with a certificate for
	// localhost and its chain given as extraCertChain.
	inter := tlstest.NewIntermediate(t, p.CA, "Intermediate CA")
	cert, key := inter.Issue(tlstest.Options{CN: "twisted-upstream", Names: []string{"localhost"}}).WriteFiles(p.Dir, "twisted-up")
	upEv := vtptest.WithIVORN(benchEvent(t), "ivo://test.twisted/upstream#1")
	upFile := filepath.Join(t.TempDir(), "up.xml")
	os.WriteFile(upFile, upEv, 0o600)
	up := tlstest.StartTwisted(t, "broadcaster", "ssl:0:interface=127.0.0.1:privateKey="+endpoint.Quote(key)+
		":certKey="+endpoint.Quote(cert)+":extraCertChain="+endpoint.Quote(inter.WriteFile(p.Dir, "chain.pem")), upFile)
	port, err := up.Next(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	down := start(t, func(c *broker.Config) {
		c.Receive, c.Broadcast = nil, nil
		c.Node = "twisted-down"
		c.Subscribe = []endpoint.Endpoint{target(t, "tls:localhost:"+strconv.Itoa(int(port["port"].(float64)))+":trustRoots="+p.Trust, 8099)}
		c.Subscriber.Backoff = fastBackoff
		c.Stages.Stages = []stages.Stage{rec}
	})
	if acked, err := up.Next(20 * time.Second); err != nil || acked["acked"] != "ivo://test.twisted/upstream#1" {
		t.Fatalf("the Twisted broadcaster's event was not acked: %v %v", acked, err)
	}
	if !waitUntil(deliveryWait, func() bool { return len(rec.got()) == 1 }) || !bytes.Equal(rec.got()[0], upEv) {
		t.Fatal("the Twisted broadcaster's event was not stored byte for byte")
	}
	if n := down.Stats().Rejections[ingress.RejectTLS]; n != 0 {
		t.Errorf("%d TLS rejections", n)
	}
}
