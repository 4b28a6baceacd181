package signature

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// maxKeyFileSize bounds one key file (or ReadKeyring input): far above any
// real export, small enough that a wrong path (a disk image, /dev/zero)
// fails fast.
const maxKeyFileSize = 64 << 20

// Keyring is an immutable set of OpenPGP public keys, one entry per primary
// key fingerprint. A nil *Keyring is empty. It is safe for concurrent use.
type Keyring struct {
	entities []*openpgp.Entity
	byID     map[uint64][]keyRef        // primary keys and subkeys by key ID
	byFpr    map[string]*openpgp.Entity // primary keys by upper-case hex fingerprint
}

// keyRef is one key of an entity: its primary key (sub == nil) or a subkey.
type keyRef struct {
	ent *openpgp.Entity
	pub *packet.PublicKey
	sub *openpgp.Subkey
}

// LoadKeyring reads the public keys in path: a file, or a directory whose
// regular files (hidden ones skipped) are all read. Files hold exported
// public keys, armoured or binary, several per file. GnuPG's own keybox
// (pubring.kbx) cannot be read: export the keys instead (gpg --export
// --armor KEYID > trusted.asc).
func LoadKeyring(path string) (*Keyring, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if !st.IsDir() {
		ents, err := readKeyFile(path, false)
		if err != nil {
			return nil, fmt.Errorf("keyring: %w", err)
		}
		return newKeyring(ents), nil
	}
	dir, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	var ents []*openpgp.Entity
	for _, d := range dir {
		if strings.HasPrefix(d.Name(), ".") {
			continue
		}
		file := filepath.Join(path, d.Name())
		if st, err := os.Stat(file); err != nil || !st.Mode().IsRegular() {
			continue // subdirectories, sockets, dangling links
		}
		got, err := readKeyFile(file, false)
		if err != nil {
			return nil, fmt.Errorf("keyring: %w", err)
		}
		ents = append(ents, got...)
	}
	if len(ents) == 0 {
		return nil, fmt.Errorf("keyring: no key files in directory %s", path)
	}
	return newKeyring(ents), nil
}

// ReadKeyring reads exported public keys (armoured or binary, any number)
// from r.
func ReadKeyring(r io.Reader) (*Keyring, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	ents, err := parseKeys(data, false)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return newKeyring(ents), nil
}

// Len is the number of distinct keys (primary fingerprints).
func (k *Keyring) Len() int {
	if k == nil {
		return 0
	}
	return len(k.entities)
}

// Fingerprints lists the primary key fingerprints (upper-case hex) in load
// order, e.g. for a log line after a reload.
func (k *Keyring) Fingerprints() []string {
	if k == nil {
		return nil
	}
	out := make([]string, len(k.entities))
	for i, e := range k.entities {
		out[i] = fingerprint(e.PrimaryKey)
	}
	return out
}

// contains reports whether the entity's primary key is in k.
func (k *Keyring) contains(e *openpgp.Entity) bool {
	return k != nil && k.byFpr[fingerprint(e.PrimaryKey)] != nil
}

// keys returns the keys that may have issued sig: by issuer fingerprint
// when the signature names one, else by key ID.
func (k *Keyring) keys(sig *packet.Signature) []keyRef {
	if k == nil {
		return nil
	}
	id, ok := issuerID(sig)
	if !ok {
		return nil
	}
	var out []keyRef
	for _, r := range k.byID[id] {
		if sig.IssuerFingerprint == nil || bytes.Equal(sig.IssuerFingerprint, r.pub.Fingerprint) {
			out = append(out, r)
		}
	}
	return out
}

// issuerID is the key ID of sig's issuer: the issuer key ID subpacket, or
// derived from the issuer fingerprint (v4: its last 8 bytes; v6: its first).
func issuerID(sig *packet.Signature) (uint64, bool) {
	if sig.IssuerKeyId != nil {
		return *sig.IssuerKeyId, true
	}
	var b []byte
	switch f := sig.IssuerFingerprint; len(f) {
	case 20:
		b = f[12:]
	case 32:
		b = f[:8]
	default:
		return 0, false
	}
	var id uint64
	for _, c := range b {
		id = id<<8 | uint64(c)
	}
	return id, true
}

func fingerprint(pk *packet.PublicKey) string {
	return strings.ToUpper(hex.EncodeToString(pk.Fingerprint))
}

// newKeyring indexes ents, merging copies of the same key (e.g. an old
// export and a newer one carrying a revocation) so that no copy can hide
// another's revocation.
func newKeyring(ents []*openpgp.Entity) *Keyring {
	k := &Keyring{byID: map[uint64][]keyRef{}, byFpr: map[string]*openpgp.Entity{}}
	for _, e := range ents {
		fpr := fingerprint(e.PrimaryKey)
		if old := k.byFpr[fpr]; old != nil {
			mergeEntity(old, e)
			continue
		}
		k.byFpr[fpr] = e
		k.entities = append(k.entities, e)
	}
	for _, e := range k.entities {
		k.byID[e.PrimaryKey.KeyId] = append(k.byID[e.PrimaryKey.KeyId], keyRef{ent: e, pub: e.PrimaryKey})
		for i := range e.Subkeys {
			s := &e.Subkeys[i]
			k.byID[s.PublicKey.KeyId] = append(k.byID[s.PublicKey.KeyId], keyRef{ent: e, pub: s.PublicKey, sub: s})
		}
	}
	return k
}

// mergeEntity adds src's revocations, user IDs, certifications and subkeys
// to dst (same primary key); the newest self-signatures win.
func mergeEntity(dst, src *openpgp.Entity) {
	dst.Revocations = append(dst.Revocations, src.Revocations...)
	for name, id := range src.Identities {
		d, ok := dst.Identities[name]
		if !ok {
			dst.Identities[name] = id
			continue
		}
		d.Revocations = append(d.Revocations, id.Revocations...)
		d.Signatures = append(d.Signatures, id.Signatures...)
		if id.SelfSignature != nil && (d.SelfSignature == nil || id.SelfSignature.CreationTime.After(d.SelfSignature.CreationTime)) {
			d.SelfSignature = id.SelfSignature
		}
	}
next:
	for _, s := range src.Subkeys {
		for i := range dst.Subkeys {
			d := &dst.Subkeys[i]
			if bytes.Equal(d.PublicKey.Fingerprint, s.PublicKey.Fingerprint) {
				d.Revocations = append(d.Revocations, s.Revocations...)
				if s.Sig.CreationTime.After(d.Sig.CreationTime) {
					d.Sig = s.Sig
				}
				continue next
			}
		}
		dst.Subkeys = append(dst.Subkeys, s)
	}
}

// readKeyFile reads and parses one key file; errors name the file.
func readKeyFile(path string, secret bool) ([]*openpgp.Entity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError: names the file
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err == nil {
		var ents []*openpgp.Entity
		if ents, err = parseKeys(data, secret); err == nil {
			return ents, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", path, err)
}

// parseKeys reads every key in data: one or more armoured blocks (text
// around them is ignored), or binary packets. With secret false, secret
// keys are refused: a trusted-keys file should not hold them.
func parseKeys(data []byte, secret bool) ([]*openpgp.Entity, error) {
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("larger than %d MiB", maxKeyFileSize>>20)
	}
	// A keybox starts with a 32-byte header blob whose magic is at offset 8.
	if len(data) >= 12 && string(data[8:12]) == "KBXf" {
		return nil, fmt.Errorf("%w (this looks like pubring.kbx): export the keys instead, e.g. gpg --export --armor KEYID > trusted.asc", ErrKeybox)
	}
	if len(data) >= 4 && data[0] == 1 && string(data[1:4]) == "gpg" {
		return nil, errors.New("this is a GnuPG trust database (trustdb.gpg), not keys: export the keys, e.g. gpg --export --armor KEYID > trusted.asc")
	}
	data = bytes.TrimPrefix(data, []byte{0xEF, 0xBB, 0xBF}) // a text editor's UTF-8 BOM
	if len(data) == 0 {
		return nil, errors.New("empty file: no keys")
	}
	// Every OpenPGP packet header has the high bit set; armour is text.
	if data[0]&0x80 != 0 {
		return readEntities(data, secret)
	}
	var all []*openpgp.Entity
	for rest := data; ; {
		typ, body, next, err := decodeArmour(rest)
		if err == errNoArmour {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("armoured block %d: %w", len(all)+1, err)
		}
		switch {
		case typ == openpgp.PublicKeyType:
		case typ == openpgp.PrivateKeyType && secret:
		case typ == openpgp.PrivateKeyType:
			return nil, errors.New("holds a secret key: give exported public keys (gpg --export --armor KEYID)")
		default:
			return nil, fmt.Errorf("armoured block of type %q, want %q", typ, openpgp.PublicKeyType)
		}
		ents, err := readEntities(body, secret)
		if err != nil {
			return nil, err
		}
		all = append(all, ents...)
		rest = next
	}
	if len(all) == 0 {
		return nil, errors.New("no OpenPGP keys found (neither armoured nor binary)")
	}
	return all, nil
}

// readEntities parses binary key packets. Unlike go-crypto's ReadKeyRing,
// which drops keys it cannot read, any unreadable key is an error: an
// operator who lists a key expects it to be used.
func readEntities(data []byte, secret bool) ([]*openpgp.Entity, error) {
	packets := packet.NewReader(bytes.NewReader(data))
	var out []*openpgp.Entity
	for {
		e, err := openpgp.ReadEntity(packets)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", len(out)+1, err)
		}
		if e.PrivateKey != nil && !secret {
			return nil, fmt.Errorf("key %s holds a secret key: give exported public keys (gpg --export --armor KEYID)", fingerprint(e.PrimaryKey))
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, errors.New("no OpenPGP keys found")
	}
	return out, nil
}
