package signature

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/comet-go/comet/xmlsafe"
)

func addVectorSeeds(f *testing.F) {
	for _, doc := range vectorDocs {
		f.Add(vector(f, doc))
	}
	// Signed documents in other encodings (the comment is in the
	// document's encoding too).
	s := vectorSigner(f)
	for _, name := range encodedNotices {
		if signed, err := s.Sign(encodedNotice(f, name)); err == nil {
			f.Add(signed)
		}
	}
	f.Add([]byte("<a/><!--=====BEGIN PGP SIGNATURE=====\n\n=====END PGP SIGNATURE=====--><!--^^^^^BEGIN PGP SIGNATURE^^^^^\\^-->"))
	f.Add([]byte("<a/><!--^^^^^BEGIN PGP SIGNATURE^^^^^\n\niQ==\n^^^^^END PGP SIGNATURE^^^^^-->"))
}

// Blocks never panics, and every block it returns is armour starting with
// the BEGIN line and ending with a newline; spans lie inside the payload.
func FuzzBlocks(f *testing.F) {
	addVectorSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		blocks, err := Blocks(data)
		if err != nil {
			if blocks != nil {
				t.Fatal("blocks with an error")
			}
			return
		}
		for _, b := range blocks {
			if !bytes.HasPrefix(b.Armour, armourBegin) || b.Armour[len(b.Armour)-1] != '\n' {
				t.Fatalf("block %q", b.Armour)
			}
			if b.Offset < 0 || b.Offset >= len(data) {
				t.Fatalf("offset %d", b.Offset)
			}
			decodeArmour(b.Armour) // must not panic
		}
		a, b, err := Spans(data)
		if err != nil {
			t.Fatalf("Blocks accepted what Spans refuses: %v", err)
		}
		// Spans are bytes of the payload in its own encoding.
		enc := func(s string) []byte {
			e, err := xmlsafe.Encode(data, []byte(s))
			if err != nil {
				t.Fatalf("Spans accepted what Encode refuses: %v", err)
			}
			return e
		}
		_, name, _ := xmlsafe.Decode(data)
		stateful := name == "ISO-2022-JP" || name == "HZ-GB-2312" // a span may start with a shift sequence
		if len(a) < 3 || !stateful && (!bytes.HasPrefix(a, enc("<")) || !bytes.HasSuffix(a, enc(">"))) || !bytes.Contains(data, a) {
			t.Fatalf("span A %q", a)
		}
		if b != nil && (!stateful && !bytes.HasPrefix(b, enc("<?xml")) || !bytes.HasSuffix(b, a)) {
			t.Fatalf("span B %q", b)
		}
	})
}

// VerifyEvent and VerifyAny never panic, and return exactly one of a
// result and an error; anything accepted was signed by a vector key.
func FuzzVerify(f *testing.F) {
	addVectorSeeds(f)
	v := &Verifier{Trusted: ring(f, "author"), Others: ring(f, "notary", "listener"), Now: clock}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, check := range []func() (*Result, error){
			func() (*Result, error) { return v.VerifyEvent(data, authorIVORN) },
			func() (*Result, error) { return v.VerifyAny(data) },
		} {
			res, err := check()
			if (res == nil) == (err == nil) {
				t.Fatalf("result %+v with error %v", res, err)
			}
			if res != nil && res.Fingerprint != authorFpr && res.Fingerprint != notaryFpr {
				t.Fatalf("accepted a signature by %s", res.Fingerprint)
			}
			if err != nil && rank(err) == len(failureRank) && !isDocumentLevel(err) {
				t.Fatalf("error without a reason: %v", err)
			}
		}
	})
}

func isDocumentLevel(err error) bool {
	for _, e := range []error{ErrDocument, ErrUnsigned, ErrTooManySignatures} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// FuzzSignaturePacket feeds arbitrary signature packets, armoured and put
// into a well-formed signed event, to the verifier: the path where go-crypto
// parses hostile bytes.
func FuzzSignaturePacket(f *testing.F) {
	for _, doc := range []string{"event-signed-author.xml", "event-signed-notary.xml", "authenticate-signed-listener.xml"} {
		blocks, err := Blocks(vector(f, doc))
		if err != nil {
			f.Fatal(err)
		}
		_, body, _, err := decodeArmour(blocks[0].Armour)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	unsigned := vector(f, "event-unsigned.xml")
	v := &Verifier{Trusted: ring(f, "author"), Others: ring(f, "notary", "listener"), Now: clock}
	f.Fuzz(func(t *testing.T, body []byte) {
		var buf bytes.Buffer
		w, err := armor.Encode(&buf, "PGP SIGNATURE", nil)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(body)
		w.Close()
		res, err := v.VerifyEvent(Append(unsigned, buf.Bytes()), authorIVORN)
		if (res == nil) == (err == nil) {
			t.Fatalf("result %+v with error %v", res, err)
		}
		if err != nil && rank(err) == len(failureRank) {
			t.Fatalf("error without a reason: %v", err)
		}
	})
}
