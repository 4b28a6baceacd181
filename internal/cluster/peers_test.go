package cluster

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/comet-go/comet/vtp"
)

const subscriberIVO = "ivo://test.subscriber/cluster"

// subscriber is one VTP subscriber connection that answers like Comet
// (authenticate, iamalive, an ack per event) and records every event's
// ivorn with the time it arrived.
type subscriber struct {
	name   string
	conn   net.Conn
	authed chan struct{}
	done   chan struct{}

	mu    sync.Mutex
	count map[string]int // receptions per ivorn
	times []arrival      // every reception, in order
	err   error          // why the connection ended
}

type arrival struct {
	ivorn string
	at    time.Time
}

func dialSubscriber(name, addr string, timeout time.Duration) (*subscriber, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, fmt.Errorf("subscriber %s: %w", name, err)
	}
	s := &subscriber{name: name, conn: conn, authed: make(chan struct{}), done: make(chan struct{}),
		count: map[string]int{}}
	go s.loop()
	select {
	case <-s.authed:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("subscriber %s: connection ended before authenticate: %v", name, s.Err())
	case <-time.After(timeout):
		conn.Close()
		<-s.done
		return nil, fmt.Errorf("subscriber %s: no authenticate request within %v", name, timeout)
	}
}

var ivornAttr = []byte(`ivorn="`)

func (s *subscriber) loop() {
	defer close(s.done)
	fr := vtp.NewFrameReader(bufio.NewReaderSize(s.conn, 64<<10), 1<<20)
	authed := false
	for {
		p, err := fr.ReadFrame()
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		now := time.Now()
		var reply []byte
		// Only Transport messages are parsed; events are acked after
		// finding their ivorn, which keeps this reader fast (the egress
		// drops a subscriber whose queue fills up).
		if !bytes.Contains(p[:min(len(p), 512)], []byte("VOEvent")) {
			m, err := vtp.ParseTransport(p)
			if err != nil {
				s.setErr(fmt.Errorf("bad Transport message: %v", err))
				return
			}
			switch m.Role {
			case vtp.RoleAuthenticate:
				reply = vtp.AuthenticateReply(m.Origin, subscriberIVO, nil, now)
			case vtp.RoleIAmAlive:
				reply = vtp.IAmAlive(m.Origin, subscriberIVO, now)
			}
			if reply != nil {
				if err := vtp.WriteFrame(s.conn, reply); err != nil {
					s.setErr(err)
					return
				}
			}
			if m.Role == vtp.RoleAuthenticate && !authed {
				authed = true
				close(s.authed)
			}
			continue
		}
		// A VOEvent: its root ivorn is the first ivorn attribute.
		i := bytes.Index(p, ivornAttr)
		if i < 0 {
			s.setErr(fmt.Errorf("frame without ivorn: %.200q", p))
			return
		}
		rest := p[i+len(ivornAttr):]
		j := bytes.IndexByte(rest, '"')
		if j < 0 {
			s.setErr(fmt.Errorf("unterminated ivorn: %.200q", p))
			return
		}
		ivorn := string(rest[:j])
		s.mu.Lock()
		s.count[ivorn]++
		s.times = append(s.times, arrival{ivorn, now})
		s.mu.Unlock()
		if err := vtp.WriteFrame(s.conn, vtp.Ack(ivorn, subscriberIVO, now)); err != nil {
			s.setErr(err)
			return
		}
	}
}

func (s *subscriber) setErr(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.conn.Close()
}

func (s *subscriber) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *subscriber) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *subscriber) close() { s.conn.Close(); <-s.done }

// has reports how many times ivorn was received.
func (s *subscriber) has(ivorn string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[ivorn]
}

// snapshot copies the receptions.
func (s *subscriber) snapshot() (map[string]int, []arrival) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(map[string]int, len(s.count))
	for k, v := range s.count {
		c[k] = v
	}
	return c, append([]arrival(nil), s.times...)
}
