package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// What an operator sees of the bus: whether it answers, how full its
// streams are, the lag of a consumer and the last events stored. These are
// read when asked (a scrape, the status page), never on the event path.

// MaxRecent caps what one Recent call returns.
const MaxRecent = 1000

// Ping reports whether the bus can serve: every connection is up and
// JetStream answers a request within ctx. The error says which failed.
func (b *Bus) Ping(ctx context.Context) error {
	for _, c := range b.conns {
		if st := c.nc.Status(); st != nats.CONNECTED {
			return fmt.Errorf("bus: the connection to %s is %s", b.where(), strings.ToLower(st.String()))
		}
	}
	if _, err := b.conns[0].js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("bus: JetStream of %s does not answer: %w", b.where(), err)
	}
	return nil
}

// StreamStats is the state of one of the bus's streams.
type StreamStats struct {
	Name      string
	Messages  uint64
	Bytes     uint64
	Consumers int
	// MaxBytes is the stream's limit (-1: none).
	MaxBytes int64
}

// Streams returns the state of the streams the bus uses that exist: the
// event stream (which holds the previously-seen records too), the
// dead-letter and replay streams.
func (b *Bus) Streams(ctx context.Context) ([]StreamStats, error) {
	js := b.conns[0].js
	var out []StreamStats
	for _, name := range []string{StreamName, DeadLetterStream, ReplayStream} {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("bus: stream %s: %w", name, err)
		}
		info := s.CachedInfo()
		out = append(out, StreamStats{Name: name, Messages: info.State.Msgs, Bytes: info.State.Bytes,
			Consumers: info.State.Consumers, MaxBytes: info.Config.MaxBytes})
	}
	return out, nil
}

// ServerStats is what the embedded server tells of itself.
type ServerStats struct {
	Connections int
	// StoreBytes is the JetStream file store in use; StoreMaxBytes what
	// the server may use.
	StoreBytes    uint64
	StoreMaxBytes int64
	SlowConsumers int64
}

// Server returns the embedded server's statistics; false with an external
// system, whose servers export their own.
func (b *Bus) Server() (ServerStats, bool) {
	if b.srv == nil {
		return ServerStats{}, false
	}
	st := ServerStats{Connections: b.srv.NumClients(), SlowConsumers: b.srv.NumSlowConsumers()}
	if js := b.srv.JetStreamConfig(); js != nil {
		st.StoreMaxBytes = js.MaxStore
	}
	if v, err := b.srv.Varz(&server.VarzOptions{}); err == nil && v.JetStream.Stats != nil {
		st.StoreBytes = v.JetStream.Stats.Store
	}
	return st, true
}

// StagePending is the lag of a stage: events stored and not yet handled
// by it (see Pending).
func (b *Bus) StagePending(ctx context.Context, stage string) (uint64, error) {
	return b.Pending(ctx, StageDurablePrefix+stage)
}

// DeadLetterCounts returns the dead letters stored now, by stage.
func (b *Bus) DeadLetterCounts(ctx context.Context) (map[string]uint64, error) {
	s, err := b.conns[0].js.Stream(ctx, DeadLetterStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return map[string]uint64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", DeadLetterStream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(DeadLetterPrefix+">"))
	if err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", DeadLetterStream, err)
	}
	out := make(map[string]uint64, len(info.State.Subjects))
	for subj, n := range info.State.Subjects {
		out[strings.TrimPrefix(subj, DeadLetterPrefix)] = n
	}
	return out, nil
}

// StoredEvent is an event as the stream holds it, without its payload.
type StoredEvent struct {
	Event            // from the headers; Payload is nil
	Seq    uint64    // stream sequence
	Stored time.Time // when the stream stored it
	Size   int       // payload bytes
}

// Recent returns the last n events stored on the event stream (at most
// MaxRecent), newest first, reading their headers only.
func (b *Bus) Recent(ctx context.Context, n int) ([]StoredEvent, error) {
	n = min(n, MaxRecent)
	if n <= 0 {
		return nil, nil
	}
	s, err := b.conns[0].js.Stream(ctx, StreamName)
	if err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", StreamName, err)
	}
	// Direct reads by sequence, newest first: no consumer is made. Gaps
	// (events removed by age or size) are skipped, a bounded number.
	st := s.CachedInfo().State
	var out []StoredEvent
	for seq, tries := st.LastSeq, 0; seq >= st.FirstSeq && seq > 0 && len(out) < n && tries < 2*n; seq, tries = seq-1, tries+1 {
		msg, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("bus: reading %s: %w", StreamName, err)
		}
		out = append(out, StoredEvent{Event: decodeEvent(msg.Header, nil), Seq: msg.Sequence, Stored: msg.Time, Size: len(msg.Data)})
	}
	return out, nil
}
