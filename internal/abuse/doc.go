// Package abuse is the abuse test suite of issue 6: every hostile input an
// author, a subscriber or an upstream broker can send gets a clear,
// bounded outcome (a nak with a reason, or a logged drop), never a crash,
// a hang, unbounded memory, a leak of local files or a lost good event.
//
// The tests run in-process brokers (internal/broker) on real loopback
// sockets with the real embedded JetStream bus, and the real-socket peers
// of internal/vtptest; nothing is mocked. After every probe a fresh good
// event must still be acked and delivered within two seconds. TestMain
// fails the run if the peak RSS of the whole suite exceeds 256 MB.
//
// Run: go test -race -count=1 ./internal/abuse/
// Benchmark: go test -run '^$' -bench ThousandAuthors ./internal/abuse/
package abuse
