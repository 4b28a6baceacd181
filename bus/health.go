package bus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Watching the store. A store that stops taking writes (a full disk, a
// write error, a directory made read-only, JetStream out of resources) is
// noticed within a second, said once in the log, and refused at once by
// Ingest (ErrStoreUnavailable) until writes succeed again: the bus tries
// every StoreRetryInterval and, on the embedded server, restarts
// JetStream, which re-opens the store from disk. See docs/bus.md §4.1.
const (
	// StoreCheckInterval is how often the bus checks an embedded store
	// that takes writes: the server's own health of its streams, and a
	// small file written in the store directory. The server's errors and
	// a store left unanswered for StoreSuspectAfter check it at once.
	StoreCheckInterval = 500 * time.Millisecond
	// StoreSuspectAfter is how long an Ingest waits for the stream's
	// answer before it has the bus check the store (an embedded stream
	// that hit a write error never answers).
	StoreSuspectAfter = 250 * time.Millisecond
	// StoreRetryInterval is how often a failing store is tried again.
	StoreRetryInterval = time.Second
	// StoreProbeTimeout bounds one write of the probe record while the
	// store is failing, and the stream's answer about itself.
	StoreProbeTimeout = time.Second
	// StoreExternalProbeTimeout bounds the probe write that checks an
	// external store suspected of not storing: StoreSuspectAfter plus
	// this plus a round trip is when an author's event is refused, which
	// must be within a second.
	StoreExternalProbeTimeout = 500 * time.Millisecond
	// StoreRestartAttempts is how many restarts of the embedded JetStream
	// may fail in a row, while its file system takes writes again, before
	// the bus gives up (Failed delivers ErrStoreUnrecoverable).
	StoreRestartAttempts = 5
	// probeFileSize is what the file-system check writes: enough to need
	// new blocks on a full disk.
	probeFileSize = 64 << 10
	// healthzTries is how many of the embedded server's health checks in
	// a row must fail before the store counts as failing, healthzPause
	// apart: under load the server's check can fail once on a healthy
	// server (it gives itself a millisecond to find its listeners
	// ready), and a false failure restarts JetStream.
	healthzTries = 3
	healthzPause = 10 * time.Millisecond
)

// ErrStoreUnrecoverable is delivered by Failed when the embedded store
// cannot take writes again within this process although its file system
// does: JetStream did not come back after StoreRestartAttempts restarts.
// A new process (the service manager's restart) starts afresh.
var ErrStoreUnrecoverable = errors.New("event store cannot be recovered in this process")

// ProbeSHA1 is the digest part of the subject of the bus's probe record,
// comet.event._._._.<40 zeros>: a message with no data (a record, which
// readers skip) written to learn whether a failing stream takes writes
// again. No payload has this digest.
const ProbeSHA1 = "0000000000000000000000000000000000000000"

// StoreStatus says whether the store takes writes.
type StoreStatus struct {
	Healthy bool
	// Since is when the store last changed state (when the bus opened,
	// at first).
	Since time.Time
	// Err is why the store is failing (nil when Healthy); it wraps
	// ErrStoreUnavailable.
	Err error
	// Store is the embedded store's directory, or the external system.
	Store string
	// Free is the free space on the embedded store's file system, in
	// bytes; -1 with an external system or when unknown.
	Free int64
}

// storeState is the store's state as Ingest reads it on every call.
type storeState struct {
	err    error         // nil: taking writes
	failed chan struct{} // closed when a healthy store turns failing
	since  time.Time
}

// health is the bus's part that watches the store.
type health struct {
	state atomic.Pointer[storeState]
	kick  chan struct{} // check now (1-buffered)
	fatal chan error    // ErrStoreUnrecoverable (1-buffered)
	mu    sync.Mutex    // serializes transitions
}

func newHealth(now time.Time) *health {
	h := &health{kick: make(chan struct{}, 1), fatal: make(chan error, 1)}
	h.state.Store(&storeState{failed: make(chan struct{}), since: now})
	return h
}

// suspect asks the watch to check the store now.
func (h *health) suspect() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// Healthy reports whether the store takes writes.
func (b *Bus) Healthy() bool { return b.health.state.Load().err == nil }

// StoreStatus describes the store's state now.
func (b *Bus) StoreStatus() StoreStatus {
	st := b.health.state.Load()
	s := StoreStatus{Healthy: st.err == nil, Since: st.since, Err: st.err, Store: b.storeName(), Free: -1}
	if b.srv != nil {
		s.Free = freeSpace(b.cfg.StoreDir)
	}
	return s
}

// Failed delivers an error wrapping ErrStoreUnrecoverable when the
// embedded store cannot be recovered in this process; the owner of the bus
// should then exit so that a new process starts (cmd/comet exits with
// its own status for it).
func (b *Bus) Failed() <-chan error { return b.health.fatal }

func (b *Bus) storeName() string {
	if b.srv != nil {
		return b.cfg.StoreDir
	}
	return "external NATS " + redact(b.cfg.URL) + " stream " + StreamName
}

// setFailing turns a healthy store failing because of cause, says so
// once, and releases the Ingest calls waiting for an answer.
func (b *Bus) setFailing(cause error) {
	h := b.health
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.state.Load()
	if old.err != nil {
		return
	}
	err := cause
	if !errors.Is(err, ErrStoreUnavailable) {
		err = fmt.Errorf("%w: %w", ErrStoreUnavailable, cause)
	}
	h.state.Store(&storeState{err: err, failed: old.failed, since: time.Now()})
	close(old.failed)
	args := []any{"store", b.storeName(), "err", cause}
	if b.srv != nil {
		args = append(args, "free", FormatSize(freeSpace(b.cfg.StoreDir)))
	}
	b.log.Error("event store is not taking writes: events are refused, and tried again every "+StoreRetryInterval.String(), args...)
}

// setHealthy turns a failing store healthy and says so.
func (b *Bus) setHealthy() {
	h := b.health
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.state.Load()
	if old.err == nil {
		return
	}
	now := time.Now()
	h.state.Store(&storeState{failed: make(chan struct{}), since: now})
	args := []any{"store", b.storeName(), "after", now.Sub(old.since).Round(time.Millisecond)}
	if b.srv != nil {
		args = append(args, "free", FormatSize(freeSpace(b.cfg.StoreDir)))
	}
	b.log.Info("event store is taking writes again", args...)
}

// watchStore checks the store until ctx ends: while it takes writes, every
// StoreCheckInterval (embedded) and whenever suspected; while it fails,
// every StoreRetryInterval, recovering it when it can.
func (b *Bus) watchStore(ctx context.Context) {
	t := time.NewTimer(StoreCheckInterval)
	defer t.Stop()
	restarts := 0 // failed restarts in a row
	for {
		failing := b.health.state.Load().err != nil
		kick, tick := b.health.kick, t.C
		switch {
		case failing:
			kick = nil // retries keep their own pace
		case b.srv == nil:
			// A healthy external store is checked only when suspected: its
			// check is a probe write, which would cost a shared system
			// writes twice a second per process.
			tick = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-tick:
		}
		if !failing {
			if err := b.checkStore(ctx); err != nil && ctx.Err() == nil {
				b.setFailing(err)
				t.Reset(StoreRetryInterval)
			} else {
				t.Reset(StoreCheckInterval)
			}
			continue
		}
		restarted, err := b.recoverStore(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			restarts = 0
			b.setHealthy()
		case restarted:
			restarts++
			b.log.Warn("event store restarted but still not taking writes", "store", b.storeName(),
				"attempt", restarts, "of", StoreRestartAttempts, "err", err)
			if restarts >= StoreRestartAttempts {
				select {
				case b.health.fatal <- fmt.Errorf("bus: %w: %s: %w", ErrStoreUnrecoverable, b.cfg.StoreDir, err):
				default:
				}
				return
			}
		default:
			b.log.Debug("event store still failing", "err", err)
		}
		t.Reset(StoreRetryInterval)
	}
}

// checkStore looks for a store that has stopped taking writes: on the
// embedded server, the server's health of JetStream and its streams (a
// write error sticks to its stream) and a file written in the store
// directory; on an external system, a probe write when suspected.
func (b *Bus) checkStore(ctx context.Context) error {
	if b.srv == nil {
		return b.checkExternal(ctx)
	}
	if err := b.serverHealth(); err != nil {
		return err
	}
	return checkDirWritable(b.cfg.StoreDir)
}

// serverHealth is the embedded server's view of JetStream and its
// streams: nil when healthy. The server's check is asked up to
// healthzTries times; a store fails only when each says so.
func (b *Bus) serverHealth() error {
	var err error
	for try := range healthzTries {
		if try > 0 {
			time.Sleep(healthzPause)
		}
		if err = b.healthz(); err == nil {
			return nil
		}
	}
	return err
}

// healthz asks the embedded server once.
func (b *Bus) healthz() error {
	if !b.srv.JetStreamEnabled() {
		return errors.New("JetStream is disabled (the server shut it down after a write error)")
	}
	hs := b.srv.Healthz(&server.HealthzOptions{Details: true})
	if hs == nil || len(hs.Errors) == 0 {
		return nil
	}
	msgs := make([]string, len(hs.Errors))
	for i, e := range hs.Errors {
		msgs[i] = e.Error
	}
	return errors.New(strings.Join(msgs, "; "))
}

// checkExternal runs when an Ingest went unanswered on an external
// system: a probe write refused, or unanswered while the stream answers
// questions about itself, is a stream that does not store. A stream that
// answers nothing (a cluster electing a leader) is left to Ingest's
// retries.
func (b *Bus) checkExternal(ctx context.Context) error {
	err := b.probe(ctx, StoreExternalProbeTimeout)
	switch {
	case err == nil:
		return nil
	case storeRefused(err):
		return err
	case !outcomeUnknown(err):
		return nil
	}
	ictx, cancel := context.WithTimeout(ctx, StoreProbeTimeout)
	defer cancel()
	if _, ierr := b.stream.Info(ictx); ierr != nil {
		return nil
	}
	return fmt.Errorf("stream %s answers but does not store: %w", StreamName, err)
}

// recoverStore tries to make a failing store take writes again. On the
// embedded server it first checks that the file system takes a file
// again; then, if JetStream or one of its streams is stuck on a write
// error, restarts JetStream (restarted), which re-opens every stream from
// disk; then writes the probe record. nil means the probe was stored.
func (b *Bus) recoverStore(ctx context.Context) (restarted bool, err error) {
	if b.srv != nil {
		if err := checkDirWritable(b.cfg.StoreDir); err != nil {
			return false, err
		}
		if b.serverHealth() != nil {
			if err := b.restartJetStream(); err != nil {
				return true, err
			}
			restarted = true
		}
	}
	if err := b.probe(ctx, StoreProbeTimeout); err != nil {
		return restarted, fmt.Errorf("probe write: %w", err)
	}
	return restarted, nil
}

// restartJetStream stops the embedded server's JetStream and starts it
// again with the same configuration. The NATS connections stay up;
// consumers' pulls break and are restarted by their owners.
func (b *Bus) restartJetStream() error {
	b.log.Warn("restarting the embedded JetStream to re-open the store", "store", b.cfg.StoreDir)
	if b.srv.JetStreamEnabled() {
		if err := b.srv.ShutdownJetStream(); err != nil {
			return fmt.Errorf("stopping JetStream: %w", err)
		}
	}
	cfg := *b.jsConfig
	// The server keeps the directory it made under the store's
	// ("jetstream"); enabling takes the store's and makes it again.
	cfg.StoreDir = b.cfg.StoreDir
	if err := b.srv.EnableJetStream(&cfg); err != nil {
		return fmt.Errorf("restarting JetStream: %w", err)
	}
	if err := b.serverHealth(); err != nil {
		return fmt.Errorf("after restarting JetStream: %w", err)
	}
	return nil
}

// probe writes the probe record (see ProbeSHA1) and waits up to timeout
// for the stream's answer.
func (b *Bus) probe(ctx context.Context, timeout time.Duration) error {
	m := nats.NewMsg(SubjectPrefix + "_._._." + ProbeSHA1)
	m.Header.Set(HeaderNode, b.cfg.Node)
	m.Header.Set(HeaderReceivedAt, time.Now().UTC().Format(ReceivedAtLayout))
	// Like a migrated record: its expiry leaves no delete marker.
	m.Header.Set("Nats-Marker-Reason", "MaxAge")
	pa, err := b.pick().store(ctx, m, timeout, nil, nil)
	if err != nil {
		return err
	}
	if pa.Stream != StreamName {
		return fmt.Errorf("probe stored in stream %s instead of %s: overlapping stream subjects", pa.Stream, StreamName)
	}
	return nil
}

// checkDirWritable writes, closes and removes a small file in dir.
func checkDirWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".comet-probe-*")
	if err != nil {
		return fmt.Errorf("store directory not writable: %w", err)
	}
	_, werr := f.Write(make([]byte, probeFileSize))
	cerr := f.Close()
	os.Remove(f.Name())
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("store directory not writable: %w", err)
	}
	return nil
}

// errStoreFailed is what a store returns when the store turns failing
// while it waits for the stream's answer.
var errStoreFailed = errors.New("the store failed while this event waited for its answer")
