package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The consumer core shared by the broadcasters' durables (ConsumeEvents)
// and the stages' (StageSubscriber): finding, checking, updating and
// rewinding a durable pull consumer, restarting a broken pull, and turning
// a stored message back into an Event.

// A consumer whose pull broke (deleted by an operator, a lost leader) is
// restarted after a pause that starts at RestartBackoffMin and doubles up
// to RestartBackoffMax while restarts keep failing.
const (
	RestartBackoffMin = 100 * time.Millisecond
	RestartBackoffMax = 10 * time.Second
)

// MaxConsumerName is the longest durable consumer name (JetStream allows
// more; this keeps names usable as file names).
const MaxConsumerName = 200

// ensureConsumer finds the durable want.Durable on stream (the event
// stream, or the replay stream for a stage's replays) or
// creates it with want, checks that it is a pull consumer with explicit
// acks and want's filter, brings its AckWait and MaxAckPending up to
// want's (the durable is ours: its delivery limits follow this process's
// settings), and rewinds it to its ack floor when a previous run left
// events delivered but unacked, so that they come again at once rather
// than after AckWait and behind newer ones.
//
// shared says whether several processes may consume the durable at once
// (a stage's workers do; a broadcaster's node does not): a durable with
// pulls waiting and events unacked is then in use elsewhere, and
// rewinding it would hand out its events a second time, so it is left
// alone, noted at info level when sharing is expected and as a warning
// when it is not.
func (b *Bus) ensureConsumer(ctx context.Context, stream string, want jetstream.ConsumerConfig, shared bool) (jetstream.Consumer, error) {
	name := want.Durable
	js := b.conns[0].js
	cons, err := findOrCreate(ctx,
		func(ctx context.Context) (jetstream.Consumer, error) { return js.Consumer(ctx, stream, name) },
		func(ctx context.Context) (jetstream.Consumer, error) { return js.CreateConsumer(ctx, stream, want) },
		jetstream.ErrConsumerNotFound, jetstream.ErrConsumerExists)
	if err != nil {
		return nil, fmt.Errorf("bus: consumer %s: %w", name, err)
	}
	info := cons.CachedInfo()
	have := info.Config
	if have.DeliverSubject != "" || have.AckPolicy != jetstream.AckExplicitPolicy {
		return nil, fmt.Errorf("bus: consumer %s exists but is not a pull consumer with explicit acks", name)
	}
	if have.FilterSubject != want.FilterSubject || !slices.Equal(have.FilterSubjects, want.FilterSubjects) {
		return nil, fmt.Errorf("bus: consumer %s exists with filter %q, want %q; delete it", name,
			append([]string{have.FilterSubject}, have.FilterSubjects...), want.FilterSubject)
	}
	log := b.log.With("durable", name)
	if have.AckWait != want.AckWait || have.MaxAckPending != want.MaxAckPending {
		upd := have
		upd.AckWait, upd.MaxAckPending = want.AckWait, want.MaxAckPending
		if cons, err = js.UpdateConsumer(ctx, stream, upd); err != nil {
			return nil, fmt.Errorf("bus: updating consumer %s: %w", name, err)
		}
		log.Info("consumer updated", "ack_wait", upd.AckWait, "max_ack_pending", upd.MaxAckPending)
	}
	switch {
	case info.NumAckPending == 0:
	case info.NumWaiting > 0 && shared:
		log.Info("consumer shared with a running worker; not rewound",
			"unacked", info.NumAckPending, "waiting_pulls", info.NumWaiting)
	case info.NumWaiting > 0:
		log.Warn("consumer is in use by another process; not rewound (give each broadcaster its own --node)",
			"unacked", info.NumAckPending, "waiting_pulls", info.NumWaiting)
	default:
		if _, err := js.ResetConsumer(ctx, stream, name); err != nil {
			log.Warn("could not rewind consumer to its ack floor; unacked events come back after AckWait",
				"unacked", info.NumAckPending, "ack_wait", want.AckWait, "err", err)
		} else {
			log.Info("consumer rewound: events left unacked by the previous run come again first",
				"unacked", info.NumAckPending)
		}
	}
	return cons, nil
}

// startAfter sets where a new durable starts: after stream sequence last
// when a previous incarnation delivered up to it (it vanished while this
// process consumed it, deleted by an operator: nothing is lost or
// replayed), else at the time the bus was opened, so that a brand-new
// consumer neither replays the stream's history nor misses what was
// accepted since Open.
func (b *Bus) startAfter(cfg *jetstream.ConsumerConfig, last uint64) {
	if last > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last+1
		return
	}
	start := b.opened
	cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
}

// restarter brings a consumer's broken pull back, pausing between
// attempts (RestartBackoffMin doubling to RestartBackoffMax; a successful
// pull resets it).
type restarter struct {
	b     *Bus
	log   *slog.Logger
	pause time.Duration
}

func (b *Bus) newRestarter(log *slog.Logger) *restarter {
	return &restarter{b: b, log: log, pause: RestartBackoffMin}
}

// ok notes a pull that worked.
func (r *restarter) ok() { r.pause = RestartBackoffMin }

// restart handles a pull that failed with err: unless ctx has ended or
// the bus connection is closed for good, it waits, then calls start
// (bounded by RequestTimeout) to find or recreate the consumer. It reports
// whether the caller should go on pulling; a failed start is logged and
// retried by the caller's next pull failing at once.
func (r *restarter) restart(ctx context.Context, err error, start func(context.Context) error) bool {
	if ctx.Err() != nil {
		return false
	}
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrConnectionClosed) {
		r.log.Warn("bus consumer stopped: bus connection closed")
		return false
	}
	r.log.Warn("bus consumer interrupted; restarting", "err", err, "in", r.pause)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(r.pause):
	}
	r.pause = min(2*r.pause, RestartBackoffMax)
	sctx, cancel := context.WithTimeout(ctx, r.b.cfg.RequestTimeout)
	defer cancel()
	if err := start(sctx); err != nil && ctx.Err() == nil {
		r.log.Warn("bus consumer restart failed", "err", err)
	}
	return ctx.Err() == nil
}

// headers is what decodeEvent reads: a message's NATS headers, or the
// metadata of the Watermill message made of it.
type headers interface{ Get(key string) string }

// decodeEvent turns a stored message (its headers and data) back into the
// Event that Ingest stored. A repeated header counts with its first value;
// a message without Comet-Sha1 (published by someone tapping the bus) gets
// the digest of its payload.
func decodeEvent(h headers, payload []byte) Event {
	ev := Event{
		Payload:   payload,
		SHA1:      h.Get(HeaderSHA1),
		IVORN:     h.Get(HeaderIVORN),
		Role:      h.Get(HeaderRole),
		Author:    h.Get(HeaderAuthor),
		Origin:    h.Get(HeaderOrigin),
		Node:      h.Get(HeaderNode),
		Peer:      h.Get(HeaderPeer),
		Signature: h.Get(HeaderSignature),
	}
	if ev.SHA1 == "" {
		ev.SHA1 = Digest(payload)
	}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderReceivedAt)); err == nil {
		ev.ReceivedAt = t
	}
	return ev
}
