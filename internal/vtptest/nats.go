package vtptest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSServer runs a real NATS JetStream server in the test process on a
// random loopback port, standing in for an external NATS system; it is
// shut down when the test ends. opts may be nil or set anything else
// (TLS, accounts, MaxPayload); host, port, store, signals and logging are
// filled in unless set.
func NATSServer(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	o := server.Options{}
	if opts != nil {
		o = *opts
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	o.JetStream, o.NoSigs, o.NoLog = true, true, true
	srv, err := server.NewServer(&o)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}
