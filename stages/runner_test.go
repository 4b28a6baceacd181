package stages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/comet-go/comet/bus"

	"github.com/comet-go/comet/internal/vtptest"
)

func TestPrintAndSave(t *testing.T) {
	log, _ := testLog(t)
	b := openBus(t, t.TempDir(), log)
	saveDir := t.TempDir()
	var out vtptest.SyncBuffer
	// Accepted after the bus opened but before the stages started: handled.
	early := testEvent("early", 0)
	ingest(t, b, early)
	r := start(t, b, Config{Actions: []string{"print-event", "save-event"}, SaveDir: saveDir, Stdout: &out, Logger: log})
	evs := []*bus.Event{early}
	for i := range 5 {
		ev := testEvent("ps", i)
		evs = append(evs, ev)
		ingest(t, b, ev)
	}
	waitFor(t, 10*time.Second, "every event printed and saved", func() bool {
		st := r.Stats()
		return st["print-event"].Handled == 6 && st["save-event"].Handled == 6
	})
	printed := out.String()
	for _, ev := range evs {
		if c := strings.Count(printed, string(ev.Payload)+"\n"); c != 1 {
			t.Errorf("%s printed %d times", ev.IVORN, c)
		}
		got, err := os.ReadFile(filepath.Join(saveDir, SaveName(ev.IVORN)))
		if err != nil || !bytes.Equal(got, ev.Payload) {
			t.Errorf("%s saved as %q, %v", ev.IVORN, got, err)
		}
	}
	if len(printed) != len(evs)+func() int {
		n := 0
		for _, ev := range evs {
			n += len(ev.Payload)
		}
		return n
	}() {
		t.Errorf("printed %d bytes of other things", len(printed))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
	default:
		t.Error("runner not done after Close")
	}
}

// A command failing on one event: retried, then dead-lettered, while the
// other events and the other stages keep flowing.
func TestCommandFailureDeadLettered(t *testing.T) {
	log, logs := testLog(t)
	b := openBus(t, t.TempDir(), log)
	dir := t.TempDir()
	cmd := script(t, dir, "handler.sh", `
f=$(mktemp "`+dir+`/in.XXXXXX")
cat > "$f"
if grep -q BAD "$f"; then echo "bad event here" >&2; exit 3; fi
echo "handled fine"
`)
	var out vtptest.SyncBuffer
	r := start(t, b, Config{Commands: []string{cmd}, Actions: []string{"print-event"}, Stdout: &out,
		MaxRetries: 2, CmdPool: 2, Logger: log})
	stage := CommandStageName(cmd)
	var good []*bus.Event
	bad := testEvent("BAD", 0)
	for i := range 3 {
		ev := testEvent("good", i)
		good = append(good, ev)
		ingest(t, b, ev)
		if i == 0 {
			ingest(t, b, bad)
		}
	}
	waitFor(t, 15*time.Second, "the bad event dead-lettered", func() bool {
		st := r.Stats()
		return st[stage].DeadLettered == 1 && st[stage].Handled == 3 && st["print-event"].Handled == 4
	})
	st := r.Stats()[stage]
	if st.Failures != 3 {
		t.Errorf("stats %+v: want 3 failed attempts (1 + 2 retries)", st)
	}
	ins := readAll(t, dir, "in.")
	if c := countEqual(ins, bad.Payload); c != 3 {
		t.Errorf("bad event run %d times, want 3", c)
	}
	for _, ev := range good {
		if c := countEqual(ins, ev.Payload); c != 1 {
			t.Errorf("%s given to the command %d times (exact bytes)", ev.IVORN, c)
		}
	}
	if !strings.Contains(out.String(), string(bad.Payload)) {
		t.Error("print-event held up by the failing command")
	}

	dls, err := b.DeadLetters(t.Context(), stage)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 {
		t.Fatalf("%d dead letters", len(dls))
	}
	dl := dls[0]
	reason := dl.Metadata.Get(middleware.ReasonForPoisonedKey)
	if !bytes.Equal(dl.Payload, bad.Payload) || dl.UUID != bad.SHA1 ||
		dl.Metadata.Get(bus.HeaderIVORN) != bad.IVORN || dl.Metadata.Get(middleware.PoisonedHandlerKey) != stage ||
		!strings.Contains(reason, cmd+" returned non-zero (3)") {
		t.Errorf("dead letter %q %v", dl.Payload, dl.Metadata)
	}
	if other, _ := b.DeadLetters(t.Context(), "print-event"); len(other) != 0 {
		t.Errorf("print-event has %d dead letters", len(other))
	}
	l := logs.String()
	for _, want := range []string{"returned non-zero (3)", "attempt=3", "dead-lettered", "External process said",
		"text=\"bad event here\"", "text=\"handled fine\""} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// Death by a signal and a timeout are failures; the timeout kills the
// command's whole process group.
func TestCommandSignalAndTimeout(t *testing.T) {
	log, _ := testLog(t)
	b := openBus(t, t.TempDir(), log)
	dir := t.TempDir()
	killed := script(t, dir, "killed.sh", "cat >/dev/null\nkill -TERM $$\nsleep 5\n")
	sleeper := script(t, dir, "sleeper.sh", "sleep 30 &\necho $! > "+dir+"/child.pid\nwait\n")
	r := start(t, b, Config{Commands: []string{killed, sleeper}, MaxRetries: -1,
		CmdTimeout: 500 * time.Millisecond, Logger: log})
	ev := testEvent("sig", 0)
	start := time.Now()
	ingest(t, b, ev)
	waitFor(t, 10*time.Second, "both dead-lettered", func() bool {
		st := r.Stats()
		return st[CommandStageName(killed)].DeadLettered == 1 && st[CommandStageName(sleeper)].DeadLettered == 1
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v: the timeout did not kill", d)
	}
	reason := func(cmd string) string {
		dls, err := b.DeadLetters(t.Context(), CommandStageName(cmd))
		if err != nil || len(dls) != 1 {
			t.Fatalf("dead letters %v, %v", dls, err)
		}
		return dls[0].Metadata.Get(middleware.ReasonForPoisonedKey)
	}
	if r := reason(killed); r != killed+" was killed by signal SIGTERM" {
		t.Errorf("reason %q", r)
	}
	if r := reason(sleeper); r != sleeper+" timed out after 500ms; its process group was killed" {
		t.Errorf("reason %q", r)
	}
	pidText, err := os.ReadFile(filepath.Join(dir, "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
	waitFor(t, 5*time.Second, "the command's child gone", func() bool {
		if syscall.Kill(pid, 0) != nil {
			return true
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(stat), ") Z ") // a zombie nobody reaped
	})
}

func TestCommandNotExecutable(t *testing.T) {
	log, _ := testLog(t)
	b := openBus(t, t.TempDir(), log)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.sh")
	os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644)
	// Refused at start, unless the command may appear later.
	var notExec *NotExecutableError
	if _, err := Start(t.Context(), b, Config{Commands: []string{plain}, Logger: log}); !errors.As(err, &notExec) || notExec.Path != plain {
		t.Fatalf("Start with a command that is not executable: %v", err)
	}
	r := start(t, b, Config{Commands: []string{plain}, AllowMissingCommands: true, MaxRetries: -1, Logger: log})
	ingest(t, b, testEvent("noexec", 0))
	waitFor(t, 10*time.Second, "dead-lettered", func() bool { return r.Stats()[CommandStageName(plain)].DeadLettered == 1 })
	dls, _ := b.DeadLetters(t.Context(), CommandStageName(plain))
	if len(dls) != 1 || !strings.HasPrefix(dls[0].Metadata.Get(middleware.ReasonForPoisonedKey), plain+" is not executable: ") {
		t.Fatalf("dead letters %v", dls)
	}
}

// With a pool of 2, never more than 2 runs of one command at once, and a
// slow command does not hold up another stage.
func TestCommandPool(t *testing.T) {
	log, _ := testLog(t)
	b := openBus(t, t.TempDir(), log)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "run"), 0o755)
	cmd := script(t, dir, "slow.sh", `
cat >/dev/null
touch "`+dir+`/run/$$"
ls "`+dir+`/run" | wc -l > "`+dir+`/count.$$"
sleep 0.5
rm "`+dir+`/run/$$"
`)
	var out vtptest.SyncBuffer
	r := start(t, b, Config{Commands: []string{cmd}, CmdPool: 2, Actions: []string{"print-event"}, Stdout: &out, Logger: log})
	const n = 6
	for i := range n {
		ingest(t, b, testEvent("pool", i))
	}
	waitFor(t, 3*time.Second, "print-event done while commands run", func() bool {
		return r.Stats()["print-event"].Handled == n
	})
	if h := r.Stats()[CommandStageName(cmd)].Handled; h >= n {
		t.Errorf("print-event finished only after the commands (%d handled)", h)
	}
	waitFor(t, 10*time.Second, "every command run", func() bool { return r.Stats()[CommandStageName(cmd)].Handled == n })
	maxSeen := 0
	for _, c := range readAll(t, dir, "count.") {
		k, _ := strconv.Atoi(strings.TrimSpace(string(c)))
		maxSeen = max(maxSeen, k)
	}
	if maxSeen != 2 {
		t.Errorf("at most %d runs at once, want exactly 2", maxSeen)
	}
}

// Events accepted while the stages are stopped are handled when they come
// back.
func TestStoppedStageCatchesUp(t *testing.T) {
	log, _ := testLog(t)
	b := openBus(t, t.TempDir(), log)
	saveDir := t.TempDir()
	cfg := Config{Actions: []string{"save-event"}, SaveDir: saveDir, Logger: log}
	r := start(t, b, cfg)
	var evs []*bus.Event
	for i := range 3 {
		ev := testEvent("before", i)
		evs = append(evs, ev)
		ingest(t, b, ev)
	}
	waitFor(t, 10*time.Second, "first events saved", func() bool { return r.Stats()["save-event"].Handled == 3 })
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		ev := testEvent("while-stopped", i)
		evs = append(evs, ev)
		ingest(t, b, ev)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(files(t, saveDir, "ivo__test.example_while")); n != 0 {
		t.Fatalf("%d events saved while stopped", n)
	}
	r = start(t, b, cfg)
	waitFor(t, 10*time.Second, "events accepted while stopped saved", func() bool {
		return r.Stats()["save-event"].Handled >= 5
	})
	for _, ev := range evs {
		if got, err := os.ReadFile(filepath.Join(saveDir, SaveName(ev.IVORN))); err != nil || !bytes.Equal(got, ev.Payload) {
			t.Errorf("%s: %v", ev.IVORN, err)
		}
	}
}

// An event whose command is cut short by a crash (the bus goes away with
// the command running) or by a stop is handled again after the restart.
func TestInterruptedHandlingRedelivered(t *testing.T) {
	log, _ := testLog(t)
	store := t.TempDir()
	b := openBus(t, store, log)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "runs"), 0o755)
	// Runs 1 and 2 hang; run 3 copies the event out.
	cmd := script(t, dir, "flaky.sh", `
touch "`+dir+`/runs/$$"
n=$(ls "`+dir+`/runs" | wc -l)
if [ "$n" -lt 3 ]; then touch "`+dir+`/hanging.$n"; sleep 30; fi
cat > "`+dir+`/out"
`)
	cfg := Config{Commands: []string{cmd}, Logger: log}
	r := start(t, b, cfg)
	ev := testEvent("crash", 0)
	ingest(t, b, ev)
	waitFor(t, 10*time.Second, "run 1", func() bool { return len(files(t, dir, "hanging.1")) == 1 })

	// Crash: the bus goes first, so nothing is acked or nacked.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	b = openBus(t, store, log)
	r = start(t, b, cfg)
	waitFor(t, 10*time.Second, "run 2 after the crash", func() bool { return len(files(t, dir, "hanging.2")) == 1 })

	// Stop while the command runs.
	stopAt := time.Now()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(stopAt); d > 5*time.Second {
		t.Errorf("Close took %v with a command running", d)
	}
	r = start(t, b, cfg)
	waitFor(t, 10*time.Second, "run 3 after the stop", func() bool { return r.Stats()[CommandStageName(cmd)].Handled == 1 })
	got, err := os.ReadFile(filepath.Join(dir, "out"))
	if err != nil || !bytes.Equal(got, ev.Payload) {
		t.Fatalf("out = %q, %v", got, err)
	}
	if n := len(files(t, filepath.Join(dir, "runs"), "")); n != 3 {
		t.Errorf("%d runs, want 3", n)
	}
	if dls, _ := b.DeadLetters(context.Background(), CommandStageName(cmd)); len(dls) != 0 {
		t.Errorf("a stop or a crash dead-lettered the event")
	}
}
