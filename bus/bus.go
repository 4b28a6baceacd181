package bus

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names that make up the public contract (see the package comment).
const (
	StreamName    = "COMET_EVENTS"
	SubjectPrefix = "comet.event."
	// SeenBucket is the KV bucket that held the previously-seen records
	// before they moved onto the stream; Open migrates and deletes it.
	SeenBucket = "comet_seen"
)

// Defaults for Config fields left zero.
const (
	DefaultServerName = "comet"
	DefaultMaxPayload = 1 << 20 // bytes of event payload
	DefaultReplicas   = 1

	DefaultStreamMaxAge = 7 * 24 * time.Hour
	DefaultSeenTTL      = 30 * 24 * time.Hour // docs/bus.md §2.3
	DefaultDupWindow    = 2 * time.Minute     // JetStream Nats-Msg-Id window (dead letters)

	DefaultAckWait           = 30 * time.Second
	DefaultInactiveThreshold = 72 * time.Hour
	DefaultMaxAckPending     = 10000
	DefaultPrefetch          = 1000
	DefaultPrefetchBytes     = 64 << 20

	// DefaultConns: one connection carried 22k events/s in BenchmarkIngest;
	// more did not help.
	DefaultConns = 1

	// DefaultRequestTimeout bounds each JetStream call whose context has
	// no deadline.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultStartTimeout bounds the embedded server's start-up, which
	// includes recovering the store, and how long a management request a
	// clustered system leaves unanswered is repeated (retryUnanswered).
	DefaultStartTimeout = 30 * time.Second
)

// Timings of a clustered system's silences (a stream or consumer without a
// Raft leader answers nothing).
const (
	// PullHeartbeat and PullExpiry shape a consumer's pull requests. A
	// pull lives on the consumer's leader and is lost with it; two missed
	// heartbeats tell, and the consumer pulls again.
	PullHeartbeat = time.Second
	PullExpiry    = 10 * time.Second
	// UnansweredRetryPause separates repeats of an unanswered management
	// request.
	UnansweredRetryPause = 250 * time.Millisecond
)

// HeaderRoom is what a message may carry on top of its payload: the server's
// max_payload and the stream's max_msg_size count headers too. Header values
// are cut at MaxHeaderValue bytes so that they always fit.
const (
	HeaderRoom     = 32 << 10
	MaxHeaderValue = 2 << 10
)

// Config configures Open. Zero values take the Default constants.
type Config struct {
	// StoreDir is the JetStream store of the embedded server; created if
	// missing. Required unless URL is set. The bus holds a lock on it
	// while open (LockFile): a second Open on the same directory, in this
	// process or another, fails with a *StoreLockedError.
	StoreDir string
	// URL, if set, connects to an external NATS system (comma-separated
	// URLs allowed) instead of embedding a server.
	URL string
	// CredsFile and TLS authenticate to an external system (optional).
	CredsFile string
	TLS       *tls.Config
	// Listen is "host:port" for the embedded server's client listener
	// ("host:0" picks a free port). Empty means no network listener at
	// all: the process talks to its server in memory.
	Listen string
	// ServerName names the embedded server.
	ServerName string
	// Node names this process in the Comet-Node header and connection
	// names; default: the host name.
	Node string
	// MaxPayload is the largest event accepted, in bytes. The server's
	// max_payload and the stream's max_msg_size are MaxPayload+HeaderRoom.
	MaxPayload int
	// Replicas of the event stream (clustered external systems).
	Replicas int

	// StreamMaxAge is how long an event's payload stays on the stream;
	// SeenTTL how long its record does (the event, then a delete marker),
	// i.e. how long the same bytes are refused as previously seen. The
	// record lasts the longer of the two.
	StreamMaxAge time.Duration
	SeenTTL      time.Duration
	// MaxStore bounds what the bus stores (--max-store): the event
	// stream gets 2/3 of it, the dead-letter and replay streams 1/6 each
	// (see StageShare). Beyond its limit a stream drops its oldest
	// messages first; on the event stream that includes records, which
	// shortens the previously-seen period (the bus then logs a warning;
	// see RetentionCheckInterval). The embedded server refuses to start
	// when its file system cannot hold MaxStore plus StoreRoom
	// (*StoreSpaceError), and applies a changed MaxStore to its streams;
	// on an external system it is the limit of the streams this process
	// creates, and an existing stream must match.
	MaxStore int64

	// Consumers (ConsumeEvents).
	AckWait           time.Duration // redelivery of unacked events
	InactiveThreshold time.Duration // an abandoned durable is removed after this
	MaxAckPending     int           // delivered but unacked events per durable
	Prefetch          int           // events pulled ahead of the handler
	PrefetchBytes     int           // bytes pulled ahead of the handler

	// Conns is the number of connections Ingest spreads its calls over.
	Conns int
	// RequestTimeout bounds JetStream calls whose context has no deadline.
	RequestTimeout time.Duration

	// SyncAlways (embedded server only) makes it fsync every write before
	// acknowledging it. Off (the default), data is written to the OS at
	// once and fsynced every 2 minutes: a killed process loses nothing, a
	// machine crash or power loss can lose up to that interval,
	// including events already acked to their authors. On, it survives
	// power loss, at about 8x lower throughput (BenchmarkIngest).
	SyncAlways bool

	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.ServerName == "" {
		c.ServerName = DefaultServerName
	}
	if c.Node == "" {
		c.Node, _ = os.Hostname()
		if c.Node == "" {
			c.Node = DefaultServerName
		}
	}
	c.MaxPayload = cmp.Or(c.MaxPayload, DefaultMaxPayload)
	c.Replicas = cmp.Or(c.Replicas, DefaultReplicas)
	c.StreamMaxAge = cmp.Or(c.StreamMaxAge, DefaultStreamMaxAge)
	c.MaxStore = cmp.Or(c.MaxStore, DefaultMaxStore)
	c.SeenTTL = cmp.Or(c.SeenTTL, DefaultSeenTTL)
	c.AckWait = cmp.Or(c.AckWait, DefaultAckWait)
	c.InactiveThreshold = cmp.Or(c.InactiveThreshold, DefaultInactiveThreshold)
	c.MaxAckPending = cmp.Or(c.MaxAckPending, DefaultMaxAckPending)
	c.Prefetch = cmp.Or(c.Prefetch, DefaultPrefetch)
	c.PrefetchBytes = cmp.Or(c.PrefetchBytes, DefaultPrefetchBytes)
	c.Conns = cmp.Or(c.Conns, DefaultConns)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}

	switch {
	case c.URL == "" && c.StoreDir == "":
		return errors.New("StoreDir is required for the embedded server")
	case c.URL != "" && c.Listen != "":
		return errors.New("Listen applies to the embedded server only, not with URL")
	case c.URL == "" && c.Replicas > 1:
		return fmt.Errorf("%d replicas need a clustered external NATS system; the embedded server is a single node", c.Replicas)
	case c.URL == "" && (c.CredsFile != "" || c.TLS != nil):
		return errors.New("credentials and TLS apply to an external NATS system only")
	case c.MaxPayload < 0 || c.MaxPayload > server.MAX_PAYLOAD_MAX_SIZE-HeaderRoom:
		return fmt.Errorf("MaxPayload %d out of range", c.MaxPayload)
	case c.Replicas < 0 || c.StreamMaxAge < 0 || c.MaxStore < 0 || c.SeenTTL < 0 ||
		c.AckWait < 0 || c.InactiveThreshold < 0 ||
		c.MaxAckPending < 0 || c.Prefetch < 0 || c.PrefetchBytes < 0 || c.Conns < 0 || c.RequestTimeout < 0:
		return errors.New("negative limit")
	case c.StreamMaxAge < time.Second || c.SeenTTL < time.Second:
		// JetStream's per-message TTLs and markers count whole seconds.
		return errors.New("StreamMaxAge and SeenTTL must be at least a second")
	case c.MaxStore < c.minMaxStore():
		return &StoreTooSmallError{MaxStore: c.MaxStore, Min: c.minMaxStore(), MaxPayload: c.MaxPayload}
	}
	return nil
}

// SizeMismatchError is a NATS system that is not set up for events of
// MaxPayload bytes: its server's max_payload is too small (Stream empty),
// or an existing stream was made for events of another size (its
// max_msg_size differs). Limit is that setting, headers included.
type SizeMismatchError struct {
	Stream     string
	MaxPayload int
	Limit      int64
}

// Fits is the MaxPayload that Limit is made for: the largest event the
// server carries, or the size the stream was made for.
func (e *SizeMismatchError) Fits() int64 { return e.Limit - HeaderRoom }

// Needs is the server max_payload or stream max_msg_size that MaxPayload
// needs.
func (e *SizeMismatchError) Needs() int64 { return int64(e.MaxPayload) + HeaderRoom }

func (e *SizeMismatchError) Error() string {
	if e.Stream == "" {
		return fmt.Sprintf("bus: the NATS server's max_payload is %d bytes, which carries events of at most %d bytes (%d are kept for headers); "+
			"for MaxPayload %d raise max_payload to at least %d, or lower MaxPayload to at most %d", e.Limit, e.Fits(), HeaderRoom, e.MaxPayload, e.Needs(), e.Fits())
	}
	return fmt.Sprintf("bus: stream %s was made for events of up to %d bytes (max_msg_size %d), not %d; "+
		"give MaxPayload %d, or change its max_msg_size to %d", e.Stream, e.Fits(), e.Limit, e.MaxPayload, e.Fits(), e.Needs())
}

// msgLimit is the largest message (payload plus headers) on the bus.
func (c *Config) msgLimit() int { return c.MaxPayload + HeaderRoom }

// Bus is an open connection to the event bus. Its methods are safe for
// concurrent use.
type Bus struct {
	cfg    Config
	log    *slog.Logger
	srv    *server.Server // nil with an external system
	lock   *storeLock     // held on StoreDir while srv runs; nil with an external system
	conns  []*conn
	next   atomic.Uint32
	stream jetstream.Stream
	opened time.Time

	// payloadTTL is the Nats-TTL of every event ("" when payloads are
	// kept as long as their records); see retention.
	payloadTTL string

	mu        sync.Mutex
	consumers map[*Consumer]struct{}
	stageSubs map[*stageSubscriber]struct{}
	closed    bool
	closeOnce sync.Once
	closeErr  error

	dlMu    sync.Mutex
	dlReady bool // COMET_DEADLETTER provisioned

	health   *health
	jsConfig *server.JetStreamConfig // the embedded JetStream's, to restart it

	stopWatch context.CancelFunc // ends watchRetention and watchStore
	watching  sync.WaitGroup
}

// conn is one NATS connection with its JetStream handle.
type conn struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	closed chan struct{}
}

// Open starts the embedded server (or connects to cfg.URL), provisions the
// stream (migrating an older layout's bucket), and returns the bus. ctx
// bounds the set-up only.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("bus: config: %w", err)
	}
	now := time.Now()
	b := &Bus{cfg: cfg, log: cfg.Logger, consumers: map[*Consumer]struct{}{},
		stageSubs: map[*stageSubscriber]struct{}{}, opened: now, health: newHealth(now)}
	if r := cfg.retention(); r.payloadTTL > 0 {
		b.payloadTTL = strconv.FormatInt(int64(r.payloadTTL/time.Second), 10)
	}
	if err := b.open(ctx); err != nil {
		b.shutdown()
		return nil, err
	}
	wctx, stop := context.WithCancel(context.Background())
	b.stopWatch = stop
	b.watching.Go(func() { b.watchRetention(wctx) })
	b.watching.Go(func() { b.watchStore(wctx) })
	b.log.Info("bus open", "bus", b.Describe(), "node", cfg.Node)
	return b, nil
}

func (b *Bus) open(ctx context.Context) error {
	if b.cfg.URL == "" {
		if err := b.startServer(); err != nil {
			return err
		}
	}
	for i := 0; i < b.cfg.Conns; i++ {
		c, err := b.connect(i)
		if err != nil {
			return err
		}
		b.conns = append(b.conns, c)
	}
	if mp := b.conns[0].nc.MaxPayload(); mp < int64(b.cfg.msgLimit()) {
		return &SizeMismatchError{MaxPayload: b.cfg.MaxPayload, Limit: mp}
	}
	if err := checkServerVersion(b.conns[0].nc); err != nil {
		return err
	}
	return b.provision(ctx)
}

func (b *Bus) startServer() error {
	dir := b.cfg.StoreDir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("bus: store directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".writable-*")
	if err != nil {
		return fmt.Errorf("bus: store directory %s is not writable: %w", dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	// One server per store, for the life of the bus (see LockFile).
	if b.lock, err = lockStore(dir); err != nil {
		return err
	}
	if err := b.cfg.checkStoreSpace(); err != nil {
		return err
	}

	opts := &server.Options{
		ServerName: b.cfg.ServerName,
		JetStream:  true,
		StoreDir:   dir,
		MaxPayload: int32(b.cfg.msgLimit()),
		SyncAlways: b.cfg.SyncAlways,
		NoSigs:     true, // the process owns its signals
		DontListen: b.cfg.Listen == "",
	}
	// The streams' limits (MaxStore, checked against the free space
	// above) bound the store. Left unset, the server's own limit would be
	// 75% of the space free at start, which refuses a store on a disk
	// that holds it; the file system's size is the true bound.
	if _, total, err := diskSpace(dir); err == nil && total > 0 {
		opts.JetStreamMaxStore = total
	}
	if b.cfg.Listen != "" {
		host, port, err := net.SplitHostPort(b.cfg.Listen)
		if err != nil {
			return fmt.Errorf("bus: Listen %q: %w", b.cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("bus: Listen %q: bad port", b.cfg.Listen)
		}
		if p == 0 {
			p = server.RANDOM_PORT // nats-server reads 0 as "default port"
		}
		opts.Host, opts.Port = host, p
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("bus: embedded server: %w", err)
	}
	lg := &serverLogger{log: b.log.With("nats-server", b.cfg.ServerName), onError: b.health.suspect}
	srv.SetLoggerV2(lg, b.log.Enabled(context.Background(), slog.LevelDebug), false, false)
	b.srv = srv
	srv.Start()
	// Poll so that a fatal start-up error (port in use) fails fast.
	deadline := time.Now().Add(DefaultStartTimeout)
	for !srv.ReadyForConnections(50 * time.Millisecond) {
		if err := lg.fatal(); err != nil {
			return fmt.Errorf("bus: embedded server: %w", err)
		}
		if time.Now().After(deadline) {
			return errors.New("bus: embedded server not ready in time")
		}
	}
	if !srv.JetStreamEnabled() {
		return errors.New("bus: embedded server started without JetStream")
	}
	b.jsConfig = srv.JetStreamConfig()
	return nil
}

func (b *Bus) connect(i int) (*conn, error) {
	c := &conn{closed: make(chan struct{})}
	log := b.log
	opts := []nats.Option{
		nats.Name(fmt.Sprintf("comet %s #%d", b.cfg.Node, i)),
		nats.MaxReconnects(-1),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("bus connection lost", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("bus connection restored", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			log.Error("bus asynchronous error", "err", err)
		}),
	}
	url := b.cfg.URL
	if b.srv != nil {
		opts = append(opts, nats.InProcessServer(b.srv))
		url = ""
	} else {
		if b.cfg.CredsFile != "" {
			opts = append(opts, nats.UserCredentials(b.cfg.CredsFile))
		}
		if b.cfg.TLS != nil {
			opts = append(opts, nats.Secure(b.cfg.TLS))
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connecting to %s: %w", b.where(), err)
	}
	c.nc = nc
	// Stores are asynchronous publishes, each awaited by its Ingest;
	// the timeout forgets one whose answer never comes.
	c.js, err = jetstream.New(nc, jetstream.WithDefaultTimeout(b.cfg.RequestTimeout),
		jetstream.WithPublishAsyncTimeout(b.cfg.RequestTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("bus: %w", err)
	}
	return c, nil
}

func (b *Bus) where() string {
	if b.srv != nil {
		return "embedded server " + b.cfg.ServerName
	}
	return redact(b.cfg.URL)
}

// redact hides passwords and tokens in NATS URLs.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if s := strings.Index(p, "://"); s >= 0 && s < at {
				parts[i] = p[:s+3] + "***" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// pick spreads callers over the connections.
func (b *Bus) pick() *conn {
	if len(b.conns) == 1 {
		return b.conns[0]
	}
	return b.conns[b.next.Add(1)%uint32(len(b.conns))]
}

// ClientURL is the embedded server's client URL, "" when it does not
// listen; with an external system, the URL of the current server.
func (b *Bus) ClientURL() string {
	if b.srv != nil {
		if b.srv.Addr() == nil {
			return ""
		}
		return b.srv.ClientURL()
	}
	if len(b.conns) == 0 {
		return ""
	}
	return b.conns[0].nc.ConnectedUrlRedacted()
}

// Describe says where the bus is, for logs.
func (b *Bus) Describe() string {
	if b.srv == nil {
		return "external NATS " + redact(b.cfg.URL)
	}
	l := "no network listener"
	if u := b.ClientURL(); u != "" {
		l = "listening on " + u
	}
	fsync := "interval fsync"
	if b.cfg.SyncAlways {
		fsync = "fsync always"
	}
	return fmt.Sprintf("embedded nats-server %s %s, store %s (%s), %s",
		b.cfg.ServerName, server.VERSION, b.cfg.StoreDir, fsync, l)
}

// Close stops the consumers, drains the connections (pending acks and
// publishes go out) and shuts the embedded server down, waiting for it.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		cs := make([]*Consumer, 0, len(b.consumers))
		for c := range b.consumers {
			cs = append(cs, c)
		}
		ss := make([]*stageSubscriber, 0, len(b.stageSubs))
		for s := range b.stageSubs {
			ss = append(ss, s)
		}
		b.mu.Unlock()
		for _, c := range cs {
			c.Stop()
		}
		for _, s := range ss {
			s.stop() // events handed out stay unacked: handled again later
		}
		b.stopWatch()
		b.watching.Wait()
		b.closeErr = b.shutdown()
	})
	return b.closeErr
}

func (b *Bus) shutdown() error {
	var errs []error
	for _, c := range b.conns {
		if err := c.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, err)
			c.nc.Close()
		}
	}
	for _, c := range b.conns {
		select {
		case <-c.closed:
		case <-time.After(b.cfg.RequestTimeout + time.Second):
			c.nc.Close()
			errs = append(errs, errors.New("connection drain timed out"))
		}
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	// Only once the server has written its last byte may another process
	// take the store.
	if err := b.lock.release(); err != nil {
		errs = append(errs, fmt.Errorf("releasing the store lock: %w", err))
	}
	b.lock = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bus: close: %w", err)
	}
	return nil
}

// serverLogger sends nats-server's log to slog. Notices (start-up banner
// and the like) go to debug; warnings and errors stay visible.
// Every error it logs has the bus check the store at once (onError): a
// stream that hit a write error says so only in the log.
type serverLogger struct {
	log     *slog.Logger
	onError func()
	mu      sync.Mutex
	err     error
}

func (l *serverLogger) Noticef(f string, v ...any) { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l *serverLogger) Warnf(f string, v ...any)   { l.log.Warn(fmt.Sprintf(f, v...)) }
func (l *serverLogger) Errorf(f string, v ...any) {
	l.log.Error(fmt.Sprintf(f, v...))
	l.onError()
}
func (l *serverLogger) Debugf(f string, v ...any) { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l *serverLogger) Tracef(f string, v ...any) {}

// Fatalf is recorded, not fatal: the embedded server must not exit the
// process; Open reports it instead.
func (l *serverLogger) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	l.log.Error(msg)
	l.mu.Lock()
	if l.err == nil {
		l.err = errors.New(msg)
	}
	l.mu.Unlock()
}

func (l *serverLogger) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
