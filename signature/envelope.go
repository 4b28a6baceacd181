package signature

import (
	"bytes"
	"fmt"
	"io"

	"github.com/comet-go/comet/xmlsafe"
)

// Escaping is how a signature block was made safe for an XML comment
// (docs/openpgp.md §3).
type Escaping uint8

const (
	// EscapeEquals replaces every "-----" with "=====" (Comet's 2012 design
	// note; what Sign and Append emit).
	EscapeEquals Escaping = iota + 1
	// EscapeCaret turns "^" into "\^" and then every "-" into "^" (Comet's
	// 2012 branch code).
	EscapeCaret
)

func (e Escaping) String() string {
	switch e {
	case EscapeEquals:
		return "====="
	case EscapeCaret:
		return "^"
	}
	return "unknown"
}

// Block is one signature block found in a comment after the root element.
type Block struct {
	// Armour is the unescaped ASCII armour, from "-----BEGIN PGP
	// SIGNATURE-----" through the END line and its LF. A truncated block
	// (no END delimiter in its comment) runs to the end of the comment, so
	// that parsing it reports the truncation.
	Armour   []byte
	Escaping Escaping
	Offset   int // byte offset of the escaped BEGIN delimiter in the payload
}

var (
	armourBegin = []byte("-----BEGIN PGP SIGNATURE-----")
	armourEnd   = []byte("-----END PGP SIGNATURE-----")
	equalsBegin = []byte("=====BEGIN PGP SIGNATURE=====")
	equalsEnd   = []byte("=====END PGP SIGNATURE=====")
	caretBegin  = []byte("^^^^^BEGIN PGP SIGNATURE^^^^^")
	caretEnd    = []byte("^^^^^END PGP SIGNATURE^^^^^")
)

// envelope is what one scan of a payload yields: the root element's span,
// the XML declaration's, and the contents of the comments after the root.
// Spans are byte offsets into the payload; comment contents are text
// (UTF-8), decoded when the payload is in another encoding, since that is
// where the ASCII armour is read from.
type envelope struct {
	rootStart, rootEnd int // payload[rootStart:rootEnd] is span A
	declStart, declEnd int // the XML declaration, or both 0
	prefixed           bool
	comments           []comment // each comment after the root
	sc                 *xmlsafe.Scanner
}

// comment is one comment's content and its position in the scanner's text.
type comment struct {
	text []byte
	at   int
}

func (e *envelope) spanA(payload []byte) []byte {
	return payload[e.rootStart:e.rootEnd:e.rootEnd] // capped: appending never touches the payload
}

// decl returns the XML declaration when span B exists (a declaration and a
// prefixed root name, docs/openpgp.md §2), else nil.
func (e *envelope) decl(payload []byte) []byte {
	if e.declEnd == 0 || !e.prefixed {
		return nil
	}
	return payload[e.declStart:e.declEnd]
}

// scan reads payload with xmlsafe's tokenizer. The spans come from token
// byte offsets, so markup-like text in attributes, CDATA or comments cannot
// move them, whatever the payload's encoding.
func scan(payload []byte) (envelope, error) {
	env := envelope{sc: xmlsafe.NewScanner(payload, 0)}
	sc := env.sc
	afterRoot := false
	for {
		kind, err := sc.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return envelope{}, fmt.Errorf("%w: %w", ErrDocument, err)
		}
		switch kind {
		case xmlsafe.KindStart:
			if sc.Depth() == 1 {
				env.rootStart, _ = sc.Span()
				env.prefixed = len(sc.Prefix()) > 0
			}
		case xmlsafe.KindEnd:
			if sc.Depth() == 0 {
				_, env.rootEnd = sc.Span()
				afterRoot = true
			}
		case xmlsafe.KindComment:
			if afterRoot {
				text, at := sc.Content()
				env.comments = append(env.comments, comment{text, at})
			}
		}
	}
	env.declStart, env.declEnd, _ = sc.Declaration()
	return env, nil
}

// Spans returns the byte spans a signature may cover (docs/openpgp.md §2).
// a is the root element exactly as received, a sub-slice of payload (capped,
// so appending to it cannot alter payload). b is the XML declaration
// immediately followed by a, in a new slice; it is nil when the payload has
// no declaration or the root's name has no prefix. The payload must be a
// well-formed document.
func Spans(payload []byte) (a, b []byte, err error) {
	env, err := scan(payload)
	if err != nil {
		return nil, nil, err
	}
	a = env.spanA(payload)
	if decl := env.decl(payload); decl != nil {
		b = make([]byte, 0, len(decl)+len(a))
		b = append(append(b, decl...), a...)
	}
	return a, b, nil
}

// Blocks returns every signature block in every comment after the root
// element, in document order, unescaped and ready to parse as armour. Both
// escaping schemes are recognised, and a comment may hold several blocks.
func Blocks(payload []byte) ([]Block, error) {
	env, err := scan(payload)
	if err != nil {
		return nil, err
	}
	return env.blocks(-1), nil
}

// blocks collects the signature blocks, stopping once it has more than
// limit (limit < 0: no limit).
func (e *envelope) blocks(limit int) []Block {
	var out []Block
	for _, c := range e.comments {
		if limit >= 0 && len(out) > limit {
			break
		}
		out = appendBlocks(out, c.text, func(i int) int { return e.sc.InputOffset(c.at + i) })
	}
	return out
}

// appendBlocks finds the blocks in one comment's content; offset maps an
// index in it to a payload offset. Each delimiter search resumes where the
// last one ended, so a comment packed with delimiters costs linear time.
func appendBlocks(out []Block, comment []byte, offset func(int) int) []Block {
	next := func(from int, marker []byte) int {
		if i := bytes.Index(comment[from:], marker); i >= 0 {
			return from + i
		}
		return -1
	}
	eq, ca := next(0, equalsBegin), next(0, caretBegin)
	for pos := 0; ; {
		if eq >= 0 && eq < pos {
			eq = next(pos, equalsBegin)
		}
		if ca >= 0 && ca < pos {
			ca = next(pos, caretBegin)
		}
		esc, start, begin, end := EscapeEquals, eq, equalsBegin, equalsEnd
		if ca >= 0 && (eq < 0 || ca < eq) {
			esc, start, begin, end = EscapeCaret, ca, caretBegin, caretEnd
		}
		if start < 0 {
			return out
		}
		stop := len(comment)
		if j := bytes.Index(comment[start+len(begin):], end); j >= 0 {
			stop = start + len(begin) + j + len(end)
		}
		raw := comment[start:stop]
		var armour []byte
		if esc == EscapeEquals {
			armour = unescapeEquals(raw)
		} else {
			armour = unescapeCaret(raw)
		}
		if armour[len(armour)-1] != '\n' {
			armour = append(armour, '\n')
		}
		out = append(out, Block{Armour: armour, Escaping: esc, Offset: offset(start)})
		pos = stop
	}
}

// unescapeEquals undoes only the BEGIN/END delimiters: the CRC line also
// starts with "=".
func unescapeEquals(raw []byte) []byte {
	out := bytes.ReplaceAll(raw, equalsBegin, armourBegin)
	return bytes.ReplaceAll(out, equalsEnd, armourEnd)
}

// unescapeCaret turns every "^" not preceded by "\" into "-", then every
// "\^" into "^".
func unescapeCaret(raw []byte) []byte {
	out := make([]byte, 0, len(raw)+1)
	for i, c := range raw {
		if c == '^' && (i == 0 || raw[i-1] != '\\') {
			c = '-'
		}
		out = append(out, c)
	}
	return bytes.ReplaceAll(out, []byte(`\^`), []byte("^"))
}

// Append returns a new slice holding payload followed by armour in a
// signature comment: "<!--" LF, the armour with every "-----" escaped as
// "=====" and ending with the LF after its END line, LF, "-->". payload is
// never altered. Armour header lines (Version:, Comment:) are dropped, since
// they may contain "--", which an XML comment cannot; armour is expected to
// be one armoured signature, as Sign or gpg --detach-sign --armor make it.
//
// In a payload that is not UTF-8 the comment is written in the payload's
// encoding (for UTF-16, as UTF-16 code units in its byte order, without a
// byte order mark), so the result stays one well-formed document; the
// armour is read back from the decoded comment. A payload whose encoding
// cannot be found gets the comment in ASCII.
func Append(payload, armour []byte) []byte {
	escaped := bytes.ReplaceAll(dropArmourHeaders(bytes.TrimRight(armour, " \t\r\n")), []byte("-----"), []byte("====="))
	c := make([]byte, 0, len(escaped)+len("<!--\n\n\n-->"))
	c = append(c, "<!--\n"...)
	c = append(c, escaped...)
	c = append(c, "\n\n-->"...)
	if enc, err := xmlsafe.Encode(payload, c); err == nil {
		c = enc
	}
	out := make([]byte, 0, len(payload)+len(c))
	return append(append(out, payload...), c...)
}

// dropArmourHeaders removes the "Key: value" lines between the BEGIN line
// and the blank line that ends the armour headers.
func dropArmourHeaders(armour []byte) []byte {
	first := bytes.IndexByte(armour, '\n')
	if first < 0 {
		return armour
	}
	i := first + 1
	for i < len(armour) {
		n := bytes.IndexByte(armour[i:], '\n')
		if n < 0 {
			break
		}
		line := armour[i : i+n]
		if len(bytes.TrimSpace(line)) == 0 || bytes.IndexByte(line, ':') < 0 {
			break
		}
		i += n + 1
	}
	if i == first+1 {
		return armour
	}
	out := make([]byte, 0, len(armour)-(i-first-1))
	out = append(out, armour[:first+1]...)
	return append(out, armour[i:]...)
}
