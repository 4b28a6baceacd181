// Package stages will hold the event handlers (--print-event, --save-event,
// --cmd) as durable consumers of the bus, run through Watermill's router.
//
// Nothing is implemented here yet: the one-process broker receives and
// broadcasts but runs no handlers. The contract the stages will follow is
// fixed by the bus (see package bus): each handler is a durable consumer of
// the COMET_EVENTS stream named "stage-<handler>", so an event accepted
// while a stage is down is handled when it comes back (at least once), and
// a final failure is published on a dead-letter subject.
package stages
