package egress

import (
	"bufio"
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

// writeBufferSize batches frames into few syscalls when events arrive in
// bursts; a lone frame is flushed at once.
const writeBufferSize = 32 << 10

// downstream is one connected subscriber (named apart from ingress's
// subscriber role, the other end of such a connection): a reader goroutine
// handling its Transport messages and a writer goroutine draining its
// bounded queue.
// Both stop when done is closed; close is idempotent.
type downstream struct {
	b     *Broadcaster
	conn  net.Conn
	peer  string
	cert  endpoint.Identity // its verified client certificate (clientCA=), if any
	log   *slog.Logger
	queue chan item
	done  chan struct{}
	once  sync.Once

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

	mu               sync.Mutex
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

// item is one queued frame; ev is set for events, whose filters the
// writer applies before sending.
type item struct {
	frame []byte
	ev    *event
}

// offer queues an item. An event takes a share of its tracker here, given
// back when the writer finds it does not match, or when it is
// acknowledged, or when the subscriber is dropped. Holding mu while
// queueing means close (which drains the queue under mu) sees every share
// taken. A full queue is waited on until deadline (QueueWait from the
// start of the fan-out): a burst (a backlog replayed after a failover)
// drains in microseconds, while a subscriber that stopped reading is
// dropped.
func (s *downstream) offer(it item, deadline time.Time) {
	var t *tracker
	if it.ev != nil {
		t = it.ev.t
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if t != nil {
		t.n.Add(1)
	}
	select {
	case s.queue <- it:
		s.mu.Unlock()
		return
	default:
	}
	s.mu.Unlock()
	wait := time.NewTimer(time.Until(deadline)) // fires at once if past
	defer wait.Stop()
	select {
	case s.queue <- it:
		// close may have drained the queue before this send landed; then
		// what is left there is ours to give back.
		s.mu.Lock()
		var owed []*tracker
		if s.closed {
			owed = s.drainLocked()
		}
		s.mu.Unlock()
		releaseAll(owed)
		return
	case <-s.done:
	case <-wait.C:
		s.close(DropQueueFull, fmt.Sprintf("outgoing queue full for %v: subscriber too slow", s.b.cfg.QueueWait))
	}
	if t != nil {
		t.release()
	}
}

// drainLocked empties the queue (mu held, after closed is set, so nothing
// more can be queued) and returns the trackers whose shares it held.
func (s *downstream) drainLocked() []*tracker {
	var owed []*tracker
	for {
		select {
		case it := <-s.queue:
			if it.ev != nil {
				owed = append(owed, it.ev.t)
			}
		default:
			return owed
		}
	}
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
// Comet, though nobody waits for those).
func (s *downstream) admit(it item) bool {
	if it.ev == nil {
		return true
	}
	t := it.ev.t
	if fs := s.currentFilters(); len(fs) > 0 {
		doc, err := it.ev.document()
		if err != nil || !doc.MatchAny(fs, s.b.cfg.FilterBudget, s.filterOverBudget) {
			s.withheld.Add(1)
			t.release()
			return false
		}
	}
	var stall *time.Timer
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			t.release()
			return false
		}
		if len(s.inflight) < s.b.cfg.MaxInFlight {
			s.inflight = append(s.inflight, t)
			s.mu.Unlock()
			if stall != nil {
				stall.Stop()
			}
			return true
		}
		s.mu.Unlock()
		// At the limit: wait for the subscriber to catch up, but not
		// forever (see DefaultAckStallTimeout).
		if stall == nil {
			stall = time.NewTimer(s.b.cfg.AckStallTimeout)
		}
		select {
		case <-s.ackSignal:
		case <-s.done:
			stall.Stop()
			t.release()
			return false
		case <-stall.C:
			t.release()
			s.close(DropAckStall, fmt.Sprintf("peer is not acknowledging events (%d unacknowledged for %v)",
				s.b.cfg.MaxInFlight, s.b.cfg.AckStallTimeout))
			return false
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

func (s *downstream) writeLoop() {
	defer s.b.wg.Done()
	w := bufio.NewWriterSize(s.conn, writeBufferSize)
	timeout := s.b.cfg.WriteTimeout
	for {
		var it item
		select {
		case <-s.done:
			return
		case it = <-s.queue:
		}
		s.conn.SetWriteDeadline(time.Now().Add(timeout))
		var err error
		if s.admit(it) {
			_, err = w.Write(it.frame)
		}
		// Drain whatever else is already queued before flushing.
	drain:
		for err == nil {
			select {
			case it = <-s.queue:
				if s.admit(it) {
					_, err = w.Write(it.frame)
				}
			default:
				break drain
			}
		}
		if err == nil && w.Buffered() > 0 {
			err = w.Flush()
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
	fr := vtp.NewFrameReader(bufio.NewReader(s.conn), s.b.cfg.MaxFrame)
	bad := 0 // consecutive messages that were not Transport messages
	for {
		payload, err := fr.ReadFrame()
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
					go s.authenticate(payload, msg.Filters)
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
