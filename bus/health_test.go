package bus

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/comet-go/comet/internal/vtptest"
)

// A full disk under the embedded store: the bus says so within a second,
// refuses at once while it lasts, and takes writes again within seconds
// of the space being freed, with everything stored before still there.
func TestStoreFullRecovers(t *testing.T) {
	mnt := vtptest.Tmpfs(t, 64<<20)
	b := openBus(t, Config{StoreDir: filepath.Join(mnt, "store"), MaxStore: 16 << 20})
	for i := range 50 {
		ingest(t, b, testEvent(i), Accepted)
	}
	free := vtptest.Fill(t, mnt)
	start := time.Now()
	// The next store hits the full disk.
	_, err := b.Ingest(ctxT(t), testEvent(50))
	if !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("Ingest on a full disk: %v; want ErrStoreUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Ingest on a full disk answered after %v", d)
	}
	if b.Healthy() {
		t.Fatal("bus healthy on a full disk")
	}
	st := b.StoreStatus()
	if st.Healthy || st.Store != b.cfg.StoreDir || st.Free < 0 || !errors.Is(st.Err, ErrStoreUnavailable) {
		t.Fatalf("StoreStatus = %+v", st)
	}
	for i := 51; i < 60; i++ {
		t0 := time.Now()
		if _, err := b.Ingest(ctxT(t), testEvent(i)); !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("Ingest while failing: %v", err)
		}
		if d := time.Since(t0); d > 100*time.Millisecond {
			t.Errorf("Ingest while failing took %v", d)
		}
	}
	free()
	if !waitUntil(10*time.Second, b.Healthy) {
		t.Fatalf("store not healthy 10 s after space was freed: %+v", b.StoreStatus())
	}
	for i := 50; i < 60; i++ {
		ingest(t, b, testEvent(i), Accepted)
	}
	for i := range 50 {
		ingest(t, b, testEvent(i), Duplicate)
	}
}

// Under load (publishers and several health checks competing for two
// cores) the embedded server's health of JetStream stays healthy as the
// bus reads it: the server's own check can say now and then that it is not
// ready (it gives itself a millisecond), and the bus must not take that for
// a failing store. Every event is accepted and the store never turns
// failing.
func TestServerHealthUnderLoad(t *testing.T) {
	b := openBus(t, Config{})
	ctx, cancel := context.WithTimeout(ctxT(t), 3*time.Second)
	defer cancel()
	const publishers = 16
	var (
		wg       sync.WaitGroup
		accepted atomic.Int64
		failures = make(chan error, publishers+1)
	)
	for p := range publishers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				out, err := b.Ingest(context.Background(), testEvent(p<<20|i))
				if err != nil || out != Accepted {
					failures <- fmt.Errorf("publisher %d, event %d: %v, %v", p, i, out, err)
					return
				}
				accepted.Add(1)
			}
		})
	}
	// Several checkers at once, to meet the load's worst moments.
	const checkers = 4
	var checks, falseFailures atomic.Int64
	var firstFailure atomic.Pointer[error]
	for range checkers {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := b.serverHealth(); err != nil {
					falseFailures.Add(1)
					firstFailure.CompareAndSwap(nil, &err)
				}
				checks.Add(1)
			}
		})
	}
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
	t.Logf("%d events accepted, %d health checks", accepted.Load(), checks.Load())
	if n := falseFailures.Load(); n > 0 {
		t.Errorf("%d of %d health checks under load failed a healthy store; the first: %v", n, checks.Load(), *firstFailure.Load())
	}
	if !b.Healthy() {
		t.Errorf("store turned failing under load: %+v", b.StoreStatus())
	}
}

// A healthy external store is not probed: the bus writes its probe
// record there only when an Ingest went unanswered or while the store is
// failing, so an idle broker adds no writes to a shared system.
func TestHealthyExternalStoreIsNotProbed(t *testing.T) {
	srv := vtptest.NATSServer(t, &server.Options{Port: -1, StoreDir: t.TempDir(), MaxPayload: int32(DefaultMaxPayload + HeaderRoom)})
	b := openBus(t, Config{URL: srv.ClientURL()})
	ingest(t, b, testEvent(0), Accepted)
	before, err := b.stream.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * StoreCheckInterval)
	after, err := b.stream.Info(ctxT(t), jetstream.WithSubjectFilter(SubjectPrefix+"_._._."+ProbeSHA1))
	if err != nil {
		t.Fatal(err)
	}
	if after.State.LastSeq != before.State.LastSeq || len(after.State.Subjects) != 0 {
		t.Errorf("an idle bus wrote to a healthy external store: last sequence %d -> %d, probe subjects %v",
			before.State.LastSeq, after.State.LastSeq, after.State.Subjects)
	}
	if !b.Healthy() {
		t.Errorf("store not healthy: %+v", b.StoreStatus())
	}
}

// An external server shuts its JetStream down (as nats-server does after
// some store errors) under a bus, then an operator enables it again: the
// bus refuses events at once while it is gone, without waiting for an
// answer, and takes writes again by itself, with everything stored before
// still there. So it does when the whole server is restarted.
func TestExternalJetStreamShutDownRecovers(t *testing.T) {
	dir := t.TempDir()
	// A port below the ephemeral range, kept by the restart: while the
	// server is down, the client's retries could otherwise take it.
	port := vtptest.FreePorts(t, 1)[0]
	srv := vtptest.NATSServer(t, &server.Options{Port: port, StoreDir: dir, MaxPayload: int32(DefaultMaxPayload + HeaderRoom)})
	b := openBus(t, Config{URL: srv.ClientURL()})
	for i := range 20 {
		ingest(t, b, testEvent(i), Accepted)
	}
	jsCfg := srv.JetStreamConfig()
	if err := srv.ShutdownJetStream(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := b.Ingest(ctxT(t), testEvent(20)); !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("Ingest with JetStream shut down: %v; want ErrStoreUnavailable", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("Ingest with JetStream shut down answered after %v", d)
	}
	if st := b.StoreStatus(); st.Healthy || st.Free != -1 || !strings.Contains(st.Store, "external NATS") {
		t.Fatalf("StoreStatus with JetStream shut down = %+v", st)
	}
	for i := 21; i < 25; i++ {
		if _, err := b.Ingest(ctxT(t), testEvent(i)); !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("Ingest while failing: %v", err)
		}
	}

	// Enabled again as the server started it: on its store directory
	// (the running config names the "jetstream" directory under it).
	jsCfg.StoreDir = dir
	if err := srv.EnableJetStream(jsCfg); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	if !waitUntil(10*time.Second, b.Healthy) {
		t.Fatalf("store not healthy 10 s after JetStream came back: %+v", b.StoreStatus())
	}
	t.Logf("healthy again %v after JetStream came back", time.Since(back).Round(time.Millisecond))
	for i := 20; i < 25; i++ {
		ingest(t, b, testEvent(i), Accepted)
	}
	for i := range 20 {
		ingest(t, b, testEvent(i), Duplicate)
	}

	// The whole server is restarted on its port and store: a lost
	// connection is not a store fault, and the bus stores again once it
	// has reconnected.
	srv.Shutdown()
	srv.WaitForShutdown()
	srv = vtptest.NATSServer(t, &server.Options{Port: port, StoreDir: dir, MaxPayload: int32(DefaultMaxPayload + HeaderRoom)})
	defer b.Close() // before the server's cleanup stops it
	back = time.Now()
	ingest(t, b, testEvent(25), Accepted)
	t.Logf("stored again %v after the server restarted", time.Since(back).Round(time.Millisecond))
	for i := range 25 {
		ingest(t, b, testEvent(i), Duplicate)
	}
	if !b.Healthy() {
		t.Errorf("store failing after the server restarted: %+v", b.StoreStatus())
	}
}
