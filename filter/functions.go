package filter

// UnknownFunctions lists, in order of appearance and once each, the
// functions f calls that XPath 1.0 does not define (prefixed names
// included: no prefix is bound). Such a filter compiles, as in libxml2,
// but every evaluation of such a call fails; callers warn about it.
func (f *Filter) UnknownFunctions() []string {
	var out []string
	seen := map[string]bool{}
	var walk func(e expr)
	walk = func(e expr) {
		switch e := e.(type) {
		case *orExpr:
			walk(e.l)
			walk(e.r)
		case *andExpr:
			walk(e.l)
			walk(e.r)
		case *eqExpr:
			walk(e.l)
			walk(e.r)
		case *cmpExpr:
			walk(e.l)
			walk(e.r)
		case *arithExpr:
			walk(e.l)
			walk(e.r)
		case *unionExpr:
			walk(e.l)
			walk(e.r)
		case *negExpr:
			walk(e.x)
		case *parenExpr:
			walk(e.x)
		case *funcCall:
			if e.fn == fnUnknown {
				name := e.name
				if e.prefix != "" {
					name = e.prefix + ":" + name
				}
				if !seen[name] {
					seen[name] = true
					out = append(out, name)
				}
			}
			for _, a := range e.args {
				walk(a)
			}
		case *filterExpr:
			walk(e.prim)
			for _, p := range e.preds {
				walk(p)
			}
		case *pathExpr:
			walk(e.from)
			for _, s := range e.steps {
				for _, p := range s.preds {
					walk(p)
				}
			}
		}
	}
	walk(f.root)
	return out
}
