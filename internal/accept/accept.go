// Package accept is the accept loop shared by the VTP listeners: whitelist
// check at accept (a refused peer is closed at once, with no bytes sent),
// and back-off on transient failures such as running out of file
// descriptors, instead of spinning.
package accept

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/comet-go/comet/whitelist"
)

// MaxBackoff caps the pause after consecutive transient accept failures.
const MaxBackoff = time.Second

// Loop accepts connections on ln and hands each allowed one to handle (which
// must not block: start a goroutine, and close the connection when done, which
// frees its slot under limits). It returns nil once closing reports true
// after an accept error (the owner closed the listener), or the first
// permanent error.
func Loop(ln net.Listener, allow *whitelist.List, limits Limits, log *slog.Logger, closing func() bool, handle func(net.Conn)) error {
	lim := newLimiter(limits)
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
		if allow != nil && !allow.Allows(conn.RemoteAddr()) {
			log.Warn("connection refused: peer not in whitelist", "peer", conn.RemoteAddr().String())
			conn.Close()
			continue
		}
		release, refused := lim.acquire(conn.RemoteAddr())
		if refused != "" {
			log.Warn("connection refused: "+refused, "peer", conn.RemoteAddr().String())
			conn.Close()
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
