// Package vtptest provides real-socket VTP peers for tests: an author that
// submits one event, and subscribers that behave like Comet's or like
// pygcn's (never answering authenticate, another Transport namespace,
// local-time stamps, one-line documents).
package vtptest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/voevent"
	"github.com/comet-go/comet/vtp"
)

// Submit sends payload as an author (vtp.Author) and returns the broker's
// receipt: the first ack or nak, whatever its Origin. A nil message with a
// nil error means the broker closed without a reply.
func Submit(addr string, payload []byte, timeout time.Duration) (*vtp.Message, error) {
	return SubmitFrom(nil, addr, payload, timeout)
}

// SubmitFrom is Submit from a chosen local address (e.g. 127.0.0.2).
func SubmitFrom(local net.Addr, addr string, payload []byte, timeout time.Duration) (*vtp.Message, error) {
	return submit(&vtp.Author{Dialer: net.Dialer{LocalAddr: local}, Timeout: timeout}, addr, payload)
}

// SubmitVia is Submit through an endpoint dialer: to a tls: target, say.
func SubmitVia(d *endpoint.Dialer, payload []byte, timeout time.Duration) (*vtp.Message, error) {
	return submit(&vtp.Author{Dial: d.Dial, Timeout: timeout}, "", payload)
}

func submit(a *vtp.Author, addr string, payload []byte) (*vtp.Message, error) {
	rc, err := a.Submit(context.Background(), "tcp", addr, payload, "")
	var se *vtp.SubmitError
	var ne net.Error
	switch {
	case err == nil:
		return rc.Message, nil
	case errors.As(err, &se) && se.Step == vtp.StepReceipt && !(errors.As(err, &ne) && ne.Timeout()):
		return nil, nil // closed (or reset) without a reply
	}
	return nil, err
}

// Mode selects how a Subscriber behaves.
type Mode int

const (
	// Comet answers authenticate (with Filters), iamalive and acks events,
	// writing Comet's own message format.
	Comet Mode = iota
	// Pygcn never answers authenticate, answers iamalive with pygcn's
	// one-line, other-namespace, local-time document, and acks events.
	Pygcn
	// Silent reads nothing at all (a subscriber that never reads).
	Silent
	// Mute behaves like Comet but never answers iamalive.
	Mute
	// NoAck behaves like Comet but never acknowledges events.
	NoAck
	// Naker behaves like Comet but naks every event.
	Naker
	// Slow behaves like Comet but takes SlowDelay over each event, like a
	// subscriber at the far end of a long, thin link.
	Slow
)

// SlowDelay is how long a Slow subscriber spends on each event.
const SlowDelay = 3 * time.Millisecond

// Subscriber is a test subscriber connection.
type Subscriber struct {
	Mode    Mode
	Filters []string
	IVO     string

	conn net.Conn
	// discard keeps only ivorns, not payloads (for benchmarks).
	discard bool

	mu        sync.Mutex
	events    [][]byte
	ivorns    []string
	transport []*vtp.Message
	notify    chan struct{}
	done      chan struct{}
	err       error
}

// Dial connects a subscriber and starts its reader.
func Dial(addr string, mode Mode, filters ...string) (*Subscriber, error) {
	return DialFrom(nil, addr, mode, filters...)
}

// DialCounting connects a Comet-like subscriber that keeps only the ivorns
// of the events it receives, for benchmarks with many events.
func DialCounting(addr string) (*Subscriber, error) {
	return dial(nil, addr, Comet, true, nil)
}

// DialFrom is Dial from a chosen local address.
func DialFrom(local net.Addr, addr string, mode Mode, filters ...string) (*Subscriber, error) {
	return dial(local, addr, mode, false, filters)
}

// DialVia connects a subscriber through an endpoint dialer: to a tls:
// target, say.
func DialVia(d *endpoint.Dialer, mode Mode, filters ...string) (*Subscriber, error) {
	conn, err := d.Dial(context.Background())
	if err != nil {
		return nil, err
	}
	return start(conn, mode, false, filters), nil
}

func dial(local net.Addr, addr string, mode Mode, discard bool, filters []string) (*Subscriber, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: local}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return start(conn, mode, discard, filters), nil
}

func start(conn net.Conn, mode Mode, discard bool, filters []string) *Subscriber {
	s := &Subscriber{Mode: mode, Filters: filters, IVO: "ivo://test.subscriber/listener", conn: conn, discard: discard,
		notify: make(chan struct{}, 1), done: make(chan struct{})}
	if mode == Silent {
		// Shrink the receive buffer so the broker's queue fills quickly.
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetReadBuffer(4096)
		}
		close(s.done)
		return s
	}
	go s.loop()
	return s
}

// LocalAddr is the subscriber's end of the connection, as the broker sees
// it as the peer.
func (s *Subscriber) LocalAddr() string { return s.conn.LocalAddr().String() }

// Close disconnects.
func (s *Subscriber) Close() { s.conn.Close(); <-s.done }

// PygcnIAmAlive is pygcn's keep-alive reply: string template, no newlines,
// the VTP namespace, local time with microseconds and no zone.
func PygcnIAmAlive(origin, ivo string, now time.Time) []byte {
	return []byte(`<?xml version='1.0' encoding='UTF-8'?><trn:Transport role="iamalive" version="1.0" xmlns:trn="http://telescope-networks.org/schema/Transport/v1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://telescope-networks.org/schema/Transport/v1.1 http://telescope-networks.org/schema/Transport-v1.1.xsd"><Origin>` +
		origin + `</Origin><Response>` + ivo + `</Response><TimeStamp>` +
		now.Local().Format("2006-01-02T15:04:05.000000") + `</TimeStamp></trn:Transport>`)
}

// PygcnAck is pygcn's receipt for an event.
func PygcnAck(ivorn, ivo string, now time.Time) []byte {
	return []byte(`<?xml version='1.0' encoding='UTF-8'?><trn:Transport role="ack" version="1.0" xmlns:trn="http://telescope-networks.org/schema/Transport/v1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://telescope-networks.org/schema/Transport/v1.1 http://telescope-networks.org/schema/Transport-v1.1.xsd"><Origin>` +
		ivorn + `</Origin><Response>` + ivo + `</Response><TimeStamp>` +
		now.Local().Format("2006-01-02T15:04:05.000000") + `</TimeStamp></trn:Transport>`)
}

func (s *Subscriber) loop() {
	defer close(s.done)
	fr := vtp.NewFrameReader(s.conn, 1<<20)
	for {
		payload, err := fr.ReadFrame()
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			s.wake()
			return
		}
		now := time.Now()
		info, err := voevent.Inspect(payload, voevent.Options{})
		if err != nil {
			s.setErr(fmt.Errorf("broker sent unparsable frame: %v", err))
			return
		}
		var reply []byte
		if voevent.IsVOEventRole(info.Role) {
			if s.Mode == Slow {
				time.Sleep(SlowDelay)
			}
			s.mu.Lock()
			if !s.discard {
				s.events = append(s.events, payload)
			}
			s.ivorns = append(s.ivorns, info.IVORN)
			s.mu.Unlock()
			switch s.Mode {
			case Pygcn:
				reply = PygcnAck(info.IVORN, s.IVO, now)
			case NoAck:
			case Naker:
				reply = vtp.Nak(info.IVORN, s.IVO, "not wanted", now)
			default:
				reply = vtp.Ack(info.IVORN, s.IVO, now)
			}
		} else {
			msg, err := vtp.ParseTransport(payload)
			if err != nil {
				s.setErr(fmt.Errorf("broker sent bad Transport message: %v", err))
				return
			}
			s.mu.Lock()
			s.transport = append(s.transport, msg)
			s.mu.Unlock()
			switch {
			case msg.Role == vtp.RoleIAmAlive && s.Mode == Pygcn:
				reply = PygcnIAmAlive(msg.Origin, s.IVO, now)
			case msg.Role == vtp.RoleIAmAlive && s.Mode != Mute:
				reply = vtp.IAmAlive(msg.Origin, s.IVO, now)
			case msg.Role == vtp.RoleAuthenticate && s.Mode != Pygcn:
				reply = vtp.AuthenticateReply(msg.Origin, s.IVO, s.Filters, now)
			}
		}
		if reply != nil {
			if err := vtp.WriteFrame(s.conn, reply); err != nil {
				s.setErr(err)
				return
			}
		}
		s.wake()
	}
}

func (s *Subscriber) setErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	s.conn.Close()
	s.wake()
}

func (s *Subscriber) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Events returns copies of the event payloads received so far.
func (s *Subscriber) Events() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.events...)
}

// IVORNs returns the ivorns of the events received so far, in order.
func (s *Subscriber) IVORNs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ivorns...)
}

// Transport returns the Transport messages received so far.
func (s *Subscriber) Transport() []*vtp.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*vtp.Message(nil), s.transport...)
}

// Err is the error that ended the connection, if any.
func (s *Subscriber) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Closed reports whether the connection has ended.
func (s *Subscriber) Closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// WaitFor waits until cond holds (checked after every message) or timeout.
func (s *Subscriber) WaitFor(timeout time.Duration, cond func(*Subscriber) bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if cond(s) {
			return true
		}
		select {
		case <-s.notify:
		case <-s.done:
			return cond(s)
		case <-deadline.C:
			return cond(s)
		}
	}
}

// Count is the number of events received so far.
func (s *Subscriber) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ivorns)
}

// WaitEvents waits for at least n events.
func (s *Subscriber) WaitEvents(n int, timeout time.Duration) bool {
	return s.WaitFor(timeout, func(s *Subscriber) bool { return s.Count() >= n })
}

// WaitRole waits until a Transport message with role has arrived n times.
func (s *Subscriber) WaitRole(role string, n int, timeout time.Duration) bool {
	return s.WaitFor(timeout, func(s *Subscriber) bool {
		c := 0
		for _, m := range s.Transport() {
			if m.Role == role {
				c++
			}
		}
		return c >= n
	})
}

// WithIVORN replaces the root ivorn attribute value of an event, keeping
// every other byte.
func WithIVORN(event []byte, ivorn string) []byte {
	s := string(event)
	i := strings.Index(s, "ivorn=")
	if i < 0 {
		panic("no ivorn attribute")
	}
	q := s[i+6]
	j := strings.IndexByte(s[i+7:], q)
	return []byte(s[:i+7] + ivorn + s[i+7+j:])
}

// WaitUntil polls cond until it holds or d has passed, and reports the
// last result.
func WaitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}
