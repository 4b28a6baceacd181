// Package egress is the VTP broadcaster: it serves subscribers, relays every
// event from the bus to those whose filters match, keeps them alive with
// iamalive probes and drops the ones that stop answering (docs/vtp.md §4.2).
// A slow subscriber has a bounded queue and is dropped, never waited on.
package egress

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/comet-go/comet/accept"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/filter"
	"github.com/comet-go/comet/tally"
	"github.com/comet-go/comet/vtp"
	"github.com/comet-go/comet/whitelist"
)

// Defaults for Broadcaster fields left zero. Each is a documented flag of
// cmd/comet.
const (
	// DefaultIAmAliveInterval is Comet's keep-alive tick; pygcn times out
	// after 150 s of silence, so it must stay well under that.
	DefaultIAmAliveInterval = 60 * time.Second
	// DefaultTestInterval is Comet's test-event period.
	DefaultTestInterval = time.Hour
	// DefaultMaxUnacked: a subscriber with this many events unacknowledged
	// at a tick is dropped (Comet: 10).
	DefaultMaxUnacked = 10
	// DefaultQueueLen bounds each subscriber's queue of outgoing frames;
	// a subscriber whose queue is full is dropped.
	DefaultQueueLen = 1024
	// DefaultMaxInFlight bounds the events sent to one subscriber and not
	// yet acknowledged; at it the subscriber's writer waits for acks, and
	// drops the subscriber after AckStallTimeout without one, rather than
	// waiting for the next tick, so it cannot hold back the bus consumer
	// long.
	DefaultMaxInFlight = 1024
	// DefaultQueueWait is how long an event waits for room in a full
	// subscriber queue before the subscriber is dropped as too slow.
	DefaultQueueWait = time.Second
	// DefaultAckStallTimeout is how long a subscriber with MaxInFlight
	// events unacknowledged may go without acknowledging one before it is
	// dropped. Until then its writer waits: a burst (a backlog replayed
	// after a bus failover) must not cost a healthy subscriber its
	// connection, while one that reads but never acks holds the others back
	// at most this long.
	DefaultAckStallTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds one write to a subscriber's socket.
	DefaultWriteTimeout = 30 * time.Second
	// MaxBadMessages: a subscriber that sends this many unparsable or
	// non-Transport messages in a row is dropped.
	MaxBadMessages = 32
	// DefaultFilterCacheSize bounds the number of distinct compiled filters.
	DefaultFilterCacheSize = 4096
	// DefaultAuthTimeout is how long a subscriber has, with
	// VerifySubscriber set, to send a correctly signed authenticate reply
	// before it is disconnected; it receives no events meanwhile.
	DefaultAuthTimeout = 30 * time.Second
)

// Config configures a Broadcaster. New gives zero values their defaults
// (TestInterval and Grace excepted: zero turns them off) and refuses
// negative ones.
type Config struct {
	LocalIVO  string          // Origin of iamalive/authenticate; base of test-event ivorns
	Version   string          // named in test events
	Whitelist *whitelist.List // nil allows everyone
	Limits    accept.Limits   // open connections per listener; zero = unlimited
	// HandshakeTimeout bounds the TLS handshake on an ssl: listener, from
	// accept; 0 = accept.DefaultHandshakeTimeout (the broker gives
	// --receive-timeout, as for authors).
	HandshakeTimeout time.Duration

	IAmAliveInterval time.Duration // 0 = DefaultIAmAliveInterval
	TestInterval     time.Duration // 0 = no test events (cmd/comet's default is DefaultTestInterval)
	MaxUnacked       int           // 0 = DefaultMaxUnacked
	QueueLen         int           // 0 = DefaultQueueLen
	MaxInFlight      int           // 0 = DefaultMaxInFlight
	AckStallTimeout  time.Duration // 0 = DefaultAckStallTimeout
	QueueWait        time.Duration // 0 = DefaultQueueWait
	WriteTimeout     time.Duration // 0 = DefaultWriteTimeout
	MaxFrame         int           // 0 = vtp.DefaultMaxFrame
	// Grace is how long the Relay feeding this broadcaster waits after a
	// restart before replaying the events stored while it was down; 0 =
	// none (cmd/comet's default is DefaultGrace).
	Grace time.Duration
	// FilterBudget is the evaluation steps each filter of a subscriber may
	// take on each event (--filter-budget); a filter that runs out is no
	// match for that event, and logged. 0 = filter.DefaultBudget.
	FilterBudget int

	// VerifySubscriber, if set (--subscriber-auth), must accept the OpenPGP
	// signature on a subscriber's first authenticate reply, returning who
	// signed. Until one is accepted the subscriber gets no events (they
	// are skipped, not queued); an error, or no reply within AuthTimeout,
	// disconnects it.
	VerifySubscriber func(msg []byte) (signer string, err error)
	AuthTimeout      time.Duration // 0 = DefaultAuthTimeout
	MaxVerifying     int           // signature checks at once; 0 = accept.ChecksPerCPU × GOMAXPROCS

	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.IAmAliveInterval < 0 || c.TestInterval < 0 || c.MaxUnacked < 0 || c.QueueLen < 0 ||
		c.MaxInFlight < 0 || c.AckStallTimeout < 0 || c.QueueWait < 0 || c.WriteTimeout < 0 ||
		c.MaxFrame < 0 || c.Grace < 0 || c.FilterBudget < 0 || c.AuthTimeout < 0 || c.MaxVerifying < 0 ||
		c.Limits.MaxConns < 0 || c.Limits.MaxConnsPerPeer < 0 || c.HandshakeTimeout < 0 {
		return errors.New("egress: negative limit")
	}
	c.IAmAliveInterval = cmp.Or(c.IAmAliveInterval, DefaultIAmAliveInterval)
	c.MaxUnacked = cmp.Or(c.MaxUnacked, DefaultMaxUnacked)
	c.QueueLen = cmp.Or(c.QueueLen, DefaultQueueLen)
	c.MaxInFlight = cmp.Or(c.MaxInFlight, DefaultMaxInFlight)
	c.AckStallTimeout = cmp.Or(c.AckStallTimeout, DefaultAckStallTimeout)
	c.QueueWait = cmp.Or(c.QueueWait, DefaultQueueWait)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, DefaultWriteTimeout)
	c.MaxFrame = cmp.Or(c.MaxFrame, vtp.DefaultMaxFrame)
	c.AuthTimeout = cmp.Or(c.AuthTimeout, DefaultAuthTimeout)
	c.FilterBudget = cmp.Or(c.FilterBudget, filter.DefaultBudget)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Broadcaster serves subscribers on any number of listeners. Build it with
// New, then call Serve per listener and Run once; Broadcast relays events.
type Broadcaster struct {
	cfg       Config
	log       *slog.Logger
	filters   *filter.Cache
	verifying *accept.Gate // MaxVerifying slots
	drops     tally.Counts[DropCause]
	tlsFailed tally.Counts[endpoint.Failure]
	departed  atomic.Uint64 // events delivered to subscribers since disconnected

	deliveredMax atomic.Uint64 // the highest total Delivered returned

	mu        sync.RWMutex
	subs      map[*downstream]struct{}
	snapshot  atomic.Pointer[[]*downstream] // copy of subs for lock-free fan-out
	listeners map[net.Listener]struct{}
	closed    bool
	wg        sync.WaitGroup // subscriber goroutines

	shuttingDown atomic.Bool
}

// New returns a broadcaster configured by cfg.
func New(cfg Config) (*Broadcaster, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Broadcaster{
		cfg:       cfg,
		log:       cfg.Logger,
		filters:   filter.NewCache(DefaultFilterCacheSize),
		verifying: accept.NewGate(cfg.MaxVerifying),
		subs:      make(map[*downstream]struct{}),
		listeners: make(map[net.Listener]struct{}),
	}, nil
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("egress: broadcaster closed")

// Serve accepts subscribers on ln until Close.
func (b *Broadcaster) Serve(ln net.Listener) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	b.listeners[ln] = struct{}{}
	b.mu.Unlock()
	log := b.log.With("listener", ln.Addr().String())
	log.Info("broadcasting events")
	policy := accept.Policy{Whitelist: b.cfg.Whitelist, Limits: b.cfg.Limits, Logger: log,
		Refused:          func(why accept.Refusal) { b.drops.Add(DropCause(why)) },
		HandshakeTimeout: b.cfg.HandshakeTimeout,
		HandshakeFailed:  func(f endpoint.Failure) { b.tlsFailed.Add(f) }}
	if err := accept.Loop(ln, policy, b.isClosed, b.add); err != nil {
		return err
	}
	return ErrServerClosed
}

// Run drives the keep-alive and test-event timers until ctx ends. Both
// fire once at start, as Comet's do.
func (b *Broadcaster) Run(ctx context.Context) {
	alive := time.NewTicker(b.cfg.IAmAliveInterval)
	defer alive.Stop()
	var testC <-chan time.Time
	if b.cfg.TestInterval > 0 {
		t := time.NewTicker(b.cfg.TestInterval)
		defer t.Stop()
		testC = t.C
		b.SendTestEvent(time.Now())
	}
	b.tick()
	for {
		select {
		case <-ctx.Done():
			return
		case <-alive.C:
			b.tick()
		case now := <-testC:
			b.SendTestEvent(now)
		}
	}
}

// Close stops accepting, disconnects every subscriber and waits for their
// goroutines.
func (b *Broadcaster) Close() error {
	b.shuttingDown.Store(true)
	b.mu.Lock()
	b.closed = true
	for ln := range b.listeners {
		ln.Close()
	}
	subs := make([]*downstream, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.close(DropShutdown, "broker shutting down")
	}
	b.wg.Wait()
	return nil
}

// Subscribers returns the number of connected subscribers.
func (b *Broadcaster) Subscribers() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.subs)
}

// Broadcast relays payload (exact bytes) to every subscriber whose filters
// match. It never blocks on a subscriber: a full queue drops that
// subscriber. Filters are applied by each subscriber's own writer, so one
// subscriber's costly filters delay only that subscriber; the event is
// parsed for filtering once, by the first writer that needs it. done, if
// not nil, runs once every subscriber has acknowledged the event, found it
// did not match, or been dropped (at once if there are none): the relay
// then acks the event on the bus, so a crash before that point replays
// it. Calls must not overlap if per-subscriber order matters (the relay
// calls it from one goroutine).
func (b *Broadcaster) Broadcast(payload []byte, done func()) {
	subs := b.subscribers()
	if len(subs) == 0 {
		if done != nil && !b.shuttingDown.Load() {
			done()
		}
		return
	}
	t := &tracker{done: done, b: b}
	t.n.Store(1) // held by this call until every subscriber has its share
	ev := &event{payload: payload, t: t, b: b}
	binary.BigEndian.PutUint32(ev.prefix[:], uint32(len(payload)))
	auth := b.cfg.VerifySubscriber != nil
	deadline := b.queueDeadline()
	for _, s := range subs {
		if auth && !s.verified.Load() {
			continue // not authenticated (yet): skipped, never queued
		}
		s.offer(item{ev: ev}, deadline)
	}
	t.release()
}

// event is one broadcast event, shared read-only by every queue.
type event struct {
	payload []byte
	prefix  [4]byte // the frame's length prefix; the frame is prefix + payload
	t       *tracker
	b       *Broadcaster

	once sync.Once
	doc  *filter.Doc
	err  error
}

// document parses the event for filtering, once for all subscribers.
func (e *event) document() (*filter.Doc, error) {
	e.once.Do(func() {
		e.doc, e.err = filter.Parse(e.payload)
		if e.err != nil {
			e.b.log.Warn("event cannot be parsed for filtering; sent to unfiltered subscribers only", "err", e.err)
		}
	})
	return e.doc, e.err
}

// tracker counts the subscribers that still owe an acknowledgement.
type tracker struct {
	n    atomic.Int64
	done func()
	b    *Broadcaster
}

// release drops one share. The last one acks the event on the bus, except
// while shutting down: subscribers cut off by a shutdown may not have the
// event, so it stays unacknowledged and is replayed after the restart.
func (t *tracker) release() {
	if t.n.Add(-1) == 0 && t.done != nil && !t.b.shuttingDown.Load() {
		t.done()
	}
}

func (b *Broadcaster) add(conn net.Conn) {
	s := &downstream{
		b:    b,
		conn: conn,
		peer: conn.RemoteAddr().String(),
		done: make(chan struct{}),
		wake: make(chan struct{}, 1),
		room: make(chan struct{}, 1),

		ackSignal: make(chan struct{}, 1),
		since:     time.Now(),
	}
	if id, ok := endpoint.PeerIdentity(conn); ok {
		s.cert = id
	}
	s.log = b.log.With("subscriber", s.peer).With(endpoint.PeerLogAttrs(conn)...)
	s.overBudget = filter.OverBudgetLog{Logger: s.log, Budget: b.cfg.FilterBudget}
	// Ask for filters at once, but never wait for the answer: pygcn never
	// replies, and it must still receive every event. Queued before the
	// subscriber is visible to ticks and broadcasts, so it always goes first.
	s.queue = append(s.queue, item{frame: vtp.Frame(vtp.AuthenticateRequest(b.cfg.LocalIVO, time.Now()))})
	if b.cfg.VerifySubscriber != nil {
		// Set before the subscriber is visible: a broadcast may start its
		// writer at once, and close reads it.
		timeout := b.cfg.AuthTimeout
		s.authTimer = time.AfterFunc(timeout, func() {
			if !s.verified.Load() {
				s.close(DropAuthTimeout, fmt.Sprintf("no correctly signed authenticate reply within %v", timeout))
			}
		})
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		if s.authTimer != nil {
			s.authTimer.Stop()
		}
		conn.Close()
		return
	}
	b.subs[s] = struct{}{}
	b.publishSnapshot()
	b.wg.Add(1) // the reader; the writer is counted when it starts
	b.mu.Unlock()
	s.log.Info("subscriber connected", "auth_required", b.cfg.VerifySubscriber != nil)
	s.mu.Lock()
	s.startWriterLocked() // the authenticate request
	s.mu.Unlock()
	go s.readLoop()
}

func (b *Broadcaster) remove(s *downstream) {
	b.mu.Lock()
	delete(b.subs, s)
	b.publishSnapshot()
	b.mu.Unlock()
}

// publishSnapshot must be called with mu held.
func (b *Broadcaster) publishSnapshot() {
	list := make([]*downstream, 0, len(b.subs))
	for s := range b.subs {
		list = append(list, s)
	}
	b.snapshot.Store(&list)
}

// subscribers is the current set, read without locking: a subscriber may
// be dropped (and its queue refuse frames) while the caller iterates.
// queueDeadline is how long one fan-out waits for room in full queues:
// QueueWait for all its subscribers together, so many stuck subscribers
// cost one wait, not one each.
func (b *Broadcaster) queueDeadline() time.Time {
	return time.Now().Add(b.cfg.QueueWait)
}

func (b *Broadcaster) subscribers() []*downstream {
	if p := b.snapshot.Load(); p != nil {
		return *p
	}
	return nil
}

// tick applies Comet's keep-alive rules to every subscriber, in order:
// an unanswered probe drops it, too many unacked events drop it, otherwise
// it gets a new probe.
func (b *Broadcaster) tick() {
	probe := vtp.Frame(vtp.IAmAlive(b.cfg.LocalIVO, "", time.Now()))
	maxUnacked := int64(b.cfg.MaxUnacked)
	deadline := b.queueDeadline()
	for _, s := range b.subscribers() {
		s.mu.Lock()
		alive, unacked := s.aliveOutstanding, int64(len(s.inflight))
		if alive < 1 && unacked < maxUnacked {
			s.aliveOutstanding++
		}
		s.mu.Unlock()
		switch {
		case alive >= 1:
			s.close(DropIAmAliveUnanswered, "peer appears to be dead: iamalive unanswered")
		case unacked >= maxUnacked:
			s.close(DropUnacked, fmt.Sprintf("peer is not acknowledging events (%d unacknowledged)", unacked))
		default:
			s.offer(item{frame: probe}, deadline)
		}
	}
}

func (b *Broadcaster) isClosed() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.closed
}

// Drops counts, by cause, the subscribers disconnected or refused since
// the broadcaster was built.
func (b *Broadcaster) Drops() map[DropCause]uint64 { return b.drops.Snapshot() }

// TLSFailures counts the failed TLS handshakes on its ssl: listeners, by
// kind (all counted as DropTLS too).
func (b *Broadcaster) TLSFailures() map[endpoint.Failure]uint64 { return b.tlsFailed.Snapshot() }

// Delivered counts the events written to subscribers since the
// broadcaster was built (a delivery counts when its frame is written,
// before the subscriber acks it), over connected and departed subscribers.
func (b *Broadcaster) Delivered() uint64 {
	n := b.departed.Load()
	for _, s := range b.subscribers() {
		n += s.delivered.Load()
	}
	// A subscriber leaving the list an instant before its count moves to
	// departed must not make the total go back (a counter reset to
	// Prometheus).
	for {
		prev := b.deliveredMax.Load()
		if n <= prev {
			return prev
		}
		if b.deliveredMax.CompareAndSwap(prev, n) {
			return n
		}
	}
}

// SubscriberStats describes one connected subscriber.
type SubscriberStats struct {
	Peer string
	// CertSubject and CertSHA256 are the verified client certificate's
	// subject and fingerprint (an ssl: listener with clientCA=); empty
	// otherwise.
	CertSubject   string
	CertSHA256    string
	Since         time.Time // connected at
	Queued        int       // frames waiting in its queue
	Delivered     uint64    // events written to it
	LastAck       time.Time // its last ack; zero for none
	Authenticated bool      // it has answered an authenticate request
	Signer        string    // whose signature it authenticated with (VerifySubscriber)
	Filters       []string  // filters installed and evaluated
	Refused       []string  // filters it sent that were refused: they never match
	Withheld      uint64    // events its filters did not let through
	OverBudget    uint64    // evaluations of its filters stopped at the budget (no match)
	InFlight      int       // events sent and not yet acknowledged
}

// Stats lists the connected subscribers, for diagnostics and tests.
func (b *Broadcaster) Stats() []SubscriberStats {
	subs := b.subscribers()
	out := make([]SubscriberStats, 0, len(subs))
	for _, s := range subs {
		st := SubscriberStats{Peer: s.peer, CertSubject: s.cert.Subject, CertSHA256: s.cert.SHA256, Since: s.since, Delivered: s.delivered.Load(),
			Authenticated: s.authenticated.Load(), Withheld: s.withheld.Load(), OverBudget: s.overBudgetN.Load()}
		if n := s.lastAck.Load(); n != 0 {
			st.LastAck = time.Unix(0, n)
		}
		if p := s.signer.Load(); p != nil {
			st.Signer = *p
		}
		for _, f := range s.currentFilters() {
			if f.Refusal() != nil {
				st.Refused = append(st.Refused, f.String())
			} else {
				st.Filters = append(st.Filters, f.String())
			}
		}
		s.mu.Lock()
		st.Queued = len(s.queue)
		st.InFlight = len(s.inflight)
		s.mu.Unlock()
		out = append(out, st)
	}
	return out
}
