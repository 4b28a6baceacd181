package broker_test

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/stages"
	"github.com/comet-go/comet/vtp"
)

// The table and more: one real notice submitted through a real
// socket in each encoding (UTF-8 with and without BOM, US-ASCII,
// ISO-8859-1/2/15, windows-1251/1252, UTF-16 with and without BOM, UTF-32,
// Shift_JIS, EUC-JP, ISO-2022-JP, GB18030, Big5, EUC-KR, KOI8-R, EBCDIC)
// and with declarations that contradict its bytes gets Comet's verdict: ack,
// or no reply. Every acked notice reaches subscribers byte for byte, also
// through a second broker subscribed to the first (ingress subscriber), and
// a subscriber filtering on a Param value with a non-ASCII character
// receives it in every encoding.
func TestEncodedNoticesGetCometsVerdict(t *testing.T) {
	filter, notices := vtptest.EncodedNotices(t, filepath.Join(testdataDir, "encodings"))
	up := start(t, nil)
	rec := &recorder{}
	down := start(t, func(c *broker.Config) {
		c.Receive = nil
		c.Subscribe = []endpoint.Endpoint{tcp(castAddr(up))}
		c.LocalIVO = "ivo://test.broker/downstream"
		c.Stages.Stages = []stages.Stage{rec}
	})
	if !waitUntil(10*time.Second, func() bool { return len(up.Stats().Subscribers) == 1 }) {
		t.Fatal("downstream never subscribed")
	}
	all := subscribe(t, up, vtptest.Comet)
	gcn := subscribe(t, up, vtptest.Pygcn)
	filtered := subscribe(t, up, vtptest.Comet, filter)
	downAll := subscribe(t, down, vtptest.Comet)
	downFiltered := subscribe(t, down, vtptest.Comet, filter)

	var acked [][]byte
	var matching []string
	for _, n := range notices {
		m, err := vtptest.Submit(recvAddr(up), n.Data, replyTimeout)
		if err != nil {
			t.Fatalf("%s: %v", n.File, err)
		}
		switch want := n.Comet; {
		case want == "ack" && (m == nil || m.Role != vtp.RoleAck):
			t.Errorf("%s (%s): got %+v; Comet acks it", n.File, n.What, m)
		case want == "no reply" && m != nil:
			t.Errorf("%s (%s): got %s %q; Comet does not reply", n.File, n.What, m.Role, m.Result)
		case want == "ack":
			if m.Origin != n.IVORN {
				t.Errorf("%s: receipt for %q, want %q", n.File, m.Origin, n.IVORN)
			}
			acked = append(acked, n.Data)
			if n.FilterMatches {
				matching = append(matching, n.IVORN)
			}
		}
	}
	if len(acked) < 25 || len(matching) != len(acked) {
		t.Fatalf("%d acked, %d matching the filter: the table lost its point", len(acked), len(matching))
	}

	for name, s := range map[string]*vtptest.Subscriber{"subscriber": all, "pygcn subscriber": gcn, "downstream subscriber": downAll} {
		if !s.WaitEvents(len(acked), deliveryWait) {
			t.Fatalf("%s got %d of %d events", name, s.Count(), len(acked))
		}
		for i, got := range s.Events() {
			if !bytes.Equal(got, acked[i]) {
				t.Errorf("%s: event %d not byte-identical", name, i)
			}
		}
	}
	for name, s := range map[string]*vtptest.Subscriber{"filtering subscriber": filtered, "downstream filtering subscriber": downFiltered} {
		if !s.WaitEvents(len(matching), deliveryWait) {
			t.Fatalf("%s got %d of %d: %q", name, s.Count(), len(matching), s.IVORNs())
		}
		for i, ivorn := range s.IVORNs() {
			if ivorn != matching[i] {
				t.Errorf("%s: event %d is %s, want %s", name, i, ivorn, matching[i])
			}
		}
	}
	if !waitUntil(deliveryWait, func() bool { return len(rec.got()) >= len(acked) }) {
		t.Fatalf("downstream stage handled %d of %d", len(rec.got()), len(acked))
	}
	for i, p := range rec.got() {
		if !bytes.Equal(p, acked[i]) {
			t.Errorf("downstream stage: event %d not byte-identical", i)
		}
	}
}
