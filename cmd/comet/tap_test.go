package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/tap"
	"github.com/comet-go/comet/voevent"
	"github.com/comet-go/comet/vtp"
)

const testdataDir = "../../testdata"

// startBroker runs a receiving broker whose embedded bus listens on a
// loopback port, as "comet --receive --nats-listen 127.0.0.1:0" would,
// and returns it with the bus URL.
func startBroker(t testing.TB) (*broker.Broker, string) {
	t.Helper()
	b, err := broker.Start(context.Background(), broker.Config{
		Receive:  []endpoint.Endpoint{{Network: "tcp", Address: "127.0.0.1:0"}},
		LocalIVO: "ivo://test.broker/comet",
		Node:     "tap-test",
		Version:  "test",
		Bus:      bus.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"},
		Logger:   vtptest.Logger(t, slog.LevelWarn),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	url := b.Bus().ClientURL()
	if url == "" {
		t.Fatal("the broker's bus does not listen")
	}
	return b, url
}

type accepted struct{ name, ivorn, sha1 string }

// submit sends payload as an author and reports whether it was acked.
func submit(t testing.TB, b *broker.Broker, payload []byte) bool {
	t.Helper()
	m, err := vtptest.Submit(b.ReceiveAddrs()[0].String(), payload, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return m != nil && m.Role == vtp.RoleAck
}

// submitSamples submits every shared sample, checks Comet's verdict, and
// returns the accepted ones in submission order.
func submitSamples(t testing.TB, b *broker.Broker) []accepted {
	t.Helper()
	var acc []accepted
	for _, s := range vtptest.Samples(t, filepath.Join(testdataDir, "voevents")) {
		ok := submit(t, b, s.Data)
		if ok != (s.Verdict == "ack") {
			t.Fatalf("%s: acked %v, README.md says %s", s.Name, ok, s.Verdict)
		}
		if !ok {
			continue
		}
		info, err := voevent.Inspect(s.Data, voevent.Options{})
		if err != nil {
			t.Fatal(err)
		}
		acc = append(acc, accepted{s.Name, info.IVORN, bus.Digest(s.Data)})
	}
	if len(acc) < 25 {
		t.Fatalf("only %d samples accepted", len(acc))
	}
	return acc
}

// lines checks that out is JSON lines and decodes them.
func lines(t testing.TB, out string) []tap.Record {
	t.Helper()
	var recs []tap.Record
	for i, l := range strings.SplitAfter(out, "\n") {
		if l == "" {
			continue
		}
		if !strings.HasSuffix(l, "\n") || !json.Valid([]byte(l)) {
			t.Fatalf("line %d is not a complete JSON line: %q", i+1, l)
		}
		var r tap.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return recs
}

func tapRun(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runTap(args, &out, &errb)
	return out.String(), errb.String(), code
}

func ivornsOf[T any](xs []T, f func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// Done when: comet tap --since 1h prints every accepted event of the last
// hour, in order, each line valid JSON; also from a sequence number and
// through XPath filters.
func TestTapPrintsTheAcceptedEvents(t *testing.T) {
	b, url := startBroker(t)
	start := time.Now()
	acc := submitSamples(t, b)

	out, errs, code := tapRun(t, "--nats", url, "--since", "1h", "--follow=false")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	recs := lines(t, out)
	if len(recs) != len(acc) {
		t.Fatalf("%d lines for %d accepted events", len(recs), len(acc))
	}
	for i, r := range recs {
		a := acc[i]
		at, err := time.Parse(time.RFC3339Nano, r.ReceivedAt)
		if r.IVORN != a.ivorn || r.SHA1 != a.sha1 || r.Seq != uint64(i+1) || r.ParseError != "" ||
			err != nil || at.Before(start.Add(-time.Second)) || r.Origin != "author" || r.Node != "tap-test" {
			t.Errorf("line %d (%s): %+v", i+1, a.name, r)
		}
	}
	if errs != "" {
		t.Errorf("stderr: %s", errs)
	}

	t.Run("seq", func(t *testing.T) {
		from := recs[9].Seq
		out, errs, code := tapRun(t, "--nats", url, "--seq", fmt.Sprint(from), "--follow=false", "--payload")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		got := lines(t, out)
		want := ivornsOf(acc[9:], func(a accepted) string { return a.ivorn })
		if !reflect.DeepEqual(ivornsOf(got, func(r tap.Record) string { return r.IVORN }), want) {
			t.Fatalf("from seq %d got %d lines", from, len(got))
		}
		if got[0].Seq != from || got[0].Payload == nil || bus.Digest([]byte(*got[0].Payload)) != acc[9].sha1 {
			t.Errorf("first line %+v", got[0])
		}
	})

	t.Run("filter", func(t *testing.T) {
		// Examples of docs/filtering.md §4 and the files they select.
		out, errs, code := tapRun(t, "--nats", url, "--since", "1h", "--follow=false",
			"--filter", `//Param[@name="Packet_Type" and @value="61"]`,
			"--filter", `starts-with(@ivorn, "ivo://gwnet/LVC#")`)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		var want []string
		for _, a := range acc {
			switch a.name {
			case "BAT_GRB_Pos_655721-214.xml", "SWIFT_1125809-092.xml", "GW190425_initial.xml",
				"MS181101ab-1-Preliminary.xml", "MS181101ab-4-Retraction.xml", "S190510g-1-Preliminary.xml":
				want = append(want, a.ivorn)
			}
		}
		got := ivornsOf(lines(t, out), func(r tap.Record) string { return r.IVORN })
		if len(want) != 6 || !reflect.DeepEqual(got, want) {
			t.Fatalf("filtered\n got %q\nwant %q", got, want)
		}
	})

	t.Run("filter over its budget", func(t *testing.T) {
		// The same filter, too costly for a budget of 50 steps on any
		// event: no match (fail closed), one warning on stderr.
		const f = `//Param[@name="Packet_Type" and @value="61"]`
		out, errs, code := tapRun(t, "--nats", url, "--since", "1h", "--follow=false", "--filter", f, "--filter-budget", "50")
		if code != 0 || out != "" {
			t.Fatalf("exit %d, %d bytes on stdout: %s", code, len(out), errs)
		}
		if n := strings.Count(errs, "filter exhausted its evaluation budget"); n != 1 || !strings.Contains(errs, "budget=50") {
			t.Errorf("%d over-budget warnings, want 1 naming the budget:\n%s", n, errs)
		}
	})

	t.Run("since a time", func(t *testing.T) {
		since := time.Now().UTC().Add(time.Minute).Format(time.RFC3339)
		out, errs, code := tapRun(t, "--nats", url, "--since", since, "--follow=false")
		if code != 0 || out != "" {
			t.Fatalf("since %s (future): exit %d, %d bytes: %s", since, code, len(out), errs)
		}
	})
}

// A follower sees events stored after it started, and ends cleanly when
// its context ends.
func TestTapFollows(t *testing.T) {
	b, url := startBroker(t)
	ev := func(n int) []byte {
		data, err := os.ReadFile(filepath.Join(testdataDir, "bench", "gbm_flt_pos_v20.xml"))
		if err != nil {
			t.Fatal(err)
		}
		return vtptest.WithIVORN(data, fmt.Sprintf("ivo://test.author/tap#follow-%d", n))
	}
	if !submit(t, b, ev(1)) {
		t.Fatal("event 1 not accepted")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb vtptest.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- tapMain(ctx, []string{"--nats", url, "--since", "1h"}, &out, &errb) }()

	waitLines := func(n int) []tap.Record {
		t.Helper()
		var recs []tap.Record
		if !vtptest.WaitUntil(10*time.Second, func() bool { recs = lines(t, out.String()); return len(recs) >= n }) {
			t.Fatalf("%d lines, want %d; stderr: %s", len(recs), n, errb.String())
		}
		return recs
	}
	waitLines(1)
	if !submit(t, b, ev(2)) {
		t.Fatal("event 2 not accepted")
	}
	recs := waitLines(2)
	if recs[0].IVORN != "ivo://test.author/tap#follow-1" || recs[1].IVORN != "ivo://test.author/tap#follow-2" {
		t.Fatalf("lines %+v", recs)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after the end of its context: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tap did not end")
	}
	if n := len(lines(t, out.String())); n != 2 {
		t.Errorf("%d lines", n)
	}
}

// The default start is "from now on"; SIGINT ends the tap with status 0.
func TestTapFromNowUntilSIGINT(t *testing.T) {
	b, url := startBroker(t)
	old, err := os.ReadFile(filepath.Join(testdataDir, "voevents", "sample3.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if !submit(t, b, old) {
		t.Fatal("sample3 not accepted")
	}

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	consumers := func() int {
		s, err := js.Stream(context.Background(), bus.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		l := s.ConsumerNames(context.Background())
		for range l.Name() {
			n++
		}
		return n
	}
	before := consumers()

	var out, errb vtptest.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- runTap([]string{"--nats", url}, &out, &errb) }()
	// Once its consumer exists, the tap sees every new event (and its
	// signal handler is long installed).
	if !vtptest.WaitUntil(10*time.Second, func() bool { return consumers() > before }) {
		t.Fatalf("no tap consumer; stderr: %s", errb.String())
	}
	data, err := os.ReadFile(filepath.Join(testdataDir, "voevents", "GW190425_initial.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if !submit(t, b, data) {
		t.Fatal("GW190425 not accepted")
	}
	var recs []tap.Record
	if !vtptest.WaitUntil(10*time.Second, func() bool { recs = lines(t, out.String()); return len(recs) >= 1 }) {
		t.Fatal("the new event was not printed")
	}
	if len(recs) != 1 || recs[0].IVORN != "ivo://gwnet/LVC#S190425z-1-Initial" || recs[0].Seq != 2 {
		t.Fatalf("lines %+v", recs)
	}

	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after SIGINT: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tap did not end on SIGINT")
	}
	// It removed its consumer on the way out.
	if !vtptest.WaitUntil(5*time.Second, func() bool { return consumers() == before }) {
		t.Errorf("tap consumer left behind")
	}
}

func TestTapCommandLineErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	const url = "nats://127.0.0.1:4222"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--nats URL is required"},
		{[]string{"--nats", url, "extra"}, `unexpected argument "extra"`},
		{[]string{"--nats", url, "--bogus"}, "unknown option --bogus; see comet tap -h"},
		{[]string{"--nats", url, "--since", "yesterday"}, `--since "yesterday"`},
		{[]string{"--nats", url, "--since", "-2h"}, "cannot be negative"},
		{[]string{"--nats", url, "--since", "1h", "--seq", "3"}, "exclusive"},
		{[]string{"--nats", url, "--seq", "0"}, "start at 1"},
		{[]string{"--nats", url, "--seq", "x"}, `--seq "x": not a number`},
		{[]string{"--nats", url, "--follow=false"}, "--follow=false needs --since or --seq"},
		{[]string{"--nats", url, "--filter", `//Param[@name="x"`}, "is not valid XPath"},
		{[]string{"--nats", url, "--filter", "//Param", "--filter", "//voe::VOEvent"}, "is not valid XPath"},
		{[]string{"--nats", url, "--filter", "//Param", "--filter-budget", "0"}, "--filter-budget must be between 1 and"},
		{[]string{"--nats", url, "--nats-creds", filepath.Join(dir, "missing.creds")}, "--nats-creds"},
		{[]string{"--nats", url, "--nats-tls-ca", notPEM}, "no PEM certificate"},
		{[]string{"--nats", url, "--nats-tls-cert", notPEM}, "needs both"},
	} {
		out, errs, code := tapRun(t, tc.args...)
		if code != 2 || out != "" || !strings.HasPrefix(errs, "comet tap: ") || strings.Count(errs, "\n") != 1 ||
			!strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and one line with %q", tc.args, code, errs, tc.want)
		}
	}

	_, errs, code := tapRun(t, "-h")
	if code != 0 || !strings.Contains(errs, "usage: comet tap") || !strings.Contains(errs, "-follow") {
		t.Errorf("-h: exit %d, %q", code, errs)
	}
}

func TestTapBusFailures(t *testing.T) {
	// Nothing listens on a port just released.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "nats://" + ln.Addr().String()
	ln.Close()

	// A NATS server that no broker has used: no stream to tap.
	srv := vtptest.NATSServer(t, nil)

	for url, want := range map[string]string{closed: "connecting to", srv.ClientURL(): "no stream COMET_EVENTS"} {
		out, errs, code := tapRun(t, "--nats", url, "--since", "1h", "--follow=false")
		if code != 1 || out != "" || !strings.HasPrefix(errs, "comet tap: ") || !strings.Contains(errs, want) {
			t.Errorf("%s: exit %d, stderr %q; want 1 and %q", url, code, errs, want)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2h":                        now.Add(-2 * time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
		"0s":                        now,
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"2026-11-01T00:00:00Z":      time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		"2026-11-01T01:30:00+01:00": time.Date(2026, 11, 1, 0, 30, 0, 0, time.UTC),
		"2026-11-01T00:00:00.5":     time.Date(2026, 11, 1, 0, 0, 0, 5e8, time.UTC),
		"2026-11-01":                time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

// --nats-tls-ca, --nats-tls-cert and --nats-tls-key against a NATS server
// that requires TLS with client certificates.
func TestTapOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, dir, "ca", nil, nil)
	newCert(t, dir, "server", ca, caKey)
	newCert(t, dir, "client", ca, caKey)
	file := func(n string) string { return filepath.Join(dir, n) }

	serverTLS, err := bus.ClientTLS(file("ca.pem"), file("server.pem"), file("server.key"))
	if err != nil {
		t.Fatal(err)
	}
	serverTLS.ClientCAs, serverTLS.ClientAuth = serverTLS.RootCAs, tls.RequireAndVerifyClientCert
	srv := vtptest.NATSServer(t, &server.Options{MaxPayload: 2 << 20, TLS: true, TLSVerify: true, TLSConfig: serverTLS, TLSTimeout: 5})
	url := fmt.Sprintf("tls://127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port)

	// A broker (here its bus alone) stores one event.
	clientTLS, err := bus.ClientTLS(file("ca.pem"), file("client.pem"), file("client.key"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bb, err := bus.Open(ctx, bus.Config{URL: url, TLS: clientTLS, Node: "tls-broker",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	payload, err := os.ReadFile(filepath.Join(testdataDir, "voevents", "sample3.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bb.Ingest(ctx, &bus.Event{Payload: payload, SHA1: bus.Digest(payload), IVORN: "ivo://testing#111",
		Role: "test", Origin: bus.OriginAuthor}); err != nil {
		t.Fatal(err)
	}

	base := []string{"--nats", url, "--seq", "1", "--follow=false", "--nats-tls-ca", file("ca.pem")}
	out, errs, code := tapRun(t, append(base, "--nats-tls-cert", file("client.pem"), "--nats-tls-key", file("client.key"))...)
	if recs := lines(t, out); code != 0 || len(recs) != 1 || recs[0].IVORN != "ivo://testing#111" {
		t.Fatalf("with a client certificate: exit %d, %q, %s", code, out, errs)
	}
	if _, errs, code := tapRun(t, base...); code != 1 || !strings.HasPrefix(errs, "comet tap: ") {
		t.Errorf("without a client certificate: exit %d, %s", code, errs)
	}
	if _, errs, code := tapRun(t, "--nats", url, "--seq", "1", "--follow=false",
		"--nats-tls-cert", file("client.pem"), "--nats-tls-key", file("client.key")); code != 1 {
		t.Errorf("without the CA: exit %d, %s", code, errs)
	}
}

// newCert writes name.pem and name.key: a CA when parent is nil, else a
// certificate for 127.0.0.1 signed by parent.
func newCert(t testing.TB, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign
		parent, parentKey = tmpl, key
	} else {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(name+".pem", "CERTIFICATE", der)
	write(name+".key", "EC PRIVATE KEY", keyDER)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
