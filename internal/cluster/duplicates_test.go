package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// Two ingress processes on one external nats-server, the same bytes
// submitted to both at the same moment, several times each, for many
// events at once: every event is acked exactly once, every other copy is
// refused as previously seen, and the stream holds exactly one record of
// it. (The 3-node cluster does the same in TestClusterSurvivesKills.)
func TestConcurrentDuplicatesOneServer(t *testing.T) {
	dir := t.TempDir()
	ports := vtptest.FreePorts(t, 4)
	n := &natsNode{name: "single", clientPort: ports[0], httpPort: ports[1]}
	conf := filepath.Join(dir, "nats.conf")
	cfg := fmt.Sprintf("server_name: single\nlisten: \"127.0.0.1:%d\"\nhttp: \"127.0.0.1:%d\"\njetstream { store_dir: %q }\n",
		n.clientPort, n.httpPort, filepath.Join(dir, "store"))
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	n.p = startProc(t, dir, "nats", filepath.Join(binDir, "nats-server"), "-c", conf)
	if err := n.p.waitLog("Server is ready", startWait); err != nil {
		t.Fatal(err)
	}
	inAddr := []string{fmt.Sprintf("127.0.0.1:%d", ports[2]), fmt.Sprintf("127.0.0.1:%d", ports[3])}
	for i, addr := range inAddr {
		node := fmt.Sprintf("ingress-%d", i+1)
		p := startProc(t, dir, node, filepath.Join(binDir, "comet"), "--receive", "tcp:"+strings.TrimPrefix(addr, "127.0.0.1:")+":interface=127.0.0.1",
			"--local-ivo", localIVO, "--node", node, "--nats", n.url())
		if err := p.waitLog(`msg="broker started"`, startWait); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect(n.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	template, err := os.ReadFile(filepath.Join(testdataDir, "bench", "gbm_flt_pos_v20.xml"))
	if err != nil {
		t.Fatal(err)
	}
	raceDuplicates(t, js, inAddr, template, ivornBase+"single-", 50, 3)
}

// raceDuplicates submits each of n events copies times to every ingress,
// all at once, and checks that each event got one ack and "Previously
// seen" naks for every other copy, and that the stream holds exactly one
// record of its bytes. It returns the events' ivorns.
func raceDuplicates(t *testing.T, js jetstream.JetStream, inAddr []string, template []byte, prefix string, n, copies int) []string {
	t.Helper()
	type reply struct {
		m   *vtp.Message
		err error
	}
	ivorns := make([]string, n)
	payloads := make([][]byte, n)
	replies := make([][]reply, n)
	for i := range n {
		ivorns[i] = fmt.Sprintf("%s%d", prefix, i)
		payloads[i] = vtptest.WithIVORN(template, ivorns[i])
		replies[i] = make([]reply, copies*len(inAddr))
	}
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		for k := range copies * len(inAddr) {
			wg.Go(func() {
				<-gate
				m, err := vtptest.Submit(inAddr[k%len(inAddr)], payloads[i], attemptTimeout)
				replies[i][k] = reply{m, err}
			})
		}
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		acks, seen := 0, 0
		for k, r := range replies[i] {
			switch m := r.m; {
			case r.err != nil || m == nil:
				t.Fatalf("event %d copy %d to %s: no receipt: %v", i, k, inAddr[k%len(inAddr)], r.err)
			case m.Role == vtp.RoleAck:
				acks++
			case m.Role == vtp.RoleNak && strings.Contains(m.Result, ingress.DuplicateReason):
				seen++
			default:
				t.Fatalf("event %d copy %d: %s %q", i, k, m.Role, m.Result)
			}
		}
		if acks != 1 || seen != len(replies[i])-1 {
			t.Fatalf("event %d: %d acks and %d previously-seen naks of %d copies, want 1 ack", i, acks, seen, len(replies[i]))
		}
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(bus.SubjectPrefix+"*.*.*."+bus.Digest(payloads[i])))
		if err != nil {
			t.Fatal(err)
		}
		var records uint64
		for _, c := range info.State.Subjects {
			records += c
		}
		if records != 1 {
			t.Fatalf("event %d: %d records on the stream, want 1 (%v)", i, records, info.State.Subjects)
		}
	}
	t.Logf("%d events, each sent %d times to each of %d ingresses at once (%d submissions in %v): one ack, one record each",
		n, copies, len(inAddr), n*copies*len(inAddr), time.Since(start).Round(time.Millisecond))
	return ivorns
}
