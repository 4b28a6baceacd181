package stages

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/internal/kafkatest"
	"github.com/comet-go/comet/kafka"
)

func kafkaOut(t *testing.T, c *kafkatest.Cluster, cfg KafkaOutConfig) *KafkaOut {
	t.Helper()
	cl, err := kafka.Config{Brokers: c.BrokerList(), SASL: kafka.SASLScramSHA512, User: kafkatest.User,
		PasswordFile: kafkatest.PasswordFile(t, kafkatest.Password)}.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKafkaOut(cl, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

// readTopic reads n records of topic from its start.
func readTopic(t *testing.T, c *kafkatest.Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := c.Client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d records of %d", len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// Every accepted event is published, in the bus's order, as its exact
// bytes with hop-client's and the bus's headers.
func TestKafkaOutPublishesEveryEventWithHeaders(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{"comet.voevents"}})
	log, _ := testLog(t)
	b := openBus(t, t.TempDir(), log)
	out := kafkaOut(t, c, KafkaOutConfig{Topic: "comet.voevents", Sender: "ivo://example.org/broker", Logger: log})
	r := start(t, b, Config{Stages: []Stage{out}, Logger: log})
	var evs []*bus.Event
	for i := range 5 {
		ev := testEvent("kafka-out", i)
		ev.Author = "ivo://test.example/author"
		ingest(t, b, ev)
		evs = append(evs, ev)
	}
	recs := readTopic(t, c, "comet.voevents", len(evs))
	for i, rec := range recs {
		ev := evs[i]
		if !bytes.Equal(rec.Value, ev.Payload) || rec.Key != nil {
			t.Fatalf("record %d: value or key differs", i)
		}
		h := map[string]string{}
		for _, hd := range rec.Headers {
			h[hd.Key] = string(hd.Value)
		}
		want := map[string]string{
			"_format": "voevent", "_sender": "ivo://example.org/broker",
			"Comet-Ivorn": ev.IVORN, "Comet-Role": ev.Role, "Comet-Author": ev.Author, "Comet-Origin": "author",
			"Comet-Sha1": ev.SHA1, "Comet-Received-At": ev.ReceivedAt.UTC().Format(bus.ReceivedAtLayout),
		}
		for k, v := range want {
			if h[k] != v {
				t.Fatalf("record %d: header %s = %q, want %q", i, k, h[k], v)
			}
		}
		if id := h["_id"]; len(id) != 16 || id[6]>>4 != 5 {
			t.Fatalf("record %d: _id %x", i, id)
		}
	}
	waitFor(t, 10*time.Second, "handled", func() bool { return r.Stats()[KafkaOutName].Handled == 5 })
}

// An event the cluster refuses (here larger than the batch limit) fails,
// is retried, and is dead-lettered like any stage's; the next one is
// published.
func TestKafkaOutFailuresAreRetriedThenDeadLettered(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{"out"}})
	log, buf := testLog(t)
	b := openBus(t, t.TempDir(), log)
	out := kafkaOut(t, c, KafkaOutConfig{Topic: "out", MaxBytes: 2048, Logger: log})
	r := start(t, b, Config{Stages: []Stage{out}, MaxRetries: 2, Logger: log})
	big := testEvent("big", 0)
	big.Payload = []byte(fmt.Sprintf(`<?xml version="1.0"?><voe:VOEvent ivorn=%q role="test" version="2.0"><What>%s</What></voe:VOEvent>`,
		big.IVORN, strings.Repeat("x", 4096)))
	big.SHA1 = bus.Digest(big.Payload)
	ingest(t, b, big)
	small := testEvent("small", 1)
	ingest(t, b, small)
	waitFor(t, 20*time.Second, "dead letter", func() bool {
		s := r.Stats()[KafkaOutName]
		return s.DeadLettered == 1 && s.Handled == 1
	})
	if s := r.Stats()[KafkaOutName]; s.Failures != 3 {
		t.Fatalf("stats %+v", s)
	}
	if recs := readTopic(t, c, "out", 1); !bytes.Equal(recs[0].Value, small.Payload) {
		t.Fatal("the next event was not published")
	}
	if !strings.Contains(buf.String(), "comet.deadletter.kafka-out") {
		t.Fatal("dead letter not logged")
	}
}
