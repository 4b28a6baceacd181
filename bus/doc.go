// Package bus is the only part of Comet that knows NATS. It runs an
// embedded nats-server with JetStream (or connects to an external NATS
// system), provisions the event stream (which is also the previously-seen
// record), stores events and hands them to consumers.
//
// # Public contract
//
// Other programs tap the bus, so these names are stable (docs/bus.md is
// the reference for users):
//
//   - Stream COMET_EVENTS (file storage, limits retention) holds every
//     accepted event on the subject
//     comet.event.<origin>.<role>.<authority>.<sha1>, where origin is
//     "author", "upstream" or "kafka", role is the VOEvent role, authority is the
//     IVORN authority, both escaped by [EscapeToken] (every byte outside
//     [A-Za-z0-9-_] becomes %XX, so dots in IVORNs never split tokens; an
//     empty value is "_"), and sha1 is the lowercase hex SHA-1 of the
//     payload. Filter with e.g. comet.event.*.observation.nasa%2Egsfc%2Egcn.*
//   - The message data is the event exactly as received, byte for byte.
//   - Headers: Comet-Sha1 (the sha1), Comet-Ivorn, Comet-Role,
//     Comet-Author (absent when the event names none), Comet-Origin,
//     Comet-Received-At (RFC 3339, UTC, nanoseconds), Comet-Node
//     (receiving node), Comet-Peer (sender's address), Comet-Signature
//     ("unchecked", or "verified:<fingerprint>"); and JetStream's
//     Nats-TTL (the payload's lifetime in seconds) and
//     Nats-Expected-Last-Subject-Sequence(-Subject) (the check below).
//   - The stream is also the previously-seen record (30 days). Each event
//     is stored on the condition that no message on
//     comet.event.*.*.*.<sha1> exists, which the stream checks and stores
//     atomically: one write per accepted event, shared by every ingress
//     process. An event's payload lives 7 days (its Nats-TTL); then the
//     server replaces it with a delete marker on the same subject, a
//     message with no data and a Nats-Marker-Reason header, which lives
//     the remaining 23 days (the stream's subject_delete_marker_ttl).
//     Messages without data are records, never events: skip them.
//     Eviction by the stream's size limit leaves no marker; the bus warns
//     when it happens (see [Bus.CheckRetention]). The record on
//     comet.event._._._.<ProbeSHA1> is the bus's probe of a failing
//     store (see [Bus.StoreStatus]).
//   - The KV bucket comet_seen held the records before they moved onto
//     the stream; Open migrates an existing one and deletes it.
//   - Broadcasters consume through durable pull consumers whose names the
//     caller chooses (one per egress node).
//   - Event handlers (package stages) consume through durable pull
//     consumers named stage-<stage> (filter comet.event.>), e.g.
//     stage-print-event, stage-save-event, stage-cmd-<base>-<hash> for a
//     --cmd. See [Bus.StageSubscriber].
//   - Stream COMET_DEADLETTER (file storage, limits retention, 30 days,
//     1/StageShare of MaxStore) holds the events a stage gave up on, on the subject
//     comet.deadletter.<stage>: the data is the event exactly as received,
//     the headers are the event's Comet-* headers plus Watermill's
//     poison-queue metadata: reason_poisoned (the last error),
//     handler_poisoned (the stage), topic_poisoned and
//     subscriber_poisoned. See [Bus.DeadLetterPublisher].
//   - Stream COMET_REPLAY (file storage, work-queue retention) holds dead
//     letters handed back to their stage on comet.replay.<stage>, read by
//     that stage's durable replay-<stage>. See [Bus.Replay].
//
// The embedded server's store is locked (LockFile) for as long as the bus
// is open: one process per store.
package bus
