package tap

import (
	"encoding/json"
	"testing"
)

func TestNumber(t *testing.T) {
	for in, want := range map[string]json.Number{
		"216.3833":  "216.3833",
		" 18.7000 ": "18.7000", // as written
		"-0.5":      "-0.5",
		"1e-3":      "1e-3",
		"+5":        "5", // not JSON, but a number
		".5":        "0.5",
		"00":        "0",
		"":          "",
		"abc":       "",
		"NaN":       "",
		"Inf":       "",
		"1e999":     "", // out of float64 range
		"0x1p3":     "8",
		"12 13":     "",
	} {
		if got := number(in); got != want {
			t.Errorf("number(%q) = %q, want %q", in, got, want)
		}
	}
}
