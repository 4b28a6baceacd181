// Package tally counts the occurrences of a small enumeration, such as
// the reasons a role turns a peer away, with one atomic counter per value:
// the roles count on their hot paths without a lock, and tests, logs and
// metrics read a snapshot.
package tally

import "sync/atomic"

// Counts counts values of R, a uint8 enumeration. The zero value is ready
// to use; it must not be copied after first use.
type Counts[R ~uint8] struct {
	n [256]atomic.Uint64
}

// Add counts one r.
func (c *Counts[R]) Add(r R) { c.n[r].Add(1) }

// Get is how many r were counted.
func (c *Counts[R]) Get(r R) uint64 { return c.n[r].Load() }

// Snapshot returns the counts that are not zero.
func (c *Counts[R]) Snapshot() map[R]uint64 {
	out := make(map[R]uint64)
	for i := range c.n {
		if v := c.n[i].Load(); v > 0 {
			out[R(i)] = v
		}
	}
	return out
}

// Values lists an enumeration whose values run from 1 to last, in order:
// metrics export each value with its count, zero included, so that a rate
// exists from the start.
func Values[R ~uint8](last R) []R {
	out := make([]R, 0, last)
	for r := R(1); r <= last && r != 0; r++ {
		out = append(out, r)
	}
	return out
}
