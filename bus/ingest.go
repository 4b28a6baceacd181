package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrStoreUnavailable is in the error of an Ingest that JetStream refused
// for want of storage, or because JetStream or the stream is gone: a full
// disk, a write error, account or server resource limits. The event is
// not stored; the JetStream error is wrapped too (errors.As with a
// *jetstream.APIError gives its code).
var ErrStoreUnavailable = errors.New("event store is not taking writes")

// JetStream API error codes (nats-server's errors.json) that Ingest tells
// apart and nats.go does not name.
const (
	errCodeAccountResources  jetstream.ErrorCode = 10002 // resource limits exceeded for account
	errCodeInsufficient      jetstream.ErrorCode = 10023 // insufficient resources
	errCodeMemoryResources   jetstream.ErrorCode = 10028 // insufficient memory resources available
	errCodeStorageResources  jetstream.ErrorCode = 10047 // insufficient storage resources available
	errCodeStreamStoreFailed jetstream.ErrorCode = 10077 // the store's own error, e.g. a write error
)

// Timings of Ingest's retries.
const (
	// InFlightRetryPause separates stores of one payload while a
	// clustered stream still replicates another store of it (API error
	// 10164): the next try meets that store's outcome.
	InFlightRetryPause = 5 * time.Millisecond
	// maxUnanswered bounds how often Ingest repeats a store that got no
	// answer, within the caller's deadline.
	maxUnanswered = 4
)

// Outcome of Ingest.
type Outcome int

const (
	// Accepted: the event is new and now stored on the stream.
	Accepted Outcome = iota + 1
	// Duplicate: the event was seen before; nothing was stored.
	Duplicate
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Duplicate:
		return "duplicate"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

func (b *Bus) checkEvent(ev *Event) error {
	switch {
	case len(ev.Payload) == 0:
		// A message without data on the stream is a previously-seen
		// record, never an event.
		return errors.New("empty payload")
	case ev.Origin != OriginAuthor && ev.Origin != OriginUpstream && ev.Origin != OriginKafka:
		return fmt.Errorf("origin %q is not %q, %q or %q", ev.Origin, OriginAuthor, OriginUpstream, OriginKafka)
	case len(ev.Payload) > b.cfg.MaxPayload:
		return fmt.Errorf("payload of %d bytes exceeds MaxPayload %d", len(ev.Payload), b.cfg.MaxPayload)
	}
	return nil
}

// Ingest records ev as seen and stores it, in one write: it sets ev.SHA1 to
// the payload's digest and publishes the event to the stream on the
// condition that no message on comet.event.*.*.*.<sha1> exists
// (Nats-Expected-Last-Subject-Sequence 0 on that subject). The stream
// applies that check and the store atomically, so of any number of Ingest
// calls with the same bytes, in any processes, exactly one stores the
// event while its record lasts (SeenTTL: the event for StreamMaxAge, then
// the server's delete marker; see the package comment).
//
// It returns Accepted only once the stream has acknowledged storing the
// event, and Duplicate when it already holds a record of the payload. An
// error means the event is not known to be stored and the sender should
// retry; errors.Is(err, ErrStoreUnavailable) tells a store that refuses
// writes. A store that got no answer is repeated with the same message
// (at most maxUnanswered times, each bounded by RequestTimeout); if the
// stream then reports the payload as stored, the stored copy is read to
// tell this call's own earlier store (Accepted) from another's
// (Duplicate).
func (b *Bus) Ingest(ctx context.Context, ev *Event) (Outcome, error) {
	if err := b.checkEvent(ev); err != nil {
		return 0, fmt.Errorf("bus: ingest: %w", err)
	}
	ev.SHA1 = Digest(ev.Payload)
	st := b.health.state.Load()
	if st.err != nil {
		// Refused at once: the bus said once why, and tries again itself.
		return 0, fmt.Errorf("bus: storing %s: %w", ev.SHA1, st.err)
	}
	c := b.pick()
	msg := b.message(ev)
	var unsure error // why an earlier store of this call may have succeeded
	unanswered := 0
	var replicating time.Time // since when another store of these bytes is being replicated
	for {
		// Each store gets RequestTimeout, not the whole of ctx: a reply
		// lost with a dying NATS node would otherwise hold the author
		// until its deadline.
		pa, err := c.store(ctx, msg, 0, st.failed, b.health.suspect)
		switch {
		case err == nil && pa.Stream == StreamName:
			return Accepted, nil
		case err == nil:
			return 0, fmt.Errorf("bus: storing %s: stored in stream %s instead of %s: overlapping stream subjects",
				ev.SHA1, pa.Stream, StreamName)
		case hasCode(err, jetstream.JSErrCodeStreamWrongLastSequence):
			if unsure == nil {
				return Duplicate, nil
			}
			return b.whoseStore(ctx, msg, unsure)
		case hasCode(err, jetstream.JSErrCodeStreamWrongLastSequenceConstant):
			// A clustered stream is replicating another store of these
			// bytes (perhaps our unanswered one); its outcome decides.
			if replicating.IsZero() {
				replicating = time.Now()
			}
			if time.Since(replicating) > b.cfg.RequestTimeout || !sleepCtx(ctx, InFlightRetryPause) {
				return 0, fmt.Errorf("bus: storing %s: another store of it still unresolved: %w", ev.SHA1, err)
			}
		case errors.Is(err, errStoreFailed):
			// Our store may have been written just before the fault: the
			// stream still answers reads, and whoseStore tells.
			out, err := b.whoseStore(ctx, msg, b.health.state.Load().err)
			if err != nil && !errors.Is(err, ErrStoreUnavailable) {
				err = fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
			}
			return out, err
		case storeRefused(err):
			b.setFailing(err)
			return 0, fmt.Errorf("bus: storing %s: %w: %w", ev.SHA1, ErrStoreUnavailable, err)
		case outcomeUnknown(err):
			unsure = err
			if unanswered++; unanswered >= maxUnanswered || ctx.Err() != nil {
				return b.whoseStore(ctx, msg, unsure)
			}
			b.log.Warn("no answer to storing an event; asking again", "sha1", ev.SHA1, "err", err)
		default:
			return 0, fmt.Errorf("bus: storing %s: %w", ev.SHA1, err)
		}
	}
}

// store publishes m and waits for the stream's acknowledgement, until ctx
// ends or for timeout at most; timeout 0 is the future's own timeout,
// RequestTimeout (set in connect), which needs no timer of its own. Either
// fails with jetstream.ErrAsyncPublishTimeout. The publish is
// asynchronous, its answer one awaited future: cheaper than a request per
// event. If failed (may be nil) is closed meanwhile, it returns
// errStoreFailed; if the answer takes StoreSuspectAfter, it calls suspect
// (may be nil) once.
func (c *conn) store(ctx context.Context, m *nats.Msg, timeout time.Duration, failed <-chan struct{}, suspect func()) (*jetstream.PubAck, error) {
	f, err := c.js.PublishMsgAsync(m)
	if err != nil {
		return nil, err
	}
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	var late <-chan time.Time
	if suspect != nil {
		s := time.NewTimer(StoreSuspectAfter)
		defer s.Stop()
		late = s.C
	}
	for {
		select {
		case pa := <-f.Ok():
			return pa, nil
		case err := <-f.Err():
			return nil, err
		case <-expired:
			return nil, jetstream.ErrAsyncPublishTimeout
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-failed:
			return nil, errStoreFailed
		case <-late:
			late = nil
			suspect()
		}
	}
}

// whoseStore settles an Ingest whose earlier store went unanswered (why:
// unsure): it reads the stream's record of the payload and compares it
// with this call's message. Its own headers (received-at to the
// nanosecond, node, peer) make this call's store Accepted; another's, or a
// delete marker, make it Duplicate; no record at all means nothing was
// stored, and the error says so.
func (b *Bus) whoseStore(ctx context.Context, m *nats.Msg, unsure error) (Outcome, error) {
	sha1 := m.Header.Get(HeaderSHA1)
	// ctx may be what ended the attempts; look on a fresh one.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.RequestTimeout)
	defer cancel()
	rec, err := b.stream.GetLastMsgForSubject(rctx, seenSubject(sha1))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, fmt.Errorf("bus: storing %s: %w (not stored)", sha1, unsure)
	case err != nil:
		return 0, fmt.Errorf("bus: storing %s: %w; looking for it on the stream: %v (outcome unknown)", sha1, unsure, err)
	}
	if len(rec.Data) == 0 {
		return Duplicate, nil // a delete marker: stored long ago
	}
	for _, k := range [...]string{HeaderReceivedAt, HeaderNode, HeaderPeer} {
		if rec.Header.Get(k) != m.Header.Get(k) {
			return Duplicate, nil
		}
	}
	return Accepted, nil
}

// hasCode reports whether err is a JetStream API error with this code.
func hasCode(err error, code jetstream.ErrorCode) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == code
}

// outcomeUnknown matches errors after which a store may have happened: no
// answer in time, or the connection lost with the answer in flight.
func outcomeUnknown(err error) bool {
	return unanswered(err) || errors.Is(err, jetstream.ErrAsyncPublishTimeout) ||
		errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionReconnecting)
}

// storeRefused matches JetStream's refusals for want of storage or of a
// stream to store in.
func storeRefused(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errCodeAccountResources, errCodeInsufficient, errCodeMemoryResources, errCodeStorageResources,
			errCodeStreamStoreFailed, jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount:
			return true
		}
		return false
	}
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}

// Seen reports whether the stream holds a record of sha1: the event, or
// the marker left when its payload expired.
func (b *Bus) Seen(ctx context.Context, sha1 string) (bool, error) {
	if !validSHA1(sha1) {
		return false, fmt.Errorf("bus: SHA1 %q is not 40 lowercase hex digits", sha1)
	}
	_, err := b.stream.GetLastMsgForSubject(ctx, seenSubject(sha1))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("bus: reading the record of %s: %w", sha1, err)
	}
	return true, nil
}

func validSHA1(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// sleepCtx waits d, or less if ctx ends; it reports whether ctx is live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
