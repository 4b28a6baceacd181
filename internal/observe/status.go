// Package observe is what an operator sees of a running comet process
// without reading its log: Prometheus metrics, liveness and readiness, a
// status page and the same status as JSON, on one HTTP listener
// (--http-addr). It reads what the roles count at the time it is asked (a
// scrape, a page load); the only observations made on the event path are
// the two timing histograms, through ingress.Timings.
//
// The process (internal/broker) describes itself as a Status, through the
// Source it gives the server; readiness is a list of named Checks that any
// part of the process may add to.
package observe

import (
	"context"
	"time"
)

// Source describes the process now, readiness checks included. It is
// called for every scrape and page load, so it reads counters and asks
// the bus, and changes nothing.
type Source interface {
	Status(ctx context.Context, want Want) *Status
}

// Want says what a Status call must include beyond the counts, which cost
// nothing: the bus's answers (stream sizes, lag, dead letters stored),
// which cost a request each, and the last events stored.
type Want struct {
	Bus    bool
	Events int // how many of the last events stored; 0 = none
}

// RecentEvents is how many of the last events the status page lists.
const RecentEvents = 50

// Status is the state of one comet process: what the status page shows,
// /status.json serves and the metrics are made of. Counts are since the
// process started. A role the process does not run leaves its part empty.
type Status struct {
	Identity  Identity   `json:"identity"`
	Ready     bool       `json:"ready"`
	Checks    []Check    `json:"checks"`
	Listeners []Listener `json:"listeners"`

	// Accepted counts the events stored, by origin ("author",
	// "upstream"), with a zero for each origin this process takes events
	// from.
	Accepted map[string]uint64 `json:"accepted"`
	// Rejected counts what was turned away, by origin and reason, with a
	// zero for every reason of each origin this process takes events from.
	Rejected []Rejected `json:"rejected"`
	// TLSFailures counts the failed TLS handshakes on the process's TLS
	// endpoints (listeners and upstreams), by kind; only kinds seen.
	TLSFailures map[string]uint64 `json:"tls_failures,omitempty"`

	Broadcasting bool         `json:"broadcasting"` // this process serves subscribers
	Subscribers  []Subscriber `json:"subscribers"`
	Delivered    uint64       `json:"delivered"` // events written to subscribers
	// Drops counts subscribers disconnected or refused, by cause, with a
	// zero for every cause when broadcasting.
	Drops map[string]uint64 `json:"drops,omitempty"`
	// BroadcastPending is the broadcaster's lag on the bus (with Want.Bus).
	BroadcastPending *uint64 `json:"broadcast_pending,omitempty"`

	Upstreams []Upstream `json:"upstreams"`
	Stages    []Stage    `json:"stages"`

	Bus    Bus     `json:"bus"`
	Events []Event `json:"events,omitempty"` // newest first (with Want.Events)
	// EventsError says why Events could not be read.
	EventsError string `json:"events_error,omitempty"`
}

// Identity says which process this is.
type Identity struct {
	LocalIVO string    `json:"local_ivo,omitempty"`
	Node     string    `json:"node"`
	Version  string    `json:"version"`
	Go       string    `json:"go"`
	Started  time.Time `json:"started"`
	Roles    []string  `json:"roles"` // receiver, broadcaster, subscriber, stages
	Bus      string    `json:"bus"`   // where the bus is
}

// Uptime is how long the process has run, in whole seconds.
func (id Identity) Uptime(now time.Time) time.Duration {
	return now.Sub(id.Started).Truncate(time.Second)
}

// Check is the result of one readiness check.
type Check struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Listener is one address the process serves.
type Listener struct {
	Role    string `json:"role"` // receive, broadcast, http, nats
	Address string `json:"address"`
	Open    bool   `json:"open"`
}

// Rejected is one count of events or connections turned away.
type Rejected struct {
	Origin string `json:"origin"`
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
}

// Subscriber is one connected subscriber.
type Subscriber struct {
	Address       string    `json:"address"`
	Since         time.Time `json:"since"`
	Authenticated bool      `json:"authenticated"` // it answered the authenticate request
	Key           string    `json:"key,omitempty"` // the OpenPGP key it signed with (--subscriber-auth)
	// CertSubject and CertSHA256 are its verified client certificate's
	// subject and fingerprint (an ssl: listener with clientCA=).
	CertSubject string    `json:"cert_subject,omitempty"`
	CertSHA256  string    `json:"cert_sha256,omitempty"`
	Filters     []string  `json:"filters,omitempty"`
	Refused     []string  `json:"refused_filters,omitempty"` // filters it sent that never match
	Queued      int       `json:"queued"`                    // frames waiting in its queue
	InFlight    int       `json:"in_flight"`                 // events sent, not yet acknowledged
	Delivered   uint64    `json:"delivered"`
	Withheld    uint64    `json:"withheld"` // events its filters did not let through
	LastAck     time.Time `json:"last_ack,omitzero"`
}

// Upstream is one source of events this process reads: a VTP broker it
// subscribes to (kind "vtp": connecting, connected, waiting, stopped) or
// a Kafka source (kind "kafka": its heartbeat topic shows it live, stale,
// waiting, or unmonitored without one).
type Upstream struct {
	Kind          string    `json:"kind"`
	Address       string    `json:"address"`
	State         string    `json:"state"`
	Since         time.Time `json:"since,omitzero"` // when State began
	LastEvent     time.Time `json:"last_event,omitzero"`
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"` // Kafka's heartbeat topic
	NextRetry     time.Time `json:"next_retry,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	Accepted      uint64    `json:"accepted"`
}

// Connected reports whether the source is known to be receiving: a VTP
// upstream connected, a Kafka source whose heartbeat is live.
func (u Upstream) Connected() bool { return u.State == "connected" || u.State == "live" }

// Stage is one event handler this process runs.
type Stage struct {
	Name         string `json:"name"`
	Handled      uint64 `json:"handled"`
	Failures     uint64 `json:"failures"` // failed attempts, retries included
	DeadLettered uint64 `json:"dead_lettered"`
	// Pending is the stage's lag on the bus, DeadLetters the dead letters
	// stored for it now (both with Want.Bus; nil when unknown).
	Pending     *uint64 `json:"pending,omitempty"`
	DeadLetters *uint64 `json:"dead_letters,omitempty"`
}

// Bus is the bus as this process sees it.
type Bus struct {
	Up      bool     `json:"up"`
	Error   string   `json:"error,omitempty"`
	Streams []Stream `json:"streams,omitempty"`
	// Server is the embedded server's own state; nil with an external
	// system.
	Server *NATSServer `json:"server,omitempty"`
}

// Stream is one of the bus's streams.
type Stream struct {
	Name      string `json:"name"`
	Messages  uint64 `json:"messages"`
	Bytes     uint64 `json:"bytes"`
	Consumers int    `json:"consumers"`
	MaxBytes  int64  `json:"max_bytes"`
}

// NATSServer is the embedded NATS server's state.
type NATSServer struct {
	Connections   int    `json:"connections"`
	StoreBytes    uint64 `json:"store_bytes"`
	StoreMaxBytes int64  `json:"store_max_bytes"`
	SlowConsumers int64  `json:"slow_consumers"`
}

// Event is one event stored on the bus.
type Event struct {
	Time   time.Time `json:"time"` // received
	IVORN  string    `json:"ivorn"`
	Role   string    `json:"role"`
	Origin string    `json:"origin"`
	Author string    `json:"author,omitempty"`
	Node   string    `json:"node,omitempty"`
	Seq    uint64    `json:"seq"`
}
