package xmlsafe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Well-known namespace names.
const (
	NamespaceXML   = "http://www.w3.org/XML/1998/namespace"
	NamespaceXMLNS = "http://www.w3.org/2000/xmlns/"
)

var (
	nsXMLBytes   = []byte(NamespaceXML)
	nsXMLNSBytes = []byte(NamespaceXMLNS)
)

// Kind is the type of a Scanner token.
type Kind uint8

// Token kinds. Whitespace outside the root element and the XML declaration
// are consumed silently.
const (
	KindStart    Kind = iota + 1 // start tag; <a/> yields KindStart then KindEnd
	KindEnd                      // end tag
	KindText                     // character data or a CDATA section
	KindComment                  // <!-- ... -->
	KindProcInst                 // <?target ...?>
)

// SyntaxError reports a well-formedness or safety violation.
type SyntaxError struct {
	Offset int // byte offset in the input
	Line   int // 1-based line
	Msg    string
	Err    error // ErrDTD, ErrTooDeep, ErrNoRoot or nil
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("xml: line %d: %s", e.Line, e.Msg)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

// Scanner is a single-pass, zero-copy XML 1.0 + Namespaces tokenizer over a
// complete in-memory document. It enforces well-formedness (including what
// encoding/xml lets through: duplicate attributes, undeclared prefixes,
// misplaced XML declarations, text outside the root), refuses any DTD,
// accepts only the predefined entities and character references, and bounds
// nesting. It never reads anything but its input.
//
// A document in UTF-8 or US-ASCII is scanned in place. One in any other
// encoding libxml2 reads and x/text decodes (UTF-16, UTF-32, the ISO-8859
// and Windows code pages, Shift_JIS, EUC-JP, GB18030, ...; see charset.go)
// is decoded to UTF-8 once, in a buffer the Scanner keeps; names, values
// and text are then UTF-8, while Span, Declaration and error offsets stay
// offsets into the input as given.
//
// Slices returned by accessors must not be modified and are valid until the
// next call to Next; most alias the input (or the decoded text). Namespace
// names stay valid until the next Reset.
type Scanner struct {
	raw      []byte // the input
	data     []byte // what is scanned: raw, or raw decoded to UTF-8 by tr
	pos      int
	maxDepth int
	ascii    bool     // declared US-ASCII: every byte must be below 0x80
	cs       *charset // the charset data was decoded from; nil for UTF-8 and US-ASCII
	usUntil  int      // an EBCDIC document's bytes before this were decoded in EBCDIC-US
	tr       transcoder
	phase    uint8

	declStart, declEnd int // the XML declaration in data, or both 0
	err                error
	pending            bool // the last start tag was empty (<a/>): its end is next

	tokStart, tokEnd int

	// current start/end tag
	q     qname
	space []byte
	attrs []attrInfo

	// current text, comment or PI: content span and flags
	cStart, cEnd int
	cFlags       uint8

	elems  []elemFrame
	ns     []nsBinding
	nsMark int            // len(ns) before the current start tag's declarations
	nsMap  map[string]int // prefix -> innermost binding, once ns is large
	buf    []byte         // decoding scratch, reset per token
}

const (
	phaseStart uint8 = iota // before the XML declaration check
	phaseProlog
	phaseRoot
	phaseEpilog
)

// content flags
const (
	fRef   uint8 = 1 << iota // contains & references
	fCR                      // contains CR (line-end normalization)
	fWS                      // attribute: contains TAB, LF or CR (normalized to space)
	fHigh                    // contains non-ASCII characters
	fCDATA                   // text token is a CDATA section
)

type qname struct {
	start, end int // raw qualified name in data
	colon      int // absolute index of ':' or -1
}

func (q qname) local(d []byte) []byte {
	if q.colon >= 0 {
		return d[q.colon+1 : q.end]
	}
	return d[q.start:q.end]
}

func (q qname) prefix(d []byte) []byte {
	if q.colon >= 0 {
		return d[q.start:q.colon]
	}
	return nil
}

type attrInfo struct {
	q            qname
	vStart, vEnd int
	flags        uint8
	space        []byte
}

type elemFrame struct {
	q     qname
	space []byte
	nsLen int // len(Scanner.ns) before this element's declarations
}

type nsBinding struct {
	prefix []byte // empty for the default namespace
	uri    []byte
	prev   int // index of the binding of the same prefix it shadows, or -1
}

// Beyond this many bindings in scope, prefixes are looked up through a map
// so that hostile documents cannot make lookups quadratic.
const nsMapThreshold = 32

// NewScanner returns a scanner over data. maxDepth <= 0 means DefaultMaxDepth.
func NewScanner(data []byte, maxDepth int) *Scanner {
	s := &Scanner{}
	s.Reset(data, maxDepth)
	return s
}

// Reset makes s scan data from the beginning, keeping its buffers but no
// reference to the previous input.
func (s *Scanner) Reset(data []byte, maxDepth int) {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	clear(s.nsMap)
	clear(s.attrs[:cap(s.attrs)])
	clear(s.elems[:cap(s.elems)])
	clear(s.ns[:cap(s.ns)])
	s.tr.release()
	*s = Scanner{
		raw:      data,
		data:     data,
		maxDepth: maxDepth,
		attrs:    s.attrs[:0],
		elems:    s.elems[:0],
		ns:       s.ns[:0],
		nsMap:    s.nsMap,
		buf:      s.buf[:0],
		tr:       s.tr,
	}
}

// Depth is the element depth after the current token: 1 after the root's
// start tag, 0 after its end tag.
func (s *Scanner) Depth() int { return len(s.elems) }

// Span returns the byte offsets in the input of the current token: its
// first byte and just past its last. For the KindEnd of an empty element it
// is the span of the whole <a/> tag. (In a stateful encoding such as
// ISO-2022-JP a span starts with the shift sequence its first character
// needs.)
func (s *Scanner) Span() (start, end int) {
	if s.tr.active {
		return s.tr.rawOffset(s.tokStart), s.tr.rawOffset(s.tokEnd)
	}
	return s.tokStart, s.tokEnd
}

// Declaration returns the byte offsets in the input of the XML declaration,
// from its "<?xml" through its "?>", once Next has been called; ok is false
// if the document has none.
func (s *Scanner) Declaration() (start, end int, ok bool) {
	if s.declEnd == 0 {
		return 0, 0, false
	}
	if s.tr.active {
		return s.tr.rawOffset(s.declStart), s.tr.rawOffset(s.declEnd), true
	}
	return s.declStart, s.declEnd, true
}

// Encoding names the document's encoding once Next has been called:
// "UTF-8" (also when it is only the default), "US-ASCII", "UTF-16LE", or the
// charset its declaration names ("ISO-8859-15", "Shift_JIS", ...).
func (s *Scanner) Encoding() string {
	switch {
	case s.cs != nil:
		return s.cs.name
	case s.ascii:
		return csASCII.name
	}
	return csUTF8.name
}

// Name returns the resolved namespace name (empty if none) and local name of
// the current start or end tag.
func (s *Scanner) Name() (space, local []byte) {
	return s.space, s.q.local(s.data)
}

// Prefix returns the namespace prefix of the current start or end tag as
// written ("voe" for <voe:VOEvent>), empty if it has none.
func (s *Scanner) Prefix() []byte { return s.q.prefix(s.data) }

// NumAttr is the number of attributes of the current start tag, namespace
// declarations included.
func (s *Scanner) NumAttr() int { return len(s.attrs) }

// Attr returns the namespace name and local name of attribute i. Namespace
// declarations are in NamespaceXMLNS (local "xmlns" for the default one).
func (s *Scanner) Attr(i int) (space, local []byte) {
	a := &s.attrs[i]
	return a.space, a.q.local(s.data)
}

// AttrValue returns the normalized value of attribute i (references
// replaced, TAB/CR/LF turned into spaces, UTF-8). It stays valid until the
// next call to Next.
func (s *Scanner) AttrValue(i int) []byte {
	a := &s.attrs[i]
	return s.decode(a.vStart, a.vEnd, a.flags, true)
}

// Text returns the character data of the current KindText token with
// references replaced and line ends normalized, as UTF-8.
func (s *Scanner) Text() []byte {
	return s.decode(s.cStart, s.cEnd, s.cFlags, false)
}

// Content returns the characters between the delimiters of the current
// KindComment or KindProcInst token, as UTF-8, exactly as written (no line
// end normalization), and the position of its first byte in the scanner's
// text (see InputOffset).
func (s *Scanner) Content() (content []byte, at int) {
	return s.data[s.cStart:s.cEnd:s.cEnd], s.cStart
}

// InputOffset maps a position in the scanner's text (the document as UTF-8,
// which for a UTF-8 document is the input itself), such as Content reports,
// to the offset in the input of the character there. It stays valid until
// the next Reset.
func (s *Scanner) InputOffset(at int) int {
	if s.tr.active {
		return s.tr.rawOffset(at)
	}
	return at
}

// LookupPrefix resolves a namespace prefix in the scope of the current
// element (empty prefix = default namespace).
func (s *Scanner) LookupPrefix(prefix []byte) ([]byte, bool) {
	if string(prefix) == "xml" {
		return nsXMLBytes, true
	}
	if i := s.nsIndex(prefix); i >= 0 {
		return s.ns[i].uri, true
	}
	return nil, len(prefix) == 0
}

// nsIndex returns the index of the innermost binding of prefix, or -1.
func (s *Scanner) nsIndex(prefix []byte) int {
	if len(s.nsMap) > 0 {
		if i, ok := s.nsMap[string(prefix)]; ok {
			return i
		}
		return -1
	}
	for i := len(s.ns) - 1; i >= 0; i-- {
		if bytes.Equal(s.ns[i].prefix, prefix) {
			return i
		}
	}
	return -1
}

func (s *Scanner) pushNamespace(prefix, uri []byte) {
	s.ns = append(s.ns, nsBinding{prefix: prefix, uri: uri, prev: s.nsIndex(prefix)})
	switch {
	case len(s.nsMap) > 0:
		s.nsMap[string(prefix)] = len(s.ns) - 1
	case len(s.ns) > nsMapThreshold:
		if s.nsMap == nil {
			s.nsMap = make(map[string]int)
		}
		for i, b := range s.ns {
			s.nsMap[string(b.prefix)] = i
		}
	}
}

// popNamespaces drops the bindings from index n on.
func (s *Scanner) popNamespaces(n int) {
	if len(s.nsMap) > 0 {
		for i := len(s.ns) - 1; i >= n; i-- {
			b := &s.ns[i]
			if b.prev >= 0 {
				s.nsMap[string(b.prefix)] = b.prev
			} else {
				delete(s.nsMap, string(b.prefix))
			}
		}
	}
	s.ns = s.ns[:n]
}

// Line returns the 1-based line number of a byte offset in the input.
func (s *Scanner) Line(offset int) int {
	if s.tr.active {
		offset = s.tr.textOffset(offset)
	}
	return s.line(offset)
}

// line is the line number of an offset in data.
func (s *Scanner) line(at int) int {
	at = min(max(at, 0), len(s.data))
	return 1 + bytes.Count(s.data[:at], []byte{'\n'})
}

// fail records a final error at offset at of data.
func (s *Scanner) fail(at int, wrapped error, format string, args ...any) (Kind, error) {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	if wrapped != nil {
		msg = wrapped.Error() + msg
	}
	off := at
	if s.tr.active {
		off = s.tr.rawOffset(at)
	}
	s.err = &SyntaxError{Offset: off, Line: s.line(at), Msg: msg, Err: wrapped}
	return 0, s.err
}

// Next advances to the next token. It returns io.EOF once the whole input
// has been consumed and found well-formed; any other error is final.
func (s *Scanner) Next() (Kind, error) {
	if s.err != nil {
		return 0, s.err
	}
	s.buf = s.buf[:0]
	if s.pending {
		s.pending = false
		return s.popElement()
	}
	if s.phase == phaseStart {
		if err := s.prolog(); err != nil {
			return 0, err
		}
	}
	d := s.data
	for {
		if s.pos >= len(d) {
			switch s.phase {
			case phaseProlog:
				return s.fail(s.pos, ErrNoRoot, "")
			case phaseRoot:
				return s.fail(s.pos, nil, "unexpected EOF inside <%s>", s.elems[len(s.elems)-1].q.local(d))
			}
			return 0, io.EOF
		}
		c := d[s.pos]
		if c != '<' {
			if s.phase == phaseRoot {
				return s.scanText()
			}
			for s.pos < len(d) && isSpace(d[s.pos]) {
				s.pos++
			}
			if s.pos < len(d) && d[s.pos] != '<' {
				if s.phase == phaseProlog {
					return s.fail(s.pos, nil, "text before the root element")
				}
				return s.fail(s.pos, nil, "text after the root element")
			}
			continue
		}
		if s.pos+1 >= len(d) {
			return s.fail(s.pos, nil, "unexpected EOF after <")
		}
		switch d[s.pos+1] {
		case '/':
			if s.phase != phaseRoot {
				return s.fail(s.pos, nil, "end tag outside the root element")
			}
			return s.scanEndTag()
		case '?':
			return s.scanPI()
		case '!':
			rest := d[s.pos:]
			switch {
			case bytes.HasPrefix(rest, []byte("<!--")):
				return s.scanComment()
			case bytes.HasPrefix(rest, []byte("<![CDATA[")):
				if s.phase != phaseRoot {
					return s.fail(s.pos, nil, "CDATA section outside the root element")
				}
				return s.scanCDATA()
			case len(rest) >= 9 && strings.EqualFold(string(rest[2:9]), "DOCTYPE"):
				return s.fail(s.pos, ErrDTD, "")
			}
			return s.fail(s.pos, nil, "markup declaration not allowed")
		default:
			if s.phase == phaseEpilog {
				return s.fail(s.pos, nil, "content after the root element")
			}
			return s.scanStartTag()
		}
	}
}

// prolog finds the document's encoding (its byte order mark, first bytes
// and XML declaration, as libxml2 does; see charset.go), decodes a document
// that is neither UTF-8 nor US-ASCII, and reads the XML declaration.
func (s *Scanner) prolog() error {
	s.phase = phaseProlog
	f, bom := sniff(s.raw)
	var cs *charset
	switch f {
	case formASCII, formUTF8BOM:
		return s.prologASCII(bom)
	case formEBCDIC:
		return s.prologEBCDIC()
	case formUTF16LE:
		cs = csUTF16LE
	case formUTF16BE:
		cs = csUTF16BE
	case formUTF32LE:
		cs = csUTF32LE
	case formUTF32BE:
		cs = csUTF32BE
	}
	be := f == formUTF16BE || f == formUTF32BE
	if err := s.transcode(cs, bom, be); err != nil {
		return err
	}
	label, at, err := s.xmlDecl()
	if err != nil || label == nil {
		return err
	}
	declared, known := lookupLabel(label)
	switch {
	case !known:
		return s.encErr(at, "unsupported encoding %q", label)
	case cs.kind == kUTF32:
		// lxml hands libxml2 UTF-32 as the document's encoding, and any
		// name libxml2 knows is then ignored.
		return nil
	case equalFoldAny(string(label), "UTF-8", "UTF8", "UTF-16", "UTF16"):
		// libxml2 keeps the byte order it found for these names.
		return nil
	case declared.kind == kUCS2LE && !be, declared.kind == kUCS2BE && be:
		// UCS-2 is UTF-16 without surrogates.
		end := s.pos
		if err := s.transcode(declared, bom, be); err != nil {
			return err
		}
		s.pos = end
		return nil
	case declared.kind == kUTF16LE && !be, declared.kind == kUTF16BE && be:
		return nil
	}
	what := "first bytes say"
	if bom > 0 {
		what = "byte order mark says"
	}
	return s.encErr(at, "declared %q, but the document's %s %s", label, what, cs.name)
}

// prologASCII reads the declaration of a document whose first bytes are
// ASCII (after a UTF-8 byte order mark, which libxml2 skips and then lets
// the declaration override), and decodes it if it declares a charset other
// than UTF-8 or US-ASCII.
func (s *Scanner) prologASCII(bom int) error {
	s.pos = bom
	label, at, err := s.xmlDeclHead()
	if err != nil || label == nil {
		return err
	}
	whole := func() error {
		s.pos = bom
		_, _, err := s.xmlDecl()
		return err
	}
	if equalFoldAny(string(label), "UTF-8", "utf8") {
		return nil // read whole by xmlDeclHead
	}
	cs, known := lookupLabel(label)
	switch {
	case !known:
		return s.encErr(at, "unsupported encoding %q", label)
	case cs.kind == kUTF8:
		return whole()
	case cs.kind == kASCII:
		s.ascii = true
		return whole()
	case cs.kind == kUTF16:
		return s.encErr(at, "document labelled %s but has UTF-8 content", label)
	case cs.kind == kMulti, cs.kind == kSingle, cs.kind == kUTF7:
		// libxml2 has read the declaration as ASCII up to the encoding
		// name's closing quote and reads the rest of the document, the
		// end of the declaration included, in the charset.
		if err := s.transcodeFrom(cs, bom, at+len(label)+1); err != nil {
			return err
		}
		_, _, err := s.xmlDecl()
		return err
	case cs.kind == kUndecodable:
		return s.encErr(at, "encoding %q is not supported (libxml2 reads it through iconv; no decoder here)", label)
	}
	return s.encErr(at, "declared %q, but the document's first bytes are ASCII", label)
}

// ebcdicFirstLine is how many bytes of an EBCDIC document libxml2 2.9.14
// decodes in EBCDIC-US before it reads the XML declaration (its
// xmlCharEncFirstLineInt converts 45 characters; EBCDIC-US is the handler
// xmlSwitchEncoding picks for the first bytes 4C 6F A7 94). libxml2's
// constant, not a limit of this package.
const ebcdicFirstLine = 45

// prologEBCDIC decodes a document that starts with "<?xm" in EBCDIC as
// libxml2 2.9.14 does: it converts the first line (ebcdicFirstLine bytes,
// or up to the first byte EBCDIC-US lacks) in EBCDIC-US, reads the
// declaration, and switches to the declared charset for the bytes not yet
// converted. If the byte after the encoding name's closing quote is
// beyond the first line, libxml2 has converted on in EBCDIC-US before it
// switches, and only a byte EBCDIC-US lacks stops that. A declaration that
// ends beyond the first line though libxml2 switched inside it is
// refused: libxml2's own reading of it depends on lookahead details (it
// fails on "?>" split across the line, for one).
func (s *Scanner) prologEBCDIC() error {
	us := csEBCDICUS
	us.init()
	lacks := len(s.raw) // the first byte EBCDIC-US lacks
	for i, b := range s.raw {
		if us.table[b] < 0 {
			lacks = i
			break
		}
	}
	first := min(lacks, ebcdicFirstLine)
	// Read the declaration in EBCDIC-US.
	s.tr.reset(0)
	s.tr.decode(s.raw[:lacks], us, false) // every byte decodes
	s.data, s.pos = s.tr.text, 0
	label, at, err := s.xmlDecl()
	s.tr.release()
	if err != nil {
		return err
	}
	if label == nil {
		return s.encErr(0, "EBCDIC document without an encoding declaration")
	}
	cs, known := lookupLabel(label)
	switch {
	case !known:
		return s.encErr(at, "unsupported encoding %q", label)
	case cs.kind != kSingle:
		return s.encErr(at, "declared %q, but the document's first bytes are EBCDIC", label)
	}
	// The declaration is ASCII in EBCDIC-US: text offsets are byte offsets.
	switchAt := lacks
	if quote := at + len(label); quote+1 < first {
		if s.declEnd > first {
			return s.encErr(first, "the XML declaration of an EBCDIC document crosses byte %d, where libxml2 switches to %s", first, label)
		}
		switchAt = first
	} else if splits(s.data[s.declStart:at], first-s.declStart, "version", "encoding") {
		// libxml2 compares these words without reading on: split by the
		// first line, they are not there for it.
		return s.encErr(first, "the first line of an EBCDIC document ends at byte %d, inside a word of its XML declaration", first)
	}
	s.tr.reset(0)
	s.tr.decode(s.raw[:switchAt], us, false)
	if err := s.tr.decode(s.raw[switchAt:], cs, false); err != nil {
		return s.transcodeErr(err)
	}
	s.data, s.cs, s.usUntil, s.pos = s.tr.text, cs, switchAt, 0
	_, _, err = s.xmlDecl()
	return err
}

// splits reports whether offset at falls strictly inside one of words in d.
func splits(d []byte, at int, words ...string) bool {
	for _, w := range words {
		if i := bytes.Index(d, []byte(w)); i >= 0 && i < at && at < i+len(w) {
			return true
		}
	}
	return false
}

// transcode decodes the input from offset from (after a byte order mark)
// as cs; the scanner then reads the decoded text.
func (s *Scanner) transcode(cs *charset, from int, bigEndian bool) error {
	s.tr.reset(from)
	if err := s.tr.decode(s.raw[from:], cs, bigEndian); err != nil {
		return s.transcodeErr(err)
	}
	s.data, s.cs, s.pos = s.tr.text, cs, 0
	return nil
}

// transcodeFrom is transcode for an ASCII-compatible start: the bytes from
// from to switchAt (the XML declaration up to the encoding name's closing
// quote, which libxml2 reads before it switches) as they are, the rest
// decoded as cs.
func (s *Scanner) transcodeFrom(cs *charset, from, switchAt int) error {
	s.tr.reset(from)
	s.tr.emitRaw(s.raw[from:switchAt])
	if err := s.tr.decode(s.raw[switchAt:], cs, false); err != nil {
		return s.transcodeErr(err)
	}
	s.data, s.cs, s.pos = s.tr.text, cs, 0
	return nil
}

func (s *Scanner) transcodeErr(err error) error {
	var de *decodeError
	if !errors.As(err, &de) {
		return s.encErr(0, "%v", err)
	}
	s.data = s.tr.text // what decoded, for the line number
	s.err = &SyntaxError{Offset: de.at, Line: s.line(len(s.data)), Msg: ErrEncoding.Error() + de.msg, Err: ErrEncoding}
	return s.err
}

func (s *Scanner) encErr(at int, format string, args ...any) error {
	_, err := s.fail(at, ErrEncoding, format, args...)
	return err
}

// xmlDecl reads the XML declaration at s.pos, if there is one, and returns
// the encoding name it declares (nil if none) and its offset.
func (s *Scanner) xmlDecl() (label []byte, labelAt int, err error) {
	return s.parseDecl(false)
}

// xmlDeclHead reads the XML declaration at s.pos up to its encoding name,
// which is as far as libxml2 reads before it switches to that charset; the
// rest may be in it. Without an encoding name, or with UTF-8 (the common
// case, read once), it reads the whole declaration.
func (s *Scanner) xmlDeclHead() (label []byte, labelAt int, err error) {
	return s.parseDecl(true)
}

func (s *Scanner) parseDecl(head bool) (label []byte, labelAt int, err error) {
	d := s.data
	p := s.pos
	if !bytes.HasPrefix(d[p:], []byte("<?xml")) || p+5 >= len(d) || !isSpace(d[p+5]) {
		return nil, 0, nil
	}
	i := p + 5
	attr := func(name string, required bool) ([]byte, int, error) {
		j := i
		n := skipSpace(d, j)
		if n == j || !bytes.HasPrefix(d[n:], []byte(name)) {
			if required {
				return nil, 0, s.declErr(n, "missing "+name)
			}
			return nil, 0, nil
		}
		j = skipSpace(d, n+len(name))
		if j >= len(d) || d[j] != '=' {
			return nil, 0, s.declErr(j, "expected = after "+name)
		}
		j = skipSpace(d, j+1)
		if j >= len(d) || (d[j] != '"' && d[j] != '\'') {
			return nil, 0, s.declErr(j, "expected quoted "+name)
		}
		q := d[j]
		end := bytes.IndexByte(d[j+1:], q)
		if end < 0 {
			return nil, 0, s.declErr(j, "unterminated "+name)
		}
		v := d[j+1 : j+1+end]
		i = j + 2 + end
		return v, j + 1, nil
	}
	ver, _, err := attr("version", true)
	if err != nil {
		return nil, 0, err
	}
	// libxml2 accepts "1." followed by any digits (with a warning for 1.x).
	if len(ver) < 2 || ver[0] != '1' || ver[1] != '.' || len(ver) > 2 && !allDigits(ver[2:]) {
		return nil, 0, s.declErr(p, "unsupported XML version "+string(ver))
	}
	label, labelAt, err = attr("encoding", false)
	if err != nil {
		return nil, 0, err
	}
	if label != nil && !validEncName(label) {
		return nil, 0, s.declErr(labelAt, fmt.Sprintf("invalid encoding name %q", label))
	}
	if head && label != nil && !equalFoldAny(string(label), "UTF-8", "utf8") {
		return label, labelAt, nil
	}
	sa, saAt, err := attr("standalone", false)
	if err != nil {
		return nil, 0, err
	}
	if saAt > 0 && string(sa) != "yes" && string(sa) != "no" {
		return nil, 0, s.declErr(p, "bad standalone value")
	}
	i = skipSpace(d, i)
	if !bytes.HasPrefix(d[i:], []byte("?>")) {
		return nil, 0, s.declErr(i, "malformed XML declaration")
	}
	s.pos = i + 2
	s.declStart, s.declEnd = p, s.pos
	return label, labelAt, nil
}

// validEncName: EncName ::= [A-Za-z] ([A-Za-z0-9._] | '-')*
func validEncName(b []byte) bool {
	if len(b) == 0 || !('a' <= b[0] && b[0] <= 'z' || 'A' <= b[0] && b[0] <= 'Z') {
		return false
	}
	for _, c := range b {
		if !isEncNameByte(c) {
			return false
		}
	}
	return true
}

func isEncNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

func equalFoldAny(s string, labels ...string) bool {
	for _, l := range labels {
		if strings.EqualFold(s, l) {
			return true
		}
	}
	return false
}

func (s *Scanner) declErr(at int, msg string) error {
	_, err := s.fail(at, nil, "XML declaration: %s", msg)
	return err
}

func (s *Scanner) scanStartTag() (Kind, error) {
	d := s.data
	start := s.pos
	q, i, err := s.scanQName(start + 1)
	if err != nil {
		return 0, err
	}
	s.attrs = s.attrs[:0]
	empty := false
	for {
		j := skipSpace(d, i)
		if j >= len(d) {
			return s.fail(j, nil, "unexpected EOF in start tag")
		}
		if d[j] == '>' {
			i = j + 1
			break
		}
		if d[j] == '/' {
			if j+1 >= len(d) || d[j+1] != '>' {
				return s.fail(j, nil, "expected /> in start tag")
			}
			i, empty = j+2, true
			break
		}
		if j == i {
			return s.fail(j, nil, "attributes must be separated by whitespace")
		}
		aq, k, err := s.scanQName(j)
		if err != nil {
			return 0, err
		}
		k = skipSpace(d, k)
		if k >= len(d) || d[k] != '=' {
			return s.fail(k, nil, "attribute %s without value", d[aq.start:aq.end])
		}
		k = skipSpace(d, k+1)
		if k >= len(d) || (d[k] != '"' && d[k] != '\'') {
			return s.fail(k, nil, "unquoted attribute value")
		}
		vEnd, flags, err := s.scanAttrValue(k+1, d[k])
		if err != nil {
			return 0, err
		}
		s.attrs = append(s.attrs, attrInfo{q: aq, vStart: k + 1, vEnd: vEnd, flags: flags})
		i = vEnd + 1
	}
	if len(s.elems) >= s.maxDepth {
		return s.fail(start, ErrTooDeep, " (limit %d)", s.maxDepth)
	}
	if err := s.bindNamespaces(start); err != nil {
		return 0, err
	}
	space, ok := s.resolve(q.prefix(d), true)
	if !ok {
		return s.fail(start, nil, "namespace prefix %s on %s is not defined", q.prefix(d), q.local(d))
	}
	for k := range s.attrs {
		a := &s.attrs[k]
		if a.space != nil { // namespace declaration, set by bindNamespaces
			continue
		}
		if a.q.colon < 0 {
			continue
		}
		sp, ok := s.resolve(a.q.prefix(d), false)
		if !ok {
			return s.fail(start, nil, "namespace prefix %s of attribute %s is not defined", a.q.prefix(d), a.q.local(d))
		}
		a.space = sp
	}
	if err := s.checkDuplicates(start); err != nil {
		return 0, err
	}
	s.elems = append(s.elems, elemFrame{q: q, space: space, nsLen: s.nsMark})
	s.q, s.space = q, space
	s.tokStart, s.tokEnd = start, i
	s.pos = i
	s.pending = empty
	if s.phase == phaseProlog {
		s.phase = phaseRoot
	}
	return KindStart, nil
}

// popElement closes the innermost element (after </a> or for <a/>).
func (s *Scanner) popElement() (Kind, error) {
	f := s.elems[len(s.elems)-1]
	s.elems = s.elems[:len(s.elems)-1]
	s.popNamespaces(f.nsLen)
	s.q, s.space = f.q, f.space
	if len(s.elems) == 0 {
		s.phase = phaseEpilog
	}
	return KindEnd, nil
}

func (s *Scanner) scanEndTag() (Kind, error) {
	d := s.data
	start := s.pos
	q, i, err := s.scanQName(start + 2)
	if err != nil {
		return 0, err
	}
	i = skipSpace(d, i)
	if i >= len(d) || d[i] != '>' {
		return s.fail(i, nil, "expected > in end tag")
	}
	top := s.elems[len(s.elems)-1].q
	if !bytes.Equal(d[q.start:q.end], d[top.start:top.end]) {
		return s.fail(start, nil, "element <%s> closed by </%s>", d[top.start:top.end], d[q.start:q.end])
	}
	s.tokStart, s.tokEnd, s.pos = start, i+1, i+1
	return s.popElement()
}

// bindNamespaces pushes the namespace declarations of the current start tag.
func (s *Scanner) bindNamespaces(at int) error {
	d := s.data
	s.nsMark = len(s.ns)
	for k := range s.attrs {
		a := &s.attrs[k]
		qn := d[a.q.start:a.q.end]
		var prefix []byte
		switch {
		case string(qn) == "xmlns":
			prefix = qn[:0]
		case a.q.colon >= 0 && string(a.q.prefix(d)) == "xmlns":
			prefix = a.q.local(d)
		default:
			continue
		}
		a.space = nsXMLNSBytes
		uri := s.data[a.vStart:a.vEnd]
		if a.flags != 0 {
			uri = append([]byte(nil), s.decode(a.vStart, a.vEnd, a.flags, true)...)
		}
		switch {
		case string(prefix) == "xmlns":
			_, err := s.fail(at, nil, "the xmlns prefix cannot be declared")
			return err
		case string(prefix) == "xml":
			if string(uri) != NamespaceXML {
				_, err := s.fail(at, nil, "the xml prefix must be bound to %s", NamespaceXML)
				return err
			}
			continue // predefined; nothing to push
		case string(uri) == NamespaceXML || string(uri) == NamespaceXMLNS:
			_, err := s.fail(at, nil, "reserved namespace %s cannot be bound", uri)
			return err
		case len(prefix) > 0 && len(uri) == 0:
			_, err := s.fail(at, nil, "empty namespace name for prefix %s", prefix)
			return err
		}
		s.pushNamespace(prefix, uri)
	}
	return nil
}

func (s *Scanner) resolve(prefix []byte, element bool) ([]byte, bool) {
	if prefix == nil {
		if !element {
			return nil, true
		}
		uri, _ := s.LookupPrefix(nil)
		return uri, true
	}
	switch string(prefix) {
	case "xml":
		return nsXMLBytes, true
	case "xmlns":
		return nil, false
	}
	if i := s.nsIndex(prefix); i >= 0 {
		return s.ns[i].uri, true
	}
	return nil, false
}

func (s *Scanner) checkDuplicates(at int) error {
	d := s.data
	n := len(s.attrs)
	if n < 2 {
		return nil
	}
	same := func(a, b *attrInfo) (bool, string) {
		if bytes.Equal(d[a.q.start:a.q.end], d[b.q.start:b.q.end]) {
			return true, "attribute %s redefined"
		}
		if bytes.Equal(a.q.local(d), b.q.local(d)) && bytes.Equal(a.space, b.space) &&
			(a.space != nil) == (b.space != nil) {
			return true, "namespaced attribute %s redefined"
		}
		return false, ""
	}
	if n <= 16 {
		for i := 1; i < n; i++ {
			for j := 0; j < i; j++ {
				if dup, msg := same(&s.attrs[i], &s.attrs[j]); dup {
					_, err := s.fail(at, nil, msg, d[s.attrs[i].q.start:s.attrs[i].q.end])
					return err
				}
			}
		}
		return nil
	}
	// Many attributes: avoid quadratic work on hostile input.
	seen := make(map[string]struct{}, 2*n)
	for i := range s.attrs {
		a := &s.attrs[i]
		raw := "r" + string(d[a.q.start:a.q.end])
		exp := "e" + string(a.space) + "\x00" + string(a.q.local(d))
		if a.space == nil {
			exp = "n" + string(a.q.local(d))
		}
		for _, k := range [2]string{raw, exp} {
			if _, dup := seen[k]; dup {
				_, err := s.fail(at, nil, "attribute %s redefined", d[a.q.start:a.q.end])
				return err
			}
			seen[k] = struct{}{}
		}
	}
	return nil
}

// scanQName reads a Name at i and checks it is a QName: at most one colon,
// each side an NCName.
func (s *Scanner) scanQName(i int) (qname, int, error) {
	d := s.data
	start := i
	// Fast path: an ASCII name, with at most one colon between two
	// NCNames, ending at an ASCII byte that is no part of a name. Anything
	// else (non-ASCII, a second colon, a misplaced one) takes the loop.
	if i < len(d) && ncNameStartASCII[d[i]] {
		j := i + 1
		for j < len(d) && ncNameASCII[d[j]] {
			j++
		}
		colon := -1
		if j+1 < len(d) && d[j] == ':' && ncNameStartASCII[d[j+1]] {
			colon = j
			j += 2
			for j < len(d) && ncNameASCII[d[j]] {
				j++
			}
		}
		if j < len(d) && d[j] < utf8.RuneSelf && d[j] != ':' {
			return qname{start: start, end: j, colon: colon}, j, nil
		}
	}
	colon := -1
	segStart := true // at the first character of the prefix or local part
	for i < len(d) {
		c := d[i]
		if c < utf8.RuneSelf {
			cls := nameByte[c]
			switch {
			case cls == 0:
			case c == ':':
				if colon >= 0 || segStart {
					_, err := s.fail(i, nil, "invalid QName %q", d[start:i+1])
					return qname{}, 0, err
				}
				colon, segStart = i, true
				i++
				continue
			case !segStart || cls&nameStart != 0:
				segStart = false
				i++
				continue
			}
			if segStart && i > start {
				_, err := s.fail(i, nil, "invalid QName %q", d[start:i+1])
				return qname{}, 0, err
			}
			break
		}
		if s.ascii {
			_, err := s.fail(i, ErrEncoding, "byte %#x above 0x7F in a US-ASCII document", c)
			return qname{}, 0, err
		}
		r, size := utf8.DecodeRune(d[i:])
		if r == utf8.RuneError && size <= 1 {
			_, err := s.fail(i, nil, "invalid UTF-8")
			return qname{}, 0, err
		}
		if segStart && !isNameStartRune(r) || !segStart && !isNameRune(r) {
			if segStart && i > start {
				_, err := s.fail(i, nil, "invalid QName %q", d[start:i+size])
				return qname{}, 0, err
			}
			break
		}
		segStart = false
		i += size
	}
	if i == start {
		_, err := s.fail(i, nil, "expected a name")
		return qname{}, 0, err
	}
	if segStart {
		_, err := s.fail(i, nil, "invalid QName %q", d[start:i])
		return qname{}, 0, err
	}
	return qname{start: start, end: i, colon: colon}, i, nil
}

// scanAttrValue checks a quoted value starting at i and returns the index
// of the closing quote.
func (s *Scanner) scanAttrValue(i int, quote byte) (int, uint8, error) {
	d := s.data
	var flags uint8
	for i < len(d) {
		for i < len(d) && plainAttr[d[i]] {
			i++
		}
		if i >= len(d) {
			break
		}
		c := d[i]
		if c == quote {
			return i, flags, nil
		}
		if c >= utf8.RuneSelf {
			n, err := s.checkHigh(i)
			if err != nil {
				return 0, 0, err
			}
			i, flags = n, flags|fHigh
			continue
		}
		switch textClass[c] {
		case cOK, cRBracket:
			i++
		case cWS:
			i, flags = i+1, flags|fWS
		case cCR:
			i, flags = i+1, flags|fWS|fCR
		case cAmp:
			n, err := s.checkRef(i)
			if err != nil {
				return 0, 0, err
			}
			i, flags = n, flags|fRef
		case cLT:
			_, err := s.fail(i, nil, "< in attribute value")
			return 0, 0, err
		default:
			_, err := s.fail(i, nil, "illegal character %#x", c)
			return 0, 0, err
		}
	}
	_, err := s.fail(i, nil, "unexpected EOF in attribute value")
	return 0, 0, err
}

func (s *Scanner) scanText() (Kind, error) {
	d := s.data
	start := s.pos
	i := start
	var flags uint8
loop:
	for i < len(d) {
		for i < len(d) && plainText[d[i]] {
			i++
		}
		if i >= len(d) {
			break
		}
		c := d[i]
		if c >= utf8.RuneSelf {
			n, err := s.checkHigh(i)
			if err != nil {
				return 0, err
			}
			i, flags = n, flags|fHigh
			continue
		}
		switch textClass[c] {
		case cOK, cWS:
			i++
		case cLT:
			break loop
		case cCR:
			i, flags = i+1, flags|fCR
		case cAmp:
			n, err := s.checkRef(i)
			if err != nil {
				return 0, err
			}
			i, flags = n, flags|fRef
		case cRBracket:
			if bytes.HasPrefix(d[i:], []byte("]]>")) {
				return s.fail(i, nil, "]]> in character data")
			}
			i++
		default:
			return s.fail(i, nil, "illegal character %#x", c)
		}
	}
	s.tokStart, s.tokEnd = start, i
	s.cStart, s.cEnd, s.cFlags = start, i, flags
	s.pos = i
	return KindText, nil
}

// checkChars validates the characters of d[i:end] (comments, PIs, CDATA).
func (s *Scanner) checkChars(i, end int) (uint8, error) {
	d := s.data
	var flags uint8
	for i < end {
		c := d[i]
		if c >= utf8.RuneSelf {
			n, err := s.checkHigh(i)
			if err != nil {
				return 0, err
			}
			i, flags = n, flags|fHigh
			continue
		}
		switch textClass[c] {
		case cBad:
			_, err := s.fail(i, nil, "illegal character %#x", c)
			return 0, err
		case cCR:
			flags |= fCR
		}
		i++
	}
	return flags, nil
}

func (s *Scanner) scanComment() (Kind, error) {
	d := s.data
	start := s.pos
	c := start + 4
	j := bytes.Index(d[c:], []byte("--"))
	if j < 0 {
		return s.fail(start, nil, "unterminated comment")
	}
	end := c + j
	if end+2 >= len(d) || d[end+2] != '>' {
		return s.fail(end, nil, "-- in comment")
	}
	flags, err := s.checkChars(c, end)
	if err != nil {
		return 0, err
	}
	s.tokStart, s.tokEnd = start, end+3
	s.cStart, s.cEnd, s.cFlags = c, end, flags
	s.pos = end + 3
	return KindComment, nil
}

func (s *Scanner) scanCDATA() (Kind, error) {
	d := s.data
	start := s.pos
	c := start + 9
	j := bytes.Index(d[c:], []byte("]]>"))
	if j < 0 {
		return s.fail(start, nil, "unterminated CDATA section")
	}
	end := c + j
	flags, err := s.checkChars(c, end)
	if err != nil {
		return 0, err
	}
	s.tokStart, s.tokEnd = start, end+3
	s.cStart, s.cEnd, s.cFlags = c, end, flags|fCDATA
	s.pos = end + 3
	return KindText, nil
}

func (s *Scanner) scanPI() (Kind, error) {
	d := s.data
	start := s.pos
	q, i, err := s.scanQName(start + 2)
	if err != nil {
		return 0, err
	}
	target := d[q.start:q.end]
	if strings.EqualFold(string(target), "xml") {
		return s.fail(start, nil, "XML declaration allowed only at the start of the document")
	}
	if q.colon >= 0 {
		return s.fail(start, nil, "colon in processing instruction target %s", target)
	}
	c := i
	if !bytes.HasPrefix(d[i:], []byte("?>")) {
		if i >= len(d) || !isSpace(d[i]) {
			return s.fail(i, nil, "malformed processing instruction")
		}
		c = skipSpace(d, i)
	}
	j := bytes.Index(d[c:], []byte("?>"))
	if j < 0 {
		return s.fail(start, nil, "unterminated processing instruction")
	}
	flags, err := s.checkChars(c, c+j)
	if err != nil {
		return 0, err
	}
	s.tokStart, s.tokEnd = start, c+j+2
	s.cStart, s.cEnd, s.cFlags = c, c+j, flags
	s.pos = c + j + 2
	return KindProcInst, nil
}

// checkRef validates the reference starting with '&' at i and returns the
// index after its ';'.
func (s *Scanner) checkRef(i int) (int, error) {
	_, n, err := s.ref(i)
	return n, err
}

// ref decodes the reference at d[i] == '&'.
func (s *Scanner) ref(i int) (rune, int, error) {
	d := s.data
	j := i + 1
	if j < len(d) && d[j] == '#' {
		j++
		base := rune(10)
		if j < len(d) && d[j] == 'x' {
			base = 16
			j++
		}
		var r rune
		digits := 0
		for ; j < len(d); j++ {
			v := hexVal(d[j])
			if v < 0 || v >= base {
				break
			}
			if r <= utf8.MaxRune {
				r = r*base + v
			}
			digits++
		}
		if digits == 0 || j >= len(d) || d[j] != ';' {
			_, err := s.fail(i, nil, "malformed character reference")
			return 0, 0, err
		}
		if !isXMLChar(r) {
			_, err := s.fail(i, nil, "character reference to illegal character")
			return 0, 0, err
		}
		return r, j + 1, nil
	}
	for j < len(d) && d[j] < utf8.RuneSelf && nameByte[d[j]] != 0 {
		j++
	}
	if j >= len(d) || d[j] != ';' {
		_, err := s.fail(i, nil, "malformed entity reference")
		return 0, 0, err
	}
	var r rune
	switch string(d[i+1 : j]) {
	case "lt":
		r = '<'
	case "gt":
		r = '>'
	case "amp":
		r = '&'
	case "apos":
		r = '\''
	case "quot":
		r = '"'
	default:
		_, err := s.fail(i, nil, "undeclared entity &%s;", d[i+1:j])
		return 0, 0, err
	}
	return r, j + 1, nil
}

// checkHigh validates the non-ASCII character at i.
func (s *Scanner) checkHigh(i int) (int, error) {
	if s.ascii {
		_, err := s.fail(i, ErrEncoding, "byte %#x above 0x7F in a US-ASCII document", s.data[i])
		return 0, err
	}
	r, size := utf8.DecodeRune(s.data[i:])
	if r == utf8.RuneError && size == 1 {
		_, err := s.fail(i, nil, "invalid UTF-8")
		return 0, err
	}
	if !isXMLChar(r) {
		_, err := s.fail(i, nil, "illegal character %U", r)
		return 0, err
	}
	return i + size, nil
}

// decode returns data[start:end] with references replaced and line ends
// (and, for attributes, whitespace) normalized. It aliases the data when
// nothing needs changing; otherwise it appends to s.buf, so
// earlier results of the same token stay intact.
func (s *Scanner) decode(start, end int, flags uint8, attr bool) []byte {
	raw := s.data[start:end]
	if flags&(fRef|fCR|fWS) == 0 {
		return raw
	}
	cdata := flags&fCDATA != 0
	from := len(s.buf)
	out := s.buf
	for i := start; i < end; {
		c := s.data[i]
		switch {
		case c == '&' && !cdata:
			r, n, _ := s.ref(i) // validated while scanning
			out = utf8.AppendRune(out, r)
			i = n
			continue
		case c == '\r':
			if i+1 < end && s.data[i+1] == '\n' {
				i++
			}
			if attr {
				out = append(out, ' ')
			} else {
				out = append(out, '\n')
			}
		case attr && (c == '\n' || c == '\t'):
			out = append(out, ' ')
		default:
			out = append(out, c)
		}
		i++
	}
	s.buf = out
	return out[from:len(out):len(out)]
}
