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
	want := b.streamConfig()
	var s jetstream.Stream
	err := b.retryUnanswered(ctx, "stream "+StreamName, func(ctx context.Context) (err error) {
		s, err = js.Stream(ctx, StreamName)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s, err = js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				// Lost a race with another process, or it differs: look.
				s, err = js.Stream(ctx, StreamName)
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("bus: provisioning stream %s: %w", StreamName, err)
	}
	if d := streamDiff(s.CachedInfo().Config, want); d != "" {
		return fmt.Errorf("bus: stream %s exists with different settings (%s); change them or delete the stream", StreamName, d)
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
		kv, err = js.KeyValue(ctx, SeenBucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, kvWant)
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = js.KeyValue(ctx, SeenBucket)
			}
		}
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
	var diffs []string
	diff := func(name string, have, want any) {
		if have != want {
			diffs = append(diffs, fmt.Sprintf("%s is %v, want %v", name, have, want))
		}
	}
	diff("history", have.MaxMsgsPerSubject, int64(kvWant.History))
	diff("ttl", have.MaxAge, kvWant.TTL)
	diff("storage", have.Storage, kvWant.Storage)
	diff("replicas", have.Replicas, kvWant.Replicas)
	if len(diffs) > 0 {
		return fmt.Errorf("bus: bucket %s exists with different settings (%s); change them or delete the bucket",
			SeenBucket, strings.Join(diffs, ", "))
	}
	return nil
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

// streamDiff lists the settings that matter to Comet and differ.
func streamDiff(have, want jetstream.StreamConfig) string {
	var d []string
	add := func(name string, h, w any) {
		if h != w {
			d = append(d, fmt.Sprintf("%s is %v, want %v", name, h, w))
		}
	}
	if !slices.Equal(have.Subjects, want.Subjects) {
		d = append(d, fmt.Sprintf("subjects are %q, want %q", have.Subjects, want.Subjects))
	}
	add("retention", have.Retention, want.Retention)
	add("discard", have.Discard, want.Discard)
	add("storage", have.Storage, want.Storage)
	add("max_age", have.MaxAge, want.MaxAge)
	add("max_bytes", have.MaxBytes, want.MaxBytes)
	add("max_msgs", have.MaxMsgs, want.MaxMsgs)
	add("max_msgs_per_subject", have.MaxMsgsPerSubject, want.MaxMsgsPerSubject)
	add("max_msg_size", have.MaxMsgSize, want.MaxMsgSize)
	add("duplicate_window", have.Duplicates, want.Duplicates)
	add("replicas", have.Replicas, want.Replicas)
	add("allow_direct", have.AllowDirect, want.AllowDirect) // stored() needs the wildcard get
	return strings.Join(d, ", ")
}
