package bus

import (
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"strconv"
	"strings"
)

// Sizing the store. One limit, Config.MaxStore (--max-store), bounds
// everything the bus keeps: the dead-letter stream and the stages' replay
// stream get 1/6 of it each, the event stream (events and their
// previously-seen records) the other 2/3. The stages' durable consumers
// (a few KiB of state each) are part of the room kept beside the limit
// (StoreRoom).
const (
	// DefaultMaxStore is 1 GiB of events, 256 MiB of dead letters and
	// 256 MiB of replays.
	DefaultMaxStore = 1536 << 20
	// StageShare: the dead-letter and the replay streams each get
	// 1/StageShare of MaxStore; the event stream has the rest.
	StageShare = 6
	// MinStoreEvents is the least room the event stream may have, in
	// messages of the largest size (MaxPayload plus HeaderRoom).
	MinStoreEvents = 4
)

// StoreRoom is what the embedded server needs on the store's file system
// beyond MaxStore: its own files (stream indexes, consumer state, the
// meta data), blocks not yet compacted after deletions, and a margin, so
// that a store at its limit never fills the disk itself: a stream's
// blocks are at most 8 MiB, and its newest block, and one being compacted,
// may hold deleted messages. It is 1/8 of MaxStore and at least
// StoreRoomMin.
const StoreRoomMin = 32 << 20

// storeRoom is the room needed beside maxStore (see StoreRoomMin).
func storeRoom(maxStore int64) int64 { return max(maxStore/8, StoreRoomMin) }

// streamLimits splits MaxStore between the event, dead-letter and replay
// streams.
func (c *Config) streamLimits() (events, deadLetters, replays int64) {
	deadLetters, replays = c.MaxStore/StageShare, c.MaxStore/StageShare
	return c.MaxStore - deadLetters - replays, deadLetters, replays
}

// MinMaxStore is the smallest MaxStore for events of up to maxPayload
// bytes: the event stream's share holds MinStoreEvents of the largest
// messages.
func MinMaxStore(maxPayload int) int64 {
	return int64(MinStoreEvents*(maxPayload+HeaderRoom)) * StageShare / (StageShare - 2)
}

func (c *Config) minMaxStore() int64 { return MinMaxStore(c.MaxPayload) }

// StoreSpaceError is an embedded store whose file system cannot hold
// MaxStore: Free bytes are free there and the store already takes Used,
// while MaxStore plus Room are needed.
type StoreSpaceError struct {
	Dir      string
	MaxStore int64
	Room     int64
	Free     int64
	Used     int64
}

// Fits is the largest MaxStore that the file system can hold now.
func (e *StoreSpaceError) Fits() int64 {
	have := e.Free + e.Used
	// MaxStore + max(MaxStore/8, StoreRoomMin) <= have
	return max(min(have-StoreRoomMin, have*8/9), 0)
}

func (e *StoreSpaceError) Error() string {
	return fmt.Sprintf("bus: store %s: a store of %s needs %s on its file system (%s kept beside the limit), "+
		"but %s are free and the store takes %s; free space, or make the store at most %s",
		e.Dir, FormatSize(e.MaxStore), FormatSize(e.MaxStore+e.Room), FormatSize(e.Room),
		FormatSize(e.Free), FormatSize(e.Used), FormatSize(e.Fits()))
}

// checkStoreSpace refuses a store that its file system cannot hold: the
// free space plus what the store already takes must be MaxStore plus
// storeRoom. An unknown free space (no statfs) passes.
func (c *Config) checkStoreSpace() error {
	free, _, err := diskSpace(c.StoreDir)
	if err != nil {
		return nil
	}
	used := dirSize(c.StoreDir)
	room := storeRoom(c.MaxStore)
	if free+used < c.MaxStore+room {
		return &StoreSpaceError{Dir: c.StoreDir, MaxStore: c.MaxStore, Room: room, Free: free, Used: used}
	}
	return nil
}

// dirSize is what the files under dir take (their sizes; best effort).
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// freeSpace is the free space where dir is, -1 when unknown.
func freeSpace(dir string) int64 {
	free, _, err := diskSpace(dir)
	if err != nil {
		return -1
	}
	return free
}

// sizeUnits are the suffixes ParseSize knows, as powers of 1024 (as
// nats-server's own configuration reads them).
var sizeUnits = []struct {
	suffixes []string
	mult     int64
}{
	{[]string{"TIB", "TB", "T"}, 1 << 40},
	{[]string{"GIB", "GB", "G"}, 1 << 30},
	{[]string{"MIB", "MB", "M"}, 1 << 20},
	{[]string{"KIB", "KB", "K"}, 1 << 10},
	{[]string{"B", ""}, 1},
}

// ParseSize reads a size such as 64MB, 1.5GiB, 512k or 1048576 (bytes).
// K, M, G and T, with or without B or iB, are powers of 1024, as in
// nats-server's configuration.
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	for _, u := range sizeUnits {
		for _, suf := range u.suffixes {
			num, ok := strings.CutSuffix(t, suf)
			if !ok || num == "" {
				continue
			}
			num = strings.TrimSpace(num)
			if n, err := strconv.ParseInt(num, 10, 64); err == nil {
				if n < 0 || n > (1<<62)/u.mult {
					return 0, fmt.Errorf("size %q out of range", s)
				}
				return n * u.mult, nil
			}
			f, err := strconv.ParseFloat(num, 64)
			if err != nil || f < 0 || f*float64(u.mult) > 1<<62 {
				return 0, fmt.Errorf("size %q: want a number and a unit such as 64MB or 1GiB", s)
			}
			return int64(f * float64(u.mult)), nil
		}
	}
	return 0, fmt.Errorf("size %q: want a number and a unit such as 64MB or 1GiB", s)
}

// FormatSize writes n bytes for people, to two decimals at most: 1.25
// GiB, 64 MiB, 512 B.
func FormatSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64) + " " + units[i]
}

// StoreTooSmallError is a MaxStore that leaves a stream no room for
// MinStoreEvents of the largest messages.
type StoreTooSmallError struct {
	MaxStore, Min int64
	MaxPayload    int
}

func (e *StoreTooSmallError) Error() string {
	return fmt.Sprintf("a store of %s is too small for events of up to %d bytes: it needs at least %s (%d of the largest messages on the event stream and room for dead letters)",
		FormatSize(e.MaxStore), e.MaxPayload, FormatSize(e.Min), MinStoreEvents)
}
