package observe

import (
	"context"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/comet-go/comet/ingress"
)

// ScrapeTimeout bounds what one scrape asks of the bus; what does not
// answer in time is left out of that scrape (comet_bus_up says so).
const ScrapeTimeout = 3 * time.Second

// Histogram buckets, in seconds: from a fast local store (100 µs) to an
// author's patience.
var (
	StoreBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	AckBuckets   = StoreBuckets
)

// Metrics is the process's Prometheus registry: the counts read from a
// Source at each scrape, the two timing histograms fed by the receiver
// and the subscriptions, and the Go runtime's and the process's own.
type Metrics struct {
	reg   *prometheus.Registry
	store prometheus.Histogram
	ack   prometheus.Histogram
}

// NewMetrics returns the registry of a process described by src.
func NewMetrics(src Source) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		store: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "comet_bus_store_seconds",
			Help:    "Time the bus took to store an accepted event, before its ack.",
			Buckets: StoreBuckets,
		}),
		ack: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "comet_ack_seconds",
			Help:    "Author-visible latency of an accepted submission: from its last byte read to its ack written.",
			Buckets: AckBuckets,
		}),
	}
	m.reg.MustRegister(m.store, m.ack, &collector{src: src},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the registry /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Timings feeds the histograms; the receiver and the subscriptions call
// it once per accepted event.
func (m *Metrics) Timings() ingress.Timings {
	return ingress.Timings{
		Stored: func(d time.Duration) { m.store.Observe(d.Seconds()) },
		Acked:  func(d time.Duration) { m.ack.Observe(d.Seconds()) },
	}
}

// The metrics read at scrape time. Names follow Prometheus's conventions:
// the comet_ prefix, base units, _total for counters; no label carries a
// peer's address.
var (
	buildInfo = prometheus.NewDesc("comet_build_info", "Always 1: the version of comet and of Go it was built with.",
		[]string{"version", "go"}, nil)
	readyDesc = prometheus.NewDesc("comet_ready", "1 when every readiness check passes (/readyz answers 200), else 0.", nil, nil)
	startDesc = prometheus.NewDesc("comet_start_time_seconds", "When the broker started, in seconds since the epoch.", nil, nil)

	acceptedDesc = prometheus.NewDesc("comet_events_accepted_total",
		"Events stored on the bus, by how they came: author (submitted), upstream (from a broker subscribed to).",
		[]string{"origin"}, nil)
	rejectedDesc = prometheus.NewDesc("comet_events_rejected_total",
		"Events, or connections bringing them, turned away, by origin and reason.", []string{"origin", "reason"}, nil)

	tlsFailuresDesc = prometheus.NewDesc("comet_tls_failures_total",
		"Failed TLS handshakes on the process's TLS endpoints (listeners and upstreams), by kind.", []string{"kind"}, nil)

	subscribersDesc = prometheus.NewDesc("comet_subscribers", "Subscribers connected now.", nil, nil)
	deliveriesDesc  = prometheus.NewDesc("comet_deliveries_total", "Events written to subscribers.", nil, nil)
	dropsDesc       = prometheus.NewDesc("comet_subscriber_drops_total",
		"Subscribers disconnected, or refused at connect, by cause.", []string{"cause"}, nil)
	broadcastPendingDesc = prometheus.NewDesc("comet_broadcast_pending",
		"Events stored on the bus that this broadcaster has not yet seen acknowledged by its subscribers.", nil, nil)

	upstreamsDesc          = prometheus.NewDesc("comet_upstreams", "Upstream sources configured, by kind.", []string{"kind"}, nil)
	upstreamsConnectedDesc = prometheus.NewDesc("comet_upstreams_connected", "Upstream sources connected now, by kind.", []string{"kind"}, nil)

	stageHandledDesc = prometheus.NewDesc("comet_stage_handled_total",
		"Handler attempts by stage and result: ok (the event was handled), error (a failed attempt; retries count).",
		[]string{"stage", "result"}, nil)
	deadLettersDesc = prometheus.NewDesc("comet_deadletters_total",
		"Events a stage of this process gave up on and dead-lettered.", []string{"stage"}, nil)
	deadLettersStoredDesc = prometheus.NewDesc("comet_deadletters_stored",
		"Dead letters stored on the bus now, by stage (comet deadletter list).", []string{"stage"}, nil)
	stagePendingDesc = prometheus.NewDesc("comet_stage_pending",
		"Events stored on the bus and not yet handled by the stage (its consumer's lag).", []string{"stage"}, nil)

	busUpDesc          = prometheus.NewDesc("comet_bus_up", "1 when the bus answered this scrape, else 0.", nil, nil)
	streamMessagesDesc = prometheus.NewDesc("comet_bus_stream_messages", "Messages held by a stream of the bus.", []string{"stream"}, nil)
	streamBytesDesc    = prometheus.NewDesc("comet_bus_stream_bytes", "Bytes held by a stream of the bus.", []string{"stream"}, nil)
	streamMaxBytesDesc = prometheus.NewDesc("comet_bus_stream_max_bytes",
		"A stream's size limit; beyond it the oldest messages go (-1: none).", []string{"stream"}, nil)
	natsConnsDesc = prometheus.NewDesc("comet_nats_connections", "Client connections to the embedded NATS server.", nil, nil)
	natsStoreDesc = prometheus.NewDesc("comet_nats_jetstream_store_bytes",
		"Bytes the embedded server's JetStream file store holds.", nil, nil)
	natsStoreMaxDesc = prometheus.NewDesc("comet_nats_jetstream_store_max_bytes",
		"Bytes the embedded server's JetStream file store may hold.", nil, nil)
	natsSlowDesc = prometheus.NewDesc("comet_nats_slow_consumers_total",
		"Clients of the embedded server it found too slow.", nil, nil)
)

// collector turns a Status into metrics at each scrape.
type collector struct{ src Source }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{buildInfo, readyDesc, startDesc, acceptedDesc, rejectedDesc, tlsFailuresDesc,
		subscribersDesc, deliveriesDesc, dropsDesc, broadcastPendingDesc, upstreamsDesc, upstreamsConnectedDesc,
		stageHandledDesc, deadLettersDesc, deadLettersStoredDesc, stagePendingDesc,
		busUpDesc, streamMessagesDesc, streamBytesDesc, streamMaxBytesDesc,
		natsConnsDesc, natsStoreDesc, natsStoreMaxDesc, natsSlowDesc} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
	defer cancel()
	st := c.src.Status(ctx, Want{Bus: true})
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(buildInfo, 1, st.Identity.Version, runtime.Version())
	gauge(readyDesc, boolValue(st.Ready))
	gauge(startDesc, float64(st.Identity.Started.UnixNano())/1e9)
	for origin, n := range st.Accepted {
		counter(acceptedDesc, n, origin)
	}
	for _, r := range st.Rejected {
		counter(rejectedDesc, r.Count, r.Origin, r.Reason)
	}
	for kind, n := range st.TLSFailures {
		counter(tlsFailuresDesc, n, kind)
	}
	if st.Broadcasting {
		gauge(subscribersDesc, float64(len(st.Subscribers)))
		counter(deliveriesDesc, st.Delivered)
		for cause, n := range st.Drops {
			counter(dropsDesc, n, cause)
		}
		if st.BroadcastPending != nil {
			gauge(broadcastPendingDesc, float64(*st.BroadcastPending))
		}
	}
	kinds, connected := map[string]int{}, map[string]int{}
	for _, u := range st.Upstreams {
		kinds[u.Kind]++
		if u.Connected() {
			connected[u.Kind]++
		}
	}
	for kind, n := range kinds {
		gauge(upstreamsDesc, float64(n), kind)
		gauge(upstreamsConnectedDesc, float64(connected[kind]), kind)
	}
	for _, s := range st.Stages {
		counter(stageHandledDesc, s.Handled, s.Name, "ok")
		counter(stageHandledDesc, s.Failures, s.Name, "error")
		counter(deadLettersDesc, s.DeadLettered, s.Name)
		if s.Pending != nil {
			gauge(stagePendingDesc, float64(*s.Pending), s.Name)
		}
		if s.DeadLetters != nil {
			gauge(deadLettersStoredDesc, float64(*s.DeadLetters), s.Name)
		}
	}
	gauge(busUpDesc, boolValue(st.Bus.Up))
	for _, s := range st.Bus.Streams {
		gauge(streamMessagesDesc, float64(s.Messages), s.Name)
		gauge(streamBytesDesc, float64(s.Bytes), s.Name)
		gauge(streamMaxBytesDesc, float64(s.MaxBytes), s.Name)
	}
	if srv := st.Bus.Server; srv != nil {
		gauge(natsConnsDesc, float64(srv.Connections))
		gauge(natsStoreDesc, float64(srv.StoreBytes))
		gauge(natsStoreMaxDesc, float64(srv.StoreMaxBytes))
		counter(natsSlowDesc, uint64(max(srv.SlowConsumers, 0)))
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
