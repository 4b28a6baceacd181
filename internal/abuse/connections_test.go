package abuse

import (
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// held is a connection opened by a test that watches for the broker's close.
type held struct {
	c        net.Conn
	dialed   time.Time
	closedAt atomic.Int64 // ns after dialed; 0 while open
	got      atomic.Int64 // bytes received
	done     chan struct{}
}

// holdConns opens n connections to addr from each source address, sends
// each the bytes of send (nil: nothing) and watches them until the broker
// closes them. Dial failures are fatal (after the fact, from the test
// goroutine).
func holdConns(t *testing.T, addr string, srcs []string, n int, send []byte) []*held {
	t.Helper()
	out := make([]*held, len(srcs)*n)
	errs := make(chan error, len(out))
	var wg sync.WaitGroup
	for i := range out {
		src := srcs[i/n]
		wg.Go(func() {
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				errs <- fmt.Errorf("dial from %s: %w", src, err)
				return
			}
			hc := &held{c: c, dialed: time.Now(), done: make(chan struct{})}
			out[i] = hc
			if send != nil {
				c.Write(send)
			}
			go func() {
				defer close(hc.done)
				buf := make([]byte, 512)
				for {
					k, err := c.Read(buf)
					hc.got.Add(int64(k))
					if err != nil {
						hc.closedAt.Store(int64(max(time.Since(hc.dialed), 1)))
						return
					}
				}
			}()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, hc := range out {
			hc.c.Close()
		}
	})
	return out
}

// waitClosed waits until every connection has been closed, or d passes.
func waitClosed(hs []*held, d time.Duration) bool {
	deadline := time.After(d)
	for _, hc := range hs {
		select {
		case <-hc.done:
		case <-deadline:
			return false
		}
	}
	return true
}

// split counts the connections closed before cut, after it, and still open.
func split(hs []*held, cut time.Duration) (early, late, open int) {
	for _, hc := range hs {
		switch at := time.Duration(hc.closedAt.Load()); {
		case at == 0:
			open++
		case at < cut:
			early++
		default:
			late++
		}
	}
	return
}

func sources(first, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.0.%d", first+i)
	}
	return out
}

// A thousand silent connections from one source address, and a thousand
// from four: the per-source limit (cmd/comet's default, 256) refuses the
// excess from the one at accept, with a log line; the receive timeout
// closes every accepted one, never before it, without a reply; an author
// that trickles its event is cut at the timeout too (it is never
// extended); good authors are served while all of them are open; and the
// slots come back.
func TestThousandSilentConnections(t *testing.T) {
	needFDs(t)
	const timeout = 3 * time.Second
	h := start(t, func(c *broker.Config) {
		c.Receiver.Timeout = timeout
		connLimits(c, cmdMaxConns, cmdMaxConnsPerPeer)
	})
	trickleEv, trickleIV := goodEvent("trickle")
	trickled := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", h.recv())
		if err != nil {
			trickled <- err
			return
		}
		defer c.Close()
		frame := vtp.Frame(trickleEv)
		t0 := time.Now()
		for i := range frame {
			if _, err := c.Write(frame[i : i+1]); err != nil {
				if d := time.Since(t0); d < timeout-100*time.Millisecond || d > timeout+3*time.Second {
					trickled <- fmt.Errorf("trickling author cut after %v, want the %v timeout", d, timeout)
				} else {
					trickled <- nil
				}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		trickled <- fmt.Errorf("trickling author sent its whole event (%v) without being cut", time.Since(t0))
	}()

	t0 := time.Now()
	oneSource := holdConns(t, h.recv(), []string{"127.0.0.2"}, 1000, nil)
	fourSources := holdConns(t, h.recv(), sources(3, 4), 250, nil)
	dialing := time.Since(t0)
	t.Logf("2,000 silent connections opened in %v", dialing)
	if dialing > timeout/2-200*time.Millisecond {
		t.Fatalf("opening the connections took %v: too slow to test a %v timeout", dialing, timeout)
	}

	// Good authors are served while every accepted connection is open.
	h.healthy()
	if _, _, open := split(fourSources, 0); open != len(fourSources) {
		t.Fatalf("health check ran after the silent connections were closed (%d of %d open)", open, len(fourSources))
	}
	if !waitClosed(append(slices.Clone(oneSource), fourSources...), timeout+5*time.Second) {
		_, _, o1 := split(oneSource, 0)
		_, _, o4 := split(fourSources, 0)
		t.Fatalf("silent connections still open %v after the %v timeout: %d + %d", 5*time.Second, timeout, o1, o4)
	}
	// "At once" is within half the timeout (accepting 2,000 connections
	// under -race on a busy machine can lag by hundreds of ms); "at the
	// timeout" is after it less 100 ms, and less the time spent dialing:
	// a connection's clock here starts when its Dial returned, which can
	// be up to that much after the broker accepted it and started its
	// timer. Nothing may close in between.
	atOnce, atTimeout := timeout/2, timeout-dialing-100*time.Millisecond
	band := func(hs []*held) (early, middle, late int) {
		e, _, _ := split(hs, atOnce)
		e2, l, _ := split(hs, atTimeout)
		return e, e2 - e, l
	}
	early, middle, late := band(oneSource)
	if early != 1000-cmdMaxConnsPerPeer || late != cmdMaxConnsPerPeer || middle != 0 {
		t.Errorf("one source: %d closed at once, %d in between, %d at the timeout; want %d, 0 and %d",
			early, middle, late, 1000-cmdMaxConnsPerPeer, cmdMaxConnsPerPeer)
	}
	if early, middle, late := band(fourSources); early != 0 || middle != 0 || late != 1000 {
		t.Errorf("four sources: %d closed at once, %d in between, %d at the timeout; want 0, 0 and 1000", early, middle, late)
	}
	for _, hc := range append(oneSource, fourSources...) {
		if hc.got.Load() != 0 {
			t.Fatalf("a silent connection was sent %d bytes", hc.got.Load())
		}
	}
	if n := h.rejected(ingress.RejectMaxConnsPerPeer); n != 1000-cmdMaxConnsPerPeer {
		t.Errorf("%d refusals counted, want %d", n, 1000-cmdMaxConnsPerPeer)
	}
	if !waitUntil(time.Second, func() bool { return h.rejected(ingress.RejectTimeout) >= cmdMaxConnsPerPeer+1000 }) {
		t.Errorf("%d timeouts counted, want at least %d", h.rejected(ingress.RejectTimeout), cmdMaxConnsPerPeer+1000)
	}
	if err := <-trickled; err != nil {
		t.Error(err)
	}
	h.notRecorded("trickled event", trickleEv)
	h.healthy(trickleIV)
	// The slots are free again: the busy source may submit.
	ev, _ := goodEvent("after-silence")
	if m, err := vtptest.SubmitFrom(&net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, h.recv(), ev, healthyWait); err != nil || m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("127.0.0.2 after its connections timed out: %+v %v", m, err)
	}
}

// The listener's limit holds however many sources take part: past it every
// connection is closed at accept with a log line, good authors included,
// until the receive timeout frees slots; then they are served again.
func TestListenerConnectionLimit(t *testing.T) {
	needFDs(t)
	const timeout, limit = 3 * time.Second, 300
	h := start(t, func(c *broker.Config) {
		c.Receiver.Timeout = timeout
		connLimits(c, limit, cmdMaxConnsPerPeer)
	})
	t0 := time.Now()
	hs := holdConns(t, h.recv(), sources(10, 4), 250, nil)
	dialing := time.Since(t0)
	if dialing > timeout/2 {
		t.Fatalf("opening the connections took %v: too slow to test a %v timeout", dialing, timeout)
	}
	// While the listener is full a good author is refused like anyone
	// else: closed at accept, no reply, nothing recorded.
	ev, _ := goodEvent("while-full")
	h.noReply("good author while the listener is full", ev)
	if !waitClosed(hs, timeout+5*time.Second) {
		t.Fatalf("silent connections not closed by the %v timeout", timeout)
	}
	// As in TestThousandSilentConnections, a connection's clock starts
	// when its Dial returned, up to the time spent dialing late.
	early, late, _ := split(hs, timeout-dialing-100*time.Millisecond)
	if early != 1000-limit || late != limit {
		t.Errorf("%d closed at accept, %d at the timeout; want %d and %d", early, late, 1000-limit, limit)
	}
	if n := h.rejected(ingress.RejectMaxConns); n != uint64(1000-limit+1) {
		t.Errorf("%d refusals counted, want %d", n, 1000-limit+1)
	}
	h.healthy()
	h.mustAck("the refused event, once slots are free", ev)

	// The broadcast listener has its own limits: past the per-source
	// limit subscribers are refused at accept; the others keep receiving.
	subs := holdConns(t, h.cast(), []string{"127.0.0.20"}, cmdMaxConnsPerPeer+44, nil)
	if !waitUntil(5*time.Second, func() bool { e, _, _ := split(subs, time.Hour); return e >= 44 }) {
		e, _, _ := split(subs, time.Hour)
		t.Fatalf("%d of the subscriber connections past the per-source limit were closed, want 44", e)
	}
	time.Sleep(200 * time.Millisecond)
	if e, _, _ := split(subs, time.Hour); e != 44 {
		t.Errorf("%d subscriber connections closed, want the 44 past the limit", e)
	}
	h.healthy()
}

// A thousand authors connect at once, each submitting a unique event:
// every one is acked and delivered once. Sources are spread over eight
// addresses so cmd/comet's default per-source limit applies as in
// production. How fast (the target: the slowest ack within a second) is
// BenchmarkThousandAuthors's to measure: under -race on a loaded 2-core
// machine the slowest ack here takes 4 to 5 s of CPU alone.
func TestThousandSimultaneousAuthors(t *testing.T) {
	needFDs(t)
	h := start(t, func(c *broker.Config) { connLimits(c, cmdMaxConns, cmdMaxConnsPerPeer) })
	lat, ivorns, err := thousandAuthors(h.recv())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lat)
	max, p50, p99 := lat[len(lat)-1], lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("1,000 simultaneous authors: ack latency p50 %v, p99 %v, max %v (race detector %v)", p50, p99, max, raceEnabled)
	if !h.sub.WaitEvents(len(ivorns), 20*time.Second) {
		st := h.b.Stats()
		t.Fatalf("subscriber got %d of %d events (tap %d; drops %v; subscribers %+v)", h.sub.Count(), len(ivorns), len(h.tap.Frames()), st.Drops, st.Subscribers)
	}
	got := h.sub.IVORNs()
	slices.Sort(got)
	slices.Sort(ivorns)
	if !slices.Equal(got, ivorns) {
		t.Fatalf("subscriber did not get each event once")
	}
	h.healthy()
}

// thousandAuthors releases 1,000 authors at once and returns each one's
// time from release to ack.
func thousandAuthors(addr string) ([]time.Duration, []string, error) {
	const n, nsrc = 1000, 8
	srcs := sources(100, nsrc)
	lat := make([]time.Duration, n)
	ivorns := make([]string, n)
	payloads := make([][]byte, n)
	for i := range n {
		payloads[i], ivorns[i] = goodEvent("crowd")
	}
	gate := make(chan struct{})
	errs := make(chan error, n)
	var ready, wg sync.WaitGroup
	ready.Add(n)
	for i := range n {
		wg.Go(func() {
			local := &net.TCPAddr{IP: net.ParseIP(srcs[i%nsrc])}
			ready.Done()
			<-gate
			t0 := time.Now()
			m, err := vtptest.SubmitFrom(local, addr, payloads[i], 30*time.Second)
			lat[i] = time.Since(t0)
			if err != nil || m == nil || m.Role != vtp.RoleAck || m.Origin != ivorns[i] {
				errs <- fmt.Errorf("author %d: %+v %v after %v", i, m, err, lat[i])
			}
		})
	}
	ready.Wait()
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		return nil, nil, err
	}
	return lat, ivorns, nil
}

// BenchmarkThousandAuthors: each op is 1,000 authors released at once;
// max-ack-ms is the slowest ack of the op (the target: under
// 1,000 ms, without the race detector).
func BenchmarkThousandAuthors(b *testing.B) {
	if noFileErr != nil {
		b.Skip(noFileErr)
	}
	h := start(b, func(c *broker.Config) {
		connLimits(c, cmdMaxConns, cmdMaxConnsPerPeer)
		c.Broadcast = nil
	})
	var worst, sum time.Duration
	for b.Loop() {
		lat, _, err := thousandAuthors(h.recv())
		if err != nil {
			b.Fatal(err)
		}
		m := slices.Max(lat)
		worst = max(worst, m)
		sum += m
	}
	b.ReportMetric(float64(worst)/float64(time.Millisecond), "max-ack-ms")
	b.ReportMetric(float64(sum)/float64(b.N)/float64(time.Millisecond), "mean-max-ack-ms")
}

// Connections that announce a full-size frame and then stall cost the
// broker what they sent, not what they announced: five hundred of them on
// each port must not pin five hundred 99,999-byte buffers, on the receive
// port for the receive timeout, on the broadcast port (which has no read
// timeout) until the keep-alive drops them.
func TestStalledAnnouncedFramesDoNotPinMemory(t *testing.T) {
	needFDs(t)
	h := start(t, func(c *broker.Config) { connLimits(c, cmdMaxConns, cmdMaxConnsPerPeer) })
	announce := append(prefix(vtp.DefaultMaxFrame), '<') // 5 bytes sent, 99,999 announced
	heap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapInuse)
	}
	// What 500 connections cost, silent and after announcing a frame: the
	// difference is what the announcements pin. (A subscriber connection
	// has fixed state of its own, queue and buffers, bounded by the
	// connection limits.)
	grow := func(addr string, send []byte) (int64, []*held) {
		before := heap()
		hs := holdConns(t, addr, sources(30, 2), 250, send)
		time.Sleep(500 * time.Millisecond) // the broker has read every prefix
		return heap() - before, hs
	}
	release := func(hs []*held) {
		for _, hc := range hs {
			hc.c.Close()
		}
		waitClosed(hs, 5*time.Second)
		time.Sleep(200 * time.Millisecond)
	}
	for _, port := range []struct{ name, addr string }{{"receive", h.recv()}, {"broadcast", h.cast()}} {
		base, hs := grow(port.addr, nil)
		release(hs)
		grew, hs := grow(port.addr, announce)
		extra := grew - max(base, 0) // a GC of earlier garbage can make base negative
		t.Logf("%s port: 500 silent connections: heap +%.1f MB; 500 stalled 99,999-byte frames: +%.1f MB",
			port.name, float64(base)/(1<<20), float64(grew)/(1<<20))
		if port.name == "receive" {
			if _, _, open := split(hs, 0); open != len(hs) {
				t.Fatalf("%d stalled connections were closed early", len(hs)-open)
			}
		}
		if extra > 16<<20 {
			t.Errorf("%s port: 500 connections that sent 5 bytes each pin %.0f MB more than silent ones "+
				"(frame buffers sized from the announced length, not grown as bytes arrive)",
				port.name, float64(extra)/(1<<20))
		}
		release(hs)
	}
	h.healthy()
}
