package bus

import (
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A store written by the two-write layout (events on the stream for 7
// days, previously-seen records in the bucket comet_seen for 30) is
// upgraded by the first Open: the stream gets the record-keeping
// retention, the records whose event is gone move onto the stream, and
// the bucket is deleted. Every payload seen before is still refused.
func TestMigrateTwoWriteStore(t *testing.T) {
	url := startServer(t, 2<<20).ClientURL()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := ctxT(t)
	old := jetstream.StreamConfig{ // as the two-write layout provisioned it
		Name: StreamName, Subjects: []string{SubjectPrefix + ">"}, Retention: jetstream.LimitsPolicy,
		Discard: jetstream.DiscardOld, Storage: jetstream.FileStorage, MaxAge: DefaultStreamMaxAge,
		MaxBytes: DefaultMaxStore - 2*(DefaultMaxStore/StageShare), MaxMsgs: -1, MaxMsgsPerSubject: -1,
		MaxMsgSize: int32(DefaultMaxPayload + HeaderRoom), Duplicates: DefaultDupWindow, Replicas: 1,
	}
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: SeenBucket, History: 1, TTL: DefaultSeenTTL})
	if err != nil {
		t.Fatal(err)
	}
	value := func(age time.Duration) []byte {
		at := time.Now().Add(-age)
		return []byte(strconv.FormatInt(at.Unix(), 10) + "." + strconv.Itoa(1_000_000 + at.Nanosecond()/1000)[1:])
	}
	stored, forgotten, claim, expired := testEvent(400), testEvent(401), testEvent(402), testEvent(403)
	for _, ev := range []*Event{stored, forgotten, claim, expired} {
		ev.SHA1 = Digest(ev.Payload)
	}
	// stored: its event is on the stream (published the old way).
	m := nats.NewMsg(Subject(OriginAuthor, "test", "test.example", stored.SHA1))
	m.Data = stored.Payload
	m.Header.Set(HeaderMsgID, stored.SHA1)
	m.Header.Set(HeaderSHA1, stored.SHA1)
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	for ev, age := range map[*Event]time.Duration{
		stored:    time.Hour,
		forgotten: 10 * 24 * time.Hour, // event expired from the stream, record kept
		claim:     10 * time.Second,    // a claim whose publish died with its process
		expired:   31 * 24 * time.Hour,
	} {
		if _, err := kv.Create(ctx, ev.SHA1, value(age)); err != nil {
			t.Fatal(err)
		}
	}

	b := openBus(t, Config{URL: url})
	if _, err := js.KeyValue(ctx, SeenBucket); err != jetstream.ErrBucketNotFound {
		t.Fatalf("bucket after migration: %v", err)
	}
	cfg := b.stream.CachedInfo().Config
	if cfg.SubjectDeleteMarkerTTL != DefaultSeenTTL-DefaultStreamMaxAge || cfg.MaxAge != DefaultSeenTTL {
		t.Fatalf("stream not upgraded: %+v", cfg)
	}
	rec, err := b.stream.GetLastMsgForSubject(ctx, seenSubject(forgotten.SHA1))
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Data) != 0 || rec.Subject != SubjectPrefix+"_._._."+forgotten.SHA1 {
		t.Fatalf("migrated record %s with %d bytes", rec.Subject, len(rec.Data))
	}
	if ttl, _ := strconv.Atoi(rec.Header.Get(jetstream.MsgTTLHeader)); ttl < 19*24*3600 || ttl > 20*24*3600+60 {
		t.Errorf("migrated record's TTL %q, want what was left of 30 days", rec.Header.Get(jetstream.MsgTTLHeader))
	}
	ingest(t, b, stored, Duplicate)
	ingest(t, b, forgotten, Duplicate)
	ingest(t, b, claim, Accepted)
	ingest(t, b, expired, Accepted)

	// Opening again finds nothing left to do.
	again := openBus(t, Config{URL: url})
	ingest(t, again, forgotten, Duplicate)
}
