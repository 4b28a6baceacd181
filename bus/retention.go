package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// How the bus watches for records lost to the stream's byte limit.
const (
	// RetentionCheckInterval is how often the bus compares the stream's
	// size with its MaxBytes. Eviction by size removes the oldest
	// messages without leaving delete markers, so a full stream forgets
	// records younger than SeenTTL; the bus says so (a warning with the
	// age of the oldest record left) rather than shorten the
	// previously-seen period silently.
	RetentionCheckInterval = time.Minute
	// RetentionWarnEvery spaces the repeats of that warning while the
	// stream stays full.
	RetentionWarnEvery = time.Hour
)

// retention is how the event stream keeps payloads and records: every
// event carries a time to live (its payload's retention); when it expires
// the server replaces the event with a delete marker (no data, same
// subject) that lives markerTTL; the stream's MaxAge is the longest any
// message lives. The marker keeps the subject's last sequence non-zero, so
// the expected-sequence check of Ingest still refuses the payload.
type retention struct {
	maxAge     time.Duration
	payloadTTL time.Duration // 0: payloads live maxAge, no markers
	markerTTL  time.Duration // 0: no delete markers
}

// retention applies the rule that a record lasts the longer of
// StreamMaxAge and SeenTTL, in whole seconds (JetStream's TTL unit).
func (c *Config) retention() retention {
	if c.StreamMaxAge >= c.SeenTTL {
		return retention{maxAge: c.StreamMaxAge}
	}
	payload := c.StreamMaxAge.Truncate(time.Second)
	marker := (c.SeenTTL - payload + time.Second - 1).Truncate(time.Second)
	return retention{maxAge: payload + marker, payloadTTL: payload, markerTTL: marker}
}

// isRecordOnly reports a message on the event stream that is a record and
// not an event: the server's delete marker (or a record migrated from the
// old bucket). Ingest never stores an empty payload, so no data is the
// mark; consumers skip these.
func isRecordOnly(data []byte) bool { return len(data) == 0 }

// RecordHorizon is the result of a retention check.
type RecordHorizon struct {
	Full   bool          // the stream is at its byte limit (evicting by size)
	Oldest time.Duration // age of the oldest record left (0 if the stream is empty)
	// Short is true when the stream is full and its oldest record is
	// younger than SeenTTL: payloads seen before Oldest are forgotten
	// early and would be accepted again.
	Short bool
}

// CheckRetention looks at the stream's size and its oldest record.
func (b *Bus) CheckRetention(ctx context.Context) (RecordHorizon, error) {
	info, err := b.stream.Info(ctx)
	if err != nil {
		return RecordHorizon{}, fmt.Errorf("bus: stream %s: %w", StreamName, err)
	}
	st, maxBytes := info.State, info.Config.MaxBytes
	var h RecordHorizon
	// Eviction frees just enough room for the next message, so a stream
	// that evicts stays within one message of its limit.
	h.Full = maxBytes > 0 && st.Bytes+uint64(b.cfg.msgLimit()) >= uint64(maxBytes)
	if st.Msgs == 0 {
		return h, nil
	}
	first, err := b.stream.GetMsg(ctx, st.FirstSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return h, nil // expired meanwhile; the next check sees the new first
	}
	if err != nil {
		return h, fmt.Errorf("bus: first message of %s: %w", StreamName, err)
	}
	since := first.Time
	if isRecordOnly(first.Data) {
		// A marker is placed when its event's payload expires: the
		// record began a payload lifetime earlier.
		since = since.Add(-b.cfg.retention().payloadTTL)
	}
	h.Oldest = max(time.Since(since), 0)
	h.Short = h.Full && h.Oldest < b.cfg.SeenTTL
	return h, nil
}

// watchRetention runs CheckRetention every RetentionCheckInterval until
// ctx ends, and warns while records are being lost to the byte limit.
func (b *Bus) watchRetention(ctx context.Context) {
	t := time.NewTicker(RetentionCheckInterval)
	defer t.Stop()
	var warned time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
		h, err := b.CheckRetention(cctx)
		cancel()
		switch {
		case err != nil:
			if ctx.Err() == nil {
				b.log.Debug("retention check failed", "err", err)
			}
		case h.Short && time.Since(warned) >= RetentionWarnEvery:
			warned = time.Now()
			b.log.Warn("event store full: the oldest records are evicted by size, so the previously-seen period is shorter than configured; raise the stream's size limit",
				"stream", StreamName, "max_bytes", b.stream.CachedInfo().Config.MaxBytes, "oldest_record", h.Oldest.Round(time.Second),
				"seen_ttl", b.cfg.SeenTTL)
		case !h.Short && !warned.IsZero():
			warned = time.Time{}
			b.log.Info("event store no longer evicting records early", "stream", StreamName,
				"oldest_record", h.Oldest.Round(time.Second))
		}
	}
}

// minServer is the oldest nats-server with per-message TTLs and subject
// delete markers, which the stream's retention needs.
const minServer = "2.11.0"

// checkServerVersion refuses a NATS server too old for the stream.
func checkServerVersion(nc *nats.Conn) error {
	v := nc.ConnectedServerVersion()
	if !versionAtLeast(v, minServer) {
		return fmt.Errorf("bus: nats-server %s is too old: Comet needs %s or later (per-message TTLs and delete markers)", v, minServer)
	}
	return nil
}

// versionAtLeast compares dotted versions ("2.11.3", "2.12.0-beta"),
// numerically and field by field; a suffix after '-' is ignored.
func versionAtLeast(have, want string) bool {
	have, _, _ = strings.Cut(have, "-")
	h, w := strings.Split(have, "."), strings.Split(want, ".")
	for i := range w {
		if i >= len(h) {
			return false
		}
		hv, err1 := strconv.Atoi(h[i])
		wv, err2 := strconv.Atoi(w[i])
		if err1 != nil || err2 != nil {
			return false
		}
		if hv != wv {
			return hv > wv
		}
	}
	return true
}
