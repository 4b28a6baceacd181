package bus

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/comet-go/comet/internal/vtptest"
)

// A consumer that misses its pull's heartbeats (a machine too busy to read
// them, or a network that holds the server's bytes back for a while) keeps
// its pull: the events the server sent it meanwhile are handed over as
// soon as they arrive, not left unacked until AckWait and behind newer
// ones. Found under load: 1,000 events acked, a third delivered, the rest
// 30 s late.
func TestConsumerKeepsItsPullThroughMissedHeartbeats(t *testing.T) {
	srv := vtptest.NATSServer(t, &server.Options{StoreDir: t.TempDir(), MaxPayload: int32(DefaultMaxPayload + HeaderRoom)})
	relay := newHoldingRelay(t, srv.Addr().String())
	consuming := openBus(t, Config{URL: "nats://" + relay.addr()})
	storing := openBus(t, Config{URL: srv.ClientURL(), Node: "ingress"})

	got := make(chan *Delivery, 100)
	c, err := consuming.ConsumeEvents(ctxT(t), "egress-heartbeat", func(d *Delivery) { d.Ack(); got <- d })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	for i := range 5 {
		ingest(t, storing, testEvent(i), Accepted)
		if d := recv(t, got); d.IVORN != testEvent(i).IVORN {
			t.Fatalf("delivered %s, want %s", d.IVORN, testEvent(i).IVORN)
		}
	}

	// The server's bytes are held back for longer than two heartbeats
	// while events are stored: the consumer sees its heartbeat missed.
	relay.hold()
	for i := 5; i < 10; i++ {
		ingest(t, storing, testEvent(i), Accepted)
	}
	time.Sleep(3 * PullHeartbeat)
	relay.release()

	// Well inside AckWait (30 s): the events come now, in order, once.
	deadline := time.After(DefaultAckWait / 3)
	for i := 5; i < 10; i++ {
		select {
		case d := <-got:
			if d.IVORN != testEvent(i).IVORN {
				t.Fatalf("delivered %s, want %s", d.IVORN, testEvent(i).IVORN)
			}
		case <-deadline:
			t.Fatalf("event %d not delivered within %v of the heartbeats resuming", i, DefaultAckWait/3)
		}
	}
	ingest(t, storing, testEvent(10), Accepted)
	if d := recv(t, got); d.IVORN != testEvent(10).IVORN {
		t.Fatalf("delivered %s after the pause, want %s", d.IVORN, testEvent(10).IVORN)
	}
}

// holdingRelay is a TCP relay in front of a NATS server that can hold back
// what the server sends (its clients' writes still go through): a real
// network path that goes quiet, without stopping the server.
type holdingRelay struct {
	ln net.Listener
	mu sync.Mutex
	// gate is closed while the server's bytes flow; hold replaces it.
	gate chan struct{}
	wg   sync.WaitGroup
}

func newHoldingRelay(t *testing.T, backend string) *holdingRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &holdingRelay{ln: ln, gate: make(chan struct{})}
	close(r.gate)
	var conns []net.Conn
	var connsMu sync.Mutex
	r.wg.Go(func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", backend)
			if err != nil {
				client.Close()
				continue
			}
			connsMu.Lock()
			conns = append(conns, client, server)
			connsMu.Unlock()
			r.wg.Go(func() { io.Copy(server, client); server.Close() })
			r.wg.Go(func() { r.copyHeld(client, server); client.Close() })
		}
	})
	t.Cleanup(func() {
		r.release()
		ln.Close()
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		r.wg.Wait()
	})
	return r
}

func (r *holdingRelay) addr() string { return r.ln.Addr().String() }

// copyHeld copies src to dst, waiting at the gate before each write.
func (r *holdingRelay) copyHeld(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			gate := r.gate
			r.mu.Unlock()
			<-gate
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// hold stops passing on what the server sends.
func (r *holdingRelay) hold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.gate:
		r.gate = make(chan struct{})
	default:
	}
}

// release passes on what was held and what follows.
func (r *holdingRelay) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.gate:
	default:
		close(r.gate)
	}
}
