package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Delivery is one stored event handed to a ConsumeEvents handler.
type Delivery struct {
	Event          // decoded from the headers; Payload is the message data
	Subject string // stream subject
	Seq     uint64 // stream sequence
	msg     jetstream.Msg
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
	cons, err := c.b.durable(ctx, c.durable, c.last)
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
	log := c.b.log.With("durable", c.durable)
	backoff := 100 * time.Millisecond
	it := c.it
	for {
		msg, err := it.Next()
		if err == nil {
			d := decode(msg)
			c.last = d.Seq
			c.h(d)
			backoff = 100 * time.Millisecond
			continue
		}
		if c.ctx.Err() != nil {
			return
		}
		if errors.Is(err, nats.ErrConnectionClosed) {
			log.Error("bus consumer stopped: connection closed")
			return
		}
		// The consumer was deleted, or the pull broke: start over.
		log.Warn("bus consumer interrupted; restarting", "err", err, "in", backoff)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
		next, err := c.start(c.ctx)
		if err != nil {
			log.Warn("bus consumer restart failed", "err", err)
			continue // Next on the stopped iterator fails at once
		}
		c.mu.Lock()
		if c.ctx.Err() != nil {
			next.Stop()
			c.mu.Unlock()
			return
		}
		c.it, it = next, next
		c.mu.Unlock()
	}
}

func decode(msg jetstream.Msg) *Delivery {
	h := msg.Headers()
	d := &Delivery{msg: msg, Subject: msg.Subject()}
	d.Payload = msg.Data()
	d.SHA1 = h.Get(HeaderSHA1)
	d.IVORN = h.Get(HeaderIVORN)
	d.Role = h.Get(HeaderRole)
	d.Author = h.Get(HeaderAuthor)
	d.Origin = h.Get(HeaderOrigin)
	d.Node = h.Get(HeaderNode)
	d.Peer = h.Get(HeaderPeer)
	d.Signature = h.Get(HeaderSignature)
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderReceivedAt)); err == nil {
		d.ReceivedAt = t
	}
	if md, err := msg.Metadata(); err == nil {
		d.Seq = md.Sequence.Stream
	}
	return d
}

// durable finds or creates the consumer, rewinding it to its ack floor if
// a previous run left events delivered but unacked. A consumer that
// vanished while this process consumed it (deleted by an operator) is
// recreated after the last event seen, so nothing is lost or replayed.
func (b *Bus) durable(ctx context.Context, name string, last uint64) (jetstream.Consumer, error) {
	js := b.conns[0].js
	cons, err := js.Consumer(ctx, StreamName, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = js.CreateConsumer(ctx, StreamName, b.consumerConfig(name, last))
		if errors.Is(err, jetstream.ErrConsumerExists) {
			cons, err = js.Consumer(ctx, StreamName, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bus: consumer %s: %w", name, err)
	}
	info := cons.CachedInfo()
	if info.Config.DeliverSubject != "" || info.Config.AckPolicy != jetstream.AckExplicitPolicy {
		return nil, fmt.Errorf("bus: consumer %s exists but is not a pull consumer with explicit acks", name)
	}
	if have := info.Config; have.AckWait != b.cfg.AckWait || have.MaxAckPending != b.cfg.MaxAckPending {
		// Our own durable: its delivery limits follow this process's
		// settings (they change with the subscriber queue length).
		upd := have
		upd.AckWait, upd.MaxAckPending = b.cfg.AckWait, b.cfg.MaxAckPending
		if cons, err = js.UpdateConsumer(ctx, StreamName, upd); err != nil {
			return nil, fmt.Errorf("bus: updating consumer %s: %w", name, err)
		}
		b.log.Info("consumer updated", "durable", name, "ack_wait", upd.AckWait, "max_ack_pending", upd.MaxAckPending)
		info = cons.CachedInfo()
	}
	if info.NumWaiting > 0 && info.NumAckPending > 0 {
		// Someone else is pulling from this durable (two processes with
		// one --node): rewinding would re-send what it has in flight.
		b.log.Warn("consumer is in use by another process; not rewound (give each broadcaster its own --node)",
			"durable", name, "unacked", info.NumAckPending, "waiting_pulls", info.NumWaiting)
	} else if info.NumAckPending > 0 {
		// Otherwise they would wait AckWait and then come after newer ones.
		if _, err := js.ResetConsumer(ctx, StreamName, name); err != nil {
			b.log.Warn("could not rewind consumer to its ack floor; unacked events come back after AckWait",
				"durable", name, "unacked", info.NumAckPending, "err", err)
		}
	}
	return cons, nil
}

func (b *Bus) consumerConfig(name string, last uint64) jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:           name,
		Description:       "Comet event consumer",
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           b.cfg.AckWait,
		MaxDeliver:        -1,
		MaxAckPending:     b.cfg.MaxAckPending,
		InactiveThreshold: b.cfg.InactiveThreshold,
	}
	b.startAfter(&cfg, last)
	return cfg
}

// startAfter sets where a new durable starts: after stream sequence last
// when a previous incarnation delivered up to it, else at the time the bus
// was opened, so that a brand-new consumer neither replays the stream's
// history nor misses what was accepted since Open.
func (b *Bus) startAfter(cfg *jetstream.ConsumerConfig, last uint64) {
	if last > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last+1
		return
	}
	start := b.opened
	cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
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
	if name == "" || len(name) > 200 {
		return fmt.Errorf("bus: consumer name %q: must be 1 to 200 characters", name)
	}
	for i := 0; i < len(name); i++ {
		if !tokenSafe(name[i]) {
			return fmt.Errorf("bus: consumer name %q: only A-Z, a-z, 0-9, - and _ allowed", name)
		}
	}
	return nil
}
