package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// One process per store: a second comet on the --eventdb of a running one
// exits 2 within 5 s with one line naming the directory and the holder's
// PID, while the first, under submissions all along, keeps acking; every
// event it acked reached its subscriber and is still recorded after a
// restart.
func TestSecondProcessOnOneStoreExitsNamingTheHolder(t *testing.T) {
	db, p1 := t.TempDir(), newPorts(t)
	first := startComet(t, db, p1)
	sub := dial(t, p1.castAddr())

	var (
		mu    sync.Mutex
		acked [][]byte
		fails []string
	)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ev := vtptest.WithIVORN(benchEvent(t), fmt.Sprintf("ivo://test.author/lock#%d", i))
			m, err := vtptest.Submit(p1.recvAddr(), ev, wait)
			mu.Lock()
			if err == nil && m != nil && m.Role == vtp.RoleAck {
				acked = append(acked, ev)
			} else {
				fails = append(fails, fmt.Sprintf("event %d: %+v, %v", i, m, err))
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	defer func() {
		select {
		case <-stopped:
		default:
			close(stop)
			<-stopped
		}
	}()
	if !vtptest.WaitUntil(wait, func() bool { return count() >= 5 }) {
		t.Fatal("the first process acks nothing")
	}

	start := time.Now()
	second := launch(t, "second comet", "--receive", fmt.Sprintf("tcp:%d:interface=127.0.0.1", freePort(t)),
		"--broadcast", fmt.Sprintf("tcp:%d:interface=127.0.0.1", freePort(t)),
		"--local-ivo", localIVO, "--eventdb", db, "--node", "second")
	select {
	case <-second.exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("the second process still runs after 5 s:\n%s", second.out.String())
	}
	t.Logf("second process refused after %v", time.Since(start))
	if code := second.cmd.ProcessState.ExitCode(); code != 2 {
		t.Errorf("second process: exit status %d, want 2", code)
	}
	want := fmt.Sprintf("comet: --eventdb %s is in use by process %d; one process per store: give this one its own --eventdb\n",
		db, first.cmd.Process.Pid)
	if got := second.out.String(); got != want {
		t.Errorf("second process printed\n%q\nwant\n%q", got, want)
	}

	// The first keeps serving.
	before := count()
	if !vtptest.WaitUntil(wait, func() bool { return count() >= before+5 }) {
		t.Fatal("the first process stopped acking after the second tried its store")
	}
	close(stop)
	<-stopped
	if len(fails) > 0 {
		t.Fatalf("the first process refused or did not answer submissions: %v", fails)
	}
	if !sub.WaitEvents(len(acked), wait) {
		t.Fatalf("subscriber got %d of %d acked events", sub.Count(), len(acked))
	}

	// Nothing acked is lost: after a clean stop and a restart on the same
	// store, every acked event is still recorded (a resubmission is naked
	// as previously seen) and the store opens without complaint.
	first.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-first.exited:
	case <-time.After(wait):
		t.Fatal("first process did not exit after SIGTERM")
	}
	if code := first.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("first process: exit status %d after SIGTERM", code)
	}
	restarted := startComet(t, db, p1)
	for i, ev := range acked {
		m := submit(t, p1.recvAddr(), ev)
		if m == nil || m.Role != vtp.RoleNak || m.Result != "Event rejected: Previously seen by this broker" {
			t.Fatalf("acked event %d after the restart: %+v", i, m)
		}
	}
	if out := restarted.out.String(); strings.Contains(out, "corrupt") {
		t.Errorf("restarted store reports corruption:\n%s", out)
	}
}

// The default store lies under the system temporary directory: starting
// on it says so, naming the flag that gives a durable one.
func TestTemporaryStoreWarns(t *testing.T) {
	tmp, p := t.TempDir(), newPorts(t)
	pr := newProc(execComet("--receive", fmt.Sprintf("tcp:%d:interface=127.0.0.1", p.recv),
		"--local-ivo", localIVO, "--node", "e2e"))
	pr.cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	pr.start(t, "comet", pr.out)
	pr.waitListening(t, p.recvAddr(), 20*time.Millisecond)

	store := filepath.Join(tmp, "comet-eventdb")
	var warning string
	for _, l := range strings.Split(pr.out.String(), "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "temporary") {
			warning = l
		}
	}
	if warning == "" || !strings.Contains(warning, "--eventdb") || !strings.Contains(warning, store) {
		t.Errorf("no warning naming the temporary store %s and --eventdb:\n%s", store, pr.out.String())
	}
	if _, err := os.Stat(filepath.Join(store, "comet.lock")); err != nil {
		t.Errorf("the default store is not locked: %v", err)
	}
}
