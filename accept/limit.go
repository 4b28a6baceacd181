package accept

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Limits bound the connections one listener holds at once; 0 means no
// limit. A connection over a limit is closed at accept, with no bytes sent.
type Limits struct {
	MaxConns        int // in total
	MaxConnsPerPeer int // from one source address
}

// limiter counts a listener's open connections.
type limiter struct {
	Limits
	mu      sync.Mutex
	total   int
	perPeer map[netip.Addr]int
}

func newLimiter(l Limits) *limiter {
	return &limiter{Limits: l, perPeer: make(map[netip.Addr]int)}
}

// acquire takes a slot for a connection from addr, or reports which limit
// refused it (0 when none did).
func (l *limiter) acquire(addr net.Addr) (release func(), refused Refusal) {
	if l.MaxConns <= 0 && l.MaxConnsPerPeer <= 0 {
		return func() {}, 0
	}
	peer := peerAddr(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.MaxConns > 0 && l.total >= l.MaxConns {
		return nil, RefusedMaxConns
	}
	if l.MaxConnsPerPeer > 0 && peer.IsValid() && l.perPeer[peer] >= l.MaxConnsPerPeer {
		return nil, RefusedMaxConnsPerPeer
	}
	l.total++
	if peer.IsValid() {
		l.perPeer[peer]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if peer.IsValid() {
				if l.perPeer[peer]--; l.perPeer[peer] <= 0 {
					delete(l.perPeer, peer)
				}
			}
		})
	}, 0
}

// peerAddr is the source IP of a TCP peer; invalid for unix sockets, which
// count only towards the listener's total.
func peerAddr(addr net.Addr) netip.Addr {
	if t, ok := addr.(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(t.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// limitedConn gives its slot back when closed.
type limitedConn struct {
	net.Conn
	release  func()
	accepted time.Time
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// CloseWrite keeps half-close available through the wrapper.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
