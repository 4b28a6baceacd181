package filter

import (
	"os"
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
		d.matchOnce(f)
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
	d.Match(f)
	b.ReportAllocs()
	for b.Loop() {
		d.Match(f)
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
