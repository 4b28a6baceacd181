package ingress

import (
	"strconv"

	"github.com/comet-go/comet/accept"
	"github.com/comet-go/comet/tally"
)

// Rejection is why an event, or the connection that brought it, was
// turned away. The receiver counts them (Receiver.Rejections), and so do
// subscriptions for the upstream events they ack but do not relay
// (Subscription.Rejections), and the events they could not store.
// Refusals at accept have accept's values.
type Rejection uint8

const (
	RejectWhitelist       = Rejection(accept.RefusedWhitelist)       // closed at accept
	RejectMaxConns        = Rejection(accept.RefusedMaxConns)        // closed at accept
	RejectMaxConnsPerPeer = Rejection(accept.RefusedMaxConnsPerPeer) // closed at accept
	RejectTLS             = Rejection(accept.RefusedTLS)             // TLS handshake failed (Receiver.TLSFailures says why)
)

const (
	// RejectTooLarge: a frame above MaxFrame; closed, no reply.
	RejectTooLarge Rejection = Rejection(accept.MaxRefusal) + 1 + iota
	// RejectTimeout: no complete event within Timeout; closed, no reply.
	RejectTimeout
	// RejectReadError: the connection failed while the event was read.
	RejectReadError
	// RejectUnparsable: not a well-formed document with a VOEvent root
	// role; closed, no reply (Comet).
	RejectUnparsable
	// RejectTransport: a Transport message on the receive port; no reply.
	RejectTransport
	// RejectNoIVORN: a VOEvent without an ivorn, which a receipt needs;
	// no reply.
	RejectNoIVORN
	// RejectInvalid: an invalid IVORN, or not VOEvent 2.0; nak (upstream:
	// acked, not relayed).
	RejectInvalid
	// RejectSignature: the OpenPGP signature was missing or not
	// acceptable (--sender-auth); nak.
	RejectSignature
	// RejectBusy: no signature-check slot within Timeout; nak.
	RejectBusy
	// RejectPreviouslySeen: stored before; nak (upstream: acked).
	RejectPreviouslySeen
	// RejectStoreFailed: the bus did not store the event; no reply, so
	// the author retries (upstream: not acked, the connection closed, so
	// that the upstream keeps it).
	RejectStoreFailed
)

// maxRejection is the last Rejection.
const maxRejection = RejectStoreFailed

// AllRejections lists every Rejection, in order.
func AllRejections() []Rejection { return tally.Values(maxRejection) }

// UpstreamRejections are the reasons a Subscription counts.
var UpstreamRejections = []Rejection{RejectNoIVORN, RejectInvalid, RejectPreviouslySeen, RejectStoreFailed}

// String is the rejection's label in logs and metrics.
func (r Rejection) String() string {
	switch r {
	case RejectWhitelist, RejectMaxConns, RejectMaxConnsPerPeer, RejectTLS:
		return accept.Refusal(r).String()
	case RejectTooLarge:
		return "too_large"
	case RejectTimeout:
		return "timeout"
	case RejectReadError:
		return "read_error"
	case RejectUnparsable:
		return "unparsable"
	case RejectTransport:
		return "transport"
	case RejectNoIVORN:
		return "no_ivorn"
	case RejectInvalid:
		return "invalid"
	case RejectSignature:
		return "signature"
	case RejectBusy:
		return "busy"
	case RejectPreviouslySeen:
		return "previously_seen"
	case RejectStoreFailed:
		return "store_failed"
	}
	return "Rejection(" + strconv.Itoa(int(r)) + ")"
}
