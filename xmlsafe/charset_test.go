package xmlsafe

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/encoding/unicode/utf32"
)

var encodingsDir = filepath.Join(testdataDir, "encodings")

// verdicts is testdata/encodings/verdicts.json: what Comet (lxml 4.9.2 on
// libxml2 2.9.14) does with one real notice in each encoding.
type verdicts struct {
	Generated struct {
		Filter, Command string
	}
	Variants []struct {
		File        string
		What        string
		SHA1        string
		Comet       string // "ack" or "no reply"
		LxmlError   string `json:"lxml_error"`
		IVORN       string
		LocError    string `json:"loc_error"`
		LocalNote   string `json:"local_note"`
		Description string
	}
}

func loadVerdicts(t testing.TB) verdicts {
	var v verdicts
	readJSON(t, "verdicts.json", &v)
	return v
}

func readJSON(t testing.TB, name string, v any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(encodingsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

// Every encoded notice scans as lxml parses it, and every token's span,
// decoded on its own, is the token's text: offsets are into the bytes
// received, whatever the encoding.
func TestScannerEncodedNotices(t *testing.T) {
	v := loadVerdicts(t)
	for _, n := range v.Variants {
		t.Run(n.File, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(encodingsDir, n.File))
			if err != nil {
				t.Fatal(err)
			}
			s := NewScanner(data, 0)
			tokens, err := scanSpans(t, s, data)
			wantOK := n.Comet == "ack"
			if wantOK != (err == nil) {
				t.Fatalf("%s: scanner error %v; lxml: %s %s", n.What, err, n.Comet, n.LxmlError)
			}
			if err != nil {
				var se *SyntaxError
				if !errors.As(err, &se) || se.Offset < 0 || se.Offset > len(data) {
					t.Fatalf("error %v is not a *SyntaxError with an offset in the input", err)
				}
				return
			}
			if tokens < 100 {
				t.Errorf("only %d tokens", tokens)
			}
		})
	}
}

// scanSpans scans the whole document and checks every span against the
// token's text by decoding the span alone.
func scanSpans(t *testing.T, s *Scanner, raw []byte) (int, error) {
	t.Helper()
	n := 0
	for {
		k, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
		n++
		a, b := s.Span()
		if a < 0 || a > b || b > len(raw) {
			t.Fatalf("token %d: span [%d, %d) outside the %d-byte input", n, a, b, len(raw))
		}
		want := s.data[s.tokStart:s.tokEnd]
		if k == KindEnd && s.tokEnd-s.tokStart > 0 && s.data[s.tokEnd-2] == '/' {
			continue // the span of <a/> again
		}
		if got := decodeSpan(t, s, raw, a, b); !bytes.Equal(got, want) {
			t.Fatalf("token %d: span [%d, %d) decodes to %q, want %q", n, a, b, got, want)
		}
	}
	if a, b, ok := s.Declaration(); ok {
		if got := decodeSpan(t, s, raw, a, b); !bytes.HasPrefix(got, []byte("<?xml ")) || !bytes.HasSuffix(got, []byte("?>")) {
			t.Fatalf("declaration span [%d, %d) decodes to %q", a, b, got)
		}
	}
	return n, nil
}

// decodeSpan decodes raw[a:b] as the scanner decoded those bytes (an
// EBCDIC document's first bytes in EBCDIC-US, the rest in its charset).
func decodeSpan(t *testing.T, s *Scanner, raw []byte, a, b int) []byte {
	t.Helper()
	if s.cs == nil {
		return raw[a:b]
	}
	var tr transcoder
	tr.reset(0)
	if us := min(max(a, s.usUntil), b); us > a {
		if err := tr.decode(raw[a:us], csEBCDICUS, false); err != nil {
			t.Fatalf("span % X does not decode in EBCDIC-US: %v", raw[a:min(us, a+16)], err)
		}
		a = us
	}
	if err := tr.decode(raw[a:b], s.cs, s.cs == csUTF16BE || s.cs == csUTF32BE || s.cs == csUCS2BE); err != nil {
		t.Fatalf("span % X does not decode: %v", raw[a:min(b, a+16)], err)
	}
	return tr.text
}

// charsets is testdata/encodings/charsets.json.
type charsets struct {
	Labels map[string]string
	// Single holds, per single-byte charset, lxml's reading of each byte
	// (the code point, -1 if refused) in the probe document (probeDoc);
	// First, for an EBCDIC code page, of each byte inside the first line.
	Single map[string]struct {
		Label, Tag   string
		EBCDIC       bool
		Bytes, First []int
	}
	Multi map[string]struct {
		Label, Hex, Text string
		Bad              []struct {
			Hex      string
			Accepted bool
		}
	}
	// UTF7 and EBCDIC: documents and lxml's verdict and root text.
	UTF7, EBCDIC []struct {
		Label     string // EBCDIC: the declared name
		Hex       string
		Accepted  bool
		Text      string
		Straddles bool
	}
	// Refused: names libxml2 knows and this package refuses, and why.
	Refused map[string]string
}

func loadCharsets(t testing.TB) charsets {
	var c charsets
	readJSON(t, "charsets.json", &c)
	return c
}

func encodeIn(t *testing.T, cs *charset, s string) []byte {
	t.Helper()
	b, err := cs.enc.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatalf("%s cannot hold %q: %v", cs.name, s, err)
	}
	return b
}

// probeDoc is the document testdata/encodings/generate.py probed byte b of
// charset cs in, under label, with root element tag: the declaration as
// libxml2 reads it (ASCII, or EBCDIC-US for an EBCDIC code page), the rest
// in cs. first puts an EBCDIC document's byte inside its first line, which
// libxml2 reads in EBCDIC-US; otherwise the byte follows the first line
// where libxml2 switches inside it.
func probeDoc(t *testing.T, label string, cs *charset, tag string, first bool, b byte) []byte {
	decl := `<?xml version="1.0" encoding="` + label + `"?>`
	stag, etag := "<"+tag+">", "</"+tag+">"
	var doc []byte
	switch early := len(decl)-2 < ebcdicFirstLine; {
	case !cs.ebcdic:
		doc = append([]byte(decl[:len(decl)-2]), encodeIn(t, cs, "?>"+stag)...)
	case first || !early:
		doc = append(encodeIn(t, csEBCDICUS, decl), encodeIn(t, csEBCDICUS, stag)...)
		cs = csEBCDICUS
	default:
		doc = encodeIn(t, csEBCDICUS, decl)
		for len(doc) < ebcdicFirstLine {
			doc = append(doc, 0x40)
		}
		doc = append(doc, encodeIn(t, cs, stag)...)
	}
	doc = append(doc, b)
	return append(doc, encodeIn(t, cs, etag)...)
}

// scanText returns the root's text, or the scanner's error.
func scanText(doc []byte) (string, error) {
	s := NewScanner(doc, 0)
	var text []byte
	for {
		k, err := s.Next()
		if err == io.EOF {
			return string(text), nil
		}
		if err != nil {
			return "", err
		}
		if k == KindText {
			text = append(text, s.Text()...)
		}
	}
}

// Every byte of every single-byte charset (x/text's, corrected to glibc,
// and glibc's own tables) decodes as lxml decodes it, or is refused where
// lxml refuses it; for EBCDIC code pages also inside the first line, which
// libxml2 reads in EBCDIC-US.
func TestSingleByteCharsetsMatchLibxml2(t *testing.T) {
	c := loadCharsets(t)
	if len(c.Single) < 200 {
		t.Fatalf("only %d single-byte charsets", len(c.Single))
	}
	for id, sc := range c.Single {
		cs, ok := lookupLabel([]byte(sc.Label))
		if !ok || cs.kind != kSingle || cs.ebcdic != sc.EBCDIC || len(sc.Bytes) != 256 {
			t.Errorf("%s: label %s does not name a single-byte charset", id, sc.Label)
			continue
		}
		tag := sc.Tag
		if tag == "" {
			tag = "r"
		}
		for _, probe := range []struct {
			first bool
			want  []int
		}{{false, sc.Bytes}, {true, sc.First}} {
			for b, want := range probe.want {
				got, err := scanText(probeDoc(t, sc.Label, cs, tag, probe.first, byte(b)))
				switch {
				case want < 0 && err == nil:
					t.Errorf("%s: byte %02X (first line %v) reads as %q; libxml2 refuses it", sc.Label, b, probe.first, got)
				case want >= 0 && (err != nil || got != string(rune(want))):
					t.Errorf("%s: byte %02X (first line %v) reads as %q (%v); libxml2 reads U+%04X", sc.Label, b, probe.first, got, err, want)
				}
			}
		}
	}
}

// An EBCDIC document is read as libxml2 2.9.14 reads it: the first line in
// EBCDIC-US, the rest in the declared code page where libxml2 switches
// inside the first line, else EBCDIC-US up to the first byte it lacks
// (names too long for the first line, such as EBCDIC-CP-ROECE), which is
// why a byte near the start of an IBM1047 document can read as IBM037
// reads it. Declarations that cross the first line though libxml2
// switched inside it are refused, as documented.
func TestEBCDICCodePageSwitchesWhereLibxml2Does(t *testing.T) {
	c := loadCharsets(t)
	if len(c.EBCDIC) < 200 {
		t.Fatalf("only %d EBCDIC documents", len(c.EBCDIC))
	}
	accepted := 0
	for i, d := range c.EBCDIC {
		doc, _ := hex.DecodeString(d.Hex)
		got, err := scanText(doc)
		switch _, refused := c.Refused[d.Label]; {
		case d.Straddles || refused:
			if err == nil {
				t.Errorf("case %d: %s: accepted; refused on purpose (crosses the first line, or a name refused)", i, d.Label)
			}
		case !d.Accepted && err == nil:
			t.Errorf("case %d: read %q; libxml2 refuses the document", i, got)
		case d.Accepted && (err != nil || got != d.Text):
			t.Errorf("case %d: %q, %v; libxml2 reads %q", i, got, err, d.Text)
		case d.Accepted:
			accepted++
		}
	}
	if accepted < 100 {
		t.Errorf("only %d documents accepted as libxml2 accepts them", accepted)
	}
}

// UTF-7 decodes as glibc decodes it for libxml2: direct and optional
// direct characters, "+-", base64 runs closed by '-' or any other byte,
// surrogate pairs; leftover bits, unpaired surrogates, '\\', '~' refused.
func TestUTF7MatchesLibxml2(t *testing.T) {
	c := loadCharsets(t)
	if len(c.UTF7) < 30 {
		t.Fatalf("only %d UTF-7 inputs", len(c.UTF7))
	}
	for _, d := range c.UTF7 {
		body, _ := hex.DecodeString(d.Hex)
		doc := append(append([]byte(`<?xml version="1.0" encoding="UTF-7"?><r>`), body...), "</r>"...)
		got, err := scanText(doc)
		switch {
		case !d.Accepted && err == nil:
			t.Errorf("%q: read %q; libxml2 refuses it", body, got)
		case d.Accepted && (err != nil || got != d.Text):
			t.Errorf("%q: %q, %v; libxml2 reads %q", body, got, err, d.Text)
		}
		if d.Accepted && err == nil {
			// What this package writes in UTF-7 reads back.
			enc := appendUTF7([]byte(`<?xml version="1.0" encoding="UTF-7"?><r>`), []byte(d.Text+"</r>"))
			if back, err := scanText(enc); err != nil || back != d.Text {
				t.Errorf("%q written as %q reads back %q, %v", d.Text, enc, back, err)
			}
		}
	}
}

// A sample of each multi-byte charset decodes as libxml2 decodes it, and
// byte sequences it refuses are refused.
func TestMultiByteCharsetsMatchLibxml2(t *testing.T) {
	c := loadCharsets(t)
	probeDoc := func(t *testing.T, label string, body []byte) []byte {
		return append(append([]byte(`<?xml version="1.0" encoding="`+label+`"?><r>`), body...), "</r>"...)
	}
	for id, mc := range c.Multi {
		body, _ := hex.DecodeString(mc.Hex)
		got, err := scanText(probeDoc(t, mc.Label, body))
		if err != nil || got != mc.Text {
			t.Errorf("%s (%s): %q, %v; libxml2: %q", id, mc.Label, got, err, mc.Text)
		}
		for _, bad := range mc.Bad {
			b, _ := hex.DecodeString(bad.Hex)
			_, err := scanText(probeDoc(t, mc.Label, b))
			if (err == nil) != bad.Accepted {
				t.Errorf("%s: bytes %s: error %v; libxml2 accepts them: %v", mc.Label, bad.Hex, err, bad.Accepted)
			}
		}
	}
}

// The label table is libxml2's: names it knows resolve, others do not.
func TestEncodingLabels(t *testing.T) {
	c := loadCharsets(t)
	for label, id := range c.Labels {
		cs, ok := lookupLabel([]byte(strings.ToLower(label)))
		if !ok || (id == "csUndecodable") != (cs.kind == kUndecodable) {
			t.Errorf("%s: %v, %v; want %s", label, cs, ok, id)
		}
	}
	for _, l := range []string{"x-klingon", "csUTF8", "cswindows1252", "UTF-8 ", ""} {
		if _, ok := lookupLabel([]byte(l)); ok {
			t.Errorf("%q resolves; libxml2 does not know it", l)
		}
	}
}

// What appendix F and libxml2 decide for byte order marks, first bytes and
// declarations, on small documents.
func TestScannerEncodingDetection(t *testing.T) {
	in := func(e encoding.Encoding) func(string) []byte {
		return func(s string) []byte {
			b, err := e.NewEncoder().Bytes([]byte(s))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	u16le := in(unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM))
	u16be := in(unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM))
	u32le := in(utf32.UTF32(utf32.LittleEndian, utf32.IgnoreBOM))
	u32be := in(utf32.UTF32(utf32.BigEndian, utf32.IgnoreBOM))
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	decl := func(label string) string { return `<?xml version="1.0" encoding="` + label + `"?>` }
	const body = `<r a="é">x°€</r>`
	bomLE, bomBE, bom8 := []byte{0xFF, 0xFE}, []byte{0xFE, 0xFF}, []byte{0xEF, 0xBB, 0xBF}
	tests := []struct {
		name string
		doc  []byte
		enc  string // "" = refused
	}{
		{"UTF-16LE BOM", cat(bomLE, u16le(decl("UTF-16")+body)), "UTF-16LE"},
		{"UTF-16BE BOM", cat(bomBE, u16be(decl("UTF-16")+body)), "UTF-16BE"},
		{"UTF-16LE BOM, no declaration", cat(bomLE, u16le(body)), "UTF-16LE"},
		{"UTF-16LE by first bytes", u16le(decl("UTF-16LE") + body), "UTF-16LE"},
		{"UTF-16BE by first bytes", u16be(decl("utf-16be") + body), "UTF-16BE"},
		{"UTF-16LE BOM, declared UTF-8 (libxml2 keeps UTF-16)", cat(bomLE, u16le(decl("UTF-8")+body)), "UTF-16LE"},
		{"UTF-16LE BOM, declared UCS-2 (host order)", cat(bomLE, u16le(decl("UCS-2")+body)), "UCS-2LE"},
		{"UTF-16LE BOM, declared UCS-2, surrogates", cat(bomLE, u16le(decl("UCS-2")+body+"<!--𝛼-->")), ""},
		{"UTF-16LE BOM, declared UTF-16BE", cat(bomLE, u16le(decl("UTF-16BE")+body)), ""},
		{"UTF-16LE BOM, declared ISO-8859-1", cat(bomLE, u16le(decl("ISO-8859-1")+body)), ""},
		{"UTF-16LE BOM, declared x-klingon", cat(bomLE, u16le(decl("x-klingon")+body)), ""},
		{"UTF-16LE without BOM or declaration", u16le(body), ""},
		{"UTF-16LE odd trailing byte (ignored)", cat(bomLE, u16le(body), []byte{0x0A}), "UTF-16LE"},
		{"UTF-32LE BOM", cat([]byte{0xFF, 0xFE, 0, 0}, u32le(decl("UTF-32")+body)), "UTF-32LE"},
		{"UTF-32BE BOM", cat([]byte{0, 0, 0xFE, 0xFF}, u32be(decl("UTF-32")+body)), "UTF-32BE"},
		{"UTF-32LE by first bytes, no declaration", u32le(body), "UTF-32LE"},
		{"UTF-32BE, declared ISO-8859-1 (lxml keeps UTF-32)", u32be(decl("ISO-8859-1") + body), "UTF-32BE"},
		{"UTF-32LE, declared x-klingon", u32le(decl("x-klingon") + body), ""},
		{"UTF-32LE, code point above U+10FFFF", cat(u32le("<r>"), []byte{0, 0, 0x11, 0}, u32le("</r>")), ""},
		{"UTF-8 BOM, declared UTF-8", cat(bom8, []byte(decl("UTF-8")+body)), "UTF-8"},
		{"UTF-8 BOM, declared UTF-16", cat(bom8, []byte(decl("UTF-16")+body)), ""},
		{"UTF-8 BOM, declared ISO-8859-1 (the declaration wins)", cat(bom8, []byte(decl("ISO-8859-1")), []byte{'<', 'r', '>', 0xE9, '<', '/', 'r', '>'}), "ISO-8859-1"},
		{"UTF-8, declared UTF-16", []byte(decl("UTF-16") + body), ""},
		{"UTF-8, declared UTF-16LE", []byte(decl("UTF-16LE") + body), ""},
		{"UTF-8, declared UTF-32", []byte(decl("UTF-32") + body), ""},
		{"ASCII bytes declared IBM037", []byte(decl("IBM037") + "<r/>"), ""},
		{"declared UTF-7", []byte(decl("UTF-7") + "<r>+AOk-</r>"), "UTF-7"},
		{"declared UTF-7-IMAP (libxml2 knows it, no decoder here)", []byte(decl("UTF-7-IMAP") + "<r/>"), ""},
		{"declared TIS-620 (glibc's table)", []byte(decl("TIS-620") + "<r>\xA1</r>"), "TIS-620"},
		{"declared TIS-620, a byte glibc lacks", []byte(decl("TIS-620") + "<r>\xFF</r>"), ""},
		{"EBCDIC 500", ebcdic037(t, decl("IBM500")+"<r>é</r>"), "IBM500"},
		{"empty encoding name", []byte(decl("") + "<r/>"), ""},
		{"encoding name with a colon", []byte(decl("ISO_8859-1:1987") + "<r/>"), ""},
		{"encoding name starting with a digit", []byte(decl("8859_1") + "<r/>"), ""},
		{"glibc alias", []byte(decl("l1") + "<r>\xE9</r>"), "ISO-8859-1"},
		{"US-ASCII", []byte(decl("ascii") + "<r>&#233;</r>"), "US-ASCII"},
		{"US-ASCII with a high byte", []byte(decl("US-ASCII") + "<r>\xE9</r>"), ""},
		{"US-ASCII with a high byte in a name", []byte(decl("US-ASCII") + "<r\xE9/>"), ""},
		{"EBCDIC 037", ebcdic037(t, decl("IBM037")+"<r>é</r>"), "IBM037"},
		{"EBCDIC without a declared code page", ebcdic037(t, `<?xml version="1.0"?><r/>`), ""},
		{"EBCDIC declared ISO-8859-1", ebcdic037(t, decl("ISO-8859-1")+"<r/>"), ""},
		{"ISO-2022-JP", cat([]byte(decl("ISO-2022-JP")+"<r>"), []byte("\x1b$B$9$P$k\x1b(B"), []byte("</r>")), "ISO-2022-JP"},
		{"windows-1252 undefined byte", []byte(decl("windows-1252") + "<r>\x81</r>"), ""},
		{"ISO-8859-2 C1 control (glibc reads it)", []byte(decl("ISO-8859-2") + "<r>\x85</r>"), "ISO-8859-2"},
	}
	for _, tc := range tests {
		_, err := scanAll(tc.doc)
		s := NewScanner(tc.doc, 0)
		for {
			if _, e := s.Next(); e != nil {
				break
			}
		}
		switch {
		case tc.enc == "" && err == nil:
			t.Errorf("%s: accepted as %s; libxml2 refuses it", tc.name, s.Encoding())
		case tc.enc != "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.enc != "" && s.Encoding() != tc.enc:
			t.Errorf("%s: encoding %s, want %s", tc.name, s.Encoding(), tc.enc)
		}
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset > len(tc.doc) || se.Line < 1 {
				t.Errorf("%s: error %#v has no offset in the input", tc.name, err)
			}
		}
	}
}

func ebcdic037(t *testing.T, s string) []byte {
	b, err := charmap.CodePage037.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Error offsets and lines are the input's, in every encoding.
func TestScannerEncodedErrorPosition(t *testing.T) {
	doc := "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n<r>\n<a>é</b></r>"
	enc, _ := unicode.UTF16(unicode.LittleEndian, unicode.UseBOM).NewEncoder().Bytes([]byte(doc))
	_, err := scanAll(enc)
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("%v", err)
	}
	wantAt := 2 + 2*utf8.RuneCountInString(doc[:strings.Index(doc, "</b>")])
	if se.Line != 3 || se.Offset != wantAt {
		t.Errorf("error at line %d offset %d, want line 3 offset %d", se.Line, se.Offset, wantAt)
	}
	// An undecodable byte: its own offset, and the line it is on.
	sj := append([]byte("<?xml version=\"1.0\" encoding=\"Shift_JIS\"?>\n<r>\n\n"), 0x81, ' ', '<', '/', 'r', '>')
	_, err = scanAll(sj)
	if !errors.As(err, &se) || !errors.Is(err, ErrEncoding) || se.Offset != len(sj)-6 || se.Line != 4 {
		t.Errorf("bad Shift_JIS byte: %v (offset %d line %d), want offset %d line 4", err, se.Offset, se.Line, len(sj)-6)
	}
}

// Decode returns the characters of any document the Scanner reads, and the
// document itself when it is UTF-8.
func TestDecode(t *testing.T) {
	v := loadVerdicts(t)
	for _, n := range v.Variants {
		data, err := os.ReadFile(filepath.Join(encodingsDir, n.File))
		if err != nil {
			t.Fatal(err)
		}
		text, name, err := Decode(data)
		if n.Comet != "ack" {
			continue // may fail in the prolog or later
		}
		if err != nil {
			t.Errorf("%s: %v", n.File, err)
			continue
		}
		if !utf8.Valid(text) || !bytes.Contains(text, []byte(`<Param name="Loc_Error"`)) || !bytes.Contains(text, []byte("<voe:VOEvent")) {
			t.Errorf("%s (%s): decoded text lacks the notice", n.File, name)
		}
		if name == "UTF-8" && &text[len(text)-1] != &data[len(data)-1] {
			t.Errorf("%s: UTF-8 text was copied", n.File)
		}
	}
	if _, _, err := Decode([]byte(`<?xml version="1.0" encoding="US-ASCII"?><r>` + "\xE9</r>")); !errors.Is(err, ErrEncoding) {
		t.Errorf("US-ASCII with a high byte: %v", err)
	}
}

// The same document in any charset that can hold it scans to the same
// tokens as in UTF-8.
func TestScannerSameTokensInEveryEncoding(t *testing.T) {
	doc := `<voe:VOEvent xmlns:voe="urn:v" ivorn="ivo://x/y#z" a="1&amp;2 °"><What><Param name="p" value="19.83°"/>` +
		"<!-- c --><?pi d?>text &#233; <![CDATA[<cd>]]>\r\n</What></voe:VOEvent>"
	want, err := scanAll([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		label string
		enc   encoding.Encoding
		bom   []byte
	}{
		{"UTF-16", unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM), []byte{0xFF, 0xFE}},
		{"UTF-16", unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM), []byte{0xFE, 0xFF}},
		{"UTF-32", utf32.UTF32(utf32.LittleEndian, utf32.IgnoreBOM), nil},
		{"ISO-8859-1", charmap.ISO8859_1, nil},
		{"windows-1252", charmap.Windows1252, nil},
		{"ISO-8859-15", charmap.ISO8859_15, nil},
		{"Shift_JIS", japanese.ShiftJIS, nil},
		{"EUC-JP", japanese.EUCJP, nil},
		{"ISO-2022-JP", japanese.ISO2022JP, nil},
		{"EUC-KR", korean.EUCKR, nil},
		{"GB18030", simplifiedchinese.GB18030, nil},
	} {
		src := `<?xml version="1.0" encoding="` + tc.label + `"?>` + doc
		b, err := tc.enc.NewEncoder().Bytes([]byte(src))
		if err != nil {
			t.Fatalf("%s: %v", tc.label, err)
		}
		got, err := scanAll(append(append([]byte(nil), tc.bom...), b...))
		if err != nil {
			t.Errorf("%s: %v", tc.label, err)
			continue
		}
		if g, w := strings.Join(toStrings(got), "\n"), strings.Join(toStrings(want), "\n"); g != w {
			t.Errorf("%s: tokens\n%s\nwant\n%s", tc.label, g, w)
		}
	}
}

// The cost of a document in another encoding: decoding, then scanning.
func BenchmarkScannerUTF16(b *testing.B) {
	benchScan(b, filepath.Join(encodingsDir, "utf-16-bom-le.xml"))
}

func BenchmarkScannerShiftJIS(b *testing.B) {
	benchScan(b, filepath.Join(encodingsDir, "shift_jis.xml"))
}

func BenchmarkScannerLatin1(b *testing.B) {
	benchScan(b, filepath.Join(encodingsDir, "iso-8859-1.xml"))
}

// fuzzCharsets are the encodings FuzzScannerEncodings writes documents in.
var fuzzCharsets = []struct {
	label string
	enc   encoding.Encoding // nil: UTF-7 (appendUTF7)
	bom   []byte
}{
	{"UTF-16", unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM), []byte{0xFF, 0xFE}},
	{"UTF-16", unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM), []byte{0xFE, 0xFF}},
	{"UTF-16LE", unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM), nil},
	{"UTF-16BE", unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM), nil},
	{"UTF-32", utf32.UTF32(utf32.LittleEndian, utf32.IgnoreBOM), []byte{0xFF, 0xFE, 0, 0}},
	{"UTF-32BE", utf32.UTF32(utf32.BigEndian, utf32.IgnoreBOM), nil},
	{"ISO-8859-1", charmap.ISO8859_1, nil},
	{"windows-1252", charmap.Windows1252, nil},
	{"ISO-8859-15", charmap.ISO8859_15, nil},
	{"KOI8-R", charmap.KOI8R, nil},
	{"Windows-31J", japanese.ShiftJIS, nil},
	{"EUC-JP", japanese.EUCJP, nil},
	{"ISO-2022-JP", japanese.ISO2022JP, nil},
	{"EUC-KR", korean.EUCKR, nil},
	{"GB18030", simplifiedchinese.GB18030, nil},
	{"IBM037", charmap.CodePage037, nil},
	// glibc's tables (glibc_tables.go), EBCDIC ones after a first line of
	// spaces so that the document proper is in the declared code page.
	{"TIS-620", glibcEncoding("TIS-620"), nil},
	{"CP737", glibcEncoding("CP737"), nil},
	{"VISCII", glibcEncoding("VISCII"), nil},
	{"KOI8-T", glibcEncoding("KOI8-T"), nil},
	{"ARMSCII-8", glibcEncoding("ARMSCII-8"), nil},
	{"IBM500", glibcEncoding("IBM500"), nil},
	{"IBM273", glibcEncoding("IBM273"), nil},
	{"IBM1047", glibcEncoding("IBM1047"), nil},
	{"EBCDIC-CP-ROECE", glibcEncoding("EBCDIC-CP-ROECE"), nil},
	{"UTF-7", nil, nil},
}

func glibcEncoding(label string) encoding.Encoding {
	cs, ok := lookupLabel([]byte(label))
	if !ok || cs.kind != kSingle {
		panic(label + " is not a single-byte charset")
	}
	return cs.enc
}

// FuzzScannerEncodings: a document written in another encoding scans to
// exactly the tokens of its UTF-8 form (or both are refused), and every
// span decodes to its token.
func FuzzScannerEncodings(f *testing.F) {
	for i, s := range []string{
		`<r a="1 °">x&#233;<!--c--><?p?><![CDATA[y]]></r>`,
		`<a:r xmlns:a="urn:a"><b xmlns="urn:b" c="Ω"/>Москва</a:r>`,
		"<r>\r\n日本語 ｶﾀｶﾅ 𝛼</r>",
		`<r><x>€</x></y></r>`,
	} {
		f.Add(s, uint8(i))
	}
	f.Fuzz(func(t *testing.T, doc string, which uint8) {
		if !utf8.ValidString(doc) {
			return
		}
		cs := fuzzCharsets[int(which)%len(fuzzCharsets)]
		decl := `<?xml version="1.0" encoding="` + cs.label + `"?>`
		var body, text []byte
		if cs.enc == nil {
			body, text = appendUTF7(nil, []byte(decl+doc)), []byte(decl+doc)
		} else {
			enc := cs.enc
			if tcs, ok := lookupLabel([]byte(cs.label)); ok && tcs.ebcdic && tcs.hex != "" {
				if len(decl)-2 < ebcdicFirstLine {
					// The first line (45 bytes, which libxml2 reads in
					// EBCDIC-US) holds the declaration and spaces.
					decl += strings.Repeat(" ", ebcdicFirstLine-len(decl))
				} else {
					// The name ends past the first line: libxml2 reads on
					// in EBCDIC-US (up to a byte it lacks, which this
					// document has none of).
					enc = csEBCDICUS.enc
				}
			}
			var err error
			if body, err = enc.NewEncoder().Bytes([]byte(decl + doc)); err != nil {
				return // a character the charset lacks
			}
			// The UTF-8 form is what x/text's decoder makes of the bytes
			// (its encoders and decoders do not always round-trip, e.g.
			// GB18030's private use area).
			text, err = enc.NewDecoder().Bytes(body)
			if err != nil || !bytes.HasPrefix(text, []byte(decl)) ||
				bytes.Count(text, []byte("\uFFFD")) != strings.Count(decl+doc, "\uFFFD") {
				return // x/text replaced bytes it could not decode (which the scanner refuses)
			}
		}
		want, wantErr := scanAll(append([]byte(`<?xml version="1.0" encoding="UTF-8"?>`), text[len(decl):]...))
		data := append(append([]byte(nil), cs.bom...), body...)
		s := NewScanner(data, 0)
		var got []tok
		var gotErr error
		for {
			k, err := s.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				gotErr = err
				break
			}
			got = append(got, render(s, k))
			a, b := s.Span()
			if a < 0 || a > b || b > len(data) {
				t.Fatalf("%s: span [%d, %d) outside %d bytes", cs.label, a, b, len(data))
			}
		}
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("%s: error %v, in UTF-8 %v\n%q", cs.label, gotErr, wantErr, doc)
		}
		if gotErr != nil {
			var se *SyntaxError
			if !errors.As(gotErr, &se) || se.Offset < 0 || se.Offset > len(data) {
				t.Fatalf("%s: error %v without an offset in the input", cs.label, gotErr)
			}
			return
		}
		if g, w := strings.Join(toStrings(got), "\n"), strings.Join(toStrings(want), "\n"); g != w {
			t.Fatalf("%s: tokens\n%s\nin UTF-8\n%s", cs.label, g, w)
		}
		scanSpans(t, NewScanner(data, 0), data)
	})
}
