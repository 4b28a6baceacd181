package signature

import (
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

const genIVORN = "ivo://example.org/generated"

// Keys generated in-test (Ed25519, created keyTime = 2026-11-24T00:00Z,
// checked at fixedNow = 2026-11-25T00:00Z), each refused with a reason
// that says why.
func TestKeyStates(t *testing.T) {
	payload := event(genIVORN)
	for _, tc := range []struct {
		name string
		key  func(t *testing.T) *openpgp.Entity
		sig  sigOpts
		want error
		text string
	}{
		{"valid", func(t *testing.T) *openpgp.Entity { return genKey(t, genIVORN, nil) }, sigOpts{}, nil, ""},
		{"revoked", func(t *testing.T) *openpgp.Entity {
			e := genKey(t, genIVORN, nil)
			if err := e.RevokeKey(packet.KeyRetired, "retired for a test", keyConfig()); err != nil {
				t.Fatal(err)
			}
			return e
		}, sigOpts{}, ErrKeyRevoked, "retired for a test"},
		{"user-id-revoked", func(t *testing.T) *openpgp.Entity {
			e := genKey(t, genIVORN, nil)
			id := e.Identities[genIVORN]
			rev := &packet.Signature{Version: 4, SigType: packet.SigTypeCertificationRevocation, PubKeyAlgo: e.PrimaryKey.PubKeyAlgo,
				Hash: crypto.SHA256, CreationTime: keyTime.Add(time.Minute), IssuerKeyId: &e.PrimaryKey.KeyId, IssuerFingerprint: e.PrimaryKey.Fingerprint}
			if err := rev.SignUserId(genIVORN, e.PrimaryKey, e.PrivateKey, keyConfig()); err != nil {
				t.Fatal(err)
			}
			id.Signatures = append(id.Signatures, rev)
			return e
		}, sigOpts{}, ErrKeyRevoked, "user IDs are revoked"},
		{"expired", func(t *testing.T) *openpgp.Entity {
			return genKey(t, genIVORN, func(c *packet.Config) { c.KeyLifetimeSecs = 3600 * 2 })
		}, sigOpts{}, ErrExpired, "expired 2026-11-24T02:00:00Z"},
		{"key-from-the-future", func(t *testing.T) *openpgp.Entity {
			return genKey(t, genIVORN, func(c *packet.Config) { c.Time = func() time.Time { return fixedNow.Add(time.Hour) } })
		}, sigOpts{created: fixedNow.Add(time.Hour)}, ErrExpired, "in the future"},
		{"signature-expired", func(t *testing.T) *openpgp.Entity { return genKey(t, genIVORN, nil) },
			sigOpts{lifetime: 60}, ErrExpired, "signature by key"},
		{"signature-from-the-future", func(t *testing.T) *openpgp.Entity { return genKey(t, genIVORN, nil) },
			sigOpts{created: fixedNow.Add(time.Hour)}, ErrExpired, "in the future"},
		{"signature-within-clock-skew", func(t *testing.T) *openpgp.Entity { return genKey(t, genIVORN, nil) },
			sigOpts{created: fixedNow.Add(time.Minute)}, nil, ""},
		{"not-signing-capable", func(t *testing.T) *openpgp.Entity {
			e := genKey(t, genIVORN, nil)
			self := e.Identities[genIVORN].SelfSignature
			self.FlagSign = false // certify only
			if err := self.SignUserId(genIVORN, e.PrimaryKey, e.PrivateKey, keyConfig()); err != nil {
				t.Fatal(err)
			}
			return e
		}, sigOpts{}, ErrNotSigningKey, "not flagged to sign"},
		{"encryption-subkey", func(t *testing.T) *openpgp.Entity {
			// RSA can sign, but this subkey is flagged for encryption only.
			return genKey(t, genIVORN, func(c *packet.Config) { c.Algorithm, c.RSABits = packet.PubKeyAlgoRSA, 1024 })
		}, sigOpts{sub: 1}, ErrNotSigningKey, "not flagged to sign"},
		{"signing-subkey", func(t *testing.T) *openpgp.Entity {
			e := genKey(t, genIVORN, nil)
			if err := e.AddSigningSubkey(keyConfig()); err != nil {
				t.Fatal(err)
			}
			return e
		}, sigOpts{sub: 2}, nil, ""},
		{"signing-subkey-revoked", func(t *testing.T) *openpgp.Entity {
			e := genKey(t, genIVORN, nil)
			if err := e.AddSigningSubkey(keyConfig()); err != nil {
				t.Fatal(err)
			}
			if err := e.RevokeSubkey(&e.Subkeys[1], packet.KeyCompromised, "stolen", keyConfig()); err != nil {
				t.Fatal(err)
			}
			return e
		}, sigOpts{sub: 2}, ErrKeyRevoked, "subkey"},
		{"sha1", func(t *testing.T) *openpgp.Entity { return genKey(t, genIVORN, nil) },
			sigOpts{hash: crypto.SHA1}, ErrBadSignature, "SHA-1"},
		{"text-signature", func(t *testing.T) *openpgp.Entity { return genKey(t, genIVORN, nil) },
			sigOpts{sigType: packet.SigTypeText}, ErrBadSignature, "0x01"},
		{"signature-older-than-key", func(t *testing.T) *openpgp.Entity { return genKey(t, genIVORN, nil) },
			sigOpts{created: keyTime.Add(-time.Hour)}, ErrBadSignature, "predates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.key(t)
			doc := signEvent(t, e, payload, tc.sig)
			v := &Verifier{Trusted: pubRing(t, e), Now: clock}
			res, err := v.VerifyEvent(doc, genIVORN)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %+v, %v; want %v mentioning %q", res, err, tc.want, tc.text)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// A notary chain with generated keys: the author key certifies the
// notary's user ID; the certification counts only while it and the
// author's key are valid.
func TestCertifications(t *testing.T) {
	payload := event(genIVORN)
	for _, tc := range []struct {
		name string
		prep func(t *testing.T, author, notary *openpgp.Entity)
		want error
		text string
	}{
		{"certified", nil, nil, ""},
		{"certification-expired", func(t *testing.T, author, notary *openpgp.Entity) {
			sigs := notary.Identities["Notary <n@example.org>"].Signatures
			sigs[len(sigs)-1].SigLifetimeSecs = new(uint32)
			*sigs[len(sigs)-1].SigLifetimeSecs = 60
			resign(t, author, notary, sigs[len(sigs)-1])
		}, ErrUntrusted, "expired"},
		{"certification-revoked", func(t *testing.T, author, notary *openpgp.Entity) {
			rev := &packet.Signature{Version: 4, SigType: packet.SigTypeCertificationRevocation, PubKeyAlgo: author.PrimaryKey.PubKeyAlgo,
				Hash: crypto.SHA256, CreationTime: keyTime.Add(2 * time.Minute), IssuerKeyId: &author.PrimaryKey.KeyId, IssuerFingerprint: author.PrimaryKey.Fingerprint}
			resign(t, author, notary, rev)
			id := notary.Identities["Notary <n@example.org>"]
			id.Signatures = append(id.Signatures, rev)
		}, ErrUntrusted, "certification revoked"},
		{"certifier-revoked", func(t *testing.T, author, notary *openpgp.Entity) {
			if err := author.RevokeKey(packet.KeyCompromised, "", keyConfig()); err != nil {
				t.Fatal(err)
			}
		}, ErrUntrusted, "key revoked"},
		{"certification-sha1", func(t *testing.T, author, notary *openpgp.Entity) {
			sigs := notary.Identities["Notary <n@example.org>"].Signatures
			sigs[len(sigs)-1].Hash = crypto.SHA1
			resign(t, author, notary, sigs[len(sigs)-1])
		}, ErrUntrusted, "SHA-1"},
		{"certification-of-another-user-id", func(t *testing.T, author, notary *openpgp.Entity) {
			// The author certified some other user ID; the packet was
			// moved onto the notary's.
			sigs := notary.Identities["Notary <n@example.org>"].Signatures
			resignUID(t, author, notary, sigs[len(sigs)-1], "Notary <evil@example.org>")
		}, ErrUntrusted, "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			author := genKey(t, genIVORN, nil)
			notary, err := openpgp.NewEntity("Notary", "", "n@example.org", keyConfig())
			if err != nil {
				t.Fatal(err)
			}
			cfg := keyConfig()
			cfg.Time = func() time.Time { return keyTime.Add(time.Minute) }
			if err := notary.SignIdentity("Notary <n@example.org>", author, cfg); err != nil {
				t.Fatal(err)
			}
			if tc.prep != nil {
				tc.prep(t, author, notary)
			}
			doc := signEvent(t, notary, payload, sigOpts{})
			v := &Verifier{Trusted: pubRing(t, author), Others: pubRing(t, notary), Now: clock}
			res, err := v.VerifyEvent(doc, genIVORN)
			if tc.want == nil {
				if err != nil || res.TrustedBy != fingerprint(author.PrimaryKey) {
					t.Fatalf("got %+v, %v", res, err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %+v, %v; want %v mentioning %q", res, err, tc.want, tc.text)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// resign re-signs the certification (or revocation) sig of notary's user
// ID with signer's key, keeping sig's issuer fields.
func resign(t *testing.T, signer, notary *openpgp.Entity, sig *packet.Signature) {
	t.Helper()
	resignUID(t, signer, notary, sig, "Notary <n@example.org>")
}

func resignUID(t *testing.T, signer, notary *openpgp.Entity, sig *packet.Signature, uid string) {
	t.Helper()
	if err := sig.SignUserId(uid, notary.PrimaryKey, signer.PrivateKey, plainConfig(sig.CreationTime)); err != nil {
		t.Fatal(err)
	}
}

func TestNamePart(t *testing.T) {
	for uid, want := range map[string]string{
		"ivo://example.org/author":                      "ivo://example.org/author",
		"Example Notary <notary@example.org>":           "Example Notary",
		"ivo://example.org/author (test key)":           "ivo://example.org/author",
		"ivo://example.org/author (test) <a@b.example>": "ivo://example.org/author",
		"<only@email.example>":                          "",
		" ivo://example.org/x ":                         "ivo://example.org/x",
	} {
		if got := namePart(uid); got != want {
			t.Errorf("namePart(%q) = %q, want %q", uid, got, want)
		}
	}
}

// The primary user ID does not depend on map order: with two equally new
// user IDs and none marked primary, the smaller name wins every time.
func TestPrimaryIdentityDeterministic(t *testing.T) {
	e := genKey(t, "ivo://example.org/b", nil)
	if err := e.AddUserId("ivo://example.org/a", "", "", keyConfig()); err != nil {
		t.Fatal(err)
	}
	for _, id := range e.Identities {
		id.SelfSignature.IsPrimaryId = nil
	}
	for i := 0; i < 20; i++ {
		if got := primaryIdentity(e, fixedNow).Name; got != "ivo://example.org/a" {
			t.Fatalf("primary user ID %q", got)
		}
	}
	// Marked primary wins over name order.
	yes := true
	e.Identities["ivo://example.org/b"].SelfSignature.IsPrimaryId = &yes
	if got := primaryIdentity(e, fixedNow).Name; got != "ivo://example.org/b" {
		t.Fatalf("primary user ID %q", got)
	}
}
