package deployments

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/comet-go/comet/internal/vtptest"
)

// portOf is the port of a HOST:PORT --http-addr.
func portOf(t *testing.T, where, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(p)
	if err != nil || perr != nil {
		t.Fatalf("%s: --http-addr %q is not HOST:PORT", where, addr)
	}
	return n
}

// Every comet container in Kubernetes serves --http-addr, and the kubelet
// probes /healthz (liveness) and /readyz (readiness) on that port, which
// Prometheus's pod discovery is told to scrape.
func TestKubernetesProbesAndScraping(t *testing.T) {
	seen := 0
	for _, d := range readManifests(t) {
		if d.Spec.Template == nil {
			continue
		}
		tmpl := d.Spec.Template
		for _, c := range tmpl.Spec.Containers {
			if !strings.HasPrefix(c.Image[strings.LastIndex(c.Image, "/")+1:], "comet") {
				continue
			}
			seen++
			where := d.Kind + " " + d.Metadata.Name
			inv := invocation{where: where, args: c.Args}
			addr, ok := inv.value("http-addr")
			if !ok {
				t.Errorf("%s: comet without --http-addr: no metrics, no health endpoints", where)
				continue
			}
			port := portOf(t, where, addr)
			portName := ""
			for _, p := range c.Ports {
				if p.ContainerPort == port {
					portName = p.Name
				}
			}
			if portName == "" {
				t.Errorf("%s: no container port %d (--http-addr)", where, port)
			}
			for _, pr := range []struct {
				name string
				p    *probe
				path string
			}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
				if pr.p == nil || pr.p.HTTPGet == nil {
					t.Errorf("%s: no %s on %s", where, pr.name, pr.path)
					continue
				}
				if pr.p.HTTPGet.Path != pr.path || (fmt.Sprint(pr.p.HTTPGet.Port) != portName && fmt.Sprint(pr.p.HTTPGet.Port) != strconv.Itoa(port)) {
					t.Errorf("%s: %s asks %s on port %v, want %s on %s (%d)", where, pr.name, pr.p.HTTPGet.Path,
						pr.p.HTTPGet.Port, pr.path, portName, port)
				}
			}
			ann := tmpl.Metadata.Annotations
			if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(port) ||
				ann["prometheus.io/path"] != "/metrics" {
				t.Errorf("%s: prometheus.io annotations %v do not scrape /metrics on %d", where, ann, port)
			}
		}
	}
	if seen < 3 {
		t.Fatalf("found %d comet containers in k8s/", seen)
	}
}

// Every comet service in the compose file serves --http-addr and has a
// healthcheck that runs comet healthcheck (the image has no shell) on it.
func TestComposeHealthchecks(t *testing.T) {
	data, err := os.ReadFile("compose/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image       string   `yaml:"image"`
			Command     []string `yaml:"command"`
			Healthcheck *struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for name, s := range doc.Services {
		if !strings.Contains(s.Image, "comet") {
			continue
		}
		seen++
		inv := invocation{where: "compose " + name, args: s.Command}
		addr, ok := inv.value("http-addr")
		if !ok {
			t.Errorf("compose %s: comet without --http-addr", name)
			continue
		}
		port := portOf(t, name, addr)
		hc := s.Healthcheck
		if hc == nil || len(hc.Test) < 3 || hc.Test[0] != "CMD" || filepath.Base(hc.Test[1]) != "comet" || hc.Test[2] != "healthcheck" {
			t.Errorf("compose %s: healthcheck %+v does not run comet healthcheck", name, hc)
			continue
		}
		probe := invocation{args: hc.Test[3:]}
		if a, _ := probe.value("http-addr"); portOf(t, name, a) != port {
			t.Errorf("compose %s: healthcheck asks %q, comet serves %q", name, a, addr)
		}
	}
	if seen < 3 {
		t.Fatalf("found %d comet services in the compose file", seen)
	}
}

// promIdent finds the metric names in a PromQL expression: every
// dashboard metric starts with one of these prefixes.
var promIdent = regexp.MustCompile(`\b(?:comet|process|go)_[a-zA-Z0-9_]*`)

// exportedMetrics runs a real comet with every role that has metrics of
// its own (receiver, broadcaster, an upstream subscription, a stage; the
// embedded bus) and returns the metric names /metrics lists, histogram
// series included.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "comet")
	build := exec.Command("go", "build", "-o", bin, "./cmd/comet")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/comet: %v\n%s", err, out)
	}
	free := func() int { return vtptest.FreePorts(t, 1)[0] }
	httpAddr := fmt.Sprintf("127.0.0.1:%d", free())
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--receive", fmt.Sprintf("tcp:%d:interface=127.0.0.1", free()),
		"--broadcast", fmt.Sprintf("tcp:%d:interface=127.0.0.1", free()),
		"--subscribe", fmt.Sprintf("127.0.0.1:%d", free()), // nobody there: still an upstream
		"--print-event", "--local-ivo", "ivo://example.org/broker", "--eventdb", filepath.Join(dir, "db"),
		"--http-addr", httpAddr, "--broadcast-test-interval", "0", "-q")
	cmd.Stdout = io.Discard
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	var body string
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("comet's /metrics never answered: %v\n%s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		names[name] = true
	}
	return names
}

// The Grafana dashboard is valid JSON, and every query of every panel and
// variable names only metrics that a running comet exports; the metrics
// the operator needs most are on it.
func TestGrafanaDashboardQueriesExportedMetrics(t *testing.T) {
	data, err := os.ReadFile("grafana/comet.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("grafana/comet.json: %v", err)
	}
	exported := exportedMetrics(t)
	var queries []string
	used := map[string]bool{}
	check := func(where, expr string) {
		names := promIdent.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: %q names no metric", where, expr)
		}
		for _, n := range names {
			used[n] = true
			if !exported[n] {
				t.Errorf("%s: %s is not exported by comet (query %q)", where, n, expr)
			}
		}
		queries = append(queries, expr)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			check("panel "+p.Title, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			check("variable "+v.Name, v.Definition)
		}
	}
	for _, m := range []string{"comet_events_accepted_total", "comet_events_rejected_total", "comet_subscribers",
		"comet_upstreams_connected", "comet_deliveries_total", "comet_subscriber_drops_total", "comet_stage_handled_total",
		"comet_deadletters_total", "comet_stage_pending", "comet_bus_store_seconds_bucket", "comet_ack_seconds_bucket",
		"comet_build_info", "comet_ready", "comet_bus_stream_bytes"} {
		if !used[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
	if len(queries) < 20 || !slices.ContainsFunc(queries, func(q string) bool { return strings.Contains(q, "histogram_quantile") }) {
		t.Errorf("the dashboard has %d queries", len(queries))
	}
}
