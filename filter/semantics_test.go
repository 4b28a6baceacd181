package filter

import (
	"context"
	"log/slog"
	"maps"
	"os"
	"strings"
	"testing"
	"time"
)

// TestPrefixesAndUnknownFunctions: no prefix is bound (but "xml", which
// libxml2 always binds); a prefixed name test, an unknown function and a
// variable compile and then fail when evaluated, so the filter does not
// match. A syntax error fails to compile.
func TestPrefixesAndUnknownFunctions(t *testing.T) {
	d := mustParse(t, []byte(sampleEvent))
	tests := []struct{ expr, want string }{
		{`//voe:VOEvent`, "eval"}, // not a match against voe-prefixed elements
		{`/voe:VOEvent`, "eval"},
		{`//voe:*`, "eval"},
		{`//@xsi:schemaLocation`, "eval"},
		{`count(//voe:VOEvent)`, "eval"},
		{`not(//voe:VOEvent)`, "eval"}, // an error, not an empty node-set
		{`re:test(//Param/@name, "^S")`, "eval"},
		{`str:tokenize("a b")`, "eval"},
		{`foo()`, "eval"},
		{`ends-with(@ivorn, "42")`, "eval"}, // XPath 2.0; libxml2 does not know it
		{`matches(@ivorn, "42")`, "eval"},
		{`lower-case(@role)`, "eval"},
		{`$x`, "eval"},
		{`$voe:x`, "eval"},
		{`count()`, "eval"},        // wrong arity: evaluation error in libxml2
		{`count("a")`, "eval"},     // wrong type
		{`position()`, "eval"},     // no context position outside a predicate
		{`last()`, "eval"},         //
		{`1 | 2`, "eval"},          // union of non-node-sets
		{`"a"/b`, "eval"},          // step from a non-node-set
		{`//@xml:lang`, "nodes:0"}, // "xml" is bound
		{`xml:foo()`, "eval"},
		{`//voe::VOEvent`, "compile"},
		{`//Param[`, "compile"},
		{`//Param]`, "compile"},
		{`count(//Param`, "compile"},
		{`count(//Param,`, "num:3"}, // libxml2 lets the input end an argument list
		{`count(`, "eval"},          // ... even an empty one
		{``, "compile"},
		{`@`, "compile"},
		{`*:Param`, "compile"},
		{`//Param[.5 = 0.5e0]`, "nodes:3"},
	}
	for _, tc := range tests {
		if got := describe(t, d, tc.expr); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.expr, got, tc.want)
		}
	}
}

// TestLazyErrors: libxml2 evaluates only what it needs, so an error that
// is never reached does not spoil the filter.
func TestLazyErrors(t *testing.T) {
	d := mustParse(t, []byte(sampleEvent))
	tests := []struct {
		expr string
		sent bool
	}{
		{`true() or foo()`, true},
		{`false() and foo()`, false},
		{`false() or foo()`, false},
		{`//Nope[voe:x]`, false},                              // predicate never evaluated
		{`not(//Nope[voe:x])`, true},                          // so this is just not(empty)
		{`//Nope/voe:x`, false},                               // a step is checked even on an empty set
		{`not(//Nope/voe:x)`, false},                          // ... so this errors
		{`//Param[@name="SNR" or $v]`, false},                 // $v reached for Packet_Type
		{`/*/What/Param[@name="Packet_Type" or $v][1]`, true}, // [1] stops at the first match
		{`//Param[@name="Packet_Type" or $v][1]`, false},      // ... of each parent: Group's Param reaches $v
		{`(//Param)[@name="Packet_Type" or $v][1]`, true},
		{`//What[Param[@name="Packet_Type" or $v]]`, false},
		{`(count(//Param))[1]`, true},  // libxml2's "(...)[1]" lets a number through
		{`(count(//Param))[2]`, false}, // ... but not "[2]"
		{`(number("x"))[last()]`, true},
		{`5/.`, true}, // "." is no step at all
		// libxml2's "(...)[1]" evaluation stops early and prunes a union.
		{`((//Param)[@name="Packet_Type" or $v])[1]`, true},
		{`((//Param)[@name="SNR" or $v])[1]`, false},
		{`(What/Param[1] | What/Param[@name="SNR" or $v])[1]`, true},
		{`(What/Param[2] | What/Param[@name="SNR" or $v])[1]`, false},
		{`(What/Param[1] | What/Param[@name="SNR" or $v])[2]`, false},
		{`(count(//Param))[last()][1]`, true},
	}
	for _, tc := range tests {
		if got := sendTo(t, d, tc.expr); got != tc.sent {
			t.Errorf("%s: sent=%v, want %v", tc.expr, got, tc.sent)
		}
	}
}

// TestContextAndTruthiness: relative paths start at the root element,
// absolute ones at the document; results match as Comet's Python test
// does on what lxml returns.
func TestContextAndTruthiness(t *testing.T) {
	d := mustParse(t, []byte(`<?xml version="1.0"?>
<!-- before -->
<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" role="test" ivorn="ivo://x/y#z">
  <Who><AuthorIVORN>ivo://x/y</AuthorIVORN></Who>
</voe:VOEvent>
<!-- after -->`))
	tests := []struct {
		expr string
		sent bool
	}{
		{`@role = "test"`, true},
		{`Who/AuthorIVORN`, true},
		{`/Who`, false},
		{`/*/Who`, true},
		{`.`, true},
		{`/*`, true},
		{`count(/node()) = 3`, true}, // two comments and the root element
		{`/comment()`, true},
		{`/`, false},  // lxml drops the document node from its result list
		{`..`, false}, // the document again
		{`/ | /*`, true},
		{`"false"`, true},
		{`""`, false},
		{`0`, false},
		{`-0`, false},
		{`0 div 0`, true}, // NaN matches (Python's bool(nan) is True)
		{`boolean(0 div 0)`, false},
		{`-1 div 0`, true},
		{`false()`, false},
		{`string(/)`, true},
	}
	for _, tc := range tests {
		if got := sendTo(t, d, tc.expr); got != tc.sent {
			t.Errorf("%s: sent=%v, want %v", tc.expr, got, tc.sent)
		}
	}
}

// TestMatchAnyRule: filters are OR'd, no filter means everything, and a
// refused filter never matches (so a list of refused filters lets nothing
// through).
func TestMatchAnyRule(t *testing.T) {
	d := mustParse(t, []byte(sampleEvent))
	yes, _ := Compile(`@role`)
	no, _ := Compile(`@nope`)
	bad, _ := Compile(`$x`)
	_, err := Compile(`//voe::VOEvent`)
	refused := Refuse(`//voe::VOEvent`, err)
	if refused.Refusal() != err || refused.String() != `//voe::VOEvent` || yes.Refusal() != nil {
		t.Errorf("refused filter: %q %v; compiled filter's refusal: %v", refused, refused.Refusal(), yes.Refusal())
	}
	for _, tc := range []struct {
		fs   []*Filter
		want bool
	}{
		{nil, true},
		{[]*Filter{}, true},
		{[]*Filter{no}, false},
		{[]*Filter{no, bad}, false},
		{[]*Filter{no, bad, yes}, true},
		{[]*Filter{nil}, false},
		{[]*Filter{refused}, false},
		{[]*Filter{Refuse("", nil)}, false},
		{[]*Filter{refused, yes}, true},
	} {
		if got := d.MatchAny(tc.fs, DefaultBudget, nil); got != tc.want {
			t.Errorf("MatchAny(%v) = %v, want %v", tc.fs, got, tc.want)
		}
	}
	var nilDoc *Doc
	if nilDoc.Eval(yes, DefaultBudget) == Match {
		t.Error("a nil Doc matched")
	}
}

// TestCompileLimits: the named length limit, and errors in the form the
// broadcaster logs.
func TestCompileLimits(t *testing.T) {
	long := `//Param[@name="` + strings.Repeat("x", MaxExprLen) + `"]`
	if _, err := Compile(long); err == nil || !strings.HasPrefix(err.Error(), `Filter "//Param`) ||
		!strings.Contains(err.Error(), "is not valid XPath") || len(err.Error()) > 200 {
		t.Errorf("long expression: %v", err)
	}
	atLimit := `"` + strings.Repeat("x", MaxExprLen-2) + `"`
	if _, err := Compile(atLimit); err != nil {
		t.Errorf("expression of exactly MaxExprLen bytes: %v", err)
	}
	_, err := Compile(`//voe::VOEvent`)
	if err == nil || !strings.HasPrefix(err.Error(), `Filter "//voe::VOEvent" is not valid XPath: `) {
		t.Errorf("syntax error message: %v", err)
	}
	deep := strings.Repeat("(", 499) + "1" + strings.Repeat(")", 499)
	if _, err := Compile(deep); err != nil {
		t.Errorf("499 nested parentheses: %v", err)
	}
	if _, err := Compile("(" + deep + ")"); err == nil {
		t.Error("500 nested parentheses compiled; libxml2 refuses them")
	}
	for _, bad := range []string{"\x00", "//Param[@name='\x01']", "\xff", "//\uFFFE"} {
		if _, err := Compile(bad); err == nil {
			t.Errorf("Compile(%q) succeeded", bad)
		}
	}
	f, _ := Compile(`//Param`)
	if f.String() != `//Param` {
		t.Errorf("String() = %q", f.String())
	}
}

// TestEvaluationBudget: a filter built to be slow is stopped by its budget
// and does not match; an honest one is far below it.
func TestEvaluationBudget(t *testing.T) {
	raw, err := os.ReadFile(benchFile)
	if err != nil {
		t.Fatal(err)
	}
	d := mustParse(t, raw)
	slow := []string{
		`count(//*[count(//*[count(//*[count(//node()) > 0]) > 0]) > 0]) >= 0`,
		`count(//node()[count(following::node()[count(preceding::node()) > 0]) > 0]) >= 0`,
		`count(//node()[string-length(concat(` + strings.Repeat(`string(/),`, 40) + `"")) > 0]) > 0`,
	}
	for _, e := range slow {
		f, err := Compile(e)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := d.evaluate(f); err == nil || !strings.Contains(err.Error(), "step limit") {
			t.Errorf("%s: want the step limit, got %v", e, err)
		}
		if got := d.Eval(f, DefaultBudget); got != OverBudget {
			t.Errorf("%s: %v, want over budget", e, got)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("%s took %v", e, el)
		}
	}
	f, _ := Compile(benchFilter)
	ev := &evaluator{d: d, limit: DefaultBudget}
	ev.run(f.root)
	if ev.steps > DefaultBudget/100 {
		t.Errorf("a typical filter used %d steps", ev.steps)
	}
}

// TestBudgetPerEvaluation: a filter over its budget is OverBudget (no
// match) and reported; the same filter on the same Doc under another
// budget is evaluated afresh, not answered from the memo.
func TestBudgetPerEvaluation(t *testing.T) {
	d := mustParse(t, []byte(sampleEvent))
	f, _ := Compile(`//Param[@value = //Param/@value]`)
	steps, within := f.Steps(d, 0)
	if !within || steps < 10 {
		t.Fatalf("%d steps, within=%v", steps, within)
	}
	var over []*Filter
	if d.MatchAny([]*Filter{f}, steps-1, func(f *Filter) { over = append(over, f) }) {
		t.Error("matched over its budget")
	}
	if len(over) != 1 || over[0] != f {
		t.Errorf("reported over budget: %v", over)
	}
	if got := d.Eval(f, steps-1); got != OverBudget {
		t.Errorf("under %d steps: %v", steps-1, got)
	}
	if got := d.Eval(f, steps); got != Match {
		t.Errorf("under %d steps (exactly enough): %v", steps, got)
	}
	if got := d.Eval(f, 0); got != Match {
		t.Errorf("under the default budget: %v", got)
	}
	if got, within := f.Steps(d, MaxBudget*4); got != steps || !within {
		t.Errorf("Steps beyond MaxBudget: %d %v", got, within)
	}
}

// TestOverBudgetLog: the first time a filter exhausts its budget is
// logged at once; then at most one line per interval and filter, counting
// the events missed since the last line.
func TestOverBudgetLog(t *testing.T) {
	var lines []slog.Record
	h := recordHandler(func(r slog.Record) { lines = append(lines, r) })
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &OverBudgetLog{Logger: slog.New(h), Budget: 1000, Interval: time.Minute, now: func() time.Time { return now }}
	a, _ := Compile(`//a`)
	b, _ := Compile(`//b`)
	l.Report(a) // logged
	l.Report(a)
	l.Report(b) // logged: another filter
	now = now.Add(30 * time.Second)
	l.Report(a)
	now = now.Add(31 * time.Second)
	l.Report(a) // logged: a minute since a's line, 3 events missed
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3", len(lines))
	}
	attrs := func(r slog.Record) map[string]string {
		m := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
		return m
	}
	for i, want := range []map[string]string{
		{"filter": "//a", "budget": "1000", "missed_events": "1"},
		{"filter": "//b", "budget": "1000", "missed_events": "1"},
		{"filter": "//a", "budget": "1000", "missed_events": "3"},
	} {
		if got := attrs(lines[i]); !maps.Equal(got, want) || lines[i].Level != slog.LevelWarn {
			t.Errorf("line %d: %v %v, want %v", i, lines[i].Level, got, want)
		}
	}
}

// recordHandler is a slog.Handler calling fn with each record.
type recordHandler func(slog.Record)

func (h recordHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error { h(r); return nil }
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h recordHandler) WithGroup(string) slog.Handler                 { return h }
