// Package cluster runs Comet scaled out, as real processes, on a real
// three-node NATS JetStream cluster: two ingress, two egress and one stage
// process started at once against replicated (R3) storage, under load,
// while one ingress, one egress and one NATS node are killed with SIGKILL.
// The package holds only this test.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/comet-go/comet/internal/loadgen"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/stages"
)

const (
	testdataDir = "../../testdata"
	localIVO    = "ivo://test.broker/cluster"
	ivornBase   = "ivo://test.author/cluster#"

	// Load: a steady paced rate, so that a stall after a kill shows as a
	// gap and the machine (2 cores, 8 processes) keeps headroom. The
	// backlog built up while the bus elects new leaders (about 5 s) stays
	// well under the 1024 events an egress lets a subscriber have unacked
	// before dropping it (egress.DefaultMaxInFlight).
	loadRate     = 100 // events/s offered
	loadDuration = 24 * time.Second
	authors      = 32

	attemptTimeout = 25 * time.Second // one submission attempt, connect to receipt (the broker answers within its 20 s --receive-timeout)
	eventDeadline  = 45 * time.Second // an author starts no new attempt at an event after this
	startWait      = 60 * time.Second // generous: 8 processes start on 2 cores, under -race
	settleWait     = 60 * time.Second // deliveries after the last ack
	restartDelay   = 2 * time.Second  // the killed egress comes back after this
	egressGrace    = 3 * time.Second
	// maxStall bounds how long acks and deliveries may stop after a NATS
	// node dies: new Raft leaders took 6.6 to 9.1 s here; 20 s is generous,
	// and below the 30 s a pull request lost with its consumer's leader
	// costs with nats.go's default heartbeat (15 s, missed twice).
	maxStall = 20 * time.Second
)

var binDir string

// TestMain builds comet and nats-server once, without the race detector
// even when this test runs with it: they are the system under test, not
// the test, and -race would make them several times slower.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "comet-cluster-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	env := buildEnv()
	for _, args := range [][]string{
		{"build", "-o", dir + string(os.PathSeparator), "./cmd/comet"},
		{"build", "-o", filepath.Join(dir, "nats-server"), "github.com/nats-io/nats-server/v2"},
	} {
		build := exec.Command("go", args...)
		build.Dir = "../.."
		build.Env = env
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "go %s: %v\n", strings.Join(args, " "), err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildEnv is the environment without -race in GOFLAGS.
func buildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if v, ok := strings.CutPrefix(kv, "GOFLAGS="); ok {
			var keep []string
			for _, f := range strings.Fields(v) {
				if f != "-race" && f != "-race=true" {
					keep = append(keep, f)
				}
			}
			kv = "GOFLAGS=" + strings.Join(keep, " ")
		}
		env = append(env, kv)
	}
	return env
}

// kill is one SIGKILL during the load.
type kill struct {
	what string
	at   time.Time
}

func TestClusterSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test: 3 nats-server and 5 comet processes for about a minute")
	}
	template, err := os.ReadFile(filepath.Join(testdataDir, "bench", "gbm_flt_pos_v20.xml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	saveDir := filepath.Join(dir, "saved")
	t0 := time.Now()

	// --- A 3-node JetStream cluster. n1 is the node that will die.
	nodes := startNATSCluster(t, dir)
	victim := nodes[0]
	allURLs := strings.Join([]string{nodes[0].url(), nodes[1].url(), nodes[2].url()}, ",")
	t.Logf("NATS cluster n1..n3 up with a meta leader in %v", time.Since(t0).Round(time.Millisecond))

	// --- Two ingress, two egress, one stage: started at once, so that
	// all five provision the stream concurrently. Where
	// each connects is chosen so that the kill of n1 covers both ways a
	// client meets a node failure:
	//   - ingress-1 and the stage know only n1's URL (like a client given
	//     one Service address): their connection dies with n1 and they
	//     must reconnect to a node they learnt from the cluster;
	//   - the egresses know only n2 and n3: their connection survives,
	//     but the leaders of their consumers (moved to n1 below) die, so
	//     a pull request waiting on n1 is silently gone.
	//   - ingress-2 gets every URL (it is killed before n1 anyway).
	ports := vtptest.FreePorts(t, 4)
	inAddr := []string{fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])}
	outAddr := []string{fmt.Sprintf("127.0.0.1:%d", ports[2]), fmt.Sprintf("127.0.0.1:%d", ports[3])}
	bus := func(urls string) []string { return []string{"--nats", urls, "--replicas", "3"} }
	ep := func(port int) string { return fmt.Sprintf("tcp:%d:interface=127.0.0.1", port) }
	comet := filepath.Join(binDir, "comet")
	egressArgs := func(i int, node string) []string {
		return append([]string{"--broadcast", ep(ports[2+i]), "--local-ivo", localIVO, "--node", node,
			"--broadcast-test-interval", "0", "--broadcast-grace", egressGrace.String()},
			bus(nodes[1].url()+","+nodes[2].url())...)
	}
	t1 := time.Now()
	ing := []*proc{
		startProc(t, dir, "ingress-1", comet, append([]string{"--receive", ep(ports[0]), "--local-ivo", localIVO,
			"--node", "ingress-1"}, bus(victim.url())...)...),
		startProc(t, dir, "ingress-2", comet, append([]string{"--receive", ep(ports[1]), "--local-ivo", localIVO,
			"--node", "ingress-2"}, bus(allURLs)...)...),
	}
	egr := []*proc{
		startProc(t, dir, "egress-a", comet, egressArgs(0, "a")...),
		startProc(t, dir, "egress-b", comet, egressArgs(1, "b")...),
	}
	stage := startProc(t, dir, "stage", comet, append([]string{"--save-event", "--save-event-directory", saveDir,
		"--node", "stage"}, bus(victim.url())...)...)
	for _, p := range append(append(append([]*proc{}, ing...), egr...), stage) {
		if err := p.waitLog(`msg="broker started"`, startWait); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("5 comet processes started concurrently and provisioned in %v", time.Since(t1).Round(time.Millisecond))

	nc, err := nats.Connect(allURLs, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	checkProvisioned(t, js)

	// --- Subscribers: two on each egress.
	var subs [2][]*subscriber
	for e := range 2 {
		for k := range 2 {
			s, err := dialSubscriber(fmt.Sprintf("%c%d", 'a'+e, k+1), outAddr[e], startWait)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.close)
			subs[e] = append(subs[e], s)
		}
	}

	// --- Every Raft leader that matters moves to n1, so that its death
	// is the worst case (the stream and all three consumers
	// elect new leaders at once) and the same in every run.
	t2 := time.Now()
	moveLeaders(t, nc, js, victim.name)
	t.Logf("leaders of COMET_EVENTS, egress-a, egress-b and stage-save-event moved to %s in %v",
		victim.name, time.Since(t2).Round(time.Millisecond))

	// --- The same event sent to both ingresses at once, twice to each,
	// for 20 events together: one ack and three "Previously seen" naks
	// each, whichever wins; one record on the stream; broadcast once.
	const pairs = 20
	pairIVORNs := raceDuplicates(t, js, inAddr, template, ivornBase+"pair-", pairs, 2)
	t3 := time.Now()
	for _, s := range append(append([]*subscriber{}, subs[0]...), subs[1]...) {
		ok := waitUntil(settleWait, func() bool {
			for _, iv := range pairIVORNs {
				if s.has(iv) == 0 {
					return false
				}
			}
			return true
		})
		if !ok {
			t.Fatalf("subscriber %s did not receive every pair event", s.name)
		}
	}
	t.Logf("%d events sent to both ingresses at once: all delivered %v after the last", pairs, time.Since(t3).Round(time.Millisecond))

	// --- Load through both ingresses, with staggered kills, driven by the
	// repo's load tool in-process: its authors (workers) start half on
	// each ingress and, when one gives no receipt, retry the same bytes
	// through the other and stay there.
	n := int(loadRate * loadDuration / time.Second)
	results := make([]loadgen.Result, n) // by seq; each written once, by the worker that submitted it
	var loadRep *loadgen.Report
	var loadErr error
	loadDone := make(chan struct{})
	loadCtx, cancelLoad := context.WithCancel(context.Background())
	defer func() { cancelLoad(); <-loadDone }() // if the test ends early
	loadStart := time.Now()
	go func() {
		defer close(loadDone)
		loadRep, loadErr = loadgen.Run(loadCtx, loadgen.Config{
			ReceiveAddrs: inAddr,
			Events:       n,
			Concurrency:  authors,
			Rate:         loadRate,
			Template:     template,
			IVORNPrefix:  ivornBase + "load", // event seq is IVORNPrefix-seq: loadIVORN(seq)
			Timeout:      attemptTimeout,
			RetryFor:     eventDeadline,
			OnResult:     func(r loadgen.Result) { results[r.Seq] = r },
		})
	}()

	var kills []kill
	var restarted []*subscriber
	var restartedAt time.Time
	killAt := func(frac float64) { time.Sleep(time.Until(loadStart.Add(time.Duration(frac * float64(loadDuration))))) }

	killAt(0.20)
	ing[1].kill()
	kills = append(kills, kill{"ingress-2", time.Now()})

	killAt(0.35)
	egr[1].kill()
	kills = append(kills, kill{"egress-b", time.Now()})
	for _, s := range subs[1] {
		if !waitUntil(10*time.Second, s.closed) {
			t.Errorf("subscriber %s still connected to the killed egress", s.name)
		}
	}
	time.Sleep(restartDelay)
	egr[1] = startProc(t, dir, "egress-b", comet, egressArgs(1, "b")...)
	if err := egr[1].waitLog(`msg="broker started"`, startWait); err != nil {
		t.Fatal(err)
	}
	restartedAt = time.Now()
	for k := range 2 {
		s, err := dialSubscriber(fmt.Sprintf("b%d'", k+1), outAddr[1], startWait)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.close)
		restarted = append(restarted, s)
	}
	// n1 dies once the restarted egress is replaying, not while it waits
	// out its grace period: its relay looks its consumer up when the
	// grace ends, and if that lookup times out (no consumer leader during
	// an election), relay.Run returns an error and the process exits.
	if !waitUntil(startWait, func() bool { return len(restartedArrivals(restarted)) > 0 }) {
		t.Fatalf("the restarted egress-b never delivered an event:\n%s", tail(egr[1].log(), 20))
	}

	killAt(0.60)
	clients, _ := connz(victim)
	leaders := leadersOn(t, js, victim.name)
	victim.p.kill()
	kills = append(kills, kill{fmt.Sprintf("NATS %s (clients: %s; leader of: %s)", victim.name,
		strings.Join(clients, ", "), leaders), time.Now()})

	<-loadDone
	loadEnd := time.Now()
	if loadRep == nil {
		t.Fatalf("load: %v", loadErr)
	}
	if loadErr != nil {
		t.Errorf("load: %v", loadErr)
	}

	// --- Who must have what.
	var acked, naks, failedFirst, gaveUp, retriedAcked int
	var ackTimes []time.Time
	var lastAck time.Time
	seenNaks := map[int]string{}
	for seq := range results {
		r := &results[seq]
		switch r.Outcome {
		case loadgen.Acked:
			acked++
			ackTimes = append(ackTimes, r.At)
			if r.At.After(lastAck) {
				lastAck = r.At
			}
			if r.FailedAttempts() > 0 {
				retriedAcked++
			}
		case loadgen.Naked:
			naks++
			seenNaks[seq] = r.Nak
		default: // given up, or never submitted
			gaveUp++
		}
		if r.FailedAttempts() > 0 {
			failedFirst++
		}
	}
	slices.SortFunc(ackTimes, func(a, b time.Time) int { return a.Compare(b) })
	if acked != loadRep.Accepted || naks != loadRep.Naked+loadRep.NakedAfterRetry || failedFirst != loadRep.Retried ||
		gaveUp != loadRep.GaveUp+n-loadRep.Submitted {
		t.Errorf("the load's per-event results (acked %d, naked %d, retried %d, gave up %d) disagree with its report:\n%s",
			acked, naks, failedFirst, gaveUp, loadRep)
	}

	// Surviving egress subscribers and the stage: every acked event.
	// Restarted egress: every event submitted after its kill.
	egressKill := kills[1].at
	isAcked := func(seq int) bool { return results[seq].Outcome == loadgen.Acked }
	mustA := isAcked
	mustB := func(seq int) bool { return isAcked(seq) && results[seq].Start.After(egressKill) }
	missing := func(s *subscriber, must func(int) bool) []int {
		var out []int
		for seq := range results {
			if must(seq) && s.has(loadIVORN(seq)) == 0 {
				out = append(out, seq)
			}
		}
		return out
	}
	stageMissing := func() (miss []int, dups int) {
		names := savedNames(t, saveDir)
		for seq := range results {
			if isAcked(seq) && !names[stages.SaveName(loadIVORN(seq))] {
				miss = append(miss, seq)
			}
		}
		for name := range names {
			if strings.HasSuffix(name, "_") {
				dups++
			}
		}
		return miss, dups
	}
	settled := waitUntil(settleWait, func() bool {
		for _, s := range subs[0] {
			if len(missing(s, mustA)) > 0 {
				return false
			}
		}
		for _, s := range restarted {
			if len(missing(s, mustB)) > 0 {
				return false
			}
		}
		m, _ := stageMissing()
		return len(m) == 0
	})
	settle := time.Since(loadEnd)

	// --- Report.
	inWindow := 0
	for _, at := range ackTimes {
		if !at.After(loadStart.Add(loadDuration)) {
			inWindow++
		}
	}
	t.Logf("load (internal/loadgen): %d events offered at %d/s for %v through 2 ingresses by %d authors (each retries through the other ingress when one gives no receipt, for up to %v)",
		n, loadRate, loadDuration, authors, eventDeadline)
	t.Logf("  acked %d (%.1f events/s during the load; the last ack %v after it ended), naked %d, gave up %d; %d needed a retry (%d of them acked); %d attempts got no receipt (%d timed out); pacing fell behind by up to %v",
		acked, float64(inWindow)/loadDuration.Seconds(), lastAck.Sub(loadStart.Add(loadDuration)).Round(time.Millisecond),
		naks, gaveUp, failedFirst, retriedAcked, loadRep.Errors, loadRep.Timeouts, loadRep.ScheduleLagMax.Round(time.Millisecond))
	if l := loadRep.AckLatency; l.Count > 0 {
		t.Logf("  submission latency (first attempt to ack): p50 %v, p99 %v, max %v",
			l.P50.Round(100*time.Microsecond), l.P99.Round(100*time.Microsecond), l.Max.Round(time.Millisecond))
	}
	for _, e := range loadRep.ErrorSamples {
		t.Logf("  failed attempt: %s", e)
	}
	for seq, reason := range seenNaks {
		// Not an acked event, so not a loss by the test's rules; but if it
		// was never delivered, the author was told "seen" about an event
		// the broker never stored.
		r := results[seq]
		t.Logf("  naked %s after %d failed attempt(s) (last: %s): %q; delivered to a1 %d times, saved by the stage: %v",
			loadIVORN(seq), r.FailedAttempts(), r.LastErr, reason, subs[0][0].has(loadIVORN(seq)),
			savedNames(t, saveDir)[stages.SaveName(loadIVORN(seq))])
	}
	t.Logf("  settle after the last submission: %v (all delivered: %v)", settle.Round(time.Millisecond), settled)

	// Recovery after each kill.
	_, arrA := subs[0][0].snapshot()
	var arrTimesA []time.Time
	for _, a := range arrA {
		if strings.HasPrefix(a.ivorn, ivornBase+"load-") {
			arrTimesA = append(arrTimesA, a.at)
		}
	}
	for _, k := range kills {
		t.Logf("kill %s at +%v: acks %s; deliveries to a1 %s", k.what, k.at.Sub(loadStart).Round(time.Millisecond),
			stall(ackTimes, k.at), stall(arrTimesA, k.at))
	}
	t.Logf("acks per second from the start of the load: %v", perSecond(ackTimes, loadStart))
	t.Logf("deliveries to a1 per second:                 %v", perSecond(arrTimesA, loadStart))
	{
		// Authors of the killed ingress: time from the kill to their
		// next ack, through the other ingress.
		var worst time.Duration
		for seq := range results {
			r := &results[seq]
			if r.Outcome == loadgen.Acked && r.FailedAttempts() > 0 && r.Start.Before(kills[0].at.Add(5*time.Second)) && r.At.After(kills[0].at) {
				worst = max(worst, r.At.Sub(kills[0].at))
			}
		}
		t.Logf("ingress-2 kill: authors failed over to ingress-1; the last of their retried events was acked %v after the kill", worst.Round(time.Millisecond))
	}
	if len(restarted) > 0 {
		_, arrB := restarted[0].snapshot()
		first := time.Time{}
		for _, a := range arrB {
			if strings.HasPrefix(a.ivorn, ivornBase+"load-") {
				first = a.at
				break
			}
		}
		if !first.IsZero() {
			t.Logf("egress-b restarted %v after its kill (same --node); its new subscribers got the first event %v after the kill (grace %v)",
				restartedAt.Sub(egressKill).Round(time.Millisecond), first.Sub(egressKill).Round(time.Millisecond), egressGrace)
		}
	}

	// --- Assertions.
	if acked < n*8/10 || gaveUp > 0 {
		t.Errorf("only %d of %d events acked; authors gave up on %d", acked, n, gaveUp)
	}
	for seq, reason := range seenNaks {
		if results[seq].FailedAttempts() == 0 {
			t.Errorf("%s, submitted once, was naked: %q", loadIVORN(seq), reason)
		}
	}
	var afterIngressKill, afterNodeKill int
	for _, at := range ackTimes {
		if at.After(kills[0].at) {
			afterIngressKill++
		}
		if at.After(kills[2].at) {
			afterNodeKill++
		}
	}
	if afterIngressKill == 0 || afterNodeKill == 0 {
		t.Errorf("submissions stopped: %d acks after the ingress kill, %d after the NATS node kill", afterIngressKill, afterNodeKill)
	}
	nodeKill := kills[2].at
	if g := gapAfter(ackTimes, nodeKill); g > maxStall {
		t.Errorf("acks stopped for %v after the NATS node died (limit %v)", g.Round(time.Millisecond), maxStall)
	}
	if g := gapAfter(arrTimesA, nodeKill); g > maxStall {
		t.Errorf("deliveries to a1 stopped for %v after the NATS node died (limit %v)", g.Round(time.Millisecond), maxStall)
	}
	if !ing[0].running() || !egr[0].running() || !stage.running() {
		t.Errorf("a surviving process died: ingress-1 %v, egress-a %v, stage %v", ing[0].running(), egr[0].running(), stage.running())
	}
	lost := 0
	for _, s := range subs[0] {
		if s.closed() {
			t.Errorf("subscriber %s of the surviving egress was disconnected: %v", s.name, s.Err())
		}
		if m := missing(s, mustA); len(m) > 0 {
			lost += len(m)
			t.Errorf("subscriber %s of egress-a lost %d acked events, e.g. %s", s.name, len(m), describe(results, m, inAddr))
		}
	}
	for _, s := range restarted {
		if m := missing(s, mustB); len(m) > 0 {
			lost += len(m)
			t.Errorf("subscriber %s of the restarted egress-b lost %d events accepted while it was down or after, e.g. %s",
				s.name, len(m), describe(results, m, inAddr))
		}
	}
	sm, sdups := stageMissing()
	if len(sm) > 0 {
		lost += len(sm)
		t.Errorf("the stage lost %d acked events, e.g. %s", len(sm), describe(results, sm, inAddr))
	}
	saved := savedNames(t, saveDir)
	for _, iv := range pairIVORNs {
		if !saved[stages.SaveName(iv)] {
			lost++
			t.Errorf("the stage never saved the pair event %s", iv)
		}
	}
	all := append(append(append([]*subscriber{}, subs[0]...), subs[1]...), restarted...)
	for _, s := range all {
		count, _ := s.snapshot()
		dups := 0
		var example string
		for iv, c := range count {
			if c > 1 {
				dups += c - 1
				example = iv
			}
		}
		if dups > 0 {
			t.Errorf("subscriber %s received %d duplicates on one connection (e.g. %s)", s.name, dups, example)
		}
		for _, iv := range pairIVORNs {
			if c := count[iv]; c > 1 {
				t.Errorf("subscriber %s received the pair event %s %d times", s.name, iv, c)
			}
		}
		t.Logf("subscriber %s: %d events, %d duplicates, connected at the end: %v", s.name, len(count), dups, !s.closed())
	}
	t.Logf("stage (save-event): %d acked events missing, %d saved twice (at least once is the stage contract)", len(sm), sdups)
	t.Logf("losses: %d; total wall time %v", lost, time.Since(t0).Round(time.Millisecond))
}

// restartedArrivals are the load events the restarted egress delivered.
func restartedArrivals(subs []*subscriber) []arrival {
	var out []arrival
	for _, s := range subs {
		_, arr := s.snapshot()
		for _, a := range arr {
			if strings.HasPrefix(a.ivorn, ivornBase+"load-") {
				out = append(out, a)
			}
		}
	}
	return out
}

func loadIVORN(seq int) string { return fmt.Sprintf("%sload-%d", ivornBase, seq) }

// checkProvisioned: the stream is replicated on all three nodes (and no
// previously-seen bucket exists beside it), and every durable exists,
// replicated too.
func checkProvisioned(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, "KV_comet_seen"); err != jetstream.ErrStreamNotFound {
		t.Errorf("stream KV_comet_seen: %v; the records live on COMET_EVENTS", err)
	}
	s, err := js.Stream(ctx, "COMET_EVENTS")
	if err != nil {
		t.Fatalf("stream COMET_EVENTS: %v", err)
	}
	if info := s.CachedInfo(); info.Config.Replicas != 3 || info.Cluster == nil {
		t.Fatalf("stream COMET_EVENTS: replicas %d, cluster %+v; want R3", info.Config.Replicas, info.Cluster)
	}
	for _, durable := range durables {
		c, err := js.Consumer(ctx, "COMET_EVENTS", durable)
		if err != nil {
			t.Fatalf("consumer %s: %v", durable, err)
		}
		info := c.CachedInfo()
		if info.Config.Replicas != 0 && info.Config.Replicas != 3 || info.Cluster == nil {
			t.Errorf("consumer %s is not replicated: replicas %d, cluster %+v", durable, info.Config.Replicas, info.Cluster)
		} else {
			peers := len(info.Cluster.Replicas)
			if info.Cluster.Leader != "" {
				peers++
			}
			if peers != 3 {
				t.Errorf("consumer %s has %d peers, want 3", durable, peers)
			}
		}
	}
}

// durables are the consumers the five processes make.
var durables = []string{"egress-a", "egress-b", "stage-save-event"}

// moveLeaders asks every Raft group that matters to elect a leader on
// node, and waits until they all have.
func moveLeaders(t *testing.T, nc *nats.Conn, js jetstream.JetStream, node string) {
	t.Helper()
	req := []byte(fmt.Sprintf(`{"placement":{"preferred":%q}}`, node))
	leaderOf := func(ctx context.Context, stream, durable string) (string, error) {
		if durable == "" {
			s, err := js.Stream(ctx, stream)
			if err != nil {
				return "", err
			}
			if c := s.CachedInfo().Cluster; c != nil {
				return c.Leader, nil
			}
			return "", nil
		}
		c, err := js.Consumer(ctx, stream, durable)
		if err != nil {
			return "", err
		}
		if cl := c.CachedInfo().Cluster; cl != nil {
			return cl.Leader, nil
		}
		return "", nil
	}
	type group struct{ stream, durable string }
	groups := []group{{"COMET_EVENTS", ""}}
	for _, d := range durables {
		groups = append(groups, group{"COMET_EVENTS", d})
	}
	deadline := time.Now().Add(startWait)
	for _, g := range groups {
		name := g.stream
		subject := "$JS.API.STREAM.LEADER.STEPDOWN." + g.stream
		if g.durable != "" {
			name += " > " + g.durable
			subject = "$JS.API.CONSUMER.LEADER.STEPDOWN." + g.stream + "." + g.durable
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			leader, err := leaderOf(ctx, g.stream, g.durable)
			cancel()
			if err == nil && leader == node {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: leader %q (%v), not %s", name, leader, err, node)
			}
			if err == nil && leader != "" {
				nc.Request(subject, req, 5*time.Second)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
}

func connz(n *natsNode) ([]string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/connz?limit=1024", n.httpPort))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Connections []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	var names []string
	for _, c := range r.Connections {
		if strings.HasPrefix(c.Name, "comet ") {
			names = append(names, strings.TrimPrefix(c.Name, "comet "))
		}
	}
	slices.Sort(names)
	return names, nil
}

// leadersOn lists the streams and consumers whose Raft leader is node.
func leadersOn(t *testing.T, js jetstream.JetStream, node string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []string
	s, err := js.Stream(ctx, "COMET_EVENTS")
	if err != nil {
		t.Fatalf("stream COMET_EVENTS: %v", err)
	}
	if c := s.CachedInfo().Cluster; c != nil && c.Leader == node {
		out = append(out, "COMET_EVENTS")
	}
	for _, durable := range durables {
		c, err := s.Consumer(ctx, durable)
		if err != nil {
			t.Fatalf("consumer %s: %v", durable, err)
		}
		if cl := c.CachedInfo().Cluster; cl != nil && cl.Leader == node {
			out = append(out, durable)
		}
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, ", ")
}

func savedNames(t *testing.T, dir string) map[string]bool {
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := make(map[string]bool, len(entries))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			out[e.Name()] = true
		}
	}
	return out
}

// stall describes the longest pause in times (sorted) that began within a
// second before to five seconds after a kill: how long until they resumed.
func stall(times []time.Time, kill time.Time) string {
	var gap time.Duration
	var end time.Time
	for i := 1; i < len(times); i++ {
		prev, at := times[i-1], times[i]
		if prev.Before(kill.Add(-time.Second)) || prev.After(kill.Add(5*time.Second)) || !at.After(kill) {
			continue
		}
		if d := at.Sub(prev); d > gap {
			gap, end = d, at
		}
	}
	if gap < 300*time.Millisecond {
		return fmt.Sprintf("did not stall (longest gap %v)", gap.Round(time.Millisecond))
	}
	return fmt.Sprintf("stalled %v, resumed %v after the kill", gap.Round(time.Millisecond), end.Sub(kill).Round(time.Millisecond))
}

// gapAfter is the longest pause in times (sorted) that began within five
// seconds after a kill (or was under way at it).
func gapAfter(times []time.Time, kill time.Time) time.Duration {
	var gap time.Duration
	for i := 1; i < len(times); i++ {
		prev, at := times[i-1], times[i]
		if at.After(kill) && prev.Before(kill.Add(5*time.Second)) {
			gap = max(gap, at.Sub(prev))
		}
	}
	return gap
}

// perSecond counts times in each second from start.
func perSecond(times []time.Time, start time.Time) []int {
	var out []int
	for _, at := range times {
		i := int(at.Sub(start) / time.Second)
		if i < 0 {
			continue
		}
		for len(out) <= i {
			out = append(out, 0)
		}
		out[i]++
	}
	return out
}

func describe(results []loadgen.Result, seqs []int, inAddr []string) string {
	var parts []string
	for _, seq := range seqs[:min(3, len(seqs))] {
		r := results[seq]
		parts = append(parts, fmt.Sprintf("%s (acked by ingress-%d at +%v after %d failed attempts)",
			loadIVORN(seq), slices.Index(inAddr, r.Addr)+1, r.At.Sub(r.Start).Round(time.Millisecond), r.FailedAttempts()))
	}
	return strings.Join(parts, "; ")
}

func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cond()
}
