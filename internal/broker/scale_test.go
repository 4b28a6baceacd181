package broker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/stages"
	"github.com/comet-go/comet/vtp"
)

// slowRecorder is a stage that takes a little time per event, so that two
// workers sharing its consumer both get work.
type slowRecorder struct {
	recorder
	delay time.Duration
}

func (r *slowRecorder) Handle(ctx context.Context, ev *bus.Event) error {
	time.Sleep(r.delay)
	return r.recorder.Handle(ctx, ev)
}

// externalBus is the URL of a NATS JetStream server standing in for the
// cluster the roles share.
func externalBus(t *testing.T) string {
	return vtptest.NATSServer(t, &server.Options{MaxPayload: 2 << 20}).ClientURL()
}

// Scaled out, each role runs alone against one external bus: two ingress
// processes (receivers only), two egress processes (broadcasters only,
// each its own node) and two stage workers of one handler, all started at
// once (provisioning is idempotent). Every event accepted by either
// ingress reaches the subscribers of both egresses exactly once, and is
// handled by exactly one of the two workers, which share the work.
func TestRolesAloneShareOneExternalBus(t *testing.T) {
	url := externalBus(t)
	loop := []endpoint.Endpoint{{Network: "tcp", Address: "127.0.0.1:0"}}
	workers := []*slowRecorder{{delay: 2 * time.Millisecond}, {delay: 2 * time.Millisecond}}
	configs := []func(*broker.Config){
		func(c *broker.Config) { c.Broadcast, c.Node = nil, "ingress-a" },
		func(c *broker.Config) { c.Broadcast, c.Node = nil, "ingress-b" },
		func(c *broker.Config) { c.Receive, c.Node = nil, "egress-a" },
		func(c *broker.Config) { c.Receive, c.Node = nil, "egress-b" },
		func(c *broker.Config) {
			c.Receive, c.Broadcast, c.Node = nil, nil, "stage-a"
			c.Stages.Stages = []stages.Stage{workers[0]}
		},
		func(c *broker.Config) {
			c.Receive, c.Broadcast, c.Node = nil, nil, "stage-b"
			c.Stages.Stages = []stages.Stage{workers[1]}
		},
	}
	brokers := make([]*broker.Broker, len(configs))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, mutate := range configs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := start(t, func(c *broker.Config) {
				c.Receive, c.Broadcast = loop, loop
				c.Bus.URL, c.Bus.StoreDir = url, ""
				c.Logger = quietLogger()
				mutate(c)
			})
			mu.Lock()
			brokers[i] = b
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ingresses, egresses := brokers[:2], brokers[2:4]
	var subs []*vtptest.Subscriber
	for _, e := range egresses {
		for range 2 {
			s, err := vtptest.Dial(castAddr(e), vtptest.Comet)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			subs = append(subs, s)
		}
	}
	for _, e := range egresses {
		if !waitUntil(10*time.Second, func() bool { return len(e.Stats().Subscribers) == 2 }) {
			t.Fatal("subscribers did not connect")
		}
	}

	tmpl := benchEvent(t)
	const n = 200
	want := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprintf("ivo://test.author/scale#%d", i)
		m, err := vtptest.Submit(recvAddr(ingresses[i%2]), vtptest.WithIVORN(tmpl, want[i]), 10*time.Second)
		if err != nil || m.Role != vtp.RoleAck {
			t.Fatalf("event %d through ingress %d: %+v %v", i, i%2, m, err)
		}
	}
	for i, s := range subs {
		if !s.WaitEvents(n, 20*time.Second) {
			t.Fatalf("subscriber %d got %d of %d events", i, s.Count(), n)
		}
	}
	time.Sleep(200 * time.Millisecond) // anything extra would show now
	for i, s := range subs {
		got := s.IVORNs()
		if len(got) != n {
			t.Errorf("subscriber %d (egress %d) got %d events, want %d exactly once", i, i/2, len(got), n)
		}
		seen := map[string]bool{}
		for _, iv := range got {
			if seen[iv] {
				t.Errorf("subscriber %d got %s twice", i, iv)
			}
			seen[iv] = true
		}
	}

	handled := func() int { return len(workers[0].got()) + len(workers[1].got()) }
	if !waitUntil(20*time.Second, func() bool { return handled() >= n }) {
		t.Fatalf("stage workers handled %d of %d events", handled(), n)
	}
	time.Sleep(200 * time.Millisecond)
	byWorker := map[string]int{}
	for w, r := range workers {
		for _, p := range r.got() {
			iv := ivornOf(t, p)
			if prev, dup := byWorker[iv]; dup {
				t.Errorf("%s handled by worker %d and by worker %d", iv, prev, w)
			}
			byWorker[iv] = w
		}
	}
	for _, iv := range want {
		if _, ok := byWorker[iv]; !ok {
			t.Errorf("%s handled by no worker", iv)
		}
	}
	a, b := len(workers[0].got()), len(workers[1].got())
	if a == 0 || b == 0 {
		t.Errorf("workers handled %d and %d events: the work is not shared", a, b)
	}
	t.Logf("worker shares: %d / %d", a, b)
}

// The same event sent to two ingress processes at the same moment is
// accepted by one and refused as previously seen by the other: the check
// is one atomic step on the shared bus. It is broadcast once.
func TestSameEventAtTwoIngressesAcceptedOnce(t *testing.T) {
	url := externalBus(t)
	in := func(node string) *broker.Broker {
		return start(t, func(c *broker.Config) {
			c.Broadcast, c.Bus.URL, c.Bus.StoreDir, c.Node, c.Logger = nil, url, "", node, quietLogger()
		})
	}
	a, b := in("ingress-a"), in("ingress-b")
	e := start(t, func(c *broker.Config) {
		c.Receive, c.Bus.URL, c.Bus.StoreDir, c.Node, c.Logger = nil, url, "", "egress", quietLogger()
	})
	sub, err := vtptest.Dial(castAddr(e), vtptest.Comet)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if !waitUntil(10*time.Second, func() bool { return len(e.Stats().Subscribers) == 1 }) {
		t.Fatal("subscriber did not connect")
	}
	tmpl := benchEvent(t)
	const rounds = 20
	for r := range rounds {
		ev := vtptest.WithIVORN(tmpl, fmt.Sprintf("ivo://test.author/race#%d", r))
		replies := make([]*vtp.Message, 2)
		var wg sync.WaitGroup
		for i, ing := range []*broker.Broker{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m, err := vtptest.Submit(recvAddr(ing), ev, 10*time.Second)
				if err != nil {
					t.Errorf("round %d ingress %d: %v", r, i, err)
					return
				}
				replies[i] = m
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		acks, naks := 0, 0
		for _, m := range replies {
			switch {
			case m.Role == vtp.RoleAck:
				acks++
			case m.Role == vtp.RoleNak && m.Result == "Event rejected: Previously seen by this broker":
				naks++
			}
		}
		if acks != 1 || naks != 1 {
			t.Fatalf("round %d: %d acks and %d 'Previously seen' naks (%+v, %+v), want one of each", r, acks, naks, replies[0], replies[1])
		}
	}
	if !sub.WaitEvents(rounds, 10*time.Second) {
		t.Fatalf("subscriber got %d of %d events", sub.Count(), rounds)
	}
	time.Sleep(300 * time.Millisecond)
	if got := sub.Count(); got != rounds {
		t.Errorf("subscriber got %d events, want each of the %d once", got, rounds)
	}
}

// A backlog larger than a subscriber's in-flight window (an egress coming
// back after the bus or the egress itself was down) reaches a subscriber
// that keeps acknowledging, all of it, without dropping it.
func TestBacklogBurstDoesNotDropAHealthySubscriber(t *testing.T) {
	url := externalBus(t)
	ingress := start(t, func(c *broker.Config) {
		c.Broadcast, c.Bus.URL, c.Bus.StoreDir, c.Node, c.Logger = nil, url, "", "ingress", quietLogger()
	})
	egressCfg := func(c *broker.Config) {
		c.Receive, c.Bus.URL, c.Bus.StoreDir, c.Node, c.Logger = nil, url, "", "egress", quietLogger()
		c.Broadcaster.Grace = 500 * time.Millisecond
	}
	first := start(t, egressCfg) // creates the durable egress-egress
	// One event through it proves the durable exists and is consumed.
	probe, err := vtptest.Dial(castAddr(first), vtptest.Comet)
	if err != nil {
		t.Fatal(err)
	}
	if !waitUntil(10*time.Second, func() bool { return len(first.Stats().Subscribers) == 1 }) {
		t.Fatal("probe subscriber did not connect")
	}
	mustAck(t, recvAddr(ingress), vtptest.WithIVORN(benchEvent(t), "ivo://test.author/burst#probe"))
	if !probe.WaitEvents(1, 10*time.Second) {
		t.Fatal("probe event not delivered")
	}
	probe.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	const n = 2500 // more than egress.DefaultMaxInFlight (1024) and a queue (1024)
	tmpl := benchEvent(t)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			m, err := vtptest.Submit(recvAddr(ingress), vtptest.WithIVORN(tmpl, fmt.Sprintf("ivo://test.author/burst#%d", i)), 10*time.Second)
			if err != nil || m.Role != vtp.RoleAck {
				t.Errorf("event %d: %+v %v", i, m, err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	second := start(t, egressCfg) // replays the backlog after the grace
	sub, err := vtptest.Dial(castAddr(second), vtptest.Comet)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if !sub.WaitEvents(n, 60*time.Second) {
		t.Fatalf("subscriber got %d of %d backlog events (closed: %v, %v)", sub.Count(), n, sub.Closed(), sub.Err())
	}
	if sub.Closed() {
		t.Fatalf("healthy subscriber dropped: %v", sub.Err())
	}
}
