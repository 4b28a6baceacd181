package bus

import (
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// The reads behind metrics and the status page: Ping, the streams' sizes,
// a stage's lag and the last events stored, newest first, without their
// payloads.
func TestObservingTheBus(t *testing.T) {
	b := openBus(t, Config{})
	if err := b.Ping(ctxT(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if got, err := b.Recent(ctxT(t), 50); err != nil || len(got) != 0 {
		t.Fatalf("Recent on an empty stream = %v, %v", got, err)
	}
	var evs []*Event
	for i := range 5 {
		ev := testEvent(500 + i)
		ev.Author = "ivo://test.example/author"
		ingest(t, b, ev, Accepted)
		evs = append(evs, ev)
	}
	if _, err := b.StageSubscriber("lagging", StageOptions{}); err != nil {
		t.Fatal(err)
	}
	ingest(t, b, testEvent(505), Accepted)
	// The server tells its consumers of a stored message on its own
	// goroutine: the count can lag the publisher's ack for a moment.
	waitUntil(5*time.Second, func() bool { n, _ := b.StagePending(ctxT(t), "lagging"); return n >= 6 })
	if n, err := b.StagePending(ctxT(t), "lagging"); err != nil || n != 6 {
		t.Errorf("StagePending = %d, %v; want the 6 events stored since the bus opened", n, err)
	}
	recent, err := b.Recent(ctxT(t), 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 3 || recent[0].IVORN != testEvent(505).IVORN || recent[2].IVORN != evs[3].IVORN {
		t.Fatalf("Recent(3) = %+v", recent)
	}
	r := recent[1]
	if r.Author != evs[4].Author || r.Origin != OriginAuthor || r.Role != "test" || r.Payload != nil ||
		r.Size != len(evs[4].Payload) || r.Seq != 5 || time.Since(r.Stored) > time.Minute {
		t.Errorf("Recent event %+v", r)
	}
	streams, err := b.Streams(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	// The previously-seen records are on the event stream (no bucket).
	if len(streams) < 1 || streams[0].Name != StreamName || streams[0].Messages != 6 || streams[0].Bytes == 0 ||
		streams[0].Consumers != 1 {
		t.Errorf("Streams = %+v", streams)
	}
	if st, ok := b.Server(); !ok || st.StoreBytes == 0 || st.StoreMaxBytes <= 0 {
		t.Errorf("Server = %+v, %v", st, ok)
	}
}

// A dead letter replayed goes to its stage's replay subscriber once, and
// leaves the dead-letter stream: a second Replay finds nothing. A replay
// that fails again is dead-lettered again, within the duplicate window.
func TestReplayHandsDeadLettersBackOnce(t *testing.T) {
	b := openBus(t, Config{})
	pub, err := b.DeadLetterPublisher()
	if err != nil {
		t.Fatal(err)
	}
	deadLetter := func(stage string, ev *Event) {
		t.Helper()
		m := message.NewMessage(ev.SHA1, ev.Payload)
		m.Metadata.Set(HeaderSHA1, ev.SHA1)
		m.Metadata.Set(HeaderIVORN, ev.IVORN)
		m.Metadata.Set(reasonPoisoned, "exit status 3")
		if err := pub.Publish(DeadLetterSubject(stage), m); err != nil {
			t.Fatal(err)
		}
	}
	ev1, ev2 := testEvent(600), testEvent(601)
	deadLetter("cmd-a", ev1)
	deadLetter("cmd-b", ev2)
	counts, err := b.DeadLetterCounts(ctxT(t))
	if err != nil || counts["cmd-a"] != 1 || counts["cmd-b"] != 1 || len(counts) != 2 {
		t.Fatalf("DeadLetterCounts = %v, %v", counts, err)
	}
	dls, err := b.DeadLetters(ctxT(t), "cmd-a")
	if err != nil || len(dls) != 1 {
		t.Fatalf("DeadLetters = %v, %v", dls, err)
	}
	d := dls[0]
	if d.Stage != "cmd-a" || d.Reason != "exit status 3" || d.Seq != 1 || d.Event().IVORN != ev1.IVORN ||
		time.Since(d.Time) > time.Minute {
		t.Errorf("dead letter %+v", d)
	}
	sub, err := b.ReplaySubscriber("cmd-a", StageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(ctxT(t), EventsTopic); err == nil {
		t.Error("the replay subscriber took the events topic")
	}
	ch, err := sub.Subscribe(ctxT(t), ReplaySubject("cmd-a"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := b.Replay(ctxT(t), dls); err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	m := recvMsg(t, ch)
	if got := MessageEvent(m); got.SHA1 != ev1.SHA1 || got.IVORN != ev1.IVORN || string(got.Payload) != string(ev1.Payload) ||
		!strings.HasPrefix(m.UUID, ev1.SHA1+"/replay-") || m.Metadata.Get(reasonPoisoned) != "" {
		t.Errorf("replayed %s %+v", m.UUID, got)
	}
	// It fails again: dead-lettered again under the replay's UUID.
	again := message.NewMessage(m.UUID, m.Payload)
	again.Metadata = m.Metadata
	if err := pub.Publish(DeadLetterSubject("cmd-a"), again); err != nil {
		t.Fatal(err)
	}
	m.Ack()
	if left, _ := b.DeadLetters(ctxT(t), "cmd-a"); len(left) != 1 || left[0].Seq == d.Seq {
		t.Errorf("after the replay failed again, dead letters of cmd-a: %+v", left)
	}
	if other, _ := b.DeadLetters(ctxT(t), "cmd-b"); len(other) != 1 {
		t.Errorf("cmd-b's dead letter was touched: %+v", other)
	}
	// The first dead letter is gone: replaying the old list again moves
	// nothing.
	if n, err := b.Replay(ctxT(t), dls); err != nil || n != 0 {
		t.Fatalf("second Replay = %d, %v", n, err)
	}
	noMsg(t, ch, 300*time.Millisecond)
	sub.Close()
}
