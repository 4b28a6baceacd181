package tap_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comet-go/comet/filter"
	"github.com/comet-go/comet/tap"
)

// The notice in every encoding Comet reads gives the same line: Params in
// their own script, decoded, the encoding named, the payload as text; and
// the filter on the non-ASCII Param value selects it.
func TestEncodedNotices(t *testing.T) {
	dir := filepath.Join("..", "testdata", "encodings")
	raw, err := os.ReadFile(filepath.Join(dir, "verdicts.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Generated struct{ Filter string }
		Variants  []struct {
			File, Comet, IVORN string
			LocError           string `json:"loc_error"`
			LocalNote          string `json:"local_note"`
		}
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	f, err := filter.Compile(v.Generated.Filter)
	if err != nil {
		t.Fatal(err)
	}
	opt := tap.Options{Payload: true, Filters: []*filter.Filter{f}}
	for _, n := range v.Variants {
		if n.Comet != "ack" || n.File == "utf-7.xml" { // UTF-7: no decoder (documented)
			continue
		}
		payload, err := os.ReadFile(filepath.Join(dir, n.File))
		if err != nil {
			t.Fatal(err)
		}
		r, _ := line(t, delivery(t, payload, 1), opt)
		params := map[string]string{}
		for _, p := range r.Params {
			params[p.Name] = p.Value
		}
		if r.ParseError != "" || r.IVORN != n.IVORN || params["Loc_Error"] != n.LocError || params["Local_Note"] != n.LocalNote {
			t.Errorf("%s: %q %q %q %q; lxml reads %q %q", n.File, r.ParseError, r.IVORN, params["Loc_Error"], params["Local_Note"], n.LocError, n.LocalNote)
		}
		utf8 := strings.HasPrefix(n.File, "utf-8") || n.File == "no-declaration.xml"
		if (r.Encoding == "") != utf8 {
			t.Errorf("%s: encoding %q", n.File, r.Encoding)
		}
		if r.Payload == nil || !strings.Contains(*r.Payload, n.LocalNote) && r.Encoding != "US-ASCII" ||
			!strings.Contains(*r.Payload, `<Param name="Loc_Error"`) {
			t.Errorf("%s: payload is not the decoded notice", n.File)
		}
	}
}
