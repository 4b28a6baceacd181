package filter

import (
	"fmt"
	"testing"
)

// mustEval compiles and evaluates expr, failing on either error.
func mustEval(t testing.TB, d *Doc, expr string) value {
	t.Helper()
	f, err := Compile(expr)
	if err != nil {
		t.Fatalf("Compile(%q): %v", expr, err)
	}
	v, err := d.evaluate(f)
	if err != nil {
		t.Fatalf("evaluate(%q): %v", expr, err)
	}
	return v
}

// describe is a compact form of what expr gives: compile (syntax error),
// eval (evaluation error), nodes:N, bool:B, num:N (XPath's string form)
// or str:S.
func describe(t testing.TB, d *Doc, expr string) string {
	t.Helper()
	f, err := Compile(expr)
	if err != nil {
		return "compile"
	}
	v, err := d.evaluate(f)
	if err != nil {
		return "eval"
	}
	switch v.k {
	case vBool:
		return fmt.Sprintf("bool:%v", v.b)
	case vNum:
		return "num:" + numberToString(v.n)
	case vStr:
		return "str:" + v.s
	}
	return fmt.Sprintf("nodes:%d", len(v.ns))
}
