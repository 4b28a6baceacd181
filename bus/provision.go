package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// provision makes sure the event stream exists with our settings (see
// ensureStream), moves a stream of the two-write layout (events beside a
// previously-seen bucket) to this one (see upgradeStream), and migrates
// that layout's bucket.
func (b *Bus) provision(ctx context.Context) error {
	js := b.conns[0].js
	want := b.streamConfig()
	s, err := b.ensureStream(ctx, want, func(have jetstream.StreamConfig) (jetstream.StreamConfig, bool) {
		return upgraded(have, want), oldLayout(have, want)
	})
	if err != nil {
		return err
	}
	b.stream = s
	return b.migrateSeenBucket(ctx, js)
}

// findOrCreate looks something up (a stream, a bucket, a consumer),
// creates it when find fails with notFound, and looks again when create
// fails with exists: another process created it meanwhile. On a cluster
// that second look may still find nothing (the new stream or consumer has
// no leader yet); the error then wraps errNotSettled, which
// retryUnanswered repeats.
func findOrCreate[T any](ctx context.Context, find, create func(context.Context) (T, error), notFound, exists error) (T, error) {
	v, err := find(ctx)
	if errors.Is(err, notFound) {
		v, err = create(ctx)
		if errors.Is(err, exists) {
			v, err = find(ctx)
			if errors.Is(err, notFound) {
				err = fmt.Errorf("%w: %w", errNotSettled, err)
			}
		}
	}
	return v, err
}

// errNotSettled is something another process has just created that the
// cluster cannot show yet.
var errNotSettled = errors.New("created by another process but not found yet")

// ensureStream finds or creates the stream want describes, repeating while
// the cluster does not answer, and checks the settings that matter. An
// existing stream is used as it is if they match and never updated:
// silently changing a shared system's retention is not ours to do. The
// one exception is an earlier layout of the stream, which upgrade (if not
// nil) recognises and gives the settings to move it to.
func (b *Bus) ensureStream(ctx context.Context, want jetstream.StreamConfig,
	upgrade func(have jetstream.StreamConfig) (jetstream.StreamConfig, bool)) (jetstream.Stream, error) {
	js := b.conns[0].js
	var s jetstream.Stream
	err := b.retryUnanswered(ctx, "stream "+want.Name, func(ctx context.Context) (err error) {
		s, err = findOrCreate(ctx,
			func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, want.Name) },
			func(ctx context.Context) (jetstream.Stream, error) { return js.CreateStream(ctx, want) },
			jetstream.ErrStreamNotFound, jetstream.ErrStreamNameAlreadyInUse)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bus: provisioning stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	if d := streamDiff(have, want); d.any() {
		if upgrade != nil {
			if to, ok := upgrade(have); ok {
				return b.upgradeStream(ctx, to)
			}
		}
		if resized := have; b.srv != nil {
			// The embedded store is this process's own: its size follows
			// MaxStore.
			resized.MaxBytes = want.MaxBytes
			if !streamDiff(resized, want).any() {
				return b.resizeStream(ctx, resized, have.MaxBytes)
			}
		}
		if len(d) == 1 && have.MaxMsgSize != want.MaxMsgSize {
			// Made by a process with another MaxPayload: say so in its terms.
			return nil, &SizeMismatchError{Stream: want.Name, MaxPayload: b.cfg.MaxPayload, Limit: int64(have.MaxMsgSize)}
		}
		return nil, fmt.Errorf("bus: stream %s exists with different settings (%s); change them or delete the stream", want.Name, d)
	}
	return s, nil
}

func (b *Bus) streamConfig() jetstream.StreamConfig {
	r := b.cfg.retention()
	events, _, _ := b.cfg.streamLimits()
	return jetstream.StreamConfig{
		Name:              StreamName,
		Description:       "Comet VOEvents, payload = bytes as received",
		Subjects:          []string{SubjectPrefix + ">"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld, // never refuse a new event
		Storage:           jetstream.FileStorage,
		MaxAge:            r.maxAge,
		MaxBytes:          events,
		MaxMsgs:           -1,
		MaxMsgsPerSubject: 1, // one record per payload; and no TTL below the markers' (see retention)
		MaxMsgSize:        int32(b.cfg.msgLimit()),
		Duplicates:        min(DefaultDupWindow, r.maxAge),
		Replicas:          b.cfg.Replicas,
		// Delete markers need TTLs and roll-ups (the marker replaces
		// the expired event on its subject).
		AllowMsgTTL:            r.payloadTTL > 0,
		SubjectDeleteMarkerTTL: r.markerTTL,
		AllowRollup:            r.markerTTL > 0,
	}
}

// differences lists settings that differ from what Comet wants.
type differences []string

func (d *differences) add(name string, have, want any) {
	if have != want {
		*d = append(*d, fmt.Sprintf("%s is %v, want %v", name, have, want))
	}
}

func (d differences) any() bool      { return len(d) > 0 }
func (d differences) String() string { return strings.Join(d, ", ") }

// streamDiff lists the settings that matter to Comet and differ.
func streamDiff(have, want jetstream.StreamConfig) differences {
	var d differences
	if !slices.Equal(have.Subjects, want.Subjects) {
		d = append(d, fmt.Sprintf("subjects are %q, want %q", have.Subjects, want.Subjects))
	}
	d.add("retention", have.Retention, want.Retention)
	d.add("discard", have.Discard, want.Discard)
	d.add("storage", have.Storage, want.Storage)
	d.add("max_age", have.MaxAge, want.MaxAge)
	d.add("max_bytes", have.MaxBytes, want.MaxBytes)
	d.add("max_msgs", have.MaxMsgs, want.MaxMsgs)
	d.add("max_msgs_per_subject", have.MaxMsgsPerSubject, want.MaxMsgsPerSubject)
	d.add("max_msg_size", have.MaxMsgSize, want.MaxMsgSize)
	d.add("duplicate_window", have.Duplicates, want.Duplicates)
	d.add("replicas", have.Replicas, want.Replicas)
	d.add("allow_direct", have.AllowDirect, want.AllowDirect) // whoseStore needs the leader's answer
	d.add("allow_msg_ttl", have.AllowMsgTTL, want.AllowMsgTTL)
	d.add("subject_delete_marker_ttl", have.SubjectDeleteMarkerTTL, want.SubjectDeleteMarkerTTL)
	d.add("allow_rollup_hdrs", have.AllowRollup, want.AllowRollup)
	d.add("deny_purge", have.DenyPurge, want.DenyPurge)
	return d
}

// resizeStream gives the embedded store's stream to.MaxBytes (was).
// Lowering it below what the stream holds drops its oldest messages.
func (b *Bus) resizeStream(ctx context.Context, to jetstream.StreamConfig, was int64) (jetstream.Stream, error) {
	s, err := b.conns[0].js.UpdateStream(ctx, to)
	if err != nil {
		return nil, fmt.Errorf("bus: stream %s: changing its size limit from %s to %s: %w", to.Name,
			FormatSize(was), FormatSize(to.MaxBytes), err)
	}
	b.log.Info("stream size limit changed to follow the store's", "stream", to.Name,
		"from", FormatSize(was), "to", FormatSize(to.MaxBytes))
	return s, nil
}
