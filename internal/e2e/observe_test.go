package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/stages"
	"github.com/comet-go/comet/vtp"
)

func httpBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric is the value of the one series whose line starts with series
// (name and labels as Prometheus writes them), -1 if there is none.
func metric(t *testing.T, base, series string) float64 {
	t.Helper()
	_, body := httpBody(t, base+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("metric line %q", line)
			}
			return v
		}
	}
	return -1
}

func waitMetric(t *testing.T, base, series string, want float64) {
	t.Helper()
	if !vtptest.WaitUntil(wait, func() bool { return metric(t, base, series) == want }) {
		t.Fatalf("%s = %v, want %v", series, metric(t, base, series), want)
	}
}

// writeScript replaces an executable script atomically, so a run in
// progress never reads half of it.
func writeScript(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A stage whose command always fails: its dead letters show in the
// metrics, on the status page and in comet deadletter list; once the
// command is fixed, comet deadletter replay has each handled once, and a
// second replay finds nothing. comet status and comet healthcheck read
// the same endpoint, and the log is JSON lines.
func TestDeadLettersSeenAndReplayedOnce(t *testing.T) {
	dir := t.TempDir()
	cmd := filepath.Join(dir, "handler.sh")
	handled := filepath.Join(dir, "handled.log")
	writeScript(t, cmd, "echo 'cannot cope' >&2\nexit 3\n")
	stage := stages.CommandStageName(cmd)
	db, p := t.TempDir(), newPorts(t)
	httpPort, natsPort := freePort(t), freePort(t)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	base := "http://" + httpAddr
	c := startComet(t, db, p, "--cmd", cmd, "--stage-retries", "1", "--http-addr", httpAddr,
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort), "--log-format", "json")

	ivorns := []string{"ivo://test.author/e2e#dead-1", "ivo://test.author/e2e#dead-2"}
	for _, iv := range ivorns {
		if m := submit(t, p.recvAddr(), vtptest.WithIVORN(benchEvent(t), iv)); m == nil || m.Role != vtp.RoleAck {
			t.Fatalf("submission %s: %+v", iv, m)
		}
	}
	waitMetric(t, base, fmt.Sprintf(`comet_deadletters_total{stage=%q}`, stage), 2)
	waitMetric(t, base, fmt.Sprintf(`comet_deadletters_stored{stage=%q}`, stage), 2)
	if got := metric(t, base, fmt.Sprintf(`comet_stage_handled_total{result="error",stage=%q}`, stage)); got != 4 {
		t.Errorf("failed attempts = %v, want 4 (two events, one retry each)", got)
	}
	_, page := httpBody(t, base+"/")
	row := page[strings.Index(page, `<tr class="stage">`):]
	row = row[:strings.Index(row, "</tr>")]
	if !strings.Contains(row, stage) || !strings.Contains(row, `<span class="badge bad">2</span>`) {
		t.Errorf("the status page's stage row does not show 2 dead letters:\n%s", row)
	}

	out, errOut, code := run(t, "comet", "deadletter", "list", "--nats", natsURL)
	if code != 0 || !strings.Contains(out, ivorns[0]) || !strings.Contains(out, ivorns[1]) ||
		!strings.Contains(out, stage) || !strings.Contains(out, "non-zero (3)") || !strings.HasSuffix(out, "2 dead letters\n") {
		t.Fatalf("deadletter list: %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = run(t, "comet", "deadletter", "list", "--eventdb", db)
	if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "in use by process") ||
		!strings.Contains(errOut, "--nats") {
		t.Errorf("deadletter list on the running broker's --eventdb: %d %q %q", code, out, errOut)
	}

	writeScript(t, cmd, fmt.Sprintf("echo $(sha1sum | cut -c1-40) >> %s\n", handled))
	out, errOut, code = run(t, "comet", "deadletter", "replay", "--nats", natsURL, "--stage", stage)
	if code != 0 || !strings.HasPrefix(out, "replayed 2 dead letters") {
		t.Fatalf("deadletter replay: %d %q %q", code, out, errOut)
	}
	waitFile(t, handled, func(s string) bool { return strings.Count(s, "\n") == 2 })
	waitMetric(t, base, fmt.Sprintf(`comet_deadletters_stored{stage=%q}`, stage), 0)
	waitMetric(t, base, fmt.Sprintf(`comet_stage_handled_total{result="ok",stage=%q}`, stage), 2)
	out, _, code = run(t, "comet", "deadletter", "replay", "--nats", natsURL)
	if code != 0 || out != "no dead letter to replay\n" {
		t.Errorf("second replay: %d %q", code, out)
	}
	time.Sleep(time.Second)
	if data, _ := os.ReadFile(handled); strings.Count(string(data), "\n") != 2 {
		t.Errorf("handled more than once:\n%s", data)
	}
	if out, _, _ := run(t, "comet", "deadletter", "list", "--nats", natsURL); out != "TIME  STAGE  IVORN  REASON\n0 dead letters\n" {
		t.Errorf("deadletter list after the replay:\n%s", out)
	}

	out, errOut, code = run(t, "comet", "status", "--http-addr", httpAddr)
	if code != 0 || !strings.Contains(out, "READY") || !strings.Contains(out, stage) || !strings.Contains(out, "accepted (author)  2") {
		t.Errorf("comet status: %d\n%s%s", code, out, errOut)
	}
	if out, _, code := run(t, "comet", "healthcheck", "--http-addr", httpAddr); code != 0 || out != "ready\n" {
		t.Errorf("comet healthcheck: %d %q", code, out)
	}
	if _, errOut, code := run(t, "comet", "healthcheck", "--http-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t))); code != 1 ||
		!strings.Contains(errOut, "connection refused") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("comet healthcheck of nothing: %d %q", code, errOut)
	}

	// --log-format json: every line an object with the usual fields.
	lines := strings.Split(strings.TrimSpace(c.out.String()), "\n")
	started := false
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if rec["msg"] == "broker started" && rec["node"] == "e2e" && rec["level"] == "INFO" {
			started = true
		}
	}
	if !started {
		t.Errorf("no JSON broker started record among %d lines", len(lines))
	}
}

// comet status exits 1 for a broker that is not ready (its stage worker's
// bus gone) and for an address where nothing answers.
func TestStatusExitsOneWhenNotReady(t *testing.T) {
	if _, errOut, code := run(t, "comet", "status", "--http-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t))); code != 1 ||
		!strings.HasPrefix(errOut, "comet status: http://127.0.0.1:") {
		t.Errorf("status of nothing: %d %q", code, errOut)
	}
	if _, errOut, code := run(t, "comet", "status", "--http-addr", "nonsense"); code != 2 || !strings.Contains(errOut, "HOST:PORT") {
		t.Errorf("status --http-addr nonsense: %d %q", code, errOut)
	}
	natsPort, httpPort := freePort(t), freePort(t)
	db, p := t.TempDir(), newPorts(t)
	bus := startComet(t, db, p, "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	w := launch(t, "worker", "--nats", fmt.Sprintf("nats://127.0.0.1:%d", natsPort), "--print-event",
		"--node", "worker", "--http-addr", httpAddr)
	w.waitListening(t, httpAddr, 20*time.Millisecond)
	if out, errOut, code := run(t, "comet", "status", "--http-addr", httpAddr); code != 0 || !strings.Contains(out, "stages") {
		t.Fatalf("worker status: %d\n%s%s", code, out, errOut)
	}
	bus.kill(t)
	if !vtptest.WaitUntil(wait, func() bool { _, _, code := run(t, "comet", "status", "--http-addr", httpAddr); return code == 1 }) {
		t.Fatal("comet status still 0 with the worker's bus gone")
	}
	out, _, _ := run(t, "comet", "status", "--http-addr", httpAddr)
	if !strings.Contains(out, "NOT READY") || !strings.Contains(out, "bus") {
		t.Errorf("worker status without its bus:\n%s", out)
	}
}
