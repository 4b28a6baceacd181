// Package broker assembles the roles into one process: it opens the bus
// (embedded or external), binds the listeners, and runs the receiver, the
// broadcaster and its relay from the bus. cmd/comet is a thin flag layer on
// top; tests start brokers in-process through it.
package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/egress"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/filter"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/observe"
	"github.com/comet-go/comet/kafka"
	"github.com/comet-go/comet/stages"
	"github.com/comet-go/comet/vtp"
	"github.com/comet-go/comet/whitelist"
)

// Config is everything a broker process needs: the endpoints, the settings
// every part shares, and each part's own configuration, whose zero values
// take the defaults of its package when the part is built.
type Config struct {
	Receive   []endpoint.Endpoint // receiver listeners (authors)
	Broadcast []endpoint.Endpoint // broadcaster listeners (subscribers)
	Subscribe []endpoint.Endpoint // upstream brokers to subscribe to
	// AllowCerts, if set, narrows the client certificates that listeners
	// with clientCA= accept to these (--allow-cert); nil accepts every
	// certificate the CA issued.
	AllowCerts *whitelist.Certs

	// Shared settings. Start copies them into the parts (the parts' own
	// LocalIVO, Node, Version, MaxFrame, FilterBudget and the bus's
	// MaxPayload), which must be left zero or equal.
	LocalIVO string
	Node     string // bus headers and the egress consumer name; default: the host name
	Version  string
	// MaxEventSize is the largest event received, relayed and stored, in
	// bytes; 0 = vtp.DefaultMaxFrame.
	MaxEventSize int
	// FilterBudget is the evaluation steps one filter may take on one
	// event, for subscribers' filters and for the Subscriber's own; 0 =
	// filter.DefaultBudget.
	FilterBudget int

	Bus         bus.Config             // the event store (embedded or external NATS)
	Receiver    ingress.ReceiverConfig // authors' submissions (Receive)
	Broadcaster egress.Config          // subscribers (Broadcast) and the relay feeding them
	Subscriber  ingress.SubscriberConfig
	// Stages are the event handlers (--action, --print-event,
	// --save-event, --cmd), each a durable consumer of the bus.
	Stages stages.Config
	// KafkaIn reads VOEvents from Kafka topics (--kafka, --gcn-kafka);
	// nil = off. KafkaOut publishes every accepted event to a Kafka topic
	// as one more stage (--kafka-out); nil = off.
	KafkaIn  *KafkaIn
	KafkaOut *KafkaOut

	// HTTPAddr, if set, is the HOST:PORT of the metrics, health and
	// status endpoint (internal/observe); bound with the other listeners.
	HTTPAddr string

	// Logger is the process log; each part whose own Logger is nil logs
	// to it with a "component" attribute.
	Logger *slog.Logger
}

// KafkaIn is a Kafka source: the cluster and what to read.
type KafkaIn struct {
	Conn   kafka.Config
	Source ingress.KafkaConfig // Node, MaxEventSize and Logger are shared
}

// KafkaOut is the Kafka output stage: the cluster and the topic.
type KafkaOut struct {
	Conn  kafka.Config
	Stage stages.KafkaOutConfig // Sender defaults to LocalIVO, else Node
}

// KafkaCheckTimeout bounds the start-up check of each Kafka cluster's
// credentials.
const KafkaCheckTimeout = 10 * time.Second

// share copies a shared setting into a part, refusing a part that was
// given another value of its own.
func share[T comparable](part *T, value T, what string) error {
	var zero T
	if *part != zero && *part != value {
		return fmt.Errorf("broker: %s is %v but the broker's setting is %v; set the broker's", what, *part, value)
	}
	*part = value
	return nil
}

// setDefaults resolves the shared settings and hands them to the parts.
func (c *Config) setDefaults() error {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Node == "" {
		c.Node, _ = os.Hostname()
	}
	if c.MaxEventSize == 0 {
		c.MaxEventSize = vtp.DefaultMaxFrame
	}
	if c.MaxEventSize < 0 || c.FilterBudget < 0 {
		return fmt.Errorf("broker: MaxEventSize %d or FilterBudget %d is negative", c.MaxEventSize, c.FilterBudget)
	}
	c.FilterBudget = cmp.Or(c.FilterBudget, filter.DefaultBudget)
	component := func(l **slog.Logger, name string) {
		if *l == nil {
			*l = c.Logger.With("component", name)
		}
	}
	component(&c.Bus.Logger, "bus")
	component(&c.Receiver.Logger, "receiver")
	component(&c.Broadcaster.Logger, "broadcaster")
	component(&c.Subscriber.Logger, "subscriber")
	component(&c.Stages.Logger, "stages")
	var kafkaErrs []error
	// The Kafka parts are pointers: work on copies, as on the rest of c.
	if c.KafkaIn != nil {
		k := *c.KafkaIn
		c.KafkaIn = &k
	}
	if c.KafkaOut != nil {
		k := *c.KafkaOut
		c.KafkaOut = &k
	}
	if k := c.KafkaIn; k != nil {
		component(&k.Source.Logger, "kafka")
		kafkaErrs = append(kafkaErrs, share(&k.Source.Node, c.Node, "KafkaIn.Source.Node"),
			share(&k.Source.MaxEventSize, c.MaxEventSize, "KafkaIn.Source.MaxEventSize"), k.Source.Validate())
	}
	if k := c.KafkaOut; k != nil {
		component(&k.Stage.Logger, "kafka-out")
		k.Stage.Sender = cmp.Or(k.Stage.Sender, c.LocalIVO, c.Node)
	}
	// Whitelists exist even when they allow everyone, so that Reload has
	// lists to change.
	if c.Receiver.Whitelist == nil {
		c.Receiver.Whitelist = whitelist.MustDefault()
	}
	if c.Broadcaster.Whitelist == nil {
		c.Broadcaster.Whitelist = whitelist.MustDefault()
	}
	// A TLS handshake on either port has the time an author has from
	// connect (--receive-timeout).
	if c.Broadcaster.HandshakeTimeout == 0 {
		c.Broadcaster.HandshakeTimeout = cmp.Or(c.Receiver.Timeout, ingress.DefaultReceiveTimeout)
	}
	return errors.Join(
		share(&c.Bus.Node, c.Node, "Bus.Node"),
		share(&c.Bus.MaxPayload, c.MaxEventSize, "Bus.MaxPayload"),
		share(&c.Receiver.LocalIVO, c.LocalIVO, "Receiver.LocalIVO"),
		share(&c.Receiver.Node, c.Node, "Receiver.Node"),
		share(&c.Receiver.MaxFrame, c.MaxEventSize, "Receiver.MaxFrame"),
		share(&c.Broadcaster.LocalIVO, c.LocalIVO, "Broadcaster.LocalIVO"),
		share(&c.Broadcaster.Version, c.Version, "Broadcaster.Version"),
		share(&c.Broadcaster.MaxFrame, c.MaxEventSize, "Broadcaster.MaxFrame"),
		share(&c.Broadcaster.FilterBudget, c.FilterBudget, "Broadcaster.FilterBudget"),
		share(&c.Subscriber.LocalIVO, c.LocalIVO, "Subscriber.LocalIVO"),
		share(&c.Subscriber.Node, c.Node, "Subscriber.Node"),
		share(&c.Subscriber.MaxFrame, c.MaxEventSize, "Subscriber.MaxFrame"),
		share(&c.Subscriber.FilterBudget, c.FilterBudget, "Subscriber.FilterBudget"),
		errors.Join(kafkaErrs...),
	)
}

// Broker is a running broker.
type Broker struct {
	cfg         Config
	log         *slog.Logger
	bus         *bus.Bus
	stages      *stages.Runner
	receiver    *ingress.Receiver
	broadcaster *egress.Broadcaster
	upstreams   []*ingress.Subscription
	kafkaIn     *kafka.Client
	kafkaSource *ingress.KafkaSource
	kafkaOut    *stages.KafkaOut
	recvLns     []net.Listener
	castLns     []net.Listener
	served      []*served // every VTP listener, for status and readiness
	started     time.Time
	ready       observe.Readiness
	metrics     *observe.Metrics // nil without HTTPAddr
	httpLn      net.Listener
	http        *observe.Server
	stopping    atomic.Bool
	cancel      context.CancelFunc
	listening   sync.WaitGroup // Serve loops: end when their listeners close
	running     sync.WaitGroup // relay and timers: end when cancel is called
	errs        chan error

	shutdownOnce sync.Once
	shutdownErr  error
}

// Start binds every listener (failing fast if one cannot be bound), opens
// the bus, builds the roles and starts serving.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	handlers := len(cfg.Stages.Actions) + len(cfg.Stages.Commands) + len(cfg.Stages.Stages)
	if cfg.KafkaOut != nil {
		handlers++
	}
	if len(cfg.Receive) == 0 && len(cfg.Broadcast) == 0 && len(cfg.Subscribe) == 0 && cfg.KafkaIn == nil && handlers == 0 {
		return nil, errors.New("no services requested: give --receive, --broadcast, --subscribe, --kafka and/or handlers")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, log: cfg.Logger, errs: make(chan error, 8), started: time.Now()}

	// Kafka credentials are checked before anything is bound: refused
	// ones are a start-up error.
	kout, err := b.resolveKafka(ctx)
	if err != nil {
		return nil, err
	}
	// Listeners first: a port in use should fail before the bus is touched.
	// An author's connection carries one event and ends at the receive
	// timeout: TCP keep-alive has nothing to find there, and setting it up
	// costs four system calls per event.
	if b.recvLns, err = listen(cfg.Receive, endpoint.ListenConfig{AllowCerts: cfg.AllowCerts, KeepAlive: -1}); err != nil {
		return nil, err
	}
	if b.castLns, err = listen(cfg.Broadcast, endpoint.ListenConfig{AllowCerts: cfg.AllowCerts}); err != nil {
		b.closeListeners()
		return nil, err
	}
	if cfg.HTTPAddr != "" {
		if b.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			b.closeListeners()
			return nil, fmt.Errorf("HTTP endpoint: %w", err)
		}
		// The timings are the only observations on the event path; without
		// the endpoint there is nobody to read them.
		b.metrics = observe.NewMetrics(b)
		t := b.metrics.Timings()
		for _, f := range []struct {
			set *func(time.Duration)
			to  func(time.Duration)
		}{
			{&b.cfg.Receiver.Timings.Stored, t.Stored}, {&b.cfg.Receiver.Timings.Acked, t.Acked},
			{&b.cfg.Subscriber.Timings.Stored, t.Stored}, {kafkaStored(&b.cfg), t.Stored},
		} {
			if *f.set == nil {
				*f.set = f.to
			}
		}
	}
	if b.bus, err = bus.Open(ctx, cfg.Bus); err != nil {
		b.closeListeners()
		return nil, err
	}
	if err := b.build(); err != nil {
		b.bus.Close()
		b.closeListeners()
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	if handlers > 0 {
		scfg := cfg.Stages
		if kout != nil {
			if b.kafkaOut, err = stages.NewKafkaOut(kout, cfg.KafkaOut.Stage); err == nil {
				scfg.Stages = append(slices.Clip(scfg.Stages), b.kafkaOut)
			}
		}
		if err == nil {
			b.stages, err = stages.Start(runCtx, b.bus, scfg)
		}
		if err != nil {
			if b.kafkaOut != nil {
				b.kafkaOut.Close()
			}
			cancel()
			b.bus.Close()
			b.closeListeners()
			return nil, err
		}
	}
	for _, ln := range b.recvLns {
		sv := b.track("receive", ln)
		b.serve(&b.listening, func() error { defer sv.open.Store(false); return b.receiver.Serve(ln) }, ingress.ErrServerClosed)
	}
	if b.broadcaster != nil {
		for _, ln := range b.castLns {
			sv := b.track("broadcast", ln)
			b.serve(&b.listening, func() error { defer sv.open.Store(false); return b.broadcaster.Serve(ln) }, egress.ErrServerClosed)
		}
		b.serve(&b.running, func() error { b.broadcaster.Run(runCtx); return nil }, nil)
		relay := &egress.Relay{
			Source:      b.bus,
			Durable:     ConsumerName(cfg.Node),
			Broadcaster: b.broadcaster,
			Logger:      cfg.Logger.With("component", "relay"),
		}
		b.serve(&b.running, func() error { return relay.Run(runCtx) }, nil)
	}
	for _, sub := range b.upstreams {
		b.serve(&b.running, func() error { sub.Run(runCtx); return nil }, nil)
	}
	// A store the bus cannot recover in this process is fatal (Err).
	b.serve(&b.running, func() error {
		select {
		case err := <-b.bus.Failed():
			return err
		case <-runCtx.Done():
			return nil
		}
	}, nil)
	if b.kafkaSource != nil {
		b.serve(&b.running, func() error { return b.kafkaSource.Run(runCtx) }, nil)
	}
	for _, ep := range append(append(append([]endpoint.Endpoint{}, cfg.Receive...), cfg.Broadcast...), cfg.Subscribe...) {
		if ep.TLS != nil {
			for _, note := range ep.TLS.Notes {
				b.log.Warn("endpoint parameter without effect", "endpoint", ep.String(), "note", note)
			}
		}
	}
	b.addReadyChecks()
	if b.httpLn != nil {
		b.http = observe.Serve(b.httpLn, observe.NewHandler(b, &b.ready, b.metrics, b.log.With("component", "http")),
			b.log.With("component", "http"))
	}
	b.log.Info("broker started", "local_ivo", cfg.LocalIVO, "node", cfg.Node,
		"sender_auth", cfg.Receiver.VerifySignature != nil, "subscriber_auth", cfg.Broadcaster.VerifySubscriber != nil,
		"signing", cfg.Subscriber.Sign != nil,
		"receive", addrs(b.recvLns), "broadcast", addrs(b.castLns), "subscribe", cfg.Subscribe, "kafka", cfg.KafkaIn != nil, "kafka_out", cfg.KafkaOut != nil, "bus", b.bus.Describe())
	return b, nil
}

// kafkaStored is where the Kafka source's store timing goes (a field
// nobody reads without KafkaIn).
func kafkaStored(c *Config) *func(time.Duration) {
	if c.KafkaIn == nil {
		return new(func(time.Duration))
	}
	return &c.KafkaIn.Source.Timings.Stored
}

// served is a VTP listener and whether its accept loop still runs.
type served struct {
	role string
	addr string
	open atomic.Bool
}

func (b *Broker) track(role string, ln net.Listener) *served {
	sv := &served{role: role, addr: ln.Addr().String()}
	sv.open.Store(true)
	b.served = append(b.served, sv)
	return sv
}

// addReadyChecks adds the broker's own readiness checks: not shutting
// down, the bus answers, every listener accepts, the stages consume.
func (b *Broker) addReadyChecks() {
	b.ready.Add("running", func(context.Context) error {
		if b.stopping.Load() {
			return errors.New("shutting down")
		}
		return nil
	})
	b.ready.Add("bus", b.bus.Ping)
	// Not ready while the store refuses events (docs/bus.md §4.1).
	b.ready.Add("store", func(context.Context) error {
		if st := b.bus.StoreStatus(); !st.Healthy {
			return st.Err
		}
		return nil
	})
	for _, sv := range b.served {
		b.ready.Add(sv.role+" "+sv.addr, func(context.Context) error {
			if !sv.open.Load() {
				return errors.New("listener closed")
			}
			return nil
		})
	}
	if b.stages != nil {
		b.ready.Add("stages", func(context.Context) error {
			if !b.stages.Running() {
				return errors.New("the stages stopped")
			}
			return nil
		})
	}
}

// Readiness is the list of checks behind /readyz; a part of the process
// that can fail to serve adds its own.
func (b *Broker) Readiness() *observe.Readiness { return &b.ready }

// HTTPAddr is the bound address of the HTTP endpoint; nil without one.
func (b *Broker) HTTPAddr() net.Addr {
	if b.httpLn == nil {
		return nil
	}
	return b.httpLn.Addr()
}

// build makes the roles the configuration asks for, on the open bus.
func (b *Broker) build() (err error) {
	if len(b.recvLns) > 0 {
		if b.receiver, err = ingress.NewReceiver(b.bus, b.cfg.Receiver); err != nil {
			return err
		}
	}
	if len(b.castLns) > 0 {
		if b.broadcaster, err = egress.New(b.cfg.Broadcaster); err != nil {
			return err
		}
	}
	for _, ep := range b.cfg.Subscribe {
		sub, err := ingress.NewSubscription(ep, b.bus, b.cfg.Subscriber)
		if err != nil {
			return err
		}
		b.upstreams = append(b.upstreams, sub)
	}
	if b.kafkaIn != nil {
		if b.kafkaSource, err = ingress.NewKafkaSource(b.kafkaIn, b.bus, b.cfg.KafkaIn.Source); err != nil {
			return err
		}
	}
	return nil
}

// resolveKafka reads the Kafka secret files and checks the credentials
// with each cluster (KafkaCheckTimeout): a refusal is an error; a cluster
// not reachable yet is logged, and the clients keep trying. It keeps the
// source's client and returns the output's.
func (b *Broker) resolveKafka(ctx context.Context) (out *kafka.Client, err error) {
	resolve := func(c kafka.Config, what string) (*kafka.Client, error) {
		cl, err := c.Resolve(b.log.With("component", what))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		cctx, cancel := context.WithTimeout(ctx, KafkaCheckTimeout)
		defer cancel()
		err = cl.Check(cctx)
		var ae *kafka.AuthError
		switch {
		case errors.As(err, &ae):
			return nil, fmt.Errorf("%s %s: %w", what, cl.Describe(), err)
		case err != nil:
			b.log.Warn("Kafka cluster not reachable at start; it is tried again until it answers", "component", what,
				"kafka", cl.Describe(), "err", err)
		}
		return cl, nil
	}
	if b.cfg.KafkaIn != nil {
		if b.kafkaIn, err = resolve(b.cfg.KafkaIn.Conn, "kafka"); err != nil {
			return nil, err
		}
	}
	if b.cfg.KafkaOut != nil {
		return resolve(b.cfg.KafkaOut.Conn, "kafka-out")
	}
	return nil, nil
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
	recvWL, castWL := b.cfg.Receiver.Whitelist, b.cfg.Broadcaster.Whitelist
	recvWL.Set(receive)
	castWL.Set(broadcast)
	b.log.Info("whitelists reloaded", "receive", recvWL.Networks(), "broadcast", castWL.Networks())
	return nil
}

// hasTLS reports whether any endpoint of the process speaks TLS (an ssl:
// listener or a tls: upstream).
func (b *Broker) hasTLS() bool {
	for _, ln := range append(append([]net.Listener{}, b.recvLns...), b.castLns...) {
		if _, ok := ln.(*endpoint.TLSListener); ok {
			return true
		}
	}
	for _, ep := range b.cfg.Subscribe {
		if ep.TLS != nil {
			return true
		}
	}
	return false
}

// ReloadTLS re-reads the TLS files of every ssl: listener and tls:
// subscription, for the handshakes from now on. A file with an error keeps
// the ones in use for that endpoint; the error names each endpoint that
// did not reload, and the others did.
func (b *Broker) ReloadTLS() error {
	var errs []error
	reloaded := 0
	for _, ln := range append(append([]net.Listener{}, b.recvLns...), b.castLns...) {
		if tl, ok := ln.(*endpoint.TLSListener); ok {
			if err := tl.Reload(); err != nil {
				errs = append(errs, fmt.Errorf("ssl: listener %s: %w", ln.Addr(), err))
				continue
			}
			reloaded++
		}
	}
	for i, sub := range b.upstreams {
		if b.cfg.Subscribe[i].TLS == nil {
			continue
		}
		if err := sub.Reload(); err != nil {
			errs = append(errs, err)
			continue
		}
		reloaded++
	}
	if reloaded > 0 {
		b.log.Info("TLS certificates reloaded", "endpoints", reloaded)
	}
	return errors.Join(errs...)
}

// ReceiveAddrs are the bound receiver addresses (useful with port 0).
func (b *Broker) ReceiveAddrs() []net.Addr { return addrList(b.recvLns) }

// BroadcastAddrs are the bound broadcaster addresses.
func (b *Broker) BroadcastAddrs() []net.Addr { return addrList(b.castLns) }

// Bus exposes the bus, for tests and diagnostics.
func (b *Broker) Bus() *bus.Bus { return b.bus }

// Stats is a snapshot of what the broker's roles have counted since it
// started, for diagnostics, tests and metrics. A role the broker does not
// run has nil maps and slices.
type Stats struct {
	// Rejections are the receiver's, by reason: authors' submissions and
	// connections turned away.
	Rejections map[ingress.Rejection]uint64
	// UpstreamRejections are the events from upstream brokers acked but
	// not relayed, and those not stored (not acked), by reason, over every
	// subscription.
	UpstreamRejections map[ingress.Rejection]uint64
	// Drops are the broadcaster's subscribers disconnected or refused at
	// connect, by cause.
	Drops map[egress.DropCause]uint64
	// TLSFailures are the failed TLS handshakes, by kind, on the ssl:
	// listeners (also counted as RejectTLS and DropTLS) and with tls:
	// upstreams.
	TLSFailures map[endpoint.Failure]uint64
	// Subscribers are the subscribers connected now.
	Subscribers []egress.SubscriberStats
	// Stages are the handlers' counts, by stage name (kafka-out
	// included).
	Stages map[string]stages.Stats
	// Kafka is the Kafka source's counts and KafkaStatus its liveness
	// (nil without --kafka).
	Kafka       *ingress.KafkaStats
	KafkaStatus *ingress.KafkaStatus
}

// Stats returns a snapshot of the counts.
func (b *Broker) Stats() Stats {
	st := Stats{TLSFailures: make(map[endpoint.Failure]uint64)}
	addTLS := func(m map[endpoint.Failure]uint64) {
		for f, n := range m {
			st.TLSFailures[f] += n
		}
	}
	if b.receiver != nil {
		st.Rejections = b.receiver.Rejections()
		addTLS(b.receiver.TLSFailures())
	}
	for _, u := range b.upstreams {
		if st.UpstreamRejections == nil {
			st.UpstreamRejections = make(map[ingress.Rejection]uint64)
		}
		for r, n := range u.Rejections() {
			st.UpstreamRejections[r] += n
		}
		addTLS(u.TLSFailures())
	}
	if b.broadcaster != nil {
		st.Drops = b.broadcaster.Drops()
		st.Subscribers = b.broadcaster.Stats()
		addTLS(b.broadcaster.TLSFailures())
	}
	if b.stages != nil {
		st.Stages = b.stages.Stats()
	}
	if b.kafkaSource != nil {
		ks, status := b.kafkaSource.Stats(), b.kafkaSource.Status()
		st.Kafka, st.KafkaStatus = &ks, &status
	}
	return st
}

// Shutdown stops accepting submissions and subscribers, lets in-flight
// submissions finish (ack or nak) until ctx ends, disconnects subscribers,
// stops the relay and closes the bus, flushing it.
// It is safe to call more than once; later calls return the first result.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.shutdownOnce.Do(func() { b.shutdownErr = b.shutdown(ctx) })
	return b.shutdownErr
}

func (b *Broker) shutdown(ctx context.Context) error {
	b.stopping.Store(true)
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
	if b.kafkaOut != nil {
		b.kafkaOut.Close()
	}
	// Stop the relay and timers before dropping subscribers, so nothing is
	// handed to a broadcaster that is going away.
	b.cancel()
	b.running.Wait()
	if b.broadcaster != nil {
		b.broadcaster.Close()
	}
	b.listening.Wait()
	// The endpoint answers (not ready) until the last part that it reads
	// is gone.
	if b.http != nil {
		if err := b.http.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("HTTP endpoint: %w", err))
		}
	}
	if err := b.bus.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bus: %w", err))
	}
	b.log.Info("broker stopped")
	return errors.Join(errs...)
}

// listen binds every endpoint, or none.
func listen(eps []endpoint.Endpoint, lc endpoint.ListenConfig) ([]net.Listener, error) {
	var lns []net.Listener
	for _, ep := range eps {
		ln, err := lc.Listen(ep)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

func (b *Broker) closeListeners() {
	for _, ln := range append(b.recvLns, b.castLns...) {
		ln.Close()
	}
	if b.httpLn != nil {
		b.httpLn.Close()
	}
}

func addrList(lns []net.Listener) []net.Addr {
	out := make([]net.Addr, len(lns))
	for i, ln := range lns {
		out[i] = ln.Addr()
	}
	return out
}

// addrs are the listeners' addresses for the log: "ssl:" before a TLS
// one, and ":clientCA" after one that requires client certificates.
func addrs(lns []net.Listener) []string {
	out := make([]string, len(lns))
	for i, ln := range lns {
		out[i] = ln.Addr().String()
		if tl, ok := ln.(*endpoint.TLSListener); ok {
			out[i] = "ssl:" + out[i]
			if tl.MutualTLS() {
				out[i] += ":clientCA"
			}
		}
	}
	return out
}

// DefaultEventDB is where the bus stores events and the previously-seen
// database when --eventdb is not given: like Comet, under the system
// temporary directory.
func DefaultEventDB() string { return os.TempDir() + string(os.PathSeparator) + "comet-eventdb" }
