// Package endpoint is where VTP connections are made and how they are
// secured. It parses the Twisted endpoint descriptions of Comet's command
// line (README.md, Options), listens and dials: listeners such as
// "tcp:8098", "tcp:8098:interface=127.0.0.1", "tcp6:8098",
// "unix:/run/comet.sock", "ssl:8098:privateKey=key.pem:certKey=cert.pem",
// a bare "8098" or "127.0.0.1:8098"; targets such as "host", "host:port",
// "tcp:host:port", "tcp:host=H:port=P", "unix:/path" or
// "tls:host:port:trustRoots=/etc/comet/ca". TLS endpoints read their PEM
// files when made and again on Reload (SIGHUP), keeping what they have
// when a file is bad.
package endpoint

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/comet-go/comet/whitelist"
)

// Endpoint is a parsed endpoint description: a network and address ready
// for net.Listen or net.Dial, and how the connection is secured.
type Endpoint struct {
	Network string // "tcp", "tcp6" or "unix"
	Address string
	// TLS is set for ssl: listeners and tls: targets; nil is plaintext.
	TLS *TLS
	// Mode is a unix listener's socket file mode (mode=); 0 leaves the mode
	// it was made with.
	Mode os.FileMode
	// Timeout bounds a target's connect and TLS handshake together
	// (timeout=); 0 is the dialer's default.
	Timeout time.Duration
	// BindAddress is the local address a target is dialed from
	// (bindAddress=); "" lets the system choose.
	BindAddress string
}

// TLS is the security of an endpoint: the files its description names,
// read when its listener or dialer is made and again on Reload.
type TLS struct {
	// Listeners (ssl:). PrivateKey defaults to server.pem and CertKey to
	// PrivateKey (Twisted's defaults: one file may hold both).
	CertKey        string
	ExtraCertChain string // intermediate CA certificates sent after CertKey's
	// ClientCA (an extension to Twisted's syntax) requires every client to
	// present a certificate issued by one of the CA certificates in this
	// file (mutual TLS).
	ClientCA string

	// Targets (tls:).
	ServerName  string // the name the server's certificate must be valid for: the host
	TrustRoots  string // directory whose *.pem files are the trusted CAs; "" = the system's
	Certificate string // client certificate; holds the key too unless PrivateKey is given

	PrivateKey string
	// MaxVersion caps the TLS version (sslmethod=TLSv1_2_METHOD); 0 = the
	// newest. The minimum is always TLS 1.2.
	MaxVersion uint16
	// Notes are parameters accepted for compatibility that have no effect
	// here, with why; the broker logs them at start-up.
	Notes []string
}

func (e Endpoint) String() string {
	if e.TLS != nil {
		if e.TLS.ServerName != "" {
			return "tls:" + e.Address
		}
		return "ssl:" + e.Address
	}
	return e.Network + ":" + e.Address
}

// ListenConfig holds what a listener needs beyond its endpoint.
type ListenConfig struct {
	// AllowCerts, if set, narrows the client certificates an ssl: listener
	// with clientCA= accepts to these fingerprints (--allow-cert).
	AllowCerts *whitelist.Certs
	// KeepAlive is the TCP keep-alive period of accepted connections, as
	// in net.ListenConfig: 0 is Go's default (15 s), negative turns
	// keep-alive off (no probes, and four setsockopt calls fewer per
	// connection).
	KeepAlive time.Duration
}

// Listen opens the endpoint with no further configuration.
func (e Endpoint) Listen() (net.Listener, error) { return ListenConfig{}.Listen(e) }

// Listen opens e. An ssl: endpoint's files are read first, so a missing
// or bad one fails here, before the port is bound; its listener is a
// *TLSListener.
func (lc ListenConfig) Listen(e Endpoint) (net.Listener, error) {
	var st *ServerTLS
	if e.TLS != nil {
		var err error
		if st, err = NewServerTLS(e.TLS, lc.AllowCerts); err != nil {
			return nil, fmt.Errorf("%s: %w", e, err)
		}
	}
	ln, err := (&net.ListenConfig{KeepAlive: lc.KeepAlive}).Listen(context.Background(), e.Network, e.Address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", e, err)
	}
	if e.Network == "unix" && e.Mode != 0 {
		if err := os.Chmod(e.Address, e.Mode); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen on %s: mode: %w", e, err)
		}
	}
	if st != nil {
		return &TLSListener{Listener: ln, ServerTLS: st}, nil
	}
	return ln, nil
}

// TLSListener is an ssl: listener. Accept returns connections before
// their handshake: the accept loop hands each to Handshake in the
// connection's own goroutine, so that a slow or silent peer never holds
// the loop.
type TLSListener struct {
	net.Listener
	*ServerTLS
}
