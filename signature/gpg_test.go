package signature

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Round trips with real GnuPG (2.2 here; CI installs it). Each test gets a
// throw-away GNUPGHOME and stops its agent at the end.

type gpgHome struct {
	t   *testing.T
	dir string
}

func newGPGHome(t *testing.T) *gpgHome {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg not on PATH")
	}
	// Not t.TempDir(): gpg-agent's socket path must stay under ~100 bytes.
	dir, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kill := exec.Command("gpgconf", "--kill", "gpg-agent")
		kill.Env = append(os.Environ(), "GNUPGHOME="+dir)
		_ = kill.Run()
		os.RemoveAll(dir)
	})
	return &gpgHome{t: t, dir: dir}
}

// run runs gpg non-interactively (keys without passphrase) and returns its
// standard output and error.
func (h *gpgHome) run(stdin []byte, args ...string) (stdout, stderr []byte) {
	h.t.Helper()
	cmd := exec.Command("gpg", append([]string{"--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+h.dir)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		h.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, errOut.Bytes())
	}
	return out.Bytes(), errOut.Bytes()
}

// genKey makes a signing key valid for a day and returns its fingerprint.
func (h *gpgHome) genKey(uid, algo string) string {
	h.t.Helper()
	h.run(nil, "--quick-gen-key", uid, algo, "sign", "1d")
	out, _ := h.run(nil, "--with-colons", "--list-keys", "="+uid)
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" && len(f) > 9 {
			return f[9]
		}
	}
	h.t.Fatalf("no fingerprint for %s in\n%s", uid, out)
	return ""
}

func (h *gpgHome) file(name string, data []byte) string {
	h.t.Helper()
	path := filepath.Join(h.dir, name)
	writeFile(h.t, path, data)
	return path
}

// detachSign has gpg sign span A of payload with key fpr; extra gpg
// arguments (e.g. --comment) may be given.
func (h *gpgHome) detachSign(fpr string, payload []byte, extra ...string) []byte {
	h.t.Helper()
	a, _, err := Spans(payload)
	if err != nil {
		h.t.Fatal(err)
	}
	span := h.file("span.bin", a)
	sig := filepath.Join(h.dir, "span.bin.asc")
	os.Remove(sig)
	args := append([]string{"--local-user", fpr, "--detach-sign", "--armor", "--output", sig}, extra...)
	h.run(nil, append(args, span)...)
	out, err := os.ReadFile(sig)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *gpgHome) keyring(args ...string) *Keyring {
	h.t.Helper()
	out, _ := h.run(nil, append([]string{"--export"}, args...)...)
	k, err := ReadKeyring(bytes.NewReader(out))
	if err != nil {
		h.t.Fatal(err)
	}
	return k
}

// GnuPG signs span A; VerifyEvent accepts, for an RSA and an Ed25519 key,
// with the signature appended by Append (which drops gpg's armour header,
// here containing "--") or escaped by hand with the header kept.
func TestGPGSignsWeVerify(t *testing.T) {
	for _, algo := range []string{"rsa2048", "ed25519"} {
		t.Run(algo, func(t *testing.T) {
			h := newGPGHome(t)
			const uid = "ivo://example.org/gpgauthor"
			fpr := h.genKey(uid, algo)
			payload := event(uid)
			sig := h.detachSign(fpr, payload, "--comment", "made by gpg--test")
			if !bytes.Contains(sig, []byte("Comment: made by gpg--test")) {
				t.Fatalf("no armour header:\n%s", sig)
			}
			armoured, _ := h.run(nil, "--export", "--armor", fpr)
			fromFile, err := LoadKeyring(h.file("trusted.asc", armoured))
			if err != nil {
				t.Fatal(err)
			}
			byHand := append(append([]byte{}, payload...), "<!--\n"...)
			byHand = append(byHand, bytes.ReplaceAll(bytes.Replace(sig, []byte("gpg--test"), []byte("gpg test"), 1), []byte("-----"), []byte("====="))...)
			byHand = append(byHand, "\n-->"...)
			for name, doc := range map[string][]byte{"Append": Append(payload, sig), "by-hand-with-header": byHand} {
				for ringName, k := range map[string]*Keyring{"binary export": h.keyring(fpr), "armoured export": fromFile} {
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
			v := &Verifier{Trusted: h.keyring(fpr)}
			other := event("ivo://example.org/someone-else")
			if _, err := v.VerifyEvent(Append(other, h.detachSign(fpr, other)), "ivo://example.org/someone-else"); !errors.Is(err, ErrIdentityMismatch) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// What Signer.Sign produces verifies with gpg --verify over span A: for the
// vector key (RSA, passphrase-protected) and for a key gpg generated and
// exported without passphrase (Ed25519).
func TestWeSignGPGVerifies(t *testing.T) {
	h := newGPGHome(t)
	gpgFpr := h.genKey("ivo://example.org/gpgsigner", "ed25519")
	secret, _ := h.run(nil, "--export-secret-keys", "--armor", gpgFpr)
	h.run(vector(t, "author.pub.asc"), "--import")
	for _, tc := range []struct {
		name, keys, id, pass, fpr string
	}{
		{"vector-rsa", filepath.Join(vectorDir, "author.sec.asc"), "9802FF2D", filepath.Join(vectorDir, "passphrase.txt"), authorFpr},
		{"gpg-ed25519", h.file("secret.asc", secret), gpgFpr, "", gpgFpr},
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
			span, sig := h.file("ours.bin", a), h.file("ours.bin.asc", blocks[0].Armour)
			status, stderr := h.run(nil, "--status-fd", "1", "--verify", sig, span)
			if !bytes.Contains(status, []byte("[GNUPG:] GOODSIG")) || !bytes.Contains(status, []byte("VALIDSIG "+tc.fpr)) {
				t.Fatalf("gpg --verify:\n%s\n%s", status, stderr)
			}
		})
	}
}

// A subscriber's authenticate reply signed by gpg passes VerifyAny with its
// key trusted, and only then.
func TestGPGAuthenticateReply(t *testing.T) {
	h := newGPGHome(t)
	fpr := h.genKey("ivo://example.org/gpglistener", "ed25519")
	reply := []byte(`<?xml version='1.0' encoding='UTF-8'?>
<trn:Transport xmlns:trn="http://www.telescope-networks.org/xml/Transport/v1.1" version="1.0" role="authenticate">
  <Origin>ivo://example.org/broker</Origin>
  <Response>ivo://example.org/gpglistener</Response>
  <TimeStamp>2026-11-24T12:00:01Z</TimeStamp>
</trn:Transport>
`)
	doc := Append(reply, h.detachSign(fpr, reply))
	listener := h.keyring(fpr)
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
	h := newGPGHome(t)
	const uid = "ivo://example.org/gpgauthor"
	author := h.genKey(uid, "ed25519")
	notary := h.genKey("GPG Notary <notary@example.org>", "ed25519")
	h.run(nil, "--local-user", author, "--quick-sign-key", notary)
	payload := event(uid)
	doc := Append(payload, h.detachSign(notary, payload))
	v := &Verifier{Trusted: h.keyring(author), Others: h.keyring(notary)}
	res, err := v.VerifyEvent(doc, uid)
	if err != nil || res.Fingerprint != notary || res.TrustedBy != author {
		t.Fatalf("%+v, %v", res, err)
	}
	// With the notary trusted instead, its name is not the author's.
	v = &Verifier{Trusted: h.keyring(notary)}
	if _, err := v.VerifyEvent(doc, uid); !errors.Is(err, ErrIdentityMismatch) {
		t.Fatalf("got %v", err)
	}
}

// Pointing LoadKeyring at GnuPG's keybox (or its home) explains what to do.
func TestGPGKeybox(t *testing.T) {
	h := newGPGHome(t)
	h.genKey("ivo://example.org/gpgkbx", "ed25519")
	for _, path := range []string{filepath.Join(h.dir, "pubring.kbx"), h.dir} {
		_, err := LoadKeyring(path)
		if !errors.Is(err, ErrKeybox) || !strings.Contains(err.Error(), "gpg --export") || !strings.Contains(err.Error(), "pubring.kbx") {
			t.Fatalf("%s: got %v", path, err)
		}
	}
}
