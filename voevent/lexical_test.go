package voevent

import "testing"

// The expected verdicts below are libxml2's (2.9.14, via xmllint against the
// VOEvent 2.0 schema), element content unless noted; quirks included.

func TestValidFloat(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"193.0000", true}, {"-31.7500", true}, {"0", true},
		{"1", true}, {"-1", true}, {"+1", true}, {"1.", true}, {".5", true}, {".", false}, {"-", false}, {"+", false},
		{"1e5", true}, {"1E-5", true},
		{"1e", true}, {"1e+", true}, {"1.5e-", true}, // libxml2 does not require exponent digits
		{"INF", true}, {"-INF", true}, {"+INF", false}, {"NaN", true}, {"-NaN", false},
		{" INF", true}, {"INF ", false}, {" NaN", true}, {"NaN ", false}, // no trailing blanks after INF/NaN
		{" 1.5 ", true}, {"\n1.5\n", true}, {"1 5", false}, {"1,5", false},
		{"0x10", false}, {"1.5f", false}, {"inf", false}, {"nan", false}, {"", false}, {" ", false},
		{"1e400", true}, {"--1", false}, {"+-1", false}, {"1.2.3", false}, {"١", false},
	}
	for _, tc := range tests {
		if got := validFloat([]byte(tc.in)); got != tc.want {
			t.Errorf("validFloat(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// Inference/@probability: xs:float restricted to [0, 1], compared as float32.
func TestValidSmallFloat(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"0", true}, {"1", true}, {"1.0", true}, {"0.5", true}, {"-0", true}, {"-0.0", true},
		{"1.0000001", false}, {"1.00000001", true}, // rounds to 1 as a float32
		{"2", false}, {"-0.1", false}, {"NaN", false}, {"INF", false}, {"-INF", false},
		{" 0.5", true}, {"0.5 ", true}, {"1e-50", true}, {"-1e-50", true}, {"1e", true}, {".5", true}, {"x", false},
	}
	for _, tc := range tests {
		if got := validSmallFloat([]byte(tc.in)); got != tc.want {
			t.Errorf("validSmallFloat(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestValidDateTime(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"2011-09-04T03:54:51", true}, {"2016-07-01T00:39:01.052121", true}, {"2019-05-01T00:40:17Z", true},
		{"2011-09-04 03:54:51", false}, // space instead of T
		{" 2011-09-04T03:54:51", false}, {"2011-09-04T03:54:51 ", false}, {"\n2011-09-04T03:54:51\n", false},
		{"2011-09-04T03:54:51Z ", true}, // blanks only after a time zone
		{"2011-09-04T03:54", false}, {"2011-09-04T24:00:00", true}, {"2011-09-04T24:00:01", false},
		{"2011-09-04T24:00:00.0", true}, {"2011-09-04T24:00:00.1", false},
		{"2011-02-29T00:00:00", false}, {"2012-02-29T00:00:00", true}, {"1900-02-29T00:00:00", false}, {"2000-02-29T00:00:00", true},
		{"2011-09-04T03:54:51.", false}, {"2011-09-04T03:54:51.5Z", true},
		{"2011-09-04T03:54:51+14:00", true}, {"2011-09-04T03:54:51+14:01", false}, {"2011-09-04T03:54:51-05:30", true},
		{"2011-09-04T03:54:51+5:30", false}, {"-2011-09-04T03:54:51", true}, {"20110-09-04T03:54:51", true},
		{"02011-09-04T03:54:51", false}, {"0000-09-04T03:54:51", false}, {"2011-9-04T03:54:51", false},
		{"2011-09-04T03:60:00", false}, {"2011-09-04T03:59:60", false}, {"2011-09-04t03:54:51", false},
		{"2011-09-04T03:54:51z", false}, {"2011-09-04", false}, {"", false}, {"2011-09-04T03:54:51+00:00Z", false},
		{"2011-13-04T03:54:51", false}, {"2011-09-31T03:54:51", false}, {"2011-09-00T03:54:51", false},
		{"+2011-09-04T03:54:51", false}, {"2011-09-04T3:54:51", false}, {"2011-09-04T03:54:51.123456789", true},
		{"99999999999999999999-01-01T00:00:00", false},
	}
	for _, tc := range tests {
		if got := validDateTime([]byte(tc.in)); got != tc.want {
			t.Errorf("validDateTime(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestValidAnyURI(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"ivo://nasa.gsfc.tan/gcn", true}, {"ivo://testing#111", true},
		{"http://x/a b", true}, // spaces pass (replaced before parsing)
		{"a%zz", false}, {"a%2F", true}, {"a#b#c", false}, {"a#b", true}, {"#", true}, {"", true}, {" ", true},
		{"http://host:80/x", true}, {"http://host:/x", false}, {"http://host:ab/x", false},
		{"http://[::1]/x", true}, {"http://[::1/x", false}, {"http://x/[a]", false}, {"http://x/a#[b]", true}, {"http://x/a?[b]", false},
		{"1abc:def", false}, {":x", false}, {"a_b:c", false}, {"a:b", true}, {"ivo://nasa/gcn", true}, {"a/b:c", true},
		{"mailto:a@b", true}, {"http://u:p@h/x", true}, {"http://u@h@x/", false}, {"é", true}, {"http://x/é", true},
		{`a\b`, true}, {"a|b", true}, {"a'b", true}, {"a{b}", true}, {"http://x/%41", true}, {"http://x/%4", false},
		{"http://h:99999999999/x", false}, {"urn:x:y", true}, {"//host", true}, {"//host:12", true}, {"///x", true},
		{"http:x", true}, {"http:", true}, {"a?b?c", true}, {"a?b#c?d", true}, {"ht tp://x", false},
	}
	for _, tc := range tests {
		if got := validAnyURI([]byte(tc.in)); got != tc.want {
			t.Errorf("validAnyURI(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// Namespace names are parsed as they stand: libxml2 reports an error (fatal
// for lxml) for anything that is not a URI reference.
func TestValidNamespaceName(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{NamespaceVOEvent20, true}, {"http://www.w3.org/2001/XMLSchema-instance", true}, {"urn:x", true},
		{"rel", true}, {"", true}, {" ", false}, {"a b", false}, {"a%zz", false}, {"é", false}, {"<!--c-->", false},
		{"2011-09-04T03:54:51", false},
	}
	for _, tc := range tests {
		if got := validNamespaceName([]byte(tc.in)); got != tc.want {
			t.Errorf("validNamespaceName(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestValidNCName(t *testing.T) {
	for in, want := range map[string]bool{"w1": true, " w1 ": true, "_a.b-c": true, "1w": false, "a:b": false, "a b": false, "": false, "é": true} {
		if got := validNCName([]byte(in)); got != want {
			t.Errorf("validNCName(%q) = %v, want %v", in, got, want)
		}
	}
}
