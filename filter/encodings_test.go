package filter

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestEncodedNotices: the same notice in every encoding Comet reads parses
// for filtering, and an XPath filter on a Param value holding a non-ASCII
// character matches exactly where lxml's matches
// (testdata/encodings/verdicts.json, made by lxml itself).
func TestEncodedNotices(t *testing.T) {
	dir := filepath.Join("..", "testdata", "encodings")
	raw, err := os.ReadFile(filepath.Join(dir, "verdicts.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Generated struct{ Filter string }
		Variants  []struct {
			File, Comet, LocalNote string
			FilterMatches          bool `json:"filter_matches"`
		}
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	f, err := Compile(v.Generated.Filter)
	if err != nil {
		t.Fatal(err)
	}
	note, err := Compile(`//Param[@name="Local_Note"]/@value = //What/Description`)
	if err != nil {
		t.Fatal(err)
	}
	parsed := 0
	for _, n := range v.Variants {
		payload, err := os.ReadFile(filepath.Join(dir, n.File))
		if err != nil {
			t.Fatal(err)
		}
		d, err := Parse(payload)
		if n.Comet != "ack" || n.File == "utf-7.xml" { // UTF-7: no decoder here (a documented difference)
			if err == nil {
				t.Errorf("%s: parsed; Comet refuses it", n.File)
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
	if parsed < 20 {
		t.Errorf("only %d notices parsed", parsed)
	}
}
