package stages

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/comet-go/comet/bus"
)

// SaveEvent is the save-event stage: each event's raw bytes in a file of
// its own in a directory, named by SaveName, never overwriting one.
type SaveEvent struct {
	dir string
}

// NewSaveEvent saves into dir (made absolute now; default: the working
// directory). The directory is created when an event is saved, if
// missing.
func NewSaveEvent(dir string) (*SaveEvent, error) {
	if dir == "" {
		dir = "."
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("save-event directory %q: %w", dir, err)
	}
	return &SaveEvent{dir: abs}, nil
}

// Name is "save-event".
func (*SaveEvent) Name() string { return ActionSaveEvent }

// Handle saves the event.
func (s *SaveEvent) Handle(_ context.Context, ev *bus.Event) error {
	_, err := s.Save(ev.IVORN, ev.Payload)
	return err
}

// SaveName is Comet's file name for an event (docs/handlers.md §5): the
// IVORN without a leading ".", every "/" and "\" replaced by "_", every
// character other than an ASCII letter, digit, "_" or "." deleted.
func SaveName(ivorn string) string {
	ivorn = strings.TrimPrefix(ivorn, ".") // only the first
	var b strings.Builder
	b.Grow(len(ivorn))
	for i := 0; i < len(ivorn); i++ {
		switch c := ivorn[i]; {
		case c == '/' || c == '\\':
			b.WriteByte('_')
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.':
			b.WriteByte(c)
		}
	}
	name := b.String()
	if len(name) > MaxSaveNameLen {
		// Too long for common file systems (255 bytes with the collision
		// suffixes): keep the start, readable, and make the rest unique.
		sum := sha1.Sum([]byte(ivorn))
		name = name[:MaxSaveNameLen-17] + "_" + hex.EncodeToString(sum[:8])
	}
	return name
}

// MaxSaveNameLen caps save-event file names (Comet's rule has no cap, and
// an ivorn can make a name longer than any file system allows).
const MaxSaveNameLen = 200

// Save writes payload to a new file named SaveName(ivorn), with "_"
// appended as often as needed to get a name not in use, and returns the
// name. The file appears complete or not at all: the bytes go to a
// temporary file in the directory, synced, which is then linked to the
// final name (a link never replaces an existing file, so two saves of one
// IVORN, in this process or another, never overwrite each other). On a
// file system without hard links it falls back to creating the final name
// exclusively and writing into it.
func (s *SaveEvent) Save(ivorn string, payload []byte) (string, error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return "", fmt.Errorf("save-event: %w", err)
	}
	tmp, err := os.CreateTemp(s.dir, ".comet-save-*.tmp")
	if err != nil {
		return "", fmt.Errorf("save-event: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(payload)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("save-event: %w", err)
	}
	name := SaveName(ivorn)
	for range MaxSaveCollisions {
		if name == "" || name == "." || name == ".." { // the directory itself or its parent: taken
			name += "_"
			continue
		}
		path := filepath.Join(s.dir, name)
		err := os.Link(tmp.Name(), path)
		if errors.Is(err, fs.ErrExist) {
			name += "_"
			continue
		}
		if err != nil {
			// No hard links here? Create the name exclusively instead.
			f, cerr := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if errors.Is(cerr, fs.ErrExist) {
				name += "_"
				continue
			}
			if cerr != nil {
				return "", fmt.Errorf("save-event: %w", err)
			}
			_, werr := f.Write(payload)
			if werr == nil {
				werr = f.Sync()
			}
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				os.Remove(path)
				return "", fmt.Errorf("save-event: %w", werr)
			}
		}
		syncDir(s.dir)
		return name, nil
	}
	return "", fmt.Errorf("save-event: %s and %d names after it are all taken", SaveName(ivorn), MaxSaveCollisions)
}

// syncDir makes a new directory entry durable, where the system allows.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
