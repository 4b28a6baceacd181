package vtptest

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Logger is a slog.Logger whose records at level and above go to t.Log,
// shown when the test fails (or with -v).
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(LogWriter{t}, &slog.HandlerOptions{Level: level}))
}

// LogWriter writes each Write, one log record, to t.Log.
type LogWriter struct{ T testing.TB }

func (w LogWriter) Write(p []byte) (int, error) {
	w.T.Helper()
	w.T.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// SyncBuffer is a bytes.Buffer that a process or goroutine may write while
// the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
