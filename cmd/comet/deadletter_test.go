package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/comet-go/comet/bus"
)

// deadLetter is one dead letter to put on the bus.
type deadLetter struct{ stage, ivorn string }

// storeDeadLetters writes dead letters into the embedded store in dir, as
// stages that gave up would, and closes it: the broker has stopped.
func storeDeadLetters(t *testing.T, dir string, dls ...deadLetter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{StoreDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pub, err := b.DeadLetterPublisher()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dls {
		p := fmt.Appendf(nil, `<voe:VOEvent ivorn=%q role="test" version="2.0"/>`, d.ivorn)
		m := message.NewMessage(bus.Digest(p), p)
		m.Metadata.Set(bus.HeaderIVORN, d.ivorn)
		m.Metadata.Set("reason_poisoned", "exit status 3")
		if err := pub.Publish(bus.DeadLetterSubject(d.stage), m); err != nil {
			t.Fatal(err)
		}
	}
}

// deadletter runs "comet deadletter ARGS" and returns its output.
func deadletter(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := runDeadletter(args, &out, &errOut); code != 0 {
		t.Fatalf("comet deadletter %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String()
}

// listed is the (stage, ivorn) of each row of a list, in order.
func listed(out string) []deadLetter {
	var rows []deadLetter
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines[1 : len(lines)-1] { // less the header and the count
		f := strings.Fields(l)
		rows = append(rows, deadLetter{stage: f[1], ivorn: f[2]})
	}
	return rows
}

// On a stopped broker's --eventdb, list and replay take --stage and
// --ivorn together: only the dead letters of that stage and that event
// are listed or handed back, and the others stay.
func TestDeadletterOnAStoppedBrokersStoreByStageAndIVORN(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "eventdb")
	a, b := "ivo://test.example/dl#a", "ivo://test.example/dl#b"
	storeDeadLetters(t, dir,
		deadLetter{"cmd-notify", a}, deadLetter{"cmd-notify", b}, deadLetter{"save-event", a})

	if got, want := listed(deadletter(t, "list", "--eventdb", dir)), []deadLetter{{"cmd-notify", a}, {"cmd-notify", b}, {"save-event", a}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("list: %v, want %v", got, want)
	}
	if got, want := listed(deadletter(t, "list", "--eventdb", dir, "--ivorn", a)), []deadLetter{{"cmd-notify", a}, {"save-event", a}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("list --ivorn %s: %v, want %v", a, got, want)
	}
	if got, want := listed(deadletter(t, "list", "--eventdb", dir, "--stage", "cmd-notify", "--ivorn", b)), []deadLetter{{"cmd-notify", b}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("list --stage cmd-notify --ivorn %s: %v, want %v", b, got, want)
	}
	if out := deadletter(t, "replay", "--eventdb", dir, "--stage", "cmd-notify", "--ivorn", a); !strings.HasPrefix(out, "replayed 1 dead letters (cmd-notify: 1)") {
		t.Errorf("replay --stage cmd-notify --ivorn %s: %q", a, out)
	}
	if got, want := listed(deadletter(t, "list", "--eventdb", dir)), []deadLetter{{"cmd-notify", b}, {"save-event", a}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("list after the replay: %v, want %v", got, want)
	}
	if out := deadletter(t, "replay", "--eventdb", dir, "--ivorn", "ivo://test.example/dl#none"); out != "no dead letter to replay\n" {
		t.Errorf("replay of an ivorn without dead letters: %q", out)
	}
}
