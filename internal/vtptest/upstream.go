package vtptest

import (
	"net"
	"sync"
	"time"

	"github.com/comet-go/comet/vtp"
)

// UpstreamMode selects how a scripted Upstream greets its subscribers.
type UpstreamMode int

const (
	// CometUpstream sends an authenticate request on connect, like Comet's
	// broadcaster, and Comet-format iamalives.
	CometUpstream UpstreamMode = iota
	// GCNUpstream never asks to authenticate and sends pygcn-style
	// one-line iamalives in the VTP namespace, like a GCN server.
	GCNUpstream
	// ClosingUpstream accepts and closes at once: a handshake that always
	// fails.
	ClosingUpstream
	// SilentUpstream accepts and never sends anything.
	SilentUpstream
)

// UpstreamIVO is the IVOID a scripted upstream uses as Origin.
const UpstreamIVO = "ivo://test.upstream/broker"

// Upstream is a scripted upstream broker's broadcaster: it accepts
// subscribers and records every message they send.
type Upstream struct {
	Mode UpstreamMode
	ln   net.Listener

	mu       sync.Mutex
	conns    []net.Conn
	accepts  int
	received []*vtp.Message
	notify   chan struct{}
	wg       sync.WaitGroup
}

// StartUpstream listens on a loopback port.
func StartUpstream(mode UpstreamMode) (*Upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &Upstream{Mode: mode, ln: ln, notify: make(chan struct{}, 1)}
	u.wg.Add(1)
	go u.accept()
	return u, nil
}

// Addr is the listening address.
func (u *Upstream) Addr() string { return u.ln.Addr().String() }

// Close stops listening and drops every subscriber.
func (u *Upstream) Close() {
	u.ln.Close()
	u.mu.Lock()
	for _, c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

func (u *Upstream) accept() {
	defer u.wg.Done()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.accepts++
		u.mu.Unlock()
		switch u.Mode {
		case ClosingUpstream:
			c.Close()
			continue
		case CometUpstream:
			vtp.WriteFrame(c, vtp.AuthenticateRequest(UpstreamIVO, time.Now()))
		}
		u.mu.Lock()
		u.conns = append(u.conns, c)
		u.mu.Unlock()
		u.wake()
		u.wg.Add(1)
		go u.read(c)
	}
}

func (u *Upstream) read(c net.Conn) {
	defer u.wg.Done()
	fr := vtp.NewFrameReader(c, 0)
	for {
		p, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if m, err := vtp.ParseTransport(p); err == nil {
			u.mu.Lock()
			u.received = append(u.received, m)
			u.mu.Unlock()
			u.wake()
		}
	}
}

func (u *Upstream) wake() {
	select {
	case u.notify <- struct{}{}:
	default:
	}
}

// Accepts counts connections accepted so far.
func (u *Upstream) Accepts() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.accepts
}

// Connected counts subscribers currently held.
func (u *Upstream) Connected() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

// Received returns the messages subscribers have sent so far.
func (u *Upstream) Received() []*vtp.Message {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*vtp.Message(nil), u.received...)
}

// Send writes one frame to every subscriber.
func (u *Upstream) Send(payload []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.conns {
		vtp.WriteFrame(c, payload)
	}
}

// SendIAmAlive sends a keep-alive probe in the upstream's style.
func (u *Upstream) SendIAmAlive() {
	if u.Mode == GCNUpstream {
		u.Send([]byte(`<?xml version='1.0' encoding='UTF-8'?><trn:Transport role="iamalive" version="1.0" xmlns:trn="http://telescope-networks.org/schema/Transport/v1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://telescope-networks.org/schema/Transport/v1.1 http://telescope-networks.org/schema/Transport-v1.1.xsd"><Origin>` +
			UpstreamIVO + `</Origin><TimeStamp>` + time.Now().Local().Format("2006-01-02T15:04:05.000000") + `</TimeStamp></trn:Transport>`))
		return
	}
	u.Send(vtp.IAmAlive(UpstreamIVO, "", time.Now()))
}

// WaitFor waits until cond holds or timeout.
func (u *Upstream) WaitFor(timeout time.Duration, cond func(*Upstream) bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond(u) {
		select {
		case <-u.notify:
		case <-tick.C:
		case <-deadline.C:
			return cond(u)
		}
	}
	return true
}
