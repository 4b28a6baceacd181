package accept

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/comet-go/comet/whitelist"
)

// A refused connection is closed at once with no bytes sent and reported
// with its typed reason; an admitted one holds a slot until it is closed.
func TestLoopRefusesAndCounts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl, _ := whitelist.New([]string{"127.0.0.1/32"})
	var mu sync.Mutex
	refused := map[Refusal]int{}
	var closing atomic.Bool
	admitted := make(chan net.Conn, 8)
	done := make(chan error, 1)
	go func() {
		done <- Loop(ln, Policy{
			Whitelist: wl,
			Limits:    Limits{MaxConns: 2, MaxConnsPerPeer: 1},
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
			Refused: func(r Refusal) {
				mu.Lock()
				refused[r]++
				mu.Unlock()
			},
		}, closing.Load, func(c net.Conn) { admitted <- c })
	}()
	dial := func(ip string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closedByServer := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(make([]byte, 1))
		return n == 0 && err == io.EOF
	}
	dial("127.0.0.1")
	first := <-admitted
	if c := dial("127.0.0.1"); !closedByServer(c) { // second from one peer
		t.Error("second connection from one peer not closed")
	}
	if c := dial("127.0.0.2"); !closedByServer(c) { // outside the whitelist
		t.Error("peer outside the whitelist not closed")
	}
	first.Close() // frees the peer's slot
	dial("127.0.0.1")
	select {
	case c := <-admitted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("slot not freed by Close")
	}
	mu.Lock()
	got := map[Refusal]int{RefusedMaxConnsPerPeer: refused[RefusedMaxConnsPerPeer], RefusedWhitelist: refused[RefusedWhitelist]}
	mu.Unlock()
	if got[RefusedMaxConnsPerPeer] != 1 || got[RefusedWhitelist] != 1 {
		t.Errorf("refusals %v", got)
	}
	closing.Store(true)
	ln.Close()
	if err := <-done; err != nil {
		t.Fatalf("Loop after close: %v", err)
	}
}

func TestGate(t *testing.T) {
	g := NewGate(1)
	if !g.Enter(nil) {
		t.Fatal("first Enter refused")
	}
	stop := make(chan struct{})
	close(stop)
	if g.Enter(stop) {
		t.Fatal("Enter got a second slot of one")
	}
	g.Leave()
	if !g.Enter(stop) {
		t.Fatal("slot not given back by Leave")
	}
	if n := cap(NewGate(0).slots); n < ChecksPerCPU {
		t.Errorf("default gate of %d slots", n)
	}
}
