package whitelist_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comet-go/comet/internal/tlstest"
	"github.com/comet-go/comet/whitelist"
)

// Fingerprints are read as openssl prints them and in the other common
// spellings; the set changes in place, and a bad list leaves it as it was.
func TestCerts(t *testing.T) {
	a := tlstest.SelfSigned(t, tlstest.Options{CN: "a"}).Cert
	b := tlstest.SelfSigned(t, tlstest.Options{CN: "b"}).Cert
	fp := whitelist.Fingerprint(a)
	if len(fp) != 95 || strings.ToUpper(fp) != fp || strings.Count(fp, ":") != 31 {
		t.Fatalf("fingerprint %q is not openssl's form", fp)
	}
	plain := strings.ReplaceAll(fp, ":", "")
	for _, s := range []string{fp, strings.ToLower(fp), plain, "sha256 Fingerprint=" + fp, "SHA256:" + plain, "  " + fp + " "} {
		c, err := whitelist.NewCerts([]string{s})
		if err != nil || !c.Allows(a) || c.Allows(b) {
			t.Errorf("%q: %v, allows a %v, b %v", s, err, err == nil && c.Allows(a), err == nil && c.Allows(b))
		}
	}
	c, _ := whitelist.NewCerts(nil)
	if c.Allows(a) || c.Len() != 0 {
		t.Error("an empty list allows a certificate")
	}
	for _, bad := range []string{"", "zz", plain[:62], plain + "00", "md5:" + plain} {
		if err := c.Set([]string{whitelist.Fingerprint(b), bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if c.Len() != 0 {
		t.Error("a refused list changed the set")
	}

	path := filepath.Join(t.TempDir(), "allowed")
	os.WriteFile(path, []byte("# broker B\n"+fp+"  # its certificate\n\n"+whitelist.Fingerprint(b)+"\n"), 0o600)
	fps, err := whitelist.ReadCertsFile(path)
	if err != nil || len(fps) != 2 {
		t.Fatalf("%v %v", fps, err)
	}
	os.WriteFile(path, []byte(fp+"\nnot-a-fingerprint\n"), 0o600)
	if _, err := whitelist.ReadCertsFile(path); err == nil || !strings.Contains(err.Error(), path+":2") {
		t.Errorf("bad line: %v", err)
	}
}
