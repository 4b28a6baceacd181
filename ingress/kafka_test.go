package ingress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/internal/kafkatest"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/kafka"
)

func openTestBus(t testing.TB) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{StoreDir: t.TempDir(), Node: "kafka-test", Logger: vtptest.Logger(t, slog.LevelWarn)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// stored returns every event on the bus, in stream order.
func stored(t *testing.T, b *bus.Bus) []bus.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []bus.Delivery
	err := b.Tap(ctx, bus.TapOptions{Seq: 1, StopWhenCaughtUp: true}, func(d *bus.Delivery) error {
		out = append(out, *d)
		return nil
	})
	if err != nil && !strings.Contains(err.Error(), "no message") {
		t.Fatal(err)
	}
	return out
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scramClient is the broker's connection to the test cluster, as
// --kafka-sasl scram-sha-512 --kafka-user --kafka-password-file make it.
func scramClient(t *testing.T, c *kafkatest.Cluster) *kafka.Client {
	t.Helper()
	cl, err := kafka.Config{
		Brokers: c.BrokerList(), SASL: kafka.SASLScramSHA512,
		User: kafkatest.User, PasswordFile: kafkatest.PasswordFile(t, kafkatest.Password),
	}.Resolve(vtptest.Logger(t, slog.LevelWarn))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// runSource runs a Kafka source until the test ends.
func runSource(t *testing.T, cl *kafka.Client, store Store, cfg KafkaConfig) *KafkaSource {
	t.Helper()
	if cfg.Group == "" {
		cfg.Group = "comet-test"
	}
	if cfg.Start == "" {
		cfg.Start = KafkaStartEarliest
	}
	cfg.SessionTimeout = cmpOr(cfg.SessionTimeout, time.Second)
	cfg.Node = "kafka-test"
	if cfg.Logger == nil {
		cfg.Logger = vtptest.Logger(t, slog.LevelInfo)
	}
	s, err := NewKafkaSource(cl, store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Kafka source did not stop")
		}
	})
	return s
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func sample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "voevents", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// numbered makes the nth distinct copy of a real event: its ivorn's local
// part gets a suffix, the rest of the bytes are the original's.
func numbered(t *testing.T, name string, n int) []byte {
	t.Helper()
	raw := sample(t, name)
	i := bytes.Index(raw, []byte(`ivorn="`))
	j := bytes.IndexByte(raw[i+7:], '"') + i + 7
	out := append([]byte(nil), raw[:j]...)
	out = append(out, fmt.Sprintf("_%d", n)...)
	return append(out, raw[j:]...)
}

// GCN's records (the XML as the value, no key, no headers, zstd batches)
// from two notice topics, subscribed by pattern, are stored byte for byte,
// in order per topic, with origin kafka and the record's place as peer;
// the heartbeat topic shows the source live.
func TestKafkaSourceStoresGCNRecordsByteExactInOrderPerTopic(t *testing.T) {
	topics := []string{"gcn.classic.voevent.FERMI_GBM_FLT_POS", "gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK"}
	c := kafkatest.Start(t, kafkatest.Options{Topics: append(topics, kafka.GCNHeartbeatTopic, "gcn.notices.other")})
	prod := c.Client()
	b := openTestBus(t)
	const n = 10
	var want [2][][]byte
	var rs []*kgo.Record
	for i := range n {
		for ti, topic := range topics {
			v := numbered(t, []string{"GRB180116A_Fermi_GBM_Flt_Pos.xml", "BAT_GRB_Pos_655721-214.xml"}[ti], i)
			want[ti] = append(want[ti], v)
			rs = append(rs, &kgo.Record{Topic: topic, Value: v})
		}
	}
	rs = append(rs, &kgo.Record{Topic: "gcn.notices.other", Value: []byte("not ours")})
	c.Produce(prod, rs...)

	src := runSource(t, scramClient(t, c), b, KafkaConfig{
		Topics: kafka.GCNVOEventTopics(), HeartbeatTopic: kafka.GCNHeartbeatTopic, HeartbeatTimeout: 5 * time.Second,
	})
	waitFor(t, 30*time.Second, "every event stored", func() bool { return src.Stats().Accepted == 2*n })
	var got [2][][]byte
	for _, d := range stored(t, b) {
		ti := 0
		if strings.Contains(d.Peer, "SWIFT") {
			ti = 1
		}
		got[ti] = append(got[ti], d.Payload)
		if d.Origin != bus.OriginKafka || !strings.HasPrefix(d.Peer, "kafka:"+topics[ti]+"/0/") || d.SHA1 != bus.Digest(d.Payload) {
			t.Fatalf("stored event: origin %q peer %q", d.Origin, d.Peer)
		}
	}
	for ti := range topics {
		if len(got[ti]) != n {
			t.Fatalf("%s: %d events stored, want %d", topics[ti], len(got[ti]), n)
		}
		for i := range n {
			if !bytes.Equal(got[ti][i], want[ti][i]) {
				t.Fatalf("%s: event %d differs from the record's value (order or bytes)", topics[ti], i)
			}
		}
	}
	if st := src.Status(); st.State != KafkaWaiting {
		t.Fatalf("state %v before any heartbeat", st.State)
	}
	c.Produce(prod, &kgo.Record{Topic: kafka.GCNHeartbeatTopic, Value: []byte(`{"alert_datetime": "2026-11-01T12:00:00.5Z"}`)})
	waitFor(t, 10*time.Second, "live", func() bool { return src.Status().State == KafkaLive })
	if st := src.Status(); !st.AlertTime.Equal(time.Date(2026, 11, 1, 12, 0, 0, 5e8, time.UTC)) {
		t.Fatalf("alert time %v", st.AlertTime)
	}
	if s := src.Stats(); s.Duplicates != 0 || len(s.Skipped) != 0 || s.Heartbeats != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// Records read again (a new group member, or after a crash before the
// commit) are previously seen: stored once, never twice; and an event
// that also came another way (VTP) is stored once.
func TestKafkaSourceReadAgainIsPreviouslySeen(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{"t"}})
	b := openTestBus(t)
	v := numbered(t, "GRB180116A_Fermi_GBM_Alert.xml", 1)
	c.Produce(c.Client(), &kgo.Record{Topic: "t", Value: v}, &kgo.Record{Topic: "t", Value: v})
	a := runSource(t, scramClient(t, c), b, KafkaConfig{Topics: []string{"t"}, Group: "g1"})
	waitFor(t, 30*time.Second, "two records", func() bool { s := a.Stats(); return s.Accepted+s.Duplicates == 2 })
	other := runSource(t, scramClient(t, c), b, KafkaConfig{Topics: []string{"t"}, Group: "g2"})
	waitFor(t, 30*time.Second, "read again", func() bool { return other.Stats().Duplicates == 2 })
	if s := a.Stats(); s.Accepted != 1 || s.Duplicates != 1 {
		t.Fatalf("first group %+v", s)
	}
	if n := len(stored(t, b)); n != 1 {
		t.Fatalf("%d events stored", n)
	}
}

// hop-client's three bodies: raw XML (0.12+) relayed byte for byte, the
// envelope's XML text byte for byte, and the xmltodict rendering (0.6 to
// 0.11, and the envelope holding it) rebuilt as XML; _test records are
// skipped unless AcceptTest. Hopskotch's SASL is SCRAM-SHA-512, as here.
func TestKafkaSourceHopskotchBodies(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{"hop.voevents"}})
	b := openTestBus(t)
	read := func(p ...string) []byte {
		v, err := os.ReadFile(filepath.Join(append([]string{"..", "testdata"}, p...)...))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	voe := []kgo.RecordHeader{{Key: "_format", Value: []byte("voevent")}, {Key: "_sender", Value: []byte("someone")},
		{Key: "_id", Value: bytes.Repeat([]byte{7}, 16)}}
	testHdr := append(append([]kgo.RecordHeader(nil), voe...), kgo.RecordHeader{Key: "_test", Value: []byte("true")})
	raw := read("voevents", "AMON_151115.xml")
	envText := []byte(fmt.Sprintf(`{"format": "voevent", "content": %q}`, read("voevents", "GRB180116A_Fermi_GBM_Gnd_Pos.xml")))
	c.Produce(c.Client(),
		&kgo.Record{Topic: "hop.voevents", Value: numbered(t, "Gaia16aac.xml", 1), Headers: testHdr},
		&kgo.Record{Topic: "hop.voevents", Value: raw, Headers: voe},
		&kgo.Record{Topic: "hop.voevents", Value: envText},
		&kgo.Record{Topic: "hop.voevents", Value: read("hop", "S190510g-1-Preliminary.json"), Headers: voe},
		&kgo.Record{Topic: "hop.voevents", Value: read("hop", "GRB180116A_Fermi_GBM_Flt_Pos.envelope.json")},
	)
	src := runSource(t, scramClient(t, c), b, KafkaConfig{Topics: []string{"hop.voevents"}})
	waitFor(t, 30*time.Second, "four events", func() bool { return src.Stats().Accepted == 4 })
	s := src.Stats()
	if s.Skipped[SkipTest] != 1 || s.Rebuilt != 2 {
		t.Fatalf("stats %+v", s)
	}
	got := stored(t, b)
	if len(got) != 4 || !bytes.Equal(got[0].Payload, raw) ||
		!bytes.Equal(got[1].Payload, read("voevents", "GRB180116A_Fermi_GBM_Gnd_Pos.xml")) {
		t.Fatalf("stored %d events; raw and envelope bytes kept: %v %v", len(got),
			len(got) > 0 && bytes.Equal(got[0].Payload, raw), len(got) > 1 && bytes.Equal(got[1].Payload, read("voevents", "GRB180116A_Fermi_GBM_Gnd_Pos.xml")))
	}
	rebuiltS190510g, _, err := kafka.Decode(read("hop", "S190510g-1-Preliminary.json"), "voevent")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[2].Payload, rebuiltS190510g) || got[2].IVORN != "ivo://gwnet/LVC#S190510g-1-Preliminary" ||
		got[3].IVORN != "ivo://nasa.gsfc.gcn/Fermi#GBM_Flt_Pos_2018-01-16T00:36:52.81_537755817_46-995" {
		t.Fatalf("rebuilt events: %q %q", got[2].IVORN, got[3].IVORN)
	}

	// With AcceptTest, the test message is relayed.
	b2 := openTestBus(t)
	src2 := runSource(t, scramClient(t, c), b2, KafkaConfig{Topics: []string{"hop.voevents"}, Group: "accept-test", AcceptTest: true})
	waitFor(t, 30*time.Second, "five events", func() bool { return src2.Stats().Accepted == 5 })
}

// Bad records of every kind are logged with their place, counted,
// committed and skipped; the good record after them is stored, and a new
// member of the group reads none of them again.
func TestKafkaSourceSkipsBadRecords(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{"gcn.classic.voevent.X"}, MaxMessageBytes: 8 << 20})
	b := openTestBus(t)
	good := sample(t, "GRB180116A_Fermi_GBM_Flt_Pos.xml")
	huge := append(append([]byte(nil), good[:len(good)-20]...), bytes.Repeat([]byte(" "), 5<<20)...)
	transport := `<?xml version="1.0"?><trn:Transport xmlns:trn="http://telescope-networks.org/schema/Transport/v1.1" role="iamalive" version="1.0"><Origin>ivo://a/b</Origin></trn:Transport>`
	bad := []struct {
		value  string
		format string
		why    KafkaSkip
	}{
		{"", "", SkipEmpty},
		{"   \n", "", SkipEmpty},
		{string(huge), "", SkipTooLarge},
		{"GRB 180116A: Fermi GBM position", "", SkipUnparsable},
		{string(good), "circular", SkipNotVOEvent},
		{`{"format":"voevent","content":"no xml"}`, "", SkipBadJSON},
		{`{"ivorn": "ivo://a/b#c", "What": {"a b": "x"}}`, "voevent", SkipBadJSON},
		{`<!DOCTYPE r [<!ENTITY e "x">]><voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" role="test" ivorn="ivo://a/b#c">&e;</voe:VOEvent>`, "", SkipDTD},
		{`<voe:VOEvent role="test" ivorn="ivo://a/b#c">`, "", SkipUnparsable},
		{transport, "", SkipNotEvent},
		{`<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" role="test" version="2.0"/>`, "", SkipNoIVORN},
		{`<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" role="test" ivorn="not an ivorn" version="2.0"/>`, "", SkipInvalidIVORN},
	}
	var rs []*kgo.Record
	for _, r := range bad {
		rec := &kgo.Record{Topic: "gcn.classic.voevent.X", Value: []byte(r.value)}
		if r.format != "" {
			rec.Headers = []kgo.RecordHeader{{Key: "_format", Value: []byte(r.format)}}
		}
		rs = append(rs, rec)
	}
	rs = append(rs, &kgo.Record{Topic: "gcn.classic.voevent.X", Value: good})
	prod := c.Client()
	for _, r := range rs {
		c.Produce(prod, r) // one batch each: the 5 MB one alone
	}
	log, buf := captureLog(t)
	src := runSource(t, scramClient(t, c), b, KafkaConfig{Topics: []string{"^gcn\\.classic\\.voevent\\."}, Logger: log})
	waitFor(t, 30*time.Second, "the good record", func() bool { return src.Stats().Accepted == 1 })
	s := src.Stats()
	want := map[KafkaSkip]uint64{}
	for _, r := range bad {
		want[r.why]++
	}
	for why, n := range want {
		if s.Skipped[why] != n {
			t.Errorf("%v: %d skipped, want %d", why, s.Skipped[why], n)
		}
	}
	if got := stored(t, b); len(got) != 1 || !bytes.Equal(got[0].Payload, good) {
		t.Fatalf("stored %d events", len(got))
	}
	// One log line per bad record, naming where it is.
	for i := range bad {
		if !strings.Contains(buf.String(), fmt.Sprintf("topic=gcn.classic.voevent.X partition=0 offset=%d ", i)) {
			t.Fatalf("no log line for offset %d:\n%s", i, buf.String())
		}
	}
	// Committed: the same group reads none of them again.
	again := runSource(t, scramClient(t, c), b, KafkaConfig{Topics: []string{"^gcn\\.classic\\.voevent\\."}})
	c.Produce(prod, &kgo.Record{Topic: "gcn.classic.voevent.X", Value: numbered(t, "GRB180116A_Fermi_GBM_Flt_Pos.xml", 2)})
	waitFor(t, 30*time.Second, "the next record", func() bool { return src.Stats().Accepted+again.Stats().Accepted == 2 })
	if s := again.Stats(); len(s.Skipped) != 0 || s.Duplicates != 0 {
		t.Fatalf("read again: %+v", s)
	}
}

func captureLog(t *testing.T) (*slog.Logger, *vtptest.SyncBuffer) {
	buf := &vtptest.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("log:\n" + buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// Two sources in one group on a four-partition topic share it: both get
// partitions, and every event is stored once.
func TestKafkaSourcesInOneGroupSharePartitions(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{"shared"}, Partitions: 4})
	b := openTestBus(t)
	one := runSource(t, scramClient(t, c), b, KafkaConfig{Topics: []string{"shared"}, Group: "pair"})
	two := runSource(t, scramClient(t, c), b, KafkaConfig{Topics: []string{"shared"}, Group: "pair"})
	time.Sleep(time.Second) // both members join before the records arrive
	const n = 80
	var rs []*kgo.Record
	for i := range n {
		rs = append(rs, &kgo.Record{Topic: "shared", Partition: int32(i % 4), Value: numbered(t, "GRB180116A_Fermi_GBM_Alert.xml", i)})
	}
	c.Produce(c.Client(), rs...)
	waitFor(t, 60*time.Second, "every event", func() bool { return len(stored(t, b)) == n })
	s1, s2 := one.Stats(), two.Stats()
	if s1.Accepted == 0 || s2.Accepted == 0 {
		t.Fatalf("one member did all the work: %d and %d", s1.Accepted, s2.Accepted)
	}
	seen := map[string]bool{}
	for _, d := range stored(t, b) {
		if seen[d.SHA1] {
			t.Fatalf("%s stored twice", d.IVORN)
		}
		seen[d.SHA1] = true
	}
	if s1.Accepted+s1.Duplicates+s2.Accepted+s2.Duplicates < n || s1.Accepted+s2.Accepted != n {
		t.Fatalf("accepted %d+%d, duplicates %d+%d", s1.Accepted, s2.Accepted, s1.Duplicates, s2.Duplicates)
	}
}

// failingStore fails while failing is set, counting the attempts.
type failingStore struct {
	Store
	failing  atomic.Bool
	attempts atomic.Int64
}

func (f *failingStore) Ingest(ctx context.Context, ev *bus.Event) (bus.Outcome, error) {
	f.attempts.Add(1)
	if f.failing.Load() {
		return 0, errors.New("bus unavailable (test)")
	}
	return f.Store.Ingest(ctx, ev)
}

// While the bus fails, a record is retried, never skipped, and its offset
// is not committed: a process that stops then (or dies) leaves it for the
// next one, which stores it. Later records of the partition wait for it.
func TestKafkaSourceCommitsOnlyStoredEvents(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{"t", "t3"}})
	b := openTestBus(t)
	first, second := numbered(t, "GRB180116A_Fermi_GBM_Alert.xml", 1), numbered(t, "GRB180116A_Fermi_GBM_Alert.xml", 2)
	c.Produce(c.Client(), &kgo.Record{Topic: "t", Value: first}, &kgo.Record{Topic: "t", Value: second})

	fs := &failingStore{Store: b}
	fs.failing.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := NewKafkaSource(scramClient(t, c), fs, KafkaConfig{Topics: []string{"t"}, Group: "g", Start: KafkaStartEarliest,
		SessionTimeout: time.Second, Logger: vtptest.Logger(t, slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.Run(ctx) })
	waitFor(t, 30*time.Second, "retries", func() bool { return fs.attempts.Load() >= 3 })
	cancel()
	wg.Wait()
	if st := s.Stats(); st.Accepted != 0 || len(st.Skipped) != 0 || st.StoreFails < 3 {
		t.Fatalf("while failing: %+v", st)
	}
	if n := len(stored(t, b)); n != 0 {
		t.Fatalf("%d stored", n)
	}

	next := runSource(t, scramClient(t, c), b, KafkaConfig{Topics: []string{"t"}, Group: "g"})
	waitFor(t, 30*time.Second, "both stored", func() bool { return next.Stats().Accepted == 2 })
	got := stored(t, b)
	if !bytes.Equal(got[0].Payload, first) || !bytes.Equal(got[1].Payload, second) {
		t.Fatal("stored out of order")
	}

	// A failure that clears is retried in place.
	fs2 := &failingStore{Store: b}
	fs2.failing.Store(true)
	third := numbered(t, "GRB180116A_Fermi_GBM_Alert.xml", 3)
	c.Produce(c.Client(), &kgo.Record{Topic: "t3", Value: third})
	retry := runSource(t, scramClient(t, c), fs2, KafkaConfig{Topics: []string{"t3"}, Group: "g3"})
	waitFor(t, 30*time.Second, "a failed attempt", func() bool { return retry.Stats().StoreFails >= 1 })
	fs2.failing.Store(false)
	waitFor(t, 30*time.Second, "stored after the failure", func() bool { return retry.Stats().Accepted == 1 })
}

// Without a heartbeat for the timeout the source is stale; the next
// heartbeat makes it live again.
func TestKafkaSourceHeartbeatStaleness(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{"t", kafka.GCNHeartbeatTopic}})
	b := openTestBus(t)
	prod := c.Client()
	src := runSource(t, scramClient(t, c), b, KafkaConfig{Topics: []string{"t"},
		HeartbeatTopic: kafka.GCNHeartbeatTopic, HeartbeatTimeout: 500 * time.Millisecond})
	waitFor(t, 10*time.Second, "stale without heartbeats", func() bool { return src.Status().State == KafkaStale })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				c.Produce(prod, &kgo.Record{Topic: kafka.GCNHeartbeatTopic,
					Value: fmt.Appendf(nil, `{"alert_datetime": %q}`, time.Now().UTC().Format(time.RFC3339Nano))})
			}
		}
	})
	waitFor(t, 10*time.Second, "live", func() bool { return src.Status().State == KafkaLive })
	close(stop)
	wg.Wait()
	waitFor(t, 10*time.Second, "stale again", func() bool { return src.Status().State == KafkaStale })
	if st := src.Status(); st.LastHeartbeat.IsZero() || st.AlertTime.IsZero() || time.Since(st.Since) > 5*time.Second {
		t.Fatalf("status %+v", st)
	}
}

// A record's XML may be in any encoding the receiver reads: the notice in
// every encoding of testdata/encodings that the receiver acks is stored
// byte for byte, and the others are skipped as unparsable.
func TestKafkaSourceReadsEveryEncoding(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{"enc"}})
	b := openTestBus(t)
	_, notices := vtptest.EncodedNotices(t, filepath.Join("..", "testdata", "encodings"))
	var rs []*kgo.Record
	want := map[string]bool{}
	refused := 0
	for _, n := range notices {
		rs = append(rs, &kgo.Record{Topic: "enc", Value: n.Data})
		if n.Comet == "ack" {
			want[bus.Digest(n.Data)] = true
		} else {
			refused++
		}
	}
	c.Produce(c.Client(), rs...)
	src := runSource(t, scramClient(t, c), b, KafkaConfig{Topics: []string{"enc"}})
	waitFor(t, 30*time.Second, "every record", func() bool {
		s := src.Stats()
		n := s.Accepted + s.Duplicates
		for _, k := range s.Skipped {
			n += k
		}
		return n == uint64(len(notices))
	})
	got := stored(t, b)
	for _, d := range got {
		if !want[d.SHA1] || d.SHA1 != bus.Digest(d.Payload) {
			t.Fatalf("stored %s, which the receiver refuses, or with other bytes", d.IVORN)
		}
	}
	if s := src.Stats(); len(got) != len(want) || s.Skipped[SkipUnparsable] != uint64(refused) {
		t.Fatalf("stored %d of %d; skipped %v, want %d unparsable", len(got), len(want), s.Skipped, refused)
	}
}
