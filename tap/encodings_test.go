package tap_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/comet-go/comet/filter"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/tap"
)

// The notice in every encoding Comet reads gives the same line: Params in
// their own script, decoded, the encoding named, the payload as text; and
// the filter on the non-ASCII Param value selects it.
func TestEncodedNotices(t *testing.T) {
	expr, notices := vtptest.EncodedNotices(t, filepath.Join("..", "testdata", "encodings"))
	f, err := filter.Compile(expr)
	if err != nil {
		t.Fatal(err)
	}
	opt := tap.Options{Payload: true, Filters: []*filter.Filter{f}}
	for _, n := range notices {
		if n.Comet != "ack" {
			continue
		}
		r, _ := line(t, delivery(t, n.Data, 1), opt)
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
