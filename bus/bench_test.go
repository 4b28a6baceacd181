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

// BenchmarkStoreBytes measures what the store takes per event, for sizing
// --max-store (docs/bus.md §4.2): 2,000 unique 5.7 KB GCN events (the
// workload of BenchmarkIngest) are stored, then their payloads expire and
// delete markers take their place. It reports the stream's bytes per event
// and per marker (what MaxStore bounds) and the store directory's bytes per
// event (what the disk holds; the blocks that expiry empties are compacted
// or removed later, within the room kept beside MaxStore). Run it with
// -benchtime=1x; it takes a few seconds of waiting for the markers.
func BenchmarkStoreBytes(b *testing.B) {
	const events = 2000
	for range b.N {
		bus := openBus(b, Config{StreamMaxAge: 2 * time.Second, SeenTTL: time.Hour})
		dir := bus.cfg.StoreDir
		before := dirSize(dir)
		benchIngestN(b, bus, events)
		info, err := bus.stream.Info(ctxT(b))
		if err != nil {
			b.Fatal(err)
		}
		streamEvent := float64(info.State.Bytes) / events
		diskEvent := float64(dirSize(dir)-before) / events
		// Every payload expires and leaves a marker.
		deadline := time.Now().Add(time.Minute)
		for {
			if info, err = bus.stream.Info(ctxT(b)); err != nil {
				b.Fatal(err)
			}
			if info.State.Msgs == events && info.State.Bytes < events*1000 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("markers not in place: %+v", info.State)
			}
			time.Sleep(100 * time.Millisecond)
		}
		b.ReportMetric(streamEvent, "stream-B/event")
		b.ReportMetric(diskEvent, "disk-B/event")
		b.ReportMetric(float64(info.State.Bytes)/events, "stream-B/marker")
	}
}

// benchIngestN stores n unique events of BenchmarkIngest's workload.
func benchIngestN(b *testing.B, bus *Bus, n int) {
	base, err := os.ReadFile("../testdata/bench/gbm_flt_pos_v20.xml")
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		p := bytes.Replace(base, []byte(`_45-956"`), []byte("_45-956_"+strconv.Itoa(i)+`"`), 1)
		ev := &Event{Payload: p, IVORN: "ivo://nasa.gsfc.gcn/Fermi#GBM_Flt_Pos_" + strconv.Itoa(i),
			Role: "observation", Origin: OriginAuthor, Peer: "127.0.0.1:40000",
			Signature: SignatureUnchecked, ReceivedAt: time.Now()}
		if o, err := bus.Ingest(ctxT(b), ev); err != nil || o != Accepted {
			b.Fatalf("Ingest = %v, %v", o, err)
		}
	}
}
