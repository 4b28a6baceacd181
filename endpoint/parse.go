package endpoint

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Twisted's server endpoint types as Comet passes them to
// twisted.internet.endpoints.serverFromString, each with its parameters
// in Twisted's order and with Twisted's defaults.
var (
	tcpServer = []param{{name: "port", required: true}, {name: "interface"}, {name: "backlog", def: "50"}}
	// tcp6 puts backlog before interface, as Twisted does.
	tcp6Server = []param{{name: "port", required: true}, {name: "backlog", def: "50"}, {name: "interface"}}
	// Twisted's mode default is 666; here a socket keeps the mode it is
	// made with (0777 less the umask) unless mode= is given.
	unixServer = []param{{name: "address", required: true}, {name: "mode"}, {name: "backlog", def: "50"}, {name: "lockfile", def: "1"}}
	sslServer  = []param{
		{name: "port", required: true},
		{name: "privateKey", def: "server.pem"}, // Twisted's default, relative to the working directory
		{name: "certKey"},                       // default: privateKey
		{name: "sslmethod"},
		{name: "interface"},
		{name: "backlog", def: "50"},
		{name: "extraCertChain"},
		{name: "dhParameters"},
		{name: "clientCA", keywordOnly: true}, // extension: mutual TLS
	}
)

// Twisted's client endpoint types (clientFromString).
var (
	tcpClient = []param{{name: "host", required: true}, {name: "port", required: true}, {name: "timeout"}, {name: "bindAddress"}}
	// Twisted's unix client takes checkPID as lockfile=; it has no effect
	// here (there is no lock file to check).
	unixClient = []param{{name: "path", required: true}, {name: "timeout"}, {name: "lockfile"}}
	tlsClient  = []param{
		{name: "host", required: true},
		{name: "port", required: true},
		{name: "timeout"}, // Twisted: 30 s
		{name: "bindAddress"},
		{name: "certificate"},
		{name: "privateKey"},
		{name: "trustRoots"},
		{name: "endpoint"},
	}
)

// twistedTypes are the endpoint types Twisted itself or a common plugin
// defines; a description starting with one is parsed as Twisted's, never
// read as HOST:PORT.
var twistedTypes = map[string]bool{"tcp": true, "tcp6": true, "unix": true, "ssl": true, "tls": true, "systemd": true, "onion": true, "stdio": true}

// ParseServer parses a listening endpoint: Twisted's syntax as Comet takes
// it ("tcp:PORT", "tcp:PORT:interface=ADDR", "tcp6:PORT", "unix:PATH",
// "ssl:PORT:privateKey=KEY:certKey=CERT"), a bare PORT, or HOST:PORT as a
// client target is written (":8098", "127.0.0.1:8098", "[::1]:8098").
// Comet's "tcp:PORT" and "ssl:PORT" listen on every IPv4 interface; these
// listen on every interface, IPv4 and IPv6.
func ParseServer(s string) (Endpoint, error) {
	s = strings.TrimSpace(s)
	if _, err := strconv.ParseUint(s, 10, 16); err == nil {
		s = "tcp:" + s // a bare PORT is retried as tcp:PORT
	}
	ep, err := parseServer(s)
	if err != nil {
		return Endpoint{}, fmt.Errorf("invalid endpoint %q: %w", s, err)
	}
	return ep, nil
}

func parseServer(s string) (Endpoint, error) {
	kind, _, ok := strings.Cut(s, ":")
	if !ok {
		return Endpoint{}, errors.New("want HOST:PORT, tcp:PORT, tcp:PORT:interface=ADDR, tcp6:PORT, unix:PATH or ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem")
	}
	if !twistedTypes[kind] {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			return Endpoint{}, fmt.Errorf("unsupported endpoint type %q", kind)
		}
		p, err := parsePort(port)
		if err != nil {
			return Endpoint{}, err
		}
		return Endpoint{Network: "tcp", Address: net.JoinHostPort(host, strconv.Itoa(p))}, nil
	}
	d, err := split(s)
	if err != nil {
		return Endpoint{}, err
	}
	switch d.kind {
	case "tcp", "tcp6":
		params, network := tcpServer, "tcp"
		if d.kind == "tcp6" {
			params, network = tcp6Server, "tcp6"
		}
		v, _, err := bind(d, params)
		if err != nil {
			return Endpoint{}, err
		}
		return listenAddr(network, v)
	case "unix":
		v, given, err := bind(d, unixServer)
		if err != nil {
			return Endpoint{}, err
		}
		if v["address"] == "" {
			return Endpoint{}, errors.New("empty path")
		}
		var mode uint64
		if given["mode"] {
			if mode, err = strconv.ParseUint(v["mode"], 8, 32); err != nil || mode == 0 || mode > 0o777 {
				return Endpoint{}, fmt.Errorf("mode %q is not an octal file mode", v["mode"])
			}
		}
		if err := checkInt("backlog", v["backlog"]); err != nil {
			return Endpoint{}, err
		}
		if l := v["lockfile"]; l != "0" && l != "1" {
			return Endpoint{}, fmt.Errorf("lockfile must be 0 or 1, not %q", l)
		}
		return Endpoint{Network: "unix", Address: v["address"], Mode: os.FileMode(mode)}, nil
	case "ssl":
		v, given, err := bind(d, sslServer)
		if err != nil {
			return Endpoint{}, err
		}
		ep, err := listenAddr("tcp", v)
		if err != nil {
			return Endpoint{}, err
		}
		t := &TLS{PrivateKey: v["privateKey"], CertKey: v["certKey"], ExtraCertChain: v["extraCertChain"], ClientCA: v["clientCA"]}
		if t.CertKey == "" {
			t.CertKey = t.PrivateKey // Twisted: the key file holds the certificate too
		}
		for _, k := range []string{"privateKey", "certKey", "extraCertChain", "clientCA", "dhParameters"} {
			if given[k] && v[k] == "" {
				return Endpoint{}, fmt.Errorf("%s= names no file", k)
			}
		}
		if given["sslmethod"] && v["sslmethod"] == "" {
			return Endpoint{}, errors.New("sslmethod= names no method")
		}
		if t.MaxVersion, err = sslMethod(v["sslmethod"]); err != nil {
			return Endpoint{}, err
		}
		if given["dhParameters"] {
			// Go's TLS has no finite-field Diffie-Hellman; its key exchange
			// is always ECDHE, which gives the forward secrecy dhParameters
			// exists for in Twisted.
			t.Notes = append(t.Notes, "dhParameters ignored: key exchange is always ECDHE (forward secret) here")
		}
		ep.TLS = t
		return ep, nil
	case "tls":
		return Endpoint{}, errors.New("tls: is a client endpoint (for --subscribe); listen with ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem")
	}
	return Endpoint{}, fmt.Errorf("unsupported endpoint type %q (this broker listens on tcp:, tcp6:, unix: and ssl:)", d.kind)
}

// listenAddr is the TCP address of a tcp, tcp6 or ssl listener.
func listenAddr(network string, v map[string]string) (Endpoint, error) {
	port, err := parsePort(v["port"])
	if err != nil {
		return Endpoint{}, err
	}
	if err := checkInt("backlog", v["backlog"]); err != nil {
		return Endpoint{}, err
	}
	// The backlog is the system's (somaxconn): Go sets it, not the caller.
	return Endpoint{Network: network, Address: net.JoinHostPort(v["interface"], strconv.Itoa(port))}, nil
}

// sslMethod maps Twisted's sslmethod (a constant of OpenSSL.SSL) to the
// newest TLS version allowed. Methods that negotiate accept TLS 1.2 and
// 1.3; TLSv1_2_METHOD keeps to TLS 1.2; methods of older protocols are
// refused, since nothing older than TLS 1.2 is spoken here.
func sslMethod(m string) (maxVersion uint16, err error) {
	switch m {
	case "", "SSLv23_METHOD", "TLS_METHOD", "TLS_SERVER_METHOD":
		return 0, nil
	case "TLSv1_2_METHOD":
		return tls.VersionTLS12, nil
	case "SSLv2_METHOD", "SSLv3_METHOD", "TLSv1_METHOD", "TLSv1_1_METHOD":
		return 0, fmt.Errorf("sslmethod=%s asks for a protocol older than TLS 1.2, which this broker does not speak", m)
	}
	return 0, fmt.Errorf("unknown sslmethod %q (SSLv23_METHOD, TLS_METHOD or TLSv1_2_METHOD)", m)
}

// ParseClient parses a target to connect to, as Comet does: the
// description is tried as given, then with "tcp:" before it, then with
// ":PORT" after it, then with both, so "host", "host:port", "tcp:host",
// "tls:host" and "tls:host:port:trustRoots=DIR" all work and defaultPort
// applies when none is given. Twisted's types are "tcp:host:port" (or
// "tcp:host=H:port=P"), "unix:PATH" and "tls:HOST:PORT" with trustRoots=,
// certificate=, privateKey=, timeout= and bindAddress=. A bare
// "[::1]:8099" is read as HOST:PORT too.
func ParseClient(s string, defaultPort int) (Endpoint, error) {
	s = strings.TrimSpace(s)
	kind, _, _ := strings.Cut(s, ":")
	if !twistedTypes[kind] {
		if host, port, err := net.SplitHostPort(s); err == nil && host != "" {
			if p, err := parsePort(port); err == nil {
				return Endpoint{Network: "tcp", Address: net.JoinHostPort(host, strconv.Itoa(p))}, nil
			}
		}
	}
	port := ":" + strconv.Itoa(defaultPort)
	tries := []string{s, s + port}
	if !twistedTypes[kind] {
		// Only a description without a type gets "tcp:": "tls:1234" must
		// not become a plaintext connection to a host named tls.
		tries = []string{s, "tcp:" + s, s + port, "tcp:" + s + port}
	}
	var first error
	for _, try := range tries {
		ep, err := parseClient(try)
		if err == nil {
			return ep, nil
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return Endpoint{}, fmt.Errorf("invalid target %q: %w", s, fatal.error)
		}
		if first == nil {
			first = err
		}
	}
	return Endpoint{}, fmt.Errorf("invalid target %q: %w", s, first)
}

// fatalError stops Comet's coercion: the description was understood and
// is wrong, so no other reading of it should be tried.
type fatalError struct{ error }

func parseClient(s string) (Endpoint, error) {
	d, err := split(s)
	if err != nil {
		return Endpoint{}, &fatalError{err}
	}
	switch d.kind {
	case "tcp":
		// Twisted's _parseClientTCP: one positional argument is the port
		// when host= is given, else the host.
		// (Twisted then overrides a port= given too; that is refused here.)
		_, host := d.kw["host"]
		_, port := d.kw["port"]
		if len(d.args) == 1 && host && !port {
			d.args, d.kw["port"] = nil, d.args[0]
		}
		v, _, err := bind(d, tcpClient)
		if err != nil {
			return Endpoint{}, err
		}
		return clientAddr(v)
	case "unix":
		v, _, err := bind(d, unixClient)
		if err != nil {
			return Endpoint{}, err
		}
		if v["path"] == "" {
			return Endpoint{}, errors.New("empty path")
		}
		ep := Endpoint{Network: "unix", Address: v["path"]}
		if ep.Timeout, err = timeout(v["timeout"]); err != nil {
			return Endpoint{}, &fatalError{err}
		}
		return ep, nil
	case "tls":
		v, given, err := bind(d, tlsClient)
		if err != nil {
			return Endpoint{}, err
		}
		if given["endpoint"] {
			return Endpoint{}, &fatalError{errors.New("endpoint= (TLS over another endpoint) is not supported: give host and port")}
		}
		ep, err := clientAddr(v)
		if err != nil {
			return Endpoint{}, err
		}
		for _, k := range []string{"certificate", "privateKey", "trustRoots"} {
			if given[k] && v[k] == "" {
				return Endpoint{}, &fatalError{fmt.Errorf("%s= names no file", k)}
			}
		}
		if v["privateKey"] != "" && v["certificate"] == "" {
			return Endpoint{}, &fatalError{errors.New("privateKey= without certificate=: a client certificate needs certificate= (which may hold the key too)")}
		}
		ep.TLS = &TLS{ServerName: v["host"], TrustRoots: v["trustRoots"], Certificate: v["certificate"], PrivateKey: v["privateKey"]}
		return ep, nil
	case "ssl":
		// Twisted's ssl: client verifies nothing unless given caCertsDir,
		// and then not the host name: refused rather than half-secured.
		return Endpoint{}, &fatalError{errors.New("ssl: client endpoints are not supported (Twisted's do not check the server's name); " +
			"use tls:HOST:PORT, with trustRoots=DIR for a private CA (caCertsDir=), certificate= and privateKey= for a client certificate (certKey=, privateKey=)")}
	}
	return Endpoint{}, fmt.Errorf("unsupported endpoint type %q (this broker connects with tcp:, unix: and tls:)", d.kind)
}

// clientAddr is the address, timeout and bind address of a tcp or tls
// target.
func clientAddr(v map[string]string) (Endpoint, error) {
	if v["host"] == "" {
		return Endpoint{}, errors.New("no host")
	}
	port, err := parsePort(v["port"])
	if err != nil {
		return Endpoint{}, err
	}
	ep := Endpoint{Network: "tcp", Address: net.JoinHostPort(v["host"], strconv.Itoa(port)), BindAddress: v["bindAddress"]}
	if ep.Timeout, err = timeout(v["timeout"]); err != nil {
		return Endpoint{}, &fatalError{err}
	}
	return ep, nil
}

// timeout is Twisted's timeout=: whole seconds; "" leaves the caller's
// default.
func timeout(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("timeout=%s: want a whole number of seconds, at least 1", s)
	}
	return time.Duration(n) * time.Second, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return int(p), nil
}

func checkInt(name, s string) error {
	if _, err := strconv.ParseUint(s, 10, 31); err != nil {
		return fmt.Errorf("%s %q is not a number", name, s)
	}
	return nil
}
