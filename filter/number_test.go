package filter

import (
	"math"
	"strings"
	"testing"
)

// TestStringToNumber is libxml2's string-to-number conversion
// (docs/filtering.md §2), which strconv.ParseFloat does not follow.
func TestStringToNumber(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		in   string
		want float64
	}{
		{"1e3", 1000},
		{"1E3", 1000},
		{"1e+3", 1000},
		{"1e-3", 0.001},
		{"+5", nan},
		{"0x10", nan},
		{"Infinity", nan},
		{"-Infinity", nan},
		{"Inf", nan},
		{"NaN", nan},
		{" 5 ", 5},
		{"\t\n 5\r\n", 5},
		{"5.", 5},
		{".5", 0.5},
		{"-.5", -0.5},
		{"1,5", nan},
		{"", nan},
		{" ", nan},
		{".", nan},
		{"-", nan}, // libxml2 2.9 gave -0
		{"-0", math.Copysign(0, -1)},
		{"- 5", nan},
		{"5 5", nan},
		{"1_000", nan},
		{"00012.50000", 12.5},
		{"1e", 1}, // libxml2 reads no exponent digits as 0
		{"1e+", 1},
		{"e3", nan},
		{".e3", nan},
		{"5.e2", 500},
		{"1e400", math.Inf(1)},
		{"-1e400", math.Inf(-1)},
		{"0e400", nan}, // 0 * pow(10, 400) = 0 * Inf
		{"1e-400", 0},
		{"\u00a05", nan}, // only space, tab, CR and LF are blanks
		{"١٢", nan},      // ASCII digits only
		{"61", 61},
		{"12.5", 12.5},
		{"-30.5", -30.5},
	}
	for _, tc := range tests {
		got := stringToNumber(tc.in)
		if !sameFloat(got, tc.want) {
			t.Errorf("stringToNumber(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestLibxml2Arithmetic: libxml2 accumulates digits in double arithmetic
// and scales with glibc's pow(10, n); those values are not always the
// correctly rounded ones strconv gives, and must not be.
func TestLibxml2Arithmetic(t *testing.T) {
	tests := []struct {
		in   string
		want float64
	}{
		{"5e23", 5.0000000000000006e+23}, // pow(10, 23) rounds up in glibc
		{"1e23", 1.0000000000000001e+23}, // ditto
		{".000364395576157456015083", 0.00036439557615745594},
		{"0.1", 0.1},
		{"0.30000000000000004", 0.30000000000000004},
	}
	for _, tc := range tests {
		if got := stringToNumber(tc.in); got != tc.want {
			t.Errorf("stringToNumber(%q) = %.17g, want %.17g", tc.in, got, tc.want)
		}
	}
}

// TestNumberToString is libxml2's number-to-string conversion (string(),
// concat(), comparisons of strings with numbers).
func TestNumberToString(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{math.Copysign(0, -1), "0"},
		{math.NaN(), "NaN"},
		{math.Inf(1), "Infinity"},
		{math.Inf(-1), "-Infinity"},
		{61, "61"},
		{-3, "-3"},
		{2147483646, "2147483646"},
		{2147483647, "2.147483647e+09"}, // INT_MAX itself is not "< INT_MAX"
		{-2147483647, "-2147483647"},
		{12.5, "12.5"},
		{0.1 + 0.2, "0.3"}, // 15 significant digits
		{1.0 / 3, "0.333333333333333"},
		{1e10, "1e+10"},
		{1.5e10, "1.5e+10"},
		{123456789.5, "123456789.5"},
		{1000000000.5, "1.0000000005e+09"}, // above 1e9: exponent form
		{0.00001, "0.00001"},
		{0.000001, "1e-06"},
		{-0.5, "-0.5"},
		{0.001, "0.001"},
		{1e21, "1e+21"},
		{100.5, "100.5"},
	}
	for _, tc := range tests {
		if got := numberToString(tc.in); got != tc.want {
			t.Errorf("numberToString(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestNumberCornersInFilters runs the conversion corners through filters,
// as a subscriber would write them.
func TestNumberCornersInFilters(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(`<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" role="observation"><What>`)
	values := []string{"1e3", "+5", "0x10", "Infinity", "NaN", " 5 ", "5.", ".5", "1,5", ""}
	for _, v := range values {
		sb.WriteString(`<Param name="p" value="` + v + `"/>`)
	}
	sb.WriteString(`</What></voe:VOEvent>`)
	d := mustParse(t, []byte(sb.String()))
	tests := []struct {
		expr string
		sent bool
	}{
		{`//Param[@value = 1000]`, true}, // 1e3
		{`//Param[@value > 999 and @value < 1001]`, true},
		{`//Param[@value = 5]`, true},                                 // " 5 " and "5."
		{`count(//Param[@value = 5]) = 2`, true},                      // but not "+5"
		{`//Param[@value = 16]`, false},                               // 0x10 is NaN
		{`//Param[@value > 1e300]`, false},                            // Infinity is NaN
		{`//Param[@value = 0.5]`, true},                               // .5
		{`//Param[@value = 1.5]`, false},                              // 1,5 is NaN
		{`count(//Param[number(@value) = number(@value)]) = 4`, true}, // 4 of 10 are numbers
		{`number(//Param[@value="+5"]/@value)`, true},                 // NaN: matches (Comet quirk)
		{`number(//Param[@value=" 5 "]/@value) - 5`, false},           // 0
		{`sum(//Param/@value)`, true},                                 // NaN
	}
	for _, tc := range tests {
		if got := sendTo(t, d, tc.expr); got != tc.sent {
			t.Errorf("%s: sent=%v, want %v", tc.expr, got, tc.sent)
		}
	}
}

func sameFloat(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return a == b && math.Signbit(a) == math.Signbit(b)
}
