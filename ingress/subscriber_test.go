package ingress

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// An upstream event the bus cannot store is not acked: the subscription
// closes the connection, so that the upstream keeps the event; once the
// bus stores again, the same event sent again is stored and acked.
func TestSubscriptionDoesNotAckWhatItCouldNotStore(t *testing.T) {
	up, err := vtptest.StartUpstream(vtptest.GCNUpstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	b := openTestBus(t)
	fs := &failingStore{Store: b}
	fs.failing.Store(true)
	ep, err := endpoint.ParseClient(up.Addr(), 8099)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := NewSubscription(ep, fs, SubscriberConfig{LocalIVO: "ivo://test/broker", Node: "test",
		Backoff: func(int) time.Duration { return 50 * time.Millisecond }, Logger: vtptest.Logger(t, slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sub.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if !up.WaitFor(10*time.Second, func(u *vtptest.Upstream) bool { return u.Connected() == 1 }) {
		t.Fatal("the subscription did not connect")
	}
	ev := numbered(t, "GRB180116A_Fermi_GBM_Alert.xml", 7)
	acks := func(u *vtptest.Upstream) int {
		n := 0
		for _, m := range u.Received() {
			if m.Role == vtp.RoleAck {
				n++
			}
		}
		return n
	}
	up.Send(ev)
	// Connected still lists the closed connection.
	if !up.WaitFor(10*time.Second, func(u *vtptest.Upstream) bool { return u.Accepts() >= 2 && u.Connected() >= 2 }) {
		t.Fatal("the subscription did not close and reconnect after a failed store")
	}
	if n := acks(up); n != 0 {
		t.Fatalf("%d acks for an event that was not stored", n)
	}
	if n := sub.Rejections()[RejectStoreFailed]; n != 1 {
		t.Fatalf("store_failed = %d, want 1", n)
	}
	fs.failing.Store(false)
	up.Send(ev) // the upstream sends what was not acked again
	if !up.WaitFor(10*time.Second, func(u *vtptest.Upstream) bool { return acks(u) == 1 }) {
		t.Fatal("the event stored at the second try was not acked")
	}
	if n := len(stored(t, b)); n != 1 {
		t.Fatalf("%d events stored, want 1", n)
	}
}
