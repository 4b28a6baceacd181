package signature

import (
	"bytes"
	"strings"
	"testing"
)

func TestDecodeArmour(t *testing.T) {
	blocks, err := Blocks(vector(t, "event-signed-author.xml"))
	if err != nil {
		t.Fatal(err)
	}
	good := string(blocks[0].Armour)
	_, want, _, err := decodeArmour([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(good, "\n")
	body := strings.Join(lines[2:len(lines)-3], "\n") // base64 lines only
	for _, tc := range []struct {
		name, in string
		ok       bool
		want     string // error text
	}{
		{"as-is", good, true, ""},
		{"crlf", strings.ReplaceAll(good, "\n", "\r\n"), true, ""},
		{"headers", strings.Replace(good, "-----\n\n", "-----\nVersion: GnuPG v2\nComment: https://example.org/a:b\n\n", 1), true, ""},
		{"no-blank-line", strings.Replace(good, "-----\n\n", "-----\n", 1), true, ""},
		{"no-crc", strings.Replace(good, "=Thcj\n", "", 1), true, ""},
		{"text-around", "preamble\n" + good + "trailer\n", true, ""},
		{"indented", strings.ReplaceAll(good, "\n", "\n  "), true, ""},
		{"wrong-end", strings.Replace(good, "END PGP SIGNATURE", "END PGP MESSAGE", 1), false, `expected "-----END PGP SIGNATURE-----"`},
		{"no-end", strings.Replace(good, "-----END PGP SIGNATURE-----\n", "", 1), false, "truncated"},
		{"bad-crc-line", strings.Replace(good, "=Thcj", "=Th!j", 1), false, "checksum"},
		{"no-begin", body, false, "no ASCII armour"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ, got, _, err := decodeArmour([]byte(tc.in))
			if tc.ok {
				if err != nil || typ != "PGP SIGNATURE" || !bytes.Equal(got, want) {
					t.Fatalf("%q %x %v", typ, got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCRC24(t *testing.T) {
	// RFC 4880's initial value is the CRC of no data.
	if crc24(nil) != 0xB704CE {
		t.Fatalf("%06X", crc24(nil))
	}
	if got := crc24([]byte("123456789")); got != 0x21CF02 { // CRC-24/OPENPGP check value
		t.Fatalf("%06X", got)
	}
}
