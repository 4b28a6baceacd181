package stages

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/kafka"
)

// KafkaOutName is the stage name of --kafka-out: its bus consumer is
// stage-kafka-out, its dead letters go to comet.deadletter.kafka-out.
const KafkaOutName = "kafka-out"

// Defaults for KafkaOutConfig fields left zero.
const (
	// DefaultKafkaOutTimeout bounds one attempt to publish an event: the
	// cluster's acknowledgement from every in-sync replica included.
	// A failed attempt is retried like any stage's (--stage-retries),
	// then the event is dead-lettered.
	DefaultKafkaOutTimeout = 30 * time.Second
	// DefaultKafkaOutConcurrency is how many events are published at
	// once. With 1 the topic gets the events in the bus's order.
	DefaultKafkaOutConcurrency = 1
	// DefaultKafkaOutMaxBytes is the largest record batch sent (Kafka's
	// default message.max.bytes); a larger event fails and is
	// dead-lettered.
	DefaultKafkaOutMaxBytes = 1 << 20
)

// KafkaOutConfig configures the Kafka output stage.
type KafkaOutConfig struct {
	Topic       string
	Sender      string        // the _sender header: this broker's IVOA identifier or node
	Timeout     time.Duration // 0 = DefaultKafkaOutTimeout
	Concurrency int           // 0 = DefaultKafkaOutConcurrency
	MaxBytes    int           // 0 = DefaultKafkaOutMaxBytes
	Logger      *slog.Logger
}

// KafkaOut is the --kafka-out stage: it publishes every accepted event to
// a Kafka topic as a record whose value is the event's exact bytes, with
// no key, zstd-compressed, through an idempotent producer that waits for
// every in-sync replica. Its headers (docs/kafka.md §4) are hop-client's
// _format (voevent), _id and _sender, so hop-client readers take it as a
// VOEvent, and the bus's Comet-Ivorn, Comet-Role, Comet-Author,
// Comet-Origin, Comet-Received-At and Comet-Sha1. A redelivered event
// (after a crash or a failed acknowledgement) may be published again
// with the same _id and Comet-Sha1, by which readers can drop it.
type KafkaOut struct {
	cfg    KafkaOutConfig
	client *kgo.Client
	log    *slog.Logger
}

// NewKafkaOut makes the stage's producer for the cluster of cl. Close it
// after the runner.
func NewKafkaOut(cl *kafka.Client, cfg KafkaOutConfig) (*KafkaOut, error) {
	if cfg.Topic == "" {
		return nil, errors.New("kafka-out: no topic")
	}
	if cfg.Timeout < 0 || cfg.Concurrency < 0 || cfg.MaxBytes < 0 {
		return nil, errors.New("kafka-out: negative limit")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultKafkaOutTimeout
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultKafkaOutConcurrency
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultKafkaOutMaxBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	k, err := kgo.NewClient(cl.Options(
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.ZstdCompression(), kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxBytes)),
		kgo.RecordDeliveryTimeout(cfg.Timeout),
		kgo.ProducerLinger(0),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka-out: %w", err)
	}
	return &KafkaOut{cfg: cfg, client: k, log: cfg.Logger.With("stage", KafkaOutName, "topic", cfg.Topic)}, nil
}

// Name is KafkaOutName.
func (*KafkaOut) Name() string { return KafkaOutName }

// Concurrency is the configured concurrency.
func (k *KafkaOut) Concurrency() int { return k.cfg.Concurrency }

// AttemptTimeout is the configured timeout.
func (k *KafkaOut) AttemptTimeout() time.Duration { return k.cfg.Timeout }

// Handle publishes ev and waits for the cluster's acknowledgement.
func (k *KafkaOut) Handle(ctx context.Context, ev *bus.Event) error {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.Timeout)
	defer cancel()
	r := KafkaRecord(ev, k.cfg.Sender)
	r.Topic = k.cfg.Topic
	res := k.client.ProduceSync(ctx, r)
	if err := res.FirstErr(); err != nil {
		return fmt.Errorf("publishing to Kafka topic %s: %w", k.cfg.Topic, err)
	}
	rec, _ := res.First()
	k.log.Debug("event published to Kafka", "ivorn", ev.IVORN, "partition", rec.Partition, "offset", rec.Offset)
	return nil
}

// Close flushes nothing (every Handle waited for its record) and closes
// the producer.
func (k *KafkaOut) Close() { k.client.Close() }

// KafkaRecord is the record of ev: its bytes and headers (see KafkaOut).
func KafkaRecord(ev *bus.Event, sender string) *kgo.Record {
	h := []kgo.RecordHeader{
		{Key: kafka.HeaderFormat, Value: []byte(kafka.FormatVOEvent)},
		{Key: kafka.HeaderID, Value: eventUUID(ev.SHA1)},
	}
	if sender != "" {
		h = append(h, kgo.RecordHeader{Key: kafka.HeaderSender, Value: []byte(sender)})
	}
	add := func(k, v string) {
		if v != "" {
			h = append(h, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	add(bus.HeaderIVORN, ev.IVORN)
	add(bus.HeaderRole, ev.Role)
	add(bus.HeaderAuthor, ev.Author)
	add(bus.HeaderOrigin, ev.Origin)
	if !ev.ReceivedAt.IsZero() {
		add(bus.HeaderReceivedAt, ev.ReceivedAt.UTC().Format(bus.ReceivedAtLayout))
	}
	add(bus.HeaderSHA1, ev.SHA1)
	return &kgo.Record{Value: ev.Payload, Headers: h}
}

// eventUUID is the _id of an event: a name-based (version 5 layout) UUID
// made of the first 16 bytes of the SHA-1 of "comet-go:" and the event's
// SHA-1, so a republished event keeps its _id.
func eventUUID(sha string) []byte {
	raw, err := hex.DecodeString(sha)
	if err != nil {
		raw = []byte(sha)
	}
	sum := sha1.Sum(append([]byte("comet-go:"), raw...))
	id := sum[:16]
	id[6] = id[6]&0x0f | 0x50
	id[8] = id[8]&0x3f | 0x80
	return id
}
