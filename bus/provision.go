package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// provision makes sure the stream and the bucket exist with our settings.
// Existing ones are used as they are if they match, and never updated:
// silently changing a shared system's retention is not ours to do.
func (b *Bus) provision(ctx context.Context) error {
	js := b.conns[0].js
	s, err := b.ensureStream(ctx, b.streamConfig())
	if err != nil {
		return err
	}
	b.stream = s

	kvWant := jetstream.KeyValueConfig{
		Bucket:      SeenBucket,
		Description: "Comet previously-seen events: key = SHA-1 of the payload, value = time recorded",
		History:     1,
		TTL:         b.cfg.SeenTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    b.cfg.Replicas,
	}
	var kv jetstream.KeyValue
	err = b.retryUnanswered(ctx, "bucket "+SeenBucket, func(ctx context.Context) (err error) {
		kv, err = findOrCreate(ctx,
			func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, SeenBucket) },
			func(ctx context.Context) (jetstream.KeyValue, error) { return js.CreateKeyValue(ctx, kvWant) },
			jetstream.ErrBucketNotFound, jetstream.ErrBucketExists)
		return err
	})
	if err != nil {
		return fmt.Errorf("bus: provisioning bucket %s: %w", SeenBucket, err)
	}
	var st jetstream.KeyValueStatus
	err = b.retryUnanswered(ctx, "bucket "+SeenBucket, func(ctx context.Context) (err error) {
		st, err = kv.Status(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("bus: bucket %s: %w", SeenBucket, err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return fmt.Errorf("bus: bucket %s: unexpected status type %T", SeenBucket, st)
	}
	have := bs.StreamInfo().Config
	var d differences
	d.add("history", have.MaxMsgsPerSubject, int64(kvWant.History))
	d.add("ttl", have.MaxAge, kvWant.TTL)
	d.add("storage", have.Storage, kvWant.Storage)
	d.add("replicas", have.Replicas, kvWant.Replicas)
	if d.any() {
		return fmt.Errorf("bus: bucket %s exists with different settings (%s); change them or delete the bucket",
			SeenBucket, d)
	}
	return nil
}

// findOrCreate looks something up (a stream, a bucket, a consumer),
// creates it when find fails with notFound, and looks again when create
// fails with exists: another process created it meanwhile.
func findOrCreate[T any](ctx context.Context, find, create func(context.Context) (T, error), notFound, exists error) (T, error) {
	v, err := find(ctx)
	if errors.Is(err, notFound) {
		v, err = create(ctx)
		if errors.Is(err, exists) {
			v, err = find(ctx)
		}
	}
	return v, err
}

// ensureStream finds or creates the stream want describes, repeating while
// the cluster does not answer, and checks the settings that matter. An
// existing stream is used as it is if they match and never updated:
// silently changing a shared system's retention is not ours to do.
func (b *Bus) ensureStream(ctx context.Context, want jetstream.StreamConfig) (jetstream.Stream, error) {
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
		if len(d) == 1 && have.MaxMsgSize != want.MaxMsgSize {
			// Made by a process with another MaxPayload: say so in its terms.
			return nil, &SizeMismatchError{Stream: want.Name, MaxPayload: b.cfg.MaxPayload, Limit: int64(have.MaxMsgSize)}
		}
		return nil, fmt.Errorf("bus: stream %s exists with different settings (%s); change them or delete the stream", want.Name, d)
	}
	return s, nil
}

func (b *Bus) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              StreamName,
		Description:       "Comet VOEvents, payload = bytes as received",
		Subjects:          []string{SubjectPrefix + ">"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld, // never refuse a new event
		Storage:           jetstream.FileStorage,
		MaxAge:            b.cfg.StreamMaxAge,
		MaxBytes:          b.cfg.StreamMaxBytes,
		MaxMsgs:           -1,
		MaxMsgsPerSubject: -1,
		MaxMsgSize:        int32(b.cfg.msgLimit()),
		Duplicates:        b.cfg.DupWindow,
		Replicas:          b.cfg.Replicas,
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
	d.add("allow_direct", have.AllowDirect, want.AllowDirect) // stored() needs the wildcard get
	return d
}
