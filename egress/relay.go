package egress

import (
	"context"
	"fmt"
	"log/slog"
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
	// the oldest unacknowledged one after a restart.
	ConsumeEvents(ctx context.Context, durable string, h func(*bus.Delivery)) (*bus.Consumer, error)
}

// Relay feeds the broadcaster from the bus through a durable consumer. An
// event is acknowledged on the bus only when every subscriber it was sent
// to has acknowledged it (or was dropped), so an event acked to its author
// before a crash is still broadcast after the restart.
type Relay struct {
	Source      Source
	Durable     string // consumer name; one per egress node
	Grace       time.Duration
	Broadcaster *Broadcaster
	Logger      *slog.Logger
}

// Run consumes until ctx ends. Events left unacknowledged by a previous run
// are replayed after Grace, which gives reconnecting subscribers time to
// come back.
func (r *Relay) Run(ctx context.Context) error {
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	backlog, err := r.Source.Pending(ctx, r.Durable)
	if err != nil {
		return fmt.Errorf("egress: reading the backlog of %s: %w", r.Durable, err)
	}
	if backlog > 0 && r.Grace > 0 {
		log.Info("events not yet delivered before the last stop; waiting for subscribers to reconnect",
			"backlog", backlog, "grace", r.Grace)
		select {
		case <-time.After(r.Grace):
		case <-ctx.Done():
			return nil
		}
		log.Info("replaying backlog", "backlog", backlog, "subscribers", r.Broadcaster.Subscribers())
	}
	// Deliveries come in stream order; one at or below the highest sequence
	// already broadcast is a redelivery of an event whose subscribers have
	// not all acked yet. Its original tracker will ack it: do not send it
	// twice.
	var highest uint64
	c, err := r.Source.ConsumeEvents(ctx, r.Durable, func(d *bus.Delivery) {
		if d.Seq <= highest {
			return
		}
		highest = d.Seq
		r.Broadcaster.Broadcast(d.Event.Payload, d.Ack)
	})
	if err != nil {
		return fmt.Errorf("egress: consuming events as %s: %w", r.Durable, err)
	}
	<-ctx.Done()
	c.Stop()
	return nil
}
