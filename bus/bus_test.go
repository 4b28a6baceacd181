package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/comet-go/comet/internal/vtptest"
)

func testLogger(t testing.TB) *slog.Logger { return vtptest.Logger(t, slog.LevelWarn) }

func openBus(t testing.TB, cfg Config) *Bus {
	t.Helper()
	if cfg.URL == "" && cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.Node == "" {
		cfg.Node = "test-node"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func testEvent(i int) *Event {
	ivorn := fmt.Sprintf("ivo://test.example/stream#%d", i)
	p := []byte(fmt.Sprintf(`<?xml version="1.0"?><voe:VOEvent ivorn=%q role="test" version="2.0"/>`+"\n", ivorn))
	return &Event{
		Payload: p, SHA1: Digest(p), IVORN: ivorn, Role: "test",
		Origin: OriginAuthor, Peer: "127.0.0.1:5555", Signature: SignatureUnchecked,
		ReceivedAt: time.Now(),
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ingest(t testing.TB, b *Bus, ev *Event, want Outcome) {
	t.Helper()
	got, err := b.Ingest(ctxT(t), ev)
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	if got != want {
		t.Fatalf("Ingest = %v, want %v", got, want)
	}
}

// storedCount counts stream messages carrying sha1, under any subject.
func storedCount(t testing.TB, b *Bus, sha1 string) uint64 {
	t.Helper()
	info, err := b.stream.Info(ctxT(t), jetstream.WithSubjectFilter(SubjectPrefix+"*.*.*."+sha1))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

func TestTokens(t *testing.T) {
	for in, want := range map[string]string{
		"":                              "_",
		"nasa.gsfc.gcn":                 "nasa%2Egsfc%2Egcn",
		"a*b>c d":                       "a%2Ab%3Ec%20d",
		"Ok-_09":                        "Ok-_09",
		"%":                             "%25",
		"\xff":                          "%FF",
		strings.Repeat("a", 200):        strings.Repeat("a", MaxTokenLen-1) + "~",
		strings.Repeat(".", 100):        strings.Repeat("%2E", 42) + "~",
		"a" + strings.Repeat(".", 100):  "a" + strings.Repeat("%2E", 42) + "~",
		"ab" + strings.Repeat(".", 100): "ab" + strings.Repeat("%2E", 41) + "~",
	} {
		got := EscapeToken(in)
		if got != want {
			t.Errorf("EscapeToken(%q) = %q, want %q", in, got, want)
		}
		if len(got) > MaxTokenLen {
			t.Errorf("EscapeToken(%q) longer than MaxTokenLen", in)
		}
	}
	for in, want := range map[string]string{
		"ivo://nasa.gsfc.gcn/SWIFT#BAT": "nasa.gsfc.gcn",
		"IVO://Auth#x":                  "Auth",
		"ivo://testing#111":             "testing",
		"ivo://a?b":                     "a",
		"ivo://":                        "",
		"http://x/y":                    "",
	} {
		if got := Authority(in); got != want {
			t.Errorf("Authority(%q) = %q, want %q", in, got, want)
		}
	}
	sha := Digest([]byte("abc"))
	if sha != "a9993e364706816aba3e25717850c26c9cd0d89d" {
		t.Errorf("Digest = %s", sha)
	}
	if got, want := Subject(OriginUpstream, "observation", "nasa.gsfc.gcn", sha),
		"comet.event.upstream.observation.nasa%2Egsfc%2Egcn."+sha; got != want {
		t.Errorf("Subject = %s, want %s", got, want)
	}
	if got := string(recordValue(time.Unix(1714566896, 123456789))); got != "1714566896.123456" {
		t.Errorf("recordValue = %s", got)
	}
	if got := string(recordValue(time.Unix(1714566896, 1000))); got != "1714566896.000001" {
		t.Errorf("recordValue = %s", got)
	}
}

func TestIngestAcceptedThenDuplicate(t *testing.T) {
	b := openBus(t, Config{})
	ev := testEvent(1)
	if seen, err := b.Seen(ctxT(t), ev.SHA1); err != nil || seen {
		t.Fatalf("Seen before = %v, %v", seen, err)
	}
	ingest(t, b, ev, Accepted)
	if seen, err := b.Seen(ctxT(t), ev.SHA1); err != nil || !seen {
		t.Fatalf("Seen after = %v, %v", seen, err)
	}
	ingest(t, b, ev, Duplicate)
	up := *ev
	up.Origin = OriginUpstream // same bytes from an upstream broker
	ingest(t, b, &up, Duplicate)
	if n := storedCount(t, b, ev.SHA1); n != 1 {
		t.Fatalf("stream holds %d copies, want 1", n)
	}
	e, err := b.conns[0].kv.Get(ctxT(t), ev.SHA1)
	if err != nil {
		t.Fatal(err)
	}
	if v := string(e.Value()); len(v) < 12 || v[len(v)-7] != '.' {
		t.Errorf("seen-record value %q is not seconds.micros", v)
	}
}

func TestIngestRejectsBadEvents(t *testing.T) {
	b := openBus(t, Config{MaxPayload: 1000})
	for name, mod := range map[string]func(*Event){
		"sha1 uppercase": func(e *Event) { e.SHA1 = strings.ToUpper(e.SHA1) },
		"sha1 short":     func(e *Event) { e.SHA1 = e.SHA1[:39] },
		"origin":         func(e *Event) { e.Origin = "x" },
		"too big":        func(e *Event) { e.Payload = make([]byte, 1001) },
	} {
		ev := testEvent(1)
		mod(ev)
		if _, err := b.Ingest(ctxT(t), ev); err == nil {
			t.Errorf("%s: Ingest succeeded", name)
		}
	}
	if seen, _ := b.Seen(ctxT(t), testEvent(1).SHA1); seen {
		t.Error("a refused event was recorded")
	}
}

func TestIngestConcurrentSameEvent(t *testing.T) {
	b := openBus(t, Config{Conns: 3})
	ev := testEvent(7)
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[Outcome]int{}
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := *ev
			o, err := b.Ingest(ctxT(t), &e)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			counts[o]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if counts[Accepted] != 1 || counts[Duplicate] != 49 {
		t.Fatalf("outcomes %v, want 1 accepted and 49 duplicates", counts)
	}
	if n := storedCount(t, b, ev.SHA1); n != 1 {
		t.Fatalf("stream holds %d copies, want 1", n)
	}
}

func TestPersistenceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	ev := testEvent(3)
	b := openBus(t, Config{StoreDir: dir})
	ingest(t, b, ev, Accepted)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBus(t, Config{StoreDir: dir})
	if seen, err := b.Seen(ctxT(t), ev.SHA1); err != nil || !seen {
		t.Fatalf("Seen after restart = %v, %v", seen, err)
	}
	ingest(t, b, ev, Duplicate)
	if n := storedCount(t, b, ev.SHA1); n != 1 {
		t.Fatalf("stream holds %d copies, want 1", n)
	}
}

func TestStaleClaim(t *testing.T) {
	const claim = 50 * time.Millisecond
	b := openBus(t, Config{ClaimTimeout: claim})

	// A process died between claim and publish.
	lost := testEvent(10)
	if _, err := b.conns[0].kv.Create(ctxT(t), lost.SHA1, recordValue(time.Now())); err != nil {
		t.Fatal(err)
	}
	// The author's retry, while the claim is younger than ClaimTimeout,
	// waits until it is stale, then takes it over (never a Duplicate for
	// an event the stream does not hold).
	start := time.Now()
	ingest(t, b, lost, Accepted)
	if d := time.Since(start); d < claim/2 {
		t.Fatalf("took over a claim %v old; it may still be in flight", d)
	}
	if n := storedCount(t, b, lost.SHA1); n != 1 {
		t.Fatalf("stream holds %d copies, want 1", n)
	}
	ingest(t, b, lost, Duplicate)

	// A claim whose event is stored stays a duplicate, whatever the origin.
	ok := testEvent(11)
	ingest(t, b, ok, Accepted)
	time.Sleep(claim + 30*time.Millisecond)
	up := *ok
	up.Origin = OriginUpstream
	ingest(t, b, &up, Duplicate)
	ingest(t, b, ok, Duplicate)
	if n := storedCount(t, b, ok.SHA1); n != 1 {
		t.Fatalf("stream holds %d copies, want 1", n)
	}
}

func TestClaimOlderThanDupWindowIsDuplicate(t *testing.T) {
	b := openBus(t, Config{ClaimTimeout: 20 * time.Millisecond, DupWindow: 150 * time.Millisecond})
	ev := testEvent(12)
	if _, err := b.conns[0].kv.Create(ctxT(t), ev.SHA1, recordValue(time.Now())); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	ingest(t, b, ev, Duplicate)
	if n := storedCount(t, b, ev.SHA1); n != 0 {
		t.Fatalf("stream holds %d copies, want 0", n)
	}
}

func TestFailedPublishReleasesClaim(t *testing.T) {
	b := openBus(t, Config{})
	if err := b.conns[0].js.DeleteStream(ctxT(t), StreamName); err != nil {
		t.Fatal(err)
	}
	ev := testEvent(13)
	if _, err := b.Ingest(ctxT(t), ev); err == nil {
		t.Fatal("Ingest without a stream succeeded")
	}
	if seen, err := b.Seen(ctxT(t), ev.SHA1); err != nil || seen {
		t.Fatalf("Seen after failed publish = %v, %v; the claim must be released", seen, err)
	}
}

func TestConsumeRoundTrip(t *testing.T) {
	b := openBus(t, Config{Node: "node-a"})
	p := []byte("<?xml version='1.0'?>\n<voe:VOEvent ivorn=\"ivo://nasa.gsfc.gcn/SWIFT#BAT_1\" role=\"observation\">\r\n  \x00\xff</voe:VOEvent>\n\n")
	at := time.Date(2024, 5, 1, 12, 34, 56, 123456789, time.FixedZone("x", 3600))
	full := &Event{
		Payload: p, SHA1: Digest(p), IVORN: "ivo://nasa.gsfc.gcn/SWIFT#BAT_1", Role: "observation",
		Author: "ivo://nasa.gsfc.tan/gcn", Origin: OriginUpstream, Peer: "[::1]:8099",
		Signature: "verified:0123456789ABCDEF0123456789ABCDEF01234567", ReceivedAt: at,
	}
	bare := testEvent(20)
	bare.Node = "other-node"

	got := make(chan *Delivery, 10)
	c, err := b.ConsumeEvents(ctxT(t), "egress-test", func(d *Delivery) { d.Ack(); got <- d })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ingest(t, b, full, Accepted)
	ingest(t, b, bare, Accepted)

	d := recv(t, got)
	want := *full
	want.Node = "node-a"
	want.ReceivedAt = at.UTC()
	if !bytes.Equal(d.Payload, p) {
		t.Fatalf("payload changed:\n%q\n%q", d.Payload, p)
	}
	d.Event.Payload, want.Payload = nil, nil
	if !reflect.DeepEqual(d.Event, want) {
		t.Fatalf("event\n got %+v\nwant %+v", d.Event, want)
	}
	if wantSubj := "comet.event.upstream.observation.nasa%2Egsfc%2Egcn." + full.SHA1; d.Subject != wantSubj {
		t.Fatalf("subject %s, want %s", d.Subject, wantSubj)
	}
	if d.Seq != 1 {
		t.Fatalf("seq %d, want 1", d.Seq)
	}
	h := d.msg.Headers()
	if h.Get(HeaderMsgID) != full.SHA1 || h.Get(HeaderReceivedAt) != "2024-05-01T11:34:56.123456789Z" {
		t.Fatalf("headers %v", h)
	}

	d = recv(t, got)
	if _, ok := d.msg.Headers()[HeaderAuthor]; ok {
		t.Error("empty Author must leave the header out")
	}
	if d.Node != "other-node" || d.Seq != 2 || d.Subject != Subject(OriginAuthor, "test", "test.example", bare.SHA1) {
		t.Errorf("second delivery %+v", d)
	}
}

func recv(t testing.TB, ch <-chan *Delivery) *Delivery {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
		return nil
	}
}

func TestConsumerResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	const durable = "egress-node-a"
	b := openBus(t, Config{StoreDir: dir})
	if n, err := b.Pending(ctxT(t), durable); err != nil || n != 0 {
		t.Fatalf("Pending of a missing durable = %d, %v", n, err)
	}
	var evs []*Event
	for i := range 10 {
		evs = append(evs, testEvent(100+i))
		ingest(t, b, evs[i], Accepted)
	}
	acked := make(chan struct{})
	n := 0
	c, err := b.ConsumeEvents(ctxT(t), durable, func(d *Delivery) {
		if n < 4 {
			if d.SHA1 != evs[n].SHA1 {
				t.Errorf("delivery %d out of order", n)
			}
			d.Ack()
			if n++; n == 4 {
				close(acked)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	<-acked
	c.Stop()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openBus(t, Config{StoreDir: dir})
	if n, err := b.Pending(ctxT(t), durable); err != nil || n != 6 {
		t.Fatalf("Pending after restart = %d, %v; want 6", n, err)
	}
	got := make(chan *Delivery, 10)
	c, err = b.ConsumeEvents(ctxT(t), durable, func(d *Delivery) { d.Ack(); got <- d })
	if err != nil {
		t.Fatal(err)
	}
	for i := 4; i < 10; i++ {
		d := recv(t, got)
		if d.SHA1 != evs[i].SHA1 || d.Seq != uint64(i+1) {
			t.Fatalf("got seq %d, want event %d", d.Seq, i+1)
		}
	}
	select {
	case d := <-got:
		t.Fatalf("unexpected extra delivery seq %d", d.Seq)
	case <-time.After(100 * time.Millisecond):
	}
	c.Stop()

	// A new event, then a restart within the process.
	ev := testEvent(200)
	ingest(t, b, ev, Accepted)
	c, err = b.ConsumeEvents(ctxT(t), durable, func(d *Delivery) { d.Ack(); got <- d })
	if err != nil {
		t.Fatal(err)
	}
	if d := recv(t, got); d.SHA1 != ev.SHA1 {
		t.Fatalf("got seq %d after in-process restart", d.Seq)
	}
	c.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := b.Pending(ctxT(t), durable)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Pending = %d after everything was acked", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConsumeStopsWithContext(t *testing.T) {
	b := openBus(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	c, err := b.ConsumeEvents(ctx, "x", func(d *Delivery) { d.Ack() })
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		t.Fatal("consumer still running after its context ended")
	}
	c.Stop()
	for _, bad := range []string{"", "a.b", "a b", "a*", strings.Repeat("x", 201)} {
		if _, err := b.ConsumeEvents(context.Background(), bad, func(*Delivery) {}); err == nil {
			t.Errorf("durable %q accepted", bad)
		}
	}
}

// startServer runs a plain nats-server on a random local port, standing in
// for an external NATS system.
func startServer(t testing.TB, maxPayload int32) *server.Server {
	return vtptest.NATSServer(t, &server.Options{MaxPayload: maxPayload})
}

func TestProvisioningExternal(t *testing.T) {
	srv := startServer(t, 2<<20)
	url := srv.ClientURL()

	var wg sync.WaitGroup
	errs := make([]error, 2)
	buses := make([]*Bus, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buses[i], errs[i] = Open(ctxT(t), Config{URL: url, Node: fmt.Sprint("n", i), Logger: testLogger(t)})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open %d: %v", i, err)
		}
		defer buses[i].Close()
	}
	if buses[0].ClientURL() == "" || !strings.HasPrefix(buses[0].Describe(), "external") {
		t.Errorf("ClientURL %q, Describe %q", buses[0].ClientURL(), buses[0].Describe())
	}
	// Both share one dedup space.
	ev := testEvent(30)
	ingest(t, buses[0], ev, Accepted)
	ingest(t, buses[1], ev, Duplicate)

	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{StreamMaxAge: 24 * time.Hour}, "max_age is 168h0m0s, want 24h0m0s"},
		{Config{SeenTTL: 24 * time.Hour}, "bucket comet_seen exists with different settings (ttl is 720h0m0s, want 24h0m0s)"},
		{Config{MaxPayload: 99999}, "max_msg_size"},
		{Config{MaxPayload: 4 << 20}, "server's max_payload is 2097152 bytes"},
	} {
		tc.cfg.URL, tc.cfg.Logger = url, testLogger(t)
		_, err := Open(ctxT(t), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v) error %v, want one mentioning %q", tc.cfg, err, tc.want)
		}
	}
}

func TestListener(t *testing.T) {
	b := openBus(t, Config{})
	if b.srv.Addr() != nil || b.ClientURL() != "" {
		t.Fatalf("embedded server listens at %v (%q) without Listen", b.srv.Addr(), b.ClientURL())
	}
	if !strings.Contains(b.Describe(), "no network listener") {
		t.Errorf("Describe: %s", b.Describe())
	}

	l := openBus(t, Config{Listen: "127.0.0.1:0"})
	url := l.ClientURL()
	if url == "" || strings.HasSuffix(url, ":0") || strings.HasSuffix(url, ":-1") {
		t.Fatalf("ClientURL = %q", url)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.MaxPayload() < int64(DefaultMaxPayload) {
		t.Errorf("max_payload %d < %d", nc.MaxPayload(), DefaultMaxPayload)
	}
	// A second broker can use the first one's bus.
	o := openBus(t, Config{URL: url})
	ev := testEvent(40)
	ingest(t, l, ev, Accepted)
	ingest(t, o, ev, Duplicate)

	if _, err := Open(ctxT(t), Config{StoreDir: t.TempDir(), Listen: strings.TrimPrefix(url, "nats://"),
		Logger: testLogger(t)}); err == nil {
		t.Error("Open on a port in use succeeded")
	}
}

func TestMaxPayload(t *testing.T) {
	const max = 100_000
	b := openBus(t, Config{MaxPayload: max})
	ev := testEvent(50)
	ev.Payload = bytes.Repeat([]byte("x"), max)
	ev.SHA1 = Digest(ev.Payload)
	ev.IVORN = "ivo://" + strings.Repeat("a", 5000) + "#" + strings.Repeat("b", 5000)
	ev.Author = ev.IVORN
	got := make(chan *Delivery, 1)
	c, err := b.ConsumeEvents(ctxT(t), "big", func(d *Delivery) { d.Ack(); got <- d })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ingest(t, b, ev, Accepted)
	if d := recv(t, got); !bytes.Equal(d.Payload, ev.Payload) || len(d.IVORN) != MaxHeaderValue {
		t.Fatalf("big event mangled: %d bytes, ivorn %d bytes", len(d.Payload), len(d.IVORN))
	}
}

// A store made for one event size, reopened for another, and a server
// whose max_payload is too small, are typed errors in the event sizes'
// terms.
func TestSizeMismatch(t *testing.T) {
	dir := t.TempDir()
	b := openBus(t, Config{StoreDir: dir, MaxPayload: 99999})
	b.Close()
	_, err := Open(ctxT(t), Config{StoreDir: dir, MaxPayload: 200000, Logger: testLogger(t)})
	var se *SizeMismatchError
	if !errors.As(err, &se) || se.Stream != StreamName || se.MaxPayload != 200000 || se.Fits() != 99999 ||
		se.Needs() != 200000+HeaderRoom {
		t.Fatalf("reopened for another size: %v", err)
	}
	srv := vtptest.NATSServer(t, &server.Options{MaxPayload: 1 << 20})
	_, err = Open(ctxT(t), Config{URL: srv.ClientURL(), MaxPayload: 1 << 20, Logger: testLogger(t)})
	if !errors.As(err, &se) || se.Stream != "" || se.Limit != 1<<20 || se.Fits() != 1<<20-HeaderRoom {
		t.Fatalf("server max_payload too small: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []Config{
		{},
		{StoreDir: filepath.Join(f, "sub")},
		{StoreDir: t.TempDir(), ClaimTimeout: 3 * time.Minute},
		{StoreDir: t.TempDir(), Listen: "nope"},
		{URL: "nats://127.0.0.1:1", Listen: "127.0.0.1:0"},
	} {
		cfg.Logger = testLogger(t)
		if b, err := Open(ctxT(t), cfg); err == nil {
			b.Close()
			t.Errorf("Open(%+v) succeeded", cfg)
		} else if !strings.HasPrefix(err.Error(), "bus: ") {
			t.Errorf("error without context: %v", err)
		}
	}
}

func TestConsumerSurvivesDeletion(t *testing.T) {
	b := openBus(t, Config{})
	got := make(chan *Delivery, 10)
	c, err := b.ConsumeEvents(ctxT(t), "egress-x", func(d *Delivery) { d.Ack(); got <- d })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ingest(t, b, testEvent(60), Accepted)
	recv(t, got)
	if err := b.conns[0].js.DeleteConsumer(ctxT(t), StreamName, "egress-x"); err != nil {
		t.Fatal(err)
	}
	ev := testEvent(61)
	ingest(t, b, ev, Accepted)
	start := time.Now()
	if d := recv(t, got); d.SHA1 != ev.SHA1 {
		t.Fatalf("got seq %d", d.Seq)
	}
	t.Logf("resumed after %v", time.Since(start))
}
