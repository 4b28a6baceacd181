package bus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// retryUnanswered runs a JetStream management step again while the
// cluster does not answer it, for at most DefaultStartTimeout, each
// attempt bounded by RequestTimeout. A clustered server stays silent (the
// request times out) when the stream or consumer asked about has no Raft
// leader: just created by another process (several processes starting at
// once on a fresh cluster), or its leader's node just died.
func (b *Bus) retryUnanswered(ctx context.Context, what string, step func(context.Context) error) error {
	deadline := time.Now().Add(DefaultStartTimeout)
	for {
		actx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
		err := step(actx)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) || !unanswered(err) {
			return err
		}
		b.log.Info("bus: no answer from the cluster; retrying", "what", what, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(UnansweredRetryPause):
		}
	}
}

func unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, errNotSettled)
}
