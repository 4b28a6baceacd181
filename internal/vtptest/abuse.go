package vtptest

import (
	"bytes"
	"net"
	"regexp"
	"sync"
	"time"

	"github.com/comet-go/comet/vtp"
)

// SendRaw writes raw bytes (no framing added) to every subscriber: hostile
// length prefixes, truncated frames, random bytes.
func (u *Upstream) SendRaw(b []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.conns {
		c.Write(b)
	}
}

// Tap is a subscriber that records every frame the broker sends exactly as
// received, before any parsing, so a test can check that no byte of a
// hostile payload was ever forwarded even if it is not a parsable
// VOEvent. It answers authenticate (no filters) and iamalive as Comet
// does and acknowledges anything else that carries an ivorn attribute.
type Tap struct {
	conn net.Conn

	mu     sync.Mutex
	frames [][]byte
	notify chan struct{}
	done   chan struct{}
}

var ivornAttr = regexp.MustCompile(`ivorn\s*=\s*["']([^"']*)["']`)

// DialTap connects a Tap.
func DialTap(addr string) (*Tap, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	t := &Tap{conn: conn, notify: make(chan struct{}, 1), done: make(chan struct{})}
	go t.loop()
	return t, nil
}

func (t *Tap) loop() {
	defer close(t.done)
	fr := vtp.NewFrameReader(t.conn, 1<<20)
	for {
		p, err := fr.ReadFrame()
		if err != nil {
			t.wake()
			return
		}
		t.mu.Lock()
		t.frames = append(t.frames, p)
		t.mu.Unlock()
		now := time.Now()
		var reply []byte
		if m, err := vtp.ParseTransport(p); err == nil {
			switch m.Role {
			case vtp.RoleIAmAlive:
				reply = vtp.IAmAlive(m.Origin, "ivo://test.subscriber/tap", now)
			case vtp.RoleAuthenticate:
				reply = vtp.AuthenticateReply(m.Origin, "ivo://test.subscriber/tap", nil, now)
			}
		} else if sm := ivornAttr.FindSubmatch(p); sm != nil {
			reply = vtp.Ack(string(sm[1]), "ivo://test.subscriber/tap", now)
		}
		if reply != nil {
			if vtp.WriteFrame(t.conn, reply) != nil {
				t.wake()
				return
			}
		}
		t.wake()
	}
}

func (t *Tap) wake() {
	select {
	case t.notify <- struct{}{}:
	default:
	}
}

// Close disconnects.
func (t *Tap) Close() { t.conn.Close(); <-t.done }

// Closed reports whether the broker has ended the connection.
func (t *Tap) Closed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// LocalAddr is the tap's end of the connection (the broker's peer).
func (t *Tap) LocalAddr() string { return t.conn.LocalAddr().String() }

// Frames returns every frame received so far.
func (t *Tap) Frames() [][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([][]byte(nil), t.frames...)
}

// Find returns the first frame received that contains s, or nil.
func (t *Tap) Find(s []byte) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range t.frames {
		if bytes.Contains(f, s) {
			return f
		}
	}
	return nil
}

// WaitFor waits until a frame containing s has arrived, or timeout.
func (t *Tap) WaitFor(s []byte, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if t.Find(s) != nil {
			return true
		}
		select {
		case <-t.notify:
		case <-t.done:
			return t.Find(s) != nil
		case <-deadline.C:
			return t.Find(s) != nil
		}
	}
}
