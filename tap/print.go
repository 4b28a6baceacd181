package tap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/filter"
)

// Options configure a Printer.
type Options struct {
	// Filters select events as the broadcaster selects them for a
	// subscriber: no filter means every event, otherwise an event goes if
	// any filter matches within FilterBudget; a payload that cannot be
	// parsed for filtering matches none.
	Filters []*filter.Filter
	// FilterBudget is the evaluation steps each filter may take on each
	// event (--filter-budget); 0 = filter.DefaultBudget. A filter that
	// runs out is no match for that event and is reported to Logger.
	FilterBudget int
	Logger       *slog.Logger // nil: slog.Default()
	// Payload adds the event itself to each line.
	Payload bool
}

// Printer writes events as JSON lines. Not safe for concurrent use.
type Printer struct {
	w   io.Writer
	opt Options
	buf bytes.Buffer
	enc *json.Encoder

	overBudget filter.OverBudgetLog
}

// NewPrinter returns a Printer writing to w.
func NewPrinter(w io.Writer, opt Options) *Printer {
	p := &Printer{w: w, opt: opt}
	p.overBudget = filter.OverBudgetLog{Logger: opt.Logger, Budget: opt.FilterBudget}
	p.enc = json.NewEncoder(&p.buf)
	// Payloads and IVORNs are XML and URLs: keep <, > and & readable.
	p.enc.SetEscapeHTML(false)
	return p
}

// Print writes d as one line if it passes the filters and reports whether
// it did. Each line goes out in a single Write, so a reader at the other
// end of a pipe gets it at once and whole (no buffering to flush).
func (p *Printer) Print(d *bus.Delivery) (bool, error) {
	if len(p.opt.Filters) > 0 {
		doc, err := filter.Parse(d.Payload)
		if err != nil || !doc.MatchAny(p.opt.Filters, p.opt.FilterBudget, p.overBudget.Report) {
			return false, nil
		}
	}
	p.buf.Reset()
	if err := p.enc.Encode(NewRecord(d, p.opt.Payload)); err != nil {
		return false, fmt.Errorf("tap: encoding event %d: %w", d.Seq, err)
	}
	if _, err := p.w.Write(p.buf.Bytes()); err != nil {
		return false, fmt.Errorf("tap: writing event %d: %w", d.Seq, err)
	}
	return true, nil
}
