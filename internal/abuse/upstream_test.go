package abuse

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// acked reports whether an upstream has received an ack of ivorn.
func acked(u *vtptest.Upstream, ivorn string) bool {
	for _, m := range u.Received() {
		if m.Role == vtp.RoleAck && m.Origin == ivorn {
			return true
		}
	}
	return false
}

// reconnected waits until the broker has connected to u more than n times.
func reconnected(u *vtptest.Upstream, n int, d time.Duration) bool {
	return u.WaitFor(d, func(u *vtptest.Upstream) bool { return u.Accepts() > n })
}

// The subscriber role against hostile upstreams: one that sends garbage,
// DTD-bearing events, oversized frames or hostile length prefixes, and one
// that never sends anything (no iamalive). Each is disconnected (and
// retried) with a logged reason, or its bad messages are ignored; nothing
// of it is stored, forwarded or fetched; a good upstream and good authors
// are served throughout.
func TestHostileUpstreams(t *testing.T) {
	const inactivity = 1500 * time.Millisecond
	ups := map[string]*vtptest.Upstream{}
	for name, mode := range map[string]vtptest.UpstreamMode{
		"good": vtptest.CometUpstream, "garbage": vtptest.GCNUpstream,
		"oversized": vtptest.CometUpstream, "silent": vtptest.SilentUpstream,
	} {
		u, err := vtptest.StartUpstream(mode)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(u.Close)
		ups[name] = u
	}
	h := start(t, func(c *broker.Config) {
		for _, u := range ups {
			c.Subscribe = append(c.Subscribe, endpoint.Endpoint{Network: "tcp", Address: u.Addr()})
		}
		c.Subscriber.InactivityTimeout = inactivity
		c.Subscriber.Backoff = func(int) time.Duration { return 50 * time.Millisecond }
	})
	for name, u := range ups {
		if !u.WaitFor(5*time.Second, func(u *vtptest.Upstream) bool { return u.Accepts() >= 1 }) {
			t.Fatalf("%s upstream: no subscription", name)
		}
	}
	// The good and hostile upstreams other than the silent one keep the
	// connection alive, so that a reconnection is the broker's reaction to
	// what they send, not to their silence.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for _, name := range []string{"good", "garbage", "oversized"} {
					ups[name].SendIAmAlive()
				}
			}
		}
	}()
	// upstreamHealthy: a good event from the good upstream is acked to it,
	// stored and delivered; then the receiver's health check.
	upstreamHealthy := func(forbidden ...string) {
		t.Helper()
		ev, iv := goodEvent("upstream")
		ups["good"].Send(ev)
		if !ups["good"].WaitFor(healthyWait, func(u *vtptest.Upstream) bool { return acked(u, iv) }) {
			t.Fatalf("good upstream: event %s not acked", iv)
		}
		if !h.sub.WaitFor(healthyWait, func(s *vtptest.Subscriber) bool { return slices.Contains(s.IVORNs(), iv) }) {
			t.Fatalf("good upstream: event %s not delivered", iv)
		}
		h.healthy(forbidden...)
	}
	upstreamHealthy()

	t.Run("garbage", func(t *testing.T) {
		u := ups["garbage"]
		n := u.Accepts()
		// Fewer bad messages than the limit, then a good event: ignored,
		// the event is taken and the connection kept.
		ev, iv := goodEvent("after-garbage")
		var burst []byte
		for i := range ingress.MaxBadMessages - 1 {
			burst = append(burst, vtp.Frame([]byte("garbage <"+strings.Repeat("x", i)))...)
		}
		u.SendRaw(append(burst, vtp.Frame(ev)...))
		if !u.WaitFor(healthyWait, func(u *vtptest.Upstream) bool { return acked(u, iv) }) {
			t.Fatalf("event after %d bad messages not acked", ingress.MaxBadMessages-1)
		}
		if u.Accepts() != n {
			t.Errorf("disconnected by fewer than %d bad messages", ingress.MaxBadMessages)
		}
		// The limit in a row: disconnected, with the reason logged, and
		// retried.
		burst = nil
		for range ingress.MaxBadMessages {
			burst = append(burst, vtp.Frame([]byte("garbage <"))...)
		}
		u.SendRaw(burst)
		if !reconnected(u, n, quickClose) {
			t.Errorf("not disconnected after %d bad messages in a row", ingress.MaxBadMessages)
		}
		if h.logs.Count("bad messages in a row from upstream") < 1 {
			t.Errorf("disconnection for bad messages not logged")
		}
		// Random bytes: disconnected one way or another, never a crash.
		rng := rand.New(rand.NewPCG(3, 4))
		for range 5 {
			n := u.Accepts()
			junk := make([]byte, 16<<10)
			for j := range junk {
				junk[j] = byte(rng.UintN(256))
			}
			u.SendRaw(junk)
			if !reconnected(u, n, inactivity+quickClose) {
				t.Errorf("random bytes from upstream: not disconnected")
			}
		}
		upstreamHealthy()
	})

	t.Run("DTD-bearing events", func(t *testing.T) {
		trap := newFetchTrap(t)
		u := ups["garbage"]
		n := u.Accepts()
		decls := []string{
			`<!DOCTYPE voe:VOEvent [<!ENTITY e "MARK-INTERNAL">]>`,
			`<!DOCTYPE voe:VOEvent [<!ENTITY x SYSTEM "` + trap.url("upstream-entity") + `">]>`,
			`<!DOCTYPE voe:VOEvent [<!ENTITY x SYSTEM "` + trap.fileURL() + `">]>`,
			`<!DOCTYPE voe:VOEvent [<!ENTITY % p SYSTEM "` + trap.url("upstream-param") + `"> %p;]>`,
			`<!DOCTYPE voe:VOEvent SYSTEM "` + trap.url("upstream-dtd") + `">`,
		}
		var bad [][]byte
		var forbidden []string
		for i, d := range decls {
			ev, iv := goodEvent("upstream-dtd")
			j := bytes.Index(ev, []byte("<voe:VOEvent"))
			p := append(append(append([]byte{}, ev[:j]...), d+"\n"...), ev[j:]...)
			if i > 0 {
				p = bytes.Replace(p, []byte("This VOEvent message"), []byte("&x;This VOEvent message"), 1)
			}
			bad = append(bad, p)
			forbidden = append(forbidden, iv)
		}
		deep, deepIV := goodEvent("upstream-deep")
		deep = bytes.Replace(deep, []byte("<What>"), []byte("<What>"+strings.Repeat("<G>", 10000)+strings.Repeat("</G>", 10000)), 1)
		bad = append(bad, deep)
		forbidden = append(forbidden, deepIV)
		utf, utfIV := goodEvent("upstream-utf8")
		bad = append(bad, bytes.Replace(utf, []byte("Julie Mcenery"), []byte("Julie \xff Mcenery"), 1))
		forbidden = append(forbidden, utfIV)
		var burst []byte
		for _, p := range bad {
			burst = append(burst, vtp.Frame(p)...)
		}
		u.SendRaw(burst)
		ev, iv := goodEvent("after-dtd")
		u.Send(ev)
		if !u.WaitFor(healthyWait, func(u *vtptest.Upstream) bool { return acked(u, iv) }) {
			t.Fatalf("event after the DTD-bearing ones not acked")
		}
		for _, f := range forbidden {
			if acked(u, f) {
				t.Errorf("%s (unparsable) was acked", f)
			}
		}
		for i, p := range bad {
			if seen, err := h.b.Bus().Seen(context.Background(), bus.Digest(p)); err != nil || seen {
				t.Errorf("%s: recorded (%v %v)", forbidden[i], seen, err)
			}
		}
		if u.Accepts() != n {
			t.Errorf("fewer bad messages than the limit disconnected the upstream")
		}
		if h.logs.Count("DTD not allowed") != len(decls) || h.logs.Count("element nesting too deep") != 1 {
			t.Errorf("the bad events' reasons were not logged")
		}
		upstreamHealthy(forbidden...)
		h.notForwarded("MARK-INTERNAL")
		trap.check(h)
	})

	t.Run("oversized frames", func(t *testing.T) {
		u := ups["oversized"]
		ev, _ := goodEvent("upstream-big")
		big := append(ev, bytes.Repeat([]byte(" "), vtp.DefaultMaxFrame)...)
		before := h.logs.Count("length limit exceeded")
		for _, raw := range [][]byte{prefix(0x7fffffff), prefix(0xffffffff), prefix(vtp.DefaultMaxFrame + 1), vtp.Frame(big)} {
			n := u.Accepts()
			u.SendRaw(raw)
			if !reconnected(u, n, quickClose) {
				t.Errorf("not disconnected after a %d-byte length prefix", len(raw))
			}
		}
		if n := h.logs.Count("length limit exceeded") - before; n != 4 {
			t.Errorf("%d disconnections logged with %q, want 4", n, "length limit exceeded")
		}
		h.notRecorded("oversized event from upstream", big)
		upstreamHealthy(ivornOf(big))
	})

	t.Run("never sends iamalive", func(t *testing.T) {
		u := ups["silent"]
		n := u.Accepts()
		t0 := time.Now()
		if !reconnected(u, n, 2*inactivity+time.Second) {
			t.Fatalf("a silent upstream was not dropped after %v of inactivity", inactivity)
		}
		t.Logf("silent upstream reconnected after %v (inactivity timeout %v)", time.Since(t0), inactivity)
		if h.logs.Count("no message from upstream for") < 1 {
			t.Errorf("inactivity disconnection not logged")
		}
		if ups["good"].Accepts() != 1 {
			t.Errorf("the good upstream was reconnected %d times", ups["good"].Accepts()-1)
		}
		upstreamHealthy()
	})
}
