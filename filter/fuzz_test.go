package filter

import (
	"os"
	"path/filepath"
	"testing"
)

// fuzzSeeds are the filters of docs/filtering.md and some of libxml2's odd corners.
var fuzzSeeds = []string{
	`/*[local-name()="VOEvent" and @role!="test"]`,
	`//Param[@name="SNR" and @value>10]`,
	`//Param[@name="SNR" and @value>20]`,
	`//voe:VOEvent`,
	`//voe::VOEvent`,
	`//Who[AuthorIVORN="ivo://example.observatory/survey"]`,
	`count(//Param)`,
	`count(//Table)`,
	`string(//Why/@importance)`,
	`string(//Who/AuthorIVORN)`,
	`boolean(//Citations/EventIVORN[@cite="retraction"])`,
	`number(//Param[@name="Packet_Type"]/@value) = 61`,
	`number(//Param[@name="Nope"]/@value)`,
	`@role = "observation"`,
	`/VOEvent`,
	`//Param[@name="Retracted"]/@value = "false"`,
	`//Param[@name="Retracted" and @value="true"]`,
	`"false"`,
	`0 div 0`,
	`1 div 0`,
	`-0`,
	`starts-with(@ivorn, "ivo://example.observatory/")`,
	`//Position2D/Value2/C1 > 100 and //Position2D/Value2/C2 < 0`,
	`re:test(//Param/@name, "^S")`,
	`//Param[@name="Packet_Type" and @value="61"]`,
	`count(//Param) > 30`,
	`(//Param)[last()][1]/ancestor-or-self::node()[2]/namespace::*`,
	`count(//Param,`,
	`/ /*`,
	`a ordinal`,
	`substring("12345", 1.5, 2.6)`,
	`translate(normalize-space(concat(@role, " ", name(/*))), "abc", "AB")`,
	`id("x")|//*[lang("en")]|//processing-instruction('p')|//comment()`,
	`--"5" mod -(1e3) div .5`,
	`(count(//Param))[1]`,
	`following::node()[position() > last() - 3]/preceding-sibling::*[1]`,
}

// FuzzCompile: Compile never panics, and whatever compiles evaluates on
// the sample event without a panic (only XPath errors).
func FuzzCompile(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	d, err := Parse([]byte(sampleEvent))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		flt, err := Compile(expr)
		if err != nil {
			return
		}
		if flt.String() != expr {
			t.Fatalf("String() = %q", flt.String())
		}
		d.evaluate(flt) // panics on anything but an XPath error
		fresh, _ := Parse([]byte(sampleEvent))
		fresh.Eval(flt, DefaultBudget)
	})
}

// FuzzParse: Parse never panics, and the filters run on what it accepts.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sampleEvent))
	if raw, err := os.ReadFile("testdata/tricky.xml"); err == nil {
		f.Add(raw)
	}
	f.Add([]byte(`<a xmlns:p="u" p:x="1&#10;2"><![CDATA[x]]><?pi d?><!--c--></a>`))
	encoded, _ := filepath.Glob(filepath.Join("..", "testdata", "encodings", "*.xml"))
	for _, name := range encoded { // UTF-16, UTF-32, code pages, contradicting declarations
		if raw, err := os.ReadFile(name); err == nil {
			f.Add(raw)
		}
	}
	var fs []*Filter
	for _, s := range fuzzSeeds {
		if flt, err := Compile(s); err == nil {
			fs = append(fs, flt)
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		d, err := Parse(payload)
		if err != nil {
			return
		}
		for _, flt := range fs {
			d.evaluate(flt)
		}
		d.MatchAny(fs, DefaultBudget, nil)
	})
}
