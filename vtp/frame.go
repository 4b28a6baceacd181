// Package vtp is the VOEvent Transport Protocol wire code shared by every
// role: length-prefixed framing (docs/vtp.md §1) and Transport messages
// (§2.2, §2.3), written byte for byte as Comet writes them.
package vtp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The ports of Comet's roles when none is given: authors submit to a
// broker's receiver on DefaultReceivePort, subscribers connect to its
// broadcaster on DefaultBroadcastPort.
const (
	DefaultReceivePort   = 8098
	DefaultBroadcastPort = 8099
)

// DefaultMaxFrame is Comet's limit (Twisted's Int32StringReceiver.MAX_LENGTH):
// a frame of 99,999 bytes is accepted, 100,000 is refused. Every Comet peer
// drops the connection on a larger frame, so raising it only helps between
// brokers of this project.
const DefaultMaxFrame = 99999

// ErrFrameTooLarge reports a length prefix above the reader's limit. The
// payload is never read or allocated; the caller should close the connection
// without a reply, as Comet does.
var ErrFrameTooLarge = errors.New("length limit exceeded")

// FrameReader reads frames from a stream. It is not safe for concurrent use.
type FrameReader struct {
	r   io.Reader
	max int
	hdr [4]byte
	buf []byte // ReadFrameSlice's buffer
}

// NewFrameReader reads frames of at most max bytes (max <= 0 means
// DefaultMaxFrame). Wrap r in a bufio.Reader if many small frames arrive
// back to back.
func NewFrameReader(r io.Reader, max int) *FrameReader {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	return &FrameReader{r: r, max: max}
}

// ReadFrame returns the next payload in a freshly allocated slice that the
// caller owns. io.EOF means the peer closed cleanly between frames;
// io.ErrUnexpectedEOF means it closed inside one.
func (fr *FrameReader) ReadFrame() ([]byte, error) {
	n, err := fr.readLength()
	if err != nil {
		return nil, err
	}
	return fr.readPayload(nil, n)
}

// ReadFrameSlice is ReadFrame for a caller that is done with each payload
// before it reads the next (a broadcaster's acks): the payload is a slice
// of the *bufio.Reader's buffer when the reader reads from one that holds
// the whole frame, otherwise of a buffer the FrameReader keeps for the
// next frame (up to keptFrameBuffer bytes). Either way it is valid only
// until the next read.
func (fr *FrameReader) ReadFrameSlice() ([]byte, error) {
	if br, ok := fr.r.(*bufio.Reader); ok {
		hdr, err := br.Peek(4)
		if err != nil {
			if len(hdr) > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF // as io.ReadFull says it
			}
			return nil, err
		}
		if n := binary.BigEndian.Uint32(hdr); uint64(n) <= uint64(fr.max) && int(n)+4 <= br.Size() {
			p, err := br.Peek(int(n) + 4)
			if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return nil, err
			}
			br.Discard(len(p)) // the bytes stay in place until the next read
			return p[4:], nil
		}
		// Larger than the buffer (or over the limit): read as usual.
	}
	n, err := fr.readLength()
	if err != nil {
		return nil, err
	}
	p, err := fr.readPayload(fr.buf[:0], n)
	if cap(p) <= keptFrameBuffer {
		fr.buf = p[:0]
	}
	return p, err
}

// ReadSoleFrame reads the frame of a connection that carries only one (an
// author's submission, docs/vtp.md §4.1) in as few reads as it can: the
// first read takes the length prefix and, most often, the whole payload,
// where ReadFrame reads them apart. It may read past the frame; what
// follows is the caller's to discard. Limits and errors are ReadFrame's.
func ReadSoleFrame(r io.Reader, max int) ([]byte, error) {
	fr := NewFrameReader(r, max)
	buf := make([]byte, 4+initialFrameBuffer)
	got := 0
	var err error
	for got < 4 && err == nil {
		var k int
		k, err = r.Read(buf[got:])
		got += k
	}
	if got < 4 {
		if err == io.EOF && got > 0 {
			err = io.ErrUnexpectedEOF // as io.ReadFull says it
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(buf)
	if uint64(n) > uint64(fr.max) {
		return nil, fmt.Errorf("%w (%d bytes, limit %d)", ErrFrameTooLarge, n, fr.max)
	}
	if got >= 4+int(n) {
		return buf[4 : 4+n : 4+n], nil
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return fr.readPayload(buf[4:got], n)
}

// keptFrameBuffer bounds the buffer ReadFrameSlice keeps between frames.
const keptFrameBuffer = 16 << 10

func (fr *FrameReader) readLength() (uint32, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return 0, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[:])
	// Checked before any allocation: a little-endian or hostile prefix
	// (e.g. 0x7fffffff) costs nothing.
	if uint64(n) > uint64(fr.max) {
		return 0, fmt.Errorf("%w (%d bytes, limit %d)", ErrFrameTooLarge, n, fr.max)
	}
	return n, nil
}

// readPayload reads n bytes into buf (reallocated when too small).
func (fr *FrameReader) readPayload(buf []byte, n uint32) ([]byte, error) {
	// The buffer grows as bytes arrive, so a peer that announces a large
	// frame and then stalls pins only what it has actually sent.
	if buf == nil || cap(buf) < min(int(n), initialFrameBuffer) {
		buf = make([]byte, 0, min(int(n), initialFrameBuffer))
	}
	for len(buf) < int(n) {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, min(cap(buf), int(n)-cap(buf)))...)[:len(buf)]
		}
		k, err := fr.r.Read(buf[len(buf):min(cap(buf), int(n))])
		buf = buf[:len(buf)+k]
		if err != nil && len(buf) < int(n) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return buf, nil
}

// initialFrameBuffer is the first allocation for a frame's payload; it
// doubles as bytes arrive. Most VOEvents and every Transport message fit.
const initialFrameBuffer = 8 << 10

// AppendFrame appends the 4-byte big-endian length prefix and payload to dst.
func AppendFrame(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// Frame returns payload framed in a new slice, ready for a single Write.
func Frame(payload []byte) []byte {
	return AppendFrame(make([]byte, 0, 4+len(payload)), payload)
}

// WriteFrame writes one frame with a single Write call, so a frame is never
// interleaved with another writer's bytes at the syscall level.
func WriteFrame(w io.Writer, payload []byte) error {
	_, err := w.Write(Frame(payload))
	return err
}
