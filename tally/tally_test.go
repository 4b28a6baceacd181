package tally

import (
	"sync"
	"testing"
)

type reason uint8

const (
	first reason = iota + 1
	second
)

func TestCountsAddUpAcrossGoroutines(t *testing.T) {
	var c Counts[reason]
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				c.Add(first)
			}
			c.Add(second)
		})
	}
	wg.Wait()
	if c.Get(first) != 8000 || c.Get(second) != 8 {
		t.Fatalf("first %d, second %d", c.Get(first), c.Get(second))
	}
	snap := c.Snapshot()
	if len(snap) != 2 || snap[first] != 8000 || snap[second] != 8 {
		t.Fatalf("snapshot %v", snap)
	}
	c.Add(255) // every value of the type has a counter
	if c.Get(255) != 1 {
		t.Fatal("255 not counted")
	}
}

func TestValuesListsAnEnumeration(t *testing.T) {
	if got := Values(second); len(got) != 2 || got[0] != first || got[1] != second {
		t.Fatalf("Values(second) = %v", got)
	}
	if got := Values(reason(255)); len(got) != 255 || got[254] != 255 {
		t.Fatalf("Values(255) has %d values", len(got))
	}
}
