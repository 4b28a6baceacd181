package loadgen

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/comet-go/comet/vtp"
)

// NullBroker is the ceiling a VTP broker is measured against on the same
// machine: it frames, acks and forwards, and nothing else. A submission's
// frame is read, forwarded to every subscriber and acked (the receipt
// names the root ivorn, found by scanning the root start tag, as the load
// tool's subscribers do), and the connection closed. No validation, no
// storage, no previously-seen check, no filters, no keep-alives; what
// subscribers send is read and thrown away unparsed. Each subscriber has a
// writer goroutine draining its own queue, several frames per write when
// it falls behind, as a real broadcaster does. Configure the fields, then
// call Serve for each listener; Close stops everything.
type NullBroker struct {
	LocalIVO string // the receipts' Response and the authenticate request's origin
	MaxFrame int    // largest frame read; 0 = vtp.DefaultMaxFrame

	mu      sync.Mutex
	subs    map[*nullSub]struct{}
	lns     map[net.Listener]struct{}
	conns   map[net.Conn]struct{}
	closed  bool
	workers sync.WaitGroup
}

// ErrNullClosed is returned by Serve after Close.
var ErrNullClosed = errors.New("loadgen: null broker closed")

// nullWriteBuffer batches a subscriber's frames into one write.
const nullWriteBuffer = 32 << 10

// ServeReceive accepts authors on ln until Close: one event per
// connection, forwarded and acked.
func (n *NullBroker) ServeReceive(ln net.Listener) error { return n.serve(ln, n.author) }

// ServeBroadcast accepts subscribers on ln until Close.
func (n *NullBroker) ServeBroadcast(ln net.Listener) error { return n.serve(ln, n.subscriber) }

func (n *NullBroker) serve(ln net.Listener, handle func(net.Conn)) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		ln.Close()
		return ErrNullClosed
	}
	if n.lns == nil {
		n.lns, n.conns, n.subs = map[net.Listener]struct{}{}, map[net.Conn]struct{}{}, map[*nullSub]struct{}{}
	}
	n.lns[ln] = struct{}{}
	n.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			n.mu.Lock()
			closed := n.closed
			n.mu.Unlock()
			if closed {
				return ErrNullClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return err
		}
		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			c.Close()
			return ErrNullClosed
		}
		n.conns[c] = struct{}{}
		n.workers.Add(1)
		n.mu.Unlock()
		go func() {
			defer n.workers.Done()
			defer n.forget(c)
			handle(c)
		}()
	}
}

func (n *NullBroker) forget(c net.Conn) {
	c.Close()
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
}

// Close stops accepting, closes every connection and waits for their
// goroutines.
func (n *NullBroker) Close() error {
	n.mu.Lock()
	n.closed = true
	for ln := range n.lns {
		ln.Close()
	}
	for c := range n.conns {
		c.Close()
	}
	n.mu.Unlock()
	n.workers.Wait()
	return nil
}

func (n *NullBroker) author(c net.Conn) {
	c.SetDeadline(time.Now().Add(DefaultTimeout))
	payload, err := vtp.NewFrameReader(c, n.MaxFrame).ReadFrame()
	if err != nil {
		return
	}
	iv, _, err := scanRoot(payload)
	if err != nil || !iv.ok {
		return // no ivorn, no receipt possible
	}
	frame := vtp.Frame(payload) // one copy, shared by every queue
	n.mu.Lock()
	for s := range n.subs {
		s.push(frame)
	}
	n.mu.Unlock()
	vtp.WriteFrame(c, vtp.Ack(string(payload[iv.start:iv.end]), n.LocalIVO, time.Now()))
	// Closed at once by the caller: the author reads the receipt, then EOF.
}

// nullSub is one subscriber: a queue that grows as needed, drained by its
// own writer.
type nullSub struct {
	mu     sync.Mutex
	queue  [][]byte
	wake   chan struct{} // capacity 1: the queue is no longer empty
	closed bool
}

func (s *nullSub) push(frame []byte) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.queue = append(s.queue, frame)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take returns everything queued, waiting until there is something or
// done is closed.
func (s *nullSub) take(done <-chan struct{}, spare [][]byte) [][]byte {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			q := s.queue
			s.queue = spare[:0]
			s.mu.Unlock()
			return q
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-done:
			return nil
		}
	}
}

func (n *NullBroker) subscriber(c net.Conn) {
	s := &nullSub{wake: make(chan struct{}, 1)}
	done := make(chan struct{})
	// The reader throws away whatever the subscriber sends and ends the
	// subscription when the connection goes.
	n.workers.Add(1)
	go func() {
		defer n.workers.Done()
		defer close(done)
		io.Copy(io.Discard, c)
	}()
	// On the distribution list before the authenticate request goes out,
	// as in Comet: a subscriber that answered it gets every later event.
	n.mu.Lock()
	n.subs[s] = struct{}{}
	n.mu.Unlock()
	w := bufio.NewWriterSize(c, nullWriteBuffer)
	defer func() {
		n.mu.Lock()
		delete(n.subs, s)
		n.mu.Unlock()
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		c.Close()
		<-done
	}()
	if err := vtp.WriteFrame(w, vtp.AuthenticateRequest(n.LocalIVO, time.Now())); err != nil || w.Flush() != nil {
		return
	}
	var spare [][]byte
	for {
		q := s.take(done, spare)
		if q == nil {
			return
		}
		for i, f := range q {
			if _, err := w.Write(f); err != nil {
				return
			}
			q[i] = nil
		}
		if err := w.Flush(); err != nil {
			return
		}
		spare = q
	}
}
