package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/comet-go/comet/internal/tlstest"
	"github.com/comet-go/comet/vtp"
)

// testTemplate is a small VOEvent in the shape of docs/vtp.md §9, with
// decoys: an ivorn in a comment before the root and one on a child.
const testTemplate = `<?xml version="1.0" encoding="UTF-8"?>
<!-- not the root: ivorn="ivo://decoy.org/comment#1" -->
<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" version="2.0" role="observation" ivorn="ivo://example.org/author#evt-0001">
  <Who><AuthorIVORN>ivo://example.org/author</AuthorIVORN><Date>2024-05-01T12:34:50</Date></Who>
  <Citations><EventIVORN cite="followup" ivorn="ivo://decoy.org/child#2">ivo://example.org/author#evt-0000</EventIVORN></Citations>
</voe:VOEvent>
`

const fakeIVO = "ivo://fake.broker/test"

// rootIVORN is the fake broker's own tiny extractor: the ivorn attribute of
// the first element after the prolog. Deliberately independent of scanRoot.
var rootIVORNRe = regexp.MustCompile(`^(?s:\s|<\?.*?\?>|<!--.*?-->)*<[A-Za-z_][^\s>/]*[^>]*?\sivorn\s*=\s*["']([^"']*)["']`)

func rootIVORN(p []byte) string {
	m := rootIVORNRe.FindSubmatch(p)
	if m == nil {
		return ""
	}
	return string(m[1])
}

type fakeOpts struct {
	dropEvery   int  // drop every k-th delivery to subscriber 0
	dupEvery    int  // send every k-th delivery to subscriber 0 twice
	nakEvery    int  // nak every k-th submission
	silentEvery int  // never answer every k-th submission
	foreign     bool // send each subscriber a foreign test event on connect
	noAuth      bool // never send authenticate
	// storeNoReceiptEvery: store and relay every k-th submission, then
	// close its connection without a receipt (an ingress that stored the
	// event and died, or whose connection broke, before answering).
	storeNoReceiptEvery int
	// tls, if set, makes the receive port a TLS one with this server
	// configuration.
	tls     *tls.Config
	nakSeen bool // nak, as previously seen, an ivorn stored before
}

const seenReason = "Previously seen by this broker"

// fakeBroker is a test double of the broker: a receive port that acks (or
// naks) one event per connection and relays the exact bytes to every
// subscriber of its broadcast port.
type fakeBroker struct {
	t    *testing.T
	opts fakeOpts
	recv net.Listener
	bcst net.Listener

	mu       sync.Mutex
	subs     []*fakeSub
	conns    map[net.Conn]bool
	payloads map[string][][]byte // per ivorn, every submission's bytes
	stored   map[string]bool

	submissions atomic.Int64
	subAcks     atomic.Int64 // acks received from subscribers
	authReplies atomic.Int64
	aliveOK     atomic.Int64 // iamalive replies with Origin copied
	wg          sync.WaitGroup
}

type fakeSub struct {
	idx  int
	conn net.Conn
	mu   sync.Mutex
	n    int // deliveries attempted
}

func (s *fakeSub) send(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vtp.WriteFrame(s.conn, p)
}

func newFakeBroker(t *testing.T, opts fakeOpts) *fakeBroker {
	t.Helper()
	f := &fakeBroker{t: t, opts: opts, conns: map[net.Conn]bool{}, payloads: map[string][][]byte{}, stored: map[string]bool{}}
	var err error
	if f.recv, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if f.bcst, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if opts.tls != nil {
		f.recv = tls.NewListener(f.recv, opts.tls)
	}
	f.serve(f.recv, f.author)
	f.serve(f.bcst, f.subscriber)
	t.Cleanup(func() {
		f.recv.Close()
		f.bcst.Close()
		f.mu.Lock()
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *fakeBroker) serve(ln net.Listener, h func(net.Conn)) {
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns[c] = true
			f.mu.Unlock()
			f.wg.Go(func() {
				defer func() {
					f.mu.Lock()
					delete(f.conns, c)
					f.mu.Unlock()
					c.Close()
				}()
				h(c)
			})
		}
	})
}

func (f *fakeBroker) author(c net.Conn) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	p, err := vtp.NewFrameReader(c, 0).ReadFrame()
	if err != nil {
		return
	}
	ivorn := rootIVORN(p)
	k := int(f.submissions.Add(1))
	now := time.Now()
	f.mu.Lock()
	f.payloads[ivorn] = append(f.payloads[ivorn], p)
	seen := f.stored[ivorn]
	f.mu.Unlock()
	switch {
	case f.opts.silentEvery > 0 && k%f.opts.silentEvery == 0:
		c.Read(make([]byte, 1)) // hold until the client gives up
		return
	case f.opts.nakEvery > 0 && k%f.opts.nakEvery == 0:
		vtp.WriteFrame(c, vtp.Nak(ivorn, fakeIVO, "Event rejected: fake refusal", now))
		return
	case f.opts.nakSeen && seen:
		vtp.WriteFrame(c, vtp.Nak(ivorn, fakeIVO, seenReason, now))
		return
	case f.opts.storeNoReceiptEvery > 0 && k%f.opts.storeNoReceiptEvery == 0:
		// Stored and relayed below, but no receipt.
	default:
		vtp.WriteFrame(c, vtp.Ack(ivorn, fakeIVO, now))
	}
	c.Close()
	f.mu.Lock()
	f.stored[ivorn] = true
	subs := append([]*fakeSub(nil), f.subs...)
	f.mu.Unlock()
	for _, s := range subs {
		s.mu.Lock()
		s.n++
		drop := s.idx == 0 && f.opts.dropEvery > 0 && s.n%f.opts.dropEvery == 0
		dup := s.idx == 0 && f.opts.dupEvery > 0 && s.n%f.opts.dupEvery == 0
		if !drop {
			vtp.WriteFrame(s.conn, p)
		}
		if dup {
			vtp.WriteFrame(s.conn, p)
		}
		s.mu.Unlock()
	}
}

func (f *fakeBroker) subscriber(c net.Conn) {
	f.mu.Lock()
	s := &fakeSub{idx: len(f.subs), conn: c}
	f.subs = append(f.subs, s) // on the distribution list before authenticate, as Comet does
	f.mu.Unlock()
	now := time.Now()
	if f.opts.foreign {
		s.send([]byte(strings.Replace(testTemplate, "ivo://example.org/author#evt-0001", fakeIVO+"#TestEvent-1", 1)))
	}
	if !f.opts.noAuth {
		s.send(vtp.AuthenticateRequest(fakeIVO, now))
	}
	s.send(vtp.IAmAlive(fakeIVO, "", now))
	fr := vtp.NewFrameReader(bufio.NewReader(c), 0)
	for {
		p, err := fr.ReadFrame()
		if err != nil {
			return
		}
		m, err := vtp.ParseTransport(p)
		if err != nil {
			f.t.Errorf("fake broker: subscriber sent a non-Transport frame: %v", err)
			continue
		}
		switch m.Role {
		case vtp.RoleAck:
			f.subAcks.Add(1)
		case vtp.RoleAuthenticate:
			if m.Origin == fakeIVO && len(m.Filters) == 0 && m.Meta {
				f.authReplies.Add(1)
			}
		case vtp.RoleIAmAlive:
			if m.Origin == fakeIVO {
				f.aliveOK.Add(1)
			}
		default:
			f.t.Errorf("fake broker: subscriber sent role %q", m.Role)
		}
	}
}

func (f *fakeBroker) config(n, c, m int) Config {
	return Config{
		ReceiveAddr:   f.recv.Addr().String(),
		BroadcastAddr: f.bcst.Addr().String(),
		Events:        n,
		Concurrency:   c,
		Subscribers:   m,
		Template:      []byte(testTemplate),
		Timeout:       5 * time.Second,
		Settle:        10 * time.Second,
	}
}

func checkOrdered(t *testing.T, name string, p Percentiles, count int) {
	t.Helper()
	if p.Count != count {
		t.Errorf("%s: count %d, want %d", name, p.Count, count)
	}
	seq := []time.Duration{p.Min, p.P50, p.P90, p.P99, p.P999, p.Max}
	for i := 1; i < len(seq); i++ {
		if seq[i] < seq[i-1] {
			t.Errorf("%s: percentiles out of order: %+v", name, p)
		}
	}
	if p.Min <= 0 || p.Mean < p.Min || p.Mean > p.Max {
		t.Errorf("%s: implausible %+v", name, p)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(3 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Errorf("timed out waiting for %s", what)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunClean(t *testing.T) {
	f := newFakeBroker(t, fakeOpts{})
	start := time.Now()
	rep, err := Run(context.Background(), f.config(500, 8, 3))
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("run took %v: settle did not return early", el)
	}
	t.Log("\n" + rep.String())
	if rep.Submitted != 500 || rep.Accepted != 500 || rep.Naked != 0 || rep.Errors != 0 {
		t.Errorf("submitted/accepted/naked/errors = %d/%d/%d/%d", rep.Submitted, rep.Accepted, rep.Naked, rep.Errors)
	}
	if rep.Deliveries != 1500 || rep.Lost != 0 || rep.Duplicates != 0 || rep.Unexpected != 0 || rep.SubscriberDrops != 0 {
		t.Errorf("deliveries/lost/dups/unexpected/drops = %d/%d/%d/%d/%d",
			rep.Deliveries, rep.Lost, rep.Duplicates, rep.Unexpected, rep.SubscriberDrops)
	}
	if rep.Failed() {
		t.Errorf("Failed: %v", rep.Problems())
	}
	checkOrdered(t, "ack", rep.AckLatency, 500)
	checkOrdered(t, "end-to-end", rep.EndToEnd, 1500)
	if rep.Duration <= 0 || rep.AcceptedPerSec <= 0 || rep.DeliveriesPerSec <= 0 || rep.DeliveryWindow < rep.Duration/2 {
		t.Errorf("duration %v, %.1f/s, deliveries %.1f/s over %v", rep.Duration, rep.AcceptedPerSec, rep.DeliveriesPerSec, rep.DeliveryWindow)
	}
	if rep.NotClosed != 0 {
		t.Errorf("NotClosed = %d", rep.NotClosed)
	}
	if f.submissions.Load() != 500 {
		t.Errorf("broker saw %d submissions", f.submissions.Load())
	}
	// Every delivery acked (flushed before the subscribers hung up), every
	// handshake answered with no filters, every keep-alive answered.
	eventually(t, "1500 subscriber acks", func() bool { return f.subAcks.Load() == 1500 })
	if f.authReplies.Load() != 3 || f.aliveOK.Load() != 3 {
		t.Errorf("auth replies %d, iamalive replies %d; want 3, 3", f.authReplies.Load(), f.aliveOK.Load())
	}
	if !strings.HasPrefix(rep.IVORNPrefix, "ivo://example.org/author#vtp-load-") {
		t.Errorf("default prefix %q", rep.IVORNPrefix)
	}
}

// A tls: receive address: every event is submitted over its own TLS
// connection.
func TestRunTLS(t *testing.T) {
	p := tlstest.NewPKI(t)
	c := p.CA.Issue(tlstest.Options{CN: "fake", Names: []string{"127.0.0.1"}})
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeBroker(t, fakeOpts{tls: &tls.Config{Certificates: []tls.Certificate{pair}}})
	cfg := f.config(200, 8, 1)
	cfg.ReceiveAddr = p.Target(f.recv.Addr().String(), "")
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Accepted != 200 || rep.Deliveries != 200 || rep.Failed() {
		t.Fatalf("over TLS: accepted %d, deliveries %d, problems %v", rep.Accepted, rep.Deliveries, rep.Problems())
	}
	// A receive address whose trust roots cannot be read is refused
	// before anything is sent.
	cfg.ReceiveAddr = "tls:127.0.0.1:1:trustRoots=/nonexistent"
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "trustRoots") {
		t.Fatalf("bad trustRoots: %v", err)
	}
}

func TestRunLost(t *testing.T) {
	f := newFakeBroker(t, fakeOpts{dropEvery: 10})
	cfg := f.config(500, 8, 3)
	cfg.Settle = time.Second
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Accepted != 500 || rep.Lost != 50 || rep.Deliveries != 1450 || rep.Duplicates != 0 {
		t.Errorf("accepted/lost/deliveries/dups = %d/%d/%d/%d", rep.Accepted, rep.Lost, rep.Deliveries, rep.Duplicates)
	}
	// The fake's subscriber 0 is whichever connection it accepted first.
	var lossy, clean int
	for _, s := range rep.PerSubscriber {
		switch {
		case s.Lost == 50 && s.Received == 450:
			lossy++
		case s.Lost == 0 && s.Received == 500:
			clean++
		}
	}
	if lossy != 1 || clean != 2 {
		t.Errorf("per subscriber %+v", rep.PerSubscriber)
	}
	if rep.SettleWait < 900*time.Millisecond {
		t.Errorf("settle wait %v, want the full Settle", rep.SettleWait)
	}
	checkOrdered(t, "end-to-end", rep.EndToEnd, 1450)
	if !rep.Failed() || !strings.Contains(rep.String(), "FAILED: 50 lost") {
		t.Errorf("verdict not failed:\n%s", rep)
	}
}

func TestRunNak(t *testing.T) {
	f := newFakeBroker(t, fakeOpts{nakEvery: 5})
	rep, err := Run(context.Background(), f.config(100, 4, 2))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Accepted != 80 || rep.Naked != 20 || rep.Errors != 0 || rep.Deliveries != 160 || rep.Lost != 0 {
		t.Errorf("accepted/naked/errors/deliveries/lost = %d/%d/%d/%d/%d",
			rep.Accepted, rep.Naked, rep.Errors, rep.Deliveries, rep.Lost)
	}
	if len(rep.NakSamples) != maxSamples || !strings.HasSuffix(rep.NakSamples[0], ": Event rejected: fake refusal") ||
		!strings.HasPrefix(rep.NakSamples[0], rep.IVORNPrefix+"-") {
		t.Errorf("nak samples %q", rep.NakSamples)
	}
	checkOrdered(t, "ack", rep.AckLatency, 80)
	if !rep.Failed() || len(rep.Problems()) != 1 || rep.Problems()[0] != "20 naked" {
		t.Errorf("problems %q", rep.Problems())
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if back["failed"] != true || back["naked"] != float64(20) || back["accepted"] != float64(80) {
		t.Errorf("json %s", js)
	}
	if _, ok := back["ack_latency"].(map[string]any)["p99_9_ns"]; !ok {
		t.Errorf("json lacks ack_latency.p99_9_ns: %s", js)
	}
}

func TestRunTimeouts(t *testing.T) {
	f := newFakeBroker(t, fakeOpts{silentEvery: 10})
	cfg := f.config(50, 4, 1)
	cfg.Timeout = 500 * time.Millisecond
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Accepted != 45 || rep.Errors != 5 || rep.Timeouts != 5 || rep.Deliveries != 45 || rep.Lost != 0 {
		t.Errorf("accepted/errors/timeouts/deliveries/lost = %d/%d/%d/%d/%d\n%s",
			rep.Accepted, rep.Errors, rep.Timeouts, rep.Deliveries, rep.Lost, rep)
	}
	if !rep.Failed() || len(rep.ErrorSamples) == 0 {
		t.Errorf("problems %q, samples %q", rep.Problems(), rep.ErrorSamples)
	}
}

func TestRunDuplicatesAndForeignEvents(t *testing.T) {
	f := newFakeBroker(t, fakeOpts{dupEvery: 50, foreign: true})
	rep, err := Run(context.Background(), f.config(200, 8, 2))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Duplicates != 4 || rep.Unexpected != 2 || rep.Lost != 0 || rep.Deliveries != 404 {
		t.Errorf("dups/unexpected/lost/deliveries = %d/%d/%d/%d", rep.Duplicates, rep.Unexpected, rep.Lost, rep.Deliveries)
	}
	if p := rep.Problems(); len(p) != 1 || p[0] != "4 duplicated" {
		t.Errorf("problems %q (foreign events must not fail a run)", p)
	}
	checkOrdered(t, "end-to-end", rep.EndToEnd, 400)
	// The foreign events were acked too.
	eventually(t, "406 subscriber acks", func() bool { return f.subAcks.Load() == 406 })
}

func TestRunPaced(t *testing.T) {
	f := newFakeBroker(t, fakeOpts{})
	cfg := f.config(41, 4, 1)
	cfg.Rate = 200 // 40 intervals of 5 ms
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Accepted != 41 || rep.Failed() {
		t.Fatalf("accepted %d, problems %q", rep.Accepted, rep.Problems())
	}
	if rep.Duration < 190*time.Millisecond || rep.Duration > 2*time.Second {
		t.Errorf("paced run of 41 events at 200/s took %v", rep.Duration)
	}
}

func TestRunNoAuthenticate(t *testing.T) {
	f := newFakeBroker(t, fakeOpts{noAuth: true})
	cfg := f.config(10, 1, 2)
	cfg.Timeout = 200 * time.Millisecond
	rep, err := Run(context.Background(), cfg)
	if err == nil || rep != nil || !strings.Contains(err.Error(), "authenticate") {
		t.Fatalf("got %v, %v", rep, err)
	}
	if f.submissions.Load() != 0 {
		t.Errorf("events submitted before the subscribers were ready")
	}
}

func TestRunBrokerPID(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	f := newFakeBroker(t, fakeOpts{})
	cfg := f.config(200, 4, 1)
	cfg.BrokerPID = os.Getpid() // the fake broker runs in this process
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.BrokerPeakRSS <= 0 || rep.BrokerRSS <= 0 || rep.BrokerCPU < 0 || rep.BrokerPeakRSS < rep.BrokerRSS {
		t.Errorf("cpu %v, peak %d, rss %d", rep.BrokerCPU, rep.BrokerPeakRSS, rep.BrokerRSS)
	}
	if !strings.Contains(rep.String(), "peak RSS") {
		t.Errorf("String lacks broker line:\n%s", rep)
	}
	cfg.BrokerPID = 1 << 30
	if _, err := Run(context.Background(), cfg); err == nil {
		t.Error("nonexistent BrokerPID accepted")
	}
}

func TestRunConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	// Both ReceiveAddr and ReceiveAddrs may be set when they agree.
	rep, err := Run(context.Background(), Config{ReceiveAddr: addr, ReceiveAddrs: []string{addr}, Events: 5, Concurrency: 2,
		Template: []byte(testTemplate)})
	if err != nil {
		t.Fatal(err)
	}
	// Without RetryFor, one attempt per event, as before.
	if rep.Errors != 5 || rep.GaveUp != 5 || rep.Retried != 0 || rep.Accepted != 0 || !rep.Failed() || rep.Timeouts != 0 {
		t.Errorf("errors %d gave up %d retried %d accepted %d timeouts %d", rep.Errors, rep.GaveUp, rep.Retried, rep.Accepted, rep.Timeouts)
	}
	if p := rep.Problems(); len(p) != 1 || p[0] != "5 errored" {
		t.Errorf("problems %q", p)
	}
	if len(rep.ErrorSamples) == 0 || !regexp.MustCompile(`^event \d: connect: .*refused`).MatchString(rep.ErrorSamples[0]) {
		t.Errorf("error samples %q", rep.ErrorSamples)
	}
}

func TestRunInterrupted(t *testing.T) {
	f := newFakeBroker(t, fakeOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	cfg := f.config(1000, 2, 1)
	cfg.Rate = 100
	rep, err := Run(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) || rep == nil {
		t.Fatalf("got %v, %v", rep, err)
	}
	if rep.Submitted >= 1000 || !rep.Failed() {
		t.Errorf("submitted %d, problems %q", rep.Submitted, rep.Problems())
	}
}

func TestConfigErrors(t *testing.T) {
	good := Config{ReceiveAddr: "127.0.0.1:1", Events: 1, Template: []byte(testTemplate)}
	lim, ok := fdLimit()
	cases := map[string]func(*Config){
		"Events":        func(c *Config) { c.Events = 0 },
		"ReceiveAddr":   func(c *Config) { c.ReceiveAddr = "" },
		"BroadcastAddr": func(c *Config) { c.Subscribers = 1 },
		"Rate":          func(c *Config) { c.Rate = -1 },
		"Template":      func(c *Config) { c.Template = nil },
		"ivorn":         func(c *Config) { c.Template = []byte(`<voe:VOEvent role="test"/>`) },
		"IVORNPrefix":   func(c *Config) { c.IVORNPrefix = `ivo://a.b/c#x"y` },
		"frame limit":   func(c *Config) { c.MaxFrame = 100 },
		"differently":   func(c *Config) { c.ReceiveAddrs = []string{"127.0.0.1:2"} },
		"empty address": func(c *Config) { c.ReceiveAddr, c.ReceiveAddrs = "", []string{"127.0.0.1:1", ""} },
		"RetryFor":      func(c *Config) { c.RetryFor = -time.Second },
	}
	if ok && lim < 1<<24 {
		cases["RLIMIT_NOFILE"] = func(c *Config) {
			c.Events, c.Concurrency, c.Subscribers, c.BroadcastAddr = int(lim), int(lim), 1, "127.0.0.1:1"
		}
	}
	for want, mod := range cases {
		c := good
		mod(&c)
		if _, err := Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}

func TestTemplateSplice(t *testing.T) {
	check := func(t *testing.T, doc []byte, oldIVORN string) {
		t.Helper()
		tm, err := ParseTemplate(doc)
		if err != nil {
			t.Fatal(err)
		}
		if tm.IVORN() != oldIVORN {
			t.Fatalf("template ivorn %q, want %q", tm.IVORN(), oldIVORN)
		}
		i := bytes.Index(doc, []byte(oldIVORN))
		head, tail := doc[:i], doc[i+len(oldIVORN):]
		for _, seq := range []int{0, 7, 123456} {
			framed := tm.appendFrame(nil, "ivo://x.org/run#vtp-load-abc", seq)
			if n := int(framed[0])<<24 | int(framed[1])<<16 | int(framed[2])<<8 | int(framed[3]); n != len(framed)-4 {
				t.Fatalf("length prefix %d for %d bytes", n, len(framed)-4)
			}
			ev := framed[4:]
			if !bytes.HasPrefix(ev, head) || !bytes.HasSuffix(ev, tail) {
				t.Fatalf("bytes around the ivorn changed:\n%s", ev)
			}
			mid := string(ev[len(head) : len(ev)-len(tail)])
			if want := "ivo://x.org/run#vtp-load-abc-" + strconv.Itoa(seq); mid != want {
				t.Fatalf("spliced %q, want %q", mid, want)
			}
			if got := rootIVORN(ev); got != mid {
				t.Fatalf("independent extractor sees %q", got)
			}
		}
		out, err := SpliceIVORN(doc, "ivo://y.org/z#1")
		if err != nil || !bytes.Equal(out, append(append(bytes.Clone(head), "ivo://y.org/z#1"...), tail...)) {
			t.Fatalf("SpliceIVORN: %v\n%s", err, out)
		}
	}
	t.Run("decoys", func(t *testing.T) { check(t, []byte(testTemplate), "ivo://example.org/author#evt-0001") })
	t.Run("single quotes, spaces, no prolog", func(t *testing.T) {
		check(t, []byte("<VOEvent xmlns:x='u' x:ivorn='ivo://no/pe#1' ivornx=\"n\" role = 'test'\n  ivorn = 'ivo://a.b/c#d'><W ivorn=\"ivo://q#1\"/></VOEvent>"), "ivo://a.b/c#d")
	})
	t.Run("bench template", func(t *testing.T) {
		doc, err := os.ReadFile("../../testdata/bench/gbm_flt_pos_v20.xml")
		if err != nil {
			t.Fatal(err)
		}
		check(t, doc, "ivo://nasa.gsfc.gcn/Fermi#GBM_Flt_Pos_2011-09-04T03:54:36.02_336801278_45-956")
	})
	for name, doc := range map[string]string{
		"no ivorn":   `<?xml version="1.0"?><voe:VOEvent role="test"><Who ivorn="ivo://a.b/c#1"/></voe:VOEvent>`,
		"doctype":    `<!DOCTYPE x><voe:VOEvent ivorn="ivo://a.b/c#1"/>`,
		"no root":    `<?xml version="1.0"?><!-- ivorn="x" -->`,
		"unquoted":   `<voe:VOEvent ivorn=ivo://a.b/c#1>`,
		"duplicate":  `<voe:VOEvent ivorn="ivo://a.b/c#1" ivorn="ivo://a.b/c#2"/>`,
		"unfinished": `<voe:VOEvent ivorn="ivo://a.b/c#1`,
	} {
		if _, err := ParseTemplate([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSeqOf(t *testing.T) {
	r := &run{cfg: Config{Events: 100}, prefixDash: []byte("ivo://a.b/c#run-")}
	for s, want := range map[string]int{"ivo://a.b/c#run-0": 0, "ivo://a.b/c#run-99": 99} {
		if got, ok := r.seqOf([]byte(s)); !ok || got != want {
			t.Errorf("%s: %d %v", s, got, ok)
		}
	}
	for _, s := range []string{"ivo://a.b/c#run-100", "ivo://a.b/c#run-", "ivo://a.b/c#run-01", "ivo://a.b/c#run-1x",
		"ivo://a.b/c#run2-1", "ivo://fake.broker/test#TestEvent-1"} {
		if _, ok := r.seqOf([]byte(s)); ok {
			t.Errorf("%s: matched", s)
		}
	}
}

func TestPercentiles(t *testing.T) {
	s := make([]int64, 1000)
	for i := range s {
		s[i] = int64(1000 - i) // reversed: percentiles must sort
	}
	p := percentiles(s)
	want := Percentiles{Count: 1000, Min: 1, Mean: 500, P50: 500, P90: 900, P99: 990, P999: 999, Max: 1000}
	if p != want {
		t.Errorf("got %+v, want %+v", p, want)
	}
	if one := percentiles([]int64{7}); one.P50 != 7 || one.P999 != 7 || one.Max != 7 {
		t.Errorf("single sample %+v", one)
	}
	if (percentiles(nil) != Percentiles{}) {
		t.Error("empty samples")
	}
}

func TestFrameBuffered(t *testing.T) {
	var buf bytes.Buffer
	buf.Write(vtp.Frame([]byte("abc")))
	buf.Write(vtp.Frame([]byte("defgh"))[:6])
	br := bufio.NewReader(&buf)
	if frameBuffered(br) {
		t.Error("empty reader reports a frame")
	}
	br.Peek(1) // fill
	if !frameBuffered(br) {
		t.Error("whole frame not seen")
	}
	br.Discard(7)
	if frameBuffered(br) {
		t.Error("partial frame reported whole")
	}
}

// noReceipt is a receive port that reads each connection's event and
// closes it without a receipt, as an ingress that is dying does.
type noReceipt struct {
	ln     net.Listener
	conns  atomic.Int64
	mu     sync.Mutex
	frames map[string][]byte // the last event per ivorn
}

func newNoReceipt(t *testing.T) *noReceipt {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &noReceipt{ln: ln, frames: map[string][]byte{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.conns.Add(1)
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if p, err := vtp.NewFrameReader(c, 0).ReadFrame(); err == nil {
					n.mu.Lock()
					n.frames[rootIVORN(p)] = p
					n.mu.Unlock()
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return n
}

func (n *noReceipt) addr() string { return n.ln.Addr().String() }

// refusedAddr is a local address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// results collects OnResult calls, which come from several workers.
type results struct {
	mu    sync.Mutex
	bySeq map[int]Result
	calls int
}

func (rs *results) add(r Result) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.bySeq == nil {
		rs.bySeq = map[int]Result{}
	}
	rs.bySeq[r.Seq] = r
	rs.calls++
}

func (rs *results) check(t *testing.T, rep *Report) {
	t.Helper()
	if rs.calls != rep.Submitted || len(rs.bySeq) != rep.Submitted {
		t.Errorf("%d OnResult calls for %d events (%d submitted)", rs.calls, len(rs.bySeq), rep.Submitted)
	}
	count := map[Outcome]int{}
	for seq, r := range rs.bySeq {
		count[r.Outcome]++
		if r.IVORN != rep.IVORNPrefix+"-"+strconv.Itoa(seq) || r.Start.IsZero() || r.At.Before(r.Start) || r.Attempts < 1 {
			t.Errorf("result %+v", r)
		}
	}
	if count[Acked] != rep.Accepted || count[Naked] != rep.Naked+rep.NakedAfterRetry || count[GaveUp] != rep.GaveUp {
		t.Errorf("results %v; report accepted %d, naked %d+%d, gave up %d", count, rep.Accepted, rep.Naked, rep.NakedAfterRetry, rep.GaveUp)
	}
}

func TestRunFailover(t *testing.T) {
	dead := newNoReceipt(t)
	f := newFakeBroker(t, fakeOpts{})
	live := f.recv.Addr().String()
	cfg := f.config(40, 4, 1)
	cfg.ReceiveAddr = ""
	cfg.ReceiveAddrs = []string{dead.addr(), live}
	cfg.Rate = 400 // every worker gets events
	cfg.RetryFor = 5 * time.Second
	var rs results
	cfg.OnResult = rs.add
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.String())
	// Workers 0 and 2 start on the dead port: their first event fails
	// there, goes through the live one, and so do their next events.
	if rep.Accepted != 40 || rep.Retried != 2 || rep.Errors != 2 || rep.GaveUp != 0 || rep.Naked != 0 ||
		rep.NakedAfterRetry != 0 || rep.Lost != 0 || rep.Deliveries != 40 || dead.conns.Load() != 2 {
		t.Errorf("accepted/retried/errors/gave up/naked/naked after retry/lost/deliveries = %d/%d/%d/%d/%d/%d/%d/%d; dead port saw %d",
			rep.Accepted, rep.Retried, rep.Errors, rep.GaveUp, rep.Naked, rep.NakedAfterRetry, rep.Lost, rep.Deliveries, dead.conns.Load())
	}
	if rep.Failed() {
		t.Errorf("failed: %q", rep.Problems())
	}
	checkOrdered(t, "ack", rep.AckLatency, 40)
	rs.check(t, rep)
	retried := 0
	for _, r := range rs.bySeq {
		if r.Addr != live {
			t.Errorf("%s answered by %s", r.IVORN, r.Addr)
		}
		if r.Attempts == 1 {
			continue
		}
		retried++
		if r.Attempts != 2 || r.FailedAttempts() != 1 || !strings.Contains(r.LastErr, "closed without a receipt") ||
			r.At.Sub(r.Start) < firstBackoff {
			t.Errorf("retried result %+v", r)
		}
		dead.mu.Lock()
		first := dead.frames[r.IVORN]
		dead.mu.Unlock()
		f.mu.Lock()
		second := f.payloads[r.IVORN]
		f.mu.Unlock()
		if len(first) == 0 || len(second) != 1 || !bytes.Equal(first, second[0]) {
			t.Errorf("%s: the retry did not send the same bytes", r.IVORN)
		}
	}
	if retried != 2 {
		t.Errorf("%d results with 2 attempts", retried)
	}
	if s := rep.String(); !strings.Contains(s, "retries: 2 events") || !strings.Contains(s, dead.addr()+", "+live) {
		t.Errorf("report:\n%s", s)
	}
	js, _ := json.Marshal(rep)
	var back map[string]any
	json.Unmarshal(js, &back)
	if back["retried"] != float64(2) || back["gave_up"] != float64(0) || len(back["receive_addrs"].([]any)) != 2 {
		t.Errorf("json %s", js)
	}
}

func TestRunRetryGivesUp(t *testing.T) {
	dead, refused := newNoReceipt(t), refusedAddr(t)
	var rs results
	cfg := Config{ReceiveAddrs: []string{dead.addr(), refused}, Events: 3, Concurrency: 1, Template: []byte(testTemplate),
		Timeout: 2 * time.Second, RetryFor: 300 * time.Millisecond, OnResult: rs.add}
	start := time.Now()
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	t.Log("\n" + rep.String())
	if el < 900*time.Millisecond || el > 5*time.Second {
		t.Errorf("3 events retried for 300 ms each took %v", el)
	}
	if rep.GaveUp != 3 || rep.Retried != 3 || rep.Accepted != 0 || rep.Naked != 0 || rep.NakedAfterRetry != 0 || rep.Errors < 9 {
		t.Errorf("gave up/retried/accepted/naked/naked after retry/errors = %d/%d/%d/%d/%d/%d",
			rep.GaveUp, rep.Retried, rep.Accepted, rep.Naked, rep.NakedAfterRetry, rep.Errors)
	}
	// Attempts alternate between the two addresses.
	if n := dead.conns.Load(); n < 3 || int(n) >= rep.Errors {
		t.Errorf("dead port saw %d of %d attempts", n, rep.Errors)
	}
	if p := rep.Problems(); len(p) != 1 || p[0] != "3 gave up" {
		t.Errorf("problems %q", p)
	}
	rs.check(t, rep)
	attempts := 0
	for _, r := range rs.bySeq {
		attempts += r.Attempts
		if r.Outcome != GaveUp || r.Attempts < 3 || r.FailedAttempts() != r.Attempts || r.LastErr == "" ||
			r.At.Sub(r.Start) < cfg.RetryFor || r.At.Sub(r.Start) > cfg.RetryFor+time.Second {
			t.Errorf("result %+v", r)
		}
	}
	if attempts != rep.Errors {
		t.Errorf("results count %d attempts, report %d errors", attempts, rep.Errors)
	}

	t.Run("interrupted while retrying", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		cfg := Config{ReceiveAddr: refused, Events: 5, Concurrency: 2, Template: []byte(testTemplate), RetryFor: time.Minute}
		start := time.Now()
		rep, err := Run(ctx, cfg)
		if !errors.Is(err, context.DeadlineExceeded) || rep == nil {
			t.Fatalf("got %v, %v", rep, err)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("Run returned %v after the interruption", el)
		}
		if rep.Submitted != 2 || rep.GaveUp != 2 || rep.Retried != 2 || !rep.Failed() {
			t.Errorf("submitted %d, gave up %d, retried %d, problems %q", rep.Submitted, rep.GaveUp, rep.Retried, rep.Problems())
		}
	})
}

func TestRunNakedAfterRetry(t *testing.T) {
	// Every 4th submission is stored and relayed, but its connection
	// closes without a receipt; the retry, to the same (only) address, is
	// naked as previously seen.
	f := newFakeBroker(t, fakeOpts{storeNoReceiptEvery: 4, nakSeen: true})
	cfg := f.config(60, 4, 1)
	cfg.RetryFor = 5 * time.Second
	var rs results
	cfg.OnResult = rs.add
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.String())
	if rep.NakedAfterRetry == 0 || rep.NakedAfterRetry != rep.Retried || rep.Errors != rep.Retried ||
		rep.Accepted+rep.NakedAfterRetry != 60 || rep.Naked != 0 || rep.GaveUp != 0 {
		t.Errorf("accepted/naked/naked after retry/retried/errors/gave up = %d/%d/%d/%d/%d/%d",
			rep.Accepted, rep.Naked, rep.NakedAfterRetry, rep.Retried, rep.Errors, rep.GaveUp)
	}
	if rep.Lost != 0 || rep.Duplicates != 0 || rep.Deliveries < rep.Accepted {
		t.Errorf("lost/dups/deliveries = %d/%d/%d", rep.Lost, rep.Duplicates, rep.Deliveries)
	}
	if rep.Failed() {
		t.Errorf("a nak after a failed attempt failed the run: %q", rep.Problems())
	}
	if len(rep.NakSamples) == 0 || !strings.HasSuffix(rep.NakSamples[0], ": "+seenReason+" (after 1 failed attempt)") {
		t.Errorf("nak samples %q", rep.NakSamples)
	}
	if !strings.Contains(rep.String(), fmt.Sprintf("%d naked after a failed attempt", rep.NakedAfterRetry)) {
		t.Errorf("report:\n%s", rep)
	}
	rs.check(t, rep)
	naked := 0
	for _, r := range rs.bySeq {
		if r.Outcome != Naked {
			continue
		}
		naked++
		if r.Attempts != 2 || r.Nak != seenReason || !strings.Contains(r.LastErr, "closed without a receipt") {
			t.Errorf("result %+v", r)
		}
		f.mu.Lock()
		p := f.payloads[r.IVORN]
		f.mu.Unlock()
		if len(p) != 2 || !bytes.Equal(p[0], p[1]) {
			t.Errorf("%s: %d submissions, not the same bytes twice", r.IVORN, len(p))
		}
	}
	if naked != rep.NakedAfterRetry {
		t.Errorf("%d naked results, %d naked after retry", naked, rep.NakedAfterRetry)
	}
}

// The null broker acks every event and delivers it, exact bytes, to every
// subscriber: a run against it is clean.
func TestNullBroker(t *testing.T) {
	nb := &NullBroker{LocalIVO: fakeIVO}
	var lns [2]net.Listener
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	served := make(chan error, 2)
	go func() { served <- nb.ServeReceive(lns[0]) }()
	go func() { served <- nb.ServeBroadcast(lns[1]) }()
	rep, err := Run(context.Background(), Config{
		ReceiveAddr: lns[0].Addr().String(), BroadcastAddr: lns[1].Addr().String(),
		Events: 300, Concurrency: 8, Subscribers: 4, Template: []byte(testTemplate),
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() || rep.Accepted != 300 || rep.Deliveries != 1200 || rep.Unexpected != 0 {
		t.Fatalf("run against the null broker: %v\n%s", rep.Problems(), rep)
	}
	nb.Close()
	for range 2 {
		if err := <-served; !errors.Is(err, ErrNullClosed) {
			t.Errorf("Serve after Close: %v", err)
		}
	}
}
