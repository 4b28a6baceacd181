package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// tapLine is the part of a `comet tap` line these tests read.
type tapLine struct {
	Seq    uint64 `json:"seq"`
	IVORN  string `json:"ivorn"`
	Role   string `json:"role"`
	Origin string `json:"origin"`
	Params []struct {
		Name, Value string
	} `json:"params"`
	WhereWhen *struct {
		Time     string `json:"time"`
		Position *struct {
			RA  float64 `json:"ra"`
			Dec float64 `json:"dec"`
		} `json:"position"`
	} `json:"wherewhen"`
}

// A running single-process broker whose embedded bus is exposed with
// --nats-listen is tapped by the comet binary itself: `comet tap --since
// 1h --follow=false` prints every accepted event, in order, one JSON
// object per line, and exits 0; from now on, it prints a new event as it
// is accepted and exits 0 on SIGINT.
func TestTapProcessAgainstRunningBroker(t *testing.T) {
	natsPort := freePort(t)
	p := newPorts(t)
	startComet(t, t.TempDir(), p, "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort))
	url := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)

	tmpl := benchEvent(t)
	var want []string
	for i := range 5 {
		ivorn := fmt.Sprintf("ivo://test.author/tap#%d", i)
		if m := submit(t, p.recvAddr(), vtptest.WithIVORN(tmpl, ivorn)); m.Role != vtp.RoleAck {
			t.Fatalf("event %d: %+v", i, m)
		}
		want = append(want, ivorn)
	}
	// A refused event is not on the bus.
	if m := submit(t, p.recvAddr(), vtptest.WithIVORN(tmpl, want[0])); m.Role != vtp.RoleNak {
		t.Fatalf("duplicate: %+v", m)
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "comet"), "tap", "--nats", url, "--since", "1h", "--follow=false")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("comet tap: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), stdout.String())
	}
	var last uint64
	for i, l := range lines {
		var got tapLine
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i, err, l)
		}
		if got.IVORN != want[i] || got.Role != "observation" || got.Origin != "author" || got.Seq <= last {
			t.Errorf("line %d: %+v, want %s in order", i, got, want[i])
		}
		last = got.Seq
		if len(got.Params) == 0 || got.WhereWhen == nil || got.WhereWhen.Position == nil || got.WhereWhen.Time == "" {
			t.Errorf("line %d lacks the event's params or position: %s", i, l)
		}
	}

	// Following from now: a new event shows up as it is accepted.
	follow := exec.Command(filepath.Join(binDir, "comet"), "tap", "--nats", url)
	out, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var followErr bytes.Buffer
	follow.Stderr = &followErr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer follow.Process.Kill()
	got := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		if sc.Scan() {
			got <- sc.Text()
		}
		close(got)
	}()
	// The tap may still be connecting: resubmit new events until one shows.
	deadline := time.Now().Add(wait)
	var line string
	for i := 0; line == "" && time.Now().Before(deadline); i++ {
		ivorn := fmt.Sprintf("ivo://test.author/tap#live-%d", i)
		if m := submit(t, p.recvAddr(), vtptest.WithIVORN(tmpl, ivorn)); m.Role != vtp.RoleAck {
			t.Fatalf("live event: %+v", m)
		}
		select {
		case line = <-got:
		case <-time.After(500 * time.Millisecond):
		}
	}
	if !strings.Contains(line, `"ivorn":"ivo://test.author/tap#live-`) {
		t.Fatalf("followed line %q\n%s", line, followErr.String())
	}
	follow.Process.Signal(syscall.SIGINT)
	if err := follow.Wait(); err != nil {
		t.Fatalf("comet tap after SIGINT: %v\n%s", err, followErr.String())
	}
}
