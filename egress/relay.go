package egress

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/comet-go/comet/bus"
)

// DefaultGrace is how long a restarted broadcaster waits before replaying
// events stored while it was down, so that subscribers dropped by the
// restart can reconnect first (Comet and pygcn retry after 1.5-4 s).
const DefaultGrace = 5 * time.Second

// Source is what the relay needs from the bus.
type Source interface {
	// Pending counts the events the durable has yet to deliver or to see
	// acknowledged: the backlog a restarted broadcaster replays.
	Pending(ctx context.Context, durable string) (uint64, error)
	// ConsumeEvents delivers events in stream order, starting again from
	// the oldest unacknowledged one after a restart; redeliveries (after
	// AckWait, or a bus failover) may come after newer events.
	ConsumeEvents(ctx context.Context, durable string, h func(*bus.Delivery)) (*bus.Consumer, error)
}

// Relay feeds the broadcaster from the bus through a durable consumer. An
// event is acknowledged on the bus only when every subscriber it was sent
// to has acknowledged it (or was dropped), so an event acked to its author
// before a crash is still broadcast after the restart.
type Relay struct {
	Source      Source
	Durable     string // consumer name; one per egress node
	Broadcaster *Broadcaster
	Logger      *slog.Logger
}

// Run consumes until ctx ends. Events left unacknowledged by a previous run
// are replayed after the broadcaster's Config.Grace, which gives
// reconnecting subscribers time to come back.
func (r *Relay) Run(ctx context.Context) error {
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	backlog, err := r.Source.Pending(ctx, r.Durable)
	if err != nil {
		return fmt.Errorf("egress: reading the backlog of %s: %w", r.Durable, err)
	}
	if grace := r.Broadcaster.cfg.Grace; backlog > 0 && grace > 0 {
		log.Info("events not yet delivered before the last stop; waiting for subscribers to reconnect",
			"backlog", backlog, "grace", grace)
		select {
		case <-time.After(grace):
		case <-ctx.Done():
			return nil
		}
		log.Info("replaying backlog", "backlog", backlog, "subscribers", r.Broadcaster.Subscribers())
	}
	seen := newSeqSet(MaxRememberedAcks)
	c, err := r.Source.ConsumeEvents(ctx, r.Durable, func(d *bus.Delivery) {
		switch seen.claim(d.Seq) {
		case seqInFlight:
			// A redelivery of an event whose subscribers have not all
			// acked yet: its tracker will ack it. Not sent twice.
			return
		case seqDone:
			// Acked already, but the ack was lost (a bus failover): ack
			// again rather than send it twice.
			d.Ack()
			return
		}
		// New, or a delivery lost on its way here (a pull lost with a
		// leader change) coming again, possibly after newer events.
		seq := d.Seq
		r.Broadcaster.Broadcast(d.Event.Payload, func() {
			d.Ack()
			seen.finish(seq)
		})
	})
	if err != nil {
		return fmt.Errorf("egress: consuming events as %s: %w", r.Durable, err)
	}
	<-ctx.Done()
	c.Stop()
	return nil
}

// MaxRememberedAcks is how many acked sequence numbers a relay remembers,
// to re-ack rather than re-send an event whose bus ack was lost. Far more
// than can be redelivered within one AckWait at any realistic rate.
const MaxRememberedAcks = 1 << 16

type seqState int

const (
	seqNew seqState = iota
	seqInFlight
	seqDone
)

// seqSet tracks the stream sequences a relay has broadcast in this run:
// in flight (some subscriber still owes an ack) or done (acked on the bus;
// the most recent max of them). Redeliveries can come in any order, so a
// high-water mark is not enough: a delivery lost in a failover comes back
// after newer ones and must still be broadcast.
type seqSet struct {
	mu       sync.Mutex
	inflight map[uint64]struct{}
	done     map[uint64]struct{}
	order    []uint64 // done, oldest first (a ring of max entries)
	next     int
	max      int
}

func newSeqSet(max int) *seqSet {
	return &seqSet{inflight: make(map[uint64]struct{}), done: make(map[uint64]struct{}), max: max}
}

// claim returns the state of seq, marking a new one in flight.
func (s *seqSet) claim(seq uint64) seqState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.inflight[seq]; ok {
		return seqInFlight
	}
	if _, ok := s.done[seq]; ok {
		return seqDone
	}
	s.inflight[seq] = struct{}{}
	return seqNew
}

// finish moves seq from in flight to done, forgetting the oldest done one
// beyond max.
func (s *seqSet) finish(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inflight, seq)
	s.done[seq] = struct{}{}
	if len(s.order) < s.max {
		s.order = append(s.order, seq)
		return
	}
	delete(s.done, s.order[s.next])
	s.order[s.next] = seq
	s.next = (s.next + 1) % s.max
}
