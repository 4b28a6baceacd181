package observe

import (
	"context"
	"testing"
	"time"
)

type emptySource struct{}

func (emptySource) Status(context.Context, Want) *Status { return &Status{} }

// BenchmarkTimings is what metrics add to each accepted event: one
// observation in each of the two histograms.
func BenchmarkTimings(b *testing.B) {
	t := NewMetrics(emptySource{}).Timings()
	d := 1500 * time.Microsecond
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t.Stored(d)
			t.Acked(d)
		}
	})
}
