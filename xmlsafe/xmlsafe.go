// Package xmlsafe reads untrusted XML (VOEvents and VTP Transport messages)
// without ever expanding entities, fetching anything or recursing without
// bound. It wraps encoding/xml, which already refuses undeclared entities and
// never dereferences external resources; on top of that it refuses any DTD
// (spec/voevent.md §6: no real VOEvent or Transport message carries one),
// bounds element nesting, and accepts the legacy encodings seen in traffic.
//
// Scanner (scanner.go) applies the same rules, and libxml2's stricter
// well-formedness, in one allocation-free pass over an in-memory document
// with exact byte offsets; it is the hot-path parser for VOEvents.
package xmlsafe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"encoding/xml"

	"golang.org/x/text/encoding/charmap"
)

// DefaultMaxDepth bounds element nesting. Real VOEvents nest about 10 deep;
// 256 leaves room for anything legitimate while keeping a hostile
// 10,000-deep document cheap to refuse.
const DefaultMaxDepth = 256

// Errors callers may test with errors.Is.
var (
	// ErrDTD is returned for any <!DOCTYPE ...> declaration.
	ErrDTD = errors.New("DTD not allowed")
	// ErrTooDeep is returned when nesting exceeds the configured depth.
	ErrTooDeep = errors.New("element nesting too deep")
	// ErrNoRoot is returned for a document without a root element.
	ErrNoRoot = errors.New("no root element")
)

// Decoder yields the tokens of one document, refusing unsafe constructs.
type Decoder struct {
	d        *xml.Decoder
	maxDepth int
	depth    int
}

// NewDecoder returns a strict decoder over data. maxDepth <= 0 means
// DefaultMaxDepth.
func NewDecoder(data []byte, maxDepth int) *Decoder {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.Entity = nil // only the five predefined entities and character references
	d.CharsetReader = charsetReader
	return &Decoder{d: d, maxDepth: maxDepth}
}

// Token returns the next token (not copied: valid until the next call), or
// io.EOF at the end of the input.
func (x *Decoder) Token() (xml.Token, error) {
	tok, err := x.d.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case xml.Directive:
		if isDoctype(t) {
			return nil, ErrDTD
		}
		return nil, fmt.Errorf("markup declaration not allowed: %.20q", string(t))
	case xml.StartElement:
		x.depth++
		if x.depth > x.maxDepth {
			return nil, fmt.Errorf("%w (limit %d)", ErrTooDeep, x.maxDepth)
		}
	case xml.EndElement:
		x.depth--
	}
	return tok, nil
}

// Depth is the current element depth (1 inside the root element).
func (x *Decoder) Depth() int { return x.depth }

// InputOffset is the byte offset just after the most recent token.
func (x *Decoder) InputOffset() int64 { return x.d.InputOffset() }

// Skip consumes the rest of the current element, keeping the safety checks.
func (x *Decoder) Skip() error {
	start := x.depth
	for {
		tok, err := x.Token()
		if err != nil {
			return err
		}
		if _, ok := tok.(xml.EndElement); ok && x.depth < start {
			return nil
		}
	}
}

// Finish reads to the end of the document so that trailing garbage or a
// second root element is reported as an error.
func (x *Decoder) Finish() error {
	for {
		tok, err := x.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return fmt.Errorf("content after the root element: <%s>", t.Name.Local)
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return errors.New("text after the root element")
			}
		}
	}
}

func isDoctype(d xml.Directive) bool {
	return len(d) >= 7 && strings.EqualFold(string(d[:7]), "DOCTYPE")
}

// charsetReader accepts the legacy declarations seen in live traffic. The
// payload is never transcoded on the wire; this only affects parsing.
func charsetReader(label string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(strings.TrimSpace(label)) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return input, nil
	case "iso-8859-1", "latin1", "latin-1", "iso8859-1", "l1":
		return charmap.ISO8859_1.NewDecoder().Reader(input), nil
	case "windows-1252", "cp1252":
		return charmap.Windows1252.NewDecoder().Reader(input), nil
	}
	return nil, fmt.Errorf("unsupported encoding %q", label)
}
