package loadgen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Template is a VOEvent document whose root ivorn attribute value can be
// replaced without touching any other byte. The document is scanned once
// (ParseTemplate); every event is then two copies and an integer format.
type Template struct {
	doc        []byte
	start, end int  // the ivorn attribute value is doc[start:end]
	quote      byte // its delimiter, ' or "
}

// ParseTemplate locates the ivorn attribute of doc's root element. The XML
// declaration, processing instructions and comments before the root are
// skipped; a DOCTYPE is refused (no broker accepts one). doc is copied.
func ParseTemplate(doc []byte) (*Template, error) {
	iv, _, err := scanRoot(doc)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	if !iv.ok {
		return nil, errors.New("template: root element has no ivorn attribute")
	}
	return &Template{doc: bytes.Clone(doc), start: iv.start, end: iv.end, quote: iv.quote}, nil
}

// IVORN is the template's own ivorn attribute value, as written (not
// unescaped).
func (t *Template) IVORN() string { return string(t.doc[t.start:t.end]) }

// Len is the size of a rendered event whose ivorn is n bytes long.
func (t *Template) Len(n int) int { return len(t.doc) - (t.end - t.start) + n }

// Render returns the template with its root ivorn replaced by ivorn, which
// must be safe inside the attribute (see CheckIVORN).
func (t *Template) Render(ivorn string) ([]byte, error) {
	if err := t.CheckIVORN(ivorn); err != nil {
		return nil, err
	}
	out := make([]byte, 0, t.Len(len(ivorn)))
	out = append(out, t.doc[:t.start]...)
	out = append(out, ivorn...)
	return append(out, t.doc[t.end:]...), nil
}

// CheckIVORN reports whether s can be spliced in verbatim: no attribute
// delimiter, no markup, no entity, no whitespace or control characters.
func (t *Template) CheckIVORN(s string) error {
	if s == "" {
		return errors.New("empty ivorn")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c <= ' ', c == 0x7f, c == '"', c == '\'', c == '<', c == '>', c == '&':
			return fmt.Errorf("ivorn %q: byte %q cannot be spliced into an attribute verbatim", s, c)
		}
	}
	return nil
}

// appendFrame appends one framed event (4-byte length, then the template
// with ivorn = prefix + "-" + seq) to dst. prefix was checked by the caller.
func (t *Template) appendFrame(dst []byte, prefix string, seq int) []byte {
	var num [20]byte
	digits := strconv.AppendInt(num[:0], int64(seq), 10)
	n := t.Len(len(prefix) + 1 + len(digits))
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, t.doc[:t.start]...)
	dst = append(dst, prefix...)
	dst = append(dst, '-')
	dst = append(dst, digits...)
	return append(dst, t.doc[t.end:]...)
}

// SpliceIVORN is ParseTemplate + Render for one-off use.
func SpliceIVORN(doc []byte, ivorn string) ([]byte, error) {
	t, err := ParseTemplate(doc)
	if err != nil {
		return nil, err
	}
	return t.Render(ivorn)
}

// span is an attribute value's position in a document.
type span struct {
	start, end int
	quote      byte
	ok         bool
}

var (
	errNoRoot     = errors.New("no root element")
	errMalformed  = errors.New("malformed root start tag")
	errDoctype    = errors.New("markup declaration (DOCTYPE) before the root element")
	errUnterminal = errors.New("unterminated comment or processing instruction before the root")
)

// scanRoot finds the unprefixed ivorn and role attributes of the root start
// tag by scanning bytes only: no allocation, no XML decoder. It reads no
// further than the end of the root start tag, so it costs the same for a
// 500-byte and a 99,999-byte event.
func scanRoot(doc []byte) (ivorn, role span, err error) {
	i, n := 0, len(doc)
	for {
		j := bytes.IndexByte(doc[i:], '<')
		if j < 0 {
			return ivorn, role, errNoRoot
		}
		i += j
		rest := doc[i:]
		if len(rest) < 2 {
			return ivorn, role, errNoRoot
		}
		if rest[1] == '?' {
			k := bytes.Index(rest, []byte("?>"))
			if k < 0 {
				return ivorn, role, errUnterminal
			}
			i += k + 2
			continue
		}
		if rest[1] == '!' {
			if bytes.HasPrefix(rest, []byte("<!--")) {
				k := bytes.Index(rest[4:], []byte("-->"))
				if k < 0 {
					return ivorn, role, errUnterminal
				}
				i += 4 + k + 3
				continue
			}
			return ivorn, role, errDoctype
		}
		break
	}
	i++ // past '<'
	for i < n && !isSpace(doc[i]) && doc[i] != '>' && doc[i] != '/' {
		i++
	}
	for {
		for i < n && isSpace(doc[i]) {
			i++
		}
		if i >= n {
			return ivorn, role, errMalformed
		}
		if doc[i] == '>' || doc[i] == '/' {
			return ivorn, role, nil
		}
		ns := i
		for i < n && !isSpace(doc[i]) && doc[i] != '=' && doc[i] != '>' && doc[i] != '/' {
			i++
		}
		name := doc[ns:i]
		for i < n && isSpace(doc[i]) {
			i++
		}
		if i >= n || doc[i] != '=' || len(name) == 0 {
			return ivorn, role, errMalformed
		}
		i++
		for i < n && isSpace(doc[i]) {
			i++
		}
		if i >= n || (doc[i] != '"' && doc[i] != '\'') {
			return ivorn, role, errMalformed
		}
		q := doc[i]
		i++
		k := bytes.IndexByte(doc[i:], q)
		if k < 0 {
			return ivorn, role, errMalformed
		}
		v := span{start: i, end: i + k, quote: q, ok: true}
		i += k + 1
		switch string(name) {
		case "ivorn":
			if ivorn.ok {
				return ivorn, role, errors.New("duplicate ivorn attribute on the root element")
			}
			ivorn = v
		case "role":
			role = v
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
