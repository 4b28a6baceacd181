package voevent

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comet-go/comet/xmlsafe"
)

// Schema mutation tests: the (schema-valid) benchmark workload broken in one
// targeted way. Verdicts agree with libxml2 (xmllint against the VOEvent
// 2.0 schema, with lxml's CDATA merging).

func base(t testing.TB) string {
	return string(readTestdata(t, "bench", "gbm_flt_pos_v20.xml"))
}

// mutate replaces the first occurrence of old, which must exist.
func mutate(t testing.TB, doc, old, new string) string {
	t.Helper()
	if !strings.Contains(doc, old) {
		t.Fatalf("mutation anchor %q not found", old)
	}
	return strings.Replace(doc, old, new, 1)
}

// cut removes the element starting at open through the first close after it.
func cut(t testing.TB, doc, open, close, with string) string {
	t.Helper()
	i := strings.Index(doc, open)
	j := strings.Index(doc[i:], close)
	if i < 0 || j < 0 {
		t.Fatalf("element %q not found", open)
	}
	return doc[:i] + with + doc[i+j+len(close):]
}

func TestSchemaRejects(t *testing.T) {
	b := base(t)
	const ref = `<Reference uri="http://gcn.gsfc.nasa.gov/fermi.html" type="url" />`
	tests := []struct {
		name, doc string
		names     string // the message must name this element
	}{
		{"unknown element", mutate(t, b, "<How>", "<Foo/><How>"), "'Foo'"},
		{"unknown attribute", mutate(t, b, `<Param name="Packet_Type"`, `<Param foo="1" name="Packet_Type"`), "'foo'"},
		{"bad dataType", mutate(t, b, `<Param name="Packet_Type"`, `<Param dataType="double" name="Packet_Type"`), "'dataType'"},
		{"bad float in C1", mutate(t, b, "<C1>193.0000</C1>", "<C1>1,5</C1>"), "'C1'"},
		{"Date with a space", mutate(t, b, "<Date>2011-09-04T03:54:51</Date>", "<Date>2011-09-04 03:54:51</Date>"), "'Date'"},
		{"Date with leading blank", mutate(t, b, "<Date>2011-09-04T03:54:51</Date>", "<Date>\n 2011-09-04T03:54:51</Date>"), "'Date'"},
		{"Date without seconds", mutate(t, b, "<Date>2011-09-04T03:54:51</Date>", "<Date>2011-09-04T03:54</Date>"), "'Date'"},
		{"duplicate Who", mutate(t, b, "<What>", "<Who/><What>"), "'Who'"},
		{"Citations Description first", mutate(t, b, `<EventIVORN cite="followup">`, `<Description>x</Description><EventIVORN cite="followup">`), "'Description'"},
		{"Citations EventIVORN after Description", mutate(t, b, "</Citations>", "<EventIVORN/></Citations>"), "'EventIVORN'"},
		{"Citations two Descriptions", mutate(t, b, "</Citations>", "<Description/></Citations>"), "'Description'"},
		{"Citations empty", cut(t, b, "<Citations>", "</Citations>", "<Citations/>"), "'Citations'"},
		{"Position2D without Error2Radius", mutate(t, b, "<Error2Radius>17.4333</Error2Radius>", ""), "'Position2D'"},
		{"Position2D without Value2", cut(t, b, "<Value2>", "</Value2>", ""), "'Position2D'"},
		{"Value2 without C2", mutate(t, b, "<C2>-31.7500</C2>", ""), "'Value2'"},
		{"namespaced child", strings.Replace(strings.Replace(b, "<How>", "<voe:How>", 1), "</How>", "</voe:How>", 1), "How'"},
		{"text inside What", mutate(t, b, "<What>", "<What>hello"), "'What'"},
		{"version 2.1", mutate(t, b, `version="2.0"`, `version="2.1"`), "'version'"},
		{"version missing", mutate(t, b, `version="2.0"`, ``), "'version'"},
		{"ivorn missing", mutate(t, b, `ivorn="ivo://nasa.gsfc.gcn/Fermi#GBM_Flt_Pos_2011-09-04T03:54:36.02_336801278_45-956"`, ``), "'ivorn'"},
		{"role not in enumeration", mutate(t, b, `role="observation"`, `role="Observation"`), "'role'"},
		{"root default namespace on children", mutate(t, b, "<voe:VOEvent", `<voe:VOEvent xmlns="`+NamespaceVOEvent20+`"`), "Who'"},
		{"How empty", cut(t, b, "<How>", "</How>", "<How/>"), "'How'"},
		{"Why empty", cut(t, b, "<Why importance=\"0.5\">", "</Why>", `<Why importance="0.5"/>`), "'Why'"},
		{"Inference empty", cut(t, b, `<Inference probability="0.5">`, "</Inference>", "<Inference/>"), "'Inference'"},
		{"Author empty", cut(t, b, "<Author>", "</Author>", "<Author/>"), "'Author'"},
		{"probability above 1", mutate(t, b, `probability="0.5"`, `probability="1.0000001"`), "'probability'"},
		{"importance not a float", mutate(t, b, `importance="0.5"`, `importance="high"`), "'importance'"},
		{"expires not a dateTime", mutate(t, b, `<Why importance="0.5">`, `<Why importance="0.5" expires="tomorrow">`), "'expires'"},
		{"coordinate system not in enumeration", mutate(t, b, `<AstroCoordSystem id="UTC-FK5-GEO" />`, `<AstroCoordSystem id="UTC-FK5-GEOX" />`), "'id'"},
		{"cite not in enumeration", mutate(t, b, `cite="followup"`, `cite="follow-up"`), "'cite'"},
		{"Reference without uri", mutate(t, b, ref, `<Reference type="url"/>`), "'Reference'"},
		{"Reference with whitespace content", mutate(t, b, ref, `<Reference uri="http://x/">`+"\n"+`</Reference>`), "'Reference'"},
		{"AstroCoordSystem with content", mutate(t, b, `<AstroCoordSystem id="UTC-FK5-GEO" />`, `<AstroCoordSystem id="UTC-FK5-GEO"><x/></AstroCoordSystem>`), "'AstroCoordSystem'"},
		{"child inside a text element", mutate(t, b, "<Description>The Fermi-GBM location of a transient.</Description>", "<Description>The <b>Fermi</b></Description>"), "'Description'"},
		{"child inside EventIVORN", mutate(t, b, "</EventIVORN>", "<x/></EventIVORN>"), "'EventIVORN'"},
		{"bad percent escape in anyURI", mutate(t, b, "<AuthorIVORN>ivo://nasa.gsfc.tan/gcn</AuthorIVORN>", "<AuthorIVORN>ivo://a%zz</AuthorIVORN>"), "'AuthorIVORN'"},
		{"two fragments in ivorn", mutate(t, b, `#GBM_Flt_Pos`, `#a#GBM_Flt_Pos`), "'ivorn'"},
		{"ObsDataLocation without ObservatoryLocation", mutate(t, b, `<ObservatoryLocation id="GEOLUN" />`, ``), "'ObsDataLocation'"},
		{"WhereWhen id not an NCName", mutate(t, b, "<WhereWhen>", `<WhereWhen id="1w">`), "'id'"},
		{"xml:lang not declared", mutate(t, b, "<What>", `<What xml:lang="en">`), "lang"},
		{"unknown xsi attribute", mutate(t, b, "<What>", `<What xsi:foo="1">`), "foo"},
		{"xsi:nil", mutate(t, b, "<What>", `<What xsi:nil="false">`), "'What'"},
		{"xsi:type of another type", mutate(t, b, "<What>", `<What xsi:type="voe:Who">`), "'What'"},
		{"Data without TR", mutate(t, b, "<What>", "<What><Table><Data/></Table>"), "'Data'"},
		{"TR without TD", mutate(t, b, "<What>", "<What><Table><Data><TR/></Data></Table>"), "'TR'"},
		{"Param inside Param", mutate(t, b, `<Param name="Packet_Type"    value="111" />`, `<Param name="Packet_Type"><Param/></Param>`), "'Param'"},
		{"Position3D without Value3", mutate(t, b, `<Position2D unit="deg">`, `<Position3D/><Position2D unit="deg">`), "'Position3D'"},
		{"root not VOEvent", strings.ReplaceAll(b, "voe:VOEvent", "voe:Event"), "No matching global declaration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := Inspect([]byte(tc.doc), Options{Schema: true})
			if err != nil {
				t.Fatalf("unparsable: %v", err)
			}
			if info.SchemaErr == nil {
				t.Fatal("schema valid, want invalid")
			}
			var se *SchemaError
			if !errors.As(info.SchemaErr, &se) || se.Line < 1 {
				t.Errorf("SchemaErr %#v is not a *SchemaError with a line", info.SchemaErr)
			}
			if msg := info.SchemaErr.Error(); !strings.HasPrefix(msg, "Element '") || !strings.Contains(msg, tc.names) {
				t.Errorf("message %q should be libxml2-like and name %s", msg, tc.names)
			}
		})
	}
}

func TestSchemaAccepts(t *testing.T) {
	b := base(t)
	small := func(body string) string {
		return `<voe:VOEvent xmlns:voe="` + NamespaceVOEvent20 + `" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xs="http://www.w3.org/2001/XMLSchema" version="2.0" role="test" ivorn="ivo://example.org/x#1">` + body + `</voe:VOEvent>`
	}
	tests := []struct{ name, doc string }{
		{"empty EventIVORN", mutate(t, b, `<EventIVORN cite="followup">ivo://nasa.gsfc.gcn/Fermi#GBM_Alert_2011-09-04T03:54:36.02_336801278_1-954</EventIVORN>`, `<EventIVORN cite="supersedes"/>`)},
		{"Who empty", cut(t, b, "<Who>", "</Who>", "<Who/>")},
		{"VOEvent with zero children", small("")},
		{"VOEvent with whitespace only", small("\n  \n")},
		{"ISOTime arbitrary string", mutate(t, b, "<ISOTime>2011-09-04T03:54:36.02</ISOTime>", "<ISOTime>yesterday at noon</ISOTime>")},
		{"comments and PIs anywhere", strings.NewReplacer("<What>", "<!-- c --><What><?pi x?>", "<C1>", "<C1><!-- in a float -->", "<Reference uri=\"http://gcn.gsfc.nasa.gov/fermi.html\" type=\"url\" />", "<Reference uri=\"http://gcn.gsfc.nasa.gov/fermi.html\" type=\"url\"><!-- ok --></Reference>").Replace(b)},
		{"float split by a comment", mutate(t, b, "<C1>193.0000</C1>", "<C1>19<!-- x -->3</C1>")},
		{"CDATA float", mutate(t, b, "<C1>193.0000</C1>", "<C1><![CDATA[193]]></C1>")},
		{"blank CDATA in element-only content", mutate(t, b, "<What>", "<What><![CDATA[  ]]>")},
		{"character-reference blanks in element-only content", mutate(t, b, "<What>", "<What>&#32;&#10;")},
		{"version with blanks", mutate(t, b, `version="2.0"`, `version=" 2.0 "`)},
		{"role absent (schema default)", mutate(t, b, `role="observation"`, ``)},
		{"xsi:schemaLocation on a child", mutate(t, b, "<What>", `<What xsi:schemaLocation="a b">`)},
		{"xsi:noNamespaceSchemaLocation", mutate(t, b, "<What>", `<What xsi:noNamespaceSchemaLocation="x.xsd">`)},
		{"xsi:type of the declared type", mutate(t, b, "<What>", `<What xsi:type="voe:What">`)},
		{"xsi:type xs:string", small(`<Description xsi:type="xs:string">x</Description>`)},
		{"xsi:type xs:float", small(`<WhereWhen><ObsDataLocation><ObservatoryLocation/><ObservationLocation><AstroCoordSystem/><AstroCoords><Position2D><Value2><C1 xsi:type="xs:float">1</C1><C2>1</C2></Value2><Error2Radius>1</Error2Radius></Position2D></AstroCoords></ObservationLocation></ObsDataLocation></WhereWhen>`)},
		{"namespace declaration on a child", mutate(t, b, "<What>", `<What xmlns:foo="urn:foo">`)},
		{"empty default namespace on a child", mutate(t, b, "<What>", `<What xmlns="">`)},
		{"spaces in anyURI", mutate(t, b, "<AuthorIVORN>ivo://nasa.gsfc.tan/gcn</AuthorIVORN>", "<AuthorIVORN>ivo://nasa gsfc</AuthorIVORN>")},
		{"Table without Data", mutate(t, b, "<What>", `<What><Table name="t"><Field name="a" dataType="float"/></Table>`)},
		{"Table with two Data", mutate(t, b, "<What>", "<What><Table><Data><TR><TD>1</TD></TR></Data><Data><TR><TD/></TR></Data></Table>")},
		{"Param with repeated children", mutate(t, b, `<Param name="Packet_Type"    value="111" />`, `<Param name="Packet_Type"><Value>1</Value><Value>2</Value><Description/><Reference uri="a"/></Param>`)},
		{"empty What, Group, WhereWhen", small(`<What><Group/></What><WhereWhen id="w1"/>`)},
		{"two ObsDataLocations", mutate(t, b, "</ObsDataLocation>", "</ObsDataLocation><ObsDataLocation><ObservatoryLocation/><ObservationLocation><AstroCoordSystem/><AstroCoords/></ObservationLocation></ObsDataLocation>")},
		{"Position3D", cut(t, b, `<Position2D unit="deg">`, "</Position2D>", `<Position3D unit="m"><Value3><C3>3</C3><C1>1</C1><C2>2</C2></Value3></Position3D>`)},
		{"Position2D children in any order", mutate(t, b, "<Name1>RA</Name1>", "")},
		{"Time with Error and TimeOffset", mutate(t, b, "<ISOTime>2011-09-04T03:54:36.02</ISOTime>", "<TimeOffset> 1e3 </TimeOffset><TimeScale>TT</TimeScale></TimeInstant><Error>INF</Error><TimeInstant>")},
		{"float edge forms", mutate(t, b, "<C1>193.0000</C1>", "<C1>1e</C1>")},
		{"Date with zone and fraction", mutate(t, b, "<Date>2011-09-04T03:54:51</Date>", "<Date>2011-09-04T03:54:51.25-05:00</Date>")},
		{"probability rounding to 1 in float32", mutate(t, b, `probability="0.5"`, `probability="1.00000001"`)},
		{"Who children in any order", small(`<Who><Date>2011-09-04T03:54:51Z</Date><Author><contributor>a</contributor><title>b</title></Author><AuthorIVORN/></Who>`)},
		{"Why mixed", small(`<Why importance="1" expires="2030-01-01T00:00:00Z"><Name/><Concept/><Name/><Inference relation="r"><Name/></Inference></Why>`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := Inspect([]byte(tc.doc), Options{Schema: true})
			if err != nil {
				t.Fatalf("unparsable: %v", err)
			}
			if info.SchemaErr != nil {
				t.Errorf("schema: %v, want valid", info.SchemaErr)
			}
		})
	}
}

// A validation failure never hides the facts the broker needs.
func TestSchemaErrorKeepsInfo(t *testing.T) {
	doc := mutate(t, base(t), "<How>", "<Foo/><How>")
	info, err := Inspect([]byte(doc), Options{Schema: true})
	if err != nil || info.SchemaErr == nil {
		t.Fatalf("%v %v", err, info.SchemaErr)
	}
	if info.Author != "ivo://nasa.gsfc.tan/gcn" || info.Role != "observation" || info.RootEnd != len(bytes.TrimRight([]byte(doc), "\n")) {
		t.Errorf("info after a schema error: %+v", *info)
	}
}

func BenchmarkInspectSchema(b *testing.B) {
	payload := readTestdata(b, "bench", "gbm_flt_pos_v20.xml")
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		info, err := Inspect(payload, Options{Schema: true})
		if err != nil || info.SchemaErr != nil {
			b.Fatal(err, info.SchemaErr)
		}
	}
}

func BenchmarkInspect(b *testing.B) {
	payload := readTestdata(b, "bench", "gbm_flt_pos_v20.xml")
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := Inspect(payload, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkInspectSchemaParallel(b *testing.B) {
	payload := readTestdata(b, "bench", "gbm_flt_pos_v20.xml")
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if info, err := Inspect(payload, Options{Schema: true}); err != nil || info.SchemaErr != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzInspect: never panics, and the result is self-consistent.
func FuzzInspect(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdataDir, "voevents", "*.xml"))
	files = append(files, filepath.Join(testdataDir, "bench", "gbm_flt_pos_v20.xml"),
		filepath.Join(testdataDir, "openpgp", "event-signed-twice.xml"))
	encoded, _ := filepath.Glob(filepath.Join(testdataDir, "encodings", "*.xml")) // UTF-16, UTF-32, code pages, ...
	files = append(files, encoded...)
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b, true)
		}
	}
	f.Add([]byte(`<!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>`), true)
	f.Add([]byte(`<?xml version="1.0" encoding="ISO-8859-1"?><r role="test">caf`+"\xe9"+`</r>`), false)
	f.Add([]byte(`<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" version="2.0" ivorn="ivo://a.b/c#d"><Who><Date>2011-09-04T03:54:51</Date></Who></voe:VOEvent>`), true)
	f.Fuzz(func(t *testing.T, payload []byte, schema bool) {
		orig := bytes.Clone(payload)
		info, err := Inspect(payload, Options{Schema: schema})
		if !bytes.Equal(orig, payload) {
			t.Fatal("Inspect modified its input")
		}
		if err != nil {
			if info != nil || !errors.Is(err, ErrUnparsable) {
				t.Fatalf("error %v with info %v", err, info)
			}
			return
		}
		// The root span is bytes of the payload in its own encoding.
		lt, errLT := xmlsafe.Encode(payload, []byte("<"))
		gt, errGT := xmlsafe.Encode(payload, []byte(">"))
		_, enc, _ := xmlsafe.Decode(payload)
		stateful := enc == "ISO-2022-JP" || enc == "HZ-GB-2312" // the span may start with a shift sequence
		if errLT != nil || errGT != nil || info.RootStart < 0 || info.RootStart >= info.RootEnd || info.RootEnd > len(payload) ||
			!stateful && (!bytes.HasPrefix(payload[info.RootStart:], lt) || !bytes.HasSuffix(payload[:info.RootEnd], gt)) {
			t.Fatalf("bad root span [%d, %d) in %s", info.RootStart, info.RootEnd, enc)
		}
		if !schema && info.SchemaErr != nil {
			t.Fatal("SchemaErr without Options.Schema")
		}
		if info.SchemaErr != nil && !strings.HasPrefix(info.SchemaErr.Error(), "Element '") {
			t.Fatalf("odd schema message %q", info.SchemaErr)
		}
		if schema {
			// Validation never changes what is read.
			plain, err := Inspect(payload, Options{})
			if err != nil {
				t.Fatalf("unparsable only without schema: %v", err)
			}
			info.SchemaErr = nil
			if *plain != *info {
				t.Fatalf("Info differs with schema validation: %+v vs %+v", *plain, *info)
			}
		}
		ValidIVOID(info.IVORN)
		CheckEventIVORN(info.IVORN)
	})
}
