// Package accept is what the VTP listeners admit, shared by the receiver
// and the broadcaster: the accept loop (whitelist check at accept, where a
// refused peer is closed at once with no bytes sent; connection limits;
// back-off on transient failures such as running out of file descriptors,
// instead of spinning) and the Gate that bounds the costly checks any peer
// can ask for.
package accept

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/comet-go/comet/whitelist"
)

// MaxBackoff caps the pause after consecutive transient accept failures.
const MaxBackoff = time.Second

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
)

// MaxRefusal is the last Refusal. A role that counts refusals among its
// own reasons (ingress.Rejection, egress.DropCause) gives them the same
// values and numbers its own above this.
const MaxRefusal = RefusedMaxConnsPerPeer

// String is the refusal's label in logs and metrics.
func (r Refusal) String() string {
	switch r {
	case RefusedWhitelist:
		return "whitelist"
	case RefusedMaxConns:
		return "max_connections"
	case RefusedMaxConnsPerPeer:
		return "max_connections_per_peer"
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
}

// Loop accepts connections on ln and hands each admitted one to handle (which
// must not block: start a goroutine, and close the connection when done, which
// frees its slot under the limits). It returns nil once closing reports true
// after an accept error (the owner closed the listener), or the first
// permanent error.
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
		handle(&limitedConn{Conn: conn, release: release})
	}
}

func isTemporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
