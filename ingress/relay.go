package ingress

import (
	"context"
	"time"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/voevent"
)

// relayOutcome is what became of an event an upstream relayed.
type relayOutcome uint8

const (
	relayAccepted     relayOutcome = iota + 1 // new: stored on the bus
	relayDuplicate                            // previously seen: not stored again
	relayNoIVORN                              // no ivorn: not relayed
	relayInvalidIVORN                         // the ivorn fails the IVOID grammar: not relayed
	relayNotSelected                          // refused by the source's own filters: not relayed
)

// relay is the path of every event an upstream relays to this broker,
// whether a VTP broker we subscribe to or a Kafka topic: Comet's checks
// for relayed events (an ivorn that passes the IVOID grammar; no schema
// check), the source's own filters (selected; nil selects everything),
// then the previously-seen check and the store on the bus. The caller has
// parsed payload safely into info and checked that its role is a VOEvent
// role. An error means the event is not known to be stored.
func relay(ctx context.Context, store Store, payload []byte, info *voevent.Info, selected func([]byte) bool,
	origin, peer, node string) (*bus.Event, relayOutcome, error) {
	if !info.HasIVORN {
		return nil, relayNoIVORN, nil
	}
	if !voevent.ValidIVOID(info.IVORN) {
		return nil, relayInvalidIVORN, nil
	}
	if selected != nil && !selected(payload) {
		return nil, relayNotSelected, nil
	}
	ev := newEvent(payload, info, origin, peer, node, time.Now())
	outcome, err := store.Ingest(ctx, ev)
	switch {
	case err != nil:
		return ev, 0, err
	case outcome == bus.Duplicate:
		return ev, relayDuplicate, nil
	}
	return ev, relayAccepted, nil
}
