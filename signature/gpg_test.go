package signature

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comet-go/comet/internal/gpgtest"
)

// Round trips with real GnuPG (2.2 here; CI installs it). Each test gets a
// throw-away GNUPGHOME and stops its agent at the end.

// signSpan has gpg sign span A of payload with key fpr; extra gpg
// arguments (e.g. --comment) may be given.
func signSpan(t *testing.T, h *gpgtest.Home, fpr string, payload []byte, extra ...string) []byte {
	t.Helper()
	a, _, err := Spans(payload)
	if err != nil {
		t.Fatal(err)
	}
	return h.DetachSign(fpr, a, extra...)
}

// exported is what gpg --export args gives, as a Keyring.
func exported(t *testing.T, h *gpgtest.Home, args ...string) *Keyring {
	t.Helper()
	k, err := ReadKeyring(bytes.NewReader(h.Run(nil, append([]string{"--export"}, args...)...)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// GnuPG signs span A; VerifyEvent accepts, for an RSA and an Ed25519 key,
// with the signature appended by Append (which drops gpg's armour header,
// here containing "--") or escaped by hand with the header kept.
func TestGPGSignsWeVerify(t *testing.T) {
	for _, algo := range []string{"rsa2048", "ed25519"} {
		t.Run(algo, func(t *testing.T) {
			h := gpgtest.New(t)
			const uid = "ivo://example.org/gpgauthor"
			fpr := h.GenKey(uid, algo)
			payload := event(uid)
			sig := signSpan(t, h, fpr, payload, "--comment", "made by gpg--test")
			if !bytes.Contains(sig, []byte("Comment: made by gpg--test")) {
				t.Fatalf("no armour header:\n%s", sig)
			}
			armoured := h.Run(nil, "--export", "--armor", fpr)
			fromFile, err := LoadKeyring(h.File("trusted.asc", armoured))
			if err != nil {
				t.Fatal(err)
			}
			byHand := append(append([]byte{}, payload...), "<!--\n"...)
			byHand = append(byHand, bytes.ReplaceAll(bytes.Replace(sig, []byte("gpg--test"), []byte("gpg test"), 1), []byte("-----"), []byte("====="))...)
			byHand = append(byHand, "\n-->"...)
			for name, doc := range map[string][]byte{"Append": Append(payload, sig), "by-hand-with-header": byHand} {
				for ringName, k := range map[string]*Keyring{"binary export": exported(t, h, fpr), "armoured export": fromFile} {
					v := &Verifier{Trusted: k} // real clock: gpg signed just now
					res, err := v.VerifyEvent(doc, uid)
					if err != nil {
						t.Fatalf("%s, %s: %v\n%s", name, ringName, err, doc)
					}
					if res.Fingerprint != fpr || res.Span != SpanRoot || res.UserID != uid {
						t.Fatalf("%s, %s: %+v", name, ringName, res)
					}
				}
			}
			// Another author's event: refused, naming both identities.
			v := &Verifier{Trusted: exported(t, h, fpr)}
			other := event("ivo://example.org/someone-else")
			if _, err := v.VerifyEvent(Append(other, signSpan(t, h, fpr, other)), "ivo://example.org/someone-else"); !errors.Is(err, ErrIdentityMismatch) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// What Signer.Sign produces verifies with gpg --verify over span A: for the
// vector key (RSA, passphrase-protected) and for a key gpg generated and
// exported without passphrase (Ed25519).
func TestWeSignGPGVerifies(t *testing.T) {
	h := gpgtest.New(t)
	gpgFpr := h.GenKey("ivo://example.org/gpgsigner", "ed25519")
	secret := h.Run(nil, "--export-secret-keys", "--armor", gpgFpr)
	h.Run(vector(t, "author.pub.asc"), "--import")
	for _, tc := range []struct {
		name, keys, id, pass, fpr string
	}{
		{"vector-rsa", filepath.Join(vectorDir, "author.sec.asc"), "9802FF2D", filepath.Join(vectorDir, "passphrase.txt"), authorFpr},
		{"gpg-ed25519", h.File("secret.asc", secret), gpgFpr, "", gpgFpr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := LoadSigner(tc.keys, tc.id, tc.pass) // real clock, as gpg checks times
			if err != nil {
				t.Fatal(err)
			}
			signed, err := s.Sign(vector(t, "event-unsigned.xml"))
			if err != nil {
				t.Fatal(err)
			}
			a, _, err := Spans(signed)
			if err != nil {
				t.Fatal(err)
			}
			blocks, err := Blocks(signed)
			if err != nil || len(blocks) != 1 {
				t.Fatalf("%v %d", err, len(blocks))
			}
			status, err := h.Verify(blocks[0].Armour, a)
			if err != nil || !strings.Contains(status, "[GNUPG:] GOODSIG") || !strings.Contains(status, "VALIDSIG "+tc.fpr) {
				t.Fatalf("gpg --verify: %v\n%s", err, status)
			}
		})
	}
}

// A subscriber's authenticate reply signed by gpg passes VerifyAny with its
// key trusted, and only then.
func TestGPGAuthenticateReply(t *testing.T) {
	h := gpgtest.New(t)
	fpr := h.GenKey("ivo://example.org/gpglistener", "ed25519")
	reply := []byte(`<?xml version='1.0' encoding='UTF-8'?>
<trn:Transport xmlns:trn="http://www.telescope-networks.org/xml/Transport/v1.1" version="1.0" role="authenticate">
  <Origin>ivo://example.org/broker</Origin>
  <Response>ivo://example.org/gpglistener</Response>
  <TimeStamp>2026-11-24T12:00:01Z</TimeStamp>
</trn:Transport>
`)
	doc := Append(reply, signSpan(t, h, fpr, reply))
	listener := exported(t, h, fpr)
	res, err := (&Verifier{Trusted: listener}).VerifyAny(doc)
	if err != nil || res.Fingerprint != fpr {
		t.Fatalf("%+v, %v", res, err)
	}
	if _, err := (&Verifier{Trusted: ring(t, "author"), Others: listener}).VerifyAny(doc); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("got %v, want %v", err, ErrUntrusted)
	}
}

// The notary case with GnuPG's own certification: the author's key
// certifies the notary's user ID (gpg --quick-sign-key), the notary signs,
// and the event passes with only the author trusted.
func TestGPGNotary(t *testing.T) {
	h := gpgtest.New(t)
	const uid = "ivo://example.org/gpgauthor"
	author := h.GenKey(uid, "ed25519")
	notary := h.GenKey("GPG Notary <notary@example.org>", "ed25519")
	h.Run(nil, "--local-user", author, "--quick-sign-key", notary)
	payload := event(uid)
	doc := Append(payload, signSpan(t, h, notary, payload))
	v := &Verifier{Trusted: exported(t, h, author), Others: exported(t, h, notary)}
	res, err := v.VerifyEvent(doc, uid)
	if err != nil || res.Fingerprint != notary || res.TrustedBy != author {
		t.Fatalf("%+v, %v", res, err)
	}
	// With the notary trusted instead, its name is not the author's.
	v = &Verifier{Trusted: exported(t, h, notary)}
	if _, err := v.VerifyEvent(doc, uid); !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("got %v", err)
	}
}

// Pointing LoadKeyring at GnuPG's keybox (or its home) explains what to do.
func TestGPGKeybox(t *testing.T) {
	h := gpgtest.New(t)
	h.GenKey("ivo://example.org/gpgkbx", "ed25519")
	for _, path := range []string{filepath.Join(h.Dir, "pubring.kbx"), h.Dir} {
		_, err := LoadKeyring(path)
		if !errors.Is(err, ErrKeybox) || !strings.Contains(err.Error(), "gpg --export") || !strings.Contains(err.Error(), "pubring.kbx") {
			t.Fatalf("%s: got %v", path, err)
		}
	}
}
