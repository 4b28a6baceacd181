// Package accept is what the VTP listeners admit, shared by the receiver
// and the broadcaster: the accept loop (whitelist check at accept, where a
// refused peer is closed at once with no bytes sent; connection limits;
// the TLS handshake of ssl: listeners, each in its own goroutine and
// within a deadline; back-off on transient failures such as running out
// of file descriptors, instead of spinning) and the Gate that bounds the
// costly checks any peer can ask for.
package accept

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/whitelist"
)

// MaxBackoff caps the pause after consecutive transient accept failures.
const MaxBackoff = time.Second

// DefaultHandshakeTimeout bounds a TLS handshake, from accept, when the
// Policy does not say (the broker gives --receive-timeout).
const DefaultHandshakeTimeout = 20 * time.Second

// Refusal is why a connection was closed at accept.
type Refusal uint8

const (
	// RefusedWhitelist: the peer is not in the listener's whitelist.
	RefusedWhitelist Refusal = iota + 1
	// RefusedMaxConns: the listener holds Limits.MaxConns connections.
	RefusedMaxConns
	// RefusedMaxConnsPerPeer: the peer's address holds
	// Limits.MaxConnsPerPeer of them.
	RefusedMaxConnsPerPeer
	// RefusedTLS: the TLS handshake of an ssl: listener failed (its kind
	// is an endpoint.Failure).
	RefusedTLS
)

// MaxRefusal is the last Refusal. A role that counts refusals among its
// own reasons (ingress.Rejection, egress.DropCause) gives them the same
// values and numbers its own above this.
const MaxRefusal = RefusedTLS

// String is the refusal's label in logs and metrics.
func (r Refusal) String() string {
	switch r {
	case RefusedWhitelist:
		return "whitelist"
	case RefusedMaxConns:
		return "max_connections"
	case RefusedMaxConnsPerPeer:
		return "max_connections_per_peer"
	case RefusedTLS:
		return "tls"
	}
	return "Refusal(" + strconv.Itoa(int(r)) + ")"
}

// Policy is what one listener admits.
type Policy struct {
	Whitelist *whitelist.List // nil admits every peer
	Limits    Limits
	Logger    *slog.Logger
	// Refused, if set, is told of every connection closed at accept (the
	// role counts them).
	Refused func(Refusal)
	// HandshakeTimeout bounds the TLS handshake on an ssl: listener,
	// counted from accept; 0 = DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// HandshakeFailed, if set, is told the kind of every failed TLS
	// handshake (counted as RefusedTLS too).
	HandshakeFailed func(endpoint.Failure)
}

// handshaker is a listener whose connections start with a TLS handshake
// (*endpoint.TLSListener).
type handshaker interface {
	Handshake(conn net.Conn, deadline time.Time) (*tls.Conn, error)
}

// Loop accepts connections on ln and hands each admitted one to handle (which
// must not block: start a goroutine, and close the connection when done, which
// frees its slot under the limits). It returns nil once closing reports true
// after an accept error (the owner closed the listener), or the first
// permanent error.
//
// On an ssl: listener each admitted connection first completes its TLS
// handshake in a goroutine of its own, within HandshakeTimeout of accept,
// holding its slot; handle then gets the TLS connection. A failed
// handshake is one log line with the peer and why. Loop closes the
// handshakes still under way when it returns, and waits for them.
func Loop(ln net.Listener, p Policy, closing func() bool, handle func(net.Conn)) error {
	lim := newLimiter(p.Limits)
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	refuse := func(conn net.Conn, r Refusal, why string) {
		// Counted before the close, so a peer that sees it closed finds
		// it counted.
		if p.Refused != nil {
			p.Refused(r)
		}
		log.Warn("connection refused: "+why, "peer", conn.RemoteAddr().String(), "reason", r)
		conn.Close()
	}
	var hs *handshakes
	if h, ok := ln.(handshaker); ok {
		hs = &handshakes{h: h, p: p, log: log, closing: closing, handle: handle, pending: make(map[net.Conn]struct{})}
		if hs.p.HandshakeTimeout <= 0 {
			hs.p.HandshakeTimeout = DefaultHandshakeTimeout
		}
		defer hs.stop()
	}
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if closing() {
				return nil
			}
			if isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), MaxBackoff)
				log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		accepted := time.Now()
		backoff = 0
		if p.Whitelist != nil && !p.Whitelist.Allows(conn.RemoteAddr()) {
			refuse(conn, RefusedWhitelist, "peer not in whitelist")
			continue
		}
		release, refused := lim.acquire(conn.RemoteAddr())
		switch refused {
		case RefusedMaxConns:
			refuse(conn, refused, "connection limit of the listener reached")
			continue
		case RefusedMaxConnsPerPeer:
			refuse(conn, refused, "connection limit per source address reached")
			continue
		}
		lc := &limitedConn{Conn: conn, release: release, accepted: accepted}
		if hs != nil {
			hs.start(lc)
			continue
		}
		handle(lc)
	}
}

// handshakes are the TLS handshakes one Loop has under way, each in its
// own goroutine.
type handshakes struct {
	h       handshaker
	p       Policy
	log     *slog.Logger
	closing func() bool
	handle  func(net.Conn)

	mu      sync.Mutex
	pending map[net.Conn]struct{}
	stopped bool
	wg      sync.WaitGroup
}

func (hs *handshakes) start(conn *limitedConn) {
	hs.mu.Lock()
	if hs.stopped {
		hs.mu.Unlock()
		conn.Close()
		return
	}
	hs.pending[conn] = struct{}{}
	hs.wg.Add(1)
	hs.mu.Unlock()
	go func() {
		defer hs.wg.Done()
		tc, err := hs.h.Handshake(conn, conn.accepted.Add(hs.p.HandshakeTimeout))
		hs.mu.Lock()
		defer hs.mu.Unlock()
		delete(hs.pending, conn)
		if err != nil {
			defer conn.Close()
			if hs.stopped {
				return // closed by stop: not the peer's failure
			}
			var he *endpoint.HandshakeError
			failure := endpoint.FailOther
			if errors.As(err, &he) {
				failure = he.Failure
			}
			// Counted before the close, as refusals at accept are.
			if hs.p.Refused != nil {
				hs.p.Refused(RefusedTLS)
			}
			if hs.p.HandshakeFailed != nil {
				hs.p.HandshakeFailed(failure)
			}
			hs.log.Warn("TLS handshake failed", "peer", conn.RemoteAddr().String(), "failure", failure, "reason", err)
			return
		}
		// Under mu, so that nothing is handed over once stop has begun.
		if hs.stopped || hs.closing() {
			tc.Close()
			return
		}
		hs.handle(tc)
	}()
}

// stop closes the handshakes under way and waits for their goroutines.
func (hs *handshakes) stop() {
	hs.mu.Lock()
	hs.stopped = true
	for c := range hs.pending {
		c.Close()
	}
	hs.mu.Unlock()
	hs.wg.Wait()
}

// HandshakeStart is when the TLS handshake of a connection Loop handed
// over began: when it was accepted. It is the zero time for a plaintext
// connection, which is handed over as soon as it is accepted.
func HandshakeStart(conn net.Conn) time.Time {
	if tc, ok := conn.(*tls.Conn); ok {
		if lc, ok := tc.NetConn().(*limitedConn); ok {
			return lc.accepted
		}
	}
	return time.Time{}
}

func isTemporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
