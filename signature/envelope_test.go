package signature

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/voevent"
)

var vectorDocs = []string{
	"event-unsigned.xml",
	"event-signed-author.xml",
	"event-signed-author-caret.xml",
	"event-signed-notary.xml",
	"event-signed-twice.xml",
	"event-signed-author-tampered.xml",
	"event-signed-author-declspan.xml",
	"authenticate-signed-listener.xml",
}

// docs/openpgp.md §2 and the README: span A of event-unsigned.xml is bytes
// 106..470 inclusive; span B is bytes 0..37 followed by span A.
func TestSpansVector(t *testing.T) {
	data := vector(t, "event-unsigned.xml")
	a, b, err := Spans(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 365 || &a[0] != &data[106] || cap(a) != len(a) {
		t.Fatalf("span A: %d bytes at offset %d, cap %d; want the sub-slice data[106:471]", len(a), bytes.Index(data, a), cap(a))
	}
	if sum := sha1.Sum(a); hex.EncodeToString(sum[:]) != "3151b7125c7bb505aa9b4123411ab49731d54c24" {
		t.Fatalf("span A SHA-1 %x", sum)
	}
	want := append(append([]byte{}, data[0:38]...), data[106:471]...)
	if !bytes.Equal(b, want) {
		t.Fatalf("span B:\n%s\nwant:\n%s", b, want)
	}
	// Every signed vector has the same span A (signatures sit outside it),
	// except the tampered one.
	for _, doc := range vectorDocs[1:5] {
		a2, _, err := Spans(vector(t, doc))
		if err != nil || !bytes.Equal(a2, a) {
			t.Errorf("%s: span A differs (%v)", doc, err)
		}
	}
}

// Spans and voevent.Inspect (which the broker's de-duplication uses) agree
// on the root element's span.
func TestSpansAgreeWithInspect(t *testing.T) {
	for _, doc := range vectorDocs {
		data := vector(t, doc)
		info, err := voevent.Inspect(data, voevent.Options{})
		if err != nil {
			t.Fatal(err)
		}
		a, _, err := Spans(data)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, data[info.RootStart:info.RootEnd]) {
			t.Errorf("%s: Spans and Inspect disagree", doc)
		}
	}
}

func TestSpans(t *testing.T) {
	const decl = `<?xml version="1.0" encoding="UTF-8"?>`
	for _, tc := range []struct {
		name, doc string
		a, b      string // b "" = no span B
	}{
		{"prefixed", decl + "\n<p:r xmlns:p='u'>x</p:r>\n", "<p:r xmlns:p='u'>x</p:r>", decl + "<p:r xmlns:p='u'>x</p:r>"},
		{"unprefixed", decl + "\n<r xmlns='u'>x</r>\n", "<r xmlns='u'>x</r>", ""},
		{"no-declaration", "<p:r xmlns:p='u'>x</p:r>", "<p:r xmlns:p='u'>x</p:r>", ""},
		{"empty-root", decl + "<p:r xmlns:p='u'/>", "<p:r xmlns:p='u'/>", decl + "<p:r xmlns:p='u'/>"},
		{"bom", "\xEF\xBB\xBF" + decl + "<p:r xmlns:p='u'/>", "<p:r xmlns:p='u'/>", decl + "<p:r xmlns:p='u'/>"},
		{"single-quotes", `<?xml version='1.0'?><p:r xmlns:p="u"/>`, `<p:r xmlns:p="u"/>`, `<?xml version='1.0'?><p:r xmlns:p="u"/>`},
		{"stylesheet-pi-is-no-declaration", `<?xml-stylesheet href="a"?><p:r xmlns:p="u"/>`, `<p:r xmlns:p="u"/>`, ""},
		// Markup-like text before and inside the root cannot move the span.
		{"decoys", decl + "<!-- <p:r xmlns:p='u'>fake</p:r> --><?pi <p:r>?>\n<p:r xmlns:p='u' a='&lt;/p:r>'><![CDATA[</p:r>]]><!-- </p:r> --></p:r>\n<!-- </p:r> -->",
			"<p:r xmlns:p='u' a='&lt;/p:r>'><![CDATA[</p:r>]]><!-- </p:r> --></p:r>",
			decl + "<p:r xmlns:p='u' a='&lt;/p:r>'><![CDATA[</p:r>]]><!-- </p:r> --></p:r>"},
		{"crlf", decl + "\r\n<p:r xmlns:p='u'>\r\n</p:r>\r\n", "<p:r xmlns:p='u'>\r\n</p:r>", decl + "<p:r xmlns:p='u'>\r\n</p:r>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, err := Spans([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if string(a) != tc.a {
				t.Errorf("A = %q, want %q", a, tc.a)
			}
			if string(b) != tc.b || (tc.b == "") != (b == nil) {
				t.Errorf("B = %q, want %q", b, tc.b)
			}
		})
	}
}

func TestSpansNotWellFormed(t *testing.T) {
	for _, doc := range []string{"", "x", "<a>", "<a></b>", "<a/>junk", "<a/><!-- a -- b -->"} {
		if _, _, err := Spans([]byte(doc)); !errors.Is(err, ErrDocument) {
			t.Errorf("%q: got %v, want %v", doc, err, ErrDocument)
		}
	}
}

func TestBlocksVectors(t *testing.T) {
	counts := map[string]struct {
		n   int
		esc Escaping
	}{
		"event-unsigned.xml":               {0, 0},
		"event-signed-author.xml":          {1, EscapeEquals},
		"event-signed-author-caret.xml":    {1, EscapeCaret},
		"event-signed-notary.xml":          {1, EscapeEquals},
		"event-signed-twice.xml":           {2, EscapeEquals},
		"authenticate-signed-listener.xml": {1, EscapeEquals},
	}
	for doc, want := range counts {
		data := vector(t, doc)
		blocks, err := Blocks(data)
		if err != nil {
			t.Fatal(err)
		}
		if len(blocks) != want.n {
			t.Fatalf("%s: %d blocks, want %d", doc, len(blocks), want.n)
		}
		for _, b := range blocks {
			if b.Escaping != want.esc || !bytes.HasPrefix(b.Armour, armourBegin) || !bytes.HasSuffix(b.Armour, []byte("-----END PGP SIGNATURE-----\n")) {
				t.Errorf("%s: block %+v", doc, b)
			}
			if !bytes.HasPrefix(data[b.Offset:], equalsBegin) && !bytes.HasPrefix(data[b.Offset:], caretBegin) {
				t.Errorf("%s: offset %d is not at a BEGIN delimiter", doc, b.Offset)
			}
		}
	}
	// The caret vector holds the same signature as the "=====" one.
	eq, _ := Blocks(vector(t, "event-signed-author.xml"))
	ca, _ := Blocks(vector(t, "event-signed-author-caret.xml"))
	if !bytes.Equal(eq[0].Armour, ca[0].Armour) {
		t.Fatalf("unescaped armours differ:\n%s\n%s", eq[0].Armour, ca[0].Armour)
	}
	// "=====" unescaping leaves the CRC line alone.
	if !bytes.Contains(eq[0].Armour, []byte("\n=Thcj\n")) {
		t.Fatalf("CRC line lost:\n%s", eq[0].Armour)
	}
}

func TestBlocksPlacement(t *testing.T) {
	const eqBlock = "=====BEGIN PGP SIGNATURE=====\n\nAAAA\n=====END PGP SIGNATURE====="
	const caBlock = "^^^^^BEGIN PGP SIGNATURE^^^^^\nComment: a^b \\^ c\n\nBBBB\n^^^^^END PGP SIGNATURE^^^^^"
	doc := "<!--" + eqBlock + "-->" + // before the root: ignored
		"<r><!--" + eqBlock + "--></r>" + // inside the root (signed content): ignored
		"<!--\n" + caBlock + "\n" + eqBlock + "\n-->" + // two blocks in one comment
		"<!-- just a comment -->" +
		"<!--" + strings.Replace(eqBlock, "=====END PGP SIGNATURE=====", "", 1) + "-->" // truncated
	blocks, err := Blocks([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 3 {
		t.Fatalf("%d blocks: %+v", len(blocks), blocks)
	}
	want := []string{
		"-----BEGIN PGP SIGNATURE-----\nComment: a-b ^ c\n\nBBBB\n-----END PGP SIGNATURE-----\n",
		"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n",
		"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n",
	}
	for i, b := range blocks {
		if string(b.Armour) != want[i] {
			t.Errorf("block %d = %q, want %q", i, b.Armour, want[i])
		}
	}
	if blocks[0].Escaping != EscapeCaret || blocks[1].Escaping != EscapeEquals {
		t.Errorf("escapings %v %v", blocks[0].Escaping, blocks[1].Escaping)
	}
}

// Append reproduces the vectors byte for byte from the unsigned event and
// the armour Blocks extracts: the comment layout matches docs/openpgp.md §3.
func TestAppendReproducesVectors(t *testing.T) {
	unsigned := vector(t, "event-unsigned.xml")
	author, _ := Blocks(vector(t, "event-signed-author.xml"))
	notary, _ := Blocks(vector(t, "event-signed-notary.xml"))
	if got := Append(unsigned, author[0].Armour); !bytes.Equal(got, vector(t, "event-signed-author.xml")) {
		t.Fatalf("Append:\n%s", got)
	}
	if got := Append(Append(unsigned, author[0].Armour), notary[0].Armour); !bytes.Equal(got, vector(t, "event-signed-twice.xml")) {
		t.Fatalf("Append twice:\n%s", got)
	}
}

func TestAppend(t *testing.T) {
	armour := "-----BEGIN PGP SIGNATURE-----\nVersion: GnuPG v2 -- with dashes\nComment: x\n\nAAAA\n=abcd\n-----END PGP SIGNATURE-----"
	// The payload has spare capacity that Append must not write into.
	payload := make([]byte, 0, 64)
	payload = append(payload, "<a/>"...)
	spare := payload[:cap(payload)]
	for i := len(payload); i < len(spare); i++ {
		spare[i] = 'x'
	}
	got := Append(payload, []byte(armour))
	want := "<a/><!--\n=====BEGIN PGP SIGNATURE=====\n\nAAAA\n=abcd\n=====END PGP SIGNATURE=====\n\n-->"
	if string(got) != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if string(payload) != "<a/>" || strings.Trim(string(spare[len(payload):]), "x") != "" {
		t.Fatal("Append altered the payload's backing array")
	}
	// A payload ending in LF gets the comment on a new line.
	if got := Append([]byte("<a/>\n"), []byte(armour+"\n\n")); !bytes.HasPrefix(got, []byte("<a/>\n<!--\n=====BEGIN")) || !bytes.HasSuffix(got, []byte("=====\n\n-->")) {
		t.Fatalf("got %q", got)
	}
	// The result is well-formed and yields the armour (without headers).
	blocks, err := Blocks(got)
	if err != nil || len(blocks) != 1 {
		t.Fatalf("%v %+v", err, blocks)
	}
	if want := "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n=abcd\n-----END PGP SIGNATURE-----\n"; string(blocks[0].Armour) != want {
		t.Fatalf("round trip %q", blocks[0].Armour)
	}
}

// A relay can append one huge comment packed with delimiters: finding the
// blocks stays linear, and verification stops counting after MaxBlocks.
func TestManyDelimiters(t *testing.T) {
	const n = 50000
	doc := append(vector(t, "event-unsigned.xml"), "<!--"...)
	doc = append(doc, strings.Repeat("=====BEGIN PGP SIGNATURE=====\n=====END PGP SIGNATURE=====\n", n)...)
	doc = append(doc, "^^^^^BEGIN PGP SIGNATURE^^^^^-->"...)
	start := time.Now()
	blocks, err := Blocks(doc)
	if err != nil || len(blocks) != n+1 {
		t.Fatalf("%d blocks, %v", len(blocks), err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Blocks took %v", d)
	}
	v := &Verifier{Trusted: ring(t, "author"), Now: clock}
	if _, err := v.VerifyEvent(doc, authorIVORN); !errors.Is(err, ErrTooManySignatures) {
		t.Fatalf("got %v", err)
	}
}
