package endpoint

import (
	"crypto/tls"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseServer(t *testing.T) {
	good := map[string]Endpoint{
		"tcp:8098":                            {Network: "tcp", Address: ":8098"},
		"8099":                                {Network: "tcp", Address: ":8099"},
		"tcp:0:interface=127.0.0.1":           {Network: "tcp", Address: "127.0.0.1:0"},
		"tcp:8098:127.0.0.1":                  {Network: "tcp", Address: "127.0.0.1:8098"}, // interface by position, as in Twisted
		"tcp:port=8098:backlog=100":           {Network: "tcp", Address: ":8098"},
		"tcp:8098:interface=\\:\\:1":          {Network: "tcp", Address: "[::1]:8098"}, // '\:' escapes a colon
		"tcp6:8098":                           {Network: "tcp6", Address: ":8098"},
		"tcp6:8098:interface=\\:\\:1":         {Network: "tcp6", Address: "[::1]:8098"},
		"tcp6:8098:50:\\:\\:1":                {Network: "tcp6", Address: "[::1]:8098"}, // tcp6 takes backlog before interface
		"unix:/run/comet.sock":                {Network: "unix", Address: "/run/comet.sock"},
		"unix:/run/comet.sock:mode=660":       {Network: "unix", Address: "/run/comet.sock", Mode: 0o660},
		"unix:address=/run/c.sock:lockfile=0": {Network: "unix", Address: "/run/c.sock"},
		// HOST:PORT, as a client target is written.
		"127.0.0.1:8098": {Network: "tcp", Address: "127.0.0.1:8098"},
		":8098":          {Network: "tcp", Address: ":8098"},
		"[::1]:8099":     {Network: "tcp", Address: "[::1]:8099"},
		"localhost:0":    {Network: "tcp", Address: "localhost:0"},
	}
	for in, want := range good {
		got, err := ParseServer(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %+v %v, want %+v", in, got, err, want)
		}
	}
	bad := []string{
		"", "tcp:", "tcp:x", "tcp:70000", "unix:", "tcp:8098:bogus=1", "host:99999", "host", "::1",
		"tcp:8098:backlog=x", "tcp:8098:interface=a:b", // too many positional arguments
		"tcp:8098:port=8099",   // port given twice
		"unix:/s:mode=999",     // not octal
		"unix:/s:lockfile=yes", //
		"onion:8098",           // a Twisted plugin this broker does not have
		"tls:8098",             // a client type
		"ssl:8098:",            // an empty positional argument is the private key file: none
		"tcp:8098\\",           // a trailing backslash
		"ssl:8098:sslmethod=TLSv1_METHOD",
		"ssl:8098:sslmethod=NOPE",
		"ssl:8098:privateKey=",
		"ssl:8098:clientCA=",
	}
	for _, in := range bad {
		if e, err := ParseServer(in); err == nil {
			t.Errorf("%q accepted as %+v", in, e)
		}
	}
}

// ssl: takes Twisted's parameters with Twisted's defaults: privateKey is
// server.pem, certKey is privateKey, interface is every address.
func TestParseServerSSL(t *testing.T) {
	cases := map[string]struct {
		addr string
		tls  TLS
	}{
		"ssl:8098":                    {":8098", TLS{PrivateKey: "server.pem", CertKey: "server.pem"}},
		"ssl:8098:privateKey=key.pem": {":8098", TLS{PrivateKey: "key.pem", CertKey: "key.pem"}},
		"ssl:8098:privateKey=key.pem:certKey=cert.pem:interface=127.0.0.1": {"127.0.0.1:8098",
			TLS{PrivateKey: "key.pem", CertKey: "cert.pem"}},
		"ssl:8098:key.pem:cert.pem":                           {":8098", TLS{PrivateKey: "key.pem", CertKey: "cert.pem"}}, // by position
		`ssl:443:privateKey=C\:/key.pem:certKey=C\:/cert.pem`: {":443", TLS{PrivateKey: "C:/key.pem", CertKey: "C:/cert.pem"}},
		"ssl:8098:privateKey=k:certKey=c:extraCertChain=chain.pem:clientCA=ca.pem": {":8098",
			TLS{PrivateKey: "k", CertKey: "c", ExtraCertChain: "chain.pem", ClientCA: "ca.pem"}},
		"ssl:8098:privateKey=k:sslmethod=TLSv1_2_METHOD": {":8098", TLS{PrivateKey: "k", CertKey: "k", MaxVersion: tls.VersionTLS12}},
		"ssl:8098:privateKey=k:sslmethod=SSLv23_METHOD":  {":8098", TLS{PrivateKey: "k", CertKey: "k"}},
		"ssl:8098:privateKey=k:dhParameters=dh.pem": {":8098", TLS{PrivateKey: "k", CertKey: "k",
			Notes: []string{"dhParameters ignored: key exchange is always ECDHE (forward secret) here"}}},
		"ssl:8098:privateKey=a=b.pem": {":8098", TLS{PrivateKey: "a=b.pem", CertKey: "a=b.pem"}}, // only the first '=' separates
	}
	for in, want := range cases {
		got, err := ParseServer(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got.Network != "tcp" || got.Address != want.addr || got.TLS == nil || !reflect.DeepEqual(*got.TLS, want.tls) {
			t.Errorf("%q: %+v %+v, want %s %+v", in, got, got.TLS, want.addr, want.tls)
		}
	}
	// clientCA is keyword-only: a ninth positional argument is refused
	// rather than read as a CA file.
	if _, err := ParseServer("ssl:1:k:c:SSLv23_METHOD::50:chain:dh:ca.pem"); err == nil {
		t.Error("a ninth positional argument was accepted")
	}
}

func TestParseClientCoercesLikeComet(t *testing.T) {
	good := map[string]string{
		"example.org":                    "example.org:8099",
		"example.org:9000":               "example.org:9000",
		"tcp:example.org":                "example.org:8099",
		"tcp:example.org:9000":           "example.org:9000",
		"tcp:host=example.org:port=9000": "example.org:9000",
		"tcp:host=example.org:9000":      "example.org:9000", // Twisted: one positional with host= is the port
		"tcp:example.org:port=9000":      "example.org:9000",
		"tcp:host=example.org":           "example.org:8099",
		"127.0.0.1":                      "127.0.0.1:8099",
		"[::1]:9000":                     "[::1]:9000",
		`tcp:host=\:\:1:port=9000`:       "[::1]:9000",
	}
	for in, want := range good {
		got, err := ParseClient(in, 8099)
		if err != nil || got.Network != "tcp" || got.Address != want || got.TLS != nil {
			t.Errorf("%q: %+v %v, want %s", in, got, err, want)
		}
	}
	if e, err := ParseClient("unix:/tmp/s", 8099); err != nil || !reflect.DeepEqual(e, Endpoint{Network: "unix", Address: "/tmp/s"}) {
		t.Errorf("unix: %+v %v", e, err)
	}
	if e, err := ParseClient("unix:path=/tmp/s:timeout=5", 8099); err != nil || e.Address != "/tmp/s" || e.Timeout != 5*time.Second {
		t.Errorf("unix with timeout: %+v %v", e, err)
	}
	e, err := ParseClient("tcp:example.org:9000:timeout=7:bindAddress=127.0.0.2", 8099)
	if err != nil || e.Timeout != 7*time.Second || e.BindAddress != "127.0.0.2" {
		t.Errorf("timeout and bindAddress: %+v %v", e, err)
	}
	for _, in := range []string{"", "tcp:", ":9000", "host:bad", "tcp:host=h:port=x", "tcp:h:1:timeout=x", "tcp:h:1:timeout=0",
		"tcp:h:1:bogus=2", "onion:h:1"} {
		if e, err := ParseClient(in, 8099); err == nil {
			t.Errorf("%q accepted as %+v", in, e)
		}
	}
}

// tls: takes Twisted's parameters (host, port, timeout, bindAddress,
// certificate, privateKey, trustRoots); the host is the name verified.
func TestParseClientTLS(t *testing.T) {
	cases := map[string]struct {
		addr    string
		timeout time.Duration
		bind    string
		tls     TLS
	}{
		"tls:example.org:8099":        {"example.org:8099", 0, "", TLS{ServerName: "example.org"}},
		"tls:example.org":             {"example.org:8099", 0, "", TLS{ServerName: "example.org"}}, // Comet's coercion adds the port
		"tls:host=example.org:port=9": {"example.org:9", 0, "", TLS{ServerName: "example.org"}},
		"tls:example.org:8099:trustRoots=/etc/comet/ca:certificate=me.crt:privateKey=me.key:timeout=5:bindAddress=10.0.0.1": {
			"example.org:8099", 5 * time.Second, "10.0.0.1",
			TLS{ServerName: "example.org", TrustRoots: "/etc/comet/ca", Certificate: "me.crt", PrivateKey: "me.key"}},
		"tls:example.org:8099:certificate=both.pem": {"example.org:8099", 0, "", TLS{ServerName: "example.org", Certificate: "both.pem"}},
		`tls:\:\:1:8099`:             {"[::1]:8099", 0, "", TLS{ServerName: "::1"}},
		"tls:127.0.0.1:8099":         {"127.0.0.1:8099", 0, "", TLS{ServerName: "127.0.0.1"}},
		`tls:h:1:trustRoots=C\:\\ca`: {"h:1", 0, "", TLS{ServerName: "h", TrustRoots: `C:\ca`}},
	}
	for in, want := range cases {
		got, err := ParseClient(in, 8099)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got.Network != "tcp" || got.Address != want.addr || got.Timeout != want.timeout || got.BindAddress != want.bind ||
			got.TLS == nil || !reflect.DeepEqual(*got.TLS, want.tls) {
			t.Errorf("%q: %+v %+v, want %+v", in, got, got.TLS, want)
		}
	}
	bad := map[string]string{
		"tls:h:1:privateKey=k.pem":        "without certificate=",
		"tls:h:1:endpoint=tcp\\:h\\:1":    "not supported",
		"tls:h:1:caCertsDir=/etc/ssl":     "no parameter",
		"ssl:h:1":                         "use tls:",
		"ssl:host=h:port=1:caCertsDir=/x": "use tls:",
		"tls:h:1:timeout=soon":            "whole number",
		"tls:h:1:trustRoots=":             "names no file",
		"tls::1":                          "no host",
	}
	for in, why := range bad {
		e, err := ParseClient(in, 8099)
		if err == nil {
			t.Errorf("%q accepted as %+v", in, e)
		} else if !strings.Contains(err.Error(), why) {
			t.Errorf("%q: error %q does not say %q", in, err, why)
		}
	}
}

// Comet's coercion prefixes "tcp:" only to descriptions without a type:
// "tls:1234" stays a TLS target (to a host named 1234), never a plaintext
// connection to a host named tls.
func TestCoercionNeverDropsTLS(t *testing.T) {
	e, err := ParseClient("tls:1234", 8099)
	if err != nil || e.TLS == nil || e.Address != "1234:8099" {
		t.Fatalf("tls:1234: %+v %v", e, err)
	}
}

func TestQuote(t *testing.T) {
	path := `C:\certs\key.pem`
	e, err := ParseServer("ssl:8098:privateKey=" + Quote(path))
	if err != nil || e.TLS.PrivateKey != path {
		t.Fatalf("quoted %q: %+v %v", Quote(path), e, err)
	}
}

func TestString(t *testing.T) {
	for in, want := range map[string]string{"tcp:8098": "tcp::8098", "ssl:8098:privateKey=k": "ssl::8098"} {
		if e, _ := ParseServer(in); e.String() != want {
			t.Errorf("%s: %s, want %s", in, e, want)
		}
	}
	if e, _ := ParseClient("tls:h:1", 8099); e.String() != "tls:h:1" {
		t.Errorf("tls target: %s", e)
	}
}
