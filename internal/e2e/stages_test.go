package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// script writes an executable shell script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "handler.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitFile(t *testing.T, path string, cond func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		data, _ := os.ReadFile(path)
		if cond(string(data)) {
			return string(data)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never satisfied the condition; it holds:\n%s", path, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SIGKILL of the broker while a --cmd runs: after the restart the event is
// handled (at least once).
func TestCmdRunsAgainAfterSIGKILLMidCommand(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "runs.log")
	cmd := script(t, fmt.Sprintf(`sum=$(sha1sum | cut -c1-40)
echo "start $sum" >> %[1]s
sleep 2
echo "done $sum" >> %[1]s
`, log))
	db, p := t.TempDir(), newPorts(t)
	c := startComet(t, db, p, "--cmd", cmd)
	ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/e2e#cmd-kill")
	if m := submit(t, p.recvAddr(), ev); m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("submission: %+v", m)
	}
	waitFile(t, log, func(s string) bool { return strings.Contains(s, "start ") })
	c.kill(t)
	time.Sleep(2500 * time.Millisecond) // an orphaned command would have finished by now
	if data, _ := os.ReadFile(log); strings.Contains(string(data), "done") && runtime.GOOS == "linux" {
		t.Fatalf("the command outlived the broker killed by SIGKILL:\n%s", data)
	}
	startComet(t, db, p, "--cmd", cmd)
	out := waitFile(t, log, func(s string) bool { return strings.Contains(s, "done ") })
	if !strings.Contains(out, "done "+sha1hex(ev)) {
		t.Fatalf("handled something else:\n%s", out)
	}
}

// A command that always fails is retried the configured number of times,
// then dead-lettered, while the broker keeps serving.
func TestFailingCmdIsRetriedThenDeadLettered(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "runs.log")
	cmd := script(t, fmt.Sprintf("echo run >> %s\necho 'cannot cope' >&2\nexit 3\n", log))
	db, p := t.TempDir(), newPorts(t)
	c := startComet(t, db, p, "--cmd", cmd, "--stage-retries", "2")
	s := dial(t, p.castAddr())
	ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/e2e#cmd-fail")
	if m := submit(t, p.recvAddr(), ev); m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("submission: %+v", m)
	}
	if !s.WaitEvents(1, wait) {
		t.Fatal("a failing handler held up the broadcast")
	}
	waitFile(t, log, func(s string) bool { return strings.Count(s, "run") == 3 }) // 1 + 2 retries
	deadline := time.Now().Add(wait)
	for !strings.Contains(c.out.String(), "dead-letter") {
		if time.Now().After(deadline) {
			t.Fatalf("no dead-letter log line:\n%s", c.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(c.out.String(), "3") {
		t.Errorf("exit status not logged:\n%s", c.out.String())
	}
	time.Sleep(500 * time.Millisecond)
	if data, _ := os.ReadFile(log); strings.Count(string(data), "run") != 3 {
		t.Fatalf("ran %d times, want 3", strings.Count(string(data), "run"))
	}
	// Still serving.
	ev2 := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/e2e#cmd-fail-2")
	if m := submit(t, p.recvAddr(), ev2); m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("broker stopped serving: %+v", m)
	}
	if !s.WaitEvents(2, wait) {
		t.Fatal("second event not broadcast")
	}
}

// A process with only handler options and --nats is a stage worker: it
// handles the events another process accepts.
func TestStageWorkerProcess(t *testing.T) {
	natsPort := freePort(t)
	db, p := t.TempDir(), newPorts(t)
	startComet(t, db, p, "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort))
	dir := t.TempDir()
	log := filepath.Join(dir, "worker.log")
	cmd := script(t, fmt.Sprintf("sha1sum | cut -c1-40 >> %s\n", log))
	w := launch(t, "worker", "--nats", fmt.Sprintf("nats://127.0.0.1:%d", natsPort), "--cmd", cmd, "--node", "worker")
	deadline := time.Now().Add(wait)
	for !strings.Contains(w.out.String(), "stage") {
		select {
		case <-w.exited:
			t.Fatalf("worker exited:\n%s", w.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker not running:\n%s", w.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/e2e#worker")
	if m := submit(t, p.recvAddr(), ev); m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("submission: %+v", m)
	}
	waitFile(t, log, func(s string) bool { return strings.Contains(s, sha1hex(ev)) })
}
