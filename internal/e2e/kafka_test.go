package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/comet-go/comet/internal/kafkatest"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// kafkaArgs are the --kafka options of a broker reading the test cluster
// with SCRAM-SHA-512.
func kafkaArgs(t *testing.T, c *kafkatest.Cluster, group string, topics ...string) []string {
	args := []string{"--kafka", c.Brokers(), "--kafka-sasl", "scram-sha-512", "--kafka-user", kafkatest.User,
		"--kafka-password-file", kafkatest.PasswordFile(t, kafkatest.Password), "--kafka-group", group,
		"--kafka-start", "earliest", "--kafka-session-timeout", "2s"}
	for _, tp := range topics {
		args = append(args, "--kafka-topic", tp)
	}
	return args
}

// gcnEvent is the nth distinct copy of a real GCN VOEvent.
func gcnEvent(t *testing.T, name, tag string, n int) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testdataDir, "voevents", name))
	if err != nil {
		t.Fatal(err)
	}
	return vtptest.WithIVORN(raw, fmt.Sprintf("ivo://nasa.gsfc.gcn/e2e#%s_%d", tag, n))
}

// inOrder reports whether want appears in got in this order (other events
// may come between).
func inOrder(got, want [][]byte) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && bytes.Equal(g, want[i]) {
			i++
		}
	}
	return i == len(want)
}

// GCN Kafka to VTP: records on two GCN-style topics reach a VTP
// subscriber byte for byte, in order per topic; bad records between them
// (a 5 MB value, a DTD, not XML) are skipped and the next good one is
// delivered; an event also submitted over VTP is delivered once, either
// way round.
func TestKafkaToVTPSubscriber(t *testing.T) {
	topics := []string{"gcn.classic.voevent.FERMI_GBM_FLT_POS", "gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK"}
	c := kafkatest.Start(t, kafkatest.Options{Topics: topics, MaxMessageBytes: 8 << 20})
	p := newPorts(t)
	startComet(t, t.TempDir(), p, kafkaArgs(t, c, "e2e", `^gcn\.classic\.voevent\.`)...)
	sub := dial(t, p.castAddr())

	prod := c.Client()
	const n = 8
	var want [2][][]byte
	for i := range n {
		for ti, topic := range topics {
			ev := gcnEvent(t, []string{"GRB180116A_Fermi_GBM_Flt_Pos.xml", "BAT_GRB_Pos_655721-214.xml"}[ti], topic[len("gcn.classic.voevent."):], i)
			want[ti] = append(want[ti], ev)
			c.Produce(prod, &kgo.Record{Topic: topic, Value: ev})
		}
		if i == n/2 {
			c.Produce(prod,
				&kgo.Record{Topic: topics[0], Value: bytes.Repeat([]byte("<"), 5<<20)},
				&kgo.Record{Topic: topics[0], Value: []byte(`<!DOCTYPE x [<!ENTITY e "e">]><voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" role="test" ivorn="ivo://a/b#dtd">&e;</voe:VOEvent>`)},
				&kgo.Record{Topic: topics[1], Value: []byte("GRB 180116A: not XML")})
		}
	}
	if !sub.WaitEvents(2*n, wait) {
		t.Fatalf("subscriber got %d events of %d", sub.Count(), 2*n)
	}
	got := sub.Events()
	for ti := range topics {
		if !inOrder(got, want[ti]) {
			t.Fatalf("%s: events missing, changed or out of order", topics[ti])
		}
	}

	// Kafka first, then VTP: refused as previously seen.
	if m := submit(t, p.recvAddr(), want[0][0]); m.Role != vtp.RoleNak || !strings.Contains(m.Result, "Previously seen") {
		t.Fatalf("VTP submission of a Kafka event: %+v", m)
	}
	// VTP first, then Kafka: delivered once.
	both := gcnEvent(t, "GRB180116A_Fermi_GBM_Flt_Pos.xml", "both", 0)
	if m := submit(t, p.recvAddr(), both); m.Role != vtp.RoleAck {
		t.Fatalf("submission: %+v", m)
	}
	last := gcnEvent(t, "GRB180116A_Fermi_GBM_Flt_Pos.xml", "last", 0)
	c.Produce(prod, &kgo.Record{Topic: topics[0], Value: both}, &kgo.Record{Topic: topics[0], Value: last})
	if !sub.WaitFor(wait, func(s *vtptest.Subscriber) bool { return inOrder(s.Events(), [][]byte{last}) }) {
		t.Fatal("the record after the duplicate was not delivered")
	}
	time.Sleep(200 * time.Millisecond)
	count := 0
	for _, e := range sub.Events() {
		if bytes.Equal(e, both) {
			count++
		}
	}
	if count != 1 || sub.Count() != 2*n+2 {
		t.Fatalf("event sent both ways delivered %d times; %d events in all", count, sub.Count())
	}
}

// SIGKILL between store and commit: the cluster leaves every offset
// commit unanswered, so the broker stores and broadcasts the events but
// never commits. Killed and restarted, it reads them again and finds
// them previously seen: nothing is broadcast twice, and the events
// produced while it was down are not lost.
func TestKafkaSIGKILLBetweenStoreAndCommit(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{"gcn.classic.voevent.X"}})
	var blockCommits atomic.Bool
	blockCommits.Store(true)
	c.ControlKey(int16(kmsg.OffsetCommit), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if blockCommits.Load() {
			return nil, nil, true // no answer: the commit hangs
		}
		return nil, nil, false
	})
	db, p := t.TempDir(), newPorts(t)
	args := append(kafkaArgs(t, c, "crash", "gcn.classic.voevent.X"), "-v")
	b := startComet(t, db, p, args...)
	sub := dial(t, p.castAddr())
	prod := c.Client()
	ev := func(tag string, i int) []byte { return gcnEvent(t, "GRB180116A_Fermi_GBM_Alert.xml", tag, i) }
	const n = 5
	var rs []*kgo.Record // one batch, so that one poll takes them all before the commit hangs
	for i := range n {
		rs = append(rs, &kgo.Record{Topic: "gcn.classic.voevent.X", Value: ev("before", i)})
	}
	c.Produce(prod, rs...)
	if !sub.WaitEvents(n, wait) {
		t.Fatalf("got %d of %d before the crash", sub.Count(), n)
	}
	time.Sleep(time.Second) // the broadcaster acks them on the bus
	b.kill(t)
	sub.Close()

	for i := range n {
		c.Produce(prod, &kgo.Record{Topic: "gcn.classic.voevent.X", Value: ev("down", i)})
	}
	blockCommits.Store(false)
	b = startComet(t, db, p, args...)
	sub2 := dial(t, p.castAddr())
	for i := range n {
		c.Produce(prod, &kgo.Record{Topic: "gcn.classic.voevent.X", Value: ev("after", i)})
	}
	if !sub2.WaitEvents(2*n, wait) {
		t.Fatalf("got %d of %d after the restart", sub2.Count(), 2*n)
	}
	time.Sleep(500 * time.Millisecond)
	var want [][]byte
	for i := range n {
		want = append(want, ev("down", i))
	}
	for i := range n {
		want = append(want, ev("after", i))
	}
	if got := sub2.Events(); len(got) != 2*n || !inOrder(got, want) {
		t.Fatalf("after the restart: %d events (want the %d produced since the crash, in order)", len(got), 2*n)
	}
	// The uncommitted events were read again and found previously seen.
	b.waitLog(t, "event from Kafka previously seen", n)
}

// Two ingress processes in one consumer group on a four-partition topic,
// on one bus: both take partitions, and every event is stored, and
// broadcast, once.
func TestKafkaTwoIngressProcessesInOneGroup(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{"gcn.classic.voevent.Y"}, Partitions: 4})
	natsPort := freePort(t)
	p := newPorts(t)
	first := startComet(t, t.TempDir(), p, append(kafkaArgs(t, c, "pair", "gcn.classic.voevent.Y"),
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort))...)
	first.waitLog(t, "broker started", 1) // its bus is up for the second
	second := launch(t, "second", append(kafkaArgs(t, c, "pair", "gcn.classic.voevent.Y"),
		"--nats", fmt.Sprintf("nats://127.0.0.1:%d", natsPort), "--node", "second")...)
	// In a cooperative rebalance the second member is given partitions
	// only once the first has revoked them: both consume from here on.
	second.waitLog(t, "kafka partitions assigned", 1)
	first.waitLog(t, "kafka partitions revoked", 1)
	sub := dial(t, p.castAddr())
	prod := c.Client()
	const n = 80
	var rs []*kgo.Record
	for i := range n {
		rs = append(rs, &kgo.Record{Topic: "gcn.classic.voevent.Y", Partition: int32(i % 4), Value: gcnEvent(t, "GRB180116A_Fermi_GBM_Alert.xml", "pair", i)})
	}
	c.Produce(prod, rs...)
	if !sub.WaitEvents(n, wait) {
		t.Fatalf("got %d of %d", sub.Count(), n)
	}
	time.Sleep(500 * time.Millisecond)
	seen := map[string]int{}
	for _, e := range sub.Events() {
		seen[sha1hex(e)]++
	}
	if len(seen) != n || sub.Count() != n {
		t.Fatalf("%d distinct events, %d deliveries, want %d of each", len(seen), sub.Count(), n)
	}
	a, b := strings.Count(first.out.String(), "event accepted from Kafka"), strings.Count(second.out.String(), "event accepted from Kafka")
	if a == 0 || b == 0 || a+b != n {
		t.Fatalf("accepted by the first %d, by the second %d", a, b)
	}
}

// GCN's authentication: TLS and OAUTHBEARER with client-credentials
// tokens. The right secret reads the topic; a wrong one is a start-up
// error in one line, exit status 2.
func TestKafkaOAuthBearerProcess(t *testing.T) {
	oidc := kafkatest.StartOIDC(t, "gcn-client", "right-secret", time.Minute)
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{"gcn.classic.voevent.Z"}, TLS: true, OIDC: oidc})
	oauth := func(secret string) []string {
		return []string{"--kafka", c.Brokers(), "--kafka-sasl", "oauthbearer", "--kafka-client-id", "gcn-client",
			"--kafka-client-secret-file", kafkatest.PasswordFile(t, secret), "--kafka-token-url", oidc.URL,
			"--kafka-tls-ca", c.CAFile(), "--kafka-topic", "gcn.classic.voevent.Z", "--kafka-start", "earliest"}
	}
	out, code := runCmd(t, "comet", nil, append(oauth("wrong-secret"), "--broadcast", "tcp:0:interface=127.0.0.1",
		"--local-ivo", localIVO, "--eventdb", t.TempDir())...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if code != 2 || !strings.Contains(last, "Kafka authentication refused") || !strings.Contains(last, "invalid_client") ||
		strings.Contains(out, "wrong-secret") {
		t.Fatalf("exit %d:\n%s", code, out)
	}

	p := newPorts(t)
	startComet(t, t.TempDir(), p, oauth("right-secret")...)
	sub := dial(t, p.castAddr())
	ev := gcnEvent(t, "GRB180116A_Fermi_GBM_Flt_Pos.xml", "oauth", 0)
	c.Produce(c.Client(), &kgo.Record{Topic: "gcn.classic.voevent.Z", Value: ev})
	if !sub.WaitEvents(1, wait) || !bytes.Equal(sub.Events()[0], ev) {
		t.Fatal("event not delivered")
	}
	if tk := c.Tokens(); len(tk) == 0 || !tk[len(tk)-1].Valid {
		t.Fatalf("tokens presented: %+v", tk)
	}
}

// Kafka out: every event the broker accepts is published byte for byte
// with its headers; with the cluster stopped for 10 s, the events
// accepted meanwhile are published once it is back.
func TestKafkaOutProcess(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{"comet.voevents"}, DataDir: t.TempDir()})
	p := newPorts(t)
	startComet(t, t.TempDir(), p, "--kafka-out", c.Brokers(), "--kafka-out-topic", "comet.voevents",
		"--kafka-out-sasl", "scram-sha-512", "--kafka-out-user", kafkatest.User,
		"--kafka-out-password-file", kafkatest.PasswordFile(t, kafkatest.Password))
	var sent [][]byte
	send := func(tag string, n int) {
		for i := range n {
			ev := gcnEvent(t, "GRB180116A_Fermi_GBM_Flt_Pos.xml", tag, i)
			if m := submit(t, p.recvAddr(), ev); m.Role != vtp.RoleAck {
				t.Fatalf("submission: %+v", m)
			}
			sent = append(sent, ev)
		}
	}
	send("up", 3)
	recs := readKafka(t, c, "comet.voevents", 3)
	for i, r := range recs {
		h := map[string]string{}
		for _, hd := range r.Headers {
			h[hd.Key] = string(hd.Value)
		}
		if !bytes.Equal(r.Value, sent[i]) || h["_format"] != "voevent" || h["_sender"] != localIVO ||
			h["Comet-Sha1"] != sha1hex(sent[i]) || h["Comet-Origin"] != "author" || h["Comet-Role"] != "observation" ||
			h["Comet-Ivorn"] == "" || h["Comet-Author"] != "ivo://nasa.gsfc.tan/gcn" || h["Comet-Received-At"] == "" || len(h["_id"]) != 16 {
			t.Fatalf("record %d: same bytes %v, headers %q", i, bytes.Equal(r.Value, sent[i]), h)
		}
	}

	c.Stop()
	send("down", 3)
	time.Sleep(10 * time.Second)
	c.Restart()
	send("back", 2)
	recs = readKafka(t, c, "comet.voevents", len(sent))
	if len(recs) != len(sent) {
		t.Fatalf("%d records, %d events", len(recs), len(sent))
	}
	for i := range sent {
		if !bytes.Equal(recs[i].Value, sent[i]) {
			t.Fatalf("record %d differs from event %d (lost, duplicated or reordered)", i, i)
		}
	}
}

// readKafka reads at least n records of topic from its start, and whatever
// else arrives within a moment.
func readKafka(t *testing.T, c *kafkatest.Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := c.Client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		out = append(out, cl.PollFetches(ctx).Records()...)
	}
	if len(out) < n {
		t.Fatalf("read %d records of %d", len(out), n)
	}
	more, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	return append(out, cl.PollFetches(more).Records()...)
}
