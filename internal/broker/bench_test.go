package broker_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/tlstest"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/signature"
	"github.com/comet-go/comet/vtp"
)

// benchBroker is the broker of BenchmarkSubmit and BenchmarkFanout, as
// operators run it: with its HTTP endpoint, scraped every second (fifteen
// times Prometheus's default rate), so that the cost of metrics is in the
// figures.
func benchBroker(b *testing.B) *broker.Broker {
	br := start(b, func(c *broker.Config) { c.Logger = quietLogger(); withHTTP(c) })
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if resp, err := http.Get("http://" + br.HTTPAddr().String() + "/metrics"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
	}()
	b.Cleanup(func() { close(stop); <-done })
	return br
}

// BenchmarkSubmit measures accepted events per second through a real
// socket into the in-process broker with its durable embedded bus: parse,
// schema check, one conditional store on the bus, ack (metrics on: see
// benchBroker). Run with -cpu and -benchtime; the parallelism is
// GOMAXPROCS*16 concurrent authors.
func BenchmarkSubmit(b *testing.B) {
	br := benchBroker(b)
	tmpl := benchEvent(b)
	var seq atomic.Int64
	run := time.Now().UnixNano()
	b.SetBytes(int64(len(tmpl)))
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ev := vtptest.WithIVORN(tmpl, fmt.Sprintf("ivo://bench.author/submit#%d-%d", run, seq.Add(1)))
			m, err := vtptest.Submit(recvAddr(br), ev, 20*time.Second)
			if err != nil || m == nil || m.Role != vtp.RoleAck {
				b.Errorf("submission: %+v %v", m, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkFanout measures delivery to 50 subscribers: each op is one
// event accepted and delivered to every subscriber (metrics on).
func BenchmarkFanout(b *testing.B) {
	br := benchBroker(b)
	const nsubs = 50
	subs := make([]*vtptest.Subscriber, nsubs)
	for i := range subs {
		s, err := vtptest.DialCounting(castAddr(br))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(s.Close)
		subs[i] = s
	}
	if !waitUntil(10*time.Second, func() bool { return len(br.Stats().Subscribers) == nsubs }) {
		b.Fatal("subscribers did not connect")
	}
	tmpl := benchEvent(b)
	run := time.Now().UnixNano()
	var seq atomic.Int64
	b.ResetTimer()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ev := vtptest.WithIVORN(tmpl, fmt.Sprintf("ivo://bench.author/fanout#%d-%d", run, seq.Add(1)))
			if m, err := vtptest.Submit(recvAddr(br), ev, 20*time.Second); err != nil || m == nil || m.Role != vtp.RoleAck {
				b.Errorf("submission: %+v %v", m, err)
				return
			}
		}
	})
	for _, s := range subs {
		if !s.WaitEvents(b.N, time.Minute) {
			b.Fatalf("subscriber got %d of %d", s.Count(), b.N)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*nsubs)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkSubmitSigned measures --sender-auth: the same small event
// (the shared vectors' unsigned event with a fresh ivorn), signed with the
// author's RSA-2048 key and verified before the previously-seen check
// ("sender-auth"), against the signed bytes accepted without checking
// ("no-auth"). The events are signed before the timer starts.
func BenchmarkSubmitSigned(b *testing.B) {
	const vectors = "../../testdata/openpgp/"
	trust, err := signature.NewTrust(vectors+"author.pub.asc", "")
	if err != nil {
		b.Fatal(err)
	}
	signer, err := signature.LoadSigner(vectors+"author.sec.asc", "486658CA5AAD0680E4D75E445EFA82579802FF2D", vectors+"passphrase.txt")
	if err != nil {
		b.Fatal(err)
	}
	tmpl, err := os.ReadFile(vectors + "event-unsigned.xml")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		verify func([]byte, string) (string, error)
	}{{"sender-auth", trust.EventSigner}, {"no-auth", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			br := start(b, func(c *broker.Config) {
				c.Logger = quietLogger()
				c.Receiver.VerifySignature = bc.verify
			})
			run := time.Now().UnixNano()
			events := make([][]byte, b.N)
			for i := range events {
				ev := vtptest.WithIVORN(tmpl, fmt.Sprintf("ivo://example.org/author#bench-%d-%d", run, i))
				if events[i], err = signer.Sign(ev); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ev := events[next.Add(1)-1]
					m, err := vtptest.Submit(recvAddr(br), ev, 20*time.Second)
					if err != nil || m == nil || m.Role != vtp.RoleAck {
						b.Errorf("submission: %+v %v", m, err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkSubmitTLS is the cost of TLS per submitted event: one
// connection per event, as VTP has it, so every submission over TLS makes
// a full handshake (ECDSA P-256 certificates, TLS 1.3). Each op is one
// event submitted and acked, by 32 concurrent authors, through:
//
//	null/tcp, null/tls  a null receiver: read the frame, write an ack,
//	                    close (the ceiling; nothing parsed or stored)
//	broker/tcp          the broker on tcp: (BenchmarkSubmit)
//	broker/tls          the broker on ssl:, authors on tls:
//	broker/mtls         the same with clientCA= and client certificates
//
// cpu-µs/event is the process's CPU time (user + system) per event:
// authors, receiver and bus together, since all run in this process.
// Interleave the variants with -count to compare them in one run.
func BenchmarkSubmitTLS(b *testing.B) {
	p := tlstest.NewPKI(b)
	tmpl := benchEvent(b)
	client := p.Client("bench-author")
	for _, v := range []struct {
		name, listen string
		null         bool
		authorParams string
	}{
		{"null/tcp", "tcp:0:interface=127.0.0.1", true, ""},
		{"null/tls", p.SSL("bench-null", ""), true, ""},
		{"broker/tcp", "tcp:0:interface=127.0.0.1", false, ""},
		{"broker/tls", p.SSL("bench", ""), false, ""},
		{"broker/mtls", p.SSL("bench-mtls", ":clientCA="+p.ClientCAFile), false, client},
	} {
		b.Run(v.name, func(b *testing.B) {
			ep := listenOn(b, v.listen)
			var addr string
			if v.null {
				addr = nullReceiver(b, ep)
			} else {
				br := start(b, func(c *broker.Config) {
					c.Logger = quietLogger()
					c.Receive, c.Broadcast = []endpoint.Endpoint{ep}, nil
				})
				addr = recvAddr(br)
			}
			host, port, _ := net.SplitHostPort(addr)
			desc := "tcp:" + host + ":" + port
			if ep.TLS != nil {
				desc = p.Target(addr, v.authorParams)
			}
			d := dialer(b, desc)
			run := time.Now().UnixNano()
			var seq atomic.Int64
			b.SetParallelism(16)
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ev := vtptest.WithIVORN(tmpl, fmt.Sprintf("ivo://bench.author/tls#%d-%d", run, seq.Add(1)))
					m, err := vtptest.SubmitVia(d, ev, 20*time.Second)
					if err != nil || m == nil || m.Role != vtp.RoleAck {
						b.Errorf("submission: %+v %v", m, err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
		})
	}
}

// nullReceiver serves ep as a receiver that does nothing but VTP: it
// reads one frame (after the TLS handshake on an ssl: endpoint), answers
// with an ack and closes. It returns the address.
func nullReceiver(b *testing.B, ep endpoint.Endpoint) string {
	ln, err := ep.Listen()
	if err != nil {
		b.Fatal(err)
	}
	ack := vtp.Ack("ivo://bench.author/tls#null", localIVO, time.Now())
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				deadline := time.Now().Add(20 * time.Second)
				if tl, ok := ln.(*endpoint.TLSListener); ok {
					if conn, err = tl.Handshake(conn, deadline); err != nil {
						return
					}
				}
				conn.SetDeadline(deadline)
				if _, err := vtp.NewFrameReader(conn, 0).ReadFrame(); err == nil {
					vtp.WriteFrame(conn, ack)
				}
			})
		}
	})
	return ln.Addr().String()
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
