package vtp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// DefaultSubmitTimeout bounds one submission, from connect to receipt,
// when Author.Timeout is zero (Comet's sender waits forever; an author
// should rather retry).
const DefaultSubmitTimeout = 20 * time.Second

// ErrNoReceipt is a submission whose connection the broker closed without
// an ack or nak: what a receiver does with bytes it cannot read as a
// VOEvent with an ivorn, and what a dying one does.
var ErrNoReceipt = errors.New("connection closed without a receipt")

// Author is the sender role: it submits one event per connection to a
// broker's receiver and waits for the ack or nak whose Origin is the
// event's ivorn (docs/vtp.md), skipping any other message. comet-sendvo,
// the load tool and the tests all submit through it.
//
// An Author keeps its buffers from one submission to the next, so it is
// not safe for concurrent use: give each goroutine its own.
type Author struct {
	// Dialer connects (LocalAddr, KeepAlive); its Deadline is set to the
	// end of each submission.
	Dialer net.Dialer
	// Dial, if set, makes each submission's connection instead of Dialer,
	// ignoring network and address: an endpoint.Dialer's Dial, which
	// completes a tls: target's handshake too. Its ctx carries the
	// submission's deadline.
	Dial func(ctx context.Context) (net.Conn, error)
	// Timeout bounds one submission, connect to receipt; 0 =
	// DefaultSubmitTimeout.
	Timeout time.Duration
	// MaxFrame is the largest reply read; 0 = DefaultMaxFrame.
	MaxFrame int
	// CloseWait, if positive, is how long to wait after the receipt for
	// the broker to close the connection first (it does so at once), so
	// that TIME_WAIT stays on the broker's side rather than using up this
	// host's ports over many submissions. 0 closes at once.
	CloseWait time.Duration
	// Skipped, if set, is told of every message read that is not the
	// receipt (err says why it could not be parsed, if it could not).
	Skipped func(msg *Message, err error)

	buf []byte
	br  *bufio.Reader
	fr  *FrameReader
}

func (a *Author) dial(ctx context.Context, network, address string, deadline time.Time) (net.Conn, error) {
	if a.Dial != nil {
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		return a.Dial(ctx)
	}
	d := a.Dialer
	d.Deadline = deadline
	return d.DialContext(ctx, network, address)
}

// Step is where a submission failed.
type Step uint8

const (
	StepConnect Step = iota + 1
	StepSend
	StepReceipt
)

// SubmitError is a submission that got no receipt, with the step that
// failed.
type SubmitError struct {
	Step Step
	Err  error
}

func (e *SubmitError) Error() string {
	switch e.Step {
	case StepConnect:
		return "connect: " + e.Err.Error()
	case StepSend:
		return "send: " + e.Err.Error()
	}
	return e.Err.Error() // the receipt's errors say so themselves
}

func (e *SubmitError) Unwrap() error { return e.Err }

// Receipt is a broker's answer to one submission.
type Receipt struct {
	*Message           // the ack or nak (Role RoleAck or RoleNak)
	At       time.Time // when it was read
	// LeftOpen reports a broker that had not closed the connection
	// CloseWait after the receipt.
	LeftOpen bool
}

// Submit sends payload, a VOEvent whose ivorn is ivorn, to the receiver at
// network and address, and returns its receipt. An empty ivorn accepts the
// first ack or nak, whatever its Origin. An error is a *SubmitError
// naming the step that failed; at the receipt it wraps ErrNoReceipt, or a
// net.Error that timed out ("no receipt within ..."), or what else failed
// ("receipt: ..."). The end of ctx ends the submission at once.
func (a *Author) Submit(ctx context.Context, network, address string, payload []byte, ivorn string) (*Receipt, error) {
	a.buf = AppendFrame(a.buf[:0], payload)
	return a.SubmitFrame(ctx, network, address, a.buf, ivorn)
}

// SubmitFrame is Submit of an event already framed (AppendFrame), for
// callers that build their events in place.
func (a *Author) SubmitFrame(ctx context.Context, network, address string, frame []byte, ivorn string) (*Receipt, error) {
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = DefaultSubmitTimeout
	}
	deadline := time.Now().Add(timeout)
	conn, err := a.dial(ctx, network, address, deadline)
	if err != nil {
		return nil, &SubmitError{StepConnect, err}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn.SetDeadline(deadline)
	if _, err := conn.Write(frame); err != nil {
		return nil, &SubmitError{StepSend, err}
	}
	if a.fr == nil {
		a.br = bufio.NewReaderSize(nil, 4096)
		a.fr = NewFrameReader(a.br, a.MaxFrame)
	}
	a.br.Reset(conn)
	var m *Message
	for {
		reply, err := a.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF):
				err = ErrNoReceipt
			case errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil:
				err = fmt.Errorf("no receipt within %v: %w", timeout, err)
			default:
				err = fmt.Errorf("receipt: %w", err)
			}
			return nil, &SubmitError{StepReceipt, err}
		}
		m, err = ParseTransport(reply)
		if err == nil && (m.Role == RoleAck || m.Role == RoleNak) && (ivorn == "" || m.Origin == ivorn) {
			break
		}
		if a.Skipped != nil {
			a.Skipped(m, err)
		}
	}
	r := &Receipt{Message: m, At: time.Now()}
	if a.CloseWait > 0 {
		if cw := r.At.Add(a.CloseWait); cw.Before(deadline) {
			conn.SetReadDeadline(cw)
		}
		if _, err := io.Copy(io.Discard, a.br); err != nil && ctx.Err() == nil {
			r.LeftOpen = true
		}
	}
	return r, nil
}
