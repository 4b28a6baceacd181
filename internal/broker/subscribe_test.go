package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/stages"
	"github.com/comet-go/comet/vtp"
)

func tcp(addr string) endpoint.Endpoint { return endpoint.Endpoint{Network: "tcp", Address: addr} }

// fastBackoff keeps reconnection tests short: 20 ms, 30 ms, 45 ms, ...
func fastBackoff(n int) time.Duration {
	d := 20 * time.Millisecond
	for range n - 1 {
		d = d * 3 / 2
	}
	return min(d, time.Second)
}

// recorder is a stage that keeps what it handles.
type recorder struct {
	mu     sync.Mutex
	events [][]byte
}

func (r *recorder) Name() string { return "recorder" }
func (r *recorder) Handle(_ context.Context, ev *bus.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev.Payload)
	return nil
}
func (r *recorder) got() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.events...)
}

// A broker subscribed to another relays every event the upstream accepted,
// byte-identical, to its own subscribers and its stages.
func TestSubscriberBrokerRelaysFromUpstreamBroker(t *testing.T) {
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
	s := subscribe(t, down, vtptest.Comet)
	var acked []vtptest.Sample
	for _, smp := range samples(t) {
		if m := submit(t, recvAddr(up), smp.Data); m != nil && m.Role == vtp.RoleAck {
			acked = append(acked, smp)
		}
	}
	if !s.WaitEvents(len(acked), deliveryWait) {
		t.Fatalf("downstream subscriber got %d of %d", s.Count(), len(acked))
	}
	for i, got := range s.Events() {
		if !bytes.Equal(got, acked[i].Data) {
			t.Errorf("%s not byte-identical after the hop", acked[i].Name)
		}
	}
	if !waitUntil(deliveryWait, func() bool { return len(rec.got()) >= len(acked) }) {
		t.Fatalf("downstream stage handled %d of %d", len(rec.got()), len(acked))
	}
	handled := map[string]bool{}
	for _, p := range rec.got() {
		handled[string(p)] = true
	}
	for _, smp := range acked {
		if !handled[string(smp.Data)] {
			t.Errorf("%s never reached the downstream stage byte-identical", smp.Name)
		}
	}
	// The downstream broker acknowledged everything: nothing outstanding.
	if !waitUntil(5*time.Second, func() bool { return up.Stats().Subscribers[0].InFlight == 0 }) {
		t.Fatalf("downstream left events unacknowledged: %+v", up.Stats().Subscribers)
	}
}

// Filters given to the subscriber are sent upstream and honoured there.
func TestSubscriberFiltersAreHonouredUpstream(t *testing.T) {
	up := start(t, nil)
	filter := `//Param[@name="Packet_Type" and @value="61"]`
	down := start(t, func(c *broker.Config) {
		c.Receive = nil
		c.Subscribe = []endpoint.Endpoint{tcp(castAddr(up))}
		c.Subscriber.Filters = []string{filter}
	})
	if !waitUntil(10*time.Second, func() bool {
		st := up.Stats().Subscribers
		return len(st) == 1 && len(st[0].Filters) == 1 && st[0].Filters[0] == filter
	}) {
		t.Fatalf("filter not installed upstream: %+v", up.Stats().Subscribers)
	}
	s := subscribe(t, down, vtptest.Comet)
	for _, smp := range samples(t) {
		submit(t, recvAddr(up), smp.Data)
	}
	marker := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/filter#marker") // Packet_Type 112: filtered out
	mustAck(t, recvAddr(up), marker)
	if !s.WaitEvents(2, deliveryWait) {
		t.Fatalf("got %q", s.IVORNs())
	}
	time.Sleep(300 * time.Millisecond)
	want := []string{"ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_655721-214", "ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_1125809-092"}
	got := s.IVORNs()
	if len(got) != 2 || !(got[0] == want[0] && got[1] == want[1] || got[0] == want[1] && got[1] == want[0]) {
		t.Fatalf("filtered relay delivered %q, want %q", got, want)
	}
}

// Against scripted peers behaving like Comet's broadcaster and like a GCN
// server: the subscriber answers authenticate with its filters (Comet only;
// GCN never asks), answers iamalive copying Origin, acks every event,
// including VOEvent 1.1 and duplicates, never naks, and relays what is new
// without schema validation.
func TestSubscriberAgainstScriptedUpstreams(t *testing.T) {
	for _, mode := range []vtptest.UpstreamMode{vtptest.CometUpstream, vtptest.GCNUpstream} {
		name := map[vtptest.UpstreamMode]string{vtptest.CometUpstream: "comet", vtptest.GCNUpstream: "gcn"}[mode]
		t.Run(name, func(t *testing.T) {
			up, err := vtptest.StartUpstream(mode)
			if err != nil {
				t.Fatal(err)
			}
			defer up.Close()
			rec := &recorder{}
			down := start(t, func(c *broker.Config) {
				c.Receive = nil
				c.Subscribe = []endpoint.Endpoint{tcp(up.Addr())}
				c.Subscriber.Filters = []string{`//Param`}
				c.LocalIVO = "ivo://test.broker/downstream"
				c.Stages.Stages = []stages.Stage{rec}
			})
			s := subscribe(t, down, vtptest.Comet)
			if !up.WaitFor(10*time.Second, func(u *vtptest.Upstream) bool { return u.Connected() == 1 }) {
				t.Fatal("no subscription")
			}
			if mode == vtptest.CometUpstream {
				if !up.WaitFor(5*time.Second, func(u *vtptest.Upstream) bool { return len(u.Received()) >= 1 }) {
					t.Fatal("authenticate not answered")
				}
				auth := up.Received()[0]
				if auth.Role != vtp.RoleAuthenticate || auth.Origin != vtptest.UpstreamIVO ||
					auth.Response != "ivo://test.broker/downstream" || len(auth.Filters) != 1 || auth.Filters[0] != "//Param" {
					t.Fatalf("authenticate reply %+v", auth)
				}
			}
			up.SendIAmAlive()
			gbm := mustRead(t, filepath.Join(testdataDir, "voevents", "gbm_flt_pos.xml"))  // VOEvent 1.1
			kill := mustRead(t, filepath.Join(testdataDir, "voevents", "kill_socket.xml")) // 1.1, no local ID
			noNS := mustRead(t, filepath.Join(testdataDir, "voevents", "no_namespace_packet.xml"))
			for _, ev := range [][]byte{gbm, kill, noNS, gbm} { // the last one is a duplicate
				up.Send(ev)
			}
			if !up.WaitFor(5*time.Second, func(u *vtptest.Upstream) bool { return count(u.Received(), vtp.RoleAck) == 4 }) {
				t.Fatalf("got %d acks, want 4 (every event acked, duplicates too)", count(up.Received(), vtp.RoleAck))
			}
			var alive *vtp.Message
			for _, m := range up.Received() {
				switch m.Role {
				case vtp.RoleNak:
					t.Fatalf("subscriber sent a nak: %+v", m)
				case vtp.RoleIAmAlive:
					alive = m
				}
			}
			if alive == nil || alive.Origin != vtptest.UpstreamIVO || alive.Response != "ivo://test.broker/downstream" {
				t.Fatalf("iamalive reply %+v", alive)
			}
			if !s.WaitEvents(3, deliveryWait) {
				t.Fatalf("relayed %q", s.IVORNs())
			}
			time.Sleep(200 * time.Millisecond)
			if got := s.Events(); len(got) != 3 || !bytes.Equal(got[0], gbm) || !bytes.Equal(got[1], kill) || !bytes.Equal(got[2], noNS) {
				t.Fatalf("relayed %q, want the three distinct events once each", s.IVORNs())
			}
			if !waitUntil(deliveryWait, func() bool { return len(rec.got()) >= 3 }) {
				t.Fatalf("stage handled %d events, want 3", len(rec.got()))
			}
			time.Sleep(200 * time.Millisecond)
			if got := rec.got(); len(got) != 3 || !bytes.Equal(got[0], gbm) || !bytes.Equal(got[1], kill) || !bytes.Equal(got[2], noNS) {
				t.Fatalf("stage handled %d events, want the three distinct events once each", len(got))
			}
		})
	}
}

// The subscriber comes back after its upstream restarts; a handshake that
// keeps failing is retried with growing pauses, not in a tight loop.
func TestSubscriberReconnects(t *testing.T) {
	t.Run("upstream restart", func(t *testing.T) {
		db := t.TempDir()
		// Below the ephemeral range: while the upstream is down, the
		// subscriber's retries could otherwise take its port as their own.
		upAddr := fmt.Sprintf("127.0.0.1:%d", vtptest.FreePorts(t, 1)[0])
		up := start(t, func(c *broker.Config) {
			c.Bus.StoreDir = db
			c.Broadcast = []endpoint.Endpoint{tcp(upAddr)}
		})
		down := start(t, func(c *broker.Config) {
			c.Receive = nil
			c.Subscribe = []endpoint.Endpoint{tcp(upAddr)}
			c.Subscriber.Backoff = fastBackoff
		})
		s := subscribe(t, down, vtptest.Comet)
		if !waitUntil(10*time.Second, func() bool { return len(up.Stats().Subscribers) == 1 }) {
			t.Fatal("not subscribed")
		}
		mustAck(t, recvAddr(up), vtptest.WithIVORN(benchEvent(t), "ivo://test.author/restart#1"))
		if !s.WaitEvents(1, deliveryWait) {
			t.Fatal("first event not relayed")
		}
		shutdownNow(t, up)
		up2 := start(t, func(c *broker.Config) {
			c.Bus.StoreDir = db
			c.Broadcast = []endpoint.Endpoint{tcp(upAddr)}
		})
		if !waitUntil(10*time.Second, func() bool { return len(up2.Stats().Subscribers) == 1 }) {
			t.Fatal("did not resubscribe after the upstream restarted")
		}
		mustAck(t, recvAddr(up2), vtptest.WithIVORN(benchEvent(t), "ivo://test.author/restart#2"))
		if !s.WaitEvents(2, deliveryWait) {
			t.Fatalf("after the restart: %q", s.IVORNs())
		}
	})
	t.Run("failing handshake backs off", func(t *testing.T) {
		up, err := vtptest.StartUpstream(vtptest.ClosingUpstream)
		if err != nil {
			t.Fatal(err)
		}
		defer up.Close()
		start(t, func(c *broker.Config) {
			c.Receive = nil
			c.Subscribe = []endpoint.Endpoint{tcp(up.Addr())}
			c.Subscriber.Backoff = fastBackoff
			c.Subscriber.HealthyAfter = time.Second
		})
		time.Sleep(2 * time.Second)
		// 20 ms growing by half each time: about 9 attempts fit in 2 s. A
		// back-off reset on every connect would make hundreds.
		if n := up.Accepts(); n < 3 || n > 14 {
			t.Fatalf("%d connection attempts in 2 s, want a bounded, growing schedule", n)
		}
	})
	t.Run("silent upstream is dropped after the inactivity timeout", func(t *testing.T) {
		up, err := vtptest.StartUpstream(vtptest.SilentUpstream)
		if err != nil {
			t.Fatal(err)
		}
		defer up.Close()
		start(t, func(c *broker.Config) {
			c.Receive = nil
			c.Subscribe = []endpoint.Endpoint{tcp(up.Addr())}
			c.Subscriber.Backoff = fastBackoff
			c.Subscriber.InactivityTimeout = 300 * time.Millisecond
		})
		if !up.WaitFor(5*time.Second, func(u *vtptest.Upstream) bool { return u.Accepts() >= 3 }) {
			t.Fatalf("%d connections: a silent upstream must be dropped and reconnected", up.Accepts())
		}
	})
}

// The default back-off grows to Comet's 60 s cap: over one minute of
// failures there are at most about ten attempts.
func TestDefaultBackoffIsBounded(t *testing.T) {
	var total time.Duration
	attempts := 0
	for n := 1; total < time.Minute; n++ {
		d := ingressBackoff(n)
		if d < 1500*time.Millisecond && n == 1 || d > 61*time.Second {
			t.Fatalf("attempt %d: %v", n, d)
		}
		total += d
		attempts++
	}
	if attempts > 10 {
		t.Fatalf("%d attempts in the first minute", attempts)
	}
}

func count(ms []*vtp.Message, role string) int {
	n := 0
	for _, m := range ms {
		if m.Role == role {
			n++
		}
	}
	return n
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func ingressBackoff(n int) time.Duration { return ingress.CometBackoff(n) }

// shutdownNow stops a broker started with start before the test ends (its
// cleanup then finds it stopped).
func shutdownNow(t *testing.T, b *broker.Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// An upstream that sends only garbage is disconnected and retried.
func TestGarbageFloodingUpstreamIsDisconnected(t *testing.T) {
	up, err := vtptest.StartUpstream(vtptest.GCNUpstream)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	start(t, func(c *broker.Config) {
		c.Receive = nil
		c.Subscribe = []endpoint.Endpoint{tcp(up.Addr())}
		c.Subscriber.Backoff = fastBackoff
	})
	if !up.WaitFor(5*time.Second, func(u *vtptest.Upstream) bool { return u.Connected() >= 1 }) {
		t.Fatal("no subscription")
	}
	for range ingress.MaxBadMessages {
		up.Send([]byte("garbage <"))
	}
	if !up.WaitFor(5*time.Second, func(u *vtptest.Upstream) bool { return u.Accepts() >= 2 }) {
		t.Fatalf("not disconnected and retried after %d bad messages (%d connections)", ingress.MaxBadMessages, up.Accepts())
	}
}
