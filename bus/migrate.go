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

// Moving a store of the two-write layout to this one. That layout kept
// each previously-seen record in the KV bucket comet_seen (key = sha1, 30
// days) beside the event stream (events for 7 days, no per-message TTLs,
// no delete markers). Open upgrades it in place, once, whichever process
// comes first; every step can be repeated, so a crash half-way or several
// processes at once are harmless. Every ingress process of the old
// layout must be stopped first: the old and the new processes do not see
// each other's records.

// migrateBatch bounds the record copies in flight during a migration.
const migrateBatch = 256

// oldLayout reports whether have is the two-write layout's stream: the
// same as want but for the retention settings this layout added.
func oldLayout(have, want jetstream.StreamConfig) bool {
	if have.SubjectDeleteMarkerTTL != 0 || have.AllowMsgTTL {
		return false
	}
	return !streamDiff(upgraded(have, want), want).any()
}

// upgraded is have with want's retention settings.
func upgraded(have, want jetstream.StreamConfig) jetstream.StreamConfig {
	have.MaxAge = want.MaxAge
	have.MaxMsgsPerSubject = want.MaxMsgsPerSubject
	have.AllowMsgTTL = want.AllowMsgTTL
	have.SubjectDeleteMarkerTTL = want.SubjectDeleteMarkerTTL
	have.AllowRollup = want.AllowRollup
	have.DenyPurge = want.DenyPurge
	return have
}

// upgradeStream gives a stream of the two-write layout this layout's
// retention (to). Its events, stored without a time to live, keep their
// payload until the stream's MaxAge and then leave a marker like any other.
func (b *Bus) upgradeStream(ctx context.Context, to jetstream.StreamConfig) (jetstream.Stream, error) {
	js := b.conns[0].js
	var s jetstream.Stream
	err := b.retryUnanswered(ctx, "stream "+StreamName, func(ctx context.Context) (err error) {
		s, err = js.UpdateStream(ctx, to)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bus: stream %s is of the two-write layout and could not be upgraded: %w", StreamName, err)
	}
	b.log.Info("stream upgraded to the one-write layout", "stream", StreamName,
		"max_age", to.MaxAge, "subject_delete_marker_ttl", to.SubjectDeleteMarkerTTL)
	return s, nil
}

// migrateSeenBucket copies the records of the old bucket that the stream
// does not hold onto the stream, then deletes the bucket. A record whose
// event the stream still holds needs no copy. A copy is a message with no
// data on comet.event._._._.<sha1> (origin, role and authority are not
// known), carrying Comet-Sha1, Comet-Received-At (when it was recorded),
// Nats-Marker-Reason (so that its expiry leaves no marker in turn) and a
// time to live of what was left of its 30 days (kept as it is: the server
// raises short TTLs to the markers' only on streams with more than one
// message per subject). A record younger than DefaultDupWindow whose
// event is not stored was, in the old layout, a claim whose publish may
// have died with its process; it is not copied, so the author's retry is
// accepted.
func (b *Bus) migrateSeenBucket(ctx context.Context, js jetstream.JetStream) error {
	var kv jetstream.KeyValue
	err := b.retryUnanswered(ctx, "bucket "+SeenBucket, func(ctx context.Context) (err error) {
		kv, err = js.KeyValue(ctx, SeenBucket)
		return err
	})
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bus: looking for the old previously-seen bucket %s: %w", SeenBucket, err)
	}
	b.log.Info("migrating the previously-seen bucket onto the event stream", "bucket", SeenBucket, "stream", StreamName)
	start := time.Now()
	copied, kept, err := b.copySeenRecords(ctx, js, kv)
	if err != nil {
		return fmt.Errorf("bus: migrating the previously-seen bucket %s onto stream %s (stop every older Comet first; the migration resumes at the next start): %w",
			SeenBucket, StreamName, err)
	}
	err = b.retryUnanswered(ctx, "bucket "+SeenBucket, func(ctx context.Context) error {
		return js.DeleteKeyValue(ctx, SeenBucket)
	})
	if err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("bus: deleting the migrated bucket %s: %w", SeenBucket, err)
	}
	b.log.Info("previously-seen bucket migrated and deleted", "bucket", SeenBucket, "records_copied", copied,
		"records_with_their_event", kept, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (b *Bus) copySeenRecords(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) (copied, kept int, err error) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, 0, nil // migrated by another process meanwhile
		}
		return 0, 0, err
	}
	defer w.Stop()
	var pending []jetstream.PubAckFuture
	wait := func() error {
		for _, f := range pending {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				if !hasCode(err, jetstream.JSErrCodeStreamWrongLastSequence) {
					return err // 10071: a record exists already
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		pending = pending[:0]
		return nil
	}
	idle := time.NewTimer(b.cfg.RequestTimeout)
	defer idle.Stop()
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case e, ok = <-w.Updates():
		case <-idle.C:
			return copied, kept, errors.New("the bucket stopped answering")
		case <-ctx.Done():
			return copied, kept, ctx.Err()
		}
		if !ok || e == nil {
			break // every current record has been seen
		}
		idle.Reset(b.cfg.RequestTimeout)
		key := e.Key()
		recorded := recordTime(e)
		age := time.Since(recorded)
		if !validSHA1(key) || age >= b.cfg.SeenTTL {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
		_, err := b.stream.GetLastMsgForSubject(rctx, seenSubject(key))
		cancel()
		switch {
		case err == nil:
			kept++
			continue
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return copied, kept, fmt.Errorf("looking for %s on the stream: %w", key, err)
		case age < DefaultDupWindow:
			continue // a claim whose publish may have died with its process
		}
		f, err := js.PublishMsgAsync(seenRecordMsg(key, recorded, b.cfg.SeenTTL-age, b.payloadTTL != ""))
		if err != nil {
			return copied, kept, err
		}
		pending = append(pending, f)
		copied++
		if len(pending) == migrateBatch {
			if err := wait(); err != nil {
				return copied, kept, err
			}
		}
	}
	return copied, kept, wait()
}

// recordTime is when a record of the old bucket was made: its value,
// Comet's seconds since the epoch ("1714566896.123456"), or else the
// time the server stored it.
func recordTime(e jetstream.KeyValueEntry) time.Time {
	secs, frac, _ := strings.Cut(string(e.Value()), ".")
	s, err := strconv.ParseInt(secs, 10, 64)
	if err != nil || s <= 0 || len(frac) > 9 {
		return e.Created()
	}
	var ns int64
	if frac != "" {
		if ns, err = strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64); err != nil {
			return e.Created()
		}
	}
	return time.Unix(s, ns)
}

// seenRecordMsg is a migrated record (see migrateSeenBucket).
// Without per-message TTLs on the stream (payloads kept as long as
// records), it lives the stream's MaxAge.
func seenRecordMsg(sha1 string, recorded time.Time, left time.Duration, ttl bool) *nats.Msg {
	m := nats.NewMsg(SubjectPrefix + "_._._." + sha1)
	m.Header.Set(HeaderSHA1, sha1)
	m.Header.Set(HeaderReceivedAt, recorded.UTC().Format(ReceivedAtLayout))
	m.Header.Set("Nats-Marker-Reason", "MaxAge")
	if ttl {
		m.Header.Set(jetstream.MsgTTLHeader, strconv.FormatInt(int64(max(left, time.Second)/time.Second), 10))
	}
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, seenSubject(sha1))
	return m
}
