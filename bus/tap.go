package bus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Tapping reads the event stream the way any outside program may (see the
// package comment): through an ordered consumer, which the server keeps in
// memory, never acks and names at random. It has no durable state, so
// tapping neither moves nor creates the broadcasters' and handlers'
// durable consumers.

// tapInactiveThreshold is how long the server keeps a tap's consumer after
// its reader vanished without saying goodbye (a killed process). A tap
// that ends normally deletes its consumer at once; one that merely paused
// too long is recreated where it stopped by the ordered consumer.
const tapInactiveThreshold = time.Minute

// Tap pulls up to this many events, or this many bytes, ahead of the
// handler: enough to stream a backlog quickly, small enough that a tap of
// 1 MiB events cannot hold hundreds of megabytes.
const (
	tapPrefetch      = 256
	tapPrefetchBytes = 8 << 20
)

// TapOptions says where a tap starts and when it ends.
type TapOptions struct {
	// Since starts at the first event stored at or after this time, by
	// the server's clock.
	Since time.Time
	// Seq starts at this stream sequence (or the first event after it
	// still stored). Since and Seq are exclusive; with neither, the tap
	// starts with the events stored from now on.
	Seq uint64
	// StopWhenCaughtUp ends the tap, with a nil error, once it has handed
	// over every event stored when it started (from its start on). Events
	// stored later are not handed over. Without it, the tap follows new
	// events until ctx ends.
	StopWhenCaughtUp bool
}

// Tap hands the stored events to h, one at a time in stream order, from
// the start opt gives. It returns nil when ctx ends or, with
// StopWhenCaughtUp, once caught up; an error from h ends it with that
// error. Deliveries need no Ack (Ack does nothing harmful either).
func (b *Bus) Tap(ctx context.Context, opt TapOptions, h func(*Delivery) error) error {
	return tap(ctx, b.conns[0].js, b.log, opt, h)
}

// Reader is a read-only connection to a bus that a broker runs. Unlike
// Open it provisions and checks nothing, so its Config need not match the
// broker's: Open with, say, another MaxPayload or StreamMaxAge than the
// broker's is refused as a mismatch of stream settings, while a tap has no
// business with those settings at all.
type Reader struct {
	c   *conn
	url string
	log *slog.Logger
}

// Dial connects to the NATS system at cfg.URL for reading. Of cfg it uses
// URL (required), CredsFile, TLS, Node (naming the connection),
// RequestTimeout and Logger. It fails if the system is unreachable or
// holds no stream COMET_EVENTS: a tap creates nothing.
func Dial(ctx context.Context, cfg Config) (*Reader, error) {
	if cfg.URL == "" {
		return nil, errors.New("bus: Dial needs Config.URL")
	}
	if cfg.Node == "" {
		host, _ := os.Hostname()
		cfg.Node = host + " tap"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.RequestTimeout = cmp.Or(cfg.RequestTimeout, DefaultRequestTimeout)
	// connect reads only these fields of a Bus without an embedded server.
	b := &Bus{cfg: cfg, log: cfg.Logger}
	c, err := b.connect(0)
	if err != nil {
		return nil, err
	}
	r := &Reader{c: c, url: redact(cfg.URL), log: cfg.Logger}
	// Without a deadline in ctx, RequestTimeout bounds this (see connect).
	_, err = c.js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		err = fmt.Errorf("bus: %s has no stream %s: no Comet broker has used this bus yet", r.url, StreamName)
	} else if err != nil {
		err = fmt.Errorf("bus: stream %s on %s: %w", StreamName, r.url, err)
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Tap is Bus.Tap on this connection.
func (r *Reader) Tap(ctx context.Context, opt TapOptions, h func(*Delivery) error) error {
	return tap(ctx, r.c.js, r.log, opt, h)
}

// Close closes the connection. There is nothing to flush: a reader never
// publishes.
func (r *Reader) Close() error {
	r.c.nc.Close()
	return nil
}

func tap(ctx context.Context, js jetstream.JetStream, log *slog.Logger, opt TapOptions, h func(*Delivery) error) error {
	if h == nil {
		return errors.New("bus: tap: nil handler")
	}
	if opt.Seq != 0 && !opt.Since.IsZero() {
		return errors.New("bus: tap: Since and Seq are exclusive")
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{SubjectPrefix + ">"},
		DeliverPolicy:     jetstream.DeliverNewPolicy,
		InactiveThreshold: tapInactiveThreshold,
	}
	switch {
	case opt.Seq != 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, opt.Seq
	case !opt.Since.IsZero():
		since := opt.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	case opt.StopWhenCaughtUp:
		return nil // from now on, nothing is stored yet
	}

	// An end of ctx while setting up is an end too, not a failure.
	stream, err := js.Stream(ctx, StreamName)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("bus: tap: stream %s: %w", StreamName, err)
	}
	// The end of "caught up": the last event stored before the consumer
	// exists. Later ones (seq > last) are not handed over.
	last := stream.CachedInfo().State.LastSeq
	// This creates the server-side consumer at once (Messages does not).
	cons, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("bus: tap: %w", err)
	}
	defer deleteTapConsumer(ctx, js, log, cons)
	it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(tapPrefetch, tapPrefetchBytes))
	if err != nil {
		return fmt.Errorf("bus: tap: consuming %s: %w", StreamName, err)
	}
	defer it.Stop()
	if opt.StopWhenCaughtUp {
		// The consumer's pending count at creation tells whether anything
		// at or after the start exists; without this a start past the end
		// would wait for a new event.
		if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
			return nil
		}
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("bus: tap: %w", err)
		}
		d := delivery(msg)
		if opt.StopWhenCaughtUp && d.Seq > last {
			return nil
		}
		if !isRecordOnly(d.Payload) { // delete markers are not events
			if err := h(d); err != nil {
				return err
			}
		}
		if opt.StopWhenCaughtUp {
			// Nothing pending after this one: what lay between it and
			// last has expired or been deleted meanwhile.
			md, err := msg.Metadata()
			if d.Seq >= last || (err == nil && md.NumPending == 0) {
				return nil
			}
		}
	}
}

// deleteTapConsumer removes the tap's consumer right away rather than
// leaving it to tapInactiveThreshold, so that taps run from scripts do not
// pile up on the server. Failure is harmless: the server removes it later.
func deleteTapConsumer(ctx context.Context, js jetstream.JetStream, log *slog.Logger, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultRequestTimeout)
	defer cancel()
	err := js.DeleteConsumer(dctx, StreamName, info.Name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, nats.ErrConnectionClosed) {
		log.Debug("tap consumer not deleted; the server removes it when inactive", "consumer", info.Name, "err", err)
	}
}
