package bus

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// tapAll runs a tap that stops when caught up and returns the sequences
// and IVORNs handed over.
func tapAll(t testing.TB, b *Bus, opt TapOptions) (seqs []uint64, ivorns []string) {
	t.Helper()
	opt.StopWhenCaughtUp = true
	err := b.Tap(ctxT(t), opt, func(d *Delivery) error {
		seqs = append(seqs, d.Seq)
		ivorns = append(ivorns, d.IVORN)
		return nil
	})
	if err != nil {
		t.Fatalf("Tap(%+v): %v", opt, err)
	}
	return seqs, ivorns
}

func ingestN(t testing.TB, b *Bus, from, n int) []string {
	t.Helper()
	var ivorns []string
	for i := from; i < from+n; i++ {
		ev := testEvent(i)
		ingest(t, b, ev, Accepted)
		ivorns = append(ivorns, ev.IVORN)
	}
	return ivorns
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// consumerNames lists the stream's consumers, durable or not.
func consumerNames(t testing.TB, b *Bus) []string {
	t.Helper()
	var names []string
	l := b.stream.ConsumerNames(ctxT(t))
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// Order and content: every event, in stream order, with its headers.
func TestTapBySeqInOrder(t *testing.T) {
	b := openBus(t, Config{})
	want := ingestN(t, b, 0, 40)

	seqs, ivorns := tapAll(t, b, TapOptions{Seq: 1})
	if !reflect.DeepEqual(seqs, seqRange(1, 40)) || !reflect.DeepEqual(ivorns, want) {
		t.Fatalf("seqs %v\nivorns %q", seqs, ivorns)
	}
	seqs, ivorns = tapAll(t, b, TapOptions{Seq: 31})
	if !reflect.DeepEqual(seqs, seqRange(31, 40)) || !reflect.DeepEqual(ivorns, want[30:]) {
		t.Fatalf("from 31: seqs %v ivorns %q", seqs, ivorns)
	}

	var got *Delivery
	err := b.Tap(ctxT(t), TapOptions{Seq: 40, StopWhenCaughtUp: true}, func(d *Delivery) error { got = d; return nil })
	if err != nil {
		t.Fatal(err)
	}
	ev := testEvent(39)
	if got == nil || string(got.Payload) != string(ev.Payload) || got.SHA1 != ev.SHA1 || got.Role != "test" ||
		got.Origin != OriginAuthor || got.Node != "test-node" || got.Peer != ev.Peer || got.ReceivedAt.IsZero() ||
		got.Subject != Subject(OriginAuthor, "test", "test.example", ev.SHA1) {
		t.Fatalf("delivery %+v", got)
	}
}

func TestTapSince(t *testing.T) {
	b := openBus(t, Config{})
	ingestN(t, b, 0, 3)
	// Each Ingest returns once the server has stored the event, so all
	// three carry stream times before this.
	since := time.Now()
	want := ingestN(t, b, 3, 3)

	seqs, ivorns := tapAll(t, b, TapOptions{Since: since})
	if !reflect.DeepEqual(seqs, seqRange(4, 6)) || !reflect.DeepEqual(ivorns, want) {
		t.Fatalf("seqs %v ivorns %q", seqs, ivorns)
	}
	if seqs, _ := tapAll(t, b, TapOptions{Since: since.Add(-time.Hour)}); len(seqs) != 6 {
		t.Fatalf("an hour back: %v", seqs)
	}
}

// Caught up means the events stored when the tap started: later ones are
// not handed over, and a start past the end returns at once.
func TestTapStopsWhenCaughtUp(t *testing.T) {
	b := openBus(t, Config{})
	for name, opt := range map[string]TapOptions{
		"empty stream": {Seq: 1},
		"from now":     {},
	} {
		if seqs, _ := tapAll(t, b, opt); len(seqs) != 0 {
			t.Errorf("%s: %v", name, seqs)
		}
	}
	ingestN(t, b, 0, 3)
	for name, opt := range map[string]TapOptions{
		"seq past the end":   {Seq: 4},
		"time in the future": {Since: time.Now().Add(time.Hour)},
		"from now":           {},
	} {
		start := time.Now()
		if seqs, _ := tapAll(t, b, opt); len(seqs) != 0 {
			t.Errorf("%s: %v", name, seqs)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %v", name, d)
		}
	}

	var seqs []uint64
	more := 100
	err := b.Tap(ctxT(t), TapOptions{Seq: 1, StopWhenCaughtUp: true}, func(d *Delivery) error {
		seqs = append(seqs, d.Seq)
		if d.Seq == 1 {
			ingest(t, b, testEvent(more), Accepted) // stored after the start
		}
		return nil
	})
	if err != nil || !reflect.DeepEqual(seqs, []uint64{1, 2, 3}) {
		t.Fatalf("Tap = %v, seqs %v", err, seqs)
	}
}

// Events deleted meanwhile, the last one included, do not keep a
// caught-up tap waiting.
func TestTapCaughtUpAfterDeletions(t *testing.T) {
	b := openBus(t, Config{})
	ingestN(t, b, 0, 4)
	for _, seq := range []uint64{2, 4} {
		if err := b.stream.DeleteMsg(ctxT(t), seq); err != nil {
			t.Fatal(err)
		}
	}
	if seqs, _ := tapAll(t, b, TapOptions{Seq: 1}); !reflect.DeepEqual(seqs, []uint64{1, 3}) {
		t.Fatalf("seqs %v", seqs)
	}
}

// Following: from now on, new events arrive until ctx ends, which ends the
// tap without error.
func TestTapFollowsNewEvents(t *testing.T) {
	b := openBus(t, Config{})
	ingestN(t, b, 0, 2)
	before := consumerNames(t, b)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan *Delivery, 10)
	done := make(chan error, 1)
	go func() { done <- b.Tap(ctx, TapOptions{}, func(d *Delivery) error { got <- d; return nil }) }()

	// A tap from now on sees what is stored once its consumer exists.
	deadline := time.Now().Add(5 * time.Second)
	for len(consumerNames(t, b)) == len(before) {
		if time.Now().After(deadline) {
			t.Fatal("tap consumer never appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
	want := ingestN(t, b, 2, 3)
	for i, w := range want {
		d := recv(t, got)
		if d.IVORN != w || d.Seq != uint64(3+i) {
			t.Fatalf("got %s (seq %d), want %s", d.IVORN, d.Seq, w)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Tap after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Tap did not return after cancel")
	}
	if len(got) != 0 {
		t.Errorf("extra deliveries: %d", len(got))
	}
}

func TestTapHandlerErrorEndsIt(t *testing.T) {
	b := openBus(t, Config{})
	ingestN(t, b, 0, 3)
	stop := errors.New("stop here")
	n := 0
	err := b.Tap(ctxT(t), TapOptions{Seq: 1}, func(d *Delivery) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("Tap = %v after %d deliveries", err, n)
	}
}

func TestTapOptionErrors(t *testing.T) {
	b := openBus(t, Config{})
	if err := b.Tap(ctxT(t), TapOptions{Seq: 1, Since: time.Now()}, func(*Delivery) error { return nil }); err == nil {
		t.Error("Seq with Since accepted")
	}
	if err := b.Tap(ctxT(t), TapOptions{}, nil); err == nil {
		t.Error("nil handler accepted")
	}
}

// Tapping leaves the durable consumers exactly as they were (position,
// acks, pending) and leaves no consumer of its own behind.
func TestTapLeavesDurablesAlone(t *testing.T) {
	b := openBus(t, Config{})
	ingestN(t, b, 0, 4)
	acked := make(chan struct{}, 4)
	var mu sync.Mutex
	n := 0
	c, err := b.ConsumeEvents(ctxT(t), "egress-keep", func(d *Delivery) {
		mu.Lock()
		defer mu.Unlock()
		if n++; n <= 2 {
			d.Ack()
			acked <- struct{}{}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	<-acked
	<-acked
	time.Sleep(100 * time.Millisecond) // let the acks land
	c.Stop()

	state := func() jetstream.ConsumerInfo {
		cons, err := b.stream.Consumer(ctxT(t), "egress-keep")
		if err != nil {
			t.Fatal(err)
		}
		info := *cons.CachedInfo()
		info.TimeStamp = time.Time{}
		info.Delivered.Last, info.AckFloor.Last = nil, nil
		return info
	}
	names, before := consumerNames(t, b), state()
	if !reflect.DeepEqual(names, []string{"egress-keep"}) || before.AckFloor.Stream != 2 {
		t.Fatalf("set-up: consumers %v, ack floor %+v", names, before.AckFloor)
	}

	if seqs, _ := tapAll(t, b, TapOptions{Seq: 1}); len(seqs) != 4 {
		t.Fatalf("tap saw %v", seqs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := b.Tap(ctx, TapOptions{Since: time.Now().Add(-time.Hour)}, func(*Delivery) error { return nil }); err != nil {
		t.Fatal(err)
	}

	after := state()
	if !reflect.DeepEqual(after.Delivered, before.Delivered) || !reflect.DeepEqual(after.AckFloor, before.AckFloor) ||
		after.NumPending != before.NumPending || after.NumAckPending != before.NumAckPending ||
		!reflect.DeepEqual(after.Config, before.Config) {
		t.Errorf("durable changed:\nbefore %+v\n after %+v", before, after)
	}
	if names := consumerNames(t, b); !reflect.DeepEqual(names, []string{"egress-keep"}) {
		t.Errorf("consumers after tapping: %v", names)
	}
}

// Dial reads a bus some broker provisioned, whatever its own Config says,
// and creates nothing where there is no stream.
func TestDialReadsWithoutProvisioning(t *testing.T) {
	srv := startServer(t, 2<<20)
	url := srv.ClientURL()

	_, err := Dial(ctxT(t), Config{URL: url, Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "no stream COMET_EVENTS") {
		t.Fatalf("Dial to a bare server: %v", err)
	}
	broker := openBus(t, Config{URL: url, MaxPayload: 99999})
	want := ingestN(t, broker, 0, 3)

	// Open with these settings is refused (max_msg_size, max_age); a tap
	// does not care.
	cfg := Config{URL: url, MaxPayload: DefaultMaxPayload, StreamMaxAge: time.Hour, Logger: testLogger(t)}
	if _, err := Open(ctxT(t), cfg); err == nil {
		t.Fatal("Open with other stream settings succeeded; this test needs it refused")
	}
	r, err := Dial(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var ivorns []string
	err = r.Tap(ctxT(t), TapOptions{Seq: 1, StopWhenCaughtUp: true}, func(d *Delivery) error {
		ivorns = append(ivorns, d.IVORN)
		return nil
	})
	if err != nil || !reflect.DeepEqual(ivorns, want) {
		t.Fatalf("Tap = %v, %q", err, ivorns)
	}
	info, err := broker.stream.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != DefaultSeenTTL || info.Config.MaxMsgSize != int32(99999+HeaderRoom) {
		t.Errorf("stream settings changed: %+v", info.Config)
	}
	if names := consumerNames(t, broker); len(names) != 0 {
		t.Errorf("consumers left: %v", names)
	}

	if _, err := Dial(ctxT(t), Config{}); err == nil {
		t.Error("Dial without URL succeeded")
	}
	if _, err := Dial(ctxT(t), Config{URL: "nats://127.0.0.1:1", Logger: testLogger(t)}); err == nil {
		t.Error("Dial to a closed port succeeded")
	}
}

// A context that ends during set-up ends the tap normally too.
func TestTapEndedContext(t *testing.T) {
	b := openBus(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Tap(ctx, TapOptions{}, func(*Delivery) error { return nil }); err != nil {
		t.Fatalf("Tap with an ended context: %v", err)
	}
	if names := consumerNames(t, b); len(names) != 0 {
		t.Errorf("consumers left: %v", names)
	}
}
