package whitelist

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseNetworkForms(t *testing.T) {
	good := map[string]string{
		"127.0.0.1/32":              "127.0.0.1/32",
		"127.0.0.1/255.255.255.255": "127.0.0.1/32",
		"10.1.2.3/8":                "10.0.0.0/8", // host bits allowed (Comet 2012), masked
		"192.168.0.0/255.255.0.0":   "192.168.0.0/16",
		"0.0.0.0/0":                 "0.0.0.0/0",
		"::1/128":                   "::1/128",
		"2001:db8::/32":             "2001:db8::/32",
		"127.0.0.2":                 "127.0.0.2/32",
		" 127.0.0.0/8 ":             "127.0.0.0/8",
		"::ffff:127.0.0.1/32":       "127.0.0.1/32",
	}
	for in, want := range good {
		p, err := ParseNetwork(in)
		if err != nil || p.String() != want {
			t.Errorf("%q: got %v %v, want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "localhost", "127.0.0.1/33", "127.0.0.1/-1", "127.0.0.1/255.0.255.0",
		"127.0.0.1/ffff::", "1.2.3/8", "127.0.0.1/8x", "::1/129"} {
		if p, err := ParseNetwork(in); err == nil {
			t.Errorf("%q accepted as %v", in, p)
		}
	}
}

func TestAllows(t *testing.T) {
	l, err := New([]string{"127.0.0.1/32", "10.0.0.0/255.0.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	tcp := func(s string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(s), Port: 1} }
	for addr, want := range map[string]bool{
		"127.0.0.1": true, "127.0.0.2": false, "10.200.0.1": true, "11.0.0.1": false,
		"::ffff:127.0.0.1": true, "::1": false,
	} {
		if got := l.Allows(tcp(addr)); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
	if !l.Allows(&net.UnixAddr{Name: "/tmp/x", Net: "unix"}) {
		t.Error("unix peers must bypass the whitelist")
	}
	empty, _ := New(nil)
	if empty.Allows(tcp("127.0.0.1")) {
		t.Error("an empty list must refuse every TCP peer")
	}
	if d := MustDefault(); !d.Allows(tcp("8.8.8.8")) || !d.Allows(tcp("::1")) {
		t.Error("default must allow IPv4 and IPv6")
	}
}

func TestSetIsAtomicOnError(t *testing.T) {
	l, _ := New([]string{"127.0.0.1/32"})
	if err := l.Set([]string{"10.0.0.0/8", "bogus"}); err == nil {
		t.Fatal("bad network accepted")
	}
	if got := l.Networks(); len(got) != 1 || got[0] != "127.0.0.1/32" {
		t.Fatalf("list changed on error: %v", got)
	}
	if err := l.Set([]string{"10.0.0.0/8 192.168.0.0/16,172.16.0.0/12"}); err != nil || len(l.Networks()) != 3 {
		t.Fatalf("several networks in one value: %v %v", l.Networks(), err)
	}
}

func FuzzParseNetwork(f *testing.F) {
	for _, s := range []string{"127.0.0.1/32", "10.0.0.0/255.0.0.0", "::1/128", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseNetwork(s)
		if err == nil && !p.IsValid() {
			t.Fatalf("%q gave invalid prefix", s)
		}
	})
}

func TestReadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "wl")
	os.WriteFile(p, []byte("# authors\n127.0.0.1/32 10.0.0.0/255.0.0.0\n\n192.168.0.0/16, ::1 # lab\n"), 0o644)
	got, err := ReadFile(p)
	if err != nil || strings.Join(got, " ") != "127.0.0.1/32 10.0.0.0/255.0.0.0 192.168.0.0/16 ::1" {
		t.Fatalf("%q %v", got, err)
	}
	os.WriteFile(p, []byte("127.0.0.1/32\nbogus\n"), 0o644)
	if _, err := ReadFile(p); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("bad line not reported with its number: %v", err)
	}
}
