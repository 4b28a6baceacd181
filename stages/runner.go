package stages

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/comet-go/comet/bus"
)

// Source is what the stages need from the bus; *bus.Bus has it.
type Source interface {
	// StageSubscriber returns a subscriber of every event (topic
	// bus.EventsTopic) through the durable consumer of stage name.
	StageSubscriber(name string, opts bus.StageOptions) (message.Subscriber, error)
	// ReplaySubscriber returns a subscriber of the dead letters handed
	// back to stage name (topic bus.ReplaySubject(name)).
	ReplaySubscriber(name string, opts bus.StageOptions) (message.Subscriber, error)
	// DeadLetterPublisher publishes on bus.DeadLetterSubject(stage).
	DeadLetterPublisher() (message.Publisher, error)
}

// Stats counts what one stage did since Start.
type Stats struct {
	Handled      uint64 // events handled successfully
	Failures     uint64 // failed attempts (each retry counts)
	DeadLettered uint64 // events given up on and dead-lettered
}

type stageState struct {
	stage   Stage
	sub     message.Subscriber
	replays message.Subscriber // nil until made
	log     *slog.Logger
	retries int

	handled, failures, deadLettered atomic.Uint64
}

// Runner runs the stages; see Start.
type Runner struct {
	router *message.Router
	pub    message.Publisher
	stages []*stageState
	cancel context.CancelFunc
	ctx    context.Context // ends when the runner stops
	done   chan struct{}
	err    error // of the router, once done is closed

	closeOnce sync.Once
	closeErr  error
}

type attemptsKey struct{}

// Start builds the stages cfg asks for (see Stages) and runs them, each
// through its own durable consumer from src, under one Watermill router:
// every stage's handler has, outermost first, accounting and logging,
// Watermill's poison queue (publishing to bus.DeadLetterSubject(stage)),
// Watermill's retry (cfg.MaxRetries, exponential backoff from
// cfg.RetryInitial to cfg.RetryMax) and Watermill's recoverer (a panic is
// a failed attempt). Each failed attempt is logged at warning level with
// its error, the final failure at error level with the dead-letter
// subject. Start returns once every stage is consuming; the stages run
// until Close or the end of ctx. With no stage configured it returns an
// idle Runner.
func Start(ctx context.Context, src Source, cfg Config) (*Runner, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("stages: %w", err)
	}
	sts, err := build(cfg)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	rctx, cancel := context.WithCancel(ctx)
	r := &Runner{cancel: cancel, ctx: rctx, done: make(chan struct{})}
	if len(sts) == 0 {
		go func() { <-rctx.Done(); close(r.done) }()
		return r, nil
	}
	fail := func(err error) (*Runner, error) {
		cancel()
		for _, st := range r.stages {
			st.close()
		}
		return nil, err
	}

	r.pub, err = src.DeadLetterPublisher()
	if err != nil {
		return fail(fmt.Errorf("stages: dead-letter publisher: %w", err))
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(log.With("via", "watermill"),
		map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	r.router, err = message.NewRouter(message.RouterConfig{CloseTimeout: RouterCloseTimeout}, wlog)
	if err != nil {
		return fail(fmt.Errorf("stages: %w", err))
	}
	for _, s := range sts {
		conc, attempt := 1, BuiltinAttemptBudget
		if b, ok := s.(Bounded); ok {
			conc, attempt = max(1, b.Concurrency()), b.AttemptTimeout()
		}
		opts := bus.StageOptions{Concurrency: conc, AckWait: ackWait(attempt, cfg)}
		sub, err := src.StageSubscriber(s.Name(), opts)
		if err != nil {
			return fail(fmt.Errorf("stages: %s: %w", s.Name(), err))
		}
		st := &stageState{stage: s, sub: sub, retries: cfg.MaxRetries, log: log.With("stage", s.Name())}
		r.stages = append(r.stages, st)

		poison, err := middleware.PoisonQueueWithFilter(r.pub, bus.DeadLetterSubject(s.Name()), func(err error) bool {
			// A stop is not a failure: the event stays unacked and is
			// handled again at the next start.
			return rctx.Err() == nil && !errors.Is(err, context.Canceled)
		})
		if err != nil {
			return fail(fmt.Errorf("stages: %w", err))
		}
		retry := middleware.Retry{
			MaxRetries:          cfg.MaxRetries,
			InitialInterval:     cfg.RetryInitial,
			MaxInterval:         cfg.RetryMax,
			Multiplier:          RetryMultiplier,
			RandomizationFactor: RetryJitter,
		}
		h := r.router.AddConsumerHandler(s.Name(), bus.EventsTopic, sub, st.handle)
		h.AddMiddleware(r.account(st), poison, retry.Middleware, st.logAttempt, middleware.Recoverer)
		// Its dead letters handed back (comet deadletter replay) go
		// through the same handler, retries and dead-lettering.
		if st.replays, err = src.ReplaySubscriber(s.Name(), opts); err != nil {
			return fail(fmt.Errorf("stages: %s: replays: %w", s.Name(), err))
		}
		rh := r.router.AddConsumerHandler(s.Name()+"/replay", bus.ReplaySubject(s.Name()), st.replays, st.handle)
		rh.AddMiddleware(r.account(st), poison, retry.Middleware, st.logAttempt, middleware.Recoverer)
		log.Info("stage started", "stage", s.Name(), "durable", bus.StageDurablePrefix+s.Name(),
			"concurrency", conc, "retries", cfg.MaxRetries, "ack_wait", opts.AckWait)
	}

	go func() {
		r.err = r.router.Run(rctx)
		cancel()
		close(r.done)
	}()
	select {
	case <-r.router.Running():
		return r, nil
	case <-r.done:
		err := r.err
		if err == nil {
			err = errors.New("router stopped")
		}
		return fail(fmt.Errorf("stages: %w", err))
	}
}

// ackWait covers a stage's whole retry schedule: every attempt at its
// longest, every backoff at its longest, and AckWaitMargin.
func ackWait(attempt time.Duration, cfg Config) time.Duration {
	total := time.Duration(cfg.MaxRetries+1)*attempt + AckWaitMargin
	d := float64(cfg.RetryInitial)
	for range cfg.MaxRetries {
		total += time.Duration(d * (1 + RetryJitter))
		d = min(d*RetryMultiplier, float64(cfg.RetryMax))
	}
	return total
}

// handle is the Watermill handler of a stage: one attempt.
func (st *stageState) handle(m *message.Message) error {
	ev := bus.MessageEvent(m)
	if n, ok := m.Context().Value(attemptsKey{}).(*atomic.Int32); ok {
		n.Add(1)
	}
	return st.stage.Handle(m.Context(), &ev)
}

// logAttempt logs a failed attempt (a panic included: it sits outside
// the recoverer).
func (st *stageState) logAttempt(h message.HandlerFunc) message.HandlerFunc {
	return func(m *message.Message) ([]*message.Message, error) {
		out, err := h(m)
		if err == nil {
			return out, nil
		}
		ctx := m.Context()
		if ctx.Err() != nil {
			// Stopping: not a failure of the event.
			return out, fmt.Errorf("%w (stopped: %v)", context.Canceled, err)
		}
		st.failures.Add(1)
		attempt := 0
		if n, ok := ctx.Value(attemptsKey{}).(*atomic.Int32); ok {
			attempt = int(n.Load())
		}
		st.log.Warn("stage failed", "ivorn", m.Metadata.Get(bus.HeaderIVORN), "sha1", m.UUID,
			"attempt", attempt, "attempts", st.retries+1, "err", err)
		return out, err
	}
}

// account counts outcomes and logs the dead-lettered events.
func (r *Runner) account(st *stageState) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(m *message.Message) ([]*message.Message, error) {
			for _, k := range []string{middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey,
				middleware.PoisonedHandlerKey, middleware.PoisonedSubscriberKey} {
				delete(m.Metadata, k) // only the poison queue may set these
			}
			m.SetContext(context.WithValue(m.Context(), attemptsKey{}, new(atomic.Int32)))
			out, err := h(m)
			ivorn := m.Metadata.Get(bus.HeaderIVORN)
			switch {
			case err != nil && (r.ctx.Err() != nil || errors.Is(err, context.Canceled)):
				st.log.Debug("stage stopped while handling an event; it is handled again at the next start",
					"ivorn", ivorn, "sha1", m.UUID)
			case err != nil:
				st.log.Error("stage failed and the event could not be dead-lettered; it is delivered again later",
					"ivorn", ivorn, "sha1", m.UUID, "err", err)
			case m.Metadata.Get(middleware.ReasonForPoisonedKey) != "":
				st.deadLettered.Add(1)
				st.log.Error("stage gave up on an event; dead-lettered", "ivorn", ivorn, "sha1", m.UUID,
					"subject", bus.DeadLetterSubject(st.stage.Name()),
					"reason", m.Metadata.Get(middleware.ReasonForPoisonedKey))
			default:
				st.handled.Add(1)
			}
			return out, err
		}
	}
}

// close closes the stage's subscribers.
func (st *stageState) close() error {
	err := st.sub.Close()
	if st.replays != nil {
		err = errors.Join(err, st.replays.Close())
	}
	return err
}

// Running reports whether the stages are consuming: false once the
// router has stopped, by Close or by a failure.
func (r *Runner) Running() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// Names lists the stages, in the order they run.
func (r *Runner) Names() []string {
	out := make([]string, len(r.stages))
	for i, st := range r.stages {
		out[i] = st.stage.Name()
	}
	return out
}

// Stats returns the counters of every stage by name.
func (r *Runner) Stats() map[string]Stats {
	out := make(map[string]Stats, len(r.stages))
	for _, st := range r.stages {
		out[st.stage.Name()] = Stats{Handled: st.handled.Load(), Failures: st.failures.Load(),
			DeadLettered: st.deadLettered.Load()}
	}
	return out
}

// Close stops the stages and waits for them: no new event is taken,
// commands still running are killed, and the events whose handling was
// cut short stay unacknowledged on the bus, to be handled again at the
// next start. Events already handled are acknowledged before Close
// returns.
func (r *Runner) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		var errs []error
		if r.router != nil {
			if err := r.router.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		<-r.done
		if r.err != nil {
			errs = append(errs, r.err)
		}
		for _, st := range r.stages {
			if err := st.close(); err != nil {
				errs = append(errs, err)
			}
		}
		if r.pub != nil {
			r.pub.Close()
		}
		if err := errors.Join(errs...); err != nil {
			r.closeErr = fmt.Errorf("stages: close: %w", err)
		}
	})
	return r.closeErr
}
