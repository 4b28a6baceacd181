package broker_test

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/egress"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/signature"
	"github.com/comet-go/comet/voevent"
	"github.com/comet-go/comet/vtp"
)

// OpenPGP through real sockets (docs/openpgp.md): the shared vectors of
// testdata/openpgp, the hooks wired as cmd/comet/openpgp.go wires them.

var pgpDir = filepath.Join(testdataDir, "openpgp")

const (
	authorFpr     = "486658CA5AAD0680E4D75E445EFA82579802FF2D"
	notaryFpr     = "E0E8D8E8F1F534682DE0178D13F349F3F74C035D"
	listenerFpr   = "CBB85D4B7F4A992A9CC35AC39475EF81F46E9064"
	authorIVORN   = "ivo://example.org/author"
	listenerUID   = "ivo://example.org/listener"
	snrFilter     = `//Param[@name="SNR"]` // the filter authenticate-signed-listener.xml carries
	sigRejected   = "Event rejected: Signature validation failed: "
	pgpSubscriber = "ivo://test.subscriber/pgp"
)

func pgpVector(t *testing.T, name string) []byte { return mustRead(t, filepath.Join(pgpDir, name)) }

// keyDir copies the named vector public keys ("author", ...) into a new
// directory, as an operator's --trusted-keys or --public-keys directory.
func keyDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n+".pub.asc"), pgpVector(t, n+".pub.asc"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newTrust is --trusted-keys DIR (and --public-keys DIR when others are
// given), loaded the way cmd/comet loads them.
func newTrust(t *testing.T, trusted, others []string) *signature.Trust {
	t.Helper()
	othersPath := ""
	if len(others) > 0 {
		othersPath = keyDir(t, others...)
	}
	tr, err := signature.NewTrust(keyDir(t, trusted...), othersPath)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// The listener's signer, loaded once: its S2K is deliberately slow.
var (
	listenerOnce   sync.Once
	listenerSigner *signature.Signer
	listenerErr    error
)

func listenerSign(t *testing.T) func([]byte) ([]byte, error) {
	t.Helper()
	listenerOnce.Do(func() {
		listenerSigner, listenerErr = signature.LoadSigner(filepath.Join(pgpDir, "listener.sec.asc"), listenerFpr,
			filepath.Join(pgpDir, "passphrase.txt"))
	})
	if listenerErr != nil {
		t.Fatal(listenerErr)
	}
	return listenerSigner.Sign
}

// signedReply is an authenticate reply without filters, signed by the
// listener key as a subscribing broker with --key-id signs it.
func signedReply(t *testing.T) []byte {
	t.Helper()
	msg, err := listenerSign(t)(vtp.AuthenticateReply(localIVO, pgpSubscriber, nil, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// pgpLog keeps a broker's log for assertions and copies it to the test log.
type pgpLog struct {
	vtptest.SyncBuffer
	t testing.TB
}

func (l *pgpLog) waitFor(d time.Duration, s string) bool {
	return waitUntil(d, func() bool { return strings.Contains(l.String(), s) })
}

func logTo(l *pgpLog) *slog.Logger {
	w := io.MultiWriter(&l.SyncBuffer, vtptest.LogWriter{T: l.t})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// authSub is a subscriber that answers the broker's authenticate request
// with the exact bytes reply (nil: never answers, like pygcn), once gate
// is closed (nil: at once); it answers iamalive and acks every event it
// is sent.
type authSub struct {
	conn   net.Conn
	reply  []byte
	gate   <-chan struct{}
	dialed time.Time

	wmu    sync.Mutex
	mu     sync.Mutex
	events [][]byte
	ended  time.Time
	done   chan struct{}
	quit   chan struct{} // closed at cleanup: stop waiting for gate
}

func dialAuth(t *testing.T, addr string, reply []byte, gate <-chan struct{}) *authSub {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := &authSub{conn: conn, reply: reply, gate: gate, dialed: time.Now(), done: make(chan struct{}), quit: make(chan struct{})}
	go s.loop()
	t.Cleanup(func() { close(s.quit); conn.Close(); <-s.done })
	return s
}

func (s *authSub) write(p []byte) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	vtp.WriteFrame(s.conn, p)
}

func (s *authSub) loop() {
	defer close(s.done)
	fr := vtp.NewFrameReader(s.conn, 1<<20)
	for {
		p, err := fr.ReadFrame()
		if err != nil {
			s.mu.Lock()
			s.ended = time.Now()
			s.mu.Unlock()
			return
		}
		info, err := voevent.Inspect(p, voevent.Options{})
		if err != nil {
			continue
		}
		if voevent.IsVOEventRole(info.Role) {
			s.mu.Lock()
			s.events = append(s.events, p)
			s.mu.Unlock()
			s.write(vtp.Ack(info.IVORN, pgpSubscriber, time.Now()))
			continue
		}
		msg, err := vtp.ParseTransport(p)
		if err != nil {
			continue
		}
		switch msg.Role {
		case vtp.RoleAuthenticate:
			if s.reply != nil {
				if s.gate != nil {
					select {
					case <-s.gate:
					case <-s.quit:
						return
					}
				}
				s.write(s.reply)
			}
		case vtp.RoleIAmAlive:
			s.write(vtp.IAmAlive(msg.Origin, pgpSubscriber, time.Now()))
		}
	}
}

func (s *authSub) Events() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.events...)
}

func (s *authSub) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// connectedFor is how long the connection lasted (so far, if still open).
func (s *authSub) connectedFor() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended.IsZero() {
		return time.Since(s.dialed)
	}
	return s.ended.Sub(s.dialed)
}

func (s *authSub) local() string { return s.conn.LocalAddr().String() }

// stats finds the broker's view of the subscriber at local.
func stats(b *broker.Broker, local string) (egress.SubscriberStats, bool) {
	for _, x := range b.Stats().Subscribers {
		if x.Peer == local {
			return x, true
		}
	}
	return egress.SubscriberStats{}, false
}

// waitVerified waits until the broker has accepted the subscriber's signed
// reply and installed its filters (the signer is recorded first).
func waitVerified(t *testing.T, b *broker.Broker, local string) egress.SubscriberStats {
	t.Helper()
	var st egress.SubscriberStats
	if !waitUntil(5*time.Second, func() bool {
		var ok bool
		st, ok = stats(b, local)
		return ok && st.Signer != "" && st.Authenticated
	}) {
		t.Fatalf("subscriber %s never authenticated: %+v", local, b.Stats().Subscribers)
	}
	return st
}

// pending is the broadcaster's backlog on the bus: events not yet acked
// by the relay because some subscriber still holds them.
func pending(t *testing.T, b *broker.Broker) uint64 {
	t.Helper()
	n, err := b.Bus().Pending(context.Background(), broker.ConsumerName("test"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// stored reads every event on the broker's bus with its headers.
func stored(t *testing.T, b *broker.Broker) []bus.Delivery {
	t.Helper()
	var out []bus.Delivery
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := b.Bus().Tap(ctx, bus.TapOptions{Seq: 1, StopWhenCaughtUp: true}, func(d *bus.Delivery) error {
		out = append(out, *d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func nakedFor(t *testing.T, m *vtp.Message, ivorn string, reasons ...string) {
	t.Helper()
	if m == nil || m.Role != vtp.RoleNak {
		t.Fatalf("want nak, got %+v", m)
	}
	if m.Origin != ivorn {
		t.Errorf("nak Origin %q, want %q", m.Origin, ivorn)
	}
	if !strings.HasPrefix(m.Result, sigRejected) {
		t.Fatalf("nak Result %q does not start with %q", m.Result, sigRejected)
	}
	for _, r := range reasons {
		if !strings.Contains(m.Result, r) {
			t.Errorf("nak Result %q does not name %q", m.Result, r)
		}
	}
}

func ivornOf(t *testing.T, payload []byte) string {
	t.Helper()
	info, err := voevent.Inspect(payload, voevent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return info.IVORN
}

// The first table of testdata/openpgp/README.md, column by column, through
// a broker's receive socket with --sender-auth: accepted events are acked,
// broadcast byte-identical and stored with Comet-Signature
// "verified:<signer>"; refused ones are naked with the reason and never
// stored. (The "identity rule off" column is library-only: the broker
// always enforces the identity rule.)
func TestOpenPGPSenderAuthVectorsThroughSocket(t *testing.T) {
	const (
		untrusted = "untrusted signer"
		mismatch  = "signer identity does not match AuthorIVORN"
	)
	type cell struct {
		signer string // accept, signed by this key
		reason string // reject, naming this
	}
	acc := func(fpr string) cell { return cell{signer: fpr} }
	rej := func(reason string) cell { return cell{reason: reason} }
	rows := []struct {
		doc  string
		want [3]cell
	}{
		{"event-unsigned.xml", [3]cell{rej("no signature"), rej("no signature"), rej("no signature")}},
		{"event-signed-author.xml", [3]cell{acc(authorFpr), rej(untrusted), rej(untrusted)}},
		{"event-signed-author-caret.xml", [3]cell{acc(authorFpr), rej(untrusted), rej(untrusted)}},
		{"event-signed-notary.xml", [3]cell{acc(notaryFpr), rej(mismatch), rej(untrusted)}},
		{"event-signed-twice.xml", [3]cell{acc(authorFpr), rej(mismatch), rej(untrusted)}},
		{"event-signed-author-tampered.xml", [3]cell{rej("bad signature"), rej("bad signature"), rej("bad signature")}},
		{"event-signed-author-declspan.xml", [3]cell{acc(authorFpr), rej(untrusted), rej(untrusted)}},
	}
	allKeys, err := signature.LoadKeyring(keyDir(t, "author", "notary", "listener"))
	if err != nil {
		t.Fatal(err)
	}
	type hook = func([]byte, string) (string, error)
	columns := []struct {
		name  string
		check func(t *testing.T) hook
	}{
		// The notary's key is known only as a non-trusted --public-keys key.
		{"trusted={author}", func(t *testing.T) hook {
			return newTrust(t, []string{"author"}, []string{"notary"}).EventSigner
		}},
		{"trusted={notary}", func(t *testing.T) hook {
			return newTrust(t, []string{"notary"}, []string{"author", "listener"}).EventSigner
		}},
		// No key file can be empty: an empty trusted set is a Verifier.
		{"trusted={}", func(t *testing.T) hook {
			return (&signature.Verifier{Others: allKeys}).EventSigner
		}},
	}
	for ci, col := range columns {
		t.Run(col.name, func(t *testing.T) {
			b := start(t, func(c *broker.Config) { c.Receiver.VerifySignature = col.check(t) })
			s := subscribe(t, b, vtptest.Comet)
			var accepted [][]byte
			signers := map[string]string{} // by payload: the rows share one ivorn
			for _, row := range rows {
				payload := pgpVector(t, row.doc)
				m := submit(t, recvAddr(b), payload)
				want := row.want[ci]
				if want.signer != "" {
					if m == nil || m.Role != vtp.RoleAck {
						t.Errorf("%s: want ack, got %+v", row.doc, m)
						continue
					}
					accepted = append(accepted, payload)
					signers[string(payload)] = want.signer
					continue
				}
				t.Run(row.doc, func(t *testing.T) { nakedFor(t, m, ivornOf(t, payload), want.reason) })
				if m != nil {
					t.Logf("%s: %s", row.doc, m.Result)
				}
			}
			// Accepted events go out byte-identical, in order; nothing else.
			if !s.WaitEvents(len(accepted), deliveryWait) {
				t.Fatalf("subscriber got %d events, want %d", s.Count(), len(accepted))
			}
			time.Sleep(200 * time.Millisecond)
			got := s.Events()
			if len(got) != len(accepted) {
				t.Fatalf("subscriber got %d events, want the %d accepted", len(got), len(accepted))
			}
			for i := range got {
				if !bytes.Equal(got[i], accepted[i]) {
					t.Errorf("event %d not byte-identical to the file submitted", i)
				}
			}
			// On the bus: exactly the accepted events, marked verified by
			// their signer.
			evs := stored(t, b)
			if len(evs) != len(accepted) {
				t.Fatalf("%d events stored, want the %d accepted", len(evs), len(accepted))
			}
			for i, d := range evs {
				if !bytes.Equal(d.Payload, accepted[i]) {
					t.Errorf("stored event %d differs from the submitted bytes", i)
				}
				if want := "verified:" + signers[string(d.Payload)]; d.Signature != want {
					t.Errorf("stored event %d: Comet-Signature %q, want %q", i, d.Signature, want)
				}
				if d.Author != authorIVORN || d.Origin != bus.OriginAuthor {
					t.Errorf("stored event %d: author %q origin %q", i, d.Author, d.Origin)
				}
			}
		})
	}
}

// The second table of the README through a broadcaster with
// --subscriber-auth, and what an unauthenticated subscriber gets: nothing,
// without holding anything back.
func TestOpenPGPSubscriberAuth(t *testing.T) {
	listenerReply := pgpVector(t, "authenticate-signed-listener.xml")
	noSNR := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/pgp#no-snr") // no SNR Param
	withSNR := []byte(vtptest.FilteringSample)                                // has Param SNR

	t.Run("signed reply, trusted={listener}: served with its filter", func(t *testing.T) {
		log := &pgpLog{t: t}
		b := start(t, func(c *broker.Config) {
			c.Broadcaster.VerifySubscriber = newTrust(t, []string{"listener"}, nil).SubscriberSigner
			c.Broadcaster.AuthTimeout = 500 * time.Millisecond
			c.Logger = logTo(log)
		})
		s := dialAuth(t, castAddr(b), listenerReply, nil)
		st := waitVerified(t, b, s.local())
		if st.Signer != listenerFpr+" "+listenerUID {
			t.Errorf("signer %q, want %q", st.Signer, listenerFpr+" "+listenerUID)
		}
		if len(st.Filters) != 1 || st.Filters[0] != snrFilter {
			t.Errorf("filters %q, want the file's %q", st.Filters, snrFilter)
		}
		mustAck(t, recvAddr(b), noSNR)
		mustAck(t, recvAddr(b), withSNR)
		if !waitUntil(deliveryWait, func() bool { return len(s.Events()) >= 1 }) {
			t.Fatal("authenticated subscriber got no event")
		}
		// Past AuthTimeout: an authenticated subscriber is kept.
		time.Sleep(max(0, 800*time.Millisecond-s.connectedFor()))
		got := s.Events()
		if len(got) != 1 || !bytes.Equal(got[0], withSNR) {
			t.Fatalf("got %d events; want only the one matching %s, byte-identical", len(got), snrFilter)
		}
		if s.closed() {
			t.Fatal("an authenticated subscriber was disconnected")
		}
		if !waitUntil(5*time.Second, func() bool { return pending(t, b) == 0 }) {
			t.Fatalf("%d events held back on the bus", pending(t, b))
		}
	})

	// A refused reply disconnects at once (long before AuthTimeout), and
	// an event broadcast while the subscriber waited unauthenticated was
	// neither sent to it nor held back for it.
	refused := func(t *testing.T, trusted string, others []string, reply []byte, reason string) {
		log := &pgpLog{t: t}
		b := start(t, func(c *broker.Config) {
			c.Broadcaster.VerifySubscriber = newTrust(t, []string{trusted}, others).SubscriberSigner
			c.Broadcaster.AuthTimeout = 20 * time.Second
			c.Logger = logTo(log)
		})
		witness := dialAuth(t, castAddr(b), signedReply(t), nil)
		if trusted == "listener" {
			waitVerified(t, b, witness.local())
		}
		gate := make(chan struct{})
		s := dialAuth(t, castAddr(b), reply, gate)
		if !waitUntil(5*time.Second, func() bool { _, ok := stats(b, s.local()); return ok }) {
			t.Fatal("subscriber not registered")
		}
		mustAck(t, recvAddr(b), withSNR)
		if !waitUntil(5*time.Second, func() bool { return pending(t, b) == 0 && len(stored(t, b)) == 1 }) {
			t.Fatalf("%d events held back on the bus by an unauthenticated subscriber", pending(t, b))
		}
		if s.closed() {
			t.Fatal("disconnected before its reply")
		}
		close(gate)
		if !waitUntil(10*time.Second, s.closed) {
			t.Fatal("subscriber with a refused authenticate reply not disconnected")
		}
		if d := s.connectedFor(); d > 10*time.Second {
			t.Errorf("disconnected after %v: by the auth timeout, not for its signature", d)
		}
		if n := len(s.Events()); n != 0 {
			t.Fatalf("refused subscriber received %d events", n)
		}
		refusals := uint64(1)
		if trusted != "listener" {
			refusals++ // the witness, signed by the listener, is refused too
		}
		if !waitUntil(5*time.Second, func() bool { return b.Stats().Drops[egress.DropAuthFailed] == refusals }) {
			t.Errorf("drops %v, want %d for a refused authenticate reply", b.Stats().Drops, refusals)
		}
		if !log.waitFor(5*time.Second, "authentication failed: "+reason) {
			t.Errorf("log does not give the reason %q", reason)
		}
		mustAck(t, recvAddr(b), noSNR)
		if trusted == "listener" && !waitUntil(deliveryWait, func() bool { return len(witness.Events()) == 2 }) {
			t.Fatalf("authenticated witness got %d events, want 2", len(witness.Events()))
		}
	}
	t.Run("signed reply, trusted={author}: disconnected, no event", func(t *testing.T) {
		refused(t, "author", []string{"listener"}, listenerReply, "untrusted signer")
	})
	t.Run("signed reply, trusted={author}, listener key unknown: disconnected, no event", func(t *testing.T) {
		refused(t, "author", nil, listenerReply, "unknown key: signed by key "+listenerFpr)
	})
	t.Run("unsigned reply: disconnected, no event", func(t *testing.T) {
		refused(t, "listener", nil, vtp.AuthenticateReply(localIVO, pgpSubscriber, nil, time.Now()), "no signature")
	})

	// A pygcn-like subscriber never replies: it gets nothing and is
	// dropped after AuthTimeout, while an authenticated one on the same
	// broker gets everything.
	t.Run("no reply: nothing, dropped after AuthTimeout", func(t *testing.T) {
		const authTimeout = 500 * time.Millisecond
		log := &pgpLog{t: t}
		b := start(t, func(c *broker.Config) {
			c.Broadcaster.VerifySubscriber = newTrust(t, []string{"listener"}, nil).SubscriberSigner
			c.Broadcaster.AuthTimeout = authTimeout
			c.Logger = logTo(log)
		})
		good := dialAuth(t, castAddr(b), signedReply(t), nil)
		waitVerified(t, b, good.local())
		dialed := time.Now()
		py, err := vtptest.Dial(castAddr(b), vtptest.Pygcn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(py.Close)
		if !py.WaitRole(vtp.RoleAuthenticate, 1, 5*time.Second) {
			t.Fatal("no authenticate request")
		}
		first := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/pgp#while-pygcn-waits")
		mustAck(t, recvAddr(b), first)
		if !waitUntil(deliveryWait, func() bool { return len(good.Events()) == 1 }) {
			t.Fatal("authenticated subscriber did not get the event")
		}
		if !waitUntil(5*time.Second, func() bool { return pending(t, b) == 0 }) {
			t.Fatalf("%d events held back on the bus", pending(t, b))
		}
		if !waitUntil(10*time.Second, py.Closed) {
			t.Fatal("silent subscriber not disconnected")
		}
		if d := time.Since(dialed); d < authTimeout-50*time.Millisecond {
			t.Fatalf("disconnected after %v, before AuthTimeout %v", d, authTimeout)
		}
		if n := py.Count(); n != 0 {
			t.Fatalf("unauthenticated subscriber received %d events", n)
		}
		if d := b.Stats().Drops; d[egress.DropAuthTimeout] != 1 || d[egress.DropAuthFailed] != 0 {
			t.Errorf("drops %v, want one for the auth timeout", d)
		}
		mustAck(t, recvAddr(b), withSNR)
		if !waitUntil(deliveryWait, func() bool { return len(good.Events()) == 2 }) {
			t.Fatalf("authenticated subscriber got %d events, want 2", len(good.Events()))
		}
		if got := good.Events(); !bytes.Equal(got[0], first) || !bytes.Equal(got[1], withSNR) {
			t.Fatal("authenticated subscriber's events not byte-identical")
		}
		if good.closed() {
			t.Fatal("authenticated subscriber disconnected")
		}
	})
}

// A subscribing broker with --key-id signs its authenticate replies: an
// upstream with --subscriber-auth serves it; unsigned, it is refused and
// relays nothing.
func TestOpenPGPSigningSubscriberBroker(t *testing.T) {
	upstream := func(t *testing.T) (*broker.Broker, *pgpLog) {
		log := &pgpLog{t: t}
		up := start(t, func(c *broker.Config) {
			c.Broadcaster.VerifySubscriber = newTrust(t, []string{"listener"}, nil).SubscriberSigner
			c.Logger = logTo(log)
		})
		return up, log
	}
	downstream := func(t *testing.T, up *broker.Broker, sign func([]byte) ([]byte, error)) *broker.Broker {
		return start(t, func(c *broker.Config) {
			c.Receive = nil
			c.Subscribe = []endpoint.Endpoint{tcp(castAddr(up))}
			c.LocalIVO = "ivo://test.broker/downstream"
			c.Node = "downstream"
			c.Subscriber.Backoff = fastBackoff
			c.Subscriber.Sign = sign
		})
	}
	t.Run("signed", func(t *testing.T) {
		up, _ := upstream(t)
		down := downstream(t, up, listenerSign(t))
		if !waitUntil(10*time.Second, func() bool {
			st := up.Stats().Subscribers
			return len(st) == 1 && st[0].Signer == listenerFpr+" "+listenerUID && st[0].Authenticated
		}) {
			t.Fatalf("downstream never authenticated: %+v", up.Stats().Subscribers)
		}
		s := subscribe(t, down, vtptest.Comet)
		ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/pgp#signed-hop")
		mustAck(t, recvAddr(up), ev)
		if !s.WaitEvents(1, deliveryWait) || !bytes.Equal(s.Events()[0], ev) {
			t.Fatalf("downstream subscriber got %q", s.IVORNs())
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		up, log := upstream(t)
		down := downstream(t, up, nil)
		s := subscribe(t, down, vtptest.Comet)
		if !waitUntil(10*time.Second, func() bool { return up.Stats().Drops[egress.DropAuthFailed] > 0 }) {
			t.Fatal("unsigned downstream not refused")
		}
		if !log.waitFor(5*time.Second, "authentication failed: no signature") {
			t.Error("log does not give the reason")
		}
		ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/pgp#unsigned-hop")
		mustAck(t, recvAddr(up), ev)
		if !waitUntil(5*time.Second, func() bool { return pending(t, up) == 0 && len(stored(t, up)) == 1 }) {
			t.Fatal("event held back upstream")
		}
		time.Sleep(500 * time.Millisecond) // reconnections come and go meanwhile
		if n := s.Count(); n != 0 {
			t.Fatalf("downstream of a refused subscription got %d events", n)
		}
		for _, st := range up.Stats().Subscribers {
			if st.Signer != "" {
				t.Fatalf("unsigned downstream authenticated: %+v", st)
			}
		}
	})
}

// author → A (--sender-auth, --subscriber-auth) → B (--key-id) →
// subscriber: the event arrives byte-identical and its author's signature
// still verifies.
func TestOpenPGPSignedEventRelayedThroughAuthenticatedHop(t *testing.T) {
	a := start(t, func(c *broker.Config) {
		c.Receiver.VerifySignature = newTrust(t, []string{"author"}, nil).EventSigner
		c.Broadcaster.VerifySubscriber = newTrust(t, []string{"listener"}, nil).SubscriberSigner
	})
	b := start(t, func(c *broker.Config) {
		c.Receive = nil
		c.Subscribe = []endpoint.Endpoint{tcp(castAddr(a))}
		c.LocalIVO = "ivo://test.broker/downstream"
		c.Node = "downstream"
		c.Subscriber.Backoff = fastBackoff
		c.Subscriber.Sign = listenerSign(t)
	})
	if !waitUntil(10*time.Second, func() bool {
		st := a.Stats().Subscribers
		return len(st) == 1 && st[0].Signer != "" && st[0].Authenticated
	}) {
		t.Fatalf("B never authenticated to A: %+v", a.Stats().Subscribers)
	}
	s := subscribe(t, b, vtptest.Comet)
	signed := pgpVector(t, "event-signed-author.xml")
	mustAck(t, recvAddr(a), signed)
	if !s.WaitEvents(1, deliveryWait) {
		t.Fatal("event not relayed through the authenticated hop")
	}
	checkSignedRelay(t, s.Events()[0], signed)
}

// checkSignedRelay requires a relayed event to be the signed one, byte for
// byte, its author's signature still verifying.
func checkSignedRelay(t *testing.T, got, signed []byte) {
	t.Helper()
	if !bytes.Equal(got, signed) {
		t.Fatal("relayed event differs from the submitted file")
	}
	authorOnly, err := signature.LoadKeyring(filepath.Join(pgpDir, "author.pub.asc"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&signature.Verifier{Trusted: authorOnly}).VerifyEvent(got, authorIVORN)
	if err != nil || res.Fingerprint != authorFpr {
		t.Fatalf("relayed event: %+v, %v", res, err)
	}
}

// Generated keys (Ed25519, go-crypto) relative to the real clock, since
// the broker verifies at time.Now.
func genAuthorKey(t *testing.T, created time.Time, lifetime uint32) *openpgp.Entity {
	t.Helper()
	cfg := &packet.Config{
		Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519, DefaultHash: crypto.SHA256,
		Time: func() time.Time { return created }, KeyLifetimeSecs: lifetime,
	}
	e, err := openpgp.NewEntity(authorIVORN, "", "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// signAt signs span A of payload with e's primary key, as made at time at,
// and appends the signature comment.
func signAt(t *testing.T, e *openpgp.Entity, payload []byte, at time.Time) []byte {
	t.Helper()
	a, _, err := signature.Spans(payload)
	if err != nil {
		t.Fatal(err)
	}
	pub := e.PrimaryKey
	id := pub.KeyId
	sig := &packet.Signature{
		Version: pub.Version, SigType: packet.SigTypeBinary, PubKeyAlgo: pub.PubKeyAlgo, Hash: crypto.SHA256,
		CreationTime: at, IssuerKeyId: &id, IssuerKeyVersion: uint8(pub.Version), IssuerFingerprint: pub.Fingerprint,
	}
	no := false
	cfg := &packet.Config{Time: func() time.Time { return at }, NonDeterministicSignaturesViaNotation: &no}
	h, err := sig.PrepareSign(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(a)
	if err := sig.Sign(h, e.PrivateKey, cfg); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, "PGP SIGNATURE", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sig.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return signature.Append(payload, buf.Bytes())
}

// Damaged signatures and bad keys are naked through the socket with a
// reason naming the problem, and the broker keeps serving.
func TestOpenPGPBadSignaturesNakedBrokerKeepsServing(t *testing.T) {
	now := time.Now()
	revoked := genAuthorKey(t, now.Add(-time.Hour), 0)
	expired := genAuthorKey(t, now.Add(-3*time.Hour), 3600) // expired 2 h ago
	unsigned := pgpVector(t, "event-unsigned.xml")
	ev := func(n string) []byte { return vtptest.WithIVORN(unsigned, "ivo://example.org/author#"+n) }
	revokedDoc := signAt(t, revoked, ev("revoked-key"), now.Add(-30*time.Minute))
	expiredDoc := signAt(t, expired, ev("expired-key"), now.Add(-150*time.Minute))
	revCfg := &packet.Config{Time: func() time.Time { return now.Add(-10 * time.Minute) }}
	if err := revoked.RevokeKey(packet.KeyRetired, "retired for a test", revCfg); err != nil {
		t.Fatal(err)
	}
	// --trusted-keys DIR: the vector author key (armoured) and the
	// generated ones (binary exports).
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "author.asc"), pgpVector(t, "author.pub.asc"), 0o644)
	for name, e := range map[string]*openpgp.Entity{"revoked.gpg": revoked, "expired.gpg": expired} {
		var buf bytes.Buffer
		if err := e.Serialize(&buf); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644)
	}
	tr, err := signature.NewTrust(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if n := tr.Current().Trusted.Len(); n != 3 {
		t.Fatalf("%d trusted keys, want 3", n)
	}

	good := pgpVector(t, "event-signed-author.xml")
	armour := func(doc []byte) string {
		i := bytes.Index(doc, []byte("<!--\n====="))
		return string(doc[i:])
	}
	truncated := bytes.Replace(good, []byte("=====END PGP SIGNATURE=====\n"), nil, 1)
	truncated = vtptest.WithIVORN(truncated, "ivo://example.org/author#truncated") // also fails over the span
	lines := strings.Split(armour(good), "\n")
	cut := append(ev("cut-armour"), strings.Join(append(lines[:4:4], lines[len(lines)-4:]...), "\n")...)
	garbage := signature.Append(ev("garbage"), []byte("-----BEGIN PGP SIGNATURE-----\n\nnot base64 at all!\n-----END PGP SIGNATURE-----\n"))
	garbage64 := signature.Append(ev("garbage-base64"), []byte("-----BEGIN PGP SIGNATURE-----\n\nAAECAwQFBgcICQoLDA0ODw==\n-----END PGP SIGNATURE-----\n"))

	b := start(t, func(c *broker.Config) { c.Receiver.VerifySignature = tr.EventSigner })
	s := subscribe(t, b, vtptest.Comet)
	for _, tc := range []struct {
		name    string
		doc     []byte
		reasons []string
	}{
		{"tampered", pgpVector(t, "event-signed-author-tampered.xml"), []string{"bad signature", authorFpr, "does not verify"}},
		{"truncated armour", truncated, []string{"malformed signature block", "truncated"}},
		{"armour missing lines", cut, []string{"malformed signature block"}},
		{"garbage armour", garbage, []string{"malformed signature block", "base64"}},
		{"garbage packet", garbage64, []string{"malformed signature block", "not an OpenPGP signature"}},
		{"revoked key", revokedDoc, []string{"key revoked", fmt.Sprintf("%X", revoked.PrimaryKey.Fingerprint), "retired for a test"}},
		{"expired key", expiredDoc, []string{"expired or not yet valid", fmt.Sprintf("%X", expired.PrimaryKey.Fingerprint), "expired 20"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := submit(t, recvAddr(b), tc.doc)
			nakedFor(t, m, ivornOf(t, tc.doc), tc.reasons...)
			if m != nil {
				t.Logf("%s", m.Result)
			}
		})
	}
	mustAck(t, recvAddr(b), good)
	if !s.WaitEvents(1, deliveryWait) {
		t.Fatal("good event after the bad ones not delivered")
	}
	time.Sleep(200 * time.Millisecond)
	if got := s.Events(); len(got) != 1 || !bytes.Equal(got[0], good) {
		t.Fatalf("subscriber got %d events, want only the good one", len(got))
	}
	if n := len(stored(t, b)); n != 1 {
		t.Fatalf("%d events stored, want 1", n)
	}
}
