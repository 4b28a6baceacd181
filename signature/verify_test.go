package signature

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// outcome is one cell of the README's expected-outcome tables: accept (by
// signer, vouched for by trustedBy, over span) or reject with err.
type outcome struct {
	err       error
	signer    string
	trustedBy string
	span      Span
}

func accept(signer, trustedBy string, span Span) outcome {
	return outcome{signer: signer, trustedBy: trustedBy, span: span}
}
func reject(err error) outcome { return outcome{err: err} }

func (o outcome) check(t *testing.T, res *Result, err error) {
	t.Helper()
	if o.err != nil {
		if !errors.Is(err, o.err) {
			t.Fatalf("got %+v, %v; want rejection %q", res, err, o.err)
		}
		if res != nil {
			t.Fatalf("result %+v with error %v", res, err)
		}
		t.Logf("refused: %v", err)
		return
	}
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if res.Fingerprint != o.signer || res.TrustedBy != o.trustedBy || res.Span != o.span {
		t.Fatalf("got %+v; want signer %s trusted by %s over %v", res, o.signer, o.trustedBy, o.span)
	}
}

// TestVectorSenderAuthentication is the first table of
// testdata/openpgp/README.md, column by column. Others holds every vector
// key, so that the notary's (untrusted) key can be found; reasons are
// checked as well as accept/reject.
func TestVectorSenderAuthentication(t *testing.T) {
	columns := []struct {
		name     string
		trusted  []string
		identity bool // VerifyEvent; false = identity rule off (VerifyAny)
	}{
		{"trusted={author}", []string{"author"}, true},
		{"trusted={notary}", []string{"notary"}, true},
		{"trusted={}", nil, true},
		{"trusted={author},identity-rule-off", []string{"author"}, false},
	}
	rows := []struct {
		doc  string
		want [4]outcome
	}{
		{"event-unsigned.xml", [4]outcome{reject(ErrUnsigned), reject(ErrUnsigned), reject(ErrUnsigned), reject(ErrUnsigned)}},
		{"event-signed-author.xml", [4]outcome{
			accept(authorFpr, authorFpr, SpanRoot), reject(ErrUntrusted), reject(ErrUntrusted), accept(authorFpr, authorFpr, SpanRoot)}},
		{"event-signed-author-caret.xml", [4]outcome{
			accept(authorFpr, authorFpr, SpanRoot), reject(ErrUntrusted), reject(ErrUntrusted), accept(authorFpr, authorFpr, SpanRoot)}},
		{"event-signed-notary.xml", [4]outcome{
			accept(notaryFpr, authorFpr, SpanRoot), reject(ErrIdentityMismatch), reject(ErrUntrusted), accept(notaryFpr, authorFpr, SpanRoot)}},
		{"event-signed-twice.xml", [4]outcome{
			accept(authorFpr, authorFpr, SpanRoot), reject(ErrIdentityMismatch), reject(ErrUntrusted), accept(authorFpr, authorFpr, SpanRoot)}},
		{"event-signed-author-tampered.xml", [4]outcome{
			reject(ErrBadSignature), reject(ErrBadSignature), reject(ErrBadSignature), reject(ErrBadSignature)}},
		// Accepted because the verifier also tries span B.
		{"event-signed-author-declspan.xml", [4]outcome{
			accept(authorFpr, authorFpr, SpanDeclRoot), reject(ErrUntrusted), reject(ErrUntrusted), accept(authorFpr, authorFpr, SpanDeclRoot)}},
	}
	others := allKeys(t)
	for ci, col := range columns {
		v := &Verifier{Trusted: ring(t, col.trusted...), Others: others, Now: clock}
		for _, row := range rows {
			t.Run(col.name+"/"+row.doc, func(t *testing.T) {
				payload := vector(t, row.doc)
				var res *Result
				var err error
				if col.identity {
					res, err = v.VerifyEvent(payload, authorIVORN)
				} else {
					res, err = v.VerifyAny(payload)
				}
				row.want[ci].check(t, res, err)
			})
		}
	}
}

// TestVectorSubscriberAuthentication is the README's second table.
func TestVectorSubscriberAuthentication(t *testing.T) {
	payload := vector(t, "authenticate-signed-listener.xml")
	for _, tc := range []struct {
		trusted string
		want    outcome
	}{
		{"listener", accept(listenerFpr, listenerFpr, SpanRoot)},
		{"author", reject(ErrUntrusted)},
	} {
		t.Run("trusted="+tc.trusted, func(t *testing.T) {
			v := &Verifier{Trusted: ring(t, tc.trusted), Others: allKeys(t), Now: clock}
			res, err := v.VerifyAny(payload)
			tc.want.check(t, res, err)
		})
	}
}

func TestResultDetails(t *testing.T) {
	v := &Verifier{Trusted: ring(t, "author"), Others: allKeys(t), Now: clock}
	res, err := v.VerifyEvent(vector(t, "event-signed-notary.xml"), authorIVORN)
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Fingerprint: notaryFpr, UserID: "Example Notary <notary@example.org>", TrustedBy: authorFpr, Span: SpanRoot, Block: 0}
	if *res != want {
		t.Fatalf("got %+v, want %+v", *res, want)
	}
}

// The reasons are meant for a nak's Result text: they must name who signed
// and what was expected.
func TestRefusalTexts(t *testing.T) {
	others := allKeys(t)
	for _, tc := range []struct {
		name    string
		trusted *Keyring
		others  *Keyring
		doc     string
		author  string
		want    []string
	}{
		{"mismatch", ring(t, "notary"), others, "event-signed-notary.xml", authorIVORN,
			[]string{"signer identity does not match AuthorIVORN", notaryFpr, `"Example Notary <notary@example.org>"`, `"ivo://example.org/author"`}},
		{"mismatch-certified", ring(t, "author"), others, "event-signed-author.xml", "ivo://example.org/someone-else",
			[]string{"does not match", `"ivo://example.org/author"`, `"ivo://example.org/someone-else"`}},
		{"no-author", ring(t, "author"), others, "event-signed-author.xml", "",
			[]string{"no AuthorIVORN"}},
		{"untrusted", nil, others, "event-signed-author.xml", authorIVORN,
			[]string{"untrusted signer", authorFpr, "not trusted"}},
		{"unknown", ring(t, "author"), nil, "event-signed-notary.xml", authorIVORN,
			[]string{"unknown key", notaryFpr}},
		{"tampered", ring(t, "author"), others, "event-signed-author-tampered.xml", authorIVORN,
			[]string{"bad signature", authorFpr, "does not verify"}},
		{"unsigned", ring(t, "author"), others, "event-unsigned.xml", authorIVORN,
			[]string{"no signature"}},
		{"twice-best-reason", ring(t, "notary"), others, "event-signed-twice.xml", authorIVORN,
			[]string{"signer identity does not match", "signature 2 of 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &Verifier{Trusted: tc.trusted, Others: tc.others, Now: clock}
			_, err := v.VerifyEvent(vector(t, tc.doc), tc.author)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
		})
	}
}

// Without Others the notary's key cannot be found.
func TestNotaryKeyMustBeKnown(t *testing.T) {
	v := &Verifier{Trusted: ring(t, "author"), Now: clock}
	_, err := v.VerifyEvent(vector(t, "event-signed-notary.xml"), authorIVORN)
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("got %v, want %v", err, ErrUnknownKey)
	}
	// The notary's key in Trusted instead: found, but its own name is not
	// the author's, and the author's certification does not count since
	// the author is not trusted.
	v = &Verifier{Trusted: ring(t, "notary"), Now: clock}
	if _, err := v.VerifyEvent(vector(t, "event-signed-notary.xml"), authorIVORN); !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("got %v, want %v", err, ErrIdentityMismatch)
	}
}

// The declaration-span signature verifies only over span B: without the
// declaration (or with an unprefixed root) there is no span B.
func TestDeclSpanNeedsDeclaration(t *testing.T) {
	doc := vector(t, "event-signed-author-declspan.xml")
	v := &Verifier{Trusted: ring(t, "author"), Now: clock}
	stripped := doc[bytes.Index(doc, []byte("?>"))+2:]
	if _, err := v.VerifyEvent(stripped, authorIVORN); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("got %v, want %v", err, ErrBadSignature)
	}
	// A different declaration is different bytes.
	other := append([]byte(`<?xml version="1.0"?>`), stripped...)
	if _, err := v.VerifyEvent(other, authorIVORN); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("got %v, want %v", err, ErrBadSignature)
	}
}

// Comments outside the root are not signed: adding, editing or removing
// them keeps the signature valid; whitespace inside the root does not.
func TestUnsignedRegions(t *testing.T) {
	v := &Verifier{Trusted: ring(t, "author"), Now: clock}
	doc := vector(t, "event-signed-author.xml")
	edited := bytes.Replace(doc, []byte("This comment precedes"), []byte("This edited comment precedes"), 1)
	edited = append(edited, "\n<!-- relayed by ivo://example.org/broker -->\n"...)
	if _, err := v.VerifyEvent(edited, authorIVORN); err != nil {
		t.Fatalf("edited comments: %v", err)
	}
	inside := bytes.Replace(doc, []byte("<Who>"), []byte("<Who> "), 1)
	if _, err := v.VerifyEvent(inside, authorIVORN); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("whitespace inside the root: got %v", err)
	}
}

func TestBlockLimit(t *testing.T) {
	doc := vector(t, "event-signed-author.xml")
	blocks, err := Blocks(doc)
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Trusted: ring(t, "author"), Now: clock}
	// MaxBlocks blocks, the good one last: accepted.
	unsigned := vector(t, "event-unsigned.xml")
	garbage := []byte("-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n")
	many := unsigned
	for i := 0; i < MaxBlocks-1; i++ {
		many = Append(many, garbage)
	}
	many = Append(many, blocks[0].Armour)
	res, err := v.VerifyEvent(many, authorIVORN)
	if err != nil || res.Block != MaxBlocks-1 {
		t.Fatalf("%d blocks: %+v, %v", MaxBlocks, res, err)
	}
	// One more: refused before any is checked.
	if _, err := v.VerifyEvent(Append(many, garbage), authorIVORN); !errors.Is(err, ErrTooManySignatures) {
		t.Fatalf("%d blocks: got %v", MaxBlocks+1, err)
	}
}

func TestMalformedBlocks(t *testing.T) {
	v := &Verifier{Trusted: ring(t, "author"), Now: clock}
	unsigned := vector(t, "event-unsigned.xml")
	good, err := Blocks(vector(t, "event-signed-author.xml"))
	if err != nil {
		t.Fatal(err)
	}
	armour := good[0].Armour
	lines := strings.Split(string(armour), "\n")
	pub := vector(t, "author.pub.asc")
	pubAsSig := bytes.ReplaceAll(pub, []byte("PUBLIC KEY BLOCK"), []byte("SIGNATURE"))
	for _, tc := range []struct {
		name   string
		armour string
		want   string
	}{
		{"garbage", "-----BEGIN PGP SIGNATURE-----\n\nnot base64 at all!\n-----END PGP SIGNATURE-----\n", "base64"},
		{"garbage-base64", "-----BEGIN PGP SIGNATURE-----\n\nAAECAwQFBgcICQoLDA0ODw==\n-----END PGP SIGNATURE-----\n", "not an OpenPGP signature"},
		{"truncated", strings.Join(lines[:4], "\n") + "\n", "truncated"},
		{"truncated-keeps-end", strings.Join(append(lines[:3:3], lines[len(lines)-3:]...), "\n"), "checksum"},
		{"crc", strings.Replace(string(armour), "=Thcj", "=Thck", 1), "checksum"},
		{"wrong-end", strings.Replace(string(armour), "END PGP SIGNATURE", "END PGP MESSAGE", 1), "after the checksum"},
		{"data-after-crc", strings.Replace(string(armour), "=Thcj\n", "=Thcj\nAAAA\n", 1), "after the checksum"},
		{"empty", "-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n", "no data"},
		{"public-key", string(pubAsSig), "not a signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.VerifyEvent(Append(unsigned, []byte(tc.armour)), authorIVORN)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want %v mentioning %q", err, ErrMalformed, tc.want)
			}
		})
	}
}

// A truncated comment (no END delimiter) is still reported as a truncated
// block, not as "no signature".
func TestTruncatedComment(t *testing.T) {
	doc := vector(t, "event-signed-author.xml")
	cut := bytes.Replace(doc, []byte("=====END PGP SIGNATURE====="), nil, 1)
	v := &Verifier{Trusted: ring(t, "author"), Now: clock}
	if _, err := v.VerifyEvent(cut, authorIVORN); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("got %v", err)
	}
}

// Armour headers are accepted on input, in both escapings.
func TestArmourHeadersAccepted(t *testing.T) {
	v := &Verifier{Trusted: ring(t, "author"), Now: clock}
	for _, doc := range []string{"event-signed-author.xml", "event-signed-author-caret.xml"} {
		data := vector(t, doc)
		for _, begin := range []string{"=====BEGIN PGP SIGNATURE=====\n", "^^^^^BEGIN PGP SIGNATURE^^^^^\n"} {
			data = bytes.Replace(data, []byte(begin), []byte(begin+"Version: GnuPG v2\nComment: made for a test\n"), 1)
		}
		res, err := v.VerifyEvent(data, authorIVORN)
		if err != nil || res.Fingerprint != authorFpr {
			t.Fatalf("%s with headers: %+v, %v", doc, res, err)
		}
	}
}

func TestNotXML(t *testing.T) {
	v := &Verifier{Trusted: ring(t, "author"), Now: clock}
	for _, doc := range []string{"", "not xml", "<a>", "<a/><b/>", "<!DOCTYPE a><a/>"} {
		if _, err := v.VerifyEvent([]byte(doc), authorIVORN); !errors.Is(err, ErrDocument) {
			t.Errorf("%q: got %v, want %v", doc, err, ErrDocument)
		}
	}
}

// Verifiers are shared by the broker's connections.
func TestVerifyConcurrent(t *testing.T) {
	v := &Verifier{Trusted: ring(t, "author"), Others: allKeys(t), Now: clock}
	docs := [][]byte{vector(t, "event-signed-author.xml"), vector(t, "event-signed-notary.xml"), vector(t, "event-signed-author-declspan.xml")}
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 10; i++ {
				if _, err := v.VerifyEvent(docs[(g+i)%len(docs)], authorIVORN); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func BenchmarkVerifyEvent(b *testing.B) {
	v := &Verifier{Trusted: ring(b, "author"), Now: clock}
	doc := vector(b, "event-signed-author.xml")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyEvent(doc, authorIVORN); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyEventNotary(b *testing.B) {
	v := &Verifier{Trusted: ring(b, "author"), Others: ring(b, "notary"), Now: clock}
	doc := vector(b, "event-signed-notary.xml")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyEvent(doc, authorIVORN); err != nil {
			b.Fatal(err)
		}
	}
}
