package abuse

import (
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/comet-go/comet/egress"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// The whitelist reload behind SIGHUP ((*broker.Broker).Reload): new lists
// apply to connections accepted from then on, connections already open
// are kept, a bad list changes neither list, and reloading under load
// neither races nor loses a submission.
func TestReloadWhitelists(t *testing.T) {
	h := start(t, func(c *broker.Config) {
		c.Receiver.Whitelist = mustWhitelist([]string{"127.0.0.1/32"})
		c.Broadcaster.Whitelist = mustWhitelist([]string{"127.0.0.1/32"})
	})
	one := &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}
	two := &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}
	submitFrom := func(src *net.TCPAddr) *vtp.Message {
		t.Helper()
		ev, _ := goodEvent("reload")
		m, err := vtptest.SubmitFrom(src, h.recv(), ev, healthyWait)
		if err != nil {
			t.Fatalf("submission from %s: %v", src, err)
		}
		return m
	}
	allowed := func(src *net.TCPAddr) bool { m := submitFrom(src); return m != nil && m.Role == vtp.RoleAck }
	subscribes := func(src *net.TCPAddr) bool {
		t.Helper()
		s, err := vtptest.DialFrom(src, h.cast(), vtptest.Comet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return !s.WaitFor(time.Second, func(s *vtptest.Subscriber) bool { return s.Closed() })
	}

	if allowed(two) || subscribes(two) {
		t.Fatal("127.0.0.2 served before the reload")
	}
	if h.rejected(ingress.RejectWhitelist) != 1 || h.drops(egress.DropWhitelist) != 1 {
		t.Errorf("refusals not counted: %+v", h.b.Stats())
	}

	if err := h.b.Reload([]string{"127.0.0.2/32"}, []string{"127.0.0.0/255.255.255.252"}); err != nil {
		t.Fatal(err)
	}
	if !allowed(two) || !subscribes(two) {
		t.Fatal("127.0.0.2 refused after the reload allowed it")
	}
	if allowed(one) {
		t.Fatal("127.0.0.1 still allowed to submit after the reload removed it")
	}
	// Connections accepted before the reload are kept: the subscribers
	// from 127.0.0.1 still receive.
	ev, iv := goodEvent("kept")
	if m, err := vtptest.SubmitFrom(two, h.recv(), ev, healthyWait); err != nil || m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("submission from 127.0.0.2: %+v %v", m, err)
	}
	if !h.sub.WaitFor(healthyWait, func(s *vtptest.Subscriber) bool { return slices.Contains(s.IVORNs(), iv) }) {
		t.Fatal("a subscriber connected before the reload lost its subscription")
	}

	// A bad list changes neither list.
	for _, bad := range [][2][]string{
		{{"not-a-network"}, {"127.0.0.1/32"}},
		{{"127.0.0.1/32"}, {"300.0.0.0/8"}},
		{{"127.0.0.1/33"}, nil},
	} {
		if err := h.b.Reload(bad[0], bad[1]); err == nil {
			t.Errorf("Reload(%q, %q) accepted", bad[0], bad[1])
		}
	}
	if !allowed(two) || allowed(one) {
		t.Fatal("a refused reload changed the receive whitelist")
	}
	if !subscribes(two) {
		t.Fatal("a refused reload changed the broadcast whitelist")
	}

	// nil is the default: everyone.
	if err := h.b.Reload(nil, nil); err != nil {
		t.Fatal(err)
	}
	if !allowed(one) || !allowed(two) {
		t.Fatal("Reload(nil, nil) did not restore the default")
	}

	// Reloading while 200 authors submit: every list includes 127.0.0.1,
	// so every submission is acked.
	stop := make(chan struct{})
	var reloads sync.WaitGroup
	reloads.Go(func() {
		lists := [][]string{{"127.0.0.1/32"}, {"127.0.0.0/8", "10.0.0.0/8"}, nil}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := h.b.Reload(lists[i%3], lists[(i+1)%3]); err != nil {
				t.Errorf("reload: %v", err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for range 200 {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ev, iv := goodEvent("under-reload")
			if m, err := vtptest.SubmitFrom(one, h.recv(), ev, 10*time.Second); err != nil || m == nil || m.Role != vtp.RoleAck {
				t.Errorf("submission %s during reloads: %+v %v", iv, m, err)
			}
		})
	}
	wg.Wait()
	close(stop)
	reloads.Wait()
	if err := h.b.Reload(nil, nil); err != nil {
		t.Fatal(err)
	}
	h.healthy()
}
