package signature

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Signer signs documents with one secret key. It is safe for concurrent
// use.
type Signer struct {
	key  keyRef // the (sub)key that signs
	priv *packet.PrivateKey
	now  func() time.Time
}

// LoadSigner reads exported secret keys (gpg --export-secret-keys, armoured
// or binary) from secretKeysPath and selects the key keyID names: a short
// (8 hex digits) or long (16) key ID or a fingerprint, case-insensitive,
// with an optional "0x". Naming a primary key signs with its newest valid
// signing subkey, or the primary key itself, as gpg does. The passphrase is
// the first line of passphraseFile (see ReadPassphrase); passphraseFile may
// be empty only for a key without passphrase. The key must be valid now:
// not revoked, not expired, flagged for signing.
func LoadSigner(secretKeysPath, keyID, passphraseFile string) (*Signer, error) {
	return loadSigner(secretKeysPath, keyID, passphraseFile, time.Now)
}

func loadSigner(path, keyID, passphraseFile string, now func() time.Time) (*Signer, error) {
	want, err := normaliseKeyID(keyID)
	if err != nil {
		return nil, err
	}
	var pass []byte
	if passphraseFile != "" {
		if pass, err = ReadPassphrase(passphraseFile); err != nil {
			return nil, err
		}
	}
	ents, err := readKeyFile(path, true)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	t := now()
	ref, err := selectKey(ents, keyID, want, path, t)
	if err != nil {
		return nil, err
	}
	if ref.sub == nil {
		ref = pickSigningKey(ref.ent, t)
	}
	if err := keyUsable(ref, packet.KeyFlagSign, t); err != nil {
		return nil, fmt.Errorf("signing key %s in %s: %w", keyID, path, err)
	}
	priv := ref.ent.PrivateKey
	if ref.sub != nil {
		priv = ref.sub.PrivateKey
	}
	switch {
	case priv == nil:
		return nil, fmt.Errorf("%w: %s in %s has no secret part (export it with gpg --export-secret-keys)", ErrNoSuchKey, fingerprint(ref.pub), path)
	case priv.Dummy():
		return nil, fmt.Errorf("%w: the secret part of %s in %s is a stub (offline key or smartcard)", ErrNoSuchKey, fingerprint(ref.pub), path)
	case priv.Encrypted && passphraseFile == "":
		return nil, fmt.Errorf("%w: key %s in %s is passphrase-protected and no passphrase file was given", ErrWrongPassphrase, fingerprint(ref.pub), path)
	case priv.Encrypted:
		if err := priv.Decrypt(pass); err != nil {
			return nil, fmt.Errorf("%w for key %s in %s (passphrase file %s): %v", ErrWrongPassphrase, fingerprint(ref.pub), path, passphraseFile, err)
		}
	}
	return &Signer{key: ref, priv: priv, now: now}, nil
}

// ReadPassphrase returns the content of path up to its first LF, without a
// trailing CR: an operator's file usually ends with a newline, which is not
// part of the passphrase (GnuPG also reads only the first line).
func ReadPassphrase(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("passphrase file: %w", err)
	}
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		data = data[:i]
	}
	return bytes.TrimSuffix(data, []byte("\r")), nil
}

// Fingerprint is the signing key's primary key fingerprint, upper-case hex.
func (s *Signer) Fingerprint() string { return fingerprint(s.key.ent.PrimaryKey) }

// Sign returns a new slice: payload followed by a signature comment
// (Append) holding a detached, binary (type 0x00), SHA-256 signature over
// span A, armoured without headers. payload must be a well-formed document
// and is not altered.
func (s *Signer) Sign(payload []byte) ([]byte, error) {
	env, err := scan(payload)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if err := keyUsable(s.key, packet.KeyFlagSign, now); err != nil {
		return nil, fmt.Errorf("sign: %w", err) // expired or revoked since loading
	}
	pub := s.key.pub
	keyID := pub.KeyId
	sig := &packet.Signature{
		Version:           pub.Version,
		SigType:           packet.SigTypeBinary,
		PubKeyAlgo:        pub.PubKeyAlgo,
		Hash:              signingHash(pub),
		CreationTime:      now,
		IssuerKeyId:       &keyID,
		IssuerKeyVersion:  uint8(pub.Version),
		IssuerFingerprint: pub.Fingerprint,
	}
	config := &packet.Config{DefaultHash: sig.Hash, Time: func() time.Time { return now }}
	h, err := sig.PrepareSign(config)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	h.Write(env.spanA(payload))
	if err := sig.Sign(h, s.priv, config); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, "PGP SIGNATURE", nil) // nil: no Version or Comment header
	if err == nil {
		err = sig.Serialize(w)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	buf.WriteByte('\n')
	signed := Append(payload, buf.Bytes())
	// The comment is written in the payload's encoding; make sure it reads
	// back (a stateful encoding left shifted at the end would not).
	after, err := scan(signed)
	if err != nil || after.rootStart != env.rootStart || after.rootEnd != env.rootEnd || len(after.blocks(-1)) != len(env.blocks(-1))+1 {
		return nil, fmt.Errorf("%w: the signature comment does not read back in the document's encoding (%v)", ErrDocument, err)
	}
	return signed, nil
}

// selectKey finds the one key (primary or subkey) in ents that want (a
// normalised key ID) names. Copies of one key count once.
func selectKey(ents []*openpgp.Entity, keyID, want, path string, now time.Time) (keyRef, error) {
	var matches []keyRef
	seen := map[string]bool{}
	add := func(r keyRef) {
		if fpr := fingerprint(r.pub); !seen[fpr] {
			seen[fpr] = true
			matches = append(matches, r)
		}
	}
	for _, e := range ents {
		if matchID(e.PrimaryKey, want) {
			add(keyRef{ent: e, pub: e.PrimaryKey})
		}
		for i := range e.Subkeys {
			if s := &e.Subkeys[i]; matchID(s.PublicKey, want) {
				add(keyRef{ent: e, pub: s.PublicKey, sub: s})
			}
		}
	}
	switch {
	case len(matches) == 0:
		return keyRef{}, fmt.Errorf("%w %s in %s (it holds %s)", ErrNoSuchKey, keyID, path, describe(ents, now))
	case len(matches) > 1:
		var fprs []string
		for _, m := range matches {
			fprs = append(fprs, fingerprint(m.pub))
		}
		return keyRef{}, fmt.Errorf("%w: %s matches %d keys in %s (%s): give the full fingerprint", ErrAmbiguousKeyID, keyID, len(matches), path, strings.Join(fprs, ", "))
	}
	return matches[0], nil
}

// signingHash is SHA-256 (docs/openpgp.md §1), except for Ed448, which
// requires a 512-bit hash.
func signingHash(pub *packet.PublicKey) crypto.Hash {
	if pub.PubKeyAlgo == packet.PubKeyAlgoEd448 {
		return crypto.SHA512
	}
	return crypto.SHA256
}

// pickSigningKey chooses the key that signs for e: its newest usable
// signing subkey with a secret part, else the primary key (which
// keyUsable may then refuse, with the reason).
func pickSigningKey(e *openpgp.Entity, now time.Time) keyRef {
	best := keyRef{ent: e, pub: e.PrimaryKey}
	var newest time.Time
	for i := range e.Subkeys {
		s := &e.Subkeys[i]
		ref := keyRef{ent: e, pub: s.PublicKey, sub: s}
		if s.PrivateKey == nil || s.PrivateKey.Dummy() || keyUsable(ref, packet.KeyFlagSign, now) != nil {
			continue
		}
		if best.sub == nil || s.Sig.CreationTime.After(newest) {
			best, newest = ref, s.Sig.CreationTime
		}
	}
	if best.sub != nil {
		return best
	}
	return keyRef{ent: e, pub: e.PrimaryKey}
}

// normaliseKeyID turns "0x9802ff2d" or "4866 58CA ..." into upper-case hex
// and checks its length: 8 (short ID), 16 (long ID), 40 or 64 (v4 or v6
// fingerprint).
func normaliseKeyID(id string) (string, error) {
	s := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(id), " ", ""))
	s = strings.TrimPrefix(s, "0X")
	if _, err := hex.DecodeString(s); err != nil || !(len(s) == 8 || len(s) == 16 || len(s) == 40 || len(s) == 64) {
		return "", fmt.Errorf("%w: invalid key ID %q: want 8 or 16 hex digits or a fingerprint", ErrNoSuchKey, id)
	}
	return s, nil
}

func matchID(pub *packet.PublicKey, want string) bool {
	switch len(want) {
	case 8:
		return pub.Version == 4 && pub.KeyIdShortString() == want
	case 16:
		return pub.KeyIdString() == want
	}
	return fingerprint(pub) == want
}

// describe lists keys for an error message.
func describe(ents []*openpgp.Entity, now time.Time) string {
	if len(ents) == 0 {
		return "no keys"
	}
	var parts []string
	for _, e := range ents {
		parts = append(parts, fmt.Sprintf("%s %q", fingerprint(e.PrimaryKey), userID(e, now)))
	}
	return strings.Join(parts, ", ")
}
