package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"html"
	"net"
	"sync/atomic"
	"time"

	"github.com/comet-go/comet/vtp"
)

// subscriber is one broadcast-port connection, served by one goroutine.
type subscriber struct {
	id   int
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	fr   *vtp.FrameReader

	got   bitset       // seqs received at least once
	uniq  atomic.Int64 // members of got
	ready chan struct{}
	done  chan struct{}

	// Owned by the reader goroutine; read by Run only after done is closed.
	received   int // frames of this run, duplicates included
	dups       int
	unexpected int // VOEvents (or unparsable frames) not from this run
	lat        []int64
	lastRecv   int64 // ns since base
	err        error // why the connection ended, if Run did not end it
}

// connectSubscribers dials the M subscribers and waits until each one has
// received the broker's authenticate request and answered it.
func (r *run) connectSubscribers(ctx context.Context) error {
	if r.cfg.Subscribers == 0 {
		return nil
	}
	deadline := time.Now().Add(r.cfg.Timeout)
	d := net.Dialer{Deadline: deadline}
	for i := range r.cfg.Subscribers {
		conn, err := d.DialContext(ctx, "tcp", r.cfg.BroadcastAddr)
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		br := bufio.NewReaderSize(conn, 64<<10)
		s := &subscriber{
			id:    i,
			conn:  conn,
			br:    br,
			bw:    bufio.NewWriterSize(conn, 16<<10),
			fr:    vtp.NewFrameReader(br, r.cfg.MaxFrame),
			got:   newBitset(r.cfg.Events),
			ready: make(chan struct{}),
			done:  make(chan struct{}),
			lat:   make([]int64, 0, r.cfg.Events), // one sample per event received
		}
		r.subs = append(r.subs, s)
		go s.loop(r)
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for _, s := range r.subs {
		select {
		case <-s.ready:
		case <-s.done:
			return fmt.Errorf("subscriber %d: connection ended before the authenticate exchange: %v", s.id, s.err)
		case <-t.C:
			return fmt.Errorf("subscriber %d: no authenticate request from the broker within %v", s.id, r.cfg.Timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// closeSubscribers ends every subscriber connection and waits for the
// reader goroutines. Idempotent.
func (r *run) closeSubscribers() {
	r.closeOnce.Do(func() {
		r.closing.Store(true)
		// Wake the readers so that each flushes its pending acks (bounded
		// by the write deadline) before the connection goes.
		now := time.Now()
		for _, s := range r.subs {
			s.conn.SetReadDeadline(now)
			s.conn.SetWriteDeadline(now.Add(time.Second))
		}
		for _, s := range r.subs {
			<-s.done
			s.conn.Close()
		}
	})
}

func (s *subscriber) loop(r *run) {
	defer close(s.done)
	err := s.serve(r)
	if r.closing.Load() {
		s.bw.Flush()
		return
	}
	s.err = err
}

// serve answers the broker like a Comet subscriber with no filters
// (docs/vtp.md §4.2): authenticate and iamalive are answered, every VOEvent
// is acked with Origin = its ivorn. Replies are buffered and flushed
// whenever no complete frame is waiting, so a burst of events is acked in a
// few writes while no ack is held back while the reader waits.
func (s *subscriber) serve(r *run) error {
	authed := false
	for {
		if s.bw.Buffered() > 0 && !frameBuffered(s.br) {
			if err := s.bw.Flush(); err != nil {
				return err
			}
		}
		p, err := s.fr.ReadFrame()
		if err != nil {
			return err
		}
		now := r.now()
		iv, role, err := scanRoot(p)
		if err != nil {
			s.unexpected++ // unparsable: Comet logs and ignores
			continue
		}
		if role.ok && isTransportRole(p[role.start:role.end]) {
			m, err := vtp.ParseTransport(p)
			if err != nil {
				continue
			}
			switch m.Role {
			case vtp.RoleAuthenticate:
				if err := s.write(vtp.AuthenticateReply(m.Origin, "", nil, time.Now())); err != nil {
					return err
				}
				if err := s.bw.Flush(); err != nil {
					return err
				}
				if !authed {
					authed = true
					close(s.ready)
				}
			case vtp.RoleIAmAlive:
				if err := s.write(vtp.IAmAlive(m.Origin, "", time.Now())); err != nil {
					return err
				}
			}
			continue
		}
		if !iv.ok {
			s.unexpected++ // no ivorn, no possible ack
			continue
		}
		raw := p[iv.start:iv.end]
		origin := string(raw)
		if bytes.IndexByte(raw, '&') >= 0 {
			origin = html.UnescapeString(origin)
		}
		if err := s.write(vtp.Ack(origin, "", time.Now())); err != nil {
			return err
		}
		seq, ok := r.seqOf(raw)
		if !ok {
			s.unexpected++
			continue
		}
		s.received++
		if s.got.set(seq) {
			s.dups++
			continue
		}
		s.uniq.Add(1)
		s.lastRecv = now
		if t0 := r.submitAt[seq].Load(); t0 > 0 {
			s.lat = append(s.lat, now-(t0-1))
		}
	}
}

// write frames payload into the output buffer without an extra copy.
func (s *subscriber) write(payload []byte) error {
	_, err := s.bw.Write(vtp.AppendFrame(s.bw.AvailableBuffer(), payload))
	return err
}

// frameBuffered reports whether a whole frame is already in br, i.e. the
// next ReadFrame will not block.
func frameBuffered(br *bufio.Reader) bool {
	n := br.Buffered()
	if n < 4 {
		return false
	}
	h, _ := br.Peek(4)
	return uint64(n) >= 4+uint64(binary.BigEndian.Uint32(h))
}

func isTransportRole(b []byte) bool {
	switch string(b) {
	case vtp.RoleIAmAlive, vtp.RoleAuthenticate, vtp.RoleAck, vtp.RoleNak:
		return true
	}
	return false
}
