package signature

import (
	"bytes"
	"crypto"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// The shared test vectors (testdata/openpgp/README.md).
var vectorDir = filepath.Join("..", "testdata", "openpgp")

const (
	authorFpr   = "486658CA5AAD0680E4D75E445EFA82579802FF2D"
	notaryFpr   = "E0E8D8E8F1F534682DE0178D13F349F3F74C035D"
	listenerFpr = "CBB85D4B7F4A992A9CC35AC39475EF81F46E9064"
	authorIVORN = "ivo://example.org/author"
)

// The vectors were made 2026-11-24; evaluate them the day after.
var (
	fixedNow = time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	keyTime  = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC) // creation time of generated keys
)

func clock() time.Time { return fixedNow }

func vector(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// ring reads the named vector key files (e.g. "author") into one Keyring;
// no names gives an empty (nil) ring.
func ring(t testing.TB, names ...string) *Keyring {
	t.Helper()
	if len(names) == 0 {
		return nil
	}
	var all []byte
	for _, n := range names {
		all = append(all, vector(t, n+".pub.asc")...)
	}
	k, err := ReadKeyring(bytes.NewReader(all))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// allKeys is the Others ring of the vector tables: every vector key.
func allKeys(t testing.TB) *Keyring { return ring(t, "author", "notary", "listener") }

// The vector author signer, loaded once: its S2K (65M SHA-1 iterations)
// costs a noticeable fraction of a second.
var (
	authorSignerOnce sync.Once
	authorSigner     *Signer
	authorSignerErr  error
)

func vectorSigner(t testing.TB) *Signer {
	t.Helper()
	authorSignerOnce.Do(func() {
		authorSigner, authorSignerErr = loadSigner(filepath.Join(vectorDir, "author.sec.asc"), authorFpr, filepath.Join(vectorDir, "passphrase.txt"), clock)
	})
	if authorSignerErr != nil {
		t.Fatal(authorSignerErr)
	}
	return authorSigner
}

// event composes a small VOEvent with the given AuthorIVORN.
func event(author string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" version="2.0" role="test" ivorn="ivo://example.org/test#1">
  <Who><AuthorIVORN>` + author + `</AuthorIVORN><Date>2026-11-24T12:00:00</Date></Who>
</voe:VOEvent>
`)
}

// keyConfig is the go-crypto configuration for generated keys: Ed25519
// (legacy EdDSA, which GnuPG 2.2 also reads) so that generation is fast.
func keyConfig() *packet.Config {
	return &packet.Config{
		Algorithm:   packet.PubKeyAlgoEdDSA,
		Curve:       packet.Curve25519,
		DefaultHash: crypto.SHA256,
		Time:        func() time.Time { return keyTime },
	}
}

// genKey generates a key with user ID name; mod may adjust the config.
func genKey(t testing.TB, name string, mod func(*packet.Config)) *openpgp.Entity {
	t.Helper()
	cfg := keyConfig()
	if mod != nil {
		mod(cfg)
	}
	e, err := openpgp.NewEntity(name, "", "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// pubRing serialises the public parts of ents and reads them back, as an
// operator's exported key file would be.
func pubRing(t testing.TB, ents ...*openpgp.Entity) *Keyring {
	t.Helper()
	var buf bytes.Buffer
	for _, e := range ents {
		if err := e.Serialize(&buf); err != nil {
			t.Fatal(err)
		}
	}
	k, err := ReadKeyring(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sigOpts adjusts a hand-made signature.
type sigOpts struct {
	created  time.Time // default keyTime + 1h
	lifetime uint32
	hash     crypto.Hash // default SHA-256
	sigType  packet.SignatureType
	sub      int // sign with Subkeys[sub-1] when > 0
}

// signArmour makes a detached signature over data with e's primary key (or
// a subkey), bypassing go-crypto's own checks so that tests can make the
// signatures a careless or hostile signer would.
func signArmour(t testing.TB, e *openpgp.Entity, data []byte, o sigOpts) []byte {
	t.Helper()
	pub, priv := e.PrimaryKey, e.PrivateKey
	if o.sub > 0 {
		pub, priv = e.Subkeys[o.sub-1].PublicKey, e.Subkeys[o.sub-1].PrivateKey
	}
	if o.created.IsZero() {
		o.created = keyTime.Add(time.Hour)
	}
	if o.hash == 0 {
		o.hash = crypto.SHA256
	}
	id := pub.KeyId
	sig := &packet.Signature{
		Version:           pub.Version,
		SigType:           o.sigType,
		PubKeyAlgo:        pub.PubKeyAlgo,
		Hash:              o.hash,
		CreationTime:      o.created,
		IssuerKeyId:       &id,
		IssuerKeyVersion:  uint8(pub.Version),
		IssuerFingerprint: pub.Fingerprint,
	}
	if o.lifetime != 0 {
		sig.SigLifetimeSecs = &o.lifetime
	}
	cfg := plainConfig(o.created)
	h, err := sig.PrepareSign(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(data)
	if err := sig.Sign(h, priv, cfg); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, "PGP SIGNATURE", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sig.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	buf.WriteByte('\n')
	return buf.Bytes()
}

// signEvent signs span A of payload with e and appends the comment.
func signEvent(t testing.TB, e *openpgp.Entity, payload []byte, o sigOpts) []byte {
	t.Helper()
	a, _, err := Spans(payload)
	if err != nil {
		t.Fatal(err)
	}
	return Append(payload, signArmour(t, e, a, o))
}

// plainConfig signs at time at without go-crypto's salt notation, which it
// cannot make for SHA-1 (a hash the tests need to see refused).
func plainConfig(at time.Time) *packet.Config {
	no := false
	return &packet.Config{Time: func() time.Time { return at }, NonDeterministicSignaturesViaNotation: &no}
}
