package accept

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/internal/tlstest"
)

// On an ssl: listener the loop hands over TLS connections, each
// handshaken in its own goroutine within HandshakeTimeout of accept: a
// plaintext peer and a silent one are refused (RefusedTLS, with their
// kind) while a good client is served; the handshakes under way when the
// loop stops are closed, and nothing is left running.
func TestLoopHandshakes(t *testing.T) {
	p := tlstest.NewPKI(t)
	ep, err := endpoint.ParseServer(p.SSL("loop", ""))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := ep.Listen()
	if err != nil {
		t.Fatal(err)
	}
	baseline := runtime.NumGoroutine()
	var mu sync.Mutex
	refused := map[Refusal]int{}
	failed := map[endpoint.Failure]int{}
	var closing atomic.Bool
	admitted := make(chan net.Conn, 8)
	done := make(chan error, 1)
	const timeout = 500 * time.Millisecond
	go func() {
		done <- Loop(ln, Policy{
			Limits:           Limits{MaxConnsPerPeer: 4},
			Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
			HandshakeTimeout: timeout,
			Refused:          func(r Refusal) { mu.Lock(); refused[r]++; mu.Unlock() },
			HandshakeFailed:  func(f endpoint.Failure) { mu.Lock(); failed[f]++; mu.Unlock() },
		}, closing.Load, func(c net.Conn) { admitted <- c })
	}()
	count := func() (int, int, int) {
		mu.Lock()
		defer mu.Unlock()
		return refused[RefusedTLS], failed[endpoint.FailNotTLS], failed[endpoint.FailTimeout]
	}

	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	plain, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.Write([]byte("\x00\x00\x00\x05<?xml"))

	// A good client is served while the silent one holds its handshake.
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: p.CA.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case conn := <-admitted:
		if _, ok := conn.(*tls.Conn); !ok {
			t.Fatalf("handed %T, want a TLS connection", conn)
		}
		if at := HandshakeStart(conn); at.IsZero() || time.Since(at) > 5*time.Second {
			t.Errorf("HandshakeStart %v", at)
		}
		conn.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the TLS client was not handed over")
	}
	if !waitFor(5*time.Second, func() bool { r, n, s := count(); return r == 2 && n == 1 && s == 1 }) {
		r, n, s := count()
		t.Fatalf("refused %d (not TLS %d, timeout %d), want 2 (1, 1)", r, n, s)
	}

	// A handshake under way when the loop stops is closed, not waited for.
	hanging, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hanging.Close()
	time.Sleep(50 * time.Millisecond)
	closing.Store(true)
	ln.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(timeout / 2):
		t.Fatal("the loop waited for a handshake instead of closing it")
	}
	hanging.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := hanging.Read(make([]byte, 1)); err == nil {
		t.Error("the pending handshake's connection was left open")
	}
	if r, _, _ := count(); r != 2 {
		t.Errorf("the closed handshake was counted as a refusal (%d)", r)
	}
	if !waitFor(5*time.Second, func() bool { return runtime.NumGoroutine() <= baseline+1 }) {
		t.Errorf("%d goroutines after the loop, %d before", runtime.NumGoroutine(), baseline)
	}
}

func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}
