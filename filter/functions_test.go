package filter

import (
	"slices"
	"testing"
)

func TestUnknownFunctions(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`//Param[@name="SNR" and number(@value) > 5]`, nil},
		{`//Param[ends-with(@name, "ID")]`, []string{"ends-with"}},
		{`count(//What[matches(., "x")] | //How[exsl:node-set(.)]) > lower-case("A") or ends-with("a", "a")`,
			[]string{"matches", "exsl:node-set", "lower-case", "ends-with"}},
		{`-foo(1) = (bar())[1]/Param[baz()]`, []string{"foo", "bar", "baz"}},
	} {
		f, err := Compile(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		if got := f.UnknownFunctions(); !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, want %q", c.expr, got, c.want)
		}
	}
}
