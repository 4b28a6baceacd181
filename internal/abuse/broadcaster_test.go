package abuse

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/comet-go/comet/egress"
	"github.com/comet-go/comet/filter"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// dialSubscriber opens a raw subscriber connection and waits until the
// broker has registered it.
func (h *harness) dialSubscriber() net.Conn {
	h.t.Helper()
	c := dialFrom(h.t, "", h.cast())
	if !waitUntil(5*time.Second, func() bool { return h.stats(c.LocalAddr().String()) != nil }) {
		h.t.Fatalf("subscriber %s not registered", c.LocalAddr())
	}
	return c
}

// dropped waits until the broker has dropped the subscriber at peer.
func (h *harness) dropped(peer string, d time.Duration) bool {
	return waitUntil(d, func() bool { return h.stats(peer) == nil })
}

// A subscriber that never reads is dropped once its bounded queue fills
// (or its writes time out, or too many events are unacknowledged) while
// the others receive every event; its queue never holds more than
// QueueLen frames and the broker's memory stays bounded.
func TestSubscriberThatNeverReads(t *testing.T) {
	const queueLen = 64
	h := start(t, func(c *broker.Config) { c.Broadcaster.QueueLen = queueLen; c.Broadcaster.WriteTimeout = time.Second })
	submit := func(tag string) {
		var wg sync.WaitGroup
		for range 8 {
			ev, iv := goodEvent(tag)
			wg.Go(func() {
				if m, err := vtptest.Submit(h.recv(), ev, healthyWait); err != nil || m == nil || m.Role != vtp.RoleAck {
					t.Errorf("submission %s: %+v %v", iv, m, err)
				}
			})
		}
		wg.Wait()
	}
	// Warm up first, so what the bus and the connections allocate once
	// (the store's block buffers, client buffers) is in the baseline.
	for range 32 {
		submit("warm-up")
	}
	if !h.sub.WaitEvents(32*8, 10*time.Second) {
		t.Fatalf("warm-up: the reading subscriber got %d of %d events", h.sub.Count(), 32*8)
	}

	c := h.dialSubscriber()
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	peer := c.LocalAddr().String()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	heldBefore := h.heldByTest()
	events, maxQueued := 0, 0
	for events < 3000 {
		st := h.stats(peer)
		if st == nil {
			break
		}
		maxQueued = max(maxQueued, st.Queued)
		submit("unread")
		events += 8
	}
	if !h.dropped(peer, 5*time.Second) {
		t.Fatalf("a subscriber that never reads was still connected after %d events", events)
	}
	if maxQueued > queueLen {
		t.Errorf("the unread subscriber's queue held %d frames, more than QueueLen %d", maxQueued, queueLen)
	}
	if !h.sub.WaitEvents(32*8+events, 10*time.Second) {
		t.Fatalf("the reading subscriber got %d of %d events", h.sub.Count(), 32*8+events)
	}
	// The test's own readers keep every frame they receive; that is not
	// the broker's memory, so it is taken out of the growth.
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := h.heldByTest() - heldBefore
	grew := int64(after.HeapInuse) - int64(before.HeapInuse) - held
	t.Logf("dropped after %d events (queue peak %d); heap in use grew by %.1f MB besides the %.1f MB the test's readers hold",
		events, maxQueued, float64(grew)/(1<<20), float64(held)/(1<<20))
	if grew > 64<<20 {
		t.Errorf("heap grew by %d MB besides what the test holds", grew>>20)
	}
	h.healthy()
}

// A subscriber that floods garbage is dropped after egress.MaxBadMessages
// bad messages in a row; one that floods valid messages is not, and costs
// the others nothing. Nothing a subscriber sends is ever fetched.
func TestSubscriberFloodingGarbage(t *testing.T) {
	h := start(t, nil)
	trap := newFetchTrap(t)
	ev, _ := goodEvent("from-subscriber")
	dtdAuth := []byte(`<?xml version="1.0"?><!DOCTYPE trn:Transport [<!ENTITY x SYSTEM "` + trap.url("auth") + `"><!ENTITY f SYSTEM "` + trap.fileURL() + `">]>` +
		`<trn:Transport xmlns:trn="http://telescope-networks.org/schema/Transport/v1.1" role="authenticate" version="1.0">` +
		`<Origin>` + localIVO + `</Origin><Response>ivo://test.abuse/sub</Response><TimeStamp>2024-01-01T00:00:00</TimeStamp>` +
		`<Meta><filter type="xpath">&x;&f;</filter></Meta></trn:Transport>`)
	deepIAmAlive := []byte(`<trn:Transport xmlns:trn="http://telescope-networks.org/schema/Transport/v1.1" role="iamalive" version="1.0">` +
		strings.Repeat("<a>", 10000) + strings.Repeat("</a>", 10000) + `</trn:Transport>`)
	cases := map[string][]byte{
		"non-XML":                         []byte("<<not xml"),
		"empty frames":                    {},
		"VOEvents sent back":              ev,
		"role-less XML":                   []byte(`<x/>`),
		"DTD in authenticate, entities":   dtdAuth,
		"10,000-deep Transport messages":  deepIAmAlive,
		"invalid UTF-8 Transport message": []byte("<trn:Transport role=\"iamalive\">\xff</trn:Transport>"),
	}
	for name, msg := range cases {
		c := h.dialSubscriber()
		peer := c.LocalAddr().String()
		frame := vtp.Frame(msg)
		go func() {
			for range 10 * egress.MaxBadMessages {
				if _, err := c.Write(frame); err != nil {
					return
				}
			}
		}()
		if !h.dropped(peer, quickClose) {
			t.Errorf("%s: subscriber flooding garbage not dropped", name)
		}
		if st := h.stats(peer); st != nil && len(st.Filters) > 0 {
			t.Errorf("%s: filters installed from garbage: %q", name, st.Filters)
		}
	}
	if n := h.drops(egress.DropBadMessages); n != uint64(len(cases)) {
		t.Errorf("%d drops for bad messages, want %d", n, len(cases))
	}

	// Raw random bytes: whatever the prefix they make, the connection is
	// dropped (an oversized prefix at once, the rest as bad messages or
	// at the close).
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 10 {
		c := h.dialSubscriber()
		peer := c.LocalAddr().String()
		junk := make([]byte, 64<<10)
		for j := range junk {
			junk[j] = byte(rng.UintN(256))
		}
		c.Write(junk)
		c.(*net.TCPConn).CloseWrite()
		if !h.dropped(peer, quickClose) {
			t.Errorf("random bytes %d: subscriber not dropped", i)
		}
	}
	h.healthy()

	// A flood of valid messages (acks of nothing, iamalives) is not a
	// reason to drop, and does not slow the others.
	c := h.dialSubscriber()
	stop := make(chan struct{})
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		ack := vtp.Frame(vtp.Ack("ivo://test.abuse/none#1", "ivo://test.abuse/sub", time.Now()))
		alive := vtp.Frame(vtp.IAmAlive(localIVO, "ivo://test.abuse/sub", time.Now()))
		burst := bytes.Repeat(append(ack, alive...), 64)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.Write(burst); err != nil {
				return
			}
			sent.Add(128)
		}
	})
	for range 5 {
		h.healthy()
	}
	close(stop)
	wg.Wait()
	t.Logf("valid-message flood: %d messages sent during 5 health checks", sent.Load())
	if h.stats(c.LocalAddr().String()) == nil {
		t.Errorf("a subscriber sending only valid messages was dropped")
	}
	trap.check(h)
}

// A subscriber that sends an oversized frame (or a hostile or little-endian
// length prefix) is dropped at once, without the broker reading or
// allocating the announced payload.
func TestSubscriberOversizedFrames(t *testing.T) {
	h := start(t, nil)
	alive := vtp.IAmAlive(localIVO, "ivo://test.abuse/sub", time.Now())
	cases := map[string][]byte{
		"0x7fffffff":               prefix(0x7fffffff),
		"0xffffffff":               prefix(0xffffffff),
		"limit+1":                  prefix(vtp.DefaultMaxFrame + 1),
		"little-endian iamalive":   append(binary.LittleEndian.AppendUint32(nil, uint32(len(alive))), alive...),
		"oversized iamalive, sent": vtp.Frame(append(append([]byte{}, alive...), bytes.Repeat([]byte(" "), vtp.DefaultMaxFrame)...)),
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for name, raw := range cases {
		for range 10 {
			c := h.dialSubscriber()
			peer := c.LocalAddr().String()
			go c.Write(raw) // the connection stays open: only a refusal drops it
			if !h.dropped(peer, quickClose) {
				t.Errorf("%s: subscriber not dropped", name)
			}
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<20 {
		t.Errorf("oversized frames from subscribers allocated %d MB", grew>>20)
	}
	if n := h.drops(egress.DropTooLarge); n != uint64(10*len(cases)) {
		t.Errorf("%d drops for oversized frames, want %d", n, 10*len(cases))
	}
	h.healthy()
}

// A subscriber that naks is dropped, as by Comet; so is one that naks
// before it was sent anything.
func TestNakingSubscriberIsDropped(t *testing.T) {
	h := start(t, nil)
	naker := h.subscribe(vtptest.Naker)
	c := h.dialSubscriber()
	vtp.WriteFrame(c, vtp.Nak("ivo://test.abuse/none#1", "ivo://test.abuse/sub", "unsolicited", time.Now()))
	if !h.dropped(c.LocalAddr().String(), quickClose) {
		t.Errorf("a subscriber sending an unsolicited nak was not dropped")
	}
	h.healthy()
	if !naker.WaitFor(quickClose, func(s *vtptest.Subscriber) bool { return s.Closed() }) {
		t.Errorf("a subscriber that naked an event was not dropped")
	}
	if n := h.drops(egress.DropNak); n != 2 {
		t.Errorf("%d drops for a nak, want 2", n)
	}
	h.healthy()
}

// Filters built to be costly are installed like any other and bounded per
// event by the evaluation budget: where one runs out it is no match for
// that event (fail closed), and its cost falls on its own subscriber: an
// event that makes them explode reaches everyone else as quickly as ever.
// Filters the broker refuses (not XPath, too long, past the count limit)
// never match: refusing a filter never widens what a subscriber receives,
// and a subscriber whose every filter is refused gets nothing (Comet, which
// drops them, would send it everything).
func TestPathologicalFilters(t *testing.T) {
	h := start(t, nil)
	costly := []string{
		`//*[count(//*) > 0]`,
		`//*[//*[//*[//*[//*]]]]`,
		`//*[. = //*]`,
		`//@*[. = //@*]`,
		`//*[string-length(string(/)) > count(//*)]`,
		`//*[position() < count(//*)][position() < count(//*)][position() < count(//*)]`,
		`sum(//*[count(ancestor::*) < count(//*)]/@value)`,
		`//TD[count(//*) > 0]`,
		`//TR[. = //TD]`,
		`//TD[count(//TD) > 0]`,
	}
	var costlySubs []*vtptest.Subscriber
	for _, f := range costly {
		s := h.subscribe(vtptest.Comet, f)
		if st := h.stats(s.LocalAddr()); st == nil || !slices.Equal(st.Filters, []string{f}) || len(st.Refused) != 0 {
			t.Errorf("filter %q not installed: %+v", f, st)
		}
		costlySubs = append(costlySubs, s)
	}
	// A filter that is not XPath next to a cheap one: the cheap one alone
	// decides.
	const cheap, bad = `//Param[@name="Packet_Type" and @value=111]`, `//voe::VOEvent`
	mixed := h.subscribe(vtptest.Comet, bad, cheap)
	if st := h.stats(mixed.LocalAddr()); st == nil || !slices.Equal(st.Filters, []string{cheap}) || !slices.Equal(st.Refused, []string{bad}) {
		t.Errorf("mixed filters: %+v", st)
	}
	// Refused alone: a syntax error; longer than filter.MaxExprLen.
	badOnly := h.subscribe(vtptest.Comet, bad)
	long := `//Param[@name="` + strings.Repeat("x", filter.MaxExprLen) + `"]`
	longOnly := h.subscribe(vtptest.Comet, long)
	if st := h.stats(longOnly.LocalAddr()); st == nil || len(st.Filters) != 0 || len(st.Refused) != 1 {
		t.Errorf("a %d-byte filter: %+v", len(long), st)
	}
	// Past egress.MaxFiltersPerSubscriber: the rest are refused, those past
	// egress.MaxFiltersExamined together.
	var many []string
	for i := range 3 * egress.MaxFiltersPerSubscriber {
		many = append(many, fmt.Sprintf(`//Param[@name="p%d"]`, i))
	}
	ms := h.subscribe(vtptest.Comet, many...)
	if st := h.stats(ms.LocalAddr()); st == nil || len(st.Filters) != egress.MaxFiltersPerSubscriber ||
		len(st.Refused) != egress.MaxFiltersExamined-egress.MaxFiltersPerSubscriber+1 {
		t.Errorf("filters of %d offered: %+v, want %d installed", len(many), st, egress.MaxFiltersPerSubscriber)
	}
	events := [][]byte{h.healthy()}
	if !mixed.WaitEvents(1, healthyWait) {
		t.Errorf("the subscriber with a cheap filter kept did not get a matching event")
	}

	// An event on which the costly filters explode.
	big, bigIV := tableEvent("explode", 3000)
	t0 := time.Now()
	h.mustAck("the crafted event", big)
	if !h.tap.WaitFor([]byte(bigIV), healthyWait) {
		t.Errorf("crafted event not delivered to an unfiltered subscriber within %v", healthyWait)
	}
	t.Logf("crafted event delivered to every unfiltered subscriber %v after submission", time.Since(t0))
	events = append(events, big, h.healthy())

	// Each costly filter got exactly the events it matches within the
	// budget; the crafted one is over the budget for most of them.
	over := 0
	for i, s := range costlySubs {
		f, _ := filter.Compile(costly[i])
		var want []string
		for _, ev := range events {
			d, err := filter.Parse(ev)
			if err != nil {
				t.Fatal(err)
			}
			switch d.Eval(f, 0) {
			case filter.Match:
				want = append(want, ivornOf(ev))
			case filter.OverBudget:
				over++
			}
		}
		if !waitUntil(30*time.Second, func() bool {
			st := h.stats(s.LocalAddr())
			return st != nil && s.Count()+int(st.Withheld) == len(events)
		}) {
			t.Fatalf("filter %q: the %d events not all decided: %+v", costly[i], len(events), h.stats(s.LocalAddr()))
		}
		if got := s.IVORNs(); !slices.Equal(got, want) {
			t.Errorf("filter %q: delivered %q, want %q (its matches within the budget)", costly[i], got, want)
		}
	}
	if over < len(costly)/2 {
		t.Errorf("the crafted event is over the budget for only %d of %d costly filters", over, len(costly))
	}
	for _, s := range []*vtptest.Subscriber{badOnly, longOnly, ms} {
		if n := s.Count(); n != 0 {
			t.Errorf("subscriber %.60q, whose filters were refused or match nothing, got %d events", s.Filters, n)
		}
	}
}

// tableEvent is a schema-valid event with a table of n rows: a filter over
// its cells can be cheap on ordinary events and far over the evaluation
// budget on this one.
func tableEvent(tag string, n int) ([]byte, string) {
	ev, iv := goodEvent(tag)
	tbl := "<Table><Data>" + strings.Repeat("<TR><TD>1</TD></TR>", n) + "</Data></Table>"
	return bytes.Replace(ev, []byte("<What>"), []byte("<What>"+tbl), 1), iv
}

// A filter cheap on ordinary events but far over the evaluation budget
// (filter.DefaultBudget) on a crafted event counts as no match for that
// event, and the others receive it as quickly as ever.
func TestFilterOverBudgetIsNoMatch(t *testing.T) {
	h := start(t, nil)
	const f = `//TD[count(//*) > 0]`
	s := h.subscribe(vtptest.Comet, f)
	if st := h.stats(s.LocalAddr()); st == nil || !slices.Equal(st.Filters, []string{f}) {
		t.Fatalf("filter %q not installed: %+v", f, st)
	}
	small, smallIV := tableEvent("small-table", 10)
	h.mustAck("small table event", small)
	if !s.WaitFor(healthyWait, func(s *vtptest.Subscriber) bool { return slices.Contains(s.IVORNs(), smallIV) }) {
		t.Fatalf("filter %q did not match a small table event", f)
	}
	big, bigIV := tableEvent("big-table", 3000)
	t0 := time.Now()
	h.mustAck("big table event", big)
	if !h.sub.WaitFor(healthyWait, func(s *vtptest.Subscriber) bool { return slices.Contains(s.IVORNs(), bigIV) }) {
		t.Fatalf("big table event not delivered to an unfiltered subscriber within %v", healthyWait)
	}
	t.Logf("big table event delivered %v after submission", time.Since(t0))
	h.healthy()
	if slices.Contains(s.IVORNs(), bigIV) {
		t.Errorf("filter %q matched an event it cannot evaluate within the budget", f)
	}
}

// Many filters over the evaluation budget, from a handful of subscriptions
// of one source (far below its connection limit), must not stall the
// fan-out: the cost of an event to the broadcaster has to be bounded, not
// only the cost of each filter (each subscriber's filters run in its own
// writer). The attack is sized from the measured cost
// of one budget (so it is the same attack with and without the race
// detector): unbounded, it holds every event for five seconds.
func TestOverBudgetFiltersDoNotStallFanout(t *testing.T) {
	h := start(t, nil)
	big, bigIV := tableEvent("stall", 3000)
	doc, err := filter.Parse(big)
	if err != nil {
		t.Fatal(err)
	}
	probe, _ := filter.Compile(`//TD[count(//*) > -1]`)
	var costs []time.Duration
	for range 3 {
		t0 := time.Now()
		if _, within := probe.Steps(doc, filter.DefaultBudget); within {
			t.Fatal("the calibration filter is within the budget")
		}
		costs = append(costs, time.Since(t0))
	}
	perBudget := slices.Min(costs)
	const stall = 5 * time.Second
	perSub := egress.MaxFiltersPerSubscriber
	total := min(int((stall+perBudget-1)/perBudget), egress.DefaultFilterCacheSize)
	subs := (total + perSub - 1) / perSub
	t.Logf("one exhausted budget costs %v; %d distinct filters over %d subscriptions would cost %v per event",
		perBudget, total, subs, time.Duration(total)*perBudget)
	if subs > cmdMaxConnsPerPeer {
		t.Fatalf("the attack needs %d subscriptions, more than one source may open", subs)
	}
	for i := range subs {
		fs := make([]string, min(perSub, total-i*perSub))
		for j := range fs {
			fs[j] = fmt.Sprintf(`//TD[count(//*) > %d]`, -1-(i*perSub+j)) // distinct, so not shared
		}
		s := h.subscribe(vtptest.Comet, fs...)
		if st := h.stats(s.LocalAddr()); st == nil || len(st.Filters) != len(fs) {
			t.Fatalf("attack filters not installed: %+v", st)
		}
	}
	// The crafted event, then a good one: the relay hands events to the
	// broadcaster one at a time, so the good one waits for the crafted
	// one's fan-out to finish.
	h.mustAck("the crafted event", big)
	good, goodIV := goodEvent("after-crafted")
	t0 := time.Now()
	h.mustAck("a good event after it", good)
	ok := h.sub.WaitFor(healthyWait, func(s *vtptest.Subscriber) bool { return slices.Contains(s.IVORNs(), goodIV) })
	if !ok {
		h.sub.WaitFor(2*stall, func(s *vtptest.Subscriber) bool { return slices.Contains(s.IVORNs(), goodIV) })
	}
	took := time.Since(t0)
	t.Logf("the good event after the crafted one was delivered %v after its ack", took)
	if !ok {
		t.Errorf("with %d subscriptions of one source holding %d filters in all over the evaluation budget, "+
			"a good event submitted after a crafted one was delivered only after %v (want within %v): "+
			"filter cost is bounded per filter (filter.DefaultBudget), not per subscriber or per event, "+
			"and the fan-out evaluates every subscriber's filters in turn",
			subs, total, took, healthyWait)
	}
	if !h.tap.WaitFor([]byte(bigIV), 2*stall) {
		t.Errorf("crafted event never delivered to an unfiltered subscriber")
	}
	h.healthy()
}

// An authenticate message is bounded work whatever it holds: the broker
// compiles at most egress.MaxFiltersExamined filters and refuses the rest
// together, so it should not compile thousands. Measured against the cost
// of compiling one (so it is the same bound with and without the race
// detector).
func TestAuthenticateWithThousandsOfCostlyFilters(t *testing.T) {
	h := start(t, nil)
	const costlyFilter = `//*[count(//*)]`
	var costs []time.Duration
	for i := range 5 {
		t0 := time.Now()
		for j := range 100 {
			if _, err := filter.Compile(fmt.Sprintf("%s[%d]", costlyFilter, i*100+j)); err != nil {
				t.Fatal(err)
			}
		}
		costs = append(costs, time.Since(t0)/100)
	}
	slices.Sort(costs)
	compileCost := costs[2]
	// As many as one frame holds, in the short form Comet also accepts.
	head := `<trn:Transport xmlns:trn="http://telescope-networks.org/schema/Transport/v1.1" role="authenticate" version="1.0">` +
		`<Origin>` + localIVO + `</Origin><Response>ivo://test.abuse/sub</Response><TimeStamp>2024-01-01T00:00:00</TimeStamp><Meta>`
	tail := `</Meta></trn:Transport>`
	one := `<filter type="xpath">` + costlyFilter + `</filter>`
	n := (vtp.DefaultMaxFrame - len(head) - len(tail)) / len(one)
	msg := []byte(head + strings.Repeat(one, n) + tail)
	if pm, err := vtp.ParseTransport(msg); err != nil || len(pm.Filters) != n {
		t.Fatalf("crafted authenticate: %v", err)
	}
	c := h.dialSubscriber()
	peer := c.LocalAddr().String()
	t0 := time.Now()
	if err := vtp.WriteFrame(c, msg); err != nil {
		t.Fatal(err)
	}
	if !waitUntil(30*time.Second, func() bool { st := h.stats(peer); return st != nil && st.Authenticated }) {
		t.Fatal("authenticate not processed")
	}
	took := time.Since(t0)
	bound := 4*time.Duration(egress.MaxFiltersExamined)*compileCost + 50*time.Millisecond
	t.Logf("one %d-byte authenticate with %d costly filters took %v to process (one compile: %v; bound %v)", len(msg), n, took, compileCost, bound)
	if took > bound {
		t.Errorf("one authenticate message of %d bytes cost %v of broker CPU (%d filters, one compile %v): "+
			"filters past the %d examined are still compiled, so a subscriber repeating it keeps a core busy",
			len(msg), took, n, compileCost, egress.MaxFiltersExamined)
	}
	// All sent, all accounted for: the first MaxFiltersPerSubscriber
	// installed, the next refused one by one, the rest together.
	if st := h.stats(peer); st == nil || len(st.Filters) != egress.MaxFiltersPerSubscriber ||
		len(st.Refused) != egress.MaxFiltersExamined-egress.MaxFiltersPerSubscriber+1 {
		t.Errorf("filters of the crafted authenticate: %d installed, %d refused", len(st.Filters), len(st.Refused))
	}
	h.healthy()
}
