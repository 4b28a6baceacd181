package loadgen

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Percentiles summarises latency samples exactly (nearest rank over the
// sorted samples). In JSON every duration is an integer of nanoseconds.
type Percentiles struct {
	Count int           `json:"count"`
	Min   time.Duration `json:"min_ns"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p99_9_ns"`
	Max   time.Duration `json:"max_ns"`
}

// percentiles sorts samples (nanoseconds) in place and summarises them.
func percentiles(samples []int64) Percentiles {
	n := len(samples)
	if n == 0 {
		return Percentiles{}
	}
	slices.Sort(samples)
	var sum float64
	for _, v := range samples {
		sum += float64(v)
	}
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(n))) - 1
		return time.Duration(samples[min(max(i, 0), n-1)])
	}
	return Percentiles{
		Count: n,
		Min:   time.Duration(samples[0]),
		Mean:  time.Duration(sum / float64(n)),
		P50:   rank(0.50),
		P90:   rank(0.90),
		P99:   rank(0.99),
		P999:  rank(0.999),
		Max:   time.Duration(samples[n-1]),
	}
}

// SubscriberStats is one subscriber's view of the run.
type SubscriberStats struct {
	Received   int    `json:"received"`   // frames carrying this run's ivorns, duplicates included
	Duplicates int    `json:"duplicates"` // receptions of an ivorn already received
	Lost       int    `json:"lost"`       // accepted events never received within Settle
	Unexpected int    `json:"unexpected"` // other VOEvents (e.g. broker test events), acked and ignored
	Dropped    string `json:"dropped,omitempty"`
}

// Report is the outcome of a run. In JSON every time.Duration is an integer
// of nanoseconds (fields named *_ns); "failed" and "problems" are added.
type Report struct {
	RunID         string        `json:"run_id"`
	IVORNPrefix   string        `json:"ivorn_prefix"`
	ReceiveAddr   string        `json:"receive_addr"` // ReceiveAddrs, comma-separated
	ReceiveAddrs  []string      `json:"receive_addrs"`
	BroadcastAddr string        `json:"broadcast_addr,omitempty"`
	Events        int           `json:"events"` // requested
	Concurrency   int           `json:"concurrency"`
	Rate          float64       `json:"rate"` // requested events/s, 0 = unpaced
	EventBytes    int           `json:"event_bytes"`
	RetryFor      time.Duration `json:"retry_for_ns"` // 0 = no retry

	Submitted int `json:"submitted"` // events with at least one attempt
	Accepted  int `json:"accepted"`
	Naked     int `json:"naked"` // events naked at their first attempt
	// NakedAfterRetry counts events naked after a failed attempt. Not a
	// problem by itself: the nak may say "previously seen" of an event
	// that the failed attempt stored before its connection broke.
	NakedAfterRetry int `json:"naked_after_retry"`
	Retried         int `json:"retried"`  // events that needed more than one attempt
	GaveUp          int `json:"gave_up"`  // events that never got a receipt
	Errors          int `json:"errors"`   // attempts without a receipt: connect/send/receipt failures, timeouts included
	Timeouts        int `json:"timeouts"` // of Errors, those that hit Timeout
	// NotClosed counts receipts after which the broker kept the
	// connection open for a second (docs/vtp.md §4.1 says it closes).
	NotClosed    int      `json:"not_closed"`
	NakSamples   []string `json:"nak_samples,omitempty"`   // first few, "ivorn: Result"
	ErrorSamples []string `json:"error_samples,omitempty"` // first few

	Duration       time.Duration `json:"duration_ns"` // first submission start to last ack
	AcceptedPerSec float64       `json:"accepted_per_sec"`
	// ScheduleLagMax is, when paced, the largest delay of a release
	// behind its schedule: large means the C workers could not keep up.
	ScheduleLagMax time.Duration `json:"schedule_lag_max_ns"`

	Subscribers      int               `json:"subscribers"`
	Deliveries       int               `json:"deliveries"`         // sum of Received
	DeliveryWindow   time.Duration     `json:"delivery_window_ns"` // first submission start to last delivery
	DeliveriesPerSec float64           `json:"deliveries_per_sec"`
	Lost             int               `json:"lost"`
	Duplicates       int               `json:"duplicates"`
	Unexpected       int               `json:"unexpected"`
	SubscriberDrops  int               `json:"subscriber_drops"` // connections the broker ended during the run
	SettleWait       time.Duration     `json:"settle_wait_ns"`
	PerSubscriber    []SubscriberStats `json:"per_subscriber,omitempty"`

	AckLatency Percentiles `json:"ack_latency"` // first attempt's connect to ack received
	EndToEnd   Percentiles `json:"end_to_end"`  // submission start to subscriber receipt

	BrokerPID         int           `json:"broker_pid,omitempty"`
	BrokerCPU         time.Duration `json:"broker_cpu_ns"`           // utime+stime over the run (10 ms resolution)
	BrokerCPUPerEvent time.Duration `json:"broker_cpu_per_event_ns"` // BrokerCPU / Accepted
	BrokerPeakRSS     int64         `json:"broker_peak_rss_bytes"`   // VmHWM: the peak since the broker started
	BrokerRSS         int64         `json:"broker_rss_bytes"`        // VmRSS after the run
}

// Problems lists why the run counts as failed: any lost, duplicated or
// naked event, any event that got no receipt (errored, or, with RetryFor,
// gave up), a subscriber dropped by the broker, or events never submitted
// (interrupted run). Failed attempts followed by a receipt, and naks after
// them (NakedAfterRetry), are not problems. Empty means success.
func (r *Report) Problems() []string {
	var p []string
	add := func(n int, what string) {
		if n > 0 {
			p = append(p, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(r.Lost, "lost")
	add(r.Duplicates, "duplicated")
	add(r.Naked, "naked")
	if r.RetryFor > 0 {
		add(r.GaveUp, "gave up")
	} else {
		add(r.GaveUp, "errored")
	}
	add(r.SubscriberDrops, "subscribers dropped")
	add(r.Events-r.Submitted, "not submitted")
	return p
}

// Failed is the CLI verdict: true when Problems is not empty.
func (r *Report) Failed() bool { return len(r.Problems()) > 0 }

// MarshalJSON adds "failed" and "problems" to the fields.
func (r *Report) MarshalJSON() ([]byte, error) {
	type plain Report
	p := r.Problems()
	if p == nil {
		p = []string{}
	}
	return json.Marshal(struct {
		*plain
		Failed   bool     `json:"failed"`
		Problems []string `json:"problems"`
	}{(*plain)(r), len(p) > 0, p})
}

// String renders a compact human-readable table.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vtp-load run %s: %d events to %s, %d workers", r.RunID, r.Events,
		strings.Join(r.ReceiveAddrs, ", "), r.Concurrency)
	if r.Rate > 0 {
		fmt.Fprintf(&b, ", paced at %g/s (max lag %s)", r.Rate, fmtDur(r.ScheduleLagMax))
	}
	if r.RetryFor > 0 {
		fmt.Fprintf(&b, ", retrying for %s", fmtDur(r.RetryFor))
	}
	fmt.Fprintf(&b, "\n  ivorns %s-<seq>, %d bytes each\n\n", r.IVORNPrefix, r.EventBytes)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "submitted\taccepted\tnaked\terrors\ttimeouts\tduration\taccepted/s\t\n")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%s\t%.1f\t\n", r.Submitted, r.Accepted, r.Naked, r.Errors, r.Timeouts,
		fmtDur(r.Duration), r.AcceptedPerSec)
	tw.Flush()
	if r.RetryFor > 0 || r.Retried > 0 || r.NakedAfterRetry > 0 {
		fmt.Fprintf(&b, "\nretries: %d events needed more than one attempt (errors above count attempts); "+
			"%d naked after a failed attempt; %d gave up\n", r.Retried, r.NakedAfterRetry, r.GaveUp)
	}
	if r.Subscribers > 0 {
		b.WriteString("\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "subscribers\tdeliveries\tdeliveries/s\tlost\tduplicates\tunexpected\tdropped\tsettle\t\n")
		fmt.Fprintf(tw, "%d\t%d\t%.1f\t%d\t%d\t%d\t%d\t%s\t\n", r.Subscribers, r.Deliveries, r.DeliveriesPerSec,
			r.Lost, r.Duplicates, r.Unexpected, r.SubscriberDrops, fmtDur(r.SettleWait))
		tw.Flush()
	}
	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "latency\tcount\tmin\tp50\tp90\tp99\tp99.9\tmax\t\n")
	row := func(name string, p Percentiles) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, p.Count, fmtDur(p.Min), fmtDur(p.P50),
			fmtDur(p.P90), fmtDur(p.P99), fmtDur(p.P999), fmtDur(p.Max))
	}
	row("ack", r.AckLatency)
	if r.Subscribers > 0 {
		row("end-to-end", r.EndToEnd)
	}
	tw.Flush()
	if r.BrokerPID > 0 {
		fmt.Fprintf(&b, "\nbroker pid %d: cpu %s total, %s per accepted event; peak RSS %s, RSS now %s\n",
			r.BrokerPID, fmtDur(r.BrokerCPU), fmtDur(r.BrokerCPUPerEvent), fmtBytes(r.BrokerPeakRSS), fmtBytes(r.BrokerRSS))
	}
	if r.NotClosed > 0 {
		fmt.Fprintf(&b, "\nbroker left %d connections open after the receipt\n", r.NotClosed)
	}
	for i, s := range r.PerSubscriber {
		if s.Lost > 0 || s.Duplicates > 0 || s.Dropped != "" {
			fmt.Fprintf(&b, "subscriber %d: received %d, lost %d, duplicates %d", i, s.Received, s.Lost, s.Duplicates)
			if s.Dropped != "" {
				fmt.Fprintf(&b, ", dropped: %s", s.Dropped)
			}
			b.WriteString("\n")
		}
	}
	for _, s := range r.NakSamples {
		fmt.Fprintf(&b, "nak: %s\n", s)
	}
	for _, s := range r.ErrorSamples {
		fmt.Fprintf(&b, "error: %s\n", s)
	}
	if p := r.Problems(); len(p) > 0 {
		fmt.Fprintf(&b, "\nFAILED: %s\n", strings.Join(p, ", "))
	} else {
		b.WriteString("\nOK\n")
	}
	return b.String()
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(time.Microsecond).String()
	default:
		return d.Round(100 * time.Nanosecond).String()
	}
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// report merges the workers' and subscribers' records.
func (r *run) report(runID string, workers []*worker, lag, settled time.Duration) *Report {
	rep := &Report{
		RunID:          runID,
		IVORNPrefix:    r.prefix,
		ReceiveAddr:    strings.Join(r.cfg.ReceiveAddrs, ","),
		ReceiveAddrs:   r.cfg.ReceiveAddrs,
		RetryFor:       r.cfg.RetryFor,
		BroadcastAddr:  r.cfg.BroadcastAddr,
		Events:         r.cfg.Events,
		Concurrency:    r.cfg.Concurrency,
		Rate:           r.cfg.Rate,
		EventBytes:     r.tmpl.Len(len(r.prefix) + 1 + len(strconv.Itoa(r.cfg.Events-1))),
		ScheduleLagMax: lag,
		Subscribers:    len(r.subs),
		SettleWait:     settled,
		BrokerPID:      r.cfg.BrokerPID,
	}
	first, lastAck := int64(-1), int64(0)
	nAck := 0
	for _, w := range workers {
		rep.Submitted += w.submitted
		rep.Accepted += w.accepted
		rep.Naked += w.naked
		rep.NakedAfterRetry += w.nakedAfterRetry
		rep.Retried += w.retried
		rep.GaveUp += w.gaveUp
		rep.Errors += w.errors
		rep.Timeouts += w.timeouts
		rep.NotClosed += w.notClosed
		rep.NakSamples = appendUpTo(rep.NakSamples, w.nakSamples)
		rep.ErrorSamples = appendUpTo(rep.ErrorSamples, w.errSamples)
		if w.first >= 0 && (first < 0 || w.first < first) {
			first = w.first
		}
		lastAck = max(lastAck, w.lastAck)
		nAck += len(w.ackLat)
	}
	ack := make([]int64, 0, nAck)
	for _, w := range workers {
		ack = append(ack, w.ackLat...)
	}
	rep.AckLatency = percentiles(ack)
	if rep.Accepted > 0 && first >= 0 && lastAck > first {
		rep.Duration = time.Duration(lastAck - first)
		rep.AcceptedPerSec = float64(rep.Accepted) / rep.Duration.Seconds()
	}

	var lastRecv int64
	nLat := 0
	for _, s := range r.subs {
		st := SubscriberStats{
			Received:   s.received,
			Duplicates: s.dups,
			Lost:       r.accepted.missing(s.got),
			Unexpected: s.unexpected,
		}
		if s.err != nil {
			st.Dropped = s.err.Error()
			rep.SubscriberDrops++
		}
		rep.PerSubscriber = append(rep.PerSubscriber, st)
		rep.Deliveries += st.Received
		rep.Lost += st.Lost
		rep.Duplicates += st.Duplicates
		rep.Unexpected += st.Unexpected
		lastRecv = max(lastRecv, s.lastRecv)
		nLat += len(s.lat)
	}
	e2e := make([]int64, 0, nLat)
	for _, s := range r.subs {
		e2e = append(e2e, s.lat...)
		s.lat = nil
	}
	rep.EndToEnd = percentiles(e2e)
	if rep.Deliveries > 0 && first >= 0 && lastRecv > first {
		rep.DeliveryWindow = time.Duration(lastRecv - first)
		rep.DeliveriesPerSec = float64(rep.Deliveries) / rep.DeliveryWindow.Seconds()
	}
	return rep
}

func appendUpTo(dst, src []string) []string {
	for _, s := range src {
		if len(dst) >= maxSamples {
			break
		}
		dst = append(dst, s)
	}
	return dst
}
