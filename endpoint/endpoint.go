// Package endpoint parses the Twisted-style endpoint strings of Comet's
// command line (README.md, Options): listeners such as "tcp:8098",
// "tcp:8098:interface=127.0.0.1", "tcp6:8098", "unix:/run/comet.sock", a
// bare "8098" or "127.0.0.1:8098", and client targets such as "host",
// "host:port", "tcp:host:port", "tcp:host=H:port=P" or "unix:/path".
package endpoint

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Endpoint is a network and address ready for net.Listen or net.Dial.
type Endpoint struct {
	Network string // "tcp", "tcp4", "tcp6" or "unix"
	Address string
}

func (e Endpoint) String() string { return e.Network + ":" + e.Address }

// Listen opens the endpoint.
func (e Endpoint) Listen() (net.Listener, error) {
	ln, err := net.Listen(e.Network, e.Address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", e, err)
	}
	return ln, nil
}

// twistedTypes are the endpoint types of Twisted's server syntax that
// Comet's command line could be given; those outside "tcp", "tcp6" and
// "unix" are refused by name rather than read as a host.
var twistedTypes = map[string]bool{"tcp": true, "tcp6": true, "unix": true, "ssl": true, "systemd": true, "tls": true, "onion": true}

// ParseServer parses a listening endpoint: Twisted's syntax as Comet takes
// it, a bare PORT, or HOST:PORT as for a client target (":8098",
// "127.0.0.1:8098", "[::1]:8098", "localhost:8098"). Comet's "tcp:PORT"
// listens on every IPv4 interface; we listen on every interface (IPv4 and
// IPv6).
func ParseServer(s string) (Endpoint, error) {
	s = strings.TrimSpace(s)
	if _, err := strconv.ParseUint(s, 10, 16); err == nil {
		s = "tcp:" + s // a bare PORT is retried as tcp:PORT
	}
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Endpoint{}, fmt.Errorf("invalid endpoint %q: want HOST:PORT, tcp:PORT, tcp:PORT:interface=ADDR, tcp6:PORT or unix:PATH", s)
	}
	if !twistedTypes[kind] {
		if host, port, err := net.SplitHostPort(s); err == nil {
			p, err := parsePort(port)
			if err != nil {
				return Endpoint{}, fmt.Errorf("invalid endpoint %q: %v", s, err)
			}
			return Endpoint{Network: "tcp", Address: net.JoinHostPort(host, strconv.Itoa(p))}, nil
		}
	}
	switch kind {
	case "unix":
		path, _, _ := strings.Cut(rest, ":") // drop options such as mode=
		if path == "" {
			return Endpoint{}, fmt.Errorf("invalid endpoint %q: empty path", s)
		}
		return Endpoint{Network: "unix", Address: path}, nil
	case "tcp", "tcp6":
		fields := strings.Split(rest, ":")
		port, err := parsePort(fields[0])
		if err != nil {
			return Endpoint{}, fmt.Errorf("invalid endpoint %q: %v", s, err)
		}
		host := ""
		for _, opt := range fields[1:] {
			k, v, _ := strings.Cut(opt, "=")
			switch k {
			case "interface":
				host = v
			case "backlog":
			default:
				return Endpoint{}, fmt.Errorf("invalid endpoint %q: unknown option %q", s, k)
			}
		}
		network := "tcp"
		if kind == "tcp6" {
			network = "tcp6"
		}
		return Endpoint{Network: network, Address: net.JoinHostPort(host, strconv.Itoa(port))}, nil
	}
	return Endpoint{}, fmt.Errorf("invalid endpoint %q: unsupported type %q", s, kind)
}

// ParseClient parses a target to connect to, coercing like Comet: "host",
// "host:port", "tcp:host", "tcp:host:port", "tcp:host=H:port=P",
// "unix:PATH". defaultPort applies when none is given.
func ParseClient(s string, defaultPort int) (Endpoint, error) {
	s = strings.TrimSpace(s)
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if path == "" {
			return Endpoint{}, fmt.Errorf("invalid target %q: empty path", s)
		}
		return Endpoint{Network: "unix", Address: path}, nil
	}
	s = strings.TrimPrefix(s, "tcp:")
	host, port := "", defaultPort
	if strings.Contains(s, "=") {
		for _, opt := range strings.Split(s, ":") {
			k, v, _ := strings.Cut(opt, "=")
			switch k {
			case "host":
				host = v
			case "port":
				p, err := parsePort(v)
				if err != nil {
					return Endpoint{}, fmt.Errorf("invalid target %q: %v", s, err)
				}
				port = p
			case "timeout", "bindAddress":
			default:
				return Endpoint{}, fmt.Errorf("invalid target %q: unknown option %q", s, k)
			}
		}
	} else if h, p, err := net.SplitHostPort(s); err == nil {
		host = h
		if port, err = parsePort(p); err != nil {
			return Endpoint{}, fmt.Errorf("invalid target %q: %v", s, err)
		}
	} else {
		host = strings.Trim(s, "[]")
	}
	if host == "" {
		return Endpoint{}, fmt.Errorf("invalid target %q: no host", s)
	}
	return Endpoint{Network: "tcp", Address: net.JoinHostPort(host, strconv.Itoa(port))}, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return int(p), nil
}
