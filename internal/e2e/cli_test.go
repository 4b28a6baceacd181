package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// run runs a built binary to its end and returns its standard output,
// standard error and exit status.
func run(t *testing.T, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Run()
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// stop ends a broker, once it has started, with SIGTERM and waits for it.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.waitLine(t, `msg="broker started"`)
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(wait):
		t.Fatal("comet did not stop on SIGTERM")
	}
}

// waitLine waits until the process has written a log line containing s.
func (p *proc) waitLine(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !strings.Contains(p.out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no line with %q in:\n%s", s, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// comet -h lists the options on standard output, by role, with the Comet
// 2012 aliases beside the modern names.
func TestHelpGroupsOptionsByRole(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}} {
		stdout, stderr, code := run(t, "comet", args...)
		if code != 0 || stderr != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, stderr)
		}
		last := -1
		for _, want := range []string{
			"\nGeneral:\n",
			"\nReceiving events from authors:\n  --receive, -r [ENDPOINT]\n",
			"  --receive-whitelist, --whitelist, --author-whitelist [NETWORK ...]\n",
			"\nBroadcasting events to subscribers:\n  --broadcast, -b [ENDPOINT]\n",
			"  --broadcast-whitelist, --subscriber-whitelist [NETWORK ...]\n",
			"\nSubscribing to other brokers:\n  --subscribe, --remote ENDPOINT\n",
			"\nHandlers, run for every accepted event:\n",
			"\nOpenPGP:\n",
			"\nBus: where events are stored and shared:\n",
			"\nLimits:\n",
		} {
			i := strings.Index(stdout, want)
			if i < 0 || i < last {
				t.Fatalf("%v: %q missing or out of order in:\n%s", args, want, stdout)
			}
			last = i
		}
	}
}

// Each mistake that can be known at start-up is one line on standard
// error and exit status 2, before anything is bound.
func TestStartupMistakesAreOneLine(t *testing.T) {
	dir := t.TempDir()
	aFile := filepath.Join(dir, "a-file")
	os.WriteFile(aFile, nil, 0o644)
	plain := filepath.Join(dir, "plain.sh") // not executable
	os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644)
	base := []string{"--receive", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--local-ivo", localIVO,
		"--eventdb", filepath.Join(dir, "db")}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"mistyped option", []string{"--recieve"}, "comet: unknown option --recieve; see comet -h"},
		{"single dash", []string{"-recieve=tcp:1"}, "comet: unknown option -recieve; see comet -h"},
		{"missing value", append(base, "--local-ivo"), "comet: --local-ivo needs a value; see comet -h"},
		{"not a number", append(base, "--cmd-pool", "eight"), `comet: --cmd-pool "eight": not a number; see comet -h`},
		{"bad interval", append(base, "--broadcast-test-interval", "hourly"),
			`comet: --broadcast-test-interval "hourly": want a duration such as 1h or 90s, or whole seconds; see comet -h`},
		{"save directory not creatable", append(base, "--save-event", "--save-event-directory", filepath.Join(aFile, "events")),
			"comet: --save-event-directory " + filepath.Join(aFile, "events") + ": mkdir " + aFile + ": not a directory"},
		{"command missing", append(base, "--cmd", filepath.Join(dir, "missing.sh")),
			"comet: --cmd " + filepath.Join(dir, "missing.sh") + ": not executable: access " + filepath.Join(dir, "missing.sh") +
				": no such file or directory; give --cmd-allow-missing if it will appear later"},
		{"command not executable", append(base, "--cmd", plain),
			"comet: --cmd " + plain + ": not executable: access " + plain + ": permission denied; give --cmd-allow-missing if it will appear later"},
		{"bad limit", append(base, "--write-timeout", "0s"), "comet: --write-timeout 0s: must be more than 0"},
	}
	for _, c := range cases {
		stdout, stderr, code := run(t, "comet", c.args...)
		if code != 2 || stdout != "" || stderr != c.want+"\n" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2 and %q", c.name, code, stdout, stderr, c.want)
		}
	}
}

// A --save-event-directory that exists but cannot be written is refused
// at start-up in one line, not found on the first event.
func TestSaveEventDirectoryNotWritable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "events")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		vtptest.MountTmpfs(t, dir, 1<<20, "ro") // root writes through permissions
	} else if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := run(t, "comet", "--receive", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--local-ivo", localIVO,
		"--eventdb", filepath.Join(t.TempDir(), "db"), "--save-event", "--save-event-directory", dir)
	prefix := "comet: --save-event-directory " + dir + ": not writable: open " + dir + "/.comet-write-test-"
	if code != 2 || stdout != "" || !strings.HasPrefix(stderr, prefix) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("exit %d, stdout %q, stderr %q; want 2 and one line starting %q", code, stdout, stderr, prefix)
	}
}

// Options that have no effect, and filters calling functions XPath 1.0
// does not define, are warnings: the broker starts.
func TestStartupWarnings(t *testing.T) {
	p := newPorts(t)
	pr := startComet(t, t.TempDir(), p, "--filter", "//Param", "--save-event-directory", t.TempDir())
	pr.waitLine(t, `level=WARN msg="--filter has no effect without --subscribe: filters are sent to upstream brokers"`)
	pr.waitLine(t, `level=WARN msg="--save-event-directory has no effect without --save-event"`)
	pr.stop(t)

	pr = startComet(t, t.TempDir(), newPorts(t), "--subscribe", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--filter", `//Param[ends-with(@name,"ID")]`)
	pr.waitLine(t, `level=WARN msg="--filter //Param[ends-with(@name,\"ID\")] calls ends-with(), which XPath 1.0 does not define: it matches no event"`)
	pr.stop(t)

	// A command that will appear later: allowed, with a warning.
	later := filepath.Join(t.TempDir(), "later.sh")
	pr = startComet(t, t.TempDir(), newPorts(t), "--cmd", later, "--cmd-allow-missing")
	pr.waitLine(t, "command is not executable (yet); its events fail until it is")
	pr.stop(t)
}

// --receive and --broadcast take HOST:PORT, and the test interval a
// duration as well as Comet's seconds.
func TestHostPortEndpointsAndDurationInterval(t *testing.T) {
	p := newPorts(t)
	pr := launch(t, "comet", "--receive", p.recvAddr(), "--broadcast", p.castAddr(), "--local-ivo", localIVO,
		"--eventdb", t.TempDir(), "--broadcast-test-interval", "300ms")
	for _, addr := range []string{p.recvAddr(), p.castAddr()} {
		pr.waitListening(t, addr, 20*time.Millisecond)
	}
	s := dial(t, p.castAddr())
	if !s.WaitEvents(2, wait) { // one at start, one 300 ms later
		t.Fatalf("%d test events", len(s.Events()))
	}
	if m := submit(t, p.recvAddr(), vtptest.WithIVORN(benchEvent(t), "ivo://test.author/e2e#hostport")); m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("submission: %+v", m)
	}
	pr.stop(t)

	p = newPorts(t)
	pr = startComet(t, t.TempDir(), p, "--broadcast-test-interval", "3600")
	pr.stop(t)
}

// A store made for one --max-event-size, restarted with another: the
// error speaks in the option's numbers and says how to fix it.
func TestMaxEventSizeMismatch(t *testing.T) {
	db := t.TempDir()
	startComet(t, db, newPorts(t)).stop(t)
	_, stderr, code := run(t, "comet", "--receive", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--local-ivo", localIVO,
		"--eventdb", db, "--max-event-size", "200000", "-q")
	want := "comet: --max-event-size 200000: the event store in --eventdb " + db + " was made for --max-event-size 99999 " +
		"(stream COMET_EVENTS, max_msg_size 132767); give --max-event-size 99999, or set the stream's max_msg_size to 232768 " +
		"(nats stream edit COMET_EVENTS --max-msg-size 232768)\n"
	if code != 2 || stderr != want {
		t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, want)
	}

	// An external NATS server whose max_payload cannot carry the events.
	srv := vtptest.NATSServer(t, &server.Options{MaxPayload: 1 << 20})
	_, stderr, code = run(t, "comet", "--receive", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--local-ivo", localIVO,
		"--nats", srv.ClientURL(), "--max-event-size", "2000000", "-q")
	want = "comet: --max-event-size 2000000: the NATS server's max_payload of 1048576 bytes carries events of at most " +
		"1015808 bytes (32768 are kept for headers); raise max_payload in the server's configuration to at least 2032768, " +
		"or give --max-event-size 1015808 or less\n"
	if code != 2 || stderr != want {
		t.Fatalf("small max_payload: exit %d, stderr %q; want 2 and %q", code, stderr, want)
	}
}

// comet-sendvo --help prints its usage on standard output; a mistyped
// option is one line.
func TestSendVOHelpAndMistakes(t *testing.T) {
	stdout, stderr, code := run(t, "comet-sendvo", "--help")
	if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "usage: comet-sendvo [options] TARGET EVENT\n") ||
		!strings.Contains(stdout, "  --host, -h HOST\n") || !strings.Contains(stdout, "  --sign, -s\n") {
		t.Fatalf("--help: exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	stdout, stderr, code = run(t, "comet-sendvo", "--tiemout", "1s", "localhost", "x.xml")
	if code != 2 || stdout != "" || stderr != "comet-sendvo: unknown option --tiemout; see comet-sendvo --help\n" {
		t.Fatalf("mistyped option: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
