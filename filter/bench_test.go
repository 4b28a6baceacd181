package filter

import (
	"os"
	"strings"
	"testing"
)

const benchFile = "../testdata/bench/gbm_flt_pos_v20.xml"

const benchFilter = `//Param[@name="Packet_Type" and @value="61"]`

func benchPayload(b *testing.B) []byte {
	raw, err := os.ReadFile(benchFile)
	if err != nil {
		b.Skip("benchmark workload not found:", err)
	}
	return raw
}

// BenchmarkParse is the per-event cost of preparing an event for filtering.
func BenchmarkParse(b *testing.B) {
	raw := benchPayload(b)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMatch is one evaluation of a typical filter (memoization
// bypassed: every subscriber with a distinct filter pays this once).
func BenchmarkMatch(b *testing.B) {
	d, err := Parse(benchPayload(b))
	if err != nil {
		b.Fatal(err)
	}
	f, err := Compile(benchFilter)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		d.evalOnce(f, DefaultBudget)
	}
}

// BenchmarkMatchMemoized is what every further subscriber with the same
// interned filter pays on the same event.
func BenchmarkMatchMemoized(b *testing.B) {
	d, err := Parse(benchPayload(b))
	if err != nil {
		b.Fatal(err)
	}
	f, _ := Compile(benchFilter)
	d.Eval(f, DefaultBudget)
	b.ReportAllocs()
	for b.Loop() {
		d.Eval(f, DefaultBudget)
	}
}

// BenchmarkCompile is the cost of compiling a typical filter (once per
// distinct expression with a Cache).
func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(benchFilter); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExhaustedBudget is what a hostile filter costs per event: one
// evaluation stopped at DefaultBudget (a nested // that would take
// billions of steps), and the memory it allocates on the way.
func BenchmarkExhaustedBudget(b *testing.B) {
	d, err := Parse(benchPayload(b))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, expr string }{
		{"nested", `count(//*[count(//*[count(//*[count(//node()) > 0]) > 0]) > 0])`},
		{"strings", `//node()[string-length(concat(` + strings.Repeat(`string(/),`, 40) + `"")) > 0]`},
		{"unions", `count(//node()[count((//node()|//@*)[count(//node()|//@*|//node()) > 0]) > 0])`},
	} {
		f, err := Compile(bc.expr)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d.evalOnce(f, DefaultBudget) != OverBudget {
					b.Fatal("within the budget")
				}
			}
		})
	}
}

// BenchmarkQuadraticFilter is the costliest realistic filter (issue 17's)
// on the largest real GCN notice.
func BenchmarkQuadraticFilter(b *testing.B) {
	raw, err := os.ReadFile("../testdata/voevents/Point_Dir_2017-10-26T19_40_00.00_000000-0-136.xml")
	if err != nil {
		b.Fatal(err)
	}
	d, err := Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	f, _ := Compile(`//Param[@value = //Param[@name="TrigID"]/@value and @name != "TrigID"]`)
	b.ReportAllocs()
	for b.Loop() {
		if d.evalOnce(f, DefaultBudget) != NoMatch {
			b.Fatal("matched or over budget")
		}
	}
}
