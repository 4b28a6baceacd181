// Package ingress holds the roles through which events enter the broker:
// the VTP receiver (authors submit events) and, later, subscriptions to
// remote brokers. Every accepted event is stored on the bus before the
// sender hears "ack"; ingress never talks to subscribers directly.
package ingress

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/comet-go/comet/accept"
	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/tally"
	"github.com/comet-go/comet/voevent"
	"github.com/comet-go/comet/vtp"
	"github.com/comet-go/comet/whitelist"
)

// Defaults for Receiver fields left zero.
const (
	// DefaultReceiveTimeout is Comet's: counted from connect, never extended.
	DefaultReceiveTimeout = 20 * time.Second
	// DefaultLingerTimeout bounds how long a connection is kept after the
	// reply, waiting for the author to close (so that closing never resets
	// a connection whose ack is still in flight).
	DefaultLingerTimeout = 2 * time.Second
)

// SignatureRejectReason starts the nak reason of a signature failure, as
// in Comet's 2012 design (docs/openpgp.md §5); ours adds why after ": ".
const SignatureRejectReason = "Signature validation failed"

// RejectPrefix starts every nak Result, as in Comet.
const RejectPrefix = "Event rejected: "

// DuplicateReason is Comet's nak text for an event already seen.
const DuplicateReason = "Previously seen by this broker"

// Store is what the receiver needs from the bus: an atomic
// check-record-and-store of one event.
type Store interface {
	Ingest(ctx context.Context, ev *bus.Event) (bus.Outcome, error)
}

// ReceiverConfig configures a Receiver. NewReceiver gives zero values
// their defaults and refuses negative ones.
type ReceiverConfig struct {
	LocalIVO  string          // Response of receipts
	Node      string          // recorded in the Comet-Node header
	Whitelist *whitelist.List // nil allows everyone
	Limits    accept.Limits   // open connections per listener; zero = unlimited

	// VerifySignature, if set (--sender-auth), must accept the event's
	// OpenPGP signature for the given AuthorIVORN, returning who signed;
	// an error naks the event with the error as the reason.
	VerifySignature func(payload []byte, author string) (signer string, err error)
	// MaxVerifying bounds signature checks running at once (they cost
	// CPU, and unauthenticated peers can ask for them); 0 =
	// accept.ChecksPerCPU × GOMAXPROCS. A submission waits for a slot
	// within its Timeout.
	MaxVerifying int

	Timeout       time.Duration // per connection; 0 = DefaultReceiveTimeout
	LingerTimeout time.Duration // 0 = DefaultLingerTimeout
	MaxFrame      int           // 0 = vtp.DefaultMaxFrame

	// Timings, if set, is told how long each accepted event took; it is
	// called on the submission's goroutine, so it must be cheap.
	Timings Timings

	Logger *slog.Logger
}

// Timings receives the durations of an accepted event, for metrics. Nil
// fields are skipped.
type Timings struct {
	// Stored is the bus's Ingest of an event it stored: the time an author
	// or upstream waits for the durable write.
	Stored func(time.Duration)
	// Acked is the author-visible latency: from the event's last byte read
	// to its ack written.
	Acked func(time.Duration)
}

func (c *ReceiverConfig) setDefaults() error {
	if c.Timeout < 0 || c.LingerTimeout < 0 || c.MaxFrame < 0 || c.MaxVerifying < 0 ||
		c.Limits.MaxConns < 0 || c.Limits.MaxConnsPerPeer < 0 {
		return errors.New("ingress: receiver: negative limit")
	}
	c.Timeout = cmp.Or(c.Timeout, DefaultReceiveTimeout)
	c.LingerTimeout = cmp.Or(c.LingerTimeout, DefaultLingerTimeout)
	c.MaxFrame = cmp.Or(c.MaxFrame, vtp.DefaultMaxFrame)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Receiver accepts event submissions from authors (docs/vtp.md §4.1): one
// event per connection, answered with ack or nak, then closed. Build it
// with NewReceiver, then Serve any number of listeners, as with
// net/http.Server.
type Receiver struct {
	cfg       ReceiverConfig
	store     Store
	verifying *accept.Gate // MaxVerifying slots
	rejected  tally.Counts[Rejection]
	tlsFailed tally.Counts[endpoint.Failure]
	accepted  atomic.Uint64

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     sync.WaitGroup
	shutdown  bool
}

// errBusy is a signature check that found no slot in time.
var errBusy = errors.New("broker too busy to check the signature; try again")

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("ingress: receiver closed")

// NewReceiver returns a receiver storing what it accepts in store.
func NewReceiver(store Store, cfg ReceiverConfig) (*Receiver, error) {
	if store == nil {
		return nil, errors.New("ingress: receiver: no store")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Receiver{cfg: cfg, store: store, verifying: accept.NewGate(cfg.MaxVerifying),
		listeners: make(map[net.Listener]struct{})}, nil
}

// Serve accepts connections on ln until Shutdown. It may be called for
// several listeners at once.
func (r *Receiver) Serve(ln net.Listener) error {
	if !r.track(ln) {
		ln.Close()
		return ErrServerClosed
	}
	defer r.untrack(ln)
	log := r.cfg.Logger.With("listener", ln.Addr().String())
	log.Info("receiving events")
	policy := accept.Policy{Whitelist: r.cfg.Whitelist, Limits: r.cfg.Limits, Logger: log,
		Refused:          func(why accept.Refusal) { r.rejected.Add(Rejection(why)) },
		HandshakeTimeout: r.cfg.Timeout, // the handshake is part of the time from connect
		HandshakeFailed:  func(f endpoint.Failure) { r.tlsFailed.Add(f) }}
	err := accept.Loop(ln, policy, r.closing, func(conn net.Conn) {
		// Under mu, so that Shutdown waits for every connection admitted
		// before it (a TLS one is handed over from its handshake's goroutine).
		r.mu.Lock()
		if r.shutdown {
			r.mu.Unlock()
			conn.Close()
			return
		}
		r.conns.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.conns.Done()
			r.handle(conn)
		}()
	})
	if err == nil {
		return ErrServerClosed
	}
	return err
}

// Rejections counts, by reason, what the receiver has turned away since it
// was built.
func (r *Receiver) Rejections() map[Rejection]uint64 { return r.rejected.Snapshot() }

// TLSFailures counts the failed TLS handshakes on its ssl: listeners, by
// kind (all counted as RejectTLS too).
func (r *Receiver) TLSFailures() map[endpoint.Failure]uint64 { return r.tlsFailed.Snapshot() }

// Accepted counts the events the receiver stored and acked since it was
// built.
func (r *Receiver) Accepted() uint64 { return r.accepted.Load() }

// Shutdown stops accepting, then waits for in-flight submissions to be
// answered (each is bounded by Timeout) or for ctx to end.
func (r *Receiver) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.shutdown = true
	for ln := range r.listeners {
		ln.Close()
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.conns.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Receiver) handle(conn net.Conn) {
	defer conn.Close()
	peer := conn.RemoteAddr().String()
	log := submissionLog{l: r.cfg.Logger, attrs: append([]any{"peer", peer}, endpoint.PeerLogAttrs(conn)...)}
	timeout := r.cfg.Timeout
	// Counted from connect (Comet's): a TLS connection's handshake, run by
	// the accept loop, was part of it.
	conn.SetDeadline(cmp.Or(accept.HandshakeStart(conn), time.Now()).Add(timeout))

	payload, err := vtp.ReadSoleFrame(conn, r.cfg.MaxFrame)
	if err != nil {
		switch {
		case errors.Is(err, vtp.ErrFrameTooLarge):
			r.rejected.Add(RejectTooLarge)
			log.Warn("closing submission", "err", err)
		case errors.Is(err, os.ErrDeadlineExceeded):
			r.rejected.Add(RejectTimeout)
			log.Warn("submission timed out", "timeout", timeout)
		case errors.Is(err, io.EOF):
			log.Debug("peer closed without sending")
		default:
			r.rejected.Add(RejectReadError)
			log.Warn("submission read failed", "err", err)
		}
		return
	}
	receivedAt := time.Now()

	info, err := voevent.Inspect(payload, voevent.Options{Schema: true})
	if err != nil {
		r.rejected.Add(RejectUnparsable)
		log.Warn("unparsable submission; no reply", "err", err, "bytes", len(payload))
		return
	}
	switch {
	case vtp.IsTransportRole(info.Role):
		r.rejected.Add(RejectTransport)
		log.Warn("incomprehensible submission: Transport message on the receive port; no reply", "role", info.Role)
		return
	case !voevent.IsVOEventRole(info.Role):
		r.rejected.Add(RejectUnparsable)
		log.Warn("unparsable submission: root has no VOEvent role; no reply", "role", info.Role, "has_role", info.HasRole)
		return
	case !info.HasIVORN:
		// A receipt needs an ivorn for its Origin (docs/vtp.md §6).
		r.rejected.Add(RejectNoIVORN)
		log.Warn("submission without ivorn; no reply")
		return
	}
	log = log.With("ivorn", info.IVORN)

	reply := func(msg []byte) {
		if err := vtp.WriteFrame(conn, msg); err != nil {
			log.Warn("could not send receipt", "err", err)
			return
		}
		r.linger(conn)
	}
	reject := func(why Rejection, reason string) {
		r.rejected.Add(why)
		log.Info("event rejected", "reason", reason, "rejection", why)
		reply(vtp.Nak(info.IVORN, r.cfg.LocalIVO, RejectPrefix+reason, time.Now()))
	}

	// IVOID and schema first: a refused event is not recorded as seen, so
	// its author may correct it and send it again (docs/bus.md §2.2).
	if err := voevent.CheckEventIVORN(info.IVORN); err != nil {
		reject(RejectInvalid, err.Error())
		return
	}
	if info.SchemaErr != nil {
		reject(RejectInvalid, info.SchemaErr.Error())
		return
	}
	ev := newEvent(payload, info, bus.OriginAuthor, peer, r.cfg.Node, receivedAt)
	ctx, cancel := context.WithDeadline(context.Background(), receivedAt.Add(timeout))
	defer cancel()
	if r.cfg.VerifySignature != nil {
		// Before the previously-seen check: an event refused here is not
		// recorded, so the author may resend it properly signed.
		signer, err := r.verify(ctx, payload, info.Author)
		if err != nil {
			why := RejectSignature
			if errors.Is(err, errBusy) {
				why = RejectBusy
			}
			reject(why, SignatureRejectReason+": "+err.Error())
			return
		}
		ev.Signature = bus.SignatureVerified(signer)
		log = log.With("signer", signer)
	}
	storing := time.Now()
	outcome, err := r.store.Ingest(ctx, ev)
	switch {
	case err != nil:
		// Not stored, so no ack; and no nak, which would be permanent for
		// this document (VTP 2.0): silence tells the author to retry.
		r.rejected.Add(RejectStoreFailed)
		if errors.Is(err, bus.ErrStoreUnavailable) {
			// The bus said once that the store is failing; one line per
			// author here would flood the log.
			log.Debug("store not taking writes; closed without a reply so the author retries", "err", err)
		} else {
			log.Error("could not store event; no reply so the author retries", "err", err)
		}
	case outcome == bus.Duplicate:
		reject(RejectPreviouslySeen, DuplicateReason)
	default:
		r.accepted.Add(1)
		if f := r.cfg.Timings.Stored; f != nil {
			f(time.Since(storing))
		}
		log.Info("event accepted", "sha1", ev.SHA1, "role", ev.Role)
		err := vtp.WriteFrame(conn, vtp.Ack(info.IVORN, r.cfg.LocalIVO, time.Now()))
		if err != nil {
			log.Warn("could not send receipt", "err", err)
			return
		}
		if f := r.cfg.Timings.Acked; f != nil {
			f(time.Since(receivedAt))
		}
		r.linger(conn)
	}
}

// submissionLog logs about one submission. Its attributes (peer, ivorn,
// signer) go into a record only when one is written: slog.Logger.With
// would format them for every event, logged or not.
type submissionLog struct {
	l     *slog.Logger
	attrs []any
}

func (s submissionLog) With(args ...any) submissionLog {
	return submissionLog{s.l, append(s.attrs[:len(s.attrs):len(s.attrs)], args...)}
}

func (s submissionLog) log(level slog.Level, msg string, args []any) {
	ctx := context.Background()
	if s.l.Enabled(ctx, level) {
		s.l.Log(ctx, level, msg, append(s.attrs[:len(s.attrs):len(s.attrs)], args...)...)
	}
}

func (s submissionLog) Debug(msg string, args ...any) { s.log(slog.LevelDebug, msg, args) }
func (s submissionLog) Info(msg string, args ...any)  { s.log(slog.LevelInfo, msg, args) }
func (s submissionLog) Warn(msg string, args ...any)  { s.log(slog.LevelWarn, msg, args) }
func (s submissionLog) Error(msg string, args ...any) { s.log(slog.LevelError, msg, args) }

// verify runs the signature check in one of MaxVerifying slots, waiting
// for a slot while ctx lasts.
func (r *Receiver) verify(ctx context.Context, payload []byte, author string) (string, error) {
	if !r.verifying.Enter(ctx.Done()) {
		return "", errBusy
	}
	defer r.verifying.Leave()
	return r.cfg.VerifySignature(payload, author)
}

// linger half-closes and waits briefly for the author to close, so unread
// input (for instance a second frame, which is never processed) cannot turn
// our close into a reset that destroys the receipt in flight.
func (r *Receiver) linger(conn net.Conn) {
	cw, ok := conn.(interface{ CloseWrite() error })
	if !ok {
		return
	}
	if cw.CloseWrite() != nil {
		return
	}
	conn.SetReadDeadline(time.Now().Add(r.cfg.LingerTimeout))
	io.CopyN(io.Discard, conn, int64(max(r.cfg.MaxFrame, vtp.DefaultMaxFrame))+4)
}

func (r *Receiver) track(ln net.Listener) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shutdown {
		return false
	}
	r.listeners[ln] = struct{}{}
	return true
}

func (r *Receiver) untrack(ln net.Listener) {
	r.mu.Lock()
	delete(r.listeners, ln)
	r.mu.Unlock()
}

func (r *Receiver) closing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.shutdown
}

// newEvent is an accepted payload as the bus stores it (Ingest adds its
// digest).
func newEvent(payload []byte, info *voevent.Info, origin, peer, node string, at time.Time) *bus.Event {
	return &bus.Event{
		Payload:    payload,
		IVORN:      info.IVORN,
		Role:       info.Role,
		Author:     info.Author,
		Origin:     origin,
		Peer:       peer,
		Node:       node,
		Signature:  bus.SignatureUnchecked,
		ReceivedAt: at,
	}
}
