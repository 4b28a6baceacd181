package endpoint

import (
	"context"
	"fmt"
	"net"
	"time"
)

// DefaultDialTimeout bounds one connection attempt, TLS handshake
// included, when neither the target (timeout=) nor the caller says;
// Twisted's is 30 s.
const DefaultDialTimeout = 30 * time.Second

// Dialer connects to one target: TCP or a unix socket, then the TLS
// handshake for a tls: target, within one timeout. Every client of the
// project dials through one.
type Dialer struct {
	target  Endpoint
	timeout time.Duration
	tls     *ClientTLS // nil for plaintext targets
}

// NewDialer reads the target's TLS files, if any (so a missing or bad one
// fails here). timeout bounds each attempt when the target gives none
// (timeout=); 0 means DefaultDialTimeout.
func NewDialer(target Endpoint, timeout time.Duration) (*Dialer, error) {
	d := &Dialer{target: target, timeout: timeout}
	if target.Timeout > 0 {
		d.timeout = target.Timeout
	}
	if d.timeout <= 0 {
		d.timeout = DefaultDialTimeout
	}
	if target.TLS != nil {
		var err error
		if d.tls, err = NewClientTLS(target.TLS); err != nil {
			return nil, fmt.Errorf("%s: %w", target, err)
		}
	}
	return d, nil
}

// Dial connects, and for a tls: target completes the handshake, within
// the timeout, or by ctx's deadline if that is sooner. A failed handshake
// is a *HandshakeError.
func (d *Dialer) Dial(ctx context.Context) (net.Conn, error) {
	deadline := time.Now().Add(d.timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	nd := net.Dialer{Deadline: deadline}
	if d.target.BindAddress != "" {
		local, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(d.target.BindAddress, "0"))
		if err != nil {
			return nil, fmt.Errorf("bindAddress %s: %w", d.target.BindAddress, err)
		}
		nd.LocalAddr = local
	}
	conn, err := nd.DialContext(ctx, d.target.Network, d.target.Address)
	if err != nil || d.tls == nil {
		return conn, err
	}
	tc, err := d.tls.Handshake(ctx, conn, deadline)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// Reload re-reads the target's TLS files; on error the ones read before
// stay in use. Plaintext targets have nothing to reload.
func (d *Dialer) Reload() error {
	if d.tls == nil {
		return nil
	}
	if err := d.tls.Reload(); err != nil {
		return fmt.Errorf("%s: %w", d.target, err)
	}
	return nil
}
