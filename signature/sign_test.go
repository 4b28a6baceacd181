package signature

import (
	"bytes"
	"crypto"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Sign → Verify with the vector author key: the result is the payload plus
// one header-less "=====" comment, over span A, SHA-256, binary type.
func TestSignRoundTrip(t *testing.T) {
	s := vectorSigner(t)
	if s.Fingerprint() != authorFpr {
		t.Fatalf("fingerprint %s", s.Fingerprint())
	}
	unsigned := vector(t, "event-unsigned.xml")
	keep := bytes.Clone(unsigned)
	signed, err := s.Sign(unsigned)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(unsigned, keep) || !bytes.HasPrefix(signed, unsigned) {
		t.Fatal("Sign altered the payload")
	}
	comment := string(signed[len(unsigned):])
	if !strings.HasPrefix(comment, "<!--\n=====BEGIN PGP SIGNATURE=====\n\n") || !strings.HasSuffix(comment, "\n=====END PGP SIGNATURE=====\n\n-->") {
		t.Fatalf("comment layout (no armour headers allowed):\n%s", comment)
	}
	if strings.Count(comment, "--") != 2 { // "<!--" and "-->" only
		t.Fatalf("comment contains --:\n%s", comment)
	}
	v := &Verifier{Trusted: ring(t, "author"), Now: clock}
	res, err := v.VerifyEvent(signed, authorIVORN)
	if err != nil || res.Span != SpanRoot || res.Fingerprint != authorFpr {
		t.Fatalf("%+v, %v", res, err)
	}
	blocks, err := Blocks(signed)
	if err != nil || len(blocks) != 1 || blocks[0].Escaping != EscapeEquals {
		t.Fatalf("%+v, %v", blocks, err)
	}
	block, err := armor.Decode(bytes.NewReader(blocks[0].Armour))
	if err != nil {
		t.Fatal(err)
	}
	if len(block.Header) != 0 {
		t.Fatalf("armour headers %v", block.Header)
	}
	p, err := packet.Read(block.Body)
	if err != nil {
		t.Fatal(err)
	}
	sig := p.(*packet.Signature)
	if sig.SigType != packet.SigTypeBinary || sig.Hash != crypto.SHA256 || !sig.CreationTime.Equal(fixedNow) {
		t.Fatalf("signature type %#x hash %v created %v", sig.SigType, sig.Hash, sig.CreationTime)
	}
	// A second signer appends a second comment; both verify over span A.
	twice, err := s.Sign(signed)
	if err != nil {
		t.Fatal(err)
	}
	if blocks, _ := Blocks(twice); len(blocks) != 2 {
		t.Fatalf("%d blocks", len(blocks))
	}
	if _, err := v.VerifyEvent(twice, authorIVORN); err != nil {
		t.Fatal(err)
	}
	// Subscriber replies are signed the same way.
	reply := vector(t, "authenticate-signed-listener.xml")
	end := bytes.Index(reply, []byte("<!--"))
	signedReply, err := s.Sign(reply[:end])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyAny(signedReply); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign([]byte("not xml")); !errors.Is(err, ErrDocument) {
		t.Fatalf("got %v", err)
	}
}

// Short ID, long ID and fingerprint, in any case, with 0x or spaces, all
// select the author key.
func TestKeyIDForms(t *testing.T) {
	ents, err := readKeyFile(filepath.Join(vectorDir, "author.sec.asc"), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{
		"9802FF2D", "9802ff2d", "0x9802FF2D",
		"5EFA82579802FF2D", "0x5efa82579802ff2d",
		authorFpr, strings.ToLower(authorFpr), "4866 58CA 5AAD 0680 E4D7  5E44 5EFA 8257 9802 FF2D",
	} {
		want, err := normaliseKeyID(id)
		if err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		ref, err := selectKey(ents, id, want, "author.sec.asc", fixedNow)
		if err != nil || fingerprint(ref.pub) != authorFpr {
			t.Fatalf("%q: %v", id, err)
		}
	}
	for _, id := range []string{"", "9802FF2", "xyz", "0x", authorFpr + "00"} {
		if _, err := normaliseKeyID(id); !errors.Is(err, ErrNoSuchKey) {
			t.Errorf("%q accepted", id)
		}
	}
}

// Two keys with the same short ID (made by editing one key's fingerprint in
// memory) make the short ID ambiguous; the fingerprint still works.
func TestAmbiguousKeyID(t *testing.T) {
	a, b := genKey(t, "a", nil), genKey(t, "b", nil)
	copy(b.PrimaryKey.Fingerprint[16:], a.PrimaryKey.Fingerprint[16:])
	short := a.PrimaryKey.KeyIdShortString()
	want, _ := normaliseKeyID(short)
	_, err := selectKey([]*openpgp.Entity{a, b}, short, want, "keys.asc", fixedNow)
	if !errors.Is(err, ErrAmbiguousKeyID) || !strings.Contains(err.Error(), "full fingerprint") {
		t.Fatalf("got %v", err)
	}
	want, _ = normaliseKeyID(fingerprint(a.PrimaryKey))
	if _, err := selectKey([]*openpgp.Entity{a, b}, want, want, "keys.asc", fixedNow); err != nil {
		t.Fatal(err)
	}
}

func TestLoadSignerErrors(t *testing.T) {
	dir := t.TempDir()
	sec := filepath.Join(vectorDir, "author.sec.asc")
	pass := filepath.Join(vectorDir, "passphrase.txt")
	wrong := filepath.Join(dir, "wrong.txt")
	writeFile(t, wrong, []byte("not-the-passphrase\n"))
	missing := filepath.Join(dir, "no-such-passphrase-file")
	for _, tc := range []struct {
		name               string
		keys, id, passFile string
		want               error
		mention            []string
	}{
		{"wrong-passphrase", sec, authorFpr, wrong, ErrWrongPassphrase, []string{sec, wrong}},
		{"no-passphrase-file", sec, authorFpr, "", ErrWrongPassphrase, []string{"no passphrase file"}},
		{"unreadable-passphrase-file", sec, authorFpr, missing, nil, []string{"passphrase file", missing}},
		{"no-such-key", sec, "DEADBEEF", pass, ErrNoSuchKey, []string{"DEADBEEF", sec, authorFpr}},
		{"other-key", sec, notaryFpr, pass, ErrNoSuchKey, []string{notaryFpr}},
		{"public-key-only", filepath.Join(vectorDir, "author.pub.asc"), authorFpr, pass, ErrNoSuchKey, []string{"no secret part"}},
		{"missing-key-file", filepath.Join(dir, "nope.asc"), authorFpr, pass, nil, []string{"nope.asc"}},
		{"bad-id", sec, "author", pass, ErrNoSuchKey, []string{`"author"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := loadSigner(tc.keys, tc.id, tc.passFile, clock)
			if err == nil {
				t.Fatalf("loaded %v", s.Fingerprint())
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for _, m := range tc.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("%q does not mention %q", err, m)
				}
			}
			t.Logf("%v", err)
		})
	}
}

// Keys that must not sign are refused when loading, with the reason.
func TestLoadSignerRefusesUnusableKeys(t *testing.T) {
	dir := t.TempDir()
	passFile := filepath.Join(dir, "pass")
	writeFile(t, passFile, []byte("secret\r\n"))
	for _, tc := range []struct {
		name string
		key  func(t *testing.T) *openpgp.Entity
		want error
	}{
		{"usable", func(t *testing.T) *openpgp.Entity { return genKey(t, genIVORN, nil) }, nil},
		{"revoked", func(t *testing.T) *openpgp.Entity {
			e := genKey(t, genIVORN, nil)
			if err := e.RevokeKey(packet.KeyRetired, "", keyConfig()); err != nil {
				t.Fatal(err)
			}
			return e
		}, ErrKeyRevoked},
		{"expired", func(t *testing.T) *openpgp.Entity {
			return genKey(t, genIVORN, func(c *packet.Config) { c.KeyLifetimeSecs = 60 })
		}, ErrExpired},
		{"not-signing", func(t *testing.T) *openpgp.Entity {
			e := genKey(t, genIVORN, nil)
			self := e.Identities[genIVORN].SelfSignature
			self.FlagSign = false
			if err := self.SignUserId(genIVORN, e.PrimaryKey, e.PrivateKey, keyConfig()); err != nil {
				t.Fatal(err)
			}
			return e
		}, ErrNotSigningKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.key(t)
			if err := e.EncryptPrivateKeys([]byte("secret"), keyConfig()); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			w, _ := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
			if err := e.SerializePrivateWithoutSigning(w, nil); err != nil {
				t.Fatal(err)
			}
			w.Close()
			file := filepath.Join(dir, tc.name+".sec.asc")
			writeFile(t, file, buf.Bytes())
			s, err := loadSigner(file, fingerprint(e.PrimaryKey), passFile, clock)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				signed, err := s.Sign(event(genIVORN))
				if err != nil {
					t.Fatal(err)
				}
				v := &Verifier{Trusted: pubRing(t, e), Now: clock}
				if _, err := v.VerifyEvent(signed, genIVORN); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), file) {
				t.Fatalf("got %v, want %v naming %s", err, tc.want, file)
			}
			t.Logf("%v", err)
		})
	}
}

// A key that expires while the broker runs stops signing.
func TestSignAfterExpiry(t *testing.T) {
	e := genKey(t, genIVORN, func(c *packet.Config) { c.KeyLifetimeSecs = 3600 })
	now := keyTime.Add(time.Minute)
	s := &Signer{key: keyRef{ent: e, pub: e.PrimaryKey}, priv: e.PrivateKey, now: func() time.Time { return now }}
	if _, err := s.Sign(event(genIVORN)); err != nil {
		t.Fatal(err)
	}
	now = keyTime.Add(2 * time.Hour)
	if _, err := s.Sign(event(genIVORN)); !errors.Is(err, ErrExpired) {
		t.Fatalf("got %v, want %v", err, ErrExpired)
	}
}

func TestReadPassphrase(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]string{
		"comet-test\n":          "comet-test",
		"comet-test":            "comet-test",
		"comet-test\r\n":        "comet-test",
		"comet-test\nignored\n": "comet-test",
		" spaces kept \n":       " spaces kept ",
		"\n":                    "",
	} {
		path := filepath.Join(dir, "p")
		writeFile(t, path, []byte(content))
		got, err := ReadPassphrase(path)
		if err != nil || string(got) != want {
			t.Errorf("%q: got %q, %v; want %q", content, got, err, want)
		}
	}
	got, err := ReadPassphrase(filepath.Join(vectorDir, "passphrase.txt"))
	if err != nil || string(got) != "comet-test" {
		t.Fatalf("vector passphrase %q, %v", got, err)
	}
	if _, err := ReadPassphrase(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "passphrase file") {
		t.Fatalf("got %v", err)
	}
}

// Signers are shared by the broker's connections.
func TestSignConcurrent(t *testing.T) {
	s := vectorSigner(t)
	v := &Verifier{Trusted: ring(t, "author"), Now: clock}
	unsigned := vector(t, "event-unsigned.xml")
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			signed, err := s.Sign(unsigned)
			if err == nil {
				_, err = v.VerifyEvent(signed, authorIVORN)
			}
			done <- err
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	s := vectorSigner(b)
	doc := vector(b, "event-unsigned.xml")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(doc); err != nil {
			b.Fatal(err)
		}
	}
}
