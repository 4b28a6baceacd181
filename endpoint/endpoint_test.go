package endpoint

import "testing"

func TestParseServer(t *testing.T) {
	good := map[string]Endpoint{
		"tcp:8098":                       {"tcp", ":8098"},
		"8099":                           {"tcp", ":8099"},
		"tcp:0:interface=127.0.0.1":      {"tcp", "127.0.0.1:0"},
		"tcp6:8098":                      {"tcp6", ":8098"},
		"unix:/run/comet.sock":           {"unix", "/run/comet.sock"},
		"unix:/run/comet.sock:mode=0660": {"unix", "/run/comet.sock"},
		// HOST:PORT, as a client target is written.
		"127.0.0.1:8098": {"tcp", "127.0.0.1:8098"},
		":8098":          {"tcp", ":8098"},
		"[::1]:8099":     {"tcp", "[::1]:8099"},
		"localhost:0":    {"tcp", "localhost:0"},
	}
	for in, want := range good {
		got, err := ParseServer(in)
		if err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "tcp:", "tcp:x", "tcp:70000", "ssl:8098", "unix:", "tcp:8098:bogus=1", "host:99999", "host", "::1"} {
		if e, err := ParseServer(in); err == nil {
			t.Errorf("%q accepted as %v", in, e)
		}
	}
}

func TestParseClientCoercesLikeComet(t *testing.T) {
	good := map[string]string{
		"example.org":                    "example.org:8099",
		"example.org:9000":               "example.org:9000",
		"tcp:example.org":                "example.org:8099",
		"tcp:example.org:9000":           "example.org:9000",
		"tcp:host=example.org:port=9000": "example.org:9000",
		"127.0.0.1":                      "127.0.0.1:8099",
		"[::1]:9000":                     "[::1]:9000",
	}
	for in, want := range good {
		got, err := ParseClient(in, 8099)
		if err != nil || got.Network != "tcp" || got.Address != want {
			t.Errorf("%q: %v %v, want %s", in, got, err, want)
		}
	}
	if e, err := ParseClient("unix:/tmp/s", 8099); err != nil || e != (Endpoint{"unix", "/tmp/s"}) {
		t.Errorf("unix: %v %v", e, err)
	}
	for _, in := range []string{"", "tcp:", ":9000", "host:bad", "tcp:host=h:port=x"} {
		if e, err := ParseClient(in, 8099); err == nil {
			t.Errorf("%q accepted as %v", in, e)
		}
	}
}
