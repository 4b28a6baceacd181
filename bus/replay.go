package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Replaying dead letters: an operator who fixed what made a stage fail
// hands its dead letters back to it. Each is moved from the dead-letter
// stream to the stage's replay subject, which the stage consumes beside
// the event stream (ReplaySubscriber); other stages and the broadcasters
// never see it again.
const (
	// ReplayStream holds the dead letters handed back to their stage until
	// the stage has handled them (work-queue retention: a message goes
	// when acked).
	ReplayStream = "COMET_REPLAY"
	// ReplayPrefix starts the replay subjects: comet.replay.<stage>.
	ReplayPrefix = "comet.replay."
	// ReplayDurablePrefix starts the durable consumer of a stage's
	// replays: "replay-<name>".
	ReplayDurablePrefix = "replay-"
)

// ReplaySubject is the subject of a stage's replays.
func ReplaySubject(stage string) string { return ReplayPrefix + EscapeToken(stage) }

// DeadLetter is an event a stage gave up on, as the dead-letter stream
// holds it. The embedded message has the event's bytes as payload and the
// stored headers as metadata (see DeadLetterPublisher).
type DeadLetter struct {
	Seq    uint64    // sequence on COMET_DEADLETTER
	Stage  string    // the stage that gave up
	Time   time.Time // when it was dead-lettered
	Reason string    // the stage's last error
	*message.Message
}

// Event decodes the dead letter's event.
func (d DeadLetter) Event() Event { return MessageEvent(d.Message) }

// DeadLetters reads the dead letters of one stage ("" for every stage),
// oldest first, at most MaxDeadLetterRead of them.
func (b *Bus) DeadLetters(ctx context.Context, stage string) ([]DeadLetter, error) {
	if err := b.provisionDeadLetter(ctx); err != nil {
		return nil, err
	}
	filter := DeadLetterPrefix + ">"
	if stage != "" {
		filter = DeadLetterSubject(stage)
	}
	js := b.conns[0].js
	cons, err := js.OrderedConsumer(ctx, DeadLetterStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
	})
	if err != nil {
		return nil, fmt.Errorf("bus: reading %s: %w", DeadLetterStream, err)
	}
	var out []DeadLetter
	for len(out) < MaxDeadLetterRead {
		batch, err := cons.FetchNoWait(min(256, MaxDeadLetterRead-len(out)))
		if err != nil {
			return nil, fmt.Errorf("bus: reading %s: %w", DeadLetterStream, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			d := DeadLetter{Stage: strings.TrimPrefix(msg.Subject(), DeadLetterPrefix), Message: watermillMessage(msg, true)}
			d.Reason = d.Metadata.Get(reasonPoisoned)
			if md, err := msg.Metadata(); err == nil {
				d.Seq, d.Time = md.Sequence.Stream, md.Timestamp
			}
			out = append(out, d)
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("bus: reading %s: %w", DeadLetterStream, err)
		}
		if got == 0 {
			break
		}
	}
	return out, nil
}

// reasonPoisoned is where Watermill's poison queue puts the last error
// (middleware.ReasonForPoisonedKey).
const reasonPoisoned = "reason_poisoned"

func (b *Bus) replayConfig() jetstream.StreamConfig {
	_, _, replays := b.cfg.streamLimits()
	return jetstream.StreamConfig{
		Name:              ReplayStream,
		Description:       "Comet dead letters handed back to their stage, payload = event bytes as received",
		Subjects:          []string{ReplayPrefix + ">"},
		Retention:         jetstream.WorkQueuePolicy,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		MaxAge:            DefaultDeadLetterMaxAge,
		MaxBytes:          replays,
		MaxMsgs:           -1,
		MaxMsgsPerSubject: -1,
		MaxMsgSize:        int32(b.cfg.msgLimit()),
		Duplicates:        DefaultDupWindow,
		Replicas:          b.cfg.Replicas,
	}
}

// Replay hands each dead letter back to its stage: it is stored on the
// stage's replay subject, then deleted from the dead-letter stream, so a
// second Replay does not hand it back again; one no longer there (replayed
// already) is skipped. It returns how many were handed back. A stage not
// running now takes its replays when it next starts.
func (b *Bus) Replay(ctx context.Context, dls []DeadLetter) (int, error) {
	if _, err := b.ensureStream(ctx, b.replayConfig(), nil); err != nil {
		return 0, err
	}
	dlStream, err := b.conns[0].js.Stream(ctx, DeadLetterStream)
	if err != nil {
		return 0, fmt.Errorf("bus: stream %s: %w", DeadLetterStream, err)
	}
	n := 0
	for _, d := range dls {
		if err := CheckStageName(d.Stage); err != nil {
			return n, err
		}
		gctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
		_, err := dlStream.GetMsg(gctx, d.Seq)
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("bus: dead letter %d of stage %s: %w", d.Seq, d.Stage, err)
		}
		m := &nats.Msg{Subject: ReplaySubject(d.Stage), Data: d.Payload, Header: nats.Header{}}
		for k, v := range d.Metadata {
			if strings.HasPrefix(k, "Comet-") {
				m.Header.Set(k, v)
			}
		}
		// A Replay repeated after a failure to delete stores it once.
		m.Header.Set(HeaderMsgID, "replay/"+d.Stage+"/"+strconv.FormatUint(d.Seq, 10))
		pctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
		pa, err := b.pick().js.PublishMsg(pctx, m)
		cancel()
		if err != nil {
			return n, fmt.Errorf("bus: replaying dead letter %d of stage %s: %w", d.Seq, d.Stage, err)
		}
		if pa.Stream != ReplayStream {
			return n, fmt.Errorf("bus: replay of dead letter %d stored in stream %s instead of %s: overlapping stream subjects",
				d.Seq, pa.Stream, ReplayStream)
		}
		dctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
		err = dlStream.DeleteMsg(dctx, d.Seq)
		cancel()
		// Not found: another replay deleted it meanwhile.
		if err != nil && !strings.Contains(err.Error(), "no message found") {
			return n, fmt.Errorf("bus: dead letter %d of stage %s replayed, but not deleted (a second replay would hand it back again): %w",
				d.Seq, d.Stage, err)
		}
		n++
	}
	return n, nil
}

// ReplaySubscriber returns a Watermill subscriber of the replays of stage
// name (topic ReplaySubject(name)) through the durable "replay-<name>" on
// COMET_REPLAY, made now (with the stream) if missing. It behaves as
// StageSubscriber's, except that a replayed event's UUID is its SHA-1
// followed by "/replay-<sequence>": a replay that fails again is
// dead-lettered again, not taken for the dead letter it came from.
func (b *Bus) ReplaySubscriber(name string, opts StageOptions) (message.Subscriber, error) {
	if err := CheckStageName(name); err != nil {
		return nil, err
	}
	if _, err := b.ensureStream(context.Background(), b.replayConfig(), nil); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	durable := ReplayDurablePrefix + name
	return b.newStageSubscriber(name, durable, ReplayStream, opts, func(uint64) jetstream.ConsumerConfig {
		// Work-queue retention: what is acked is gone, so a remade
		// consumer starts at the oldest replay left.
		return jetstream.ConsumerConfig{
			Durable:           durable,
			Description:       "Comet replays of stage " + name,
			FilterSubject:     ReplaySubject(name),
			AckPolicy:         jetstream.AckExplicitPolicy,
			AckWait:           opts.serverAckWait(),
			MaxDeliver:        -1,
			MaxAckPending:     max(opts.Concurrency, DefaultStageMaxAckPending),
			InactiveThreshold: b.cfg.InactiveThreshold,
			DeliverPolicy:     jetstream.DeliverAllPolicy,
		}
	})
}
