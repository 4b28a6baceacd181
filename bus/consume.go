package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Delivery is one stored event handed to a ConsumeEvents handler.
type Delivery struct {
	Event          // decoded from the headers; Payload is the message data
	Subject string // stream subject
	Seq     uint64 // stream sequence
	msg     jetstream.Msg
}

func delivery(msg jetstream.Msg) *Delivery {
	d := &Delivery{Event: decodeEvent(msg.Headers(), msg.Data()), Subject: msg.Subject(), msg: msg}
	if md, err := msg.Metadata(); err == nil {
		d.Seq = md.Sequence.Stream
	}
	return d
}

// Ack marks the event handled. It does not wait for the server: an ack lost
// in a crash means the event is delivered again (at least once).
func (d *Delivery) Ack() { _ = d.msg.Ack() }

// Consumer is a running ConsumeEvents.
type Consumer struct {
	b       *Bus
	durable string
	h       func(*Delivery)
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}

	mu sync.Mutex
	it jetstream.MessagesContext

	last uint64 // stream sequence last handed to h (run goroutine only)
}

// ConsumeEvents hands the stored events to h through the durable pull
// consumer named durable, one at a time in stream order from a single
// goroutine. h must call Ack on each delivery and must not call Stop. It
// runs until Stop, the end of ctx, or Close.
//
// A new durable starts with the events stored since this Bus was opened
// (by the server's clock): a fresh egress node does not replay a week of
// history, yet misses nothing accepted while it was starting. An existing one resumes after
// its last ack; events delivered to an earlier run but not acked (a stop
// or a crash) are delivered again first, in order. A durable left unused
// for InactiveThreshold is removed by the server. Only one process may
// consume a durable.
func (b *Bus) ConsumeEvents(ctx context.Context, durable string, h func(*Delivery)) (*Consumer, error) {
	if err := checkDurable(durable); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("bus: ConsumeEvents: nil handler")
	}
	cctx, cancel := context.WithCancel(ctx)
	c := &Consumer{b: b, durable: durable, h: h, ctx: cctx, cancel: cancel, done: make(chan struct{})}
	var it jetstream.MessagesContext
	err := b.retryUnanswered(ctx, "consumer "+durable, func(ctx context.Context) (err error) {
		it, err = c.start(ctx)
		return err
	})
	if err != nil {
		cancel()
		return nil, err
	}
	c.it = it
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		it.Stop()
		cancel()
		return nil, errors.New("bus: closed")
	}
	b.consumers[c] = struct{}{}
	b.mu.Unlock()
	context.AfterFunc(cctx, func() {
		c.mu.Lock()
		c.it.Stop()
		c.mu.Unlock()
	})
	go c.run()
	return c, nil
}

// Stop stops consuming and waits until the handler has returned.
func (c *Consumer) Stop() {
	c.cancel()
	<-c.done
	c.b.mu.Lock()
	delete(c.b.consumers, c)
	c.b.mu.Unlock()
}

func (c *Consumer) start(ctx context.Context) (jetstream.MessagesContext, error) {
	want := jetstream.ConsumerConfig{
		Durable:           c.durable,
		Description:       "Comet event consumer",
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           c.b.cfg.AckWait,
		MaxDeliver:        -1,
		MaxAckPending:     c.b.cfg.MaxAckPending,
		InactiveThreshold: c.b.cfg.InactiveThreshold,
	}
	c.b.startAfter(&want, c.last)
	cons, err := c.b.ensureConsumer(ctx, StreamName, want, false)
	if err != nil {
		return nil, err
	}
	// nats.go's defaults (30 s expiry, 15 s heartbeat) noticed a pull lost
	// with its leader after 30 s; see PullHeartbeat.
	it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(c.b.cfg.Prefetch, c.b.cfg.PrefetchBytes),
		jetstream.PullExpiry(PullExpiry), jetstream.PullHeartbeat(PullHeartbeat))
	if err != nil {
		return nil, fmt.Errorf("bus: consuming %s: %w", c.durable, err)
	}
	return it, nil
}

func (c *Consumer) run() {
	defer close(c.done)
	r := c.b.newRestarter(c.b.log.With("durable", c.durable))
	it := c.it
	for {
		msg, err := it.Next()
		if err == nil && isRecordOnly(msg.Data()) {
			_ = msg.Ack() // a delete marker: no event to hand over
			continue
		}
		if err == nil {
			d := delivery(msg)
			c.last = d.Seq
			c.h(d)
			r.ok()
			continue
		}
		if errors.Is(err, jetstream.ErrNoHeartbeat) && c.ctx.Err() == nil {
			// A pull lost with its leader, or a machine too busy to read
			// the heartbeat in time: the iterator has already pulled
			// again. Replacing it would strand what it had prefetched,
			// unacked, until AckWait.
			c.b.log.Info("bus consumer missed a heartbeat; pulling again", "durable", c.durable)
			continue
		}
		// The consumer was deleted, or the pull broke: start over. The
		// old iterator is stopped first so that it pulls no more. A
		// failed start leaves the stopped iterator, whose Next fails at
		// once, so the next round tries again.
		it.Stop()
		if !r.restart(c.ctx, err, func(ctx context.Context) error {
			next, err := c.start(ctx)
			if err != nil {
				return err
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.ctx.Err() != nil {
				next.Stop()
				return nil
			}
			c.it, it = next, next
			return nil
		}) {
			return
		}
	}
}

// Pending is how many stored events the durable has not acked yet (not yet
// delivered, or delivered to a run that ended without acking them; both
// come next). It is 0 for a durable that does not exist.
func (b *Bus) Pending(ctx context.Context, durable string) (uint64, error) {
	if err := checkDurable(durable); err != nil {
		return 0, err
	}
	var cons jetstream.Consumer
	err := b.retryUnanswered(ctx, "consumer "+durable, func(ctx context.Context) (err error) {
		cons, err = b.conns[0].js.Consumer(ctx, StreamName, durable)
		return err
	})
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("bus: consumer %s: %w", durable, err)
	}
	info := cons.CachedInfo()
	return info.NumPending + uint64(info.NumAckPending), nil
}

// checkDurable allows what is safe as a consumer name and a file name.
func checkDurable(name string) error {
	return CheckName("consumer name", name, MaxConsumerName)
}
