package broker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/comet-go/comet/accept"
	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/egress"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/voevent"
	"github.com/comet-go/comet/vtp"
	"github.com/comet-go/comet/whitelist"
)

const (
	testdataDir  = "../../testdata"
	localIVO     = "ivo://test.broker/comet"
	replyTimeout = 10 * time.Second
	deliveryWait = 10 * time.Second
)

func mustWhitelist(nets []string) *whitelist.List {
	l, err := whitelist.New(nets)
	if err != nil {
		panic(err)
	}
	return l
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

func start(t testing.TB, mutate func(*broker.Config)) *broker.Broker {
	t.Helper()
	loop := endpoint.Endpoint{Network: "tcp", Address: "127.0.0.1:0"}
	cfg := broker.Config{
		Receive:   []endpoint.Endpoint{loop},
		Broadcast: []endpoint.Endpoint{loop},
		LocalIVO:  localIVO,
		Node:      "test",
		Version:   "test",
		Bus:       bus.Config{StoreDir: t.TempDir()},
		Logger:    vtptest.Logger(t, slog.LevelInfo),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	b, err := broker.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return b
}

func recvAddr(b *broker.Broker) string { return b.ReceiveAddrs()[0].String() }
func castAddr(b *broker.Broker) string { return b.BroadcastAddrs()[0].String() }

// subscribe connects a subscriber and waits until the broker has installed
// its filters (Comet mode) or at least registered it (other modes).
func subscribe(t testing.TB, b *broker.Broker, mode vtptest.Mode, filters ...string) *vtptest.Subscriber {
	t.Helper()
	before := len(b.Stats().Subscribers)
	s, err := vtptest.Dial(castAddr(b), mode, filters...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	local := s.LocalAddr()
	ok := waitUntil(5*time.Second, func() bool {
		for _, st := range b.Stats().Subscribers {
			if st.Peer == local && (mode != vtptest.Comet || st.Authenticated) {
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("subscriber %s not registered (had %d)", local, before)
	}
	return s
}

func waitUntil(d time.Duration, cond func() bool) bool { return vtptest.WaitUntil(d, cond) }

func samples(t testing.TB) []vtptest.Sample {
	return vtptest.Samples(t, filepath.Join(testdataDir, "voevents"))
}

func benchEvent(t testing.TB) []byte {
	data, err := os.ReadFile(filepath.Join(testdataDir, "bench", "gbm_flt_pos_v20.xml"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func submit(t testing.TB, addr string, payload []byte) *vtp.Message {
	t.Helper()
	m, err := vtptest.Submit(addr, payload, replyTimeout)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return m
}

func mustAck(t testing.TB, addr string, payload []byte) {
	t.Helper()
	m := submit(t, addr, payload)
	if m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("want ack, got %+v", m)
	}
}

// Every shared sample gets Comet's verdict; every acked one reaches two
// subscribers byte-identical; a resubmission is refused as previously seen
// and not rebroadcast.
func TestSamplesGetCometsVerdictAndReachSubscribersByteIdentical(t *testing.T) {
	b := start(t, nil)
	s1 := subscribe(t, b, vtptest.Comet)
	s2 := subscribe(t, b, vtptest.Pygcn)
	var acked []vtptest.Sample
	for _, smp := range samples(t) {
		m := submit(t, recvAddr(b), smp.Data)
		if m == nil {
			t.Errorf("%s: no reply", smp.Name)
			continue
		}
		info, _ := voevent.Inspect(smp.Data, voevent.Options{})
		if m.Origin != info.IVORN || m.Response != localIVO {
			t.Errorf("%s: receipt Origin %q Response %q", smp.Name, m.Origin, m.Response)
		}
		if m.Role != smp.Verdict {
			t.Errorf("%s: got %s (%s), Comet gives %s (%s)", smp.Name, m.Role, m.Result, smp.Verdict, smp.Reason)
			continue
		}
		if m.Role == vtp.RoleNak {
			if !strings.HasPrefix(m.Result, "Event rejected: ") {
				t.Errorf("%s: nak Result %q", smp.Name, m.Result)
			}
			if strings.HasPrefix(smp.Reason, "no-local-id") && m.Result != "Event rejected: No per-event local ID" {
				t.Errorf("%s: nak Result %q", smp.Name, m.Result)
			}
			continue
		}
		acked = append(acked, smp)
	}
	for _, s := range []*vtptest.Subscriber{s1, s2} {
		if !s.WaitEvents(len(acked), deliveryWait) {
			t.Fatalf("subscriber got %d events, want %d", len(s.Events()), len(acked))
		}
		for i, got := range s.Events() {
			if !bytes.Equal(got, acked[i].Data) {
				t.Errorf("event %d (%s) not byte-identical", i, acked[i].Name)
			}
		}
	}

	// Resubmitting: previously seen, not rebroadcast.
	for _, smp := range acked {
		m := submit(t, recvAddr(b), smp.Data)
		if m == nil || m.Role != vtp.RoleNak || m.Result != "Event rejected: Previously seen by this broker" {
			t.Errorf("%s resubmitted: %+v", smp.Name, m)
		}
	}
	if n := b.Stats().Rejections[ingress.RejectPreviouslySeen]; n != uint64(len(acked)) {
		t.Errorf("%d rejections counted as previously seen, want %d", n, len(acked))
	}
	marker := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/marker#after-duplicates")
	mustAck(t, recvAddr(b), marker)
	for _, s := range []*vtptest.Subscriber{s1, s2} {
		if !s.WaitEvents(len(acked)+1, deliveryWait) {
			t.Fatal("marker not delivered")
		}
		if n := len(s.Events()); n != len(acked)+1 {
			t.Fatalf("subscriber got %d events after resubmission, want %d: duplicates were rebroadcast", n, len(acked)+1)
		}
	}
}

// The composed event and worked examples of docs/filtering.md §3, each
// through a real subscriber connection.
func TestFilterWorkedExamplesThroughSubscribers(t *testing.T) {
	b := start(t, nil)
	cases := []struct {
		filters []string
		sent    bool
	}{
		{[]string{`/*[local-name()="VOEvent" and @role!="test"]`}, true},
		{[]string{`//Param[@name="SNR" and @value>10]`}, true},
		{[]string{`//Param[@name="SNR" and @value>20]`}, false},
		{[]string{`//voe:VOEvent`}, false},
		{[]string{`//voe::VOEvent`}, false}, // refused: never matches (Comet: unfiltered)
		{[]string{`//Who[AuthorIVORN="ivo://example.observatory/survey"]`}, true},
		{[]string{`count(//Param)`}, true},
		{[]string{`count(//Table)`}, false},
		{[]string{`string(//Why/@importance)`}, false},
		{[]string{`string(//Who/AuthorIVORN)`}, true},
		{[]string{`boolean(//Citations/EventIVORN[@cite="retraction"])`}, false},
		{[]string{`number(//Param[@name="Packet_Type"]/@value) = 61`}, true},
		{[]string{`number(//Param[@name="Nope"]/@value)`}, true},
		{[]string{`@role = "observation"`}, true},
		{[]string{`/VOEvent`}, false},
		{[]string{`//Param[@name="Retracted"]/@value = "false"`}, true},
		{[]string{`//Param[@name="Retracted" and @value="true"]`}, false},
		{[]string{`"false"`}, true},
		{[]string{`0 div 0`}, true},
		{[]string{`1 div 0`}, true},
		{[]string{`-0`}, false},
		{[]string{`starts-with(@ivorn, "ivo://example.observatory/")`}, true},
		{[]string{`//Position2D/Value2/C1 > 100 and //Position2D/Value2/C2 < 0`}, true},
		{[]string{`re:test(//Param/@name, "^S")`}, false},
		// Combinations.
		{[]string{`//Param[@name="SNR" and @value>20]`, `count(//Table)`}, false},
		{[]string{`//Param[@name="SNR" and @value>20]`, `//Param[@name="SNR" and @value>10]`}, true},
		{[]string{`//voe:VOEvent`, `//voe::VOEvent`}, false},
		{nil, true},
	}
	subs := make([]*vtptest.Subscriber, len(cases))
	for i, c := range cases {
		subs[i] = subscribe(t, b, vtptest.Comet, c.filters...)
	}
	mustAck(t, recvAddr(b), []byte(vtptest.FilteringSample))
	for i, c := range cases {
		if c.sent && !subs[i].WaitEvents(1, deliveryWait) {
			t.Errorf("filters %q: event not sent, want sent", c.filters)
		}
	}
	// Every matching subscriber has it, so the broadcast decision has been
	// made for all; give the others a moment to show a wrong delivery.
	time.Sleep(300 * time.Millisecond)
	for i, c := range cases {
		if !c.sent && len(subs[i].Events()) != 0 {
			t.Errorf("filters %q: event sent, want not sent", c.filters)
		}
	}
	// A new authenticate replaces the set: reconnecting is the simplest
	// real-world way, but the same connection can re-authenticate too.
}

// A subscriber that never reads is dropped once its bounded queue fills,
// while another keeps receiving every event; memory stays bounded.
func TestSubscriberThatNeverReadsIsDroppedOthersGetEverything(t *testing.T) {
	b := start(t, func(c *broker.Config) { c.Broadcaster.QueueLen = 32; c.Broadcaster.WriteTimeout = 2 * time.Second })
	good := subscribe(t, b, vtptest.Comet)
	subscribe(t, b, vtptest.Silent)
	if n := len(b.Stats().Subscribers); n != 2 {
		t.Fatalf("%d subscribers, want 2", n)
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 1500 // about 8.6 MB: far more than the socket buffers hold
	tmpl := benchEvent(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			m, err := vtptest.Submit(recvAddr(b), vtptest.WithIVORN(tmpl, fmt.Sprintf("ivo://test.author/slow#%d", i)), replyTimeout)
			if err != nil || m == nil || m.Role != vtp.RoleAck {
				errs <- fmt.Errorf("event %d: %+v %v", i, m, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !good.WaitEvents(n, 30*time.Second) {
		t.Fatalf("reading subscriber got %d of %d events", len(good.Events()), n)
	}
	if !waitUntil(10*time.Second, func() bool { return len(b.Stats().Subscribers) == 1 }) {
		t.Fatalf("silent subscriber not dropped: %+v", b.Stats().Subscribers)
	}
	// Too slow: its queue stayed full, or a write blocked, whichever came
	// first.
	if d := b.Stats().Drops; len(d) != 1 || d[egress.DropQueueFull]+d[egress.DropWriteTimeout] != 1 {
		t.Errorf("drops %v, want one for a full queue or a blocked write", d)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 64<<20 {
		t.Fatalf("heap grew by %d MB", grow>>20)
	}
	if good.Closed() {
		t.Fatalf("reading subscriber was dropped: %v", good.Err())
	}
}

// Whitelists refuse peers outside them at accept, with no bytes sent.
func TestWhitelistsRefusePeersOutside(t *testing.T) {
	b := start(t, func(c *broker.Config) {
		c.Receiver.Whitelist = mustWhitelist([]string{"127.0.0.1/32"})
		c.Broadcaster.Whitelist = mustWhitelist([]string{"127.0.0.1/255.255.255.255"})
	})
	outside := &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}
	ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/wl#1")
	m, err := vtptest.SubmitFrom(outside, recvAddr(b), ev, replyTimeout)
	if err != nil || m != nil {
		t.Fatalf("submission from 127.0.0.2: %+v %v, want closed without reply", m, err)
	}
	mustAck(t, recvAddr(b), ev) // not recorded by the refused attempt
	s, err := vtptest.DialFrom(outside, castAddr(b), vtptest.Comet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.WaitFor(5*time.Second, func(s *vtptest.Subscriber) bool { return s.Closed() }) {
		t.Fatal("subscriber from 127.0.0.2 not refused")
	}
	if len(s.Transport()) != 0 {
		t.Fatalf("refused subscriber was sent %d messages", len(s.Transport()))
	}
	if st := b.Stats(); st.Rejections[ingress.RejectWhitelist] != 1 || st.Drops[egress.DropWhitelist] != 1 {
		t.Errorf("refusals not counted: rejections %v, drops %v", st.Rejections, st.Drops)
	}
}

// A pygcn-like peer (never answers authenticate, other Transport
// namespace, local timestamps, one-line documents) stays subscribed across
// iamalive rounds and receives events.
func TestPygcnPeerStaysSubscribedAcrossIAmAliveRounds(t *testing.T) {
	b := start(t, func(c *broker.Config) { c.Broadcaster.IAmAliveInterval = 100 * time.Millisecond })
	p := subscribe(t, b, vtptest.Pygcn)
	if !p.WaitRole(vtp.RoleIAmAlive, 6, 5*time.Second) {
		t.Fatalf("got %d transport messages", len(p.Transport()))
	}
	if p.Closed() {
		t.Fatalf("pygcn peer dropped: %v", p.Err())
	}
	if got := p.Transport()[0]; got.Role != vtp.RoleAuthenticate || got.Origin != localIVO {
		t.Fatalf("first message %+v, want authenticate from %s", got, localIVO)
	}
	mustAck(t, recvAddr(b), vtptest.WithIVORN(benchEvent(t), "ivo://test.author/pygcn#1"))
	if !p.WaitEvents(1, deliveryWait) {
		t.Fatal("pygcn peer got no event")
	}
	if !p.WaitRole(vtp.RoleIAmAlive, 10, 5*time.Second) || p.Closed() {
		t.Fatalf("pygcn peer dropped after event: %v", p.Err())
	}
}

// Comet's drop rules: an unanswered iamalive, too many unacknowledged
// events, a nak.
func TestSubscribersThatStopAnsweringAreDropped(t *testing.T) {
	b := start(t, func(c *broker.Config) { c.Broadcaster.IAmAliveInterval = 100 * time.Millisecond })
	mute := subscribe(t, b, vtptest.Mute)
	noack := subscribe(t, b, vtptest.NoAck)
	naker := subscribe(t, b, vtptest.Naker)
	tmpl := benchEvent(t)
	for i := range 12 {
		mustAck(t, recvAddr(b), vtptest.WithIVORN(tmpl, fmt.Sprintf("ivo://test.author/drop#%d", i)))
	}
	for name, s := range map[string]*vtptest.Subscriber{"mute": mute, "noack": noack, "naker": naker} {
		if !s.WaitFor(5*time.Second, func(s *vtptest.Subscriber) bool { return s.Closed() }) {
			t.Errorf("%s subscriber not dropped", name)
		}
	}
	if !waitUntil(5*time.Second, func() bool { return len(b.Stats().Subscribers) == 0 }) {
		t.Fatalf("still connected: %+v", b.Stats().Subscribers)
	}
	want := map[egress.DropCause]uint64{egress.DropIAmAliveUnanswered: 1, egress.DropUnacked: 1, egress.DropNak: 1}
	if got := b.Stats().Drops; !maps.Equal(got, want) {
		t.Errorf("drops %v, want %v", got, want)
	}
}

// Test events go to subscribers through their filters, are schema-valid
// and are neither recorded nor published on the bus.
func TestTestEvents(t *testing.T) {
	b := start(t, func(c *broker.Config) { c.Broadcaster.TestInterval = 200 * time.Millisecond })
	noTests := subscribe(t, b, vtptest.Comet, `/*[local-name()="VOEvent" and @role!="test"]`)
	base := len(noTests.Events()) // a tick may have beaten its filters
	all := subscribe(t, b, vtptest.Comet)
	if !all.WaitEvents(3, 5*time.Second) {
		t.Fatal("no test events")
	}
	ev := all.Events()[0]
	info, err := voevent.Inspect(ev, voevent.Options{Schema: true})
	if err != nil || info.SchemaErr != nil || info.Role != "test" || info.Author != localIVO ||
		!strings.HasPrefix(info.IVORN, localIVO+"#TestEvent-") || !strings.HasSuffix(info.IVORN, "Z") {
		t.Fatalf("test event %+v %v:\n%s", info, err, ev)
	}
	if err := voevent.CheckEventIVORN(info.IVORN); err != nil {
		t.Fatalf("test event ivorn: %v", err)
	}
	if n := len(noTests.Events()); n != base {
		t.Fatalf("filtered subscriber got %d test events", n-base)
	}
	seen, err := b.Bus().Seen(context.Background(), bus.Digest(ev))
	if err != nil || seen {
		t.Fatalf("test event recorded as seen (%v, %v)", seen, err)
	}
}

// Bad submissions get Comet's outcome: no reply for unparsable input, a
// Transport message, a role-less or ivorn-less document; naks for bad
// IVOIDs; and nothing is recorded.
func TestBadSubmissions(t *testing.T) {
	b := start(t, nil)
	good := benchEvent(t)
	noReply := map[string][]byte{
		"not xml":        []byte("hello"),
		"empty":          {},
		"transport":      vtp.IAmAlive("ivo://x.y/z", "", time.Now()),
		"no role":        bytes.Replace(good, []byte(`role="observation"`), nil, 1),
		"unknown role":   bytes.Replace(good, []byte(`role="observation"`), []byte(`role="rumour"`), 1),
		"no ivorn":       withoutIVORN(good),
		"dtd":            append([]byte(`<!DOCTYPE x [<!ENTITY e "boom">]>`), good[bytes.Index(good, []byte("<voe:")):]...),
		"entity in text": bytes.Replace(good, []byte("<Who>"), []byte("<Who>&e;"), 1),
	}
	for name, p := range noReply {
		if m := submit(t, recvAddr(b), p); m != nil {
			t.Errorf("%s: got %s %q, want no reply", name, m.Role, m.Result)
		}
	}
	naks := map[string]string{
		"ivo://bad ivorn#x":   "Event rejected: Invalid IVOID: ivo://bad ivorn#x",
		"ivo://test.author/a": "Event rejected: No per-event local ID",
	}
	for ivorn, want := range naks {
		m := submit(t, recvAddr(b), vtptest.WithIVORN(good, ivorn))
		if m == nil || m.Role != vtp.RoleNak || m.Result != want {
			t.Errorf("%s: %+v, want nak %q", ivorn, m, want)
		}
	}
	// An oversized frame is refused without reading it.
	big := vtptest.WithIVORN(good, "ivo://test.author/big#1")
	big = append(big, bytes.Repeat([]byte(" "), vtp.DefaultMaxFrame)...)
	if m := submit(t, recvAddr(b), big); m != nil {
		t.Errorf("oversized frame answered: %+v", m)
	}
	// Two events on one connection: only the first is processed.
	conn, err := net.Dial("tcp", recvAddr(b))
	if err != nil {
		t.Fatal(err)
	}
	first := vtptest.WithIVORN(good, "ivo://test.author/two#1")
	second := vtptest.WithIVORN(good, "ivo://test.author/two#2")
	conn.Write(append(vtp.Frame(first), vtp.Frame(second)...))
	conn.SetDeadline(time.Now().Add(replyTimeout))
	fr := vtp.NewFrameReader(conn, 0)
	reply, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := vtp.ParseTransport(reply); m == nil || m.Role != vtp.RoleAck || m.Origin != "ivo://test.author/two#1" {
		t.Fatalf("first of two: %+v", m)
	}
	if _, err := fr.ReadFrame(); err == nil {
		t.Fatal("a second receipt was sent")
	}
	conn.Close()
	mustAck(t, recvAddr(b), second) // the second was never recorded

	want := map[ingress.Rejection]uint64{
		ingress.RejectUnparsable: 6, // not xml, empty, no role, unknown role, dtd, entity in text
		ingress.RejectTransport:  1,
		ingress.RejectNoIVORN:    1,
		ingress.RejectInvalid:    2,
		ingress.RejectTooLarge:   1,
	}
	if got := b.Stats().Rejections; !maps.Equal(got, want) {
		t.Errorf("rejections %v, want %v", got, want)
	}
}

// withoutIVORN removes the root's ivorn attribute.
func withoutIVORN(ev []byte) []byte {
	i := bytes.Index(ev, []byte("ivorn="))
	q := ev[i+6]
	j := bytes.IndexByte(ev[i+7:], q)
	return append(append([]byte{}, ev[:i]...), ev[i+7+j+1:]...)
}

// Two brokers on one external NATS JetStream server (--nats): the same
// event submitted to both is acked by one and refused as previously seen by
// the other, and each broker's subscribers receive it exactly once.
func TestTwoBrokersShareAnExternalBus(t *testing.T) {
	ext, err := bus.Open(context.Background(), bus.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", MaxPayload: vtp.DefaultMaxFrame,
		Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ext.Close() })
	url := ext.ClientURL()
	if url == "" {
		t.Fatal("external server has no client URL")
	}
	a := start(t, func(c *broker.Config) { c.Bus.URL = url; c.Node = "a"; c.Bus.StoreDir = "" })
	b := start(t, func(c *broker.Config) { c.Bus.URL = url; c.Node = "b"; c.Bus.StoreDir = "" })
	sa := subscribe(t, a, vtptest.Comet)
	sb := subscribe(t, b, vtptest.Comet)

	ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/shared#1")
	replies := make(chan *vtp.Message, 2)
	for _, br := range []*broker.Broker{a, b} {
		go func() {
			m, _ := vtptest.Submit(recvAddr(br), ev, replyTimeout)
			replies <- m
		}()
	}
	roles := map[string]int{}
	for range 2 {
		if m := <-replies; m != nil {
			roles[m.Role]++
		}
	}
	if roles[vtp.RoleAck] != 1 || roles[vtp.RoleNak] != 1 {
		t.Fatalf("receipts %v, want one ack and one nak", roles)
	}
	marker := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/shared#marker")
	mustAck(t, recvAddr(a), marker)
	for name, s := range map[string]*vtptest.Subscriber{"a": sa, "b": sb} {
		if !s.WaitEvents(2, deliveryWait) {
			t.Fatalf("subscriber of %s got %q", name, s.IVORNs())
		}
		time.Sleep(100 * time.Millisecond)
		if got := s.IVORNs(); len(got) != 2 || got[0] != "ivo://test.author/shared#1" {
			t.Fatalf("subscriber of %s got %q, want the event once then the marker", name, got)
		}
	}
}

// A unix-socket receiver works, and its peers bypass the whitelist, as in
// Comet.
func TestUnixSocketReceiver(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "receive.sock")
	b := start(t, func(c *broker.Config) {
		c.Receive = []endpoint.Endpoint{{Network: "unix", Address: sock}}
		c.Receiver.Whitelist = mustWhitelist([]string{}) // no TCP peer may submit
	})
	s := subscribe(t, b, vtptest.Comet)
	ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/unix#1")
	author := vtp.Author{Timeout: replyTimeout}
	rc, err := author.Submit(t.Context(), "unix", sock, ev, "ivo://test.author/unix#1")
	if err != nil || rc.Role != vtp.RoleAck {
		t.Fatalf("over the unix socket: %+v %v", rc, err)
	}
	if !s.WaitEvents(1, deliveryWait) || !bytes.Equal(s.Events()[0], ev) {
		t.Fatal("event not relayed byte-identical")
	}
}

// Connection limits: past the per-source limit a peer's connection is
// closed at accept while other sources are served; past the listener's
// limit everyone waits for a slot; a closed connection frees its slot.
func TestConnectionLimits(t *testing.T) {
	b := start(t, func(c *broker.Config) {
		c.Receiver.Limits = accept.Limits{MaxConns: 6, MaxConnsPerPeer: 4}
		c.Receiver.Timeout = 20 * time.Second
	})
	dialFrom := func(ip string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", recvAddr(b))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	refused := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err == io.EOF
	}
	var silent []net.Conn
	for range 4 {
		silent = append(silent, dialFrom("127.0.0.1"))
	}
	time.Sleep(100 * time.Millisecond) // accepted and counted
	if !refused(dialFrom("127.0.0.1")) {
		t.Fatal("a fifth connection from 127.0.0.1 was accepted")
	}
	other := &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}
	if m, err := vtptest.SubmitFrom(other, recvAddr(b), vtptest.WithIVORN(benchEvent(t), "ivo://test.author/limits#1"), replyTimeout); err != nil || m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("another source must still be served: %+v %v", m, err)
	}
	time.Sleep(200 * time.Millisecond) // its handler ends after the author closes
	silent = append(silent, dialFrom("127.0.0.3"), dialFrom("127.0.0.3"))
	time.Sleep(100 * time.Millisecond)
	if !refused(dialFrom("127.0.0.4")) {
		t.Fatal("a seventh connection was accepted past the listener's limit of 6")
	}
	silent[0].Close()
	time.Sleep(100 * time.Millisecond) // the broker sees the close and frees the slot
	// The slot is freed when the broker's handler ends, which for a silent
	// connection is at EOF: the author can now be served.
	var m *vtp.Message
	var err error
	for range 20 {
		m, err = vtptest.SubmitFrom(other, recvAddr(b), vtptest.WithIVORN(benchEvent(t), "ivo://test.author/limits#2"), replyTimeout)
		if m != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("slot not freed after a close: %+v %v", m, err)
	}
}

// A subscriber that floods garbage is dropped after MaxBadMessages, while
// another keeps receiving.
func TestGarbageFloodingSubscriberIsDropped(t *testing.T) {
	b := start(t, nil)
	good := subscribe(t, b, vtptest.Comet)
	c, err := net.Dial("tcp", castAddr(b))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		junk := vtp.Frame([]byte("<<not xml"))
		for range 10 * egress.MaxBadMessages {
			if _, err := c.Write(junk); err != nil {
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	// Dropped: EOF, or a reset because the broker closed with garbage unread.
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("flooding subscriber not dropped: %v", err)
	}
	mustAck(t, recvAddr(b), vtptest.WithIVORN(benchEvent(t), "ivo://test.author/flood#1"))
	if !good.WaitEvents(1, deliveryWait) || good.Closed() {
		t.Fatal("the other subscriber was affected")
	}
}

// Frames larger than a subscriber writer's buffer, among bursts of small
// ones, reach every subscriber whole, byte for byte.
func TestLargeEventsAmongBurstsReachSubscribersWhole(t *testing.T) {
	b := start(t, nil)
	subs := []*vtptest.Subscriber{subscribe(t, b, vtptest.Comet), subscribe(t, b, vtptest.Pygcn)}
	var want [][]byte
	for i := range 6 {
		var wg sync.WaitGroup
		burst := make([][]byte, 8)
		for k := range burst {
			burst[k] = vtptest.WithIVORN(benchEvent(t), fmt.Sprintf("ivo://test.author/burst#%d-%d", i, k))
			if k == 0 {
				// Past the end of the root element: still the same document.
				burst[k] = append(burst[k], bytes.Repeat([]byte("\n"), 60_000+i)...)
			}
			wg.Go(func() { mustAck(t, recvAddr(b), burst[k]) })
		}
		wg.Wait()
		want = append(want, burst...)
	}
	for _, s := range subs {
		if !s.WaitEvents(len(want), deliveryWait) {
			t.Fatalf("subscriber got %d of %d events", len(s.Events()), len(want))
		}
		got := map[string]bool{}
		for _, e := range s.Events() {
			got[string(e)] = true
		}
		for i, w := range want {
			if !got[string(w)] {
				t.Errorf("event %d (%d bytes) not received whole", i, len(w))
			}
		}
	}
}
