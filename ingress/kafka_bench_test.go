package ingress

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/internal/kafkatest"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/kafka"
)

// countingStore counts the events stored through it; with null set it
// stores nothing and calls every event new (the ceiling of what feeds it).
type countingStore struct {
	Store
	null     bool
	accepted atomic.Int64
}

func (c *countingStore) Ingest(ctx context.Context, ev *bus.Event) (bus.Outcome, error) {
	if c.null {
		c.accepted.Add(1)
		return bus.Accepted, nil
	}
	out, err := c.Store.Ingest(ctx, ev)
	if err == nil && out == bus.Accepted {
		c.accepted.Add(1)
	}
	return out, err
}

func benchPayloads(b *testing.B, tag string) [][]byte {
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "bench", "gbm_flt_pos_v20.xml"))
	if err != nil {
		b.Fatal(err)
	}
	run := time.Now().UnixNano()
	out := make([][]byte, b.N)
	for i := range out {
		out[i] = vtptest.WithIVORN(raw, fmt.Sprintf("ivo://bench.gcn/%s#%d-%d", tag, run, i))
	}
	return out
}

// BenchmarkRelayIntoBus measures events per second stored on the durable
// embedded bus by one ingress, for the same events (the 5,733-byte Fermi
// GBM benchmark notice, unique ivorns): read from a one-partition Kafka
// topic (kfake on loopback, SCRAM-SHA-512, zstd batches) by the Kafka
// source ("kafka"); sent over one VTP connection by an upstream broker to
// a subscription ("vtp-upstream"); and read by the Kafka source into a
// store that keeps nothing ("kafka-null-store", the ceiling of the Kafka
// side: fetch, decompress, decode, parse, commit). Each op is one event;
// the events are on the topic, or ready to send, before the timer starts.
func BenchmarkRelayIntoBus(b *testing.B) {
	b.Run("kafka", func(b *testing.B) { benchKafka(b, false) })
	b.Run("vtp-upstream", benchVTPUpstream)
	b.Run("kafka-null-store", func(b *testing.B) { benchKafka(b, true) })
}

func benchKafka(b *testing.B, null bool) {
	c := kafkatest.Start(b, kafkatest.Options{Topics: []string{"gcn.classic.voevent.BENCH"}})
	prod := c.Client(kgo.ProducerBatchMaxBytes(1 << 20))
	var rs []*kgo.Record
	for _, p := range benchPayloads(b, "kafka") {
		rs = append(rs, &kgo.Record{Topic: "gcn.classic.voevent.BENCH", Value: p})
	}
	c.Produce(prod, rs...)
	store := &countingStore{null: null}
	if !null {
		store.Store = openTestBus(b)
	}
	cl, err := kafka.Config{Brokers: c.BrokerList(), SASL: kafka.SASLScramSHA512, User: kafkatest.User,
		PasswordFile: kafkatest.PasswordFile(b, kafkatest.Password)}.Resolve(nil)
	if err != nil {
		b.Fatal(err)
	}
	src, err := NewKafkaSource(cl, store, KafkaConfig{Topics: []string{"gcn.classic.voevent.BENCH"}, Group: "bench",
		Start: KafkaStartEarliest, Logger: vtptest.Logger(b, slog.LevelWarn)})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(rs[0].Value)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.ResetTimer()
	go func() { src.Run(ctx); close(done) }()
	waitStored(b, &store.accepted)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	cancel()
	<-done
}

func benchVTPUpstream(b *testing.B) {
	up, err := vtptest.StartUpstream(vtptest.GCNUpstream)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(up.Close)
	store := &countingStore{Store: openTestBus(b)}
	ep, err := endpoint.ParseClient(up.Addr(), 8099)
	if err != nil {
		b.Fatal(err)
	}
	sub, err := NewSubscription(ep, store, SubscriberConfig{LocalIVO: "ivo://bench/broker", Node: "bench",
		Logger: vtptest.Logger(b, slog.LevelWarn)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sub.Run(ctx); close(done) }()
	if !up.WaitFor(10*time.Second, func(u *vtptest.Upstream) bool { return u.Connected() == 1 }) {
		b.Fatal("the subscription did not connect")
	}
	payloads := benchPayloads(b, "vtp")
	b.SetBytes(int64(len(payloads[0])))
	b.ResetTimer()
	go func() {
		for _, p := range payloads {
			up.Send(p)
		}
	}()
	waitStored(b, &store.accepted)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	cancel()
	up.Close()
	<-done
}

func waitStored(b *testing.B, n *atomic.Int64) {
	deadline := time.Now().Add(5 * time.Minute)
	for n.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("stored %d of %d", n.Load(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
}
