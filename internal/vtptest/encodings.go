package vtptest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// EncodedNotice is one file of testdata/encodings: the same real notice in
// one encoding, with what Comet (lxml 4.9.2 on libxml2 2.9.14) does with it
// (verdicts.json, written by testdata/encodings/generate.py).
type EncodedNotice struct {
	File, What string
	Data       []byte `json:"-"`
	// Comet is Comet's verdict, "ack" or "no reply", which this broker
	// must give too.
	Comet     string
	LxmlError string `json:"lxml_error"`
	// What lxml reads from an acked notice, and whether the filter
	// (EncodedNotices' first result) matches it.
	IVORN         string
	LocError      string `json:"loc_error"`
	LocalNote     string `json:"local_note"`
	Description   string
	FilterMatches bool `json:"filter_matches"`
}

// EncodedNotices reads dir (testdata/encodings): the XPath filter on the
// notices' non-ASCII Param value, and every notice.
func EncodedNotices(t testing.TB, dir string) (filter string, notices []EncodedNotice) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "verdicts.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Generated struct{ Filter string }
		Variants  []EncodedNotice
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	for i := range v.Variants {
		n := &v.Variants[i]
		if n.Data, err = os.ReadFile(filepath.Join(dir, n.File)); err != nil {
			t.Fatal(err)
		}
	}
	if len(v.Variants) < 40 || v.Generated.Filter == "" {
		t.Fatalf("%s: %d notices, filter %q", dir, len(v.Variants), v.Generated.Filter)
	}
	return v.Generated.Filter, v.Variants
}
