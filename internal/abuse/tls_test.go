package abuse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/comet-go/comet/egress"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/tlstest"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// tlsHarness is a broker with a plaintext and an ssl: listener for each
// role (the broadcast one with clientCA=): the harness's subscriber and
// tap use the plaintext ports, the probes hit the TLS ones, and a good TLS
// author and TLS subscriber must be served throughout.
type tlsHarness struct {
	*harness
	p      *tlstest.PKI
	author *endpoint.Dialer
	tlsSub *vtptest.Subscriber
}

func startTLS(t *testing.T, timeout time.Duration, mutate func(*broker.Config)) *tlsHarness {
	t.Helper()
	p := tlstest.NewPKI(t)
	ssl := func(desc string) endpoint.Endpoint {
		ep, err := endpoint.ParseServer(desc)
		if err != nil {
			t.Fatal(err)
		}
		return ep
	}
	h := start(t, func(c *broker.Config) {
		c.Receive = append(c.Receive, ssl(p.SSL("abuse-recv", "")))
		c.Broadcast = append(c.Broadcast, ssl(p.SSL("abuse-cast", ":clientCA="+p.ClientCAFile)))
		c.Receiver.Timeout = timeout
		if mutate != nil {
			mutate(c)
		}
	})
	th := &tlsHarness{harness: h, p: p, author: tlsDialer(t, p.Target(h.b.ReceiveAddrs()[1].String(), ""))}
	sub, err := vtptest.DialVia(tlsDialer(t, p.Target(th.castTLS(), p.Client("good-subscriber"))), vtptest.Comet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	h.waitAuthenticated(sub.LocalAddr())
	th.tlsSub = sub
	return th
}

func tlsDialer(t testing.TB, desc string) *endpoint.Dialer {
	t.Helper()
	target, err := endpoint.ParseClient(desc, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := endpoint.NewDialer(target, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (h *tlsHarness) recvTLS() string { return h.b.ReceiveAddrs()[1].String() }
func (h *tlsHarness) castTLS() string { return h.b.BroadcastAddrs()[1].String() }

// healthyTLS is the health check over TLS: a fresh good event submitted
// over tls: is acked within healthyWait and reaches the TLS subscriber
// and the plaintext one within healthyWait.
func (h *tlsHarness) healthyTLS() {
	h.t.Helper()
	ev, iv := goodEvent("healthy-tls")
	t0 := time.Now()
	m, err := vtptest.SubmitVia(h.author, ev, healthyWait)
	if err != nil || m == nil || m.Role != vtp.RoleAck || m.Origin != iv {
		h.t.Fatalf("TLS health check: %s not acked within %v: %+v %v", iv, healthyWait, m, err)
	}
	for _, s := range []*vtptest.Subscriber{h.tlsSub, h.sub} {
		if !s.WaitFor(healthyWait, func(s *vtptest.Subscriber) bool { return slices.Contains(s.IVORNs(), iv) }) {
			h.t.Fatalf("TLS health check: %s acked after %v but not delivered within %v", iv, time.Since(t0), healthyWait)
		}
	}
}

// clientHelloStart is the first bytes of a TLS handshake record, promising
// 512 bytes that never come: a handshake that stalls.
var clientHelloStart = []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}

// On both TLS ports at once: plaintext peers (a VTP frame where a
// ClientHello belongs) are dropped at their first bytes; silent peers and
// handshakes that stall are dropped at the receive timeout, not before;
// each is counted by kind and logged; good TLS and plaintext peers are
// served while all of them are open; and once they are gone the broker
// holds no more goroutines or descriptors than before.
func TestTLSPortProbes(t *testing.T) {
	needFDs(t)
	const timeout = 2 * time.Second
	h := startTLS(t, timeout, func(c *broker.Config) { connLimits(c, cmdMaxConns, cmdMaxConnsPerPeer) })
	h.healthyTLS()
	baseG, baseFD := settle()

	frame := vtp.Frame(mustGood("plaintext-on-tls"))
	var plain, slow []*held
	t0 := time.Now()
	for i, addr := range []string{h.recvTLS(), h.castTLS()} {
		plain = append(plain, holdConns(t, addr, sources(40+10*i, 2), 50, frame)...)
		slow = append(slow, holdConns(t, addr, sources(42+10*i, 2), 50, nil)...)              // silent
		slow = append(slow, holdConns(t, addr, sources(44+10*i, 2), 50, clientHelloStart)...) // stalls mid-handshake
	}
	dialing := time.Since(t0)
	if dialing > timeout/2 {
		t.Fatalf("opening the probes took %v: too slow to test a %v timeout", dialing, timeout)
	}
	h.healthyTLS()
	h.healthy()
	if _, _, open := split(slow, 0); open != len(slow) {
		t.Fatalf("%d stalled handshakes were closed before the health checks ended", len(slow)-open)
	}
	if !waitClosed(append(slices.Clone(plain), slow...), timeout+5*time.Second) {
		_, _, o1 := split(plain, 0)
		_, _, o2 := split(slow, 0)
		t.Fatalf("probes still open %v after the timeout: %d plaintext, %d silent or stalled", 5*time.Second, o1, o2)
	}
	if early, late, _ := split(plain, timeout/2); early != len(plain) {
		t.Errorf("plaintext peers: %d dropped at once, %d only at the timeout", early, late)
	}
	// A probe's clock starts when its Dial returned, up to the time spent
	// dialing after the broker started its timer.
	if early, _, _ := split(slow, timeout-dialing-100*time.Millisecond); early != 0 {
		t.Errorf("%d silent or stalled handshakes dropped before the %v timeout", early, timeout)
	}
	// The broker counts a failure just after closing its connection.
	waitUntil(time.Second, func() bool {
		st := h.b.Stats()
		return st.Rejections[ingress.RejectTLS]+st.Drops[egress.DropTLS] == uint64(len(plain)+len(slow))
	})
	st := h.b.Stats()
	if n := st.TLSFailures[endpoint.FailNotTLS]; n != uint64(len(plain)) {
		t.Errorf("%d not-TLS failures counted, want %d", n, len(plain))
	}
	if n := st.TLSFailures[endpoint.FailTimeout]; n != uint64(len(slow)) {
		t.Errorf("%d handshake timeouts counted, want %d", n, len(slow))
	}
	if r, d := st.Rejections[ingress.RejectTLS], st.Drops[egress.DropTLS]; r+d != uint64(len(plain)+len(slow)) || r != d {
		t.Errorf("refusals: %d on the receive port, %d on the broadcast port; want %d each", r, d, (len(plain)+len(slow))/2)
	}
	h.logs.WaitCount("TLS handshake failed", len(plain)+len(slow), time.Second) // logged just after it is counted
	if n := h.logs.Count("TLS handshake failed"); n != len(plain)+len(slow) {
		t.Errorf("%d TLS failures logged, want %d", n, len(plain)+len(slow))
	}
	h.healthyTLS()
	for _, hc := range append(plain, slow...) {
		hc.c.Close() // this side's ends
	}
	if g, fd := settle(); g > baseG+5 || fd > baseFD+5 {
		t.Errorf("after the probes: %d goroutines (%d before), %d descriptors (%d before)", g, baseG, fd, baseFD)
	}
}

// The reverse: a TLS client on the plaintext ports. The receiver reads its
// ClientHello as an oversized frame and closes; the broadcaster's
// authenticate request is not a TLS record, so the client gives up at
// once; nothing is left behind on either side.
func TestTLSClientOnPlaintextPorts(t *testing.T) {
	h := startTLS(t, 2*time.Second, nil)
	baseG, baseFD := settle()
	// The broadcaster may also have closed on the ClientHello (an
	// oversized frame) before its authenticate request is read.
	for _, c := range []struct {
		addr string
		want []endpoint.Failure
	}{{h.recv(), []endpoint.Failure{endpoint.FailClosed}}, {h.cast(), []endpoint.Failure{endpoint.FailNotTLS, endpoint.FailClosed}}} {
		for range 20 {
			t0 := time.Now()
			conn, err := tlsDialer(t, h.p.Target(c.addr, "")).Dial(context.Background())
			if err == nil {
				conn.Close()
				t.Fatalf("%s: a TLS handshake with a plaintext port succeeded", c.addr)
			}
			var he *endpoint.HandshakeError
			if !errors.As(err, &he) || !slices.Contains(c.want, he.Failure) {
				t.Errorf("%s: %v, want %v", c.addr, err, c.want)
			}
			if d := time.Since(t0); d > quickClose {
				t.Errorf("%s: failed after %v", c.addr, d)
			}
		}
	}
	if !waitUntil(5*time.Second, func() bool { return h.rejected(ingress.RejectTooLarge) == 20 }) {
		t.Errorf("receiver: %d ClientHellos refused as oversized frames, want 20", h.rejected(ingress.RejectTooLarge))
	}
	h.healthyTLS()
	h.healthy()
	if g, fd := settle(); g > baseG+5 || fd > baseFD+5 {
		t.Errorf("after the probes: %d goroutines (%d before), %d descriptors (%d before)", g, baseG, fd, baseFD)
	}
}

// A flood of complete TLS handshakes from a few sources, within the
// connection limits: past the per-source limit connections are refused
// at accept, before any TLS; every handshake admitted completes (the
// receive timeout is long here, so that a slow machine cannot turn the
// flood into timeouts; TestTLSPortProbes covers those); good peers are
// served throughout; and once the flood hangs up, its slots are free
// again.
func TestTLSHandshakeFlood(t *testing.T) {
	needFDs(t)
	const timeout, perPeer, srcs, each = 20 * time.Second, 32, 4, 40
	h := startTLS(t, timeout, func(c *broker.Config) { connLimits(c, cmdMaxConns, perPeer) })
	conf := &tls.Config{RootCAs: h.p.CA.Pool(), ServerName: "127.0.0.1"}
	flood := func(first int, checkHealth bool) (conns []net.Conn, refused int, failures []error) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		gate := make(chan struct{})
		for i := range srcs * each {
			src := fmt.Sprintf("127.0.0.%d", first+i%srcs)
			wg.Go(func() {
				<-gate
				d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
				c, err := tls.DialWithDialer(d, "tcp", h.recvTLS(), conf)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					refused++
					failures = append(failures, err)
					return
				}
				conns = append(conns, c)
			})
		}
		t0 := time.Now()
		close(gate)
		if checkHealth {
			// Good peers, over TLS and in clear, while the flood is on.
			h.healthyTLS()
			h.healthy()
		}
		wg.Wait()
		t.Logf("%d handshakes, %d refused, in %v", len(conns), refused, time.Since(t0))
		return conns, refused, failures
	}
	baseG, _ := settle()
	conns, refused, failures := flood(60, true)
	if len(conns) != srcs*perPeer || refused != srcs*(each-perPeer) {
		t.Fatalf("%d handshakes completed and %d refused; want %d and %d (first failure: %v)",
			len(conns), refused, srcs*perPeer, srcs*(each-perPeer), first(failures))
	}
	if n := h.rejected(ingress.RejectMaxConnsPerPeer); n != uint64(srcs*(each-perPeer)) {
		t.Errorf("%d refused at accept, want %d", n, srcs*(each-perPeer))
	}
	if n := h.b.Stats().TLSFailures; len(n) != 0 {
		t.Errorf("TLS failures in a flood of good handshakes: %v", n)
	}
	for _, c := range conns {
		c.Close()
	}
	// The slots come back once the broker has let go of the connections
	// (their goroutines end): the same sources flood again with the same
	// outcome.
	if !waitUntil(10*time.Second, func() bool { return runtime.NumGoroutine() <= baseG+5 }) {
		t.Fatalf("the flood's connections were not let go: %d goroutines, %d before", runtime.NumGoroutine(), baseG)
	}
	conns, refused, failures = flood(60, false)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if len(conns) != srcs*perPeer || refused != srcs*(each-perPeer) {
		t.Fatalf("second flood: %d handshakes completed and %d refused; want %d and %d (first failure: %v)",
			len(conns), refused, srcs*perPeer, srcs*(each-perPeer), first(failures))
	}
}

func first(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}

// settle lets connections that were just closed finish, then counts the
// process's goroutines and open descriptors.
func settle() (goroutines, fds int) {
	var last [2]int
	for range 50 {
		runtime.GC()
		ents, _ := os.ReadDir("/proc/self/fd")
		now := [2]int{runtime.NumGoroutine(), len(ents)}
		if now == last {
			break
		}
		last = now
		time.Sleep(100 * time.Millisecond)
	}
	return last[0], last[1]
}
