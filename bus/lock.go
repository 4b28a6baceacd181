package bus

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// LockFile is the file in the store directory that the process running the
// embedded server holds an exclusive OS lock on (flock on Unix, LockFileEx
// on Windows) for as long as the bus is open. It holds that process's PID.
// Two servers on one JetStream store would both accept the same event and
// corrupt the store for the next start; the lock makes the second one fail
// at once instead. The kernel drops the lock when the process dies, however
// it dies, so a stale file never blocks a restart.
const LockFile = "comet.lock"

// holderWait bounds how long a process that found the store locked waits
// for the holder to write its PID (the holder writes it right after taking
// the lock).
const holderWait = time.Second

// StoreLockedError is returned by Open when another process holds the lock
// on the store directory.
type StoreLockedError struct {
	Dir string // the store directory
	PID int    // the holder's process ID; 0 if it could not be read
}

func (e *StoreLockedError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("store %s is in use by process %d", e.Dir, e.PID)
	}
	return fmt.Sprintf("store %s is in use by another process", e.Dir)
}

// storeLock is a held lock on a store directory.
type storeLock struct{ f *os.File }

// lockStore takes the lock on dir (which must exist) and records this
// process's PID in it, or returns a *StoreLockedError naming the holder.
func lockStore(dir string) (*storeLock, error) {
	path := filepath.Join(dir, LockFile)
	// No O_TRUNC: the holder's PID must stay readable while we find out
	// that we are second.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("bus: store lock: %w", err)
	}
	locked, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("bus: store lock %s: %w", path, err)
	}
	if !locked {
		f.Close()
		return nil, &StoreLockedError{Dir: dir, PID: lockHolder(path)}
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		unlock(f)
		f.Close()
		return nil, fmt.Errorf("bus: store lock %s: recording the PID: %w", path, err)
	}
	return &storeLock{f: f}, nil
}

// release drops the lock. The file stays: removing it would let a process
// that opened it just before lock a file no one else can find.
func (l *storeLock) release() error {
	if l == nil {
		return nil
	}
	return errors.Join(unlock(l.f), l.f.Close())
}

// lockHolder reads the PID recorded in path, waiting up to holderWait for
// one that belongs to a live process: the holder may have taken the lock
// but not yet replaced a dead predecessor's PID. 0 means unknown.
func lockHolder(path string) int {
	deadline := time.Now().Add(holderWait)
	for {
		data, err := os.ReadFile(path)
		if err == nil {
			if pid, err := strconv.Atoi(string(bytes.TrimSpace(data))); err == nil && pid > 0 && processAlive(pid) {
				return pid
			}
		}
		if time.Now().After(deadline) {
			return 0
		}
		time.Sleep(20 * time.Millisecond)
	}
}
