package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of the stages' part of the public contract (see the package
// comment).
const (
	// StageDurablePrefix starts the durable consumer name of every stage:
	// "stage-<name>".
	StageDurablePrefix = "stage-"
	// EventsTopic is the Watermill topic a stage subscriber serves: every
	// event on the event stream.
	EventsTopic = SubjectPrefix + ">"
	// DeadLetterStream stores the events a stage gave up on.
	DeadLetterStream = "COMET_DEADLETTER"
	// DeadLetterPrefix starts the dead-letter subjects:
	// comet.deadletter.<stage>.
	DeadLetterPrefix = "comet.deadletter."
)

// Limits of the stage consumers and the dead-letter stream.
const (
	// DefaultStageAckWait is how long the server waits for a stage to ack
	// an event before handing it out again, when StageOptions leaves it
	// zero. It must cover one event's whole retry schedule; the stages
	// package computes it from its timeouts and backoff. The server is
	// given StageKeepAliveAckWait and kept informed up to this.
	DefaultStageAckWait = 10 * time.Minute
	// StageKeepAliveAckWait is the AckWait the server is actually given
	// when a stage's is longer: while a worker holds an event it tells the
	// server so (InProgress) every third of it, up to the stage's own
	// AckWait. An event whose delivery was lost on the way (a pull lost
	// with a leader change in a cluster) then comes again after this, not
	// after the whole retry schedule.
	StageKeepAliveAckWait = 30 * time.Second
	// DefaultStageMaxAckPending bounds the events a stage consumer has
	// handed out and not seen acked, over every process consuming it. It
	// is raised to StageOptions.Concurrency when that is larger.
	DefaultStageMaxAckPending = 1024
	// DefaultStageNakDelay is how long an event a stage could neither
	// handle nor dead-letter waits before it is delivered again.
	DefaultStageNakDelay = 30 * time.Second
	// StageFetchWait is how long one pull request for a stage waits for
	// events (a long poll); it bounds nothing a user sees, since Close
	// cancels it.
	StageFetchWait = 5 * time.Second
	// StageCloseWait bounds how long closing a stage subscriber waits for
	// the acks of events already handed to the router.
	StageCloseWait = 10 * time.Second
	// MaxDeadLetterRead caps what one DeadLetters call returns.
	MaxDeadLetterRead = 10000

	// DefaultDeadLetterMaxAge is how long dead letters (and replays) are
	// kept; beyond the stream's share of MaxStore (StageShare) the oldest
	// go first.
	DefaultDeadLetterMaxAge = 30 * 24 * time.Hour
)

// StageOptions configures a stage subscriber. Zero values take the
// defaults.
type StageOptions struct {
	// Concurrency is how many events the subscriber hands out at once
	// (handed out and not yet acked or nacked): the stage's concurrency
	// under Watermill's router, which handles each message in its own
	// goroutine. Default 1 (events in stream order).
	Concurrency int
	// AckWait: see DefaultStageAckWait.
	AckWait time.Duration
	// NakDelay: see DefaultStageNakDelay.
	NakDelay time.Duration
	// KeepAliveAckWait: see StageKeepAliveAckWait (0 = that).
	KeepAliveAckWait time.Duration
}

// withDefaults gives zero options their defaults.
func (o StageOptions) withDefaults() StageOptions {
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultStageAckWait
	}
	if o.NakDelay <= 0 {
		o.NakDelay = DefaultStageNakDelay
	}
	return o
}

// serverAckWait is the AckWait the consumer is created with.
func (o StageOptions) serverAckWait() time.Duration {
	k := o.KeepAliveAckWait
	if k <= 0 {
		k = StageKeepAliveAckWait
	}
	return min(o.AckWait, k)
}

// StageSubscriber returns a Watermill subscriber backed by the durable pull
// consumer "stage-<name>" on COMET_EVENTS (filter comet.event.>), created
// now if missing. Like the broadcaster consumers, a new one starts with
// the events stored since this Bus was opened; an existing one resumes
// after its last ack, and if a previous run (a stop or a crash) left
// events handed out but unacked, it is rewound to its ack floor so that
// they come again at once rather than after AckWait (events above the
// floor that were already acked come again too: stages are at least
// once). AckWait and MaxAckPending of an existing consumer are updated to
// the options: the consumer belongs to the stage.
//
// Several processes running the same stage on one bus share its consumer
// and split the events between them; a process starting then rewinds the
// others' unacked events, which they may handle twice.
//
// The subscriber serves one Subscribe at a time, on topic EventsTopic.
// Each message carries the event bytes as payload, the event's SHA-1 as
// UUID, and the message headers as metadata (Comet-Ivorn, Comet-Role,
// Comet-Sha1, ...; see MessageEvent); its context is the Subscribe
// context. Ack acknowledges the event on the bus (and waits for the
// server to confirm); Nack hands it out again after NakDelay, or at once
// (for the next run) once the subscription has ended.
func (b *Bus) StageSubscriber(name string, opts StageOptions) (message.Subscriber, error) {
	if err := CheckStageName(name); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	durable := StageDurablePrefix + name
	return b.newStageSubscriber(name, durable, StreamName, opts, func(last uint64) jetstream.ConsumerConfig {
		return b.stageConsumerConfig(durable, opts, last)
	})
}

// newStageSubscriber makes the durable config(0) on stream and returns
// its subscriber; config(last) remakes it after stream sequence last.
func (b *Bus) newStageSubscriber(name, durable, stream string, opts StageOptions,
	config func(last uint64) jetstream.ConsumerConfig) (message.Subscriber, error) {
	s := &stageSubscriber{b: b, name: name, durable: durable, stream: stream, config: config, opts: opts,
		log: b.log.With("durable", durable)}
	var cons jetstream.Consumer
	err := b.retryUnanswered(context.Background(), "consumer "+s.durable, func(ctx context.Context) (err error) {
		cons, err = b.ensureConsumer(ctx, stream, config(0), true)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.cons = cons
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("bus: closed")
	}
	b.stageSubs[s] = struct{}{}
	return s, nil
}

// MaxStageName is the longest stage name: its durable, "stage-<name>",
// is at most MaxConsumerName characters.
const MaxStageName = MaxConsumerName - len(StageDurablePrefix)

// CheckStageName returns an error unless name can name a stage: its
// durable consumer and its dead-letter subject.
func CheckStageName(name string) error {
	return CheckName("stage name", name, MaxStageName)
}

func (b *Bus) stageConsumerConfig(name string, opts StageOptions, last uint64) jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:           name,
		Description:       "Comet stage " + strings.TrimPrefix(name, StageDurablePrefix),
		FilterSubject:     EventsTopic,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           opts.serverAckWait(),
		MaxDeliver:        -1, // the stage bounds its retries and dead-letters
		MaxAckPending:     max(opts.Concurrency, DefaultStageMaxAckPending),
		InactiveThreshold: b.cfg.InactiveThreshold,
	}
	b.startAfter(&cfg, last)
	return cfg
}

// stageSubscriber implements message.Subscriber on a stage's durable: its
// events, or its replays.
type stageSubscriber struct {
	b       *Bus
	name    string
	durable string
	stream  string
	config  func(last uint64) jetstream.ConsumerConfig
	opts    StageOptions
	log     *slog.Logger

	mu       sync.Mutex
	cons     jetstream.Consumer
	cancel   context.CancelFunc // of the running subscription
	loopDone chan struct{}      // closed when the fetch loop has ended
	closed   bool
	inflight sync.WaitGroup // ack goroutines of messages handed out
	lastSeq  uint64         // highest stream sequence handed out (fetch loop only)
}

// Subscribe starts handing out the events on the returned channel, which
// is closed when ctx ends or the subscriber is closed.
func (s *stageSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if want := s.config(0).FilterSubject; topic != want {
		return nil, fmt.Errorf("bus: stage %s: topic %q, want %q", s.name, topic, want)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, fmt.Errorf("bus: stage %s: subscriber closed", s.name)
	case s.loopDone != nil:
		return nil, fmt.Errorf("bus: stage %s: already subscribed", s.name)
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.loopDone = make(chan struct{})
	out := make(chan *message.Message)
	go s.run(ctx, out)
	return out, nil
}

// Close stops handing out events and waits (at most StageCloseWait) until
// the events already handed out have been acked or nacked.
func (s *stageSubscriber) Close() error {
	s.stop()
	s.b.mu.Lock()
	delete(s.b.stageSubs, s)
	s.b.mu.Unlock()
	waited := make(chan struct{})
	go func() { s.inflight.Wait(); close(waited) }()
	select {
	case <-waited:
		return nil
	case <-time.After(StageCloseWait):
		return fmt.Errorf("bus: stage %s: events handed out still unacked after %v", s.name, StageCloseWait)
	}
}

// stop ends the subscription and waits for its fetch loop.
func (s *stageSubscriber) stop() {
	s.mu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	done := s.loopDone
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// run pulls events while there are free slots and hands them out.
func (s *stageSubscriber) run(ctx context.Context, out chan<- *message.Message) {
	defer close(s.loopDone)
	defer close(out)
	slots := make(chan struct{}, s.opts.Concurrency)
	r := s.b.newRestarter(s.log)
	for {
		// Wait for one free slot, then take every free one.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
	take:
		for n < cap(slots) {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break take
			}
		}
		err := s.fetch(ctx, n, slots, out)
		if err == nil {
			r.ok()
			continue
		}
		// The consumer may have been deleted: find or recreate it, after
		// the last event handed out.
		if !r.restart(ctx, err, func(ctx context.Context) error {
			cons, err := s.b.ensureConsumer(ctx, s.stream, s.config(s.lastSeq), true)
			if err != nil {
				return err
			}
			s.mu.Lock()
			s.cons = cons
			s.mu.Unlock()
			return nil
		}) {
			return
		}
	}
}

// fetch pulls up to n events (n slots taken) and hands them out; slots not
// used are given back, used ones are given back once the event is acked
// or nacked.
func (s *stageSubscriber) fetch(ctx context.Context, n int, slots chan struct{}, out chan<- *message.Message) error {
	used := 0
	defer func() {
		for ; used < n; used++ {
			<-slots
		}
	}()
	s.mu.Lock()
	cons := s.cons
	s.mu.Unlock()
	fctx, cancel := context.WithTimeout(ctx, StageFetchWait)
	defer cancel()
	batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
	if err != nil {
		return err
	}
	for msg := range batch.Messages() {
		if isRecordOnly(msg.Data()) {
			_ = msg.Ack() // a delete marker: no event to handle
			continue
		}
		wm := watermillMessage(msg, false)
		if s.stream == ReplayStream {
			if md, err := msg.Metadata(); err == nil {
				wm.UUID += "/replay-" + strconv.FormatUint(md.Sequence.Stream, 10)
			}
		}
		wm.SetContext(ctx)
		select {
		case out <- wm:
			used++
			if md, err := msg.Metadata(); err == nil && md.Sequence.Stream > s.lastSeq {
				s.lastSeq = md.Sequence.Stream
			}
			s.inflight.Add(1)
			go s.settle(ctx, msg, wm, slots)
		case <-ctx.Done():
			// Stopping: give it back for the next run.
			_ = msg.Nak()
		}
	}
	err = batch.Error()
	if err == nil || errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return nil
	}
	return err
}

// settle waits for the router's verdict on one event and tells the server.
func (s *stageSubscriber) settle(ctx context.Context, msg jetstream.Msg, wm *message.Message, slots chan struct{}) {
	defer s.inflight.Done()
	defer func() { <-slots }()
	// Keep the event ours while the handler (with its retries) runs, up to
	// the stage's AckWait; see StageKeepAliveAckWait.
	serverWait := s.opts.serverAckWait()
	keepAlive := time.NewTicker(max(serverWait/3, 10*time.Millisecond))
	defer keepAlive.Stop()
	until := time.Now().Add(s.opts.AckWait - serverWait)
	for {
		select {
		case <-keepAlive.C:
			if time.Now().Before(until) {
				_ = msg.InProgress() // a lost one costs at most a redelivery
			}
			continue
		case <-wm.Acked():
			s.ack(msg, wm)
		case <-wm.Nacked():
			s.nak(ctx, msg, wm)
		}
		return
	}
}

func (s *stageSubscriber) ack(msg jetstream.Msg, wm *message.Message) {
	actx, cancel := context.WithTimeout(context.Background(), s.b.cfg.RequestTimeout)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		s.log.Warn("stage ack failed; the event will be handled again", "sha1", wm.UUID, "err", err)
	}
}

func (s *stageSubscriber) nak(ctx context.Context, msg jetstream.Msg, wm *message.Message) {
	var err error
	if ctx.Err() != nil {
		err = msg.Nak() // stopping: at once, for the next run
	} else {
		err = msg.NakWithDelay(s.opts.NakDelay)
	}
	if err != nil {
		s.log.Warn("stage nak failed; the event comes back after AckWait", "sha1", wm.UUID, "err", err)
	}
}

// watermillMessage turns a stored message into a Watermill message: the
// data as payload, the event's SHA-1 as UUID (see decodeEvent) and the
// headers as metadata, a repeated header with its first value. The
// server's own headers (Nats-*) are left out unless withServer: a stage's
// message needs none (its UUID is the SHA-1), while a dead letter's
// Nats-Msg-Id is its dead-letter publisher's key.
func watermillMessage(msg jetstream.Msg, withServer bool) *message.Message {
	h := msg.Headers()
	id := h.Get(HeaderSHA1)
	if id == "" {
		id = Digest(msg.Data())
	}
	wm := message.NewMessage(id, msg.Data())
	for k, v := range h {
		if len(v) == 0 || !withServer && strings.HasPrefix(k, "Nats-") {
			continue
		}
		wm.Metadata.Set(k, v[0])
	}
	return wm
}

// MessageEvent decodes a message from a stage subscriber (or from the
// dead-letter stream) into an Event; Payload is the message's payload.
func MessageEvent(m *message.Message) Event {
	ev := decodeEvent(m.Metadata, m.Payload)
	if m.Metadata.Get(HeaderSHA1) == "" {
		ev.SHA1 = m.UUID
	}
	return ev
}

// DeadLetterSubject is the subject of a stage's dead letters:
// comet.deadletter.<stage>.
func DeadLetterSubject(stage string) string {
	return DeadLetterPrefix + EscapeToken(stage)
}

// DeadLetterPublisher returns a Watermill publisher storing messages on
// the COMET_DEADLETTER stream (provisioned now if missing, like the event
// stream: an existing one with other settings is an error, never
// rewritten). The topic is the subject, DeadLetterSubject(stage). The
// payload is stored as it is and the metadata become headers (values kept
// to one line of at most MaxHeaderValue bytes). Nats-Msg-Id is set to
// "<subject>/<UUID>", so the same event dead-lettered twice by one stage
// within the duplicate window is stored once. Publish returns once the
// stream has stored every message. Close does nothing: the bus's
// connections stay open.
func (b *Bus) DeadLetterPublisher() (message.Publisher, error) {
	// Each attempt is bounded by RequestTimeout; an unanswered one is
	// repeated as for the other streams (retryUnanswered).
	if err := b.provisionDeadLetter(context.Background()); err != nil {
		return nil, err
	}
	return deadLetterPublisher{b}, nil
}

func (b *Bus) deadLetterConfig() jetstream.StreamConfig {
	_, size, _ := b.cfg.streamLimits()
	return jetstream.StreamConfig{
		Name:              DeadLetterStream,
		Description:       "Comet events a stage gave up on, payload = event bytes as received",
		Subjects:          []string{DeadLetterPrefix + ">"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		MaxAge:            DefaultDeadLetterMaxAge,
		MaxBytes:          size,
		MaxMsgs:           -1,
		MaxMsgsPerSubject: -1,
		MaxMsgSize:        int32(b.cfg.msgLimit()),
		Duplicates:        DefaultDupWindow,
		Replicas:          b.cfg.Replicas,
	}
}

func (b *Bus) provisionDeadLetter(ctx context.Context) error {
	b.dlMu.Lock()
	defer b.dlMu.Unlock()
	if b.dlReady {
		return nil
	}
	if _, err := b.ensureStream(ctx, b.deadLetterConfig(), nil); err != nil {
		return err
	}
	b.dlReady = true
	return nil
}

type deadLetterPublisher struct{ b *Bus }

func (p deadLetterPublisher) Publish(topic string, msgs ...*message.Message) error {
	rest, ok := strings.CutPrefix(topic, DeadLetterPrefix)
	if !ok || rest == "" || strings.ContainsAny(rest, ".*> \t\r\n") {
		return fmt.Errorf("bus: dead-letter topic %q is not %s<stage>", topic, DeadLetterPrefix)
	}
	for _, m := range msgs {
		nm := &nats.Msg{Subject: topic, Data: m.Payload, Header: nats.Header{}}
		for k, v := range m.Metadata {
			if k == "" || strings.HasPrefix(k, "Nats-") || strings.ContainsAny(k, ": \t\r\n") {
				continue
			}
			nm.Header.Set(k, headerValue(v))
		}
		nm.Header.Set(HeaderMsgID, headerValue(topic+"/"+m.UUID))
		ctx, cancel := context.WithTimeout(context.Background(), p.b.cfg.RequestTimeout)
		pa, err := p.b.pick().js.PublishMsg(ctx, nm)
		cancel()
		if err != nil {
			return fmt.Errorf("bus: dead-lettering %s on %s: %w", m.UUID, topic, err)
		}
		if pa.Stream != DeadLetterStream {
			return fmt.Errorf("bus: dead letter %s stored in stream %s instead of %s: overlapping stream subjects",
				m.UUID, pa.Stream, DeadLetterStream)
		}
	}
	return nil
}

func (deadLetterPublisher) Close() error { return nil }
