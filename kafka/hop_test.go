package kafka

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/voevent"
)

func readTestdata(t *testing.T, path ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"..", "testdata"}, path...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// GCN's records and hop-client 0.12+ carry the XML itself: relayed byte
// for byte, a byte-order mark and leading white space included.
func TestDecodeRawXMLIsTheValueItself(t *testing.T) {
	raw := readTestdata(t, "voevents", "GRB180116A_Fermi_GBM_Flt_Pos.xml")
	for _, value := range [][]byte{raw, append([]byte("\xef\xbb\xbf\n  "), raw...)} {
		for _, format := range []string{"", "voevent", "VOEvent"} {
			got, form, err := Decode(value, format)
			if err != nil || form != FormXML || !bytes.Equal(got, value) {
				t.Fatalf("format %q: form %v, err %v, same bytes %v", format, form, err, bytes.Equal(got, value))
			}
		}
	}
}

// An old envelope whose content is the XML text gives those bytes back.
func TestDecodeEnvelopeWithXMLTextGivesTheBytes(t *testing.T) {
	raw := readTestdata(t, "voevents", "AMON_151115.xml")
	env, _ := json.Marshal(map[string]any{"format": "voevent", "content": string(raw)})
	got, form, err := Decode(env, "")
	if err != nil || form != FormEnvelopeXML || !bytes.Equal(got, raw) {
		t.Fatalf("form %v, err %v, same bytes %v", form, err, bytes.Equal(got, raw))
	}
}

// hop-client 0.6–0.11 (with a _format header) and the old envelope (with
// an object as content) carry xmltodict's rendering: the rebuilt document
// is a VOEvent with the same ivorn, role and author, and rendered again
// the way hop-client does it gives the same JSON: nothing was lost or
// added.
func TestDecodeHopJSONRebuildsAnEquivalentVOEvent(t *testing.T) {
	for _, name := range []string{"GRB180116A_Fermi_GBM_Flt_Pos", "AMON_151115", "S190510g-1-Preliminary"} {
		t.Run(name, func(t *testing.T) {
			orig, err := voevent.Inspect(readTestdata(t, "voevents", name+".xml"), voevent.Options{})
			if err != nil {
				t.Fatal(err)
			}
			rendering := readTestdata(t, "hop", name+".json")
			envelope := readTestdata(t, "hop", name+".envelope.json")
			viaHeader, form, err := Decode(rendering, "voevent")
			if err != nil || form != FormRebuilt {
				t.Fatalf("rendering: form %v, err %v", form, err)
			}
			viaEnvelope, form, err := Decode(envelope, "")
			if err != nil || form != FormRebuilt {
				t.Fatalf("envelope: form %v, err %v", form, err)
			}
			if !bytes.Equal(viaHeader, viaEnvelope) {
				t.Fatal("the two JSON forms rebuild different documents")
			}
			info, err := voevent.Inspect(viaHeader, voevent.Options{Schema: true})
			if err != nil {
				t.Fatalf("rebuilt document does not parse: %v\n%s", err, viaHeader)
			}
			if info.IVORN != orig.IVORN || info.Role != orig.Role || info.Author != orig.Author ||
				info.RootSpace != VOEventNamespace || info.RootLocal != "VOEvent" || info.Version != "2.0" {
				t.Fatalf("rebuilt %+v, original %+v", info, orig)
			}
			if info.SchemaErr != nil {
				t.Fatalf("rebuilt document is not valid VOEvent 2.0: %v\n%s", info.SchemaErr, viaHeader)
			}
			want, err := parseObject(rendering)
			if err != nil {
				t.Fatal(err)
			}
			if got := hopRendering(t, viaHeader); !reflect.DeepEqual(got, want) {
				g, _ := json.Marshal(toPlain(got))
				w, _ := json.Marshal(toPlain(want))
				t.Fatalf("rendering of the rebuilt document differs:\n got %s\nwant %s", g, w)
			}
		})
	}
}

// hopRendering is what hop-client 0.6–0.11 makes of an XML document:
// xmltodict.parse(doc, attr_prefix="") (attributes and children as
// members in document order, repeated children as an array, stripped text
// as "#text" or, alone, as the value; an empty element is null), the
// root's members without the namespaced ones, in the order of hop's
// VOEvent fields, with {} for the sections the document lacks.
func hopRendering(t *testing.T, doc []byte) object {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	var root any
	var stack []*xmlNode
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			n := &xmlNode{}
			for _, a := range tk.Attr {
				n.members = append(n.members, member{qname(a.Name), a.Value})
			}
			n.name = qname(tk.Name)
			stack = append(stack, n)
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text.Write(tk)
			}
		case xml.EndElement:
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			v := n.value()
			if len(stack) == 0 {
				root = v
				continue
			}
			p := stack[len(stack)-1]
			p.add(n.name, v)
		}
	}
	r := root.(object)
	fields := []string{"ivorn", "role", "version", "Who", "What", "WhereWhen", "How", "Why", "Citations", "Description", "Reference"}
	var out object
	for _, f := range fields {
		v, ok := r.get(f)
		switch {
		case ok:
			out = append(out, member{f, v})
		case f == "role":
			out = append(out, member{f, "observation"})
		case f == "version":
			out = append(out, member{f, "2.0"})
		case f != "ivorn":
			out = append(out, member{f, object{}})
		}
	}
	return out
}

type xmlNode struct {
	name    string
	members object
	text    bytes.Buffer
}

func (n *xmlNode) add(name string, v any) {
	for i := range n.members {
		if n.members[i].key == name {
			if arr, ok := n.members[i].val.([]any); ok {
				n.members[i].val = append(arr, v)
			} else {
				n.members[i].val = []any{n.members[i].val, v}
			}
			return
		}
	}
	n.members = append(n.members, member{name, v})
}

func (n *xmlNode) value() any {
	text := strings.TrimSpace(n.text.String())
	if len(n.members) == 0 {
		if text == "" {
			return nil
		}
		return text
	}
	if text != "" {
		n.members = append(n.members, member{"#text", text})
	}
	return n.members
}

func qname(n xml.Name) string {
	if n.Space != "" {
		return n.Space + ":" + n.Local
	}
	return n.Local
}

func toPlain(v any) any {
	switch v := v.(type) {
	case object:
		var kv []any
		for _, m := range v {
			kv = append(kv, []any{m.key, toPlain(m.val)})
		}
		return kv
	case []any:
		var out []any
		for _, e := range v {
			out = append(out, toPlain(e))
		}
		return out
	}
	return v
}

// A value that is not a JSON object is the XML, in any encoding, handed
// on as it is for the parser to judge.
func TestDecodeAnythingElseIsHandedOnAsXML(t *testing.T) {
	for _, v := range []string{"hello", "\xff\xfe<\x00r\x00/\x00>\x00", "\x00<\x00r\x00/\x00>", "GRB 180116A"} {
		got, form, err := Decode([]byte(v), "")
		if err != nil || form != FormXML || string(got) != v {
			t.Fatalf("%q: form %v, err %v", v, form, err)
		}
	}
}

// Values that carry no VOEvent are refused with a typed error, never
// relayed: the source logs, counts, commits and skips them.
func TestDecodeRefusesWhatIsNotAVOEvent(t *testing.T) {
	deep := strings.Repeat(`{"a":`, MaxJSONDepth+2) + `"x"` + strings.Repeat("}", MaxJSONDepth+2)
	cases := []struct {
		name, value, format string
		want                error
	}{
		{"empty", "", "", ErrEmpty},
		{"white space", " \r\n\t", "", ErrEmpty},
		{"other format header", `<voe:VOEvent/>`, "circular", ErrNotVOEvent},
		{"JSON without header or envelope", `{"ivorn":"ivo://a/b#c"}`, "", ErrNotVOEvent},
		{"envelope of another format", `{"format":"blob","content":"<a/>"}`, "", ErrNotVOEvent},
		{"envelope text not XML", `{"format":"voevent","content":"hi"}`, "", ErrBadJSON},
		{"envelope content a number", `{"format":"voevent","content":3}`, "", ErrBadJSON},
		{"rendering without ivorn", `{"role":"observation"}`, "voevent", ErrNotVOEvent},
		{"broken JSON", `{"ivorn":`, "voevent", ErrBadJSON},
		{"data after the object", `{"ivorn":"ivo://a/b#c"} {}`, "voevent", ErrBadJSON},
		{"too deep", deep, "voevent", ErrBadJSON},
		{"element name not XML", `{"ivorn":"ivo://a/b#c","What":{"a b":"x"}}`, "voevent", ErrBadJSON},
		{"element name markup", `{"ivorn":"ivo://a/b#c","What":{"x><y":"x"}}`, "voevent", ErrBadJSON},
	}
	for _, c := range cases {
		if _, _, err := Decode([]byte(c.value), c.format); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
}

// Text and attribute values are escaped: markup in a JSON string cannot
// inject elements, and the result is still one well-formed event.
func TestRebuildEscapesText(t *testing.T) {
	value := `{"ivorn":"ivo://a/b#c\"><x","role":"test","What":{"Param":{"name":"a&b","value":"<v>"},"Description":"1 < 2 & </What>"}}`
	doc, _, err := Decode([]byte(value), "voevent")
	if err != nil {
		t.Fatal(err)
	}
	info, err := voevent.Inspect(doc, voevent.Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	if info.IVORN != `ivo://a/b#c"><x` {
		t.Fatalf("ivorn %q", info.IVORN)
	}
	for _, want := range []string{`name="a&amp;b"`, `value="&lt;v&gt;"`, `<Description>1 &lt; 2 &amp; &lt;/What&gt;</Description>`} {
		if !strings.Contains(string(doc), want) {
			t.Fatalf("%s missing from\n%s", want, doc)
		}
	}
}

func TestParseHeartbeat(t *testing.T) {
	for _, v := range []string{`{"alert_datetime": "2026-11-01T12:00:01.5Z"}`, `{"alert_datetime": "2026-11-01T12:00:01.500000+00:00"}`} {
		got, err := ParseHeartbeat([]byte(v))
		if err != nil || !got.Equal(mustTime("2026-11-01T12:00:01.5Z")) {
			t.Fatalf("%s: %v %v", v, got, err)
		}
	}
	for _, v := range []string{``, `{}`, `{"alert_datetime": 5}`, `{"alert_datetime": "yesterday"}`} {
		if _, err := ParseHeartbeat([]byte(v)); err == nil {
			t.Fatalf("%q accepted", v)
		}
	}
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}
