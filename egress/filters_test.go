package egress

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/comet-go/comet/filter"
	"github.com/comet-go/comet/internal/vtptest"
)

// compileFilters fails closed: every filter sent is in the list, refused
// ones never match, and only a reply with no filter at all means every
// event.
func TestCompileFiltersFailClosed(t *testing.T) {
	b, berr := New(Config{})
	if berr != nil {
		t.Fatal(berr)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	doc, err := filter.Parse([]byte(vtptest.FilteringSample))
	if err != nil {
		t.Fatal(err)
	}
	const (
		good    = `//Param[@name="SNR" and @value>10]`
		nomatch = `//Param[@name="SNR" and @value>20]`
		bad     = `//voe::VOEvent`
	)
	long := `//Param[@name="` + strings.Repeat("x", filter.MaxExprLen) + `"]`
	many := func(n int, extra ...string) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf(`//Param[@name="p%d"]`, i))
		}
		return append(out, extra...)
	}
	for _, tc := range []struct {
		name              string
		exprs             []string
		installed, refuse int
		sent              bool
	}{
		{"no filters: every event", nil, 0, 0, true},
		{"a matching filter", []string{good}, 1, 0, true},
		{"a filter that does not match", []string{nomatch}, 1, 0, false},
		{"only a syntax error: nothing (Comet: everything)", []string{bad}, 0, 1, false},
		{"only a filter too long: nothing", []string{long}, 0, 1, false},
		{"a syntax error next to a match", []string{bad, good}, 1, 1, true},
		{"past the limit: refused", many(MaxFiltersPerSubscriber, good), MaxFiltersPerSubscriber, 1, false},
		{"past the examined limit: refused together", many(3 * MaxFiltersPerSubscriber), MaxFiltersPerSubscriber, MaxFiltersPerSubscriber + 1, false},
	} {
		fs := b.compileFilters(tc.exprs, log)
		refused := 0
		for _, f := range fs {
			if f.Refusal() != nil {
				refused++
				if doc.Eval(f, 0) != filter.NoMatch || len(f.String()) > 300 {
					t.Errorf("%s: refused filter %.40q matches or is held whole", tc.name, f.String())
				}
			}
		}
		if len(fs)-refused != tc.installed || refused != tc.refuse {
			t.Errorf("%s: %d installed, %d refused; want %d, %d", tc.name, len(fs)-refused, refused, tc.installed, tc.refuse)
		}
		if got := doc.MatchAny(fs, 0, nil); got != tc.sent {
			t.Errorf("%s: sent=%v, want %v", tc.name, got, tc.sent)
		}
	}
}
