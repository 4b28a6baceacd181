package egress

import (
	"strconv"

	"github.com/comet-go/comet/accept"
	"github.com/comet-go/comet/tally"
)

// DropCause is why a subscriber was disconnected, or refused at connect
// (accept's values), as nats-server's ClosedState. The broadcaster counts
// them (Broadcaster.Drops).
type DropCause uint8

const (
	DropWhitelist       = DropCause(accept.RefusedWhitelist)       // refused at accept
	DropMaxConns        = DropCause(accept.RefusedMaxConns)        // refused at accept
	DropMaxConnsPerPeer = DropCause(accept.RefusedMaxConnsPerPeer) // refused at accept
	DropTLS             = DropCause(accept.RefusedTLS)             // TLS handshake failed (Broadcaster.TLSFailures says why)
)

const (
	// DropShutdown: the broker is shutting down.
	DropShutdown DropCause = DropCause(accept.MaxRefusal) + 1 + iota
	// DropAuthTimeout: no correctly signed authenticate reply within
	// AuthTimeout (VerifySubscriber).
	DropAuthTimeout
	// DropAuthFailed: the signed authenticate reply was refused.
	DropAuthFailed
	// DropIAmAliveUnanswered: a keep-alive probe went unanswered for a
	// whole IAmAliveInterval.
	DropIAmAliveUnanswered
	// DropUnacked: MaxUnacked events unacknowledged at a keep-alive tick.
	DropUnacked
	// DropAckStall: MaxInFlight events unacknowledged, and no ack for
	// AckStallTimeout.
	DropAckStall
	// DropQueueFull: its queue stayed full for QueueWait.
	DropQueueFull
	// DropWriteTimeout: one write blocked for WriteTimeout.
	DropWriteTimeout
	// DropWriteError: a write failed.
	DropWriteError
	// DropClosed: the subscriber closed the connection.
	DropClosed
	// DropReadError: reading failed (a reset, say).
	DropReadError
	// DropTooLarge: it sent a frame above MaxFrame.
	DropTooLarge
	// DropBadMessages: MaxBadMessages unparsable or non-Transport
	// messages in a row.
	DropBadMessages
	// DropNak: it naked an event.
	DropNak
)

// maxDropCause is the last DropCause.
const maxDropCause = DropNak

// AllDropCauses lists every DropCause, in order.
func AllDropCauses() []DropCause { return tally.Values(maxDropCause) }

// String is the cause's label in logs and metrics.
func (c DropCause) String() string {
	switch c {
	case DropWhitelist, DropMaxConns, DropMaxConnsPerPeer, DropTLS:
		return accept.Refusal(c).String()
	case DropShutdown:
		return "shutdown"
	case DropAuthTimeout:
		return "auth_timeout"
	case DropAuthFailed:
		return "auth_failed"
	case DropIAmAliveUnanswered:
		return "iamalive_unanswered"
	case DropUnacked:
		return "unacked"
	case DropAckStall:
		return "ack_stall"
	case DropQueueFull:
		return "queue_full"
	case DropWriteTimeout:
		return "write_timeout"
	case DropWriteError:
		return "write_error"
	case DropClosed:
		return "closed"
	case DropReadError:
		return "read_error"
	case DropTooLarge:
		return "too_large"
	case DropBadMessages:
		return "bad_messages"
	case DropNak:
		return "nak"
	}
	return "DropCause(" + strconv.Itoa(int(c)) + ")"
}
