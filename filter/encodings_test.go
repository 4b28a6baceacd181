package filter

import (
	"path/filepath"
	"testing"

	"github.com/comet-go/comet/internal/vtptest"
)

// TestEncodedNotices: the same notice in every encoding Comet reads parses
// for filtering, and an XPath filter on a Param value holding a non-ASCII
// character matches exactly where lxml's matches
// (testdata/encodings/verdicts.json, made by lxml itself).
func TestEncodedNotices(t *testing.T) {
	expr, notices := vtptest.EncodedNotices(t, filepath.Join("..", "testdata", "encodings"))
	f, err := Compile(expr)
	if err != nil {
		t.Fatal(err)
	}
	note, err := Compile(`//Param[@name="Local_Note"]/@value = //What/Description`)
	if err != nil {
		t.Fatal(err)
	}
	parsed := 0
	for _, n := range notices {
		d, err := Parse(n.Data)
		if n.Comet != "ack" {
			if err == nil {
				t.Errorf("%s: parsed; the receiver refuses it", n.File)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", n.File, err)
			continue
		}
		parsed++
		if (d.Eval(f, 0) == Match) != n.FilterMatches {
			t.Errorf("%s: filter %s matches: %v, lxml: %v", n.File, f, !n.FilterMatches, n.FilterMatches)
		}
		if d.Eval(note, 0) != Match {
			t.Errorf("%s: the Local_Note Param and the Description, both in the encoding's script, differ", n.File)
		}
	}
	if parsed < 25 {
		t.Errorf("only %d notices parsed", parsed)
	}
}
