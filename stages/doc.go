// Package stages runs the event handlers (--print-event, --save-event,
// --cmd, and the 2012 form --action NAME) as consumers of the bus, through
// one Watermill router.
//
// Each stage is its own durable consumer of the COMET_EVENTS stream, named
// "stage-<stage>" (see bus.StageSubscriber), with its own concurrency: a
// slow or failing stage never holds up the broker or another stage. An
// event accepted while a stage is stopped or crashed is handled when it
// comes back (at least once: an event whose handling was cut short by a
// stop or a crash is handled again). A failed attempt is retried with
// exponential backoff, at most Config.MaxRetries times; then the failure
// is logged and the event is published on the dead-letter subject
// comet.deadletter.<stage> (stream COMET_DEADLETTER) with the reason, and
// the stage moves on.
//
// The built-in stages follow docs/handlers.md:
//
//   - print-event writes each event's raw bytes and a newline to
//     Config.Stdout (default os.Stdout), one event at a time.
//   - save-event writes each event's raw bytes to a file in
//     Config.SaveDir named after its IVORN (SaveName), never overwriting:
//     an existing name gets "_" appended until it is free.
//   - each --cmd PATH runs the executable PATH (literally: no shell, no
//     argument splitting, argv = [PATH]) with the event on its standard
//     input, logging its output at debug level. A non-zero exit, death by
//     a signal and running past Config.CmdTimeout (the process group is
//     then killed) are failures. At most Config.CmdPool runs of one
//     command are under way at once.
//
// Package stages knows nothing of NATS: it gets its Watermill subscribers
// and dead-letter publisher from a Source (a *bus.Bus).
package stages
