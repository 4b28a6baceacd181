package bus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func recvMsg(t testing.TB, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("subscription ended")
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
		return nil
	}
}

func noMsg(t testing.TB, ch <-chan *message.Message, d time.Duration) {
	t.Helper()
	select {
	case m := <-ch:
		t.Fatalf("unexpected message %s", m.UUID)
	case <-time.After(d):
	}
}

func TestStageSubscriber(t *testing.T) {
	b := openBus(t, Config{})
	early := testEvent(300)
	ingest(t, b, early, Accepted) // after Open: a new stage consumer gets it
	sub, err := b.StageSubscriber("test", StageOptions{Concurrency: 2, NakDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(ctxT(t), "comet.event.author.>"); err == nil {
		t.Error("a topic other than EventsTopic accepted")
	}
	ch, err := sub.Subscribe(ctxT(t), EventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(ctxT(t), EventsTopic); err == nil {
		t.Error("second Subscribe accepted")
	}
	ev1, ev2 := testEvent(301), testEvent(302)
	ev1.Author = "ivo://test.example/author"
	ingest(t, b, ev1, Accepted)
	ingest(t, b, ev2, Accepted)

	m0 := recvMsg(t, ch)
	m1 := recvMsg(t, ch)
	if m0.UUID != early.SHA1 || string(m0.Payload) != string(early.Payload) {
		t.Fatalf("first message %s %q", m0.UUID, m0.Payload)
	}
	got := MessageEvent(m1)
	if m1.UUID != ev1.SHA1 || got.SHA1 != ev1.SHA1 || got.IVORN != ev1.IVORN || got.Role != "test" ||
		got.Author != ev1.Author || got.Origin != OriginAuthor || got.Node != "test-node" ||
		got.Peer != ev1.Peer || got.Signature != SignatureUnchecked ||
		!got.ReceivedAt.Equal(ev1.ReceivedAt) || string(got.Payload) != string(ev1.Payload) {
		t.Errorf("decoded %+v", got)
	}
	if m1.Metadata.Get(HeaderMsgID) != "" {
		t.Error("Nats-Msg-Id in metadata")
	}
	// Concurrency 2: the third waits for a verdict on one of the two.
	noMsg(t, ch, 200*time.Millisecond)
	m0.Ack()
	m2 := recvMsg(t, ch)
	if m2.UUID != ev2.SHA1 {
		t.Fatalf("got %s", m2.UUID)
	}
	// A nack comes back after NakDelay.
	m2.Nack()
	if again := recvMsg(t, ch); again.UUID != ev2.SHA1 {
		t.Fatalf("got %s after nack", again.UUID)
	} else {
		again.Ack()
	}
	m1.Ack()
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch; ok {
		t.Error("channel open after Close")
	}
	if n, err := b.Pending(ctxT(t), StageDurablePrefix+"test"); err != nil || n != 0 {
		t.Errorf("Pending = %d, %v after every ack (acks are confirmed)", n, err)
	}
}

func TestStageSubscriberOddMessages(t *testing.T) {
	b := openBus(t, Config{})
	sub, err := b.StageSubscriber("odd", StageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := sub.Subscribe(ctxT(t), EventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	// Someone tapping the bus publishes a message with repeated headers
	// and no Comet-Sha1 (watermill-nats panics on repeated headers).
	m := nats.NewMsg(Subject(OriginAuthor, "test", "x", "y"))
	m.Data = []byte("<odd/>")
	m.Header.Add(HeaderIVORN, "ivo://a/b#1")
	m.Header.Add(HeaderIVORN, "ivo://a/b#2")
	if _, err := b.conns[0].js.PublishMsg(ctxT(t), m); err != nil {
		t.Fatal(err)
	}
	got := recvMsg(t, ch)
	if got.UUID != Digest([]byte("<odd/>")) || got.Metadata.Get(HeaderIVORN) != "ivo://a/b#1" {
		t.Errorf("message %s %v", got.UUID, got.Metadata)
	}
	got.Ack()
	sub.Close()
}

// A worker keeps the events it holds alive past the server's short
// AckWait (up to the stage's own), so a slow handler is not handed the
// same event twice; an event no worker holds comes back after the short
// one (a delivery lost in a cluster failover is not stuck for the whole
// retry schedule).
func TestStageKeepsHeldEventsAlive(t *testing.T) {
	b := openBus(t, Config{})
	sub, err := b.StageSubscriber("slow", StageOptions{Concurrency: 2, AckWait: 10 * time.Second, KeepAliveAckWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ch, err := sub.Subscribe(ctxT(t), EventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	ev := testEvent(400)
	ingest(t, b, ev, Accepted)
	m := recvMsg(t, ch)
	// Held for five times the server's AckWait: not redelivered (a second
	// slot is free, so a redelivery would be fetched and show here).
	noMsg(t, ch, 1500*time.Millisecond)
	m.Ack()
	noMsg(t, ch, 500*time.Millisecond)

	c, err := b.conns[0].js.Consumer(ctxT(t), StreamName, StageDurablePrefix+"slow")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config.AckWait; got != 300*time.Millisecond {
		t.Fatalf("server AckWait %v, want 300ms", got)
	}
}

func TestStageConsumerSettings(t *testing.T) {
	b := openBus(t, Config{})
	for _, bad := range []string{"", "a.b", "a b", "x>", strings.Repeat("x", 200)} {
		if _, err := b.StageSubscriber(bad, StageOptions{}); err == nil {
			t.Errorf("stage name %q accepted", bad)
		}
	}
	sub, err := b.StageSubscriber("s", StageOptions{AckWait: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sub.Close()
	info := func() *jetstream.ConsumerInfo {
		c, err := b.conns[0].js.Consumer(ctxT(t), StreamName, "stage-s")
		if err != nil {
			t.Fatal(err)
		}
		return c.CachedInfo()
	}
	if i := info(); i.Config.AckWait != 20*time.Second || i.Config.FilterSubject != EventsTopic ||
		i.Config.MaxAckPending != DefaultStageMaxAckPending || i.Config.MaxDeliver != -1 {
		t.Errorf("config %+v", i.Config)
	}
	// New limits update the stage's own consumer.
	sub, err = b.StageSubscriber("s", StageOptions{AckWait: 2 * time.Minute, Concurrency: 2000})
	if err != nil {
		t.Fatal(err)
	}
	sub.Close()
	// Longer than StageKeepAliveAckWait: the server gets that, and the
	// worker keeps its events alive up to the stage's own.
	if i := info(); i.Config.AckWait != StageKeepAliveAckWait || i.Config.MaxAckPending != 2000 {
		t.Errorf("not updated: %+v", i.Config)
	}
	// A consumer of that name that is not a stage's is refused.
	if _, err := b.conns[0].js.CreateConsumer(ctxT(t), StreamName, jetstream.ConsumerConfig{
		Durable: "stage-other", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "comet.event.author.>",
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.StageSubscriber("other", StageOptions{}); err == nil || !strings.Contains(err.Error(), "filter") {
		t.Errorf("foreign consumer: %v", err)
	}
}

func TestStageSubscriptionEndsWithBus(t *testing.T) {
	b := openBus(t, Config{})
	sub, err := b.StageSubscriber("x", StageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := sub.Subscribe(context.Background(), EventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("message after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscription still open after the bus closed")
	}
	sub.Close()
	if _, err := b.StageSubscriber("y", StageOptions{}); err == nil {
		t.Error("StageSubscriber on a closed bus")
	}
}

func TestDeadLetterPublisher(t *testing.T) {
	b := openBus(t, Config{})
	pub, err := b.DeadLetterPublisher()
	if err != nil {
		t.Fatal(err)
	}
	ev := testEvent(400)
	m := message.NewMessage(ev.SHA1, ev.Payload)
	m.Metadata.Set(HeaderIVORN, ev.IVORN)
	m.Metadata.Set("reason_poisoned", "line one\nline two")
	m.Metadata.Set("Nats-Expected-Stream", "NOPE") // never passed on
	for _, bad := range []string{"comet.event.x", "comet.deadletter.", "comet.deadletter.a.b", "comet.deadletter.*"} {
		if err := pub.Publish(bad, m); err == nil {
			t.Errorf("topic %q accepted", bad)
		}
	}
	subj := DeadLetterSubject("cmd-x")
	if err := pub.Publish(subj, m, m); err != nil { // the second is a duplicate
		t.Fatal(err)
	}
	if err := pub.Publish(DeadLetterSubject("other"), m); err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	dls, err := b.DeadLetters(ctxT(t), "cmd-x")
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 {
		t.Fatalf("%d dead letters for cmd-x", len(dls))
	}
	d := dls[0]
	if string(d.Payload) != string(ev.Payload) || d.Metadata.Get(HeaderIVORN) != ev.IVORN ||
		d.Metadata.Get("reason_poisoned") != "line one line two" || d.Metadata.Get(HeaderMsgID) != subj+"/"+ev.SHA1 {
		t.Errorf("dead letter %q %v", d.Payload, d.Metadata)
	}
	if all, err := b.DeadLetters(ctxT(t), ""); err != nil || len(all) != 2 {
		t.Errorf("all dead letters: %d, %v", len(all), err)
	}
	// The bus connection is still usable after the publisher's Close.
	ingest(t, b, testEvent(401), Accepted)
}

func TestDeadLetterStreamNeverRewritten(t *testing.T) {
	dir := t.TempDir()
	b := openBus(t, Config{StoreDir: dir})
	cfg := b.deadLetterConfig()
	cfg.MaxAge = time.Hour
	if _, err := b.conns[0].js.CreateStream(ctxT(t), cfg); err != nil {
		t.Fatal(err)
	}
	_, err := b.DeadLetterPublisher()
	if err == nil || !strings.Contains(err.Error(), "max_age is 1h0m0s") {
		t.Fatalf("err = %v", err)
	}
	if err := b.conns[0].js.DeleteStream(ctxT(t), DeadLetterStream); err != nil {
		t.Fatal(err)
	}
	if _, err := b.DeadLetterPublisher(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = openBus(t, Config{StoreDir: dir}) // an existing matching stream is used as it is
	if _, err := b.DeadLetterPublisher(); err != nil {
		t.Fatal(err)
	}
}
