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
}

func TestIngestAcceptedThenDuplicate(t *testing.T) {
	b := openBus(t, Config{})
	ev := testEvent(1)
	ev.SHA1 = "" // Ingest computes it
	if seen, err := b.Seen(ctxT(t), Digest(ev.Payload)); err != nil || seen {
		t.Fatalf("Seen before = %v, %v", seen, err)
	}
	ingest(t, b, ev, Accepted)
	if ev.SHA1 != Digest(ev.Payload) {
		t.Fatalf("Ingest set SHA1 %q", ev.SHA1)
	}
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
	// One message is the event and its record: it lives StreamMaxAge,
	// then leaves a delete marker (see TestRecordOutlivesPayload).
	m, err := b.stream.GetLastMsgForSubject(ctxT(t), seenSubject(ev.SHA1))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(jetstream.MsgTTLHeader); got != "604800" {
		t.Errorf("Nats-TTL %q, want 604800 (7 days)", got)
	}
	if got := m.Header.Get(HeaderMsgID); got != "" {
		t.Errorf("event carries Nats-Msg-Id %q", got)
	}
	cfg := b.stream.CachedInfo().Config
	if cfg.MaxAge != DefaultSeenTTL || cfg.SubjectDeleteMarkerTTL != DefaultSeenTTL-DefaultStreamMaxAge || cfg.MaxMsgsPerSubject != 1 {
		t.Errorf("stream max_age %v, marker TTL %v, per subject %d", cfg.MaxAge, cfg.SubjectDeleteMarkerTTL, cfg.MaxMsgsPerSubject)
	}
}

func TestIngestRejectsBadEvents(t *testing.T) {
	b := openBus(t, Config{MaxPayload: 1000})
	for name, mod := range map[string]func(*Event){
		"empty":   func(e *Event) { e.Payload = nil },
		"origin":  func(e *Event) { e.Origin = "x" },
		"too big": func(e *Event) { e.Payload = make([]byte, 1001) },
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
	// The caller's digest is not trusted: Ingest computes its own.
	ev := testEvent(2)
	ev.SHA1 = Digest([]byte("something else"))
	ingest(t, b, ev, Accepted)
	if seen, _ := b.Seen(ctxT(t), Digest(testEvent(2).Payload)); !seen {
		t.Error("the event was not recorded under its own digest")
	}
}

func TestIngestConcurrentSameEvent(t *testing.T) {
	b := openBus(t, Config{Conns: 3})
	ev := testEvent(7)
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[Outcome]int{}
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := *ev
			if i%2 == 1 {
				e.Origin = OriginUpstream // another subject, the same record
			}
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

// An Ingest whose store went unanswered asks again; when the stream then
// says the payload is stored, the stored copy tells whether that was this
// call's own store (the author gets its ack) or another's.
func TestUnansweredStoreResolvedByReading(t *testing.T) {
	b := openBus(t, Config{})
	unanswered := context.DeadlineExceeded
	mine := testEvent(14)
	mine.SHA1 = Digest(mine.Payload)
	msg := b.message(mine)
	if _, err := b.conns[0].js.PublishMsg(ctxT(t), msg); err != nil { // the store whose answer was lost
		t.Fatal(err)
	}
	if o, err := b.whoseStore(ctxT(t), msg, unanswered); err != nil || o != Accepted {
		t.Fatalf("own store: %v, %v; want accepted", o, err)
	}
	other := *mine
	other.Node, other.ReceivedAt = "another-ingress", time.Now()
	if o, err := b.whoseStore(ctxT(t), b.message(&other), unanswered); err != nil || o != Duplicate {
		t.Fatalf("another's store: %v, %v; want duplicate", o, err)
	}
	lost := testEvent(15)
	lost.SHA1 = Digest(lost.Payload)
	if _, err := b.whoseStore(ctxT(t), b.message(lost), unanswered); err == nil || !strings.Contains(err.Error(), "not stored") {
		t.Fatalf("nothing stored: %v", err)
	}
}

// A store that does not take writes is told apart, and JetStream's own
// error is kept.
func TestIngestStoreUnavailable(t *testing.T) {
	b := openBus(t, Config{})
	if err := b.conns[0].js.DeleteStream(ctxT(t), StreamName); err != nil {
		t.Fatal(err)
	}
	ev := testEvent(13)
	_, err := b.Ingest(ctxT(t), ev)
	if !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("Ingest without a stream: %v; want ErrStoreUnavailable wrapping ErrNoStreamResponse", err)
	}

	full := openBus(t, Config{})
	js := full.conns[0].js
	cfg := full.stream.CachedInfo().Config
	cfg.MaxBytes = 4096
	cfg.Discard = jetstream.DiscardNew // an operator's stream that refuses when full
	if _, err := js.UpdateStream(ctxT(t), cfg); err != nil {
		t.Fatal(err)
	}
	big := testEvent(16)
	big.Payload = append(bytes.Repeat([]byte(" "), 5000), big.Payload...)
	_, err = full.Ingest(ctxT(t), big)
	var apiErr *jetstream.APIError
	if !errors.Is(err, ErrStoreUnavailable) || !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeStreamStoreFailed {
		t.Fatalf("Ingest into a full stream: %v; want ErrStoreUnavailable wrapping API error 10077", err)
	}
}

// The record outlives the payload: after StreamMaxAge the event gives way
// to a delete marker, which still makes the same bytes a Duplicate until
// SeenTTL, and which consumers and taps never see as an event.
func TestRecordOutlivesPayload(t *testing.T) {
	b := openBus(t, Config{StreamMaxAge: time.Second, SeenTTL: 3 * time.Second})
	got := make(chan *Delivery, 10)
	c, err := b.ConsumeEvents(ctxT(t), "egress-ttl", func(d *Delivery) { d.Ack(); got <- d })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	sub, err := b.StageSubscriber("ttl", StageOptions{Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	staged, err := sub.Subscribe(ctxT(t), EventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	ev := testEvent(17)
	start := time.Now() // before the store's clock starts: the bounds below are then safe
	ingest(t, b, ev, Accepted)
	recv(t, got)
	recvMsg(t, staged).Ack()

	marker := func() bool {
		m, err := b.stream.GetLastMsgForSubject(ctxT(t), seenSubject(ev.SHA1))
		return err == nil && len(m.Data) == 0 && m.Header.Get("Nats-Marker-Reason") != ""
	}
	if !waitUntil(5*time.Second, marker) {
		t.Fatal("no delete marker replaced the expired event")
	}
	t.Logf("payload gone after %v", time.Since(start).Round(10*time.Millisecond))
	ingest(t, b, ev, Duplicate)
	if seen, err := b.Seen(ctxT(t), ev.SHA1); err != nil || !seen {
		t.Fatalf("Seen with only the marker = %v, %v", seen, err)
	}
	var taps int
	if err := b.Tap(ctxT(t), TapOptions{Seq: 1, StopWhenCaughtUp: true}, func(*Delivery) error { taps++; return nil }); err != nil {
		t.Fatal(err)
	}
	if taps != 0 {
		t.Errorf("a tap handed over %d messages of a stream holding only a marker", taps)
	}

	gone := func() bool { seen, err := b.Seen(ctxT(t), ev.SHA1); return err == nil && !seen }
	if !waitUntil(10*time.Second, gone) {
		t.Fatal("the record outlived SeenTTL")
	}
	if d := time.Since(start); d < 3*time.Second {
		t.Fatalf("record gone after %v, before SeenTTL", d)
	}
	t.Logf("record gone after %v", time.Since(start).Round(10*time.Millisecond))
	ingest(t, b, ev, Accepted)
	recv(t, got)
	if m := recvMsg(t, staged); len(m.Payload) == 0 {
		t.Fatal("a stage was handed a marker")
	} else {
		m.Ack()
	}
	select {
	case d := <-got:
		t.Fatalf("the consumer was handed seq %d with %d bytes (a marker?)", d.Seq, len(d.Payload))
	case m := <-staged:
		t.Fatalf("a stage was handed %d bytes (a marker?)", len(m.Payload))
	case <-time.After(200 * time.Millisecond):
	}
}

// A stream at its byte limit evicts its oldest records without markers;
// CheckRetention reports it, and how far back records still reach.
func TestRetentionCheckSeesEvictionBySize(t *testing.T) {
	b := openBus(t, Config{MaxStore: 240 << 10, MaxPayload: 8 << 10}) // 160 KiB of events
	h, err := b.CheckRetention(ctxT(t))
	if err != nil || h.Full || h.Short {
		t.Fatalf("empty stream: %+v, %v", h, err)
	}
	first := testEvent(300)
	first.Payload = append(bytes.Repeat([]byte(" "), 4000), first.Payload...)
	ingest(t, b, first, Accepted)
	for i := range 60 {
		ev := testEvent(301 + i)
		ev.Payload = append(bytes.Repeat([]byte(" "), 4000), ev.Payload...)
		ingest(t, b, ev, Accepted)
	}
	h, err = b.CheckRetention(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Full || !h.Short || h.Oldest <= 0 || h.Oldest > time.Minute {
		t.Fatalf("full stream: %+v", h)
	}
	ingest(t, b, first, Accepted) // forgotten early: what the warning is about
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
	if h.Get(HeaderMsgID) != "" || h.Get(HeaderReceivedAt) != "2024-05-01T11:34:56.123456789Z" ||
		h.Get(jetstream.ExpectedLastSubjSeqSubjHeader) != "comet.event.*.*.*."+full.SHA1 {
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

func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
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
		{Config{StreamMaxAge: 24 * time.Hour}, "subject_delete_marker_ttl is 552h0m0s, want 696h0m0s"},
		{Config{SeenTTL: 24 * time.Hour}, "max_age is 720h0m0s, want 168h0m0s"},
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
		{StoreDir: t.TempDir(), StreamMaxAge: time.Millisecond},
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
