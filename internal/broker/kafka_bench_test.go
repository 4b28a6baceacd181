package broker_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/kafkatest"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/kafka"
	"github.com/comet-go/comet/voevent"
	"github.com/comet-go/comet/vtp"
)

// BenchmarkRelayLatency measures the time from an event leaving its
// source to its arrival at a VTP subscriber of the broker, at 100 events
// per second (one op = one event, paced every 10 ms), with the durable
// embedded bus: "kafka", produced to a GCN-style topic (kfake on loopback,
// SCRAM-SHA-512, zstd, no linger) and read by --kafka; "vtp-upstream",
// sent by an upstream VTP broker to --subscribe. The same broker process
// serves both, one after the other. "kafka-direct" is the ceiling of the
// Kafka path: a plain consumer of the topic in the benchmark process,
// without the broker (produce to fetch). It reports the p50 and p99 in ms.
func BenchmarkRelayLatency(b *testing.B) {
	c := kafkatest.Start(b, kafkatest.Options{Topics: []string{"gcn.classic.voevent.LATENCY"}})
	up, err := vtptest.StartUpstream(vtptest.GCNUpstream)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(up.Close)
	target, _ := endpoint.ParseClient(up.Addr(), 8099)
	br := start(b, func(cfg *broker.Config) {
		cfg.Logger = quietLogger()
		cfg.Subscribe = []endpoint.Endpoint{target}
		cfg.KafkaIn = &broker.KafkaIn{
			Conn: kafka.Config{Brokers: c.BrokerList(), SASL: kafka.SASLScramSHA512, User: kafkatest.User,
				PasswordFile: kafkatest.PasswordFile(b, kafkatest.Password)},
			Source: ingress.KafkaConfig{Topics: []string{"gcn.classic.voevent.LATENCY"}, Group: "latency", Start: ingress.KafkaStartLatest},
		}
	})
	sub := dialTimed(b, castAddr(br))
	if !up.WaitFor(10*time.Second, func(u *vtptest.Upstream) bool { return u.Connected() == 1 }) {
		b.Fatal("the subscription did not connect")
	}
	prod := c.Client(kgo.ProducerLinger(0))
	direct := &timedSub{arrived: map[string]time.Time{}}
	reader := c.Client(kgo.ConsumeTopics("gcn.classic.voevent.LATENCY"), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))
	rctx, stopReader := context.WithCancel(context.Background())
	defer stopReader()
	go func() {
		for rctx.Err() == nil {
			fs := reader.PollFetches(rctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				if info, err := voevent.Inspect(r.Value, voevent.Options{}); err == nil {
					direct.mu.Lock()
					direct.arrived[info.IVORN] = now
					direct.mu.Unlock()
				}
			})
		}
	}()
	time.Sleep(2 * time.Second) // the consumer group settles

	tmpl := benchEvent(b)
	run := time.Now().UnixNano()
	for _, path := range []string{"kafka", "vtp-upstream", "kafka-direct"} {
		b.Run(path, func(b *testing.B) {
			sent := make(map[string]time.Time, b.N)
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			b.ResetTimer()
			for i := range b.N {
				<-tick.C
				ivorn := fmt.Sprintf("ivo://bench.gcn/%s#%d-%d", path, run, i)
				ev := vtptest.WithIVORN(tmpl, ivorn)
				sent[ivorn] = time.Now()
				if path != "vtp-upstream" {
					prod.Produce(context.Background(), &kgo.Record{Topic: "gcn.classic.voevent.LATENCY", Value: ev}, func(_ *kgo.Record, err error) {
						if err != nil {
							b.Error(err)
						}
					})
				} else {
					up.Send(ev)
				}
			}
			at := sub
			if path == "kafka-direct" {
				at = direct
			}
			lat := at.latencies(b, sent)
			b.StopTimer()
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// timedSub is a VTP subscriber that notes when each event arrives, acks
// it and answers keep-alives.
type timedSub struct {
	mu      sync.Mutex
	arrived map[string]time.Time
}

func dialTimed(b *testing.B, addr string) *timedSub {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	s := &timedSub{arrived: map[string]time.Time{}}
	go func() {
		fr := vtp.NewFrameReader(conn, 1<<20)
		for {
			payload, err := fr.ReadFrame()
			if err != nil {
				return
			}
			now := time.Now()
			info, err := voevent.Inspect(payload, voevent.Options{})
			if err != nil {
				return
			}
			var reply []byte
			if voevent.IsVOEventRole(info.Role) {
				s.mu.Lock()
				s.arrived[info.IVORN] = now
				s.mu.Unlock()
				reply = vtp.Ack(info.IVORN, "ivo://bench/subscriber", now)
			} else if m, err := vtp.ParseTransport(payload); err == nil {
				switch m.Role {
				case vtp.RoleIAmAlive:
					reply = vtp.IAmAlive(m.Origin, "ivo://bench/subscriber", now)
				case vtp.RoleAuthenticate:
					reply = vtp.AuthenticateReply(m.Origin, "ivo://bench/subscriber", nil, now)
				}
			}
			if reply != nil && vtp.WriteFrame(conn, reply) != nil {
				return
			}
		}
	}()
	return s
}

// latencies waits for every sent event and returns the sorted delays.
func (s *timedSub) latencies(b *testing.B, sent map[string]time.Time) []time.Duration {
	deadline := time.Now().Add(time.Minute)
	for {
		s.mu.Lock()
		var out []time.Duration
		for ivorn, at := range sent {
			if got, ok := s.arrived[ivorn]; ok {
				out = append(out, got.Sub(at))
			}
		}
		s.mu.Unlock()
		if len(out) == len(sent) {
			slices.Sort(out)
			return out
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d events arrived", len(out), len(sent))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
