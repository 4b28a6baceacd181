package signature

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comet-go/comet/internal/gpgtest"
	"github.com/comet-go/comet/xmlsafe"
)

// encodedNotices are real notices in other encodings (testdata/encodings).
var encodedNotices = []string{
	"utf-16-bom-le.xml", "utf-16-bom-be.xml", "utf-16le.xml", "utf-32-bom-le.xml", "utf-32be.xml",
	"iso-8859-15.xml", "shift_jis.xml", "iso-2022-jp.xml", "gb18030.xml", "ibm037.xml", "utf-8-bom.xml",
}

func encodedNotice(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "encodings", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A document in any encoding: the signature covers the root element's
// bytes as received (UTF-16 code units for UTF-16), the comment that
// carries it is written in the document's encoding so the document stays
// well-formed, and the verifier reads the armour from the decoded comment.
func TestSignEncodedDocuments(t *testing.T) {
	s := vectorSigner(t)
	v := &Verifier{Trusted: ring(t, "author"), Now: clock}
	for _, name := range encodedNotices {
		t.Run(name, func(t *testing.T) {
			payload := encodedNotice(t, name)
			signed, err := s.Sign(payload)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(signed, payload) {
				t.Fatal("Sign altered the payload")
			}
			text, enc, err := xmlsafe.Decode(signed)
			if err != nil {
				t.Fatalf("signed document: %v", err)
			}
			if !bytes.Contains(text, []byte("</voe:VOEvent>\n<!--\n=====BEGIN PGP SIGNATURE=====\n")) {
				t.Fatalf("%s: the decoded document does not end with the signature comment", enc)
			}
			// The appended bytes are the comment in the document's encoding.
			_, dec, _ := xmlsafe.Decode(payload)
			tail, err := xmlsafe.Encode(payload, text[bytes.LastIndex(text, []byte("<!--")):])
			if err != nil || !bytes.Equal(signed[len(payload):], tail) || dec != enc {
				t.Fatalf("%s: appended % X..., want the comment in %s", enc, signed[len(payload):len(payload)+8], dec)
			}
			a, _, err := Spans(signed)
			if err != nil {
				t.Fatal(err)
			}
			if ra, _, _ := Spans(payload); !bytes.Equal(a, ra) {
				t.Fatal("span A moved when the signature was appended")
			}
			res, err := v.VerifyAny(signed)
			if err != nil || res.Span != SpanRoot || res.Fingerprint != authorFpr {
				t.Fatalf("%+v, %v", res, err)
			}
			blocks, err := Blocks(signed)
			if err != nil || len(blocks) != 1 {
				t.Fatalf("%d blocks, %v", len(blocks), err)
			}
			delim, _ := xmlsafe.Encode(payload, equalsBegin)
			if !bytes.HasPrefix(signed[blocks[0].Offset:], delim) {
				t.Errorf("block offset %d is not at the BEGIN delimiter", blocks[0].Offset)
			}
			// One changed byte inside the root breaks it.
			i := bytes.Index(signed, mustEncode(t, payload, "537755817"))
			tampered := bytes.Clone(signed)
			tampered[i+len(delim)/len(equalsBegin)-1]++
			if _, err := v.VerifyAny(tampered); err == nil {
				t.Fatal("tampered root verified")
			}
		})
	}
}

func mustEncode(t *testing.T, doc []byte, s string) []byte {
	b, err := xmlsafe.Encode(doc, []byte(s))
	if err != nil || len(b) == 0 {
		t.Fatal(err)
	}
	return b
}

// The envelope of a UTF-16 document with GnuPG: gpg verifies what we sign
// over the UTF-16 bytes of the root element, and we verify what gpg signs.
func TestGPGEncodedDocuments(t *testing.T) {
	h := gpgtest.New(t)
	h.Run(vector(t, "author.pub.asc"), "--import")
	s, err := LoadSigner(filepath.Join(vectorDir, "author.sec.asc"), authorFpr, filepath.Join(vectorDir, "passphrase.txt"))
	if err != nil {
		t.Fatal(err)
	}
	const uid = "ivo://example.org/gpgauthor"
	fpr := h.GenKey(uid, "ed25519")
	for _, name := range []string{"utf-16-bom-le.xml", "utf-32be.xml", "shift_jis.xml"} {
		payload := encodedNotice(t, name)
		signed, err := s.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		a, _, err := Spans(signed)
		if err != nil {
			t.Fatal(err)
		}
		blocks, err := Blocks(signed)
		if err != nil || len(blocks) != 1 {
			t.Fatalf("%s: %v %d", name, err, len(blocks))
		}
		status, err := h.Verify(blocks[0].Armour, a)
		if err != nil || !strings.Contains(status, "[GNUPG:] GOODSIG") || !strings.Contains(status, "VALIDSIG "+authorFpr) {
			t.Fatalf("%s: gpg --verify: %v\n%s", name, err, status)
		}
		byGPG := Append(payload, signSpan(t, h, fpr, payload))
		res, err := (&Verifier{Trusted: exported(t, h, fpr)}).VerifyAny(byGPG)
		if err != nil || res.Fingerprint != fpr {
			t.Fatalf("%s: %+v, %v", name, res, err)
		}
		if _, err := (&Verifier{Trusted: ring(t, "author")}).VerifyAny(byGPG); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("%s: got %v", name, err)
		}
	}
}
