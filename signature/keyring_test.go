package signature

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// binary returns the binary form of an armoured vector key file.
func binary(t *testing.T, name string) []byte {
	t.Helper()
	_, body, _, err := decodeArmour(vector(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadKeyringFile(t *testing.T) {
	k, err := LoadKeyring(filepath.Join(vectorDir, "notary.pub.asc"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(k.Fingerprints(), []string{notaryFpr}) {
		t.Fatalf("fingerprints %v", k.Fingerprints())
	}
	var nilRing *Keyring
	if nilRing.Len() != 0 || nilRing.Fingerprints() != nil {
		t.Fatal("nil keyring not empty")
	}
}

// Several keys per file, armoured (several blocks, text around them) or
// binary (concatenated exports).
func TestReadKeyringForms(t *testing.T) {
	armoured := "Keys for the test broker:\n\n" + string(vector(t, "author.pub.asc")) + "\nand\n" + string(vector(t, "listener.pub.asc"))
	bin := append(binary(t, "author.pub.asc"), binary(t, "listener.pub.asc")...)
	for name, data := range map[string][]byte{"armoured": []byte(armoured), "binary": bin, "bom": []byte("\xEF\xBB\xBF" + armoured)} {
		k, err := ReadKeyring(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(k.Fingerprints(), []string{authorFpr, listenerFpr}) {
			t.Fatalf("%s: fingerprints %v", name, k.Fingerprints())
		}
	}
}

func TestLoadKeyringDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "author.asc"), vector(t, "author.pub.asc"))
	writeFile(t, filepath.Join(dir, "notary.gpg"), binary(t, "notary.pub.asc"))
	writeFile(t, filepath.Join(dir, ".hidden"), []byte("not a key, and skipped"))
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	k, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(k.Fingerprints(), []string{authorFpr, notaryFpr}) {
		t.Fatalf("fingerprints %v", k.Fingerprints())
	}
	// A bad file is named.
	bad := filepath.Join(dir, "broken.asc")
	writeFile(t, bad, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n"))
	if _, err := LoadKeyring(dir); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("got %v, want an error naming %s", err, bad)
	}
	empty := t.TempDir()
	writeFile(t, filepath.Join(empty, ".only-hidden"), nil)
	if _, err := LoadKeyring(empty); err == nil || !strings.Contains(err.Error(), "no key files") {
		t.Fatalf("empty directory: %v", err)
	}
}

func TestKeyringErrors(t *testing.T) {
	kbx := make([]byte, 32)
	copy(kbx[8:], "KBXf")
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"keybox", kbx, "gpg --export --armor KEYID > trusted.asc"},
		{"trustdb", append([]byte{1}, "gpg\x03\x00\x00\x00"...), "trust database"},
		{"empty", nil, "no keys"},
		{"text", []byte("hello"), "no OpenPGP keys"},
		{"garbage-binary", []byte{0x99, 0x01, 0x02, 0xff, 0x00}, "key 1"},
		{"secret-key", vector(t, "author.sec.asc"), "secret key"},
		{"secret-key-binary", binary(t, "author.sec.asc"), "secret key"},
		{"signature-block", []byte("-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n"), `"PGP SIGNATURE"`},
		{"truncated", vector(t, "author.pub.asc")[:300], "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadKeyring(bytes.NewReader(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
			if tc.name == "keybox" && !errors.Is(err, ErrKeybox) {
				t.Fatalf("%v is not ErrKeybox", err)
			}
		})
	}
	if _, err := LoadKeyring(filepath.Join(t.TempDir(), "missing.asc")); err == nil || !strings.Contains(err.Error(), "missing.asc") {
		t.Fatalf("missing file: %v", err)
	}
}

// Two exports of the same key merge, so a newer export carrying a
// revocation cannot be shadowed by an older one, whatever the order.
func TestKeyringMergesCopies(t *testing.T) {
	e := genKey(t, genIVORN, nil)
	var before, after bytes.Buffer
	if err := e.Serialize(&before); err != nil {
		t.Fatal(err)
	}
	if err := e.RevokeKey(packet.KeyRetired, "superseded", keyConfig()); err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(&after); err != nil {
		t.Fatal(err)
	}
	doc := signEvent(t, e, event(genIVORN), sigOpts{})
	for name, data := range map[string][]byte{
		"old-then-new": append(append([]byte{}, before.Bytes()...), after.Bytes()...),
		"new-then-old": append(append([]byte{}, after.Bytes()...), before.Bytes()...),
	} {
		k, err := ReadKeyring(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if k.Len() != 1 {
			t.Fatalf("%s: %d keys", name, k.Len())
		}
		v := &Verifier{Trusted: k, Now: clock}
		if _, err := v.VerifyEvent(doc, genIVORN); !errors.Is(err, ErrKeyRevoked) {
			t.Fatalf("%s: got %v, want %v", name, err, ErrKeyRevoked)
		}
	}
}
