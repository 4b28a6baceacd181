package bus

import (
	"bytes"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchAuthors is the target concurrency: 32 authors submitting at once.
const benchAuthors = 32

// BenchmarkIngest measures the author's critical path (the digest, one
// conditional store, its acknowledgement) with unique 5.7 KB events (testdata copy of
// testdata/bench/gbm_flt_pos_v20.xml, ivorn made unique per op).
func BenchmarkIngest(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  Config
		tcp  bool
	}{
		{name: "inproc/conns=1", cfg: Config{Conns: 1}},
		{name: "inproc/conns=2", cfg: Config{Conns: 2}},
		{name: "inproc/conns=4", cfg: Config{Conns: 4}},
		{name: "tcp/conns=1", cfg: Config{Conns: 1}, tcp: true},
		{name: "tcp/conns=4", cfg: Config{Conns: 4}, tcp: true},
		{name: "inproc/conns=1/sync-always", cfg: Config{Conns: 1, SyncAlways: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := tc.cfg
			var bus *Bus
			if tc.tcp {
				srv := openBus(b, Config{Listen: "127.0.0.1:0", SyncAlways: cfg.SyncAlways})
				cfg.URL = srv.ClientURL()
			}
			bus = openBus(b, cfg)
			benchIngest(b, bus)
		})
	}
}

var benchRun atomic.Int64

func benchIngest(b *testing.B, bus *Bus) {
	base, err := os.ReadFile("../testdata/bench/gbm_flt_pos_v20.xml")
	if err != nil {
		b.Fatal(err)
	}
	const tail = `_45-956"`
	i := bytes.Index(base, []byte(tail))
	if i < 0 {
		b.Fatal("ivorn not found in the workload")
	}
	prefix, suffix := base[:i+len(tail)-1], base[i+len(tail)-1:]
	run := benchRun.Add(1)
	var seq atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration

	b.SetParallelism((benchAuthors + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		mine := make([]time.Duration, 0, 1024)
		for pb.Next() {
			n := seq.Add(1)
			p := make([]byte, 0, len(base)+24)
			p = append(p, prefix...)
			p = append(p, '_')
			p = strconv.AppendInt(p, run, 10)
			p = append(p, '_')
			p = strconv.AppendInt(p, n, 10)
			p = append(p, suffix...)
			ev := &Event{
				Payload: p,
				IVORN:   "ivo://nasa.gsfc.gcn/Fermi#GBM_Flt_Pos_" + strconv.FormatInt(n, 10),
				Role:    "observation", Origin: OriginAuthor, Peer: "127.0.0.1:40000",
				Signature: SignatureUnchecked, ReceivedAt: time.Now(),
			}
			t0 := time.Now()
			o, err := bus.Ingest(ctxT(b), ev)
			mine = append(mine, time.Since(t0))
			if err != nil || o != Accepted {
				b.Errorf("Ingest = %v, %v", o, err)
				return
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}
