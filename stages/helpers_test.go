package stages

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/bus"

	"github.com/comet-go/comet/internal/vtptest"
)

// testLog captures everything at debug level and shows it if the test
// fails.
func testLog(t testing.TB) (*slog.Logger, *vtptest.SyncBuffer) {
	buf := &vtptest.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("STAGES_TEST_LOG") != "" {
			t.Log("log:\n" + buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func openBus(t testing.TB, dir string, log *slog.Logger) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{StoreDir: dir, Node: "test-node", Logger: log})
	if err != nil {
		t.Fatalf("bus.Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func testEvent(tag string, i int) *bus.Event {
	ivorn := fmt.Sprintf("ivo://test.example/%s#%d", tag, i)
	p := []byte(fmt.Sprintf(`<?xml version="1.0"?><voe:VOEvent ivorn=%q role="test" version="2.0"><What>%s %d</What></voe:VOEvent>`, ivorn, tag, i))
	return &bus.Event{Payload: p, SHA1: bus.Digest(p), IVORN: ivorn, Role: "test",
		Origin: bus.OriginAuthor, Peer: "127.0.0.1:5555", Signature: bus.SignatureUnchecked,
		ReceivedAt: time.Now()}
}

func ingest(t testing.TB, b *bus.Bus, ev *bus.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := b.Ingest(ctx, ev)
	if err != nil || out != bus.Accepted {
		t.Fatalf("Ingest = %v, %v", out, err)
	}
}

func start(t testing.TB, b Source, cfg Config) *Runner {
	t.Helper()
	if cfg.RetryInitial == 0 {
		cfg.RetryInitial, cfg.RetryMax = 10*time.Millisecond, 40*time.Millisecond
	}
	r, err := Start(context.Background(), b, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// script writes an executable shell script into dir.
func script(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// files lists the names in dir starting with prefix.
func files(t testing.TB, dir, prefix string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func readAll(t testing.TB, dir, prefix string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, n := range files(t, dir, prefix) {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func countEqual(bs [][]byte, want []byte) int {
	n := 0
	for _, b := range bs {
		if bytes.Equal(b, want) {
			n++
		}
	}
	return n
}
