package xmlsafe

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/encoding/unicode/utf32"
	"golang.org/x/text/transform"
)

// A document's encoding is found as libxml2 2.9 (through lxml, so Comet)
// finds it, XML 1.0 appendix F: a byte order mark or the first four bytes
// pick UTF-32, UTF-16, EBCDIC or an ASCII-compatible encoding; the XML
// declaration then names the charset, which must agree with that choice.
// A UTF-8 or US-ASCII document is scanned where it lies; any other is
// decoded to UTF-8 once, and token offsets are mapped back to the bytes as
// received, which are never changed.

// ErrEncoding is wrapped by every refusal of a document's encoding: an
// encoding no decoder here knows, a declaration that contradicts the byte
// order mark (or the first bytes), or bytes that are not characters of the
// document's encoding.
var ErrEncoding = errors.New("encoding: ")

// csKind is how a charset is decoded.
type csKind uint8

const (
	kUndecodable csKind = iota // a name libxml2 (glibc iconv) knows, with no decoder here
	kUTF8
	kASCII
	kUTF16   // the label "UTF-16": byte order from the byte order mark or first bytes
	kUTF16LE // also UCS-2 in the byte order of the host Comet runs on (little-endian)
	kUTF16BE
	kUCS2LE // as kUTF16LE without surrogates (glibc's UCS-2)
	kUCS2BE
	kUTF32 // any UTF-32 or UCS-4 label
	kSingle
	kMulti
	kUTF7 // RFC 2152, as glibc decodes it
)

// charset is a character encoding a document may declare.
type charset struct {
	name   string // as logs and the tap show it
	kind   csKind
	enc    encoding.Encoding // x/text, for kSingle and kMulti
	ebcdic bool              // kSingle: an EBCDIC code page (not ASCII-compatible)
	// stateful multi-byte encodings (ISO-2022-JP, HZ) cannot skip the
	// x/text decoder for ASCII bytes.
	stateful bool
	// patch makes x/text's single-byte table agree with glibc's, which
	// Comet's libxml2 decodes with; for kMulti it may hold replacements for
	// ASCII bytes.
	patch func(t *[256]rune)
	// hex is a table generated from glibc (glibc_tables.go): four hex
	// digits per byte, FFFF for a byte glibc refuses; 128 entries cover
	// 0x80-0xFF of a charset whose 0x00-0x7F are ASCII.
	hex string

	once  sync.Once
	table [256]rune     // kSingle: rune per byte, -1 = not a character; kMulti: ASCII overrides (0 = none)
	rev   map[rune]byte // kSingle from hex: the encoder's table
	// fffd is the charset's own encoding of U+FFFD, if it has one: a decoder
	// producing U+FFFD from other bytes has met an invalid sequence.
	fffd []byte
}

func (c *charset) init() {
	c.once.Do(func() {
		switch {
		case c.kind == kSingle && c.hex != "":
			c.initHex()
		case c.kind == kSingle:
			cm := c.enc.(*charmap.Charmap)
			for b := range 256 {
				r := cm.DecodeByte(byte(b))
				if r == utf8.RuneError {
					r = -1
				}
				c.table[b] = r
			}
		case c.kind == kMulti:
			if b, err := c.enc.NewEncoder().Bytes([]byte("\uFFFD")); err == nil {
				c.fffd = b
			}
		}
		if c.patch != nil {
			c.patch(&c.table)
		}
	})
}

// initHex fills the table from hex (generated, so well-formed) and the
// encoder's reverse table, first byte of each character.
func (c *charset) initHex() {
	from := 256 - len(c.hex)/4
	for b := range from {
		c.table[b] = rune(b)
	}
	for i := 0; from+i < 256; i++ {
		var r rune
		for _, h := range c.hex[4*i : 4*i+4] {
			r <<= 4
			switch {
			case h >= 'A':
				r |= h - 'A' + 10
			default:
				r |= h - '0'
			}
		}
		if r == 0xFFFF {
			r = -1
		}
		c.table[from+i] = r
	}
	c.rev = make(map[rune]byte, 256)
	for b := 255; b >= 0; b-- {
		if r := c.table[b]; r >= 0 {
			c.rev[r] = byte(b)
		}
	}
}

// glibcSingle is a single-byte charset with glibc's table (glibc_tables.go).
func glibcSingle(name string, ebcdic bool, hex string) *charset {
	c := &charset{name: name, kind: kSingle, ebcdic: ebcdic, hex: hex}
	c.enc = tableEncoding{c}
	return c
}

// c1Controls: glibc's ISO-8859 tables map 0x80-0x9F to the C1 controls,
// which XML 1.0 allows; x/text leaves them undefined.
func c1Controls(t *[256]rune) {
	for b := 0x80; b < 0xA0; b++ {
		t[b] = rune(b)
	}
}

func setBytes(pairs ...rune) func(t *[256]rune) {
	return func(t *[256]rune) {
		for i := 0; i+1 < len(pairs); i += 2 {
			t[pairs[i]] = pairs[i+1]
		}
	}
}

func single(name string, cm *charmap.Charmap, patch func(*[256]rune)) *charset {
	return &charset{name: name, kind: kSingle, enc: cm, patch: patch}
}

func iso8859(name string, cm *charmap.Charmap) *charset { return single(name, cm, c1Controls) }

func multi(name string, e encoding.Encoding, patch func(*[256]rune)) *charset {
	return &charset{name: name, kind: kMulti, enc: e, patch: patch}
}

// The charsets, by the identifiers labels.go maps names to.
var (
	csUndecodable = &charset{name: "", kind: kUndecodable}
	csUTF8        = &charset{name: "UTF-8", kind: kUTF8}
	csASCII       = &charset{name: "US-ASCII", kind: kASCII}
	csUTF16       = &charset{name: "UTF-16", kind: kUTF16}
	csUTF16LE     = &charset{name: "UTF-16LE", kind: kUTF16LE}
	csUTF16BE     = &charset{name: "UTF-16BE", kind: kUTF16BE}
	csUCS2LE      = &charset{name: "UCS-2LE", kind: kUCS2LE}
	csUCS2BE      = &charset{name: "UCS-2BE", kind: kUCS2BE}
	csUTF32       = &charset{name: "UTF-32", kind: kUTF32}
	csUTF32LE     = &charset{name: "UTF-32LE", kind: kUTF32}
	csUTF32BE     = &charset{name: "UTF-32BE", kind: kUTF32}

	csISO8859_1  = single("ISO-8859-1", charmap.ISO8859_1, nil)
	csISO8859_2  = iso8859("ISO-8859-2", charmap.ISO8859_2)
	csISO8859_3  = iso8859("ISO-8859-3", charmap.ISO8859_3)
	csISO8859_4  = iso8859("ISO-8859-4", charmap.ISO8859_4)
	csISO8859_5  = iso8859("ISO-8859-5", charmap.ISO8859_5)
	csISO8859_6  = iso8859("ISO-8859-6", charmap.ISO8859_6)
	csISO8859_7  = iso8859("ISO-8859-7", charmap.ISO8859_7)
	csISO8859_8  = iso8859("ISO-8859-8", charmap.ISO8859_8)
	csISO8859_9  = iso8859("ISO-8859-9", charmap.ISO8859_9)
	csISO8859_10 = iso8859("ISO-8859-10", charmap.ISO8859_10)
	csISO8859_13 = iso8859("ISO-8859-13", charmap.ISO8859_13)
	csISO8859_14 = iso8859("ISO-8859-14", charmap.ISO8859_14)
	csISO8859_15 = iso8859("ISO-8859-15", charmap.ISO8859_15)
	csISO8859_16 = iso8859("ISO-8859-16", charmap.ISO8859_16)

	csWindows874  = single("windows-874", charmap.Windows874, nil)
	csWindows1250 = single("windows-1250", charmap.Windows1250, nil)
	csWindows1251 = single("windows-1251", charmap.Windows1251, nil)
	csWindows1252 = single("windows-1252", charmap.Windows1252, nil)
	csWindows1253 = single("windows-1253", charmap.Windows1253, nil)
	csWindows1254 = single("windows-1254", charmap.Windows1254, nil)
	csWindows1255 = single("windows-1255", charmap.Windows1255, setBytes(0xCA, -1))
	csWindows1256 = single("windows-1256", charmap.Windows1256, nil)
	csWindows1257 = single("windows-1257", charmap.Windows1257, nil)
	csWindows1258 = single("windows-1258", charmap.Windows1258, nil)
	csKOI8R       = single("KOI8-R", charmap.KOI8R, nil)
	csKOI8U       = single("KOI8-U", charmap.KOI8U, setBytes(0xAE, 0x255D, 0xBE, 0x256C))
	csMacintosh   = single("macintosh", charmap.Macintosh, setBytes(0xC6, 0x0394, 0xF0, 0xE01E))
	csIBM437      = single("IBM437", charmap.CodePage437, nil)
	csIBM850      = single("IBM850", charmap.CodePage850, nil)
	csIBM852      = single("IBM852", charmap.CodePage852, nil)
	csIBM855      = single("IBM855", charmap.CodePage855, nil)
	csIBM858      = single("IBM858", charmap.CodePage858, nil)
	csIBM860      = single("IBM860", charmap.CodePage860, nil)
	csIBM862      = single("IBM862", charmap.CodePage862, nil)
	csIBM863      = single("IBM863", charmap.CodePage863, nil)
	csIBM865      = single("IBM865", charmap.CodePage865, nil)
	csIBM866      = single("IBM866", charmap.CodePage866, nil)

	// glibc's SHIFT_JIS reads 0x5C and 0x7E as JIS X 0201 Roman (yen sign,
	// overline); its Windows-31J reads them as ASCII, like x/text.
	csShiftJIS   = multi("Shift_JIS", japanese.ShiftJIS, setBytes(0x5C, 0xA5, 0x7E, 0x203E))
	csWindows31J = multi("Windows-31J", japanese.ShiftJIS, nil)
	csEUCJP      = multi("EUC-JP", japanese.EUCJP, nil)
	csISO2022JP  = &charset{name: "ISO-2022-JP", kind: kMulti, enc: japanese.ISO2022JP, stateful: true}
	csEUCKR      = multi("EUC-KR", korean.EUCKR, nil)
	csGBK        = multi("GBK", simplifiedchinese.GBK, nil)
	csGB18030    = multi("GB18030", simplifiedchinese.GB18030, nil)
	csHZGB2312   = &charset{name: "HZ-GB-2312", kind: kMulti, enc: simplifiedchinese.HZGB2312, stateful: true}
	csBig5       = multi("Big5", traditionalchinese.Big5, nil)
	csUTF7       = &charset{name: "UTF-7", kind: kUTF7}
)

// lookupLabel resolves an encoding name (case-insensitive). ok is false for
// a name libxml2 does not know either.
func lookupLabel(label []byte) (cs *charset, ok bool) {
	var buf [48]byte
	if len(label) > len(buf) {
		return nil, false
	}
	up := buf[:len(label)]
	for i, c := range label {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		up[i] = c
	}
	cs, ok = labels[string(up)]
	return cs, ok
}

// form is what the first bytes of a document say about its encoding.
type form uint8

const (
	formASCII form = iota // ASCII-compatible (UTF-8 unless declared otherwise)
	formUTF8BOM
	formUTF16LE
	formUTF16BE
	formUTF32LE
	formUTF32BE
	formEBCDIC
)

// sniff applies appendix F as lxml 4.9 and libxml2 2.9 do: lxml reads the
// UTF-32 byte order marks (which libxml2 does not) and passes UTF-32 on as
// the document's encoding. bom is the length of the byte order mark.
func sniff(d []byte) (f form, bom int) {
	if len(d) >= 4 {
		switch {
		case d[0] == 0xFF && d[1] == 0xFE && d[2] == 0 && d[3] == 0:
			return formUTF32LE, 4
		case d[0] == 0 && d[1] == 0 && d[2] == 0xFE && d[3] == 0xFF:
			return formUTF32BE, 4
		case d[0] == 0 && d[1] == 0 && d[2] == 0 && d[3] == '<':
			return formUTF32BE, 0
		case d[0] == '<' && d[1] == 0 && d[2] == 0 && d[3] == 0:
			return formUTF32LE, 0
		case d[0] == 0x4C && d[1] == 0x6F && d[2] == 0xA7 && d[3] == 0x94:
			return formEBCDIC, 0
		case d[0] == '<' && d[1] == 0 && d[2] == '?' && d[3] == 0:
			return formUTF16LE, 0
		case d[0] == 0 && d[1] == '<' && d[2] == 0 && d[3] == '?':
			return formUTF16BE, 0
		}
	}
	switch {
	case len(d) >= 3 && d[0] == 0xEF && d[1] == 0xBB && d[2] == 0xBF:
		return formUTF8BOM, 3
	case len(d) >= 2 && d[0] == 0xFE && d[1] == 0xFF:
		return formUTF16BE, 2
	case len(d) >= 2 && d[0] == 0xFF && d[1] == 0xFE:
		return formUTF16LE, 2
	}
	return formASCII, 0
}

// markEvery is the number of characters between two offset marks of a
// transcoded document: mapping an offset walks at most this many.
const markEvery = 64

// transcoder holds a document decoded to UTF-8 and what maps offsets in it
// back to the bytes received: how many bytes each character took (bytes
// that decode to nothing, such as ISO-2022 shift sequences, count with the
// character after them; UTF-7's '-' closing a run, with the one before)
// and the offsets of every markEvery-th character.
type transcoder struct {
	active  bool
	text    []byte
	inLens  []uint8
	marks   []offsetPair
	in      int // bytes consumed so far, including the byte order mark
	pending int // bytes consumed that produced no character yet
}

type offsetPair struct{ out, in int32 }

// maxPending bounds the bytes one character may take with the shift
// sequences before it (inLens are bytes).
const maxPending = 255 - utf8.UTFMax

// Above this, a pooled scanner drops its transcoding buffers.
const maxKeptTranscode = 256 << 10

func (t *transcoder) reset(base int) {
	if cap(t.text) > maxKeptTranscode {
		*t = transcoder{}
	}
	t.active, t.text, t.inLens, t.marks = true, t.text[:0], t.inLens[:0], t.marks[:0]
	t.in, t.pending = base, 0
}

func (t *transcoder) release() {
	t.active = false
	if cap(t.text) > maxKeptTranscode {
		*t = transcoder{}
	}
}

// emit appends character r, which took n bytes of input.
func (t *transcoder) emit(r rune, n int) {
	if len(t.inLens)%markEvery == 0 {
		t.marks = append(t.marks, offsetPair{int32(len(t.text)), int32(t.in)})
	}
	n += t.pending
	t.pending = 0
	t.text = utf8.AppendRune(t.text, r)
	t.inLens = append(t.inLens, uint8(n))
	t.in += n
}

// extendLast counts n more input bytes with the last character emitted
// (the terminator of a shift sequence that character ended).
func (t *transcoder) extendLast(n int) {
	if len(t.inLens) == 0 || int(t.inLens[len(t.inLens)-1])+n > 255 {
		t.pending += n
		return
	}
	t.inLens[len(t.inLens)-1] += uint8(n)
	t.in += n
}

// skip consumes n bytes that decode to no character.
func (t *transcoder) skip(n int) bool {
	t.pending += n
	return t.pending <= maxPending
}

// rawOffset maps an offset in the text (at a character boundary) to the
// offset in the input of the first byte of that character, shift sequences
// before it included; the end of the text maps to the end of its last
// character.
func (t *transcoder) rawOffset(o int) int {
	if len(t.marks) == 0 {
		return t.in
	}
	k := sort.Search(len(t.marks), func(i int) bool { return int(t.marks[i].out) > o }) - 1
	if k < 0 {
		k = 0
	}
	out, in, c := int(t.marks[k].out), int(t.marks[k].in), k*markEvery
	for out < o && c < len(t.inLens) {
		_, size := utf8.DecodeRune(t.text[out:])
		out += size
		in += int(t.inLens[c])
		c++
	}
	return in
}

// textOffset maps an input offset to the text offset of the character
// that byte belongs to.
func (t *transcoder) textOffset(raw int) int {
	if len(t.marks) == 0 {
		return len(t.text)
	}
	k := sort.Search(len(t.marks), func(i int) bool { return int(t.marks[i].in) > raw }) - 1
	if k < 0 {
		return 0
	}
	out, in, c := int(t.marks[k].out), int(t.marks[k].in), k*markEvery
	for c < len(t.inLens) && in+int(t.inLens[c]) <= raw {
		_, size := utf8.DecodeRune(t.text[out:])
		out += size
		in += int(t.inLens[c])
		c++
	}
	return out
}

// decodeError is a byte sequence that is not a character of the charset,
// at an input offset.
type decodeError struct {
	at  int
	msg string
}

func (e *decodeError) Error() string { return e.msg }

func badBytes(at int, b []byte, cs string) *decodeError {
	return &decodeError{at, fmt.Sprintf("bytes % X are not a character in %s", b, cs)}
}

// decode appends src, the document after its byte order mark, decoded as
// cs, to t. t must have been reset with the mark's length.
func (t *transcoder) decode(src []byte, cs *charset, bigEndian bool) error {
	switch cs.kind {
	case kUTF16, kUTF16LE, kUTF16BE, kUCS2LE, kUCS2BE:
		return t.decodeUTF16(src, bigEndian, cs.kind == kUCS2LE || cs.kind == kUCS2BE)
	case kUTF32:
		return t.decodeUTF32(src, bigEndian)
	case kSingle:
		return t.decodeSingle(src, cs)
	case kMulti:
		return t.decodeMulti(src, cs)
	case kUTF7:
		return t.decodeUTF7(src)
	}
	return fmt.Errorf("no decoder for %s", cs.name)
}

func (t *transcoder) decodeUTF16(src []byte, bigEndian, ucs2 bool) error {
	unit := func(i int) rune {
		if bigEndian {
			return rune(src[i])<<8 | rune(src[i+1])
		}
		return rune(src[i+1])<<8 | rune(src[i])
	}
	name := "UTF-16"
	if ucs2 {
		name = "UCS-2"
	}
	base := t.in
	// A trailing odd byte is ignored, as libxml2 does.
	for i := 0; i+1 < len(src); {
		r := unit(i)
		switch {
		case r < 0xD800 || r > 0xDFFF:
			t.emit(r, 2)
			i += 2
			continue
		case ucs2 || r > 0xDBFF || i+3 >= len(src):
		default:
			if r2 := unit(i + 2); r2 >= 0xDC00 && r2 <= 0xDFFF {
				t.emit(0x10000+(r-0xD800)<<10+(r2-0xDC00), 4)
				i += 4
				continue
			}
		}
		return &decodeError{base + i, fmt.Sprintf("unpaired surrogate %#04x in %s", r, name)}
	}
	return nil
}

func (t *transcoder) decodeUTF32(src []byte, bigEndian bool) error {
	base := t.in
	// Trailing bytes short of a code unit are ignored, as iconv does.
	for i := 0; i+3 < len(src); i += 4 {
		var r rune
		if bigEndian {
			r = rune(src[i])<<24 | rune(src[i+1])<<16 | rune(src[i+2])<<8 | rune(src[i+3])
		} else {
			r = rune(src[i+3])<<24 | rune(src[i+2])<<16 | rune(src[i+1])<<8 | rune(src[i])
		}
		if r < 0 || r > utf8.MaxRune || r >= 0xD800 && r <= 0xDFFF {
			return &decodeError{base + i, fmt.Sprintf("%#x is not a Unicode character (UTF-32)", uint32(r))}
		}
		t.emit(r, 4)
	}
	return nil
}

func (t *transcoder) decodeSingle(src []byte, cs *charset) error {
	cs.init()
	base := t.in
	for i, b := range src {
		r := cs.table[b]
		if r < 0 {
			return badBytes(base+i, src[i:i+1], cs.name)
		}
		t.emit(r, 1)
	}
	return nil
}

// maxCharBytes is the longest character of the multi-byte charsets
// (GB18030's four-byte sequences); shift sequences are at most four too.
const maxCharBytes = 4

func (t *transcoder) decodeMulti(src []byte, cs *charset) error {
	cs.init()
	dec := cs.enc.NewDecoder()
	base := t.in
	var buf [4 * utf8.UTFMax]byte
	for i := 0; i < len(src); {
		if c := src[i]; c < utf8.RuneSelf && !cs.stateful {
			r := rune(c)
			if o := cs.table[c]; o != 0 {
				r = o
			}
			t.emit(r, 1)
			i++
			continue
		}
		// Feed the decoder the shortest prefix it can decode, so that
		// every character's length is known.
		var nDst, nSrc int
		var err error
		for w := 1; ; w++ {
			end := min(i+w, len(src))
			atEOF := end == len(src)
			nDst, nSrc, err = dec.Transform(buf[:], src[i:end], atEOF)
			if nSrc > 0 || atEOF || w == maxCharBytes || err != transform.ErrShortSrc {
				break
			}
		}
		if nSrc == 0 {
			return badBytes(base+i, src[i:min(i+2, len(src))], cs.name)
		}
		if nDst == 0 { // a shift sequence
			if !t.skip(nSrc) {
				return &decodeError{base + i, "too many shift sequences in a row in " + cs.name}
			}
			i += nSrc
			continue
		}
		first := true
		for out := buf[:nDst]; len(out) > 0; {
			r, size := utf8.DecodeRune(out)
			if r == utf8.RuneError && !bytes.Equal(src[i:i+nSrc], cs.fffd) {
				return badBytes(base+i, src[i:i+nSrc], cs.name)
			}
			n := 0
			if first { // a sequence that decodes to several characters
				n, first = nSrc, false
			}
			t.emit(r, n)
			out = out[size:]
		}
		i += nSrc
	}
	return nil
}

// Decode returns doc's characters as UTF-8, from after any byte order mark,
// and the name of its encoding, found as a Scanner finds them (byte order
// mark, first bytes, XML declaration). A UTF-8 or US-ASCII document's text
// is doc itself; any other is decoded into a new slice. Only the prolog is
// checked: the error, a *SyntaxError, is one a Scanner reports before the
// first token (an undecodable byte, an unknown encoding, a declaration that
// contradicts the byte order mark, a malformed declaration).
func Decode(doc []byte) (text []byte, encodingName string, err error) {
	var s Scanner
	s.Reset(doc, 0)
	if err := s.prolog(); err != nil {
		return nil, "", err
	}
	if s.tr.active {
		return s.data, s.cs.name, nil
	}
	_, bom := sniff(doc)
	if s.ascii {
		for i := bom; i < len(doc); i++ {
			if doc[i] >= utf8.RuneSelf {
				_, err := s.fail(i, ErrEncoding, "byte %#x above 0x7F in a US-ASCII document", doc[i])
				return nil, "", err
			}
		}
	}
	return doc[bom:], s.Encoding(), nil
}

// Encode returns text (UTF-8) in doc's encoding, found as Decode finds it,
// without a byte order mark: what may be appended to doc, such as a comment
// after the root element, and read back as text. For a UTF-8 or US-ASCII
// document it is text itself.
func Encode(doc, text []byte) ([]byte, error) {
	var s Scanner
	s.Reset(doc, 0)
	if err := s.prolog(); err != nil {
		return nil, err
	}
	var e encoding.Encoding
	switch cs := s.cs; {
	case cs == nil:
		if s.ascii {
			for _, c := range text {
				if c >= utf8.RuneSelf {
					return nil, fmt.Errorf("%w%q has characters US-ASCII lacks", ErrEncoding, text)
				}
			}
		}
		return text, nil
	case cs == csUTF16LE || cs == csUCS2LE:
		e = unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM)
	case cs == csUTF16BE || cs == csUCS2BE:
		e = unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM)
	case cs == csUTF32LE:
		e = utf32.UTF32(utf32.LittleEndian, utf32.IgnoreBOM)
	case cs == csUTF32BE:
		e = utf32.UTF32(utf32.BigEndian, utf32.IgnoreBOM)
	case cs.kind == kUTF7:
		return appendUTF7(nil, text), nil
	default:
		e = cs.enc
	}
	b, err := e.NewEncoder().Bytes(text)
	if err != nil {
		return nil, fmt.Errorf("%w%s cannot hold %q: %w", ErrEncoding, s.cs.name, text, err)
	}
	return b, nil
}

// emitRaw appends src as characters of one byte each: the part of an XML
// declaration libxml2 reads before it switches to the declared charset.
func (t *transcoder) emitRaw(src []byte) {
	for _, b := range src {
		t.emit(rune(b), 1)
	}
}

// tableEncoding is a charset given by its table as an x/text Encoding, for
// Encode and for writing documents in it.
type tableEncoding struct{ cs *charset }

func (e tableEncoding) NewDecoder() *encoding.Decoder {
	return &encoding.Decoder{Transformer: tableDecoder{e.cs}}
}

func (e tableEncoding) NewEncoder() *encoding.Encoder {
	return &encoding.Encoder{Transformer: tableEncoder{e.cs}}
}

type tableDecoder struct{ cs *charset }

func (d tableDecoder) Reset() {}

// Transform replaces bytes the charset lacks with U+FFFD, as x/text does.
func (d tableDecoder) Transform(dst, src []byte, atEOF bool) (nDst, nSrc int, err error) {
	d.cs.init()
	for nSrc < len(src) {
		r := d.cs.table[src[nSrc]]
		if r < 0 {
			r = utf8.RuneError
		}
		if nDst+utf8.RuneLen(r) > len(dst) {
			return nDst, nSrc, transform.ErrShortDst
		}
		nDst += utf8.EncodeRune(dst[nDst:], r)
		nSrc++
	}
	return nDst, nSrc, nil
}

type tableEncoder struct{ cs *charset }

func (e tableEncoder) Reset() {}

// errNotInCharset: a character the charset cannot hold.
var errNotInCharset = errors.New("character not in the charset")

func (e tableEncoder) Transform(dst, src []byte, atEOF bool) (nDst, nSrc int, err error) {
	e.cs.init()
	for nSrc < len(src) {
		r, size := utf8.DecodeRune(src[nSrc:])
		if r == utf8.RuneError && size < 2 && !atEOF && !utf8.FullRune(src[nSrc:]) {
			return nDst, nSrc, transform.ErrShortSrc
		}
		b, ok := e.cs.rev[r]
		if !ok {
			return nDst, nSrc, errNotInCharset
		}
		if nDst >= len(dst) {
			return nDst, nSrc, transform.ErrShortDst
		}
		dst[nDst] = b
		nDst++
		nSrc += size
	}
	return nDst, nSrc, nil
}
