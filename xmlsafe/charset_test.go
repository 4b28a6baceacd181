package xmlsafe

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
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

// knownDifferences are documents Comet parses and this package refuses, on
// purpose (README.md, "Behaviour worth knowing").
var knownDifferences = map[string]string{
	"utf-7.xml": "UTF-7 has no decoder in x/text",
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
			if why, ok := knownDifferences[n.File]; ok {
				if err == nil || !errors.Is(err, ErrEncoding) {
					t.Fatalf("%s: got %v, want an encoding error (a known difference: %s)", n.What, err, why)
				}
				return
			}
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
		if got := decodeSpan(t, s, raw[a:b]); !bytes.Equal(got, want) {
			t.Fatalf("token %d: span [%d, %d) decodes to %q, want %q", n, a, b, got, want)
		}
	}
	if a, b, ok := s.Declaration(); ok {
		if got := decodeSpan(t, s, raw[a:b]); !bytes.HasPrefix(got, []byte("<?xml ")) || !bytes.HasSuffix(got, []byte("?>")) {
			t.Fatalf("declaration span [%d, %d) decodes to %q", a, b, got)
		}
	}
	return n, nil
}

func decodeSpan(t *testing.T, s *Scanner, b []byte) []byte {
	t.Helper()
	if s.cs == nil {
		return b
	}
	var tr transcoder
	tr.reset(0)
	if err := tr.decode(b, s.cs, s.cs == csUTF16BE || s.cs == csUTF32BE || s.cs == csUCS2BE); err != nil {
		t.Fatalf("span % X does not decode: %v", b[:min(len(b), 16)], err)
	}
	return tr.text
}

// charsets is testdata/encodings/charsets.json.
type charsets struct {
	Labels map[string]string
	Single map[string]struct {
		Label  string
		EBCDIC bool
		Bytes  map[string]int
	}
	Multi map[string]struct {
		Label, Hex, Text string
		Bad              []struct {
			Hex      string
			Accepted bool
		}
	}
}

func loadCharsets(t testing.TB) charsets {
	var c charsets
	readJSON(t, "charsets.json", &c)
	return c
}

// probeDoc is the document the generator probed a charset with.
func probeDoc(t *testing.T, label string, ebcdicCP *charset, body []byte) []byte {
	head := []byte(`<?xml version="1.0" encoding="` + label + `"?><r>`)
	tail := []byte("</r>")
	if ebcdicCP != nil {
		enc := ebcdicCP.enc.NewEncoder()
		var err error
		if head, err = enc.Bytes(head); err != nil {
			t.Fatal(err)
		}
		if tail, err = enc.Bytes(tail); err != nil {
			t.Fatal(err)
		}
	}
	return append(append(append([]byte(nil), head...), body...), tail...)
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

// ebcdicQuirks: libxml2 2.9.14 reads this byte of an IBM1047 document as
// IBM037 does, though glibc's IBM1047 (iconv -f IBM1047) reads "^", as
// x/text does.
var ebcdicQuirks = map[string]string{
	"IBM1047:5F": "libxml2 reads U+00AC, iconv and x/text U+005E",
}

// Every byte of every single-byte charset decodes as libxml2 (glibc's
// iconv) decodes it, or is refused where it refuses it.
func TestSingleByteCharsetsMatchLibxml2(t *testing.T) {
	c := loadCharsets(t)
	if len(c.Single) < 40 {
		t.Fatalf("only %d single-byte charsets", len(c.Single))
	}
	for id, sc := range c.Single {
		cs, ok := lookupLabel([]byte(sc.Label))
		if !ok || cs.kind != kSingle {
			t.Errorf("%s: label %s does not name a single-byte charset", id, sc.Label)
			continue
		}
		var ebcdicCP *charset
		if sc.EBCDIC {
			ebcdicCP = cs
		}
		for hx, want := range sc.Bytes {
			if why, ok := ebcdicQuirks[sc.Label+":"+hx]; ok {
				t.Logf("%s byte %s: %s", sc.Label, hx, why)
				continue
			}
			b, _ := strconv.ParseUint(hx, 16, 8)
			got, err := scanText(probeDoc(t, sc.Label, ebcdicCP, []byte{byte(b)}))
			switch {
			case want < 0 && err == nil:
				t.Errorf("%s: byte %s reads as %q; libxml2 refuses it", sc.Label, hx, got)
			case want >= 0 && (err != nil || got != string(rune(want))):
				t.Errorf("%s: byte %s reads as %q (%v); libxml2 reads U+%04X", sc.Label, hx, got, err, want)
			}
		}
	}
}

// A sample of each multi-byte charset decodes as libxml2 decodes it, and
// byte sequences it refuses are refused.
func TestMultiByteCharsetsMatchLibxml2(t *testing.T) {
	c := loadCharsets(t)
	for id, mc := range c.Multi {
		body, _ := hex.DecodeString(mc.Hex)
		got, err := scanText(probeDoc(t, mc.Label, nil, body))
		if err != nil || got != mc.Text {
			t.Errorf("%s (%s): %q, %v; libxml2: %q", id, mc.Label, got, err, mc.Text)
		}
		for _, bad := range mc.Bad {
			b, _ := hex.DecodeString(bad.Hex)
			_, err := scanText(probeDoc(t, mc.Label, nil, b))
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
		{"declared UTF-7 (libxml2 knows it, no decoder here)", []byte(decl("UTF-7") + "<r/>"), ""},
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
		if _, diff := knownDifferences[n.File]; diff || n.Comet != "ack" {
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
	enc   encoding.Encoding
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
		body, err := cs.enc.NewEncoder().Bytes([]byte(decl + doc))
		if err != nil {
			return // a character the charset lacks
		}
		// The UTF-8 form is what x/text's decoder makes of the bytes (its
		// encoders and decoders do not always round-trip, e.g. GB18030's
		// private use area).
		text, err := cs.enc.NewDecoder().Bytes(body)
		if err != nil || !bytes.HasPrefix(text, []byte(decl)) ||
			bytes.Count(text, []byte("\uFFFD")) != strings.Count(decl+doc, "\uFFFD") {
			return // x/text replaced bytes it could not decode (which the scanner refuses)
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
