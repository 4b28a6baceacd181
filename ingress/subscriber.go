package ingress

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/filter"
	"github.com/comet-go/comet/tally"
	"github.com/comet-go/comet/voevent"
	"github.com/comet-go/comet/vtp"
)

// Defaults for Subscription fields left zero.
const (
	// DefaultInactivityTimeout is Comet's: with no valid message from
	// upstream for this long, the connection is dropped and remade.
	DefaultInactivityTimeout = 120 * time.Second
	// DefaultHealthyAfter is how long a connection must stay up before the
	// reconnect back-off starts again from the beginning. Comet latest
	// resets on every connect, so a broker that accepts and then drops
	// connections makes it reconnect in a tight loop.
	DefaultHealthyAfter = 30 * time.Second
	// DefaultDialTimeout bounds one connection attempt, a tls: target's
	// handshake included, unless the target gives timeout=.
	DefaultDialTimeout = 20 * time.Second
	// DefaultWriteTimeout bounds one reply to upstream.
	DefaultWriteTimeout = 20 * time.Second
	// MaxBackoff caps the pause between attempts (Comet latest: 60 s).
	MaxBackoff = 60 * time.Second
	// MaxBadMessages: an upstream that sends this many unparsable or
	// unclassifiable messages in a row is disconnected (and retried after
	// the back-off) rather than left to fill the log.
	MaxBadMessages = 32
)

// CometBackoff is Comet latest's delay before the nth consecutive attempt
// (n >= 1): min(1.5^n, 60) seconds plus up to one second of jitter.
func CometBackoff(n int) time.Duration {
	d := time.Duration(math.Pow(1.5, float64(n)) * float64(time.Second))
	if d > MaxBackoff || d <= 0 {
		d = MaxBackoff
	}
	return d + time.Duration(rand.Int64N(int64(time.Second)))
}

// SubscriberConfig configures the subscriptions to upstream brokers.
// NewSubscription gives zero values their defaults and refuses negative
// ones.
type SubscriberConfig struct {
	LocalIVO string // Response of replies; omitted when empty
	Node     string // recorded in the Comet-Node header
	// Filters are sent in every authenticate reply, and applied here too
	// to what the upstream sends, as a broadcaster applies a subscriber's
	// (within FilterBudget, failing closed): an upstream that ignores
	// filters (GCN) or drops one it refuses (Comet) cannot widen what
	// comes in. Checked by the caller; one that does not compile here
	// matches nothing.
	Filters []string
	// FilterBudget is the evaluation steps each filter may take on each
	// event (--filter-budget); 0 = filter.DefaultBudget.
	FilterBudget int

	InactivityTimeout time.Duration // 0 = DefaultInactivityTimeout
	HealthyAfter      time.Duration // 0 = DefaultHealthyAfter
	DialTimeout       time.Duration // 0 = DefaultDialTimeout
	WriteTimeout      time.Duration // 0 = DefaultWriteTimeout
	MaxFrame          int           // 0 = vtp.DefaultMaxFrame
	// Backoff gives the pause before the nth consecutive attempt; nil =
	// CometBackoff.
	Backoff func(n int) time.Duration
	// Sign, if set, signs every authenticate reply (--key-id): it returns
	// the message with its signature appended (docs/openpgp.md §3), for
	// upstream brokers that run with --subscriber-auth.
	Sign func(msg []byte) ([]byte, error)
	// Timings, if set, is told how long the bus took to store each event
	// (Stored only).
	Timings Timings

	Logger *slog.Logger
}

func (c *SubscriberConfig) setDefaults() error {
	if c.InactivityTimeout < 0 || c.HealthyAfter < 0 || c.DialTimeout < 0 || c.WriteTimeout < 0 || c.MaxFrame < 0 ||
		c.FilterBudget < 0 {
		return errors.New("ingress: subscriber: negative limit")
	}
	c.FilterBudget = cmp.Or(c.FilterBudget, filter.DefaultBudget)
	c.InactivityTimeout = cmp.Or(c.InactivityTimeout, DefaultInactivityTimeout)
	c.HealthyAfter = cmp.Or(c.HealthyAfter, DefaultHealthyAfter)
	c.DialTimeout = cmp.Or(c.DialTimeout, DefaultDialTimeout)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, DefaultWriteTimeout)
	c.MaxFrame = cmp.Or(c.MaxFrame, vtp.DefaultMaxFrame)
	if c.Backoff == nil {
		c.Backoff = CometBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Subscription keeps one connection to an upstream broker's broadcaster
// and feeds its events into the bus through the same check-and-store as
// authored events (without the schema check, as Comet). It acknowledges
// every event it has stored or turned away and never naks (docs/vtp.md
// §4.2); an event the bus could not store is not acknowledged: the
// connection is closed, so that the upstream keeps the event for when
// this broker comes back (a Comet for Go upstream replays it).
type Subscription struct {
	target     endpoint.Endpoint
	dialer     *endpoint.Dialer
	store      Store
	cfg        SubscriberConfig
	log        *slog.Logger
	filters    []*filter.Filter     // cfg.Filters compiled
	overBudget filter.OverBudgetLog // used by Run's goroutine only
	rejected   tally.Counts[Rejection]
	tlsFailed  tally.Counts[endpoint.Failure]
	accepted   atomic.Uint64
	lastEvent  atomic.Int64 // Unix nanoseconds of the last event received; 0 = none

	mu    sync.Mutex // guards state
	state SubscriptionStatus
}

// SubscriptionState is where a subscription stands.
type SubscriptionState uint8

const (
	// StateConnecting: dialling the upstream broker.
	StateConnecting SubscriptionState = iota + 1
	// StateConnected: connected, receiving.
	StateConnected
	// StateWaiting: the last connection failed or ended; waiting for the
	// next attempt (NextRetry).
	StateWaiting
	// StateStopped: Run has returned.
	StateStopped
)

// String is the state's label on the status page and in metrics.
func (s SubscriptionState) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateWaiting:
		return "waiting"
	case StateStopped:
		return "stopped"
	}
	return "not started"
}

// SubscriptionStatus describes a subscription now, for the status page.
type SubscriptionStatus struct {
	Target    string            // the upstream broker
	State     SubscriptionState // zero before Run
	Since     time.Time         // when State began
	Attempt   int               // consecutive failed attempts before this one
	NextRetry time.Time         // with StateWaiting
	LastError string            // why the last connection ended
	LastEvent time.Time         // the last event received; zero for none
	Accepted  uint64            // events stored since it was built
}

// Status returns the subscription's state and counts.
func (s *Subscription) Status() SubscriptionStatus {
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	st.Target = s.target.String()
	if n := s.lastEvent.Load(); n != 0 {
		st.LastEvent = time.Unix(0, n)
	}
	st.Accepted = s.accepted.Load()
	return st
}

// Accepted counts the upstream events stored since it was built.
func (s *Subscription) Accepted() uint64 { return s.accepted.Load() }

// setState records a change of state.
func (s *Subscription) setState(state SubscriptionState, attempt int, next time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.State, s.state.Since, s.state.Attempt, s.state.NextRetry = state, time.Now(), attempt, next
	if err != nil {
		s.state.LastError = err.Error()
	}
}

// NewSubscription returns the subscription to target, storing what it
// receives in store. Run runs it.
func NewSubscription(target endpoint.Endpoint, store Store, cfg SubscriberConfig) (*Subscription, error) {
	if store == nil {
		return nil, errors.New("ingress: subscriber: no store")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	// A tls: target's files are read now: a bad one fails at start-up.
	dialer, err := endpoint.NewDialer(target, cfg.DialTimeout)
	if err != nil {
		return nil, err
	}
	s := &Subscription{target: target, dialer: dialer, store: store, cfg: cfg, log: cfg.Logger.With("upstream", target.String())}
	for _, e := range cfg.Filters {
		f, err := filter.Compile(e)
		if err != nil {
			s.log.Error("filter refused: it never matches (fail closed)", "reason", err)
			f = filter.Refuse(e, err)
		}
		s.filters = append(s.filters, f)
	}
	s.overBudget = filter.OverBudgetLog{Logger: s.log, Budget: cfg.FilterBudget}
	return s, nil
}

// selected reports whether an upstream event passes the subscription's
// own filters (every event if there are none).
func (s *Subscription) selected(payload []byte) bool {
	if len(s.filters) == 0 {
		return true
	}
	doc, err := filter.Parse(payload)
	return err == nil && doc.MatchAny(s.filters, s.cfg.FilterBudget, s.overBudget.Report)
}

// Rejections counts, by reason, the upstream events this subscription
// acked without relaying them, and those it could not store (not acked).
func (s *Subscription) Rejections() map[Rejection]uint64 { return s.rejected.Snapshot() }

// TLSFailures counts the failed TLS handshakes with a tls: upstream, by
// kind.
func (s *Subscription) TLSFailures() map[endpoint.Failure]uint64 { return s.tlsFailed.Snapshot() }

// Reload re-reads a tls: target's trust roots and client certificate for
// the connections made from now on; on error the ones read before stay in
// use.
func (s *Subscription) Reload() error { return s.dialer.Reload() }

// Run connects, serves and reconnects until ctx ends.
func (s *Subscription) Run(ctx context.Context) {
	log := s.log
	failures := 0
	defer s.setState(StateStopped, 0, time.Time{}, nil)
	for {
		log.Info("connecting to upstream broker")
		s.setState(StateConnecting, failures, time.Time{}, nil)
		started := time.Now()
		err := s.connectAndServe(ctx, log)
		if ctx.Err() != nil {
			log.Info("subscription stopped")
			return
		}
		if time.Since(started) >= s.cfg.HealthyAfter {
			failures = 0
		}
		failures++
		delay := s.cfg.Backoff(failures)
		s.setState(StateWaiting, failures, time.Now().Add(delay), err)
		log.Warn("upstream connection lost; reconnecting", "err", err, "attempt", failures, "in", delay)
		select {
		case <-ctx.Done():
			log.Info("subscription stopped")
			return
		case <-time.After(delay):
		}
	}
}

func (s *Subscription) connectAndServe(ctx context.Context, log *slog.Logger) error {
	conn, err := s.dialer.Dial(ctx)
	if err != nil {
		var he *endpoint.HandshakeError
		if errors.As(err, &he) {
			s.tlsFailed.Add(he.Failure)
		}
		return err
	}
	defer conn.Close()
	log.Info("connected to upstream broker", append([]any{"local", conn.LocalAddr().String(), "tls", s.target.TLS != nil},
		endpoint.PeerLogAttrs(conn)...)...)
	s.setState(StateConnected, 0, time.Time{}, nil)
	// Closing the connection is how a cancelled ctx interrupts a read.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			conn.Close()
		case <-stop:
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	inactivity := s.cfg.InactivityTimeout
	peer := conn.RemoteAddr().String()
	fr := vtp.NewFrameReader(bufio.NewReader(conn), s.cfg.MaxFrame)
	lastValid := time.Now()
	bad := 0
	for {
		// The timer restarts only on messages that classify (Comet latest).
		conn.SetReadDeadline(lastValid.Add(inactivity))
		payload, err := fr.ReadFrame()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return errors.New("no message from upstream for " + inactivity.String())
			}
			if errors.Is(err, io.EOF) {
				return errors.New("upstream closed the connection")
			}
			return err
		}
		info, err := voevent.Inspect(payload, voevent.Options{})
		if err == nil && !vtp.IsTransportRole(info.Role) && !voevent.IsVOEventRole(info.Role) {
			err = fmt.Errorf("incomprehensible: root role %q", info.Role)
		}
		if err != nil {
			if bad++; bad >= MaxBadMessages {
				return fmt.Errorf("%d bad messages in a row from upstream: %w", bad, err)
			}
			log.Warn("bad message from upstream; ignored", "err", err, "bytes", len(payload))
			continue
		}
		bad = 0
		switch {
		case vtp.IsTransportRole(info.Role):
			lastValid = time.Now()
			if err := s.answer(conn, payload, log); err != nil {
				return err
			}
		case voevent.IsVOEventRole(info.Role):
			lastValid = time.Now()
			if !info.HasIVORN {
				// Comet drops the connection here by accident; pygcn ignores
				// the message, and so do we (docs/vtp.md §6).
				s.rejected.Add(RejectNoIVORN)
				log.Warn("event without ivorn from upstream; ignored")
				continue
			}
			s.lastEvent.Store(lastValid.UnixNano())
			if err := s.ingest(ctx, payload, info, peer, log); err != nil {
				return err
			}
			if err := s.write(conn, vtp.Ack(info.IVORN, s.cfg.LocalIVO, time.Now())); err != nil {
				return err
			}
		}
	}
}

// ingest records and stores one upstream event through relay, the path
// Kafka records take too. The caller acks unless it returns an error: the
// event was not stored, and the connection is to be closed without an ack
// (a subscriber never naks).
func (s *Subscription) ingest(ctx context.Context, payload []byte, info *voevent.Info, peer string, log *slog.Logger) error {
	log = log.With("ivorn", info.IVORN)
	ev, outcome, err := relay(ctx, s.store, payload, info, s.selected, bus.OriginUpstream, peer, s.cfg.Node)
	switch {
	case err != nil:
		s.rejected.Add(RejectStoreFailed)
		return fmt.Errorf("event %s not stored, so not acked; closing the connection so that the upstream keeps it: %w", info.IVORN, err)
	case outcome == relayInvalidIVORN:
		s.rejected.Add(RejectInvalid)
		log.Warn("event with an invalid IVOID from upstream; acked, not relayed")
	case outcome == relayNotSelected:
		log.Debug("event from upstream not selected by this subscription's filters; acked, not relayed")
	case outcome == relayDuplicate:
		s.rejected.Add(RejectPreviouslySeen)
		log.Debug("event from upstream previously seen; acked, not relayed")
	case outcome == relayAccepted:
		s.accepted.Add(1)
		if f := s.cfg.Timings.Stored; f != nil {
			f(time.Since(ev.ReceivedAt)) // set just before the store
		}
		log.Info("event accepted from upstream", "sha1", ev.SHA1, "role", ev.Role)
	}
	return nil
}

// answer replies to iamalive and authenticate; receipts are only logged.
func (s *Subscription) answer(conn net.Conn, payload []byte, log *slog.Logger) error {
	msg, err := vtp.ParseTransport(payload)
	if err != nil {
		log.Warn("bad Transport message from upstream; ignored", "err", err)
		return nil
	}
	now := time.Now()
	switch msg.Role {
	case vtp.RoleIAmAlive:
		return s.write(conn, vtp.IAmAlive(msg.Origin, s.cfg.LocalIVO, now))
	case vtp.RoleAuthenticate:
		log.Info("authenticating to upstream", "filters", len(s.cfg.Filters), "signed", s.cfg.Sign != nil)
		reply := vtp.AuthenticateReply(msg.Origin, s.cfg.LocalIVO, s.cfg.Filters, now)
		if s.cfg.Sign != nil {
			signed, err := s.cfg.Sign(reply)
			if err != nil {
				return fmt.Errorf("signing the authenticate reply: %w", err)
			}
			reply = signed
		}
		return s.write(conn, reply)
	default:
		log.Debug("receipt from upstream ignored", "role", msg.Role, "origin", msg.Origin)
		return nil
	}
}

func (s *Subscription) write(conn net.Conn, msg []byte) error {
	conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	return vtp.WriteFrame(conn, msg)
}
