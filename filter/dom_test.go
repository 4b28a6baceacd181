package filter

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/text/encoding/charmap"

	"github.com/comet-go/comet/xmlsafe"
)

// TestParseRefuses: what libxml2 (through lxml) refuses, and what the
// broker refuses on principle (any DTD, deep nesting).
func TestParseRefuses(t *testing.T) {
	const ns = `xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0"`
	tests := []struct {
		name, doc string
		is        error
	}{
		{"DTD", `<!DOCTYPE voe:VOEvent><voe:VOEvent ` + ns + `/>`, xmlsafe.ErrDTD},
		{"external entity", `<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>`, xmlsafe.ErrDTD},
		{"undefined entity", `<x>&nbsp;</x>`, nil},
		{"too deep", strings.Repeat("<a>", xmlsafe.DefaultMaxDepth+1) + strings.Repeat("</a>", xmlsafe.DefaultMaxDepth+1), xmlsafe.ErrTooDeep},
		{"no root", `<?xml version="1.0"?><!-- only a comment -->`, xmlsafe.ErrNoRoot},
		{"empty", ``, xmlsafe.ErrNoRoot},
		{"two roots", `<a/><b/>`, nil},
		{"text after root", `<a/>text`, nil},
		{"text before root", `text<a/>`, nil},
		{"unclosed", `<a><b></b>`, nil},
		{"mismatched", `<a><b></a></b>`, nil},
		{"undeclared prefix", `<voe:VOEvent/>`, nil},
		{"undeclared attribute prefix", `<a p:x="1"/>`, nil},
		{"duplicate attribute", `<a x="1" x="2"/>`, nil},
		{"duplicate namespaced attribute", `<a xmlns:p="u" xmlns:q="u" p:x="1" q:x="2"/>`, nil},
		{"duplicate declaration", `<a xmlns:p="u" xmlns:p="v"/>`, nil},
		{"empty prefixed namespace", `<a xmlns:p=""/>`, nil},
		{"rebound xml prefix", `<a xmlns:xml="urn:x"/>`, nil},
		{"misplaced declaration", ` <?xml version="1.0"?><a/>`, nil},
		{"unsupported encoding", `<?xml version="1.0" encoding="UTF-16"?><a/>`, nil},
		{"bad QName", `<a:b:c xmlns:a="u"/>`, nil},
		{"not XML", "\x00\x01", nil},
	}
	for _, tc := range tests {
		_, err := Parse([]byte(tc.doc))
		if err == nil {
			t.Errorf("%s: parsed", tc.name)
			continue
		}
		if !errors.Is(err, ErrNotWellFormed) {
			t.Errorf("%s: %v is not ErrNotWellFormed", tc.name, err)
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: %v is not %v", tc.name, err, tc.is)
		}
	}
	deepest := strings.Repeat("<a>", xmlsafe.DefaultMaxDepth) + strings.Repeat("</a>", xmlsafe.DefaultMaxDepth)
	if _, err := Parse([]byte(deepest)); err != nil {
		t.Errorf("nesting of exactly %d: %v", xmlsafe.DefaultMaxDepth, err)
	}
}

// TestParseTree: the tree is the one libxml2 builds.
func TestParseTree(t *testing.T) {
	doc := "\xEF\xBB\xBF<?xml version=\"1.0\"?>\r\n<!-- c -->\r\n<?p  data ?>\r\n" +
		"<voe:VOEvent xmlns:voe=\"http://www.ivoa.net/xml/VOEvent/v2.0\" a=\"x\ty\r\nz\" b=\"x&#9;y&#10;z\" xml:lang=\"en\">\r\n" +
		"<T>one\r\ntwo<![CDATA[<three>]]>four</T><E></E><D xmlns=\"urn:d\"><X/></D><xml-ok/></voe:VOEvent>"
	d := mustParse(t, []byte(doc))
	tests := []struct{ expr, want string }{
		{`string(@a)`, "str:x y z"},              // literal tab and newline normalized
		{`string(@b)`, "str:x\ty\nz"},            // character references kept
		{`string(T)`, "str:one\ntwo<three>four"}, // CRLF normalized, CDATA merged
		{`count(T/text())`, "num:1"},
		{`count(E/node())`, "num:0"},
		{`count(/node())`, "num:3"}, // comment, PI, root
		{`string(/processing-instruction())`, "str:data "},
		{`name(/processing-instruction())`, "str:p"},
		{`string(/comment())`, "str: c "},
		{`count(@*)`, "num:3"}, // xmlns is not an attribute
		{`name(@*[3])`, "str:xml:lang"},
		{`lang("EN")`, "bool:true"},
		{`count(D)`, "num:0"}, // D is in the default namespace urn:d
		{`count(*[local-name()="D"]/X)`, "num:0"},
		{`namespace-uri(*[local-name()="D"]/*)`, "str:urn:d"},
		{`count(namespace::*)`, "num:2"}, // xml and voe
		{`count(*[local-name()="D"]/*/namespace::*)`, "num:3"},
		{`count(xml-ok)`, "num:1"},
	}
	for _, tc := range tests {
		if got := describe(t, d, tc.expr); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// TestParseEncodings: the legacy encodings xmlsafe accepts.
func TestParseEncodings(t *testing.T) {
	for _, enc := range []struct {
		label string
		cm    *charmap.Charmap
	}{{"ISO-8859-1", charmap.ISO8859_1}, {"windows-1252", charmap.Windows1252}} {
		body, err := enc.cm.NewEncoder().String(`<?xml version="1.0" encoding="` + enc.label + `"?><a v="café">né</a>`)
		if err != nil {
			t.Fatal(err)
		}
		d := mustParse(t, []byte(body))
		if !sendTo(t, d, `@v = "café" and . = "né"`) {
			t.Errorf("%s: text not decoded", enc.label)
		}
	}
}

// TestParseKeepsPayload: Parse neither changes the payload nor keeps it.
func TestParseKeepsPayload(t *testing.T) {
	payload := []byte(sampleEvent)
	orig := bytes.Clone(payload)
	d := mustParse(t, payload)
	if !bytes.Equal(payload, orig) {
		t.Fatal("Parse modified the payload")
	}
	for i := range payload {
		payload[i] = ' '
	}
	if !sendTo(t, d, `//Who[AuthorIVORN="ivo://example.observatory/survey"]`) {
		t.Fatal("the Doc depends on the payload's bytes")
	}
}

func TestParseReservedNamespaces(t *testing.T) {
	for _, doc := range []string{
		`<a xmlns="http://www.w3.org/XML/1998/namespace"/>`,
		`<a xmlns:p="http://www.w3.org/2000/xmlns/"/>`,
		`<a xmlns="http://www.w3.org/2000/xmlns/"/>`,
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s parsed; libxml2 refuses it", doc)
		}
	}
	for _, doc := range []string{
		`<a xmlns:xml="http://www.w3.org/XML/1998/namespace"/>`,
		`<a x="http://www.w3.org/2000/xmlns/"/>`,
	} {
		if _, err := Parse([]byte(doc)); err != nil {
			t.Errorf("%s: %v", doc, err)
		}
	}
}
