package abuse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/comet-go/comet/accept"
	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/egress"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
	"github.com/comet-go/comet/whitelist"
)

const (
	testdataDir = "../../testdata"
	localIVO    = "ivo://test.broker/abuse"

	// healthyWait is the bound: after every probe a good event is
	// acked, and delivered, within it.
	healthyWait = 2 * time.Second
	// quickClose is how soon a refusal that needs no waiting (a hostile
	// length prefix, an unparsable document) must close the connection;
	// far below the receive timeout, so it cannot be the timeout.
	quickClose = 2 * time.Second

	// cmd/comet's defaults for --max-connections and
	// --max-connections-per-peer (package main cannot be imported).
	cmdMaxConns        = 8192
	cmdMaxConnsPerPeer = 256
)

var seq atomic.Int64

// newIVORN is a fresh, valid event ivorn.
func newIVORN(tag string) string {
	return fmt.Sprintf("ivo://test.abuse/%s#%d", tag, seq.Add(1))
}

// goodEvent is the benchmark workload with a fresh ivorn.
func goodEvent(tag string) ([]byte, string) {
	iv := newIVORN(tag)
	return vtptest.WithIVORN(tmpl, iv), iv
}

// logBuf collects the broker's log (bounded), so tests can check that a
// refusal was logged with its reason, and shows it when a test fails.
type logBuf struct {
	mu        sync.Mutex
	b         bytes.Buffer
	truncated bool
}

const maxLog = 4 << 20

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len()+len(p) > maxLog {
		l.truncated = true
		return len(p), nil
	}
	return l.b.Write(p)
}

// held is the memory the buffer holds.
func (l *logBuf) held() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(l.b.Cap())
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Count is the number of log lines containing s.
func (l *logBuf) Count(s string) int {
	n := 0
	for line := range strings.SplitSeq(l.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// WaitCount waits until at least n lines contain s.
func (l *logBuf) WaitCount(s string, n int, d time.Duration) bool {
	return waitUntil(d, func() bool { return l.Count(s) >= n })
}

// rejected is how many submissions or connections the receiver turned
// away for r.
func (h *harness) rejected(r ingress.Rejection) uint64 { return h.b.Stats().Rejections[r] }

// drops is how many subscribers the broadcaster disconnected or refused
// for c.
func (h *harness) drops(c egress.DropCause) uint64 { return h.b.Stats().Drops[c] }

// connLimits sets the connection limits of both listeners, as
// --max-connections and --max-connections-per-peer do.
func connLimits(c *broker.Config, total, perPeer int) {
	l := accept.Limits{MaxConns: total, MaxConnsPerPeer: perPeer}
	c.Receiver.Limits, c.Broadcaster.Limits = l, l
}

func mustWhitelist(nets []string) *whitelist.List {
	l, err := whitelist.New(nets)
	if err != nil {
		panic(err)
	}
	return l
}

// harness is one in-process broker with a normal subscriber and a tap.
type harness struct {
	t    testing.TB
	b    *broker.Broker
	sub  *vtptest.Subscriber // a normal, unfiltered Comet subscriber
	tap  *vtptest.Tap        // records every frame broadcast, raw
	logs *logBuf
}

// start runs a broker on 127.0.0.1:0 endpoints with a fresh store, and
// connects a normal subscriber and a tap to it.
func start(t testing.TB, mutate func(*broker.Config)) *harness {
	t.Helper()
	loop := endpoint.Endpoint{Network: "tcp", Address: "127.0.0.1:0"}
	logs := &logBuf{}
	cfg := broker.Config{
		Receive:   []endpoint.Endpoint{loop},
		Broadcast: []endpoint.Endpoint{loop},
		LocalIVO:  localIVO,
		Node:      "abuse",
		Version:   "abuse",
		Bus:       bus.Config{StoreDir: t.TempDir()},
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	b, err := broker.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	h := &harness{t: t, b: b, logs: logs}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if t.Failed() {
			s := logs.String()
			if len(s) > 32<<10 {
				s = "...\n" + s[len(s)-32<<10:]
			}
			t.Logf("broker log:\n%s", s)
		}
	})
	if len(cfg.Broadcast) == 0 {
		return h
	}
	h.sub = h.subscribe(vtptest.Comet)
	h.tap, err = vtptest.DialTap(h.cast())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.tap.Close)
	h.waitAuthenticated(h.tap.LocalAddr())
	return h
}

func (h *harness) recv() string { return h.b.ReceiveAddrs()[0].String() }
func (h *harness) cast() string { return h.b.BroadcastAddrs()[0].String() }

// subscribe connects a vtptest subscriber and waits until the broker has
// installed its filters (Comet mode) or registered it.
func (h *harness) subscribe(mode vtptest.Mode, filters ...string) *vtptest.Subscriber {
	h.t.Helper()
	s, err := vtptest.Dial(h.cast(), mode, filters...)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(s.Close)
	if mode == vtptest.Comet {
		h.waitAuthenticated(s.LocalAddr())
	} else if !waitUntil(5*time.Second, func() bool { return h.stats(s.LocalAddr()) != nil }) {
		h.t.Fatalf("subscriber %s not registered", s.LocalAddr())
	}
	return s
}

func (h *harness) waitAuthenticated(peer string) {
	h.t.Helper()
	if !waitUntil(5*time.Second, func() bool { st := h.stats(peer); return st != nil && st.Authenticated }) {
		h.t.Fatalf("subscriber %s not authenticated", peer)
	}
}

// heldByTest is the memory the test itself holds on to: the broker's log
// and every frame the reading subscriber and the tap have received.
func (h *harness) heldByTest() int64 {
	n := h.logs.held()
	for _, e := range h.sub.Events() {
		n += int64(cap(e))
	}
	for _, f := range h.tap.Frames() {
		n += int64(cap(f))
	}
	return n
}

// stats is the broadcaster's view of the subscriber at peer, or nil.
func (h *harness) stats(peer string) *egress.SubscriberStats {
	for _, st := range h.b.Stats().Subscribers {
		if st.Peer == peer {
			return &st
		}
	}
	return nil
}

// assertHealthy submits a fresh good event and requires an ack within 2 s
// and its delivery to sub within 2 s. It returns the event.
func assertHealthy(t testing.TB, b *broker.Broker, sub *vtptest.Subscriber) []byte {
	t.Helper()
	ev, iv := goodEvent("healthy")
	t0 := time.Now()
	m, err := vtptest.Submit(b.ReceiveAddrs()[0].String(), ev, healthyWait)
	if err != nil || m == nil || m.Role != vtp.RoleAck || m.Origin != iv {
		t.Fatalf("health check: good event %s not acked within %v: %+v %v", iv, healthyWait, m, err)
	}
	acked := time.Since(t0)
	if !sub.WaitFor(healthyWait, func(s *vtptest.Subscriber) bool { return slices.Contains(s.IVORNs(), iv) }) {
		t.Fatalf("health check: good event %s acked in %v but not delivered within %v (subscriber closed %v, err %v)",
			iv, acked, healthyWait, sub.Closed(), sub.Err())
	}
	return ev
}

// healthy is assertHealthy, then checks that none of forbidden was ever
// broadcast; it returns the good event. The relay delivers in bus order and every probe ended before
// the good event was submitted, so once the good event has reached the tap
// anything stored by the probe would have reached it too.
func (h *harness) healthy(forbidden ...string) []byte {
	h.t.Helper()
	ev := assertHealthy(h.t, h.b, h.sub)
	iv := ivornOf(ev)
	if !h.tap.WaitFor([]byte(iv), healthyWait) {
		h.t.Fatalf("health check: tap did not receive %s (closed %v)", iv, h.tap.Closed())
	}
	h.notForwarded(forbidden...)
	return ev
}

// notForwarded fails if any broadcast frame contains one of forbidden.
func (h *harness) notForwarded(forbidden ...string) {
	h.t.Helper()
	for _, f := range forbidden {
		if fr := h.tap.Find([]byte(f)); fr != nil {
			h.t.Errorf("%q was broadcast to subscribers: %.300s", f, fr)
		}
	}
}

// notRecorded fails if payload was recorded in the previously-seen
// database (so stored on the bus).
func (h *harness) notRecorded(what string, payload []byte) {
	h.t.Helper()
	seen, err := h.b.Bus().Seen(context.Background(), bus.Digest(payload))
	if err != nil {
		h.t.Fatalf("%s: seen check: %v", what, err)
	}
	if seen {
		h.t.Errorf("%s: recorded as seen (stored on the bus)", what)
	}
}

// noReply submits payload and requires the broker to close without any
// reply, within quickClose.
func (h *harness) noReply(what string, payload []byte) {
	h.t.Helper()
	t0 := time.Now()
	m, err := vtptest.Submit(h.recv(), payload, quickClose)
	switch {
	case err != nil:
		h.t.Errorf("%s: want the connection closed without reply, got %v after %v", what, err, time.Since(t0))
	case m != nil:
		h.t.Errorf("%s: want no reply, got %s %q", what, m.Role, m.Result)
	}
	h.notRecorded(what, payload)
}

// mustAck submits payload and requires an ack.
func (h *harness) mustAck(what string, payload []byte) {
	h.t.Helper()
	m, err := vtptest.Submit(h.recv(), payload, healthyWait)
	if err != nil || m == nil || m.Role != vtp.RoleAck {
		h.t.Fatalf("%s: want ack, got %+v %v", what, m, err)
	}
}

func ivornOf(ev []byte) string {
	s := string(ev)
	i := strings.Index(s, "ivorn=")
	if i < 0 || i+7 > len(s) {
		return ""
	}
	q := s[i+6]
	j := strings.IndexByte(s[i+7:], q)
	return s[i+7 : i+7+j]
}

// dialFrom connects to addr from a chosen loopback source address ("" for
// the default).
func dialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readUntilClosed reads everything the peer sends until it closes (EOF or
// reset) or d passes. closed is false on timeout.
func readUntilClosed(c net.Conn, d time.Duration) (got []byte, closed bool, after time.Duration) {
	t0 := time.Now()
	c.SetReadDeadline(t0.Add(d))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return got, false, time.Since(t0)
	}
	return got, true, time.Since(t0)
}

func waitUntil(d time.Duration, cond func() bool) bool { return vtptest.WaitUntil(d, cond) }

// fetchTrap is a local HTTP server and a local file that hostile documents
// reference as external DTDs and entities: any connection to the server,
// or the file's marker anywhere in broker output, means the broker
// resolved a reference.
type fetchTrap struct {
	srv     *httptest.Server
	conns   atomic.Int64
	hits    atomic.Int64
	file    string // absolute path
	marker  string // the file's content
	webMark string
}

func newFetchTrap(t testing.TB) *fetchTrap {
	f := &fetchTrap{
		marker:  fmt.Sprintf("COMET-ABUSE-FILE-SECRET-%d", time.Now().UnixNano()),
		webMark: fmt.Sprintf("COMET-ABUSE-HTTP-SECRET-%d", time.Now().UnixNano()),
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		t.Logf("fetch trap: %s %s", r.Method, r.URL)
		// A document that would be harmful if used: an entity whose text
		// is the marker, valid as an external DTD or parsed entity.
		fmt.Fprintf(w, `<!ENTITY web "%s">%s`, f.webMark, f.webMark)
	}))
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	f.file = filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(f.file, []byte(f.marker), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// url is an http URL on the trap server.
func (f *fetchTrap) url(p string) string { return f.srv.URL + "/" + p }

// fileURL is the file:// URL of the secret file.
func (f *fetchTrap) fileURL() string { return "file://" + f.file }

// check fails if anything was fetched or the markers leaked into the
// broadcast frames or the log.
func (f *fetchTrap) check(h *harness) {
	h.t.Helper()
	if n, c := f.hits.Load(), f.conns.Load(); n != 0 || c != 0 {
		h.t.Errorf("the broker fetched external references: %d HTTP requests, %d connections to the trap", n, c)
	}
	h.notForwarded(f.marker, f.webMark)
	if logs := h.logs.String(); strings.Contains(logs, f.marker) || strings.Contains(logs, f.webMark) {
		h.t.Errorf("a referenced file's or URL's content appears in the broker log")
	}
}
