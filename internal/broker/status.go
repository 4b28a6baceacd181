package broker

import (
	"context"
	"runtime"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/egress"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/observe"
)

// Status describes the broker for its HTTP endpoint (observe.Source):
// the counts of its roles, its listeners, subscribers, upstreams and
// stages, the readiness checks, and with want.Bus what the bus says.
// Sources of events other than VTP upstreams (a Kafka source) add their
// rows to Upstreams with their own Kind and their counts to Accepted and
// Rejected under their origin.
func (b *Broker) Status(ctx context.Context, want observe.Want) *observe.Status {
	stats := b.Stats()
	st := &observe.Status{
		Identity: observe.Identity{LocalIVO: b.cfg.LocalIVO, Node: b.cfg.Node, Version: b.cfg.Version,
			Go: runtime.Version(), Started: b.started, Bus: b.bus.Describe()},
		Accepted: map[string]uint64{},
	}
	st.Checks = b.ready.Run(ctx)
	if b.hasTLS() {
		// Every kind, zero included, so that a rate exists from the start.
		st.TLSFailures = map[string]uint64{}
		for _, f := range endpoint.AllFailures() {
			st.TLSFailures[f.String()] = 0
		}
	}
	for f, n := range stats.TLSFailures {
		if st.TLSFailures == nil {
			st.TLSFailures = map[string]uint64{}
		}
		st.TLSFailures[f.String()] += n
	}
	st.Ready, _ = observe.Ready(st.Checks)
	for _, sv := range b.served {
		st.Listeners = append(st.Listeners, observe.Listener{Role: sv.role, Address: sv.addr, Open: sv.open.Load()})
	}
	if b.http != nil {
		st.Listeners = append(st.Listeners, observe.Listener{Role: "http", Address: b.http.Addr().String(), Open: b.http.Open()})
	}
	if b.cfg.Bus.Listen != "" {
		st.Listeners = append(st.Listeners, observe.Listener{Role: "nats", Address: b.bus.ClientURL(), Open: b.bus.ClientURL() != ""})
	}

	if b.receiver != nil {
		st.Identity.Roles = append(st.Identity.Roles, "receiver")
		st.Accepted[bus.OriginAuthor] = b.receiver.Accepted()
		for _, r := range ingress.AllRejections() {
			st.Rejected = append(st.Rejected, observe.Rejected{Origin: bus.OriginAuthor, Reason: r.String(), Count: stats.Rejections[r]})
		}
	}
	if b.broadcaster != nil {
		st.Identity.Roles = append(st.Identity.Roles, "broadcaster")
		st.Broadcasting = true
		st.Delivered = b.broadcaster.Delivered()
		st.Drops = map[string]uint64{}
		for _, c := range egress.AllDropCauses() {
			st.Drops[c.String()] = stats.Drops[c]
		}
		for _, s := range stats.Subscribers {
			st.Subscribers = append(st.Subscribers, observe.Subscriber{Address: s.Peer, Since: s.Since,
				Authenticated: s.Authenticated, Key: s.Signer, CertSubject: s.CertSubject, CertSHA256: s.CertSHA256,
				Filters: s.Filters, Refused: s.Refused,
				Queued: s.Queued, InFlight: s.InFlight, Delivered: s.Delivered, Withheld: s.Withheld, LastAck: s.LastAck})
		}
	}
	if len(b.upstreams) > 0 {
		st.Identity.Roles = append(st.Identity.Roles, "subscriber")
		var accepted uint64
		for _, u := range b.upstreams {
			us := u.Status()
			accepted += us.Accepted
			st.Upstreams = append(st.Upstreams, observe.Upstream{Kind: "vtp", Address: us.Target, State: us.State.String(),
				Since: us.Since, LastEvent: us.LastEvent, NextRetry: us.NextRetry, LastError: us.LastError, Accepted: us.Accepted})
		}
		st.Accepted[bus.OriginUpstream] = accepted
		for _, r := range ingress.UpstreamRejections {
			st.Rejected = append(st.Rejected, observe.Rejected{Origin: bus.OriginUpstream, Reason: r.String(),
				Count: stats.UpstreamRejections[r]})
		}
	}
	if b.kafkaSource != nil {
		st.Identity.Roles = append(st.Identity.Roles, "kafka")
		b.kafkaStatus(st, stats)
	}
	if b.stages != nil {
		st.Identity.Roles = append(st.Identity.Roles, "stages")
		for _, name := range b.stages.Names() {
			s := stats.Stages[name]
			st.Stages = append(st.Stages, observe.Stage{Name: name, Handled: s.Handled, Failures: s.Failures,
				DeadLettered: s.DeadLettered})
		}
	}
	if want.Bus {
		b.busStatus(ctx, st)
	}
	if want.Events > 0 && st.Bus.Error == "" {
		evs, err := b.bus.Recent(ctx, want.Events)
		if err != nil {
			st.EventsError = err.Error()
		}
		for _, e := range evs {
			st.Events = append(st.Events, observe.Event{Time: e.ReceivedAt, IVORN: e.IVORN, Role: e.Role,
				Origin: e.Origin, Author: e.Author, Node: e.Node, Seq: e.Seq})
		}
	}
	return st
}

// kafkaStatus adds the Kafka source: its row among the upstreams (State
// is its heartbeat's: live, stale, waiting or unmonitored) and its counts
// under origin "kafka": the records it skipped by reason, the events
// previously seen and the failed attempts to store (each retried).
func (b *Broker) kafkaStatus(st *observe.Status, stats Stats) {
	ks, ka := stats.Kafka, stats.KafkaStatus
	st.Upstreams = append(st.Upstreams, observe.Upstream{Kind: bus.OriginKafka, Address: b.kafkaIn.Describe(),
		State: ka.State.String(), Since: ka.Since, LastHeartbeat: ka.LastHeartbeat, Accepted: ks.Accepted})
	st.Accepted[bus.OriginKafka] = ks.Accepted
	add := func(reason string, n uint64) {
		st.Rejected = append(st.Rejected, observe.Rejected{Origin: bus.OriginKafka, Reason: reason, Count: n})
	}
	for _, k := range ingress.AllKafkaSkips() {
		add(k.String(), ks.Skipped[k])
	}
	add(ingress.RejectPreviouslySeen.String(), ks.Duplicates)
	add(ingress.RejectStoreFailed.String(), ks.StoreFails)
}

// busStatus asks the bus what the status shows of it; once a request
// fails, the rest are not made (they would wait for the same deadline).
func (b *Broker) busStatus(ctx context.Context, st *observe.Status) {
	fail := func(err error) { st.Bus.Up, st.Bus.Error = false, err.Error() }
	if err := b.bus.Ping(ctx); err != nil {
		fail(err)
		return
	}
	st.Bus.Up = true
	if srv, ok := b.bus.Server(); ok {
		st.Bus.Server = &observe.NATSServer{Connections: srv.Connections, StoreBytes: srv.StoreBytes,
			StoreMaxBytes: srv.StoreMaxBytes, SlowConsumers: srv.SlowConsumers}
	}
	streams, err := b.bus.Streams(ctx)
	if err != nil {
		fail(err)
		return
	}
	for _, s := range streams {
		st.Bus.Streams = append(st.Bus.Streams, observe.Stream{Name: s.Name, Messages: s.Messages, Bytes: s.Bytes,
			Consumers: s.Consumers, MaxBytes: s.MaxBytes})
	}
	if b.broadcaster != nil {
		n, err := b.bus.Pending(ctx, ConsumerName(b.cfg.Node))
		if err != nil {
			fail(err)
			return
		}
		st.BroadcastPending = &n
	}
	if len(st.Stages) == 0 {
		return
	}
	dead, err := b.bus.DeadLetterCounts(ctx)
	if err != nil {
		fail(err)
		return
	}
	for i := range st.Stages {
		s := &st.Stages[i]
		n, err := b.bus.StagePending(ctx, s.Name)
		if err != nil {
			fail(err)
			return
		}
		d := dead[s.Name]
		s.Pending, s.DeadLetters = &n, &d
	}
}
