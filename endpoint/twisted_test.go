package endpoint_test

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/internal/tlstest"
)

// twisted is what Twisted made of a description (testdata/twisted_endpoints.py).
type twisted struct {
	OK          bool     `json:"ok"`
	Error       string   `json:"error"`
	Type        string   `json:"type"`
	Port        int      `json:"port"`
	Interface   string   `json:"interface"`
	Cert        string   `json:"cert"`
	Chain       []string `json:"chain"`
	Path        string   `json:"path"`
	Mode        int      `json:"mode"`
	Host        string   `json:"host"`
	Timeout     int      `json:"timeout"`
	BindAddress string   `json:"bindAddress"`
	ServerName  string   `json:"serverName"`
}

type twistedCase struct {
	Side string `json:"side"`
	Desc string `json:"desc"`
	Port int    `json:"port"`
	// deviation, if set, says why this parser deliberately decides
	// otherwise than Twisted (and Comet) on this description.
	deviation string
}

// runTwisted parses every case with Twisted.
func runTwisted(t *testing.T, cases []twistedCase) []twisted {
	t.Helper()
	tlstest.NeedTwisted(t)
	in, _ := json.Marshal(cases)
	cmd := exec.Command(tlstest.TwistedPython, "testdata/twisted_endpoints.py")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("twisted_endpoints.py: %v\n%s", err, stderr.String())
	}
	var res []twisted
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(cases) {
		t.Fatalf("twisted_endpoints.py output: %v (%d results for %d cases)", err, len(res), len(cases))
	}
	return res
}

// This parser and Twisted (22.4, as Debian ships it; what Comet passes
// its endpoint options to) agree on every description: both refuse it, or
// both accept it with the same address, port, files, timeout and bind
// address. The few deliberate differences are listed, each with why, and
// checked to still differ.
func TestAgreesWithTwisted(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "Test CA")
	// Each certificate's CN is its file's name, so Twisted's loaded
	// certificate says which file it read.
	pair := ca.Issue(tlstest.Options{CN: "cert"})
	cert, key := pair.WriteFiles(dir, "cert")
	both := ca.Issue(tlstest.Options{CN: "both"}).WriteCombined(dir, "both.pem")
	chain := ca.WriteFile(dir, "chain.pem")
	trust := filepath.Join(dir, "trust")
	os.Mkdir(trust, 0o700)
	ca.WriteFile(trust, "ca.pem")
	q := endpoint.Quote

	cases := []twistedCase{
		{Side: "server", Desc: "tcp:8098"},
		{Side: "server", Desc: "tcp:8098:interface=127.0.0.1"},
		{Side: "server", Desc: "tcp:8098:127.0.0.1:100"},
		{Side: "server", Desc: "tcp:port=8098:backlog=7"},
		{Side: "server", Desc: "tcp:8098:backlog=x"},
		{Side: "server", Desc: "tcp:8098:bogus=1"},
		{Side: "server", Desc: "tcp:8098:port=8099"},
		{Side: "server", Desc: "tcp:8098:a:1:extra"},
		{Side: "server", Desc: "tcp:"},
		{Side: "server", Desc: `tcp:8098:interface=\:\:1`},
		{Side: "server", Desc: "tcp6:8098"},
		{Side: "server", Desc: `tcp6:8098:50:\:\:1`},
		{Side: "server", Desc: `tcp6:8098:interface=\:\:1`},
		{Side: "server", Desc: "unix:/run/comet.sock:mode=660"},
		{Side: "server", Desc: "unix:address=/run/comet.sock:lockfile=0:mode=600"},
		{Side: "server", Desc: "bogus:8098", deviation: "HOST:PORT is accepted for listeners, as for targets"},
		{Side: "server", Desc: "bogus"},
		{Side: "server", Desc: "ssl:8098:privateKey=" + q(both)},
		{Side: "server", Desc: "ssl:8098:privateKey=" + q(key) + ":certKey=" + q(cert)},
		{Side: "server", Desc: "ssl:8098:" + q(key) + ":" + q(cert) + "::127.0.0.1"},
		{Side: "server", Desc: "ssl:8098:privateKey=" + q(both) + ":interface=127.0.0.1:backlog=10:extraCertChain=" + q(chain)},
		{Side: "server", Desc: "ssl:8098:privateKey=" + q(both) + ":sslmethod=SSLv23_METHOD"},
		{Side: "server", Desc: "ssl:8098:privateKey=" + q(both) + ":sslmethod=TLSv1_2_METHOD"},
		{Side: "server", Desc: "ssl:8098:privateKey=" + q(both) + ":sslmethod=NOT_A_METHOD"},
		{Side: "server", Desc: "ssl:8098:privateKey=" + q(both) + ":certKey=" + q(cert) + ":bogus=1"},
		{Side: "server", Desc: "ssl:8098:privateKey=" + q(both) + ":sslmethod=TLSv1_METHOD",
			deviation: "TLS 1.0 is refused: nothing older than TLS 1.2 is spoken here"},
		{Side: "server", Desc: "ssl:8098:privateKey=" + q(both) + ":clientCA=" + q(chain),
			deviation: "clientCA= is this project's extension for mutual TLS"},
		{Side: "server", Desc: "127.0.0.1:8098", deviation: "HOST:PORT is accepted for listeners, as for targets"},

		{Side: "client", Desc: "example.org", Port: 8099},
		{Side: "client", Desc: "example.org:9000", Port: 8099},
		{Side: "client", Desc: "tcp:example.org", Port: 8099},
		{Side: "client", Desc: "tcp:example.org:9000", Port: 8099},
		{Side: "client", Desc: "tcp:host=example.org:port=9000", Port: 8099},
		{Side: "client", Desc: "tcp:host=example.org:9000", Port: 8099},
		{Side: "client", Desc: "tcp:example.org:port=9000", Port: 8099},
		{Side: "client", Desc: "tcp:host=example.org", Port: 8098},
		{Side: "client", Desc: "tcp:example.org:9000:timeout=7:bindAddress=127.0.0.2", Port: 8099},
		{Side: "client", Desc: `tcp:host=\:\:1:port=9000`, Port: 8099},
		{Side: "client", Desc: "tcp:example.org:9000:bogus=1", Port: 8099},
		{Side: "client", Desc: "unix:/run/comet.sock", Port: 8099},
		{Side: "client", Desc: "unix:path=/run/comet.sock:timeout=9", Port: 8099},
		{Side: "client", Desc: "tls:example.org:8099", Port: 8099},
		{Side: "client", Desc: "tls:example.org", Port: 8099},
		{Side: "client", Desc: "tls:host=example.org:port=9000:timeout=5", Port: 8099},
		{Side: "client", Desc: "tls:127.0.0.1:8099:bindAddress=127.0.0.2", Port: 8099},
		{Side: "client", Desc: "tls:example.org:8099:trustRoots=" + q(trust), Port: 8099},
		{Side: "client", Desc: "tls:example.org:8099:trustRoots=" + q(trust) + ":certificate=" + q(both), Port: 8099},
		{Side: "client", Desc: "tls:example.org:8099:certificate=" + q(cert) + ":privateKey=" + q(key), Port: 8099},
		{Side: "client", Desc: "tls:example.org:8099:caCertsDir=" + q(trust), Port: 8099},
		{Side: "client", Desc: "tls:example.org:8099:timeout=x", Port: 8099},
		{Side: "client", Desc: "tcp:host=example.org:port=x", Port: 8099,
			deviation: "a bad port= is refused; Comet's coercion would silently connect to the default port"},
		{Side: "client", Desc: "ssl:host=example.org:port=9000", Port: 8099,
			deviation: "ssl: targets do not check the server's name in Twisted; tls: is required"},
		{Side: "client", Desc: "[::1]:9000", Port: 8099, deviation: "a bracketed IPv6 HOST:PORT is accepted"},
	}
	res := runTwisted(t, cases)
	for i, c := range cases {
		tw := res[i]
		var ep endpoint.Endpoint
		var err error
		if c.Side == "server" {
			ep, err = endpoint.ParseServer(c.Desc)
		} else {
			ep, err = endpoint.ParseClient(c.Desc, c.Port)
		}
		if c.deviation != "" {
			if (err == nil) == tw.OK {
				t.Errorf("%s %q: expected to differ from Twisted (%s), but both ok=%v (%v; twisted %s)", c.Side, c.Desc, c.deviation, tw.OK, err, tw.Error)
			}
			continue
		}
		switch {
		case err != nil && !tw.OK:
			continue
		case err != nil:
			t.Errorf("%s %q: refused (%v), Twisted accepts it: %+v", c.Side, c.Desc, err, tw)
			continue
		case !tw.OK:
			t.Errorf("%s %q: accepted as %+v, Twisted refuses it: %s", c.Side, c.Desc, ep, tw.Error)
			continue
		}
		if msg := compare(ep, tw); msg != "" {
			t.Errorf("%s %q: %s\n  ours:    %+v %+v\n  Twisted: %+v", c.Side, c.Desc, msg, ep, ep.TLS, tw)
		}
	}
}

// compare reports how an endpoint both accept differs in meaning.
func compare(ep endpoint.Endpoint, tw twisted) string {
	switch tw.Type {
	case "UNIXServerEndpoint", "UNIXClientEndpoint":
		if ep.Network != "unix" || ep.Address != tw.Path {
			return "another socket path"
		}
		if ep.Mode != 0 && int(ep.Mode) != tw.Mode {
			return "another mode"
		}
		if tw.Type == "UNIXClientEndpoint" && ep.Timeout != 0 && ep.Timeout != time.Duration(tw.Timeout)*time.Second {
			return "another timeout"
		}
		return ""
	}
	host, port, err := net.SplitHostPort(ep.Address)
	if err != nil {
		return err.Error()
	}
	if p, _ := strconv.Atoi(port); p != tw.Port {
		return "another port"
	}
	switch tw.Type {
	case "TCP4ServerEndpoint", "TCP6ServerEndpoint", "SSL4ServerEndpoint":
		want := tw.Interface
		if tw.Type == "TCP6ServerEndpoint" && want == "::" {
			want = "" // every interface, either way
		}
		if host != want {
			return "another interface"
		}
		if (tw.Type == "SSL4ServerEndpoint") != (ep.TLS != nil) {
			return "TLS or not"
		}
		if ep.TLS != nil {
			if name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(ep.TLS.CertKey), ".pem"), ".crt"); name != tw.Cert {
				return "another certificate file: " + name
			}
			if ep.TLS.ExtraCertChain != "" && len(tw.Chain) != 1 || ep.TLS.ExtraCertChain == "" && len(tw.Chain) != 0 {
				return "another chain"
			}
		}
		return ""
	}
	// Targets.
	if host != tw.Host || ep.BindAddress != tw.BindAddress {
		return "another host or bind address"
	}
	if ep.Timeout != 0 && ep.Timeout != time.Duration(tw.Timeout)*time.Second {
		return "another timeout"
	}
	if (tw.Type == "tls") != (ep.TLS != nil) {
		return "TLS or not"
	}
	if ep.TLS != nil && ep.TLS.ServerName != tw.ServerName {
		return "another name checked"
	}
	return ""
}
