package stages

import (
	"context"
	"io"
	"os"
	"sync"

	"github.com/comet-go/comet/bus"
)

// PrintEvent is the print-event stage: each event's raw bytes as text,
// then a newline, in one write; events never interleave.
type PrintEvent struct {
	mu sync.Mutex
	w  io.Writer
}

// NewPrintEvent prints to w (os.Stdout if nil).
func NewPrintEvent(w io.Writer) *PrintEvent {
	if w == nil {
		w = os.Stdout
	}
	return &PrintEvent{w: w}
}

// Name is "print-event".
func (*PrintEvent) Name() string { return ActionPrintEvent }

// Handle writes the event.
func (p *PrintEvent) Handle(_ context.Context, ev *bus.Event) error {
	buf := make([]byte, len(ev.Payload)+1)
	copy(buf, ev.Payload)
	buf[len(ev.Payload)] = '\n'
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := p.w.Write(buf)
	return err
}
