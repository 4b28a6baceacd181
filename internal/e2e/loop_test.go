package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// network starts one comet process per entry of upstreams; broker i
// subscribes to the brokers listed in upstreams[i]. It waits until every
// subscription is connected and returns the ports of each broker.
func network(t *testing.T, upstreams [][]int) []ports {
	t.Helper()
	ps := make([]ports, len(upstreams))
	for i := range ps {
		ps[i] = newPorts(t)
	}
	procs := make([]*proc, len(ps))
	for i, ups := range upstreams {
		args := []string{"--node", fmt.Sprintf("n%d", i), "--local-ivo", fmt.Sprintf("ivo://test.broker/n%d", i)}
		for _, u := range ups {
			args = append(args, "--subscribe", ps[u].castAddr())
		}
		procs[i] = startComet(t, t.TempDir(), ps[i], args...)
	}
	// Brokers started before their upstream retry after Comet's back-off
	// (1.5-2.5 s for the first retry).
	deadline := time.Now().Add(wait)
	for i, ups := range upstreams {
		for strings.Count(procs[i].out.String(), "connected to upstream broker") < len(ups) {
			if time.Now().After(deadline) {
				t.Fatalf("broker %d: subscriptions not connected:\n%s", i, procs[i].out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return ps
}

// checkExactlyOnce submits one event to each broker and checks that every
// subscriber of every broker receives each event exactly once.
func checkExactlyOnce(t *testing.T, ps []ports) {
	t.Helper()
	subs := make([]*vtptest.Subscriber, len(ps))
	for i, p := range ps {
		subs[i] = dial(t, p.castAddr())
	}
	var ivorns []string
	for i, p := range ps {
		ivorn := fmt.Sprintf("ivo://test.author/loop#%s-from-%d", t.Name(), i)
		ivorns = append(ivorns, ivorn)
		if m := submit(t, p.recvAddr(), vtptest.WithIVORN(benchEvent(t), ivorn)); m == nil || m.Role != vtp.RoleAck {
			t.Fatalf("submission to broker %d: %+v", i, m)
		}
	}
	for i, s := range subs {
		if !s.WaitEvents(len(ps), wait) {
			t.Fatalf("subscriber of broker %d got %q", i, s.IVORNs())
		}
	}
	// Anything still circulating would show up now.
	time.Sleep(time.Second)
	for i, s := range subs {
		got := map[string]int{}
		for _, iv := range s.IVORNs() {
			got[iv]++
		}
		for _, iv := range ivorns {
			if got[iv] != 1 {
				t.Errorf("subscriber of broker %d got %s %d times", i, iv, got[iv])
			}
		}
		if len(s.IVORNs()) != len(ivorns) {
			t.Errorf("subscriber of broker %d got %d events, want %d: %q", i, len(s.IVORNs()), len(ivorns), s.IVORNs())
		}
	}
}

// Two brokers subscribed to each other, each with an author: every event
// reaches every subscriber once and stops circulating.
func TestTwoBrokersSubscribedToEachOther(t *testing.T) {
	checkExactlyOnce(t, network(t, [][]int{{1}, {0}}))
}

// A ring of three brokers, each with an author.
func TestRingOfThreeBrokers(t *testing.T) {
	checkExactlyOnce(t, network(t, [][]int{{2}, {0}, {1}}))
}
