package broker_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// Bounds of what an author may wait around a store fault (issue 16).
const (
	faultAnswerWithin  = time.Second      // a submission during the fault is closed
	recoverAckedWithin = 10 * time.Second // a submission after space is freed is acked
)

// The disk under the embedded store fills while authors submit: every
// event acked before reaches the subscriber; during the fault each
// submission is closed without a receipt within a second; once space is
// freed a submission is acked within ten seconds, with no restart; and
// nothing reaches the subscriber twice.
func TestFullDiskUnderTheStore(t *testing.T) {
	mnt := vtptest.Tmpfs(t, 96<<20)
	fillTheDiskUnder(t, mnt, func(c *broker.Config) {
		c.Bus.StoreDir = filepath.Join(mnt, "store")
		c.Bus.MaxStore = 32 << 20
	}, func(free func()) { free() })
}

// fillTheDiskUnder starts a broker configured by configure whose store is
// on mnt, acks 40 events, fills mnt and submits through the fault until
// endFault (given the function that frees the space) has run and the
// broker acks again; then every acked event reaches the subscriber once.
func fillTheDiskUnder(t *testing.T, mnt string, configure func(*broker.Config), endFault func(free func())) {
	t.Helper()
	b := start(t, configure)
	sub := subscribe(t, b, vtptest.Comet)
	ev := benchEvent(t)
	event := func(i int) []byte { return vtptest.WithIVORN(ev, fmt.Sprintf("ivo://test.example/disk#%d", i)) }

	var acked []string
	for i := range 40 {
		mustAck(t, recvAddr(b), event(i))
		acked = append(acked, fmt.Sprintf("ivo://test.example/disk#%d", i))
	}
	free := vtptest.Fill(t, mnt)
	faultStoresAndRecovers(t, b, func() { endFault(free) }, 40, event, &acked)
	if !sub.WaitFor(10*time.Second, func(s *vtptest.Subscriber) bool { return containsAll(s.IVORNs(), acked) }) {
		t.Fatalf("subscriber got %d events, missing some of the %d acked", sub.Count(), len(acked))
	}
	time.Sleep(time.Second) // anything delivered twice would come now
	assertOnce(t, sub.IVORNs())
}

// faultStoresAndRecovers submits through a fault (the store already
// failing or about to) until end() has been called and the broker acks
// again: during the fault each submission is closed without a receipt
// within faultAnswerWithin; after end, one is acked within
// recoverAckedWithin. Acked IVORNs are added to acked; next numbers the
// events.
func faultStoresAndRecovers(t *testing.T, b *broker.Broker, end func(), next int, event func(int) []byte, acked *[]string) {
	t.Helper()
	refused := 0
	var slowest time.Duration // of the refusals
	for i := 0; i < 10; i++ {
		t0 := time.Now()
		m, err := vtptest.Submit(recvAddr(b), event(next), replyTimeout)
		d := time.Since(t0)
		switch {
		case err != nil:
			t.Fatalf("submission %d during the fault: %v; want the connection closed without a receipt", i, err)
		case m != nil && m.Role == vtp.RoleAck && refused == 0:
			// Stored before the store noticed the fault.
			*acked = append(*acked, fmt.Sprintf("ivo://test.example/disk#%d", next))
			next++
			continue
		case m != nil:
			t.Fatalf("submission %d during the fault answered %s; want the connection closed without a receipt", i, m.Role)
		case d > faultAnswerWithin:
			t.Fatalf("submission %d during the fault closed after %v; want within %v", i, d, faultAnswerWithin)
		}
		refused++
		next++
		slowest = max(slowest, d)
	}
	t.Logf("%d submissions refused during the fault, the slowest closed after %v", refused, slowest.Round(time.Millisecond))
	if b.Bus().Healthy() {
		t.Fatal("bus reports a healthy store during the fault")
	}
	if ok, why := storeReady(b); ok {
		t.Error("readiness check \"store\" passes during the fault")
	} else {
		t.Logf("not ready: %s", why)
	}
	if n := b.Stats().Rejections[ingress.RejectStoreFailed]; n < uint64(refused) {
		t.Errorf("store_failed rejections = %d, want at least %d", n, refused)
	}
	end()
	freed := time.Now()
	for {
		m, err := vtptest.Submit(recvAddr(b), event(next), replyTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if m != nil && m.Role == vtp.RoleAck {
			*acked = append(*acked, fmt.Sprintf("ivo://test.example/disk#%d", next))
			break
		}
		if m != nil {
			t.Fatalf("submission after the fault answered %s", m.Role)
		}
		if time.Since(freed) > recoverAckedWithin {
			t.Fatalf("no submission acked within %v of the fault's end (store: %+v)", recoverAckedWithin, b.Bus().StoreStatus())
		}
		next++
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("acked again %v after the fault ended", time.Since(freed).Round(time.Millisecond))
	for i := range 10 {
		mustAck(t, recvAddr(b), event(next+1+i))
		*acked = append(*acked, fmt.Sprintf("ivo://test.example/disk#%d", next+1+i))
	}
	if st := b.Bus().StoreStatus(); !st.Healthy {
		t.Fatalf("store status after recovery: %+v", st)
	}
	if ok, why := storeReady(b); !ok {
		t.Errorf("readiness check \"store\" fails after recovery: %s", why)
	}
}

// storeReady runs the broker's readiness check "store".
func storeReady(b *broker.Broker) (bool, string) {
	for _, c := range b.Readiness().Run(context.Background()) {
		if c.Name == "store" {
			return c.OK, c.Error
		}
	}
	return false, "no check named store"
}

func containsAll(have, want []string) bool {
	set := make(map[string]bool, len(have))
	for _, h := range have {
		set[h] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	return true
}

func assertOnce(t *testing.T, ivorns []string) {
	t.Helper()
	seen := map[string]int{}
	for _, iv := range ivorns {
		if seen[iv]++; seen[iv] == 2 {
			t.Errorf("%s delivered twice", iv)
		}
	}
}

// The disk under an external nats-server's JetStream store fills while
// authors submit to a broker on it (--nats): every event acked before
// reaches the subscriber; during the fault each submission is closed
// without a receipt within a second. A standalone nats-server keeps its
// streams in their write error once space is freed, so the operator
// restarts it (same store, same port); a submission is then acked within
// ten seconds with no restart of the broker, and nothing reaches the
// subscriber twice.
func TestFullDiskUnderAnExternalStore(t *testing.T) {
	const disk = 96 << 20
	mnt := vtptest.Tmpfs(t, disk)
	ext := startExternalNATS(t, filepath.Join(mnt, "jetstream"), disk)
	fillTheDiskUnder(t, mnt, func(c *broker.Config) {
		c.Bus.URL = ext.url()
		c.Bus.StoreDir = ""
		c.Bus.MaxStore = 32 << 20
	}, func(free func()) { free(); ext.restart(t) })
}

// externalNATS is a standalone nats-server with JetStream, in this process
// but reached over TCP like any external system. Unlike
// vtptest.NATSServer it can be restarted, and it outlives whatever the
// test starts after it (its one cleanup is registered first).
type externalNATS struct {
	opts *server.Options
	srv  *server.Server
}

// startExternalNATS starts a nats-server storing in dir on a free port of
// the loopback. Its file-store limit is disk, the size of dir's file
// system, so that the disk fills before JetStream's own accounting
// refuses.
func startExternalNATS(t *testing.T, dir string, disk int64) *externalNATS {
	t.Helper()
	e := &externalNATS{opts: &server.Options{
		Host:              "127.0.0.1",
		Port:              vtptest.FreePorts(t, 1)[0], // kept by a restart, as an operator's would be
		JetStream:         true,
		StoreDir:          dir,
		JetStreamMaxStore: disk,
		MaxPayload:        int32(vtp.DefaultMaxFrame + bus.HeaderRoom),
		NoSigs:            true,
		NoLog:             true,
	}}
	e.run(t)
	t.Cleanup(func() { e.srv.Shutdown(); e.srv.WaitForShutdown() })
	return e
}

func (e *externalNATS) run(t *testing.T) {
	t.Helper()
	srv, err := server.NewServer(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10*time.Second) || !srv.JetStreamEnabled() {
		srv.Shutdown()
		t.Fatal("external nats-server not ready")
	}
	e.srv = srv
}

func (e *externalNATS) url() string { return e.srv.ClientURL() }

// restart shuts the server down and starts it again on the same store and
// port.
func (e *externalNATS) restart(t *testing.T) {
	t.Helper()
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.run(t)
}
