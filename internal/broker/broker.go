// Package broker assembles the roles into one process: it opens the bus
// (embedded or external), binds the listeners, and runs the receiver, the
// broadcaster and its relay from the bus. cmd/comet is a thin flag layer on
// top; tests start brokers in-process through it.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/comet-go/comet/accept"
	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/egress"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/stages"
	"github.com/comet-go/comet/vtp"
	"github.com/comet-go/comet/whitelist"
)

// Config is everything a broker process needs. Zero durations and sizes
// take the documented defaults of the package that uses them.
type Config struct {
	Receive   []endpoint.Endpoint // receiver listeners (authors)
	Broadcast []endpoint.Endpoint // broadcaster listeners (subscribers)
	Subscribe []endpoint.Endpoint // upstream brokers to subscribe to
	Filters   []string            // XPath filters sent upstream, and applied to what comes back (already checked)

	// FilterBudget is the evaluation steps one filter may take on one
	// event, for subscribers' filters and Filters; 0 = filter.DefaultBudget.
	FilterBudget int

	LocalIVO string
	Node     string // node name: bus headers and the egress consumer name
	Version  string

	EventDB    string      // embedded JetStream store directory
	NATSURL    string      // external bus; empty = embedded
	NATSListen string      // expose the embedded bus on host:port; empty = in-process only
	NATSCreds  string      // credentials file for the external bus (optional)
	NATSTLS    *tls.Config // TLS towards the external bus (optional)
	Replicas   int         // replicas of the stream and the bucket on a cluster; 0 = 1
	SyncAlways bool        // fsync every bus write (survives power loss, slower)

	MaxEventSize       int      // largest frame accepted and relayed
	MaxConns           int      // open connections per listener; 0 = unlimited
	MaxConnsPerPeer    int      // open connections per listener from one source address; 0 = unlimited
	ReceiveWhitelist   []string // nil = whitelist.Default
	BroadcastWhitelist []string // nil = whitelist.Default

	ReceiveTimeout   time.Duration
	IAmAliveInterval time.Duration
	TestInterval     time.Duration // 0 = no test events
	Grace            time.Duration
	QueueLen         int
	MaxUnacked       int
	WriteTimeout     time.Duration

	// Stages are the event handlers (--action, --print-event, --save-event,
	// --cmd), each a durable consumer of the bus.
	Stages stages.Config

	// OpenPGP (docs/openpgp.md); nil = off. VerifyEvent checks authors'
	// submissions (--sender-auth), VerifySubscriber the authenticate
	// replies of subscribers (--subscriber-auth), and SignReplies signs
	// this broker's authenticate replies to upstream brokers (--key-id).
	VerifyEvent      func(payload []byte, author string) (signer string, err error)
	VerifySubscriber func(msg []byte) (signer string, err error)
	SignReplies      func(msg []byte) ([]byte, error)
	AuthTimeout      time.Duration // subscribers' time to authenticate; 0 = egress default

	// Upstream subscriptions; zero values take ingress's defaults.
	SubscribeHealthyAfter time.Duration
	SubscribeBackoff      func(n int) time.Duration
	SubscribeInactivity   time.Duration

	Logger *slog.Logger
}

// Broker is a running broker.
type Broker struct {
	cfg         Config
	log         *slog.Logger
	bus         *bus.Bus
	stages      *stages.Runner
	receiver    *ingress.Receiver
	broadcaster *egress.Broadcaster
	recvWL      *whitelist.List
	castWL      *whitelist.List
	recvLns     []net.Listener
	castLns     []net.Listener
	cancel      context.CancelFunc
	listening   sync.WaitGroup // Serve loops: end when their listeners close
	running     sync.WaitGroup // relay and timers: end when cancel is called
	errs        chan error

	shutdownOnce sync.Once
	shutdownErr  error
}

// Start opens the bus, binds every listener (failing fast if one cannot be
// bound) and starts serving.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	handlers := len(cfg.Stages.Actions) + len(cfg.Stages.Commands) + len(cfg.Stages.Stages)
	if len(cfg.Receive) == 0 && len(cfg.Broadcast) == 0 && len(cfg.Subscribe) == 0 && handlers == 0 {
		return nil, errors.New("no services requested: give --receive, --broadcast, --subscribe and/or handlers")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.MaxEventSize <= 0 {
		cfg.MaxEventSize = vtp.DefaultMaxFrame
	}
	recvWL, err := whitelistOf(cfg.ReceiveWhitelist)
	if err != nil {
		return nil, fmt.Errorf("receive whitelist: %w", err)
	}
	castWL, err := whitelistOf(cfg.BroadcastWhitelist)
	if err != nil {
		return nil, fmt.Errorf("broadcast whitelist: %w", err)
	}
	b := &Broker{cfg: cfg, log: log, errs: make(chan error, 8), recvWL: recvWL, castWL: castWL}
	limits := accept.Limits{MaxConns: cfg.MaxConns, MaxConnsPerPeer: cfg.MaxConnsPerPeer}

	// Listeners first: a port in use should fail before the bus is touched.
	for _, ep := range cfg.Receive {
		ln, err := ep.Listen()
		if err != nil {
			b.closeListeners()
			return nil, err
		}
		b.recvLns = append(b.recvLns, ln)
	}
	for _, ep := range cfg.Broadcast {
		ln, err := ep.Listen()
		if err != nil {
			b.closeListeners()
			return nil, err
		}
		b.castLns = append(b.castLns, ln)
	}

	b.bus, err = bus.Open(ctx, bus.Config{
		StoreDir:   cfg.EventDB,
		URL:        cfg.NATSURL,
		Listen:     cfg.NATSListen,
		CredsFile:  cfg.NATSCreds,
		TLS:        cfg.NATSTLS,
		Replicas:   cfg.Replicas,
		Node:       cfg.Node,
		MaxPayload: cfg.MaxEventSize,
		SyncAlways: cfg.SyncAlways,
		Logger:     log.With("component", "bus"),
	})
	if err != nil {
		b.closeListeners()
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	if handlers > 0 {
		scfg := cfg.Stages
		if scfg.Logger == nil {
			scfg.Logger = log.With("component", "stages")
		}
		b.stages, err = stages.Start(runCtx, b.bus, scfg)
		if err != nil {
			cancel()
			b.bus.Close()
			b.closeListeners()
			return nil, err
		}
	}
	if len(b.recvLns) > 0 {
		b.receiver = &ingress.Receiver{
			Store:     b.bus,
			LocalIVO:  cfg.LocalIVO,
			Node:      cfg.Node,
			Whitelist: recvWL,
			Limits:    limits,
			Logger:    log.With("component", "receiver"),
			Timeout:   cfg.ReceiveTimeout,
			MaxFrame:  cfg.MaxEventSize,

			VerifySignature: cfg.VerifyEvent,
		}
		for _, ln := range b.recvLns {
			b.serve(&b.listening, func() error { return b.receiver.Serve(ln) }, ingress.ErrServerClosed)
		}
	}
	if len(b.castLns) > 0 {
		b.broadcaster = &egress.Broadcaster{
			LocalIVO:         cfg.LocalIVO,
			Whitelist:        castWL,
			Limits:           limits,
			Logger:           log.With("component", "broadcaster"),
			Version:          cfg.Version,
			IAmAliveInterval: cfg.IAmAliveInterval,
			TestInterval:     cfg.TestInterval,
			MaxUnacked:       cfg.MaxUnacked,
			QueueLen:         cfg.QueueLen,
			WriteTimeout:     cfg.WriteTimeout,
			MaxFrame:         cfg.MaxEventSize,
			FilterBudget:     cfg.FilterBudget,
			VerifySubscriber: cfg.VerifySubscriber,
			AuthTimeout:      cfg.AuthTimeout,
		}
		for _, ln := range b.castLns {
			b.serve(&b.listening, func() error { return b.broadcaster.Serve(ln) }, egress.ErrServerClosed)
		}
		b.serve(&b.running, func() error { b.broadcaster.Run(runCtx); return nil }, nil)
		relay := &egress.Relay{
			Source:      b.bus,
			Durable:     ConsumerName(cfg.Node),
			Grace:       cfg.Grace,
			Broadcaster: b.broadcaster,
			Logger:      log.With("component", "relay"),
		}
		b.serve(&b.running, func() error { return relay.Run(runCtx) }, nil)
	}
	for _, ep := range cfg.Subscribe {
		sub := &ingress.Subscription{
			Target:            ep,
			Store:             b.bus,
			LocalIVO:          cfg.LocalIVO,
			Filters:           cfg.Filters,
			FilterBudget:      cfg.FilterBudget,
			Node:              cfg.Node,
			Logger:            log.With("component", "subscriber"),
			InactivityTimeout: cfg.SubscribeInactivity,
			HealthyAfter:      cfg.SubscribeHealthyAfter,
			MaxFrame:          cfg.MaxEventSize,
			Backoff:           cfg.SubscribeBackoff,
			Sign:              cfg.SignReplies,
		}
		b.serve(&b.running, func() error { sub.Run(runCtx); return nil }, nil)
	}
	log.Info("broker started", "local_ivo", cfg.LocalIVO, "node", cfg.Node,
		"sender_auth", cfg.VerifyEvent != nil, "subscriber_auth", cfg.VerifySubscriber != nil, "signing", cfg.SignReplies != nil,
		"receive", addrs(b.recvLns), "broadcast", addrs(b.castLns), "subscribe", cfg.Subscribe, "bus", b.bus.Describe())
	return b, nil
}

// ConsumerName is the durable bus consumer of a node's broadcaster:
// "egress-" and the node name made safe by bus.SafeName.
func ConsumerName(node string) string { return "egress-" + bus.SafeName(node) }

func (b *Broker) serve(wg *sync.WaitGroup, run func() error, closed error) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := run(); err != nil && !errors.Is(err, closed) {
			b.log.Error("service failed", "err", err)
			select {
			case b.errs <- err:
			default:
			}
		}
	}()
}

// Err delivers the first fatal error of a running service.
func (b *Broker) Err() <-chan error { return b.errs }

// Reload replaces both whitelists (nil means the default, everyone) for
// connections accepted from now on; on error neither changes.
func (b *Broker) Reload(receive, broadcast []string) error {
	if receive == nil {
		receive = whitelist.Default
	}
	if broadcast == nil {
		broadcast = whitelist.Default
	}
	// Validate both before changing either.
	if _, err := whitelist.New(receive); err != nil {
		return fmt.Errorf("receive whitelist: %w", err)
	}
	if _, err := whitelist.New(broadcast); err != nil {
		return fmt.Errorf("broadcast whitelist: %w", err)
	}
	b.recvWL.Set(receive)
	b.castWL.Set(broadcast)
	b.log.Info("whitelists reloaded", "receive", b.recvWL.Networks(), "broadcast", b.castWL.Networks())
	return nil
}

// ReceiveAddrs are the bound receiver addresses (useful with port 0).
func (b *Broker) ReceiveAddrs() []net.Addr { return addrList(b.recvLns) }

// BroadcastAddrs are the bound broadcaster addresses.
func (b *Broker) BroadcastAddrs() []net.Addr { return addrList(b.castLns) }

// Bus exposes the bus, for tests and diagnostics.
func (b *Broker) Bus() *bus.Bus { return b.bus }

// Broadcaster exposes the broadcaster, for tests and diagnostics (nil when
// not broadcasting).
func (b *Broker) Broadcaster() *egress.Broadcaster { return b.broadcaster }

// Shutdown stops accepting submissions and subscribers, lets in-flight
// submissions finish (ack or nak) until ctx ends, disconnects subscribers,
// stops the relay and closes the bus, flushing it.
// It is safe to call more than once; later calls return the first result.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.shutdownOnce.Do(func() { b.shutdownErr = b.shutdown(ctx) })
	return b.shutdownErr
}

func (b *Broker) shutdown(ctx context.Context) error {
	var errs []error
	if b.receiver != nil {
		if err := b.receiver.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("receiver: %w", err))
		}
	}
	// Stages stop next: an event they have not acked is handled again
	// after the restart.
	if b.stages != nil {
		if err := b.stages.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stages: %w", err))
		}
	}
	// Stop the relay and timers before dropping subscribers, so nothing is
	// handed to a broadcaster that is going away.
	b.cancel()
	b.running.Wait()
	if b.broadcaster != nil {
		b.broadcaster.Close()
	}
	b.listening.Wait()
	if err := b.bus.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bus: %w", err))
	}
	b.log.Info("broker stopped")
	return errors.Join(errs...)
}

func (b *Broker) closeListeners() {
	for _, ln := range append(b.recvLns, b.castLns...) {
		ln.Close()
	}
}

func whitelistOf(specs []string) (*whitelist.List, error) {
	if specs == nil {
		specs = whitelist.Default
	}
	return whitelist.New(specs)
}

func addrList(lns []net.Listener) []net.Addr {
	out := make([]net.Addr, len(lns))
	for i, ln := range lns {
		out[i] = ln.Addr()
	}
	return out
}

func addrs(lns []net.Listener) []string {
	out := make([]string, len(lns))
	for i, ln := range lns {
		out[i] = ln.Addr().String()
	}
	return out
}

// DefaultEventDB is where the bus stores events and the previously-seen
// database when --eventdb is not given: like Comet, under the system
// temporary directory.
func DefaultEventDB() string { return os.TempDir() + string(os.PathSeparator) + "comet-eventdb" }
