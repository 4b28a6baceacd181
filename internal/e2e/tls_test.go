package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/internal/tlstest"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/whitelist"
)

// The built binaries over TLS: comet-sendvo submits over tls: to an ssl:
// receiver; a second comet subscribes over tls: with a client certificate
// to an ssl: broadcaster with clientCA= and --allow-cert-file, and relays
// the event byte for byte; SIGHUP re-reads the certificate (a bad file
// keeps the one in use, and says so) and the allowed fingerprints.
func TestTLSWithBinaries(t *testing.T) {
	p := tlstest.NewPKI(t)
	a, b := newPorts(t), newPorts(t)
	recvCert, recvKey := p.CA.Issue(tlstest.Options{CN: "a-recv", Names: []string{"127.0.0.1"}}).WriteFiles(p.Dir, "a-recv")
	castCert, castKey := p.CA.Issue(tlstest.Options{CN: "a-cast", Names: []string{"127.0.0.1"}}).WriteFiles(p.Dir, "a-cast")
	bCert := p.ClientCA.Issue(tlstest.Options{CN: "broker-b"})
	bCertFile, bKeyFile := bCert.WriteFiles(p.Dir, "broker-b")
	allowed := filepath.Join(p.Dir, "allowed")
	os.WriteFile(allowed, []byte("# broker B\n"+whitelist.Fingerprint(bCert.Cert)+"\n"), 0o600)

	brokerA := launch(t, "comet A",
		"--receive", fmt.Sprintf("ssl:%d:interface=127.0.0.1:privateKey=%s:certKey=%s", a.recv, recvKey, recvCert),
		"--broadcast", fmt.Sprintf("ssl:%d:interface=127.0.0.1:privateKey=%s:certKey=%s:clientCA=%s", a.cast, castKey, castCert, p.ClientCAFile),
		"--allow-cert-file", allowed,
		"--local-ivo", localIVO, "--eventdb", t.TempDir(), "--node", "a", "--broadcast-test-interval", "0")
	brokerA.waitListening(t, a.recvAddr(), 20*time.Millisecond)
	brokerA.waitListening(t, a.castAddr(), 20*time.Millisecond)
	startComet(t, t.TempDir(), b,
		"--subscribe", fmt.Sprintf("tls:127.0.0.1:%d:trustRoots=%s:certificate=%s:privateKey=%s", a.cast, p.Trust, bCertFile, bKeyFile))
	brokerA.waitLog(t, `peer_cert="CN=broker-b,O=Comet tests"`, 1)
	sub := dial(t, b.castAddr())

	ev := vtptest.WithIVORN(benchEvent(t), "ivo://test.author/e2e#tls")
	file := filepath.Join(t.TempDir(), "event.xml")
	os.WriteFile(file, ev, 0o644)
	target := fmt.Sprintf("tls:127.0.0.1:%d:trustRoots=%s", a.recv, p.Trust)
	out, code := runCmd(t, "comet-sendvo", nil, target, file)
	if code != 0 || !strings.Contains(out, "acknowledged") {
		t.Fatalf("comet-sendvo over TLS: exit %d: %s", code, out)
	}
	if !sub.WaitEvents(1, wait) || string(sub.Events()[0]) != string(ev) {
		t.Fatal("the event did not cross the TLS link byte for byte")
	}

	// comet-sendvo's failures: an untrusted server is exit 1 with the
	// reason; a trustRoots it cannot read is a bad command line.
	other := t.TempDir()
	tlstest.NewCA(t, "Other CA").WriteFile(other, "ca.pem")
	out, code = runCmd(t, "comet-sendvo", nil, fmt.Sprintf("tls:127.0.0.1:%d:trustRoots=%s", a.recv, other), file)
	if code != 1 || !strings.Contains(out, "certificate signed by unknown authority") {
		t.Fatalf("untrusted server: exit %d: %s", code, out)
	}
	out, code = runCmd(t, "comet-sendvo", nil, fmt.Sprintf("tls:127.0.0.1:%d:trustRoots=/nonexistent", a.recv), file)
	if code != 2 || !strings.Contains(out, "trustRoots") {
		t.Fatalf("missing trustRoots: exit %d: %s", code, out)
	}

	serverSubject := func() string {
		target, _ := endpoint.ParseClient(fmt.Sprintf("tls:127.0.0.1:%d:trustRoots=%s", a.recv, p.Trust), 0)
		d, err := endpoint.NewDialer(target, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c, err := d.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		id, _ := endpoint.PeerIdentity(c)
		return id.Subject
	}
	p.CA.Issue(tlstest.Options{CN: "a-recv-renewed", Names: []string{"127.0.0.1"}}).WriteFiles(p.Dir, "a-recv")
	brokerA.reload(t, "TLS certificates reloaded")
	if s := serverSubject(); s != "CN=a-recv-renewed,O=Comet tests" {
		t.Fatalf("after SIGHUP the receiver presents %s", s)
	}
	os.WriteFile(recvCert, []byte("truncated"), 0o600)
	brokerA.reload(t, "TLS files not reloaded")
	if s := serverSubject(); s != "CN=a-recv-renewed,O=Comet tests" {
		t.Fatalf("a bad file replaced the certificate in use: %s", s)
	}
	if !strings.Contains(brokerA.out.String(), fmt.Sprintf("ssl: listener 127.0.0.1:%d", a.recv)) {
		t.Error("the failed reload does not name the listener")
	}

	// An emptied allow file refuses B's certificate from then on.
	os.WriteFile(allowed, []byte("# nobody\n"), 0o600)
	brokerA.reload(t, "allowed client certificates reloaded")
	target2, _ := endpoint.ParseClient(fmt.Sprintf("tls:127.0.0.1:%d:trustRoots=%s:certificate=%s:privateKey=%s", a.cast, p.Trust, bCertFile, bKeyFile), 0)
	d, err := endpoint.NewDialer(target2, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := d.Dial(context.Background()); err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if err == nil || !strings.Contains(err.Error(), "remote error") {
			t.Errorf("B's certificate still accepted after it left the allow file: %v", err)
		}
	}
	brokerA.waitLog(t, "failure=not_allowed", 1)
}

// TLS mistakes on the command line are one line and exit status 2.
func TestTLSStartupErrors(t *testing.T) {
	dir := t.TempDir()
	base := []string{"--local-ivo", localIVO, "--eventdb", dir}
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"missing key":             {[]string{"--receive", "ssl:0:interface=127.0.0.1:privateKey=/nonexistent.pem"}, "ssl:127.0.0.1:0: privateKey: open /nonexistent.pem"},
		"TLS 1.0":                 {[]string{"--receive", "ssl:0:sslmethod=TLSv1_METHOD"}, "older than TLS 1.2"},
		"ssl: target":             {[]string{"--subscribe", "ssl:host=h:port=1"}, "use tls:"},
		"allow-cert without mTLS": {[]string{"--receive", "--allow-cert", strings.Repeat("ab", 32)}, "clientCA="},
		"bad fingerprint":         {[]string{"--broadcast", "ssl:0:privateKey=k:clientCA=ca.pem", "--allow-cert", "xyz"}, "fingerprint"},
	} {
		out, code := runCmd(t, "comet", nil, append(base, c.args...)...)
		if code != 2 || !strings.Contains(out, c.want) || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Errorf("%s: exit %d, output %q; want 2 and one line with %q", name, code, out, c.want)
		}
	}
}
