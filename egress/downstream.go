package egress

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/filter"
	"github.com/comet-go/comet/vtp"
)

// readBufferSize is each subscriber's read buffer: a Transport message
// (an ack is about 400 bytes) and more arrive in one read; longer frames
// are read past it straight into their own buffer.
const readBufferSize = 1 << 10

// keepQueueCap bounds the queue array a subscriber keeps between writes;
// a larger one, grown by a burst, goes back to the garbage collector.
const keepQueueCap = 64

// writeBufferSize is the buffer a writer borrows, while it writes, to send
// what is queued in as few writes as possible; it goes back to a pool
// shared by every subscriber, so idle subscribers hold none.
const writeBufferSize = 32 << 10

// writerIdle is how long a subscriber's writer waits for more to write
// before it ends (the next queued frame starts another): long enough that
// a busy subscriber keeps one writer, short enough that idle ones hold no
// goroutine.
const writerIdle = time.Second

var writeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, writeBufferSize); return &b }}

// downstream is one connected subscriber (named apart from ingress's
// subscriber role, the other end of such a connection): a reader goroutine
// handling its Transport messages and, while there is something to write,
// a writer goroutine draining its bounded queue. Both stop when done is closed;
// close is idempotent. Memory is taken as needed: the queue grows with
// what is queued, the writer exists only while the subscriber is busy
// (see writerIdle), and it borrows a write buffer only while writing.
type downstream struct {
	b    *Broadcaster
	conn net.Conn
	peer string
	cert endpoint.Identity // its verified client certificate (clientCA=), if any
	log  *slog.Logger
	done chan struct{}
	once sync.Once

	wake chan struct{} // capacity 1: something was queued
	room chan struct{} // capacity 1: the writer took what was queued

	filters       atomic.Pointer[[]*filter.Filter]
	overBudget    filter.OverBudgetLog // filters that ran out of budget; used by the writer only
	withheld      atomic.Uint64        // events its filters did not let through
	overBudgetN   atomic.Uint64        // filter evaluations stopped at the budget
	authenticated atomic.Bool
	verified      atomic.Bool            // signed reply accepted (VerifySubscriber)
	verifying     atomic.Bool            // a signed reply is being checked
	signer        atomic.Pointer[string] // who signed it
	authTimer     *time.Timer            // set before the goroutines start; nil without VerifySubscriber

	ackSignal chan struct{} // an ack arrived (capacity 1; wakes a writer waiting at MaxInFlight)

	since     time.Time     // connected at
	delivered atomic.Uint64 // events written to it (its writer only adds)
	lastAck   atomic.Int64  // Unix nanoseconds of its last ack; 0 = none

	mu               sync.Mutex
	queue            []item     // waiting for the writer, oldest first
	writing          bool       // a writer goroutine is draining the queue
	aliveOutstanding int64      // probes sent and not answered
	inflight         []*tracker // events sent and not acknowledged, oldest first
	closed           bool
}

func (s *downstream) currentFilters() []*filter.Filter {
	if p := s.filters.Load(); p != nil {
		return *p
	}
	return nil
}

// item is one queued frame: a Transport message's, or an event's (ev set;
// its frame is the event's length prefix and payload, shared by every
// queue and written from there), whose filters the writer applies before
// sending it.
type item struct {
	frame []byte // a Transport message's frame; nil for an event
	ev    *event
}

// offer queues an item. An event takes a share of its tracker here, given
// back when the writer finds it does not match, or when it is
// acknowledged, or when the subscriber is dropped. Holding mu while
// queueing means close (which empties the queue under mu) sees every
// share taken. A full queue is waited on until deadline (QueueWait from
// the start of the fan-out): a burst (a backlog replayed after a failover)
// drains in microseconds, while a subscriber that stopped reading is
// dropped.
func (s *downstream) offer(it item, deadline time.Time) {
	var t *tracker
	if it.ev != nil {
		t = it.ev.t
	}
	var wait *time.Timer
	defer func() {
		if wait != nil {
			wait.Stop()
		}
	}()
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		if len(s.queue) < s.b.cfg.QueueLen {
			if t != nil {
				t.n.Add(1)
			}
			s.queue = append(s.queue, it)
			s.startWriterLocked()
			s.mu.Unlock()
			select {
			case s.wake <- struct{}{}:
			default:
			}
			return
		}
		s.mu.Unlock()
		if wait == nil {
			wait = time.NewTimer(time.Until(deadline)) // fires at once if past
		}
		select {
		case <-s.room:
		case <-s.done:
			return
		case <-wait.C:
			s.close(DropQueueFull, fmt.Sprintf("outgoing queue full for %v: subscriber too slow", s.b.cfg.QueueWait))
			return
		}
	}
}

// startWriterLocked starts the writer unless it runs (mu held, not
// closed: the broadcaster's Close waits for writers only after closing
// every subscriber).
func (s *downstream) startWriterLocked() {
	if s.writing || s.closed {
		return
	}
	s.writing = true
	s.b.wg.Add(1)
	go s.writeLoop()
}

// take returns everything queued, leaving spare's array as the new queue,
// waiting for something to be queued up to writerIdle. It returns nil when
// the writer is to end: nothing came within writerIdle (the next offer
// starts another), or the subscriber was dropped.
func (s *downstream) take(spare []item, idle *time.Timer) []item {
	for {
		s.mu.Lock()
		q := s.queue
		switch {
		case s.closed:
			s.writing = false
			s.mu.Unlock()
			return nil
		case len(q) > 0:
			s.queue = spare[:0]
			s.mu.Unlock()
			select {
			case s.room <- struct{}{}:
			default:
			}
			return q
		}
		s.mu.Unlock()
		idle.Reset(writerIdle)
		select {
		case <-s.wake:
		case <-s.done:
			s.mu.Lock()
			s.writing = false
			s.mu.Unlock()
			return nil
		case <-idle.C:
			s.mu.Lock()
			if len(s.queue) == 0 {
				s.writing = false
				s.mu.Unlock()
				return nil
			}
			s.mu.Unlock()
		}
	}
}

// drainLocked empties the queue (mu held, after closed is set, so nothing
// more can be queued) and returns the trackers whose shares it held.
func (s *downstream) drainLocked() []*tracker {
	var owed []*tracker
	for _, it := range s.queue {
		if it.ev != nil {
			owed = append(owed, it.ev.t)
		}
	}
	s.queue = nil
	return owed
}

func releaseAll(ts []*tracker) {
	for _, t := range ts {
		if t != nil {
			t.release()
		}
	}
}

// admit decides, in the writer, whether a queued item goes out: Transport
// messages always do; an event only if the subscriber's filters match it,
// and then the subscriber owes an ack for it (test events too, as in
// Comet, though nobody waits for those). At MaxInFlight it first sends
// what it has admitted (flush), then waits for acks.
func (s *downstream) admit(it item, flush func() error) (bool, error) {
	if it.ev == nil {
		return true, nil
	}
	t := it.ev.t
	if fs := s.currentFilters(); len(fs) > 0 {
		doc, err := it.ev.document()
		if err != nil || !doc.MatchAny(fs, s.b.cfg.FilterBudget, s.filterOverBudget) {
			s.withheld.Add(1)
			t.release()
			return false, nil
		}
	}
	var stall *time.Timer
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			t.release()
			return false, nil
		}
		if len(s.inflight) < s.b.cfg.MaxInFlight {
			s.inflight = append(s.inflight, t)
			s.mu.Unlock()
			if stall != nil {
				stall.Stop()
			}
			return true, nil
		}
		s.mu.Unlock()
		// At the limit: wait for the subscriber to catch up, but not
		// forever (see DefaultAckStallTimeout).
		if stall == nil {
			if err := flush(); err != nil {
				t.release()
				return false, err
			}
			stall = time.NewTimer(s.b.cfg.AckStallTimeout)
		}
		select {
		case <-s.ackSignal:
		case <-s.done:
			stall.Stop()
			t.release()
			return false, nil
		case <-stall.C:
			t.release()
			s.close(DropAckStall, fmt.Sprintf("peer is not acknowledging events (%d unacknowledged for %v)",
				s.b.cfg.MaxInFlight, s.b.cfg.AckStallTimeout))
			return false, nil
		}
	}
}

// filterOverBudget counts and logs a filter that exhausted its budget on
// an event (it is no match for that event).
func (s *downstream) filterOverBudget(f *filter.Filter) {
	s.overBudgetN.Add(1)
	s.overBudget.Report(f)
}

// acked handles one ack: acks are counted, not matched to ivorns, as in
// Comet; frames go out in order, so the oldest outstanding event is the
// one acknowledged.
func (s *downstream) acked() {
	s.mu.Lock()
	if len(s.inflight) == 0 {
		s.mu.Unlock()
		return
	}
	t := s.inflight[0]
	s.inflight[0] = nil
	s.inflight = s.inflight[1:]
	s.mu.Unlock()
	s.lastAck.Store(time.Now().UnixNano())
	select {
	case s.ackSignal <- struct{}{}:
	default:
	}
	if t != nil {
		t.release()
	}
}

// close disconnects the subscriber once, counting the first cause.
func (s *downstream) close(cause DropCause, reason string) {
	s.once.Do(func() {
		s.b.drops.Add(cause)
		s.log.Info("subscriber disconnected", "cause", cause, "reason", reason)
		if s.authTimer != nil {
			s.authTimer.Stop()
		}
		close(s.done)
		s.conn.Close()
		s.b.remove(s)
		// Its deliveries stay in the broadcaster's total; the writer may
		// add a last one, which closing the connection makes fail anyway.
		s.b.departed.Add(s.delivered.Load())
		s.mu.Lock()
		s.closed = true
		owed := s.inflight
		s.inflight = nil
		// Events still queued hold shares too; nothing can be queued after
		// this but by an offer already waiting, which drains it itself.
		owed = append(owed, s.drainLocked()...)
		s.mu.Unlock()
		// A dropped subscriber no longer holds events back on the bus.
		releaseAll(owed)
	})
}

// writeLoop sends whatever is queued, as few writes as possible for it
// all (copied into a borrowed buffer; an event too large for it is written
// on its own), until the subscriber has been idle for writerIdle.
func (s *downstream) writeLoop() {
	defer s.b.wg.Done()
	timeout := s.b.cfg.WriteTimeout
	idle := time.NewTimer(writerIdle)
	defer idle.Stop()
	var spare []item
	var frames [][]byte
	flush := func() error {
		if len(frames) == 0 {
			return nil
		}
		defer func() {
			clear(frames)
			frames = frames[:0]
		}()
		s.conn.SetWriteDeadline(time.Now().Add(timeout))
		bp := writeBuffers.Get().(*[]byte)
		defer writeBuffers.Put(bp)
		buf := (*bp)[:0]
		for _, f := range frames {
			if len(buf)+len(f) > cap(buf) {
				if len(buf) > 0 {
					if _, err := s.conn.Write(buf); err != nil {
						return err
					}
					buf = buf[:0]
				}
				if len(f) > cap(buf) {
					if _, err := s.conn.Write(f); err != nil {
						return err
					}
					continue
				}
			}
			buf = append(buf, f...)
		}
		if len(buf) > 0 {
			_, err := s.conn.Write(buf)
			return err
		}
		return nil
	}
	for {
		q := s.take(spare, idle)
		if q == nil {
			return
		}
		var err error
		sent := uint64(0) // events admitted in this round
		for i, it := range q {
			var ok bool
			if ok, err = s.admit(it, flush); ok {
				if it.ev != nil {
					frames = append(frames, it.ev.prefix[:], it.ev.payload)
					sent++
				} else {
					frames = append(frames, it.frame)
				}
			}
			if err != nil {
				// What is left holds shares too: give them back.
				for _, rest := range q[i+1:] {
					if rest.ev != nil {
						rest.ev.t.release()
					}
				}
				break
			}
		}
		clear(q)
		spare = nil
		if cap(q) <= keepQueueCap {
			spare = q[:0] // a burst's large array is not kept
		}
		if err == nil {
			err = flush()
		}
		if err == nil && sent > 0 {
			s.delivered.Add(sent)
		}
		if cap(frames) > keepQueueCap {
			frames = nil
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.close(DropWriteTimeout, "write timed out: subscriber not reading")
			} else {
				s.close(DropWriteError, "write failed: "+err.Error())
			}
			return
		}
	}
}

func (s *downstream) readLoop() {
	defer s.b.wg.Done()
	fr := vtp.NewFrameReader(bufio.NewReaderSize(s.conn, readBufferSize), s.b.cfg.MaxFrame)
	bad := 0 // consecutive messages that were not Transport messages
	for {
		// Valid until the next read: what outlives it is copied.
		payload, err := fr.ReadFrameSlice()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
				s.close(DropClosed, "connection closed by subscriber")
			case errors.Is(err, vtp.ErrFrameTooLarge):
				s.close(DropTooLarge, err.Error())
			default:
				s.close(DropReadError, "read failed: "+err.Error())
			}
			return
		}
		msg, err := vtp.ParseTransport(payload)
		if err != nil {
			// Ignored, as Comet does; but a peer that sends nothing else is
			// cut off rather than left to fill the log.
			if bad++; bad >= MaxBadMessages {
				s.close(DropBadMessages, fmt.Sprintf("%d bad messages in a row: %v", bad, err))
				return
			}
			if errors.Is(err, vtp.ErrNotTransport) {
				s.log.Warn("incomprehensible message from subscriber; ignored", "err", err)
			} else {
				s.log.Warn("unparsable message from subscriber; ignored", "err", err)
			}
			continue
		}
		bad = 0
		switch msg.Role {
		case vtp.RoleIAmAlive:
			s.mu.Lock()
			s.aliveOutstanding = max(s.aliveOutstanding-1, 0)
			s.mu.Unlock()
		case vtp.RoleAck:
			s.acked()
		case vtp.RoleNak:
			s.close(DropNak, "subscriber sent nak for "+msg.Origin+": "+msg.Result)
			return
		case vtp.RoleAuthenticate:
			if s.b.cfg.VerifySubscriber != nil && !s.verified.Load() {
				// Checked off the read loop, which goes on reading (iamalive
				// answers); a reply arriving while one is being checked is
				// ignored.
				if s.verifying.CompareAndSwap(false, true) {
					s.b.wg.Add(1)
					go s.authenticate(bytes.Clone(payload), msg.Filters)
				}
				continue
			}
			s.setFilters(msg.Filters)
		}
	}
}

// authenticate checks a signed authenticate reply in one of the
// broadcaster's verification slots, so a flood of signed replies cannot
// take every core. Success installs the reply's filters and lets events
// through; failure disconnects the subscriber.
func (s *downstream) authenticate(payload []byte, filters []string) {
	defer s.b.wg.Done()
	defer s.verifying.Store(false)
	if !s.b.verifying.Enter(s.done) {
		return
	}
	signer, err := s.b.cfg.VerifySubscriber(payload)
	s.b.verifying.Leave()
	if err != nil {
		s.close(DropAuthFailed, "authentication failed: "+err.Error())
		return
	}
	s.setFilters(filters) // before any event can be queued
	s.signer.Store(&signer)
	s.verified.Store(true)
	s.log.Info("subscriber authenticated", "signer", signer)
}

// setFilters replaces the filter list (docs/filtering.md §1) with the
// filters of an authenticate reply, failing closed (compileFilters).
func (s *downstream) setFilters(exprs []string) {
	fs := s.b.compileFilters(exprs, s.log)
	s.filters.Store(&fs)
	s.authenticated.Store(true)
	refused := 0
	for _, f := range fs {
		if f.Refusal() != nil {
			refused++
		}
	}
	switch {
	case len(fs) > 0 && refused == len(fs):
		s.log.Warn("every filter refused: the subscriber gets no events until it sends a filter the broker accepts",
			"refused", refused)
	default:
		s.log.Info("filters installed", "count", len(fs)-refused, "refused", refused)
	}
}
