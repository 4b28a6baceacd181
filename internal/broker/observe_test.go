package broker_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/kafkatest"
	"github.com/comet-go/comet/internal/observe"
	"github.com/comet-go/comet/internal/tlstest"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/kafka"
	"github.com/comet-go/comet/vtp"
)

// withHTTP gives the broker an HTTP endpoint on a free loopback port.
func withHTTP(c *broker.Config) { c.HTTPAddr = "127.0.0.1:0" }

func httpGet(t testing.TB, b *broker.Broker, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + b.HTTPAddr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// scrape reads /metrics as Prometheus would.
func scrape(t testing.TB, b *broker.Broker) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, b, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	return fams
}

// value is the value of the series of name with exactly these labels; ok
// false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for i, l := range m.GetLabel() {
			if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func wantValue(t testing.TB, fams map[string]*dto.MetricFamily, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := value(fams, name, labels...)
	if !ok {
		t.Errorf("%s%v not exported", name, labels)
	} else if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func statusJSON(t testing.TB, b *broker.Broker) *observe.Status {
	t.Helper()
	code, body := httpGet(t, b, "/status.json")
	if code != http.StatusOK {
		t.Fatalf("/status.json: %d", code)
	}
	var st observe.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status.json: %v\n%s", err, body)
	}
	return &st
}

// After N accepted submissions, K duplicates and one invalid event, the
// metrics say exactly that; three subscribers are three in the gauge, on
// the page and in /status.json, and each delivery counts.
func TestMetricsCountExactly(t *testing.T) {
	b := start(t, withHTTP)
	const n, k = 5, 2
	var accepted [][]byte
	for i := range n {
		ev := vtptest.WithIVORN(benchEvent(t), fmt.Sprintf("ivo://test.author/metrics#%d", i))
		if m, err := vtptest.Submit(recvAddr(b), ev, replyTimeout); err != nil || m.Role != vtp.RoleAck {
			t.Fatalf("submission %d: %+v, %v", i, m, err)
		}
		accepted = append(accepted, ev)
	}
	for i := range k {
		if m, err := vtptest.Submit(recvAddr(b), accepted[i], replyTimeout); err != nil || m.Role != vtp.RoleNak {
			t.Fatalf("duplicate %d: %+v, %v", i, m, err)
		}
	}
	bad := vtptest.WithIVORN(benchEvent(t), "ivo://bad ivorn#x")
	if m, err := vtptest.Submit(recvAddr(b), bad, replyTimeout); err != nil || m.Role != vtp.RoleNak {
		t.Fatalf("invalid event: %+v, %v", m, err)
	}

	fams := scrape(t, b)
	wantValue(t, fams, n, "comet_events_accepted_total", "origin", "author")
	for _, r := range ingress.AllRejections() {
		want := 0.0
		switch r {
		case ingress.RejectPreviouslySeen:
			want = k
		case ingress.RejectInvalid:
			want = 1
		}
		wantValue(t, fams, want, "comet_events_rejected_total", "origin", "author", "reason", r.String())
	}
	wantValue(t, fams, n, "comet_bus_store_seconds")
	wantValue(t, fams, n, "comet_ack_seconds")
	wantValue(t, fams, 0, "comet_subscribers")
	wantValue(t, fams, 1, "comet_ready")
	wantValue(t, fams, 1, "comet_bus_up")
	wantValue(t, fams, n, "comet_bus_stream_messages", "stream", bus.StreamName)
	wantValue(t, fams, 1, "comet_build_info", "go", runtime.Version(), "version", "test")
	if _, ok := value(fams, "comet_upstreams_connected", "kind", "vtp"); ok {
		t.Error("a broker without --subscribe exports upstream metrics")
	}

	subs := []*vtptest.Subscriber{
		subscribe(t, b, vtptest.Comet),
		subscribe(t, b, vtptest.Comet, "//Param[@name='Packet_Type']"),
		subscribe(t, b, vtptest.Comet),
	}
	fams = scrape(t, b)
	wantValue(t, fams, 3, "comet_subscribers")
	st := statusJSON(t, b)
	if len(st.Subscribers) != 3 || !st.Ready || st.Accepted["author"] != n {
		t.Errorf("/status.json: %d subscribers, ready %v, accepted %v", len(st.Subscribers), st.Ready, st.Accepted)
	}
	addrs := map[string]bool{}
	for _, s := range st.Subscribers {
		addrs[s.Address] = true
	}
	for _, s := range subs {
		if !addrs[s.LocalAddr()] {
			t.Errorf("subscriber %s missing from /status.json %+v", s.LocalAddr(), st.Subscribers)
		}
	}
	if len(st.Events) != n || st.Events[0].IVORN != "ivo://test.author/metrics#4" || st.Events[0].Origin != "author" {
		t.Errorf("/status.json events: %+v", st.Events)
	}
	_, page := httpGet(t, b, "/")
	if rows := strings.Count(page, `<tr class="subscriber">`); rows != 3 {
		t.Errorf("the status page has %d subscriber rows, want 3", rows)
	}
	for _, s := range subs {
		if !strings.Contains(page, s.LocalAddr()) {
			t.Errorf("subscriber %s not on the status page", s.LocalAddr())
		}
	}

	ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/metrics#fanout")
	if m, err := vtptest.Submit(recvAddr(b), ev, replyTimeout); err != nil || m.Role != vtp.RoleAck {
		t.Fatalf("fan-out submission: %+v, %v", m, err)
	}
	for _, s := range subs {
		if !s.WaitEvents(1, deliveryWait) {
			t.Fatal("event not delivered")
		}
	}
	// A delivery is counted once its write returns, which a subscriber
	// can outrun.
	waitUntil(deliveryWait, func() bool { v, _ := value(scrape(t, b), "comet_deliveries_total"); return v >= 3 })
	fams = scrape(t, b)
	wantValue(t, fams, 3, "comet_deliveries_total")
	wantValue(t, fams, n+1, "comet_events_accepted_total", "origin", "author")
	subs[0].Close()
	if !waitUntil(5*time.Second, func() bool { return len(b.Stats().Subscribers) == 2 }) {
		t.Fatal("subscriber not gone")
	}
	fams = scrape(t, b)
	wantValue(t, fams, 2, "comet_subscribers")
	wantValue(t, fams, 3, "comet_deliveries_total") // a departed subscriber's deliveries stay counted
	wantValue(t, fams, 1, "comet_subscriber_drops_total", "cause", "closed")
}

// /healthz is 200; /readyz is 200 with everything up, and the process's
// parts can add checks that make it 503 with a one-line reason.
func TestHealthAndReadiness(t *testing.T) {
	b := start(t, withHTTP)
	if code, body := httpGet(t, b, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := httpGet(t, b, "/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	var failing atomic.Bool
	failing.Store(true)
	b.Readiness().Add("store", func(context.Context) error {
		if failing.Load() {
			return fmt.Errorf("no space left\non device")
		}
		return nil
	})
	code, body := httpGet(t, b, "/readyz")
	if code != http.StatusServiceUnavailable || body != "not ready: store: no space left on device\n" {
		t.Errorf("/readyz with a failing check = %d %q", code, body)
	}
	if st := statusJSON(t, b); st.Ready || len(st.Checks) == 0 {
		t.Errorf("/status.json ready %v, checks %+v", st.Ready, st.Checks)
	}
	wantValue(t, scrape(t, b), 0, "comet_ready")
	failing.Store(false)
	if code, _ := httpGet(t, b, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the check passes = %d", code)
	}
	if code, _ := httpGet(t, b, "/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d", code)
	}
	resp, err := http.Post("http://"+b.HTTPAddr().String()+"/readyz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz = %d", resp.StatusCode)
	}
}

// With an external NATS server stopped, /readyz turns 503 within 5 s and
// names the bus; once the server is back it is 200 again.
func TestReadyzFollowsTheBus(t *testing.T) {
	storeDir := t.TempDir()
	// A port below the ephemeral range, kept by the restart: while the
	// server is down, the bus's retries could otherwise take it.
	port := vtptest.FreePorts(t, 1)[0]
	srv := vtptest.NATSServer(t, &server.Options{StoreDir: storeDir, Port: port})
	b := start(t, func(c *broker.Config) {
		withHTTP(c)
		c.Bus = bus.Config{URL: srv.ClientURL()}
	})
	if code, body := httpGet(t, b, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d %q", code, body)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	stopped := time.Now()
	var body string
	if !waitUntil(5*time.Second, func() bool {
		var code int
		code, body = httpGet(t, b, "/readyz")
		return code == http.StatusServiceUnavailable
	}) {
		t.Fatalf("/readyz still ready %v after the NATS server stopped: %q", time.Since(stopped), body)
	}
	if !strings.HasPrefix(body, "not ready: bus: ") || strings.Count(body, "\n") != 1 {
		t.Errorf("/readyz reason %q", body)
	}
	wantValue(t, scrape(t, b), 0, "comet_bus_up")
	// The same server back on the same port and store.
	vtptest.NATSServer(t, &server.Options{StoreDir: storeDir, Port: port})
	if !waitUntil(20*time.Second, func() bool { code, _ := httpGet(t, b, "/readyz"); return code == http.StatusOK }) {
		_, body = httpGet(t, b, "/readyz")
		t.Fatalf("/readyz not ready after the NATS server returned: %q", body)
	}
	// Before the server's cleanup, which runs first.
	if err := b.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// A subscriber-only broker (no listener of its own) shows its upstream's
// state and counts what it accepted from it under origin "upstream".
func TestUpstreamStatus(t *testing.T) {
	up, err := vtptest.StartUpstream(vtptest.CometUpstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	ep, err := endpoint.ParseClient(up.Addr(), vtp.DefaultBroadcastPort)
	if err != nil {
		t.Fatal(err)
	}
	b := start(t, func(c *broker.Config) {
		withHTTP(c)
		c.Receive, c.Broadcast = nil, nil
		c.Subscribe = []endpoint.Endpoint{ep}
	})
	if !up.WaitFor(10*time.Second, func(u *vtptest.Upstream) bool { return u.Connected() == 1 }) {
		t.Fatal("no connection upstream")
	}
	up.Send(vtptest.WithIVORN(benchEvent(t), "ivo://test.author/upstream#1"))
	if !waitUntil(10*time.Second, func() bool { return statusJSON(t, b).Accepted["upstream"] == 1 }) {
		t.Fatalf("upstream event not counted: %+v", statusJSON(t, b).Accepted)
	}
	st := statusJSON(t, b)
	if len(st.Upstreams) != 1 || st.Upstreams[0].State != "connected" || st.Upstreams[0].LastEvent.IsZero() ||
		st.Upstreams[0].Kind != "vtp" || st.Broadcasting || len(st.Listeners) != 1 || st.Listeners[0].Role != "http" {
		t.Errorf("status %+v", st)
	}
	fams := scrape(t, b)
	wantValue(t, fams, 1, "comet_upstreams_connected", "kind", "vtp")
	wantValue(t, fams, 1, "comet_events_accepted_total", "origin", "upstream")
	wantValue(t, fams, 1, "comet_bus_store_seconds")
	if _, ok := value(fams, "comet_subscribers"); ok {
		t.Error("a broker without --broadcast exports comet_subscribers")
	}
	up.Close()
	if !waitUntil(10*time.Second, func() bool { return statusJSON(t, b).Upstreams[0].State != "connected" }) {
		t.Fatal("upstream still connected after it closed")
	}
	if u := statusJSON(t, b).Upstreams[0]; u.LastError == "" {
		t.Errorf("upstream after close: %+v", u)
	}
	wantValue(t, scrape(t, b), 0, "comet_upstreams_connected", "kind", "vtp")
}

// A Kafka source is a row among the upstreams (its heartbeat's state) and
// counts under origin "kafka": events accepted, records skipped by reason.
func TestKafkaSourceStatus(t *testing.T) {
	const topic = "gcn.classic.voevent.OBSERVE"
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{topic}})
	b := start(t, func(cfg *broker.Config) {
		withHTTP(cfg)
		cfg.Receive, cfg.Broadcast = nil, nil
		cfg.KafkaIn = &broker.KafkaIn{
			Conn: kafka.Config{Brokers: c.BrokerList(), SASL: kafka.SASLScramSHA512, User: kafkatest.User,
				PasswordFile: kafkatest.PasswordFile(t, kafkatest.Password)},
			Source: ingress.KafkaConfig{Topics: []string{topic}, Group: "observe", Start: ingress.KafkaStartEarliest},
		}
	})
	prod := c.Client()
	c.Produce(prod, &kgo.Record{Topic: topic, Value: vtptest.WithIVORN(benchEvent(t), "ivo://test.author/kafka#1")},
		&kgo.Record{Topic: topic, Value: []byte("  ")})
	if !waitUntil(20*time.Second, func() bool {
		fams := scrape(t, b)
		a, _ := value(fams, "comet_events_accepted_total", "origin", "kafka")
		s, _ := value(fams, "comet_events_rejected_total", "origin", "kafka", "reason", ingress.SkipEmpty.String())
		return a == 1 && s == 1
	}) {
		t.Fatalf("Kafka counts: %+v", statusJSON(t, b).Rejected)
	}
	fams := scrape(t, b)
	wantValue(t, fams, 1, "comet_upstreams", "kind", "kafka")
	wantValue(t, fams, 0, "comet_events_rejected_total", "origin", "kafka", "reason", "previously_seen")
	wantValue(t, fams, 1, "comet_bus_store_seconds")
	st := statusJSON(t, b)
	if len(st.Upstreams) != 1 || st.Upstreams[0].Kind != "kafka" || st.Upstreams[0].State != "unmonitored" ||
		st.Upstreams[0].Accepted != 1 || !strings.Contains(st.Upstreams[0].Address, c.BrokerList()[0]) {
		t.Errorf("Kafka upstream %+v", st.Upstreams)
	}
	if _, page := httpGet(t, b, "/"); strings.Count(page, `<tr class="upstream">`) != 1 {
		t.Error("no Kafka row on the status page")
	}
}

// The status page in a real browser (Debian's chromium, headless): the
// DOM it builds has a row per subscriber, and no script ran to make it.
// CI installs chromium (.ci/run); elsewhere the test is skipped without it.
func TestStatusPageInABrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; .ci/run installs it")
		}
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	b := start(t, withHTTP)
	for range 3 {
		subscribe(t, b, vtptest.Comet)
	}
	ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/browser#1")
	if m, err := vtptest.Submit(recvAddr(b), ev, replyTimeout); err != nil || m.Role != vtp.RoleAck {
		t.Fatalf("submission: %+v, %v", m, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The flags this machine's closed network needs, and a profile of the
	// test's own.
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--dump-dom", "http://"+b.HTTPAddr().String()+"/")
	var dom, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &dom, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	page := dom.String()
	if rows := strings.Count(page, `<tr class="subscriber">`); rows != 3 {
		t.Errorf("the browser's DOM has %d subscriber rows, want 3:\n%s", rows, page)
	}
	for _, want := range []string{`<span class="badge ok" id="ready">ready</span>`, `<div class="v" id="subscriber-count">3</div>`,
		"ivo://test.author/browser#1", "<title>comet test: ready</title>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the browser's DOM lacks %q", want)
		}
	}
	if strings.Contains(page, "<script") {
		t.Error("the page has a script")
	}
}

// A subscriber on an ssl: listener with clientCA= shows its certificate's
// subject and fingerprint on the page and in /status.json; a refused
// handshake is counted by kind in comet_tls_failures_total.
func TestTLSOnTheStatusPage(t *testing.T) {
	p := tlstest.NewPKI(t)
	b := startTLS(t, p, "tls-status", nil, withHTTP)
	sub := subscribeTLS(t, p, b, "watched")
	var row observe.Subscriber
	for _, s := range statusJSON(t, b).Subscribers {
		if s.Address == sub.LocalAddr() {
			row = s
		}
	}
	if row.CertSubject != "CN=watched,O=Comet tests" || len(row.CertSHA256) != 95 {
		t.Errorf("subscriber row %+v", row)
	}
	if _, page := httpGet(t, b, "/"); !strings.Contains(page, "CN=watched,O=Comet tests") || !strings.Contains(page, row.CertSHA256) {
		t.Error("the subscriber's certificate is not on the status page")
	}
	// Every kind is exported from the start, at zero, so that a rate of
	// failures exists before the first one.
	m := scrape(t, b)
	for _, f := range endpoint.AllFailures() {
		if v, ok := value(m, "comet_tls_failures_total", "kind", f.String()); !ok || v != 0 {
			t.Errorf("comet_tls_failures_total{kind=%q} = %v (exported: %v) before any failure; want 0", f, v, ok)
		}
	}
	conn, err := tls.Dial("tcp", castAddr(b), &tls.Config{RootCAs: p.CA.Pool(), ServerName: "127.0.0.1"})
	if err == nil {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		conn.Read(make([]byte, 1)) // the refusal comes as an alert
		conn.Close()
	}
	if !waitUntil(5*time.Second, func() bool {
		v, _ := value(scrape(t, b), "comet_tls_failures_total", "kind", endpoint.FailNoCertificate.String())
		return v == 1
	}) {
		t.Errorf("no TLS failure in the metrics: %v", statusJSON(t, b).TLSFailures)
	}
}
