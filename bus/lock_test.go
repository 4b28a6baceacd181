package bus

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A store is served by one bus at a time: a second Open on the directory
// fails at once naming the holder, the first keeps working, and once it is
// closed the store can be opened again.
func TestStoreLock(t *testing.T) {
	dir := t.TempDir()
	first := openBus(t, Config{StoreDir: dir})
	ingest(t, first, testEvent(1), Accepted)

	start := time.Now()
	second, err := Open(ctxT(t), Config{StoreDir: dir, Node: "second", Logger: testLogger(t)})
	if err == nil {
		second.Close()
		t.Fatal("second Open on a store in use succeeded")
	}
	var locked *StoreLockedError
	if !errors.As(err, &locked) {
		t.Fatalf("second Open: %v, want a *StoreLockedError", err)
	}
	if locked.Dir != dir || locked.PID != os.Getpid() {
		t.Errorf("StoreLockedError = %+v, want Dir %s PID %d", locked, dir, os.Getpid())
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Errorf("error %q should name the directory and the PID", err)
	}
	if d := time.Since(start); d > holderWait+time.Second {
		t.Errorf("refusal took %v", d)
	}

	// The holder is unaffected.
	ingest(t, first, testEvent(2), Accepted)
	ingest(t, first, testEvent(1), Duplicate)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	again := openBus(t, Config{StoreDir: dir})
	ingest(t, again, testEvent(2), Duplicate)
	data, err := os.ReadFile(filepath.Join(dir, LockFile))
	if err != nil || strings.TrimSpace(string(data)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, %v; want this PID", data, err)
	}
}

// A lock file left by a dead process (its PID, no lock held) does not stop
// a start, and is rewritten with the new holder's PID.
func TestStoreLockStaleFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, LockFile), []byte("999999999\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	b := openBus(t, Config{StoreDir: dir})
	ingest(t, b, testEvent(1), Accepted)
	data, _ := os.ReadFile(filepath.Join(dir, LockFile))
	if got := strings.TrimSpace(string(data)); got != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q after start, want %d", got, os.Getpid())
	}
}
