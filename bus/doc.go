// Package bus is the only part of Comet that knows NATS. It runs an
// embedded nats-server with JetStream (or connects to an external NATS
// system), provisions the event stream and the previously-seen bucket,
// stores events and hands them to consumers.
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
//   - Headers: Nats-Msg-Id and Comet-Sha1 (the sha1), Comet-Ivorn,
//     Comet-Role, Comet-Author (absent when the event names none),
//     Comet-Origin, Comet-Received-At (RFC 3339, UTC, nanoseconds),
//     Comet-Node (receiving node), Comet-Peer (sender's address),
//     Comet-Signature ("unchecked", or "verified:<fingerprint>").
//   - KV bucket comet_seen: key = sha1, value = time of recording in
//     seconds since the epoch as text ("1714566896.123456"), kept for 30
//     days. Its Create is the one atomic check-and-record shared by all
//     ingress processes.
//   - Broadcasters consume through durable pull consumers whose names the
//     caller chooses (one per egress node).
//   - Event handlers (package stages) consume through durable pull
//     consumers named stage-<stage> (filter comet.event.>), e.g.
//     stage-print-event, stage-save-event, stage-cmd-<base>-<hash> for a
//     --cmd. See [Bus.StageSubscriber].
//   - Stream COMET_DEADLETTER (file storage, limits retention, 30 days,
//     256 MiB) holds the events a stage gave up on, on the subject
//     comet.deadletter.<stage>: the data is the event exactly as received,
//     the headers are the event's Comet-* headers plus Watermill's
//     poison-queue metadata: reason_poisoned (the last error),
//     handler_poisoned (the stage), topic_poisoned and
//     subscriber_poisoned. See [Bus.DeadLetterPublisher].
//
// The embedded server's store is locked (LockFile) for as long as the bus
// is open: one process per store.
package bus
