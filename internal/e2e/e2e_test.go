// Package e2e runs the real comet and comet-sendvo binaries as processes:
// crash recovery with SIGKILL, graceful SIGTERM, command-line errors.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha1"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

const (
	testdataDir = "../../testdata"
	localIVO    = "ivo://test.broker/e2e"
	wait        = 15 * time.Second
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "comet-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/comet", "./cmd/comet-sendvo")
	build.Dir = "../.."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building binaries:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running comet process.
type proc struct {
	cmd    *exec.Cmd
	out    *vtptest.SyncBuffer
	exited chan struct{}
}

func freePort(t *testing.T) int {
	t.Helper()
	return vtptest.FreePorts(t, 1)[0]
}

type ports struct{ recv, cast int }

func (p ports) recvAddr() string { return fmt.Sprintf("127.0.0.1:%d", p.recv) }
func (p ports) castAddr() string { return fmt.Sprintf("127.0.0.1:%d", p.cast) }

func newPorts(t *testing.T) ports {
	p := vtptest.FreePorts(t, 2)
	return ports{p[0], p[1]}
}

func startComet(t *testing.T, eventdb string, p ports, extra ...string) *proc {
	t.Helper()
	args := append([]string{
		"--receive", fmt.Sprintf("tcp:%d:interface=127.0.0.1", p.recv),
		"--broadcast", fmt.Sprintf("tcp:%d:interface=127.0.0.1", p.cast),
		"--local-ivo", localIVO, "--eventdb", eventdb, "--node", "e2e",
		"--broadcast-test-interval", "0",
	}, extra...)
	pr := launch(t, "comet", args...)
	for _, addr := range []string{p.recvAddr(), p.castAddr()} {
		pr.waitListening(t, addr, 20*time.Millisecond)
	}
	return pr
}

// launch starts a comet process with args; the test's cleanup kills it
// and, if the test failed, logs its output.
func launch(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	pr := newProc(execComet(args...))
	pr.start(t, name, pr.out)
	return pr
}

func newProc(cmd *exec.Cmd) *proc {
	return &proc{cmd: cmd, out: &vtptest.SyncBuffer{}, exited: make(chan struct{})}
}

// start starts pr with its standard output to stdout and its standard
// error to pr.out; the test's cleanup kills it and, if the test failed,
// logs pr.out.
func (pr *proc) start(t *testing.T, name string, stdout io.Writer) {
	t.Helper()
	pr.cmd.Stdout, pr.cmd.Stderr = stdout, pr.out
	if err := pr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { pr.cmd.Wait(); close(pr.exited) }()
	t.Cleanup(func() {
		pr.cmd.Process.Kill()
		<-pr.exited
		if t.Failed() {
			t.Logf("%s output:\n%s", name, pr.out.String())
		}
	})
}

// waitListening waits until addr accepts connections, polling every
// poll; the process exiting first, or wait passing, fails the test.
func (pr *proc) waitListening(t *testing.T, addr string, poll time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-pr.exited:
			t.Fatalf("comet exited early:\n%s", pr.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("comet not listening on %s:\n%s", addr, pr.out.String())
		}
		time.Sleep(poll)
	}
}

func execComet(args ...string) *exec.Cmd {
	return exec.Command(filepath.Join(binDir, "comet"), args...)
}

func sha1hex(b []byte) string { return fmt.Sprintf("%x", sha1.Sum(b)) }

func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func benchEvent(t *testing.T) []byte {
	data, err := os.ReadFile(filepath.Join(testdataDir, "bench", "gbm_flt_pos_v20.xml"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func submit(t *testing.T, addr string, payload []byte) *vtp.Message {
	t.Helper()
	m, err := vtptest.Submit(addr, payload, wait)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return m
}

func dial(t *testing.T, addr string) *vtptest.Subscriber {
	t.Helper()
	return dialMode(t, addr, vtptest.Comet)
}

func dialMode(t *testing.T, addr string, mode vtptest.Mode) *vtptest.Subscriber {
	t.Helper()
	s, err := vtptest.Dial(addr, mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if !s.WaitRole(vtp.RoleAuthenticate, 1, wait) {
		t.Fatal("no authenticate request from the broker")
	}
	return s
}

// Every shared sample acked before SIGKILL is still refused as previously
// seen after the restart, and is not broadcast again.
func TestPreviouslySeenSurvivesSIGKILL(t *testing.T) {
	db, p := t.TempDir(), newPorts(t)
	c := startComet(t, db, p)
	s1 := dial(t, p.castAddr())
	var acked []vtptest.Sample
	for _, smp := range vtptest.Samples(t, filepath.Join(testdataDir, "voevents")) {
		if smp.Verdict != vtp.RoleAck {
			continue
		}
		if m := submit(t, p.recvAddr(), smp.Data); m == nil || m.Role != vtp.RoleAck {
			t.Fatalf("%s first submission: %+v", smp.Name, m)
		}
		acked = append(acked, smp)
	}
	if !s1.WaitEvents(len(acked), wait) {
		t.Fatal("not all delivered before the kill")
	}
	time.Sleep(300 * time.Millisecond) // let the subscriber's acks reach the bus
	c.kill(t)

	startComet(t, db, p, "--broadcast-grace", "200ms")
	s2 := dial(t, p.castAddr())
	for _, smp := range acked {
		m := submit(t, p.recvAddr(), smp.Data)
		if m == nil || m.Role != vtp.RoleNak || m.Result != "Event rejected: Previously seen by this broker" {
			t.Fatalf("%s resubmitted after restart: %+v", smp.Name, m)
		}
	}
	marker := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/e2e#kill-dup-marker")
	if m := submit(t, p.recvAddr(), marker); m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("marker: %+v", m)
	}
	if !s2.WaitEvents(1, wait) {
		t.Fatal("marker not delivered")
	}
	time.Sleep(200 * time.Millisecond)
	if got := s2.IVORNs(); len(got) != 1 || got[0] != "ivo://test.author/e2e#kill-dup-marker" {
		t.Fatalf("after restart the subscriber got %q, want only the marker", got)
	}
}

// SIGKILL right after a burst of acks: every acked event reaches the
// subscriber once it reconnects within the grace period.
func TestAckedEventsReachReconnectingSubscriberAfterSIGKILL(t *testing.T) {
	db, p := t.TempDir(), newPorts(t)
	c := startComet(t, db, p)
	// A slow subscriber: at the kill, many events are still queued for it.
	before := dialMode(t, p.castAddr(), vtptest.Slow)
	const n = 400
	tmpl := benchEvent(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked []string
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ivorn := fmt.Sprintf("ivo://test.author/e2e#burst-%d", i)
			m, err := vtptest.Submit(p.recvAddr(), vtptest.WithIVORN(tmpl, ivorn), wait)
			if err == nil && m != nil && m.Role == vtp.RoleAck {
				mu.Lock()
				acked = append(acked, ivorn)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	c.kill(t) // at once: some events are stored but not yet broadcast or acked
	if len(acked) != n {
		t.Fatalf("%d of %d acked before the kill", len(acked), n)
	}
	gotBefore := before.IVORNs()

	startComet(t, db, p, "--broadcast-grace", "3s")
	after := dial(t, p.castAddr()) // reconnects well within the grace period
	received := map[string]bool{}
	for _, iv := range gotBefore {
		received[iv] = true
	}
	ok := after.WaitFor(wait, func(s *vtptest.Subscriber) bool {
		for _, iv := range s.IVORNs() {
			received[iv] = true
		}
		return len(received) >= n
	})
	if !ok {
		var missing []string
		for _, iv := range acked {
			if !received[iv] {
				missing = append(missing, iv)
			}
		}
		t.Fatalf("%d acked events never reached the subscriber (got %d before the kill, %d after); e.g. %q",
			len(missing), len(gotBefore), len(after.IVORNs()), missing[:min(5, len(missing))])
	}
	t.Logf("before kill: %d delivered; after restart: %d replayed", len(gotBefore), len(after.IVORNs()))
	// No duplicates on one connection.
	seen := map[string]bool{}
	for _, iv := range after.IVORNs() {
		if seen[iv] {
			t.Fatalf("%s delivered twice on one connection", iv)
		}
		seen[iv] = true
	}
}

// SIGTERM: stop accepting, answer the submission in flight, exit 0.
func TestSIGTERMFinishesInFlightSubmissionAndExitsZero(t *testing.T) {
	db, p := t.TempDir(), newPorts(t)
	c := startComet(t, db, p)
	conn, err := net.Dial("tcp", p.recvAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(100 * time.Millisecond) // accepted before the signal
	c.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	if _, err := net.DialTimeout("tcp", p.recvAddr(), time.Second); err == nil {
		t.Error("still accepting after SIGTERM")
	}
	ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/e2e#in-flight")
	conn.SetDeadline(time.Now().Add(wait))
	if err := vtp.WriteFrame(conn, ev); err != nil {
		t.Fatal(err)
	}
	reply, err := vtp.NewFrameReader(conn, 0).ReadFrame()
	if err != nil {
		t.Fatalf("in-flight submission not answered: %v", err)
	}
	if m, _ := vtp.ParseTransport(reply); m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("in-flight submission: %s", reply)
	}
	conn.Close()
	select {
	case <-c.exited:
	case <-time.After(wait):
		t.Fatal("did not exit after SIGTERM")
	}
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
}

func runCmd(t *testing.T, name string, stdin []byte, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, _ := cmd.CombinedOutput()
	return string(out), cmd.ProcessState.ExitCode()
}

// Start-up errors are one clear line and exit status 2.
func TestStartupErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	db := t.TempDir()
	notADir := filepath.Join(db, "file")
	os.WriteFile(notADir, nil, 0o644)
	cases := map[string]struct {
		args []string
		want string
	}{
		"no role":       {[]string{"--local-ivo", localIVO}, "no services requested"},
		"no local ivo":  {[]string{"--receive"}, "--local-ivo"},
		"bad local ivo": {[]string{"--receive", "--local-ivo", "ivo://co/x"}, "invalid IVOA identifier"},
		"bad endpoint":  {[]string{"--receive", "tcp:8098:bogus=1", "--local-ivo", localIVO}, "invalid endpoint"},
		"bad network":   {[]string{"--receive", "--whitelist", "10.0.0.0/33", "--local-ivo", localIVO}, "invalid network"},
		"port in use": {[]string{"--receive", fmt.Sprintf("tcp:%d:interface=127.0.0.1", busyPort),
			"--local-ivo", localIVO, "--eventdb", db}, "address already in use"},
		"unknown flag":   {[]string{"--bogus"}, "bogus"},
		"bad filter":     {[]string{"--subscribe", "127.0.0.1", "--filter", "//Param["}, "invalid XPath expression"},
		"unknown action": {[]string{"--receive", "--local-ivo", localIVO, "--action", "tweet"}, "known actions: print-event, save-event"},
		"lone handler":   {[]string{"--cmd", "/bin/true"}, "--nats"},
		"unusable eventdb": {[]string{"--receive", fmt.Sprintf("tcp:%d:interface=127.0.0.1", freePort(t)),
			"--local-ivo", localIVO, "--eventdb", filepath.Join(notADir, "db")}, "eventdb"},
	}
	for name, c := range cases {
		out, code := runCmd(t, "comet", nil, c.args...)
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("%s: exit %d, output %q; want 2 and %q", name, code, out, c.want)
		}
	}
}

// comet-sendvo, latest and 2012 forms: exit 0 only on ack.
func TestSendVO(t *testing.T) {
	db, p := t.TempDir(), newPorts(t)
	startComet(t, db, p)
	file := filepath.Join(t.TempDir(), "event.xml")
	os.WriteFile(file, vtptest.WithIVORN(benchEvent(t), "ivo://test.author/e2e#sendvo"), 0o644)

	out, code := runCmd(t, "comet-sendvo", nil, p.recvAddr(), file)
	if code != 0 || !strings.Contains(out, "acknowledged") {
		t.Fatalf("latest form: exit %d: %s", code, out)
	}
	out, code = runCmd(t, "comet-sendvo", nil, "-h", "127.0.0.1", "-p", fmt.Sprint(p.recv), "-f", file)
	if code != 1 || !strings.Contains(out, "Previously seen") {
		t.Fatalf("2012 form, duplicate: exit %d: %s", code, out)
	}
	stdinEv := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/e2e#sendvo-stdin")
	out, code = runCmd(t, "comet-sendvo", stdinEv, "tcp:"+p.recvAddr(), "-")
	if code != 0 {
		t.Fatalf("stdin: exit %d: %s", code, out)
	}

	// A server that never answers: the reply timeout gives exit 1.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	out, code = runCmd(t, "comet-sendvo", nil, "--timeout", "300ms", silent.Addr().String(), file)
	if code != 1 || !strings.Contains(out, "no receipt") {
		t.Fatalf("silent broker: exit %d: %s", code, out)
	}
	out, code = runCmd(t, "comet-sendvo", nil, p.recvAddr(), "/nonexistent.xml")
	if code != 1 {
		t.Fatalf("missing file: exit %d: %s", code, out)
	}
	out, code = runCmd(t, "comet-sendvo", nil, "a", "b", "c")
	if code != 2 {
		t.Fatalf("bad usage: exit %d: %s", code, out)
	}
}

// SIGHUP re-reads the whitelist files: a peer refused before is served
// after, without a restart; a bad file keeps the current lists.
func TestSIGHUPReloadsWhitelists(t *testing.T) {
	wl := filepath.Join(t.TempDir(), "authors")
	os.WriteFile(wl, []byte("# nobody local yet\n127.0.0.2/32\n"), 0o644)
	db, p := t.TempDir(), newPorts(t)
	c := startComet(t, db, p, "--whitelist-file", wl)
	ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/e2e#hup")
	if m := submit(t, p.recvAddr(), ev); m != nil {
		t.Fatalf("127.0.0.1 not in the whitelist but got %+v", m)
	}
	os.WriteFile(wl, []byte("127.0.0.0/8\n"), 0o644)
	c.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(wait)
	for !strings.Contains(c.out.String(), "whitelists reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged:\n%s", c.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m := submit(t, p.recvAddr(), ev); m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("after SIGHUP: %+v", m)
	}
	os.WriteFile(wl, []byte("bogus\n"), 0o644)
	c.cmd.Process.Signal(syscall.SIGHUP)
	for !strings.Contains(c.out.String(), "whitelists not reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("bad file not reported:\n%s", c.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ev2 := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/e2e#hup-2")
	if m := submit(t, p.recvAddr(), ev2); m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("a bad file must keep the current lists: %+v", m)
	}
}
