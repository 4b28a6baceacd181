package filter

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// This is libxml2's XPath compiler (xpath.c, xmlXPathCompileExpr and the
// functions it calls) transcribed function by function, so that exactly
// the expressions libxml2 accepts compile, with its quirks: "and", "or",
// "div" and "mod" are matched as raw characters ("@a or@b", "a ordinal" =
// "a or dinal"), "/ /a" is "/a", an unclosed function call at the very end
// ("count(//a") compiles. Names of functions, variables and namespace
// prefixes are not checked here: libxml2 resolves them only when the
// expression is evaluated, so an unknown one is an evaluation error.

// expr is a node of the compiled expression.
type expr interface{}

type (
	orExpr  struct{ l, r expr }
	andExpr struct{ l, r expr }
	eqExpr  struct {
		l, r expr
		neq  bool
	}
	cmpExpr struct {
		l, r   expr
		less   bool // < or <=
		strict bool // < or >
	}
	arithExpr struct {
		l, r expr
		op   byte // + - * / (div) % (mod)
	}
	// negExpr is a run of unary minus: flip for an odd count, otherwise
	// only the conversion to number.
	negExpr struct {
		x    expr
		flip bool
	}
	unionExpr struct{ l, r expr }
	parenExpr struct{ x expr } // only around a function call, see compPrimaryExpr
	litString struct{ s string }
	litNumber struct{ n float64 }
	varRef    struct{ prefix, name string }
	funcCall  struct {
		prefix, name string
		fn           builtin
		args         []expr
	}
	// filterExpr is a primary expression with predicates. sorted records
	// whether libxml2 put a SORT op on the primary (a parenthesized
	// expression that is not a bare literal), which enables its "[1]"
	// shortcut.
	filterExpr struct {
		prim   expr
		sorted bool
		preds  []expr
	}
	// pathExpr starts at the document (root), at the context node, or at
	// the node-set from (a filter expression), then takes steps.
	pathExpr struct {
		from  expr
		root  bool
		steps []*step
	}
)

type axisKind uint8

const (
	axisAncestor axisKind = iota + 1
	axisAncestorOrSelf
	axisAttribute
	axisChild
	axisDescendant
	axisDescendantOrSelf
	axisFollowing
	axisFollowingSibling
	axisNamespace
	axisParent
	axisPreceding
	axisPrecedingSibling
	axisSelf
)

var axisNames = map[string]axisKind{
	"ancestor": axisAncestor, "ancestor-or-self": axisAncestorOrSelf,
	"attribute": axisAttribute, "child": axisChild, "descendant": axisDescendant,
	"descendant-or-self": axisDescendantOrSelf, "following": axisFollowing,
	"following-sibling": axisFollowingSibling, "namespace": axisNamespace,
	"parent": axisParent, "preceding": axisPreceding,
	"preceding-sibling": axisPrecedingSibling, "self": axisSelf,
}

func (a axisKind) reverse() bool {
	return a == axisAncestor || a == axisAncestorOrSelf || a == axisPreceding || a == axisPrecedingSibling
}

type testKind uint8

const (
	testType testKind = iota + 1 // node(), text(), comment(), processing-instruction()
	testPI                       // processing-instruction('target')
	testAll                      // * or prefix:*
	testName                     // name or prefix:name
)

type step struct {
	axis   axisKind
	test   testKind
	ntype  nodeKind // for testType: kindDoc stands for node()
	prefix string
	name   string
	preds  []expr
}

// syntaxError is a compile failure (libxml2 refuses the expression).
type syntaxError struct {
	msg string
	pos int
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at offset %d", e.msg, e.pos) }

// maxCompileDepth is libxml2's XPATH_MAX_RECURSION_DEPTH; each nested
// expression (parenthesis, predicate, argument) costs 10.
const maxCompileDepth = 5000

type parser struct {
	s     string
	i     int
	depth int
}

// compile parses s as libxml2 would.
func compile(s string) (e expr, err error) {
	if !utf8.ValidString(s) {
		return nil, &syntaxError{"invalid UTF-8", 0}
	}
	for i, r := range s {
		if !isXMLChar(r) {
			return nil, &syntaxError{fmt.Sprintf("character %U not allowed", r), i}
		}
	}
	p := &parser{s: s}
	defer func() {
		if r := recover(); r != nil {
			se, ok := r.(*syntaxError)
			if !ok {
				panic(r)
			}
			e, err = nil, se
		}
	}()
	e = p.compileExpr()
	if p.i < len(p.s) {
		p.fail("unexpected %q", p.rest())
	}
	return optimize(e), nil
}

func (p *parser) fail(format string, args ...any) {
	panic(&syntaxError{fmt.Sprintf(format, args...), p.i})
}

func (p *parser) rest() string {
	r := p.s[p.i:]
	if len(r) > 20 {
		r = r[:20] + "..."
	}
	return r
}

// cur and nxt read bytes; 0 is the end, as for libxml2's C string.
func (p *parser) cur() byte { return p.nxt(0) }

func (p *parser) nxt(k int) byte {
	if p.i+k < len(p.s) {
		return p.s[p.i+k]
	}
	return 0
}

func (p *parser) next() {
	if p.i < len(p.s) {
		p.i++
	}
}

func (p *parser) skipBlanks() {
	for p.i < len(p.s) && isBlank(p.s[p.i]) {
		p.i++
	}
}

func (p *parser) runeAt(i int) rune {
	if i >= len(p.s) {
		return 0
	}
	r, _ := utf8.DecodeRuneInString(p.s[i:])
	return r
}

// parseNCName is xmlXPathParseNCName; "" means none.
func (p *parser) parseNCName() string {
	start := p.i
	r := p.runeAt(p.i)
	if !isNCNameStart(r) {
		return ""
	}
	for p.i < len(p.s) {
		r := p.runeAt(p.i)
		if !isNCNameChar(r) {
			break
		}
		p.i += utf8.RuneLen(r)
	}
	return p.s[start:p.i]
}

// parseQName is xmlXPathParseQName.
func (p *parser) parseQName() (prefix, name string) {
	name = p.parseNCName()
	if name != "" && p.cur() == ':' {
		prefix = name
		p.next()
		name = p.parseNCName()
	}
	return prefix, name
}

// scanName is xmlXPathScanName: a Name (colons allowed) read ahead
// without consuming it.
func (p *parser) scanName() string {
	i := p.i
	r := p.runeAt(i)
	if r == ' ' || r == '>' || r == '/' || !isNCNameStart(r) && r != ':' {
		return ""
	}
	for i < len(p.s) {
		r := p.runeAt(i)
		if r == ' ' || r == '>' || r == '/' || !isNCNameChar(r) && r != ':' {
			break
		}
		i += utf8.RuneLen(r)
	}
	return p.s[p.i:i]
}

func isNodeType(name string) bool {
	return name == "node" || name == "text" || name == "comment" || name == "processing-instruction"
}

// compileExpr is xmlXPathCompileExpr: Expr ::= OrExpr.
func (p *parser) compileExpr() expr {
	if p.depth >= maxCompileDepth {
		p.fail("expression nested too deeply")
	}
	p.depth += 10
	l := p.compAndExpr()
	p.skipBlanks()
	for p.cur() == 'o' && p.nxt(1) == 'r' {
		p.i += 2
		p.skipBlanks()
		l = &orExpr{l, p.compAndExpr()}
		p.skipBlanks()
	}
	p.depth -= 10
	return l
}

func (p *parser) compAndExpr() expr {
	l := p.compEqualityExpr()
	p.skipBlanks()
	for p.cur() == 'a' && p.nxt(1) == 'n' && p.nxt(2) == 'd' {
		p.i += 3
		p.skipBlanks()
		l = &andExpr{l, p.compEqualityExpr()}
		p.skipBlanks()
	}
	return l
}

func (p *parser) compEqualityExpr() expr {
	l := p.compRelationalExpr()
	p.skipBlanks()
	for p.cur() == '=' || p.cur() == '!' && p.nxt(1) == '=' {
		neq := p.cur() == '!'
		p.next()
		if neq {
			p.next()
		}
		p.skipBlanks()
		l = &eqExpr{l, p.compRelationalExpr(), neq}
		p.skipBlanks()
	}
	return l
}

func (p *parser) compRelationalExpr() expr {
	l := p.compAdditiveExpr()
	p.skipBlanks()
	for p.cur() == '<' || p.cur() == '>' {
		less := p.cur() == '<'
		strict := p.nxt(1) != '='
		p.next()
		if !strict {
			p.next()
		}
		p.skipBlanks()
		l = &cmpExpr{l, p.compAdditiveExpr(), less, strict}
		p.skipBlanks()
	}
	return l
}

func (p *parser) compAdditiveExpr() expr {
	l := p.compMultiplicativeExpr()
	p.skipBlanks()
	for p.cur() == '+' || p.cur() == '-' {
		op := p.cur()
		p.next()
		p.skipBlanks()
		l = &arithExpr{l, p.compMultiplicativeExpr(), op}
		p.skipBlanks()
	}
	return l
}

func (p *parser) compMultiplicativeExpr() expr {
	l := p.compUnaryExpr()
	p.skipBlanks()
	for {
		var op byte
		switch {
		case p.cur() == '*':
			op = '*'
			p.next()
		case p.cur() == 'd' && p.nxt(1) == 'i' && p.nxt(2) == 'v':
			op = '/'
			p.i += 3
		case p.cur() == 'm' && p.nxt(1) == 'o' && p.nxt(2) == 'd':
			op = '%'
			p.i += 3
		default:
			return l
		}
		p.skipBlanks()
		l = &arithExpr{l, p.compUnaryExpr(), op}
		p.skipBlanks()
	}
}

func (p *parser) compUnaryExpr() expr {
	p.skipBlanks()
	minus, found := false, false
	for p.cur() == '-' {
		minus = !minus
		found = true
		p.next()
		p.skipBlanks()
	}
	e := p.compUnionExpr()
	if found {
		return &negExpr{e, minus}
	}
	return e
}

func (p *parser) compUnionExpr() expr {
	l := p.compPathExpr()
	p.skipBlanks()
	for p.cur() == '|' {
		p.next()
		p.skipBlanks()
		l = &unionExpr{l, p.compPathExpr()}
		p.skipBlanks()
	}
	return l
}

// compPathExpr is xmlXPathCompPathExpr, including its look-ahead that
// decides between a location path and a filter expression.
func (p *parser) compPathExpr() expr {
	p.skipBlanks()
	c := p.cur()
	lc := true
	switch {
	case c == '$' || c == '(' || isDigit(c) || c == '\'' || c == '"' || c == '.' && isDigit(p.nxt(1)):
		lc = false
	case c == '*' || c == '/' || c == '@' || c == '.':
	default:
		name := p.scanName()
		if name == "" {
			p.fail("expected an expression, found %q", p.rest())
		}
		if !strings.Contains(name, "::") {
			k := len(name)
		scan:
			for p.nxt(k) != 0 {
				switch c := p.nxt(k); {
				case isBlank(c):
					k++
					continue
				case c == '(':
					lc = isNodeType(name)
				}
				break scan
			}
		}
	}
	var e expr
	if lc {
		root := p.cur() == '/'
		e = &pathExpr{root: root, steps: p.compLocationPath()}
	} else {
		e = p.compFilterExpr()
		if p.cur() == '/' && p.nxt(1) == '/' {
			p.i += 2
			p.skipBlanks()
			steps := []*step{descendantOrSelfNode()}
			e = &pathExpr{from: e, steps: append(steps, p.compRelativeLocationPath()...)}
		} else if p.cur() == '/' {
			// "5/." has no step at all (libxml2 emits no op for "."),
			// so it is 5, not an error.
			if steps := p.compRelativeLocationPath(); len(steps) > 0 {
				e = &pathExpr{from: e, steps: steps}
			}
		}
	}
	p.skipBlanks()
	return e
}

func descendantOrSelfNode() *step {
	return &step{axis: axisDescendantOrSelf, test: testType, ntype: kindDoc}
}

func (p *parser) compFilterExpr() expr {
	prim, sorted := p.compPrimaryExpr()
	p.skipBlanks()
	if p.cur() != '[' {
		return prim
	}
	f := &filterExpr{prim: prim, sorted: sorted}
	for p.cur() == '[' {
		f.preds = append(f.preds, p.compPredicate())
		p.skipBlanks()
	}
	return f
}

// compPrimaryExpr is xmlXPathCompPrimaryExpr. sorted tells whether
// libxml2 wrapped the result in a SORT op.
func (p *parser) compPrimaryExpr() (e expr, sorted bool) {
	p.skipBlanks()
	switch c := p.cur(); {
	case c == '$':
		e = p.compVariableReference()
	case c == '(':
		p.next()
		p.skipBlanks()
		e = p.compileExpr()
		if p.cur() != ')' {
			p.fail("expected ')', found %q", p.rest())
		}
		p.next()
		p.skipBlanks()
		switch e.(type) {
		case *litNumber, *litString:
		case *funcCall:
			// Keep the parenthesis visible: "[(last())]" does not get
			// libxml2's "[last()]" shortcut.
			e, sorted = &parenExpr{e}, true
		default:
			sorted = true
		}
	case isDigit(c) || c == '.' && isDigit(p.nxt(1)):
		var n float64
		n, p.i = literalNumber(p.s, p.i)
		e = &litNumber{n}
	case c == '\'' || c == '"':
		e = &litString{p.parseLiteral()}
	default:
		e = p.compFunctionCall()
	}
	p.skipBlanks()
	return e, sorted
}

func (p *parser) parseLiteral() string {
	q := p.cur()
	if q != '"' && q != '\'' {
		p.fail("expected a literal, found %q", p.rest())
	}
	p.next()
	j := strings.IndexByte(p.s[p.i:], q)
	if j < 0 {
		p.i = len(p.s)
		p.fail("unfinished literal")
	}
	s := p.s[p.i : p.i+j]
	p.i += j + 1
	return s
}

func (p *parser) compVariableReference() expr {
	p.skipBlanks()
	if p.cur() != '$' {
		p.fail("expected '$'")
	}
	p.next()
	prefix, name := p.parseQName()
	if name == "" {
		p.fail("expected a variable name")
	}
	p.skipBlanks()
	return &varRef{prefix, name}
}

func (p *parser) compFunctionCall() expr {
	prefix, name := p.parseQName()
	if name == "" {
		p.fail("expected a function name, found %q", p.rest())
	}
	p.skipBlanks()
	if p.cur() != '(' {
		p.fail("expected '(' after %s", name)
	}
	p.next()
	p.skipBlanks()
	f := &funcCall{prefix: prefix, name: name}
	if prefix == "" {
		f.fn = builtins[name]
	}
	if p.cur() != ')' {
		// As in libxml2, the end of input also ends the argument list.
		for p.cur() != 0 {
			f.args = append(f.args, p.compileExpr())
			if p.cur() == ')' {
				break
			}
			if p.cur() != ',' {
				p.fail("expected ',' or ')', found %q", p.rest())
			}
			p.next()
			p.skipBlanks()
		}
	}
	p.next()
	p.skipBlanks()
	return f
}

func (p *parser) compPredicate() expr {
	p.skipBlanks()
	if p.cur() != '[' {
		p.fail("expected '['")
	}
	p.next()
	p.skipBlanks()
	e := p.compileExpr()
	if p.cur() != ']' {
		p.fail("expected ']', found %q", p.rest())
	}
	p.next()
	p.skipBlanks()
	return e
}

// compLocationPath is xmlXPathCompLocationPath.
func (p *parser) compLocationPath() []*step {
	p.skipBlanks()
	if p.cur() != '/' {
		return p.compRelativeLocationPath()
	}
	var steps []*step
	for p.cur() == '/' {
		if p.nxt(1) == '/' {
			p.i += 2
			p.skipBlanks()
			steps = append(steps, descendantOrSelfNode())
			steps = append(steps, p.compRelativeLocationPath()...)
		} else {
			p.next()
			p.skipBlanks()
			c := p.cur()
			if c != 0 && ('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c >= 0x80 ||
				c == '_' || c == '.' || c == '@' || c == '*') {
				steps = append(steps, p.compRelativeLocationPath()...)
			}
		}
	}
	return steps
}

// compRelativeLocationPath is xmlXPathCompRelativeLocationPath.
func (p *parser) compRelativeLocationPath() []*step {
	var steps []*step
	add := func(s *step) {
		if s != nil {
			steps = append(steps, s)
		}
	}
	p.skipBlanks()
	if p.cur() == '/' && p.nxt(1) == '/' {
		p.i += 2
		p.skipBlanks()
		add(descendantOrSelfNode())
	} else if p.cur() == '/' {
		p.next()
		p.skipBlanks()
	}
	add(p.compStep())
	p.skipBlanks()
	for p.cur() == '/' {
		if p.nxt(1) == '/' {
			p.i += 2
			p.skipBlanks()
			add(descendantOrSelfNode())
		} else {
			p.next()
			p.skipBlanks()
		}
		add(p.compStep())
		p.skipBlanks()
	}
	return steps
}

// compStep is xmlXPathCompStep; "." yields no step at all.
func (p *parser) compStep() *step {
	p.skipBlanks()
	if p.cur() == '.' && p.nxt(1) == '.' {
		p.i += 2
		p.skipBlanks()
		return &step{axis: axisParent, test: testType, ntype: kindDoc}
	}
	if p.cur() == '.' {
		p.next()
		p.skipBlanks()
		return nil
	}
	var name string
	axis := axisChild
	if p.cur() != '*' {
		name = p.parseNCName()
		if name != "" {
			if a, ok := axisNames[name]; ok {
				p.skipBlanks()
				if p.cur() == ':' && p.nxt(1) == ':' {
					p.i += 2
					name = ""
					axis = a
				}
			}
		} else if p.cur() == '@' {
			p.next()
			axis = axisAttribute
		}
	}
	st := &step{axis: axis}
	p.compNodeTest(st, name)
	p.skipBlanks()
	for p.cur() == '[' {
		st.preds = append(st.preds, p.compPredicate())
	}
	return st
}

// compNodeTest is xmlXPathCompNodeTest; name is what compStep already
// read, if anything.
func (p *parser) compNodeTest(st *step, name string) {
	p.skipBlanks()
	if name == "" && p.cur() == '*' {
		p.next()
		st.test = testAll
		return
	}
	if name == "" {
		name = p.parseNCName()
	}
	if name == "" {
		p.fail("expected a node test, found %q", p.rest())
	}
	blanks := isBlank(p.cur())
	p.skipBlanks()
	if p.cur() == '(' {
		p.next()
		switch name {
		case "comment":
			st.ntype = kindComment
		case "node":
			st.ntype = kindDoc
		case "processing-instruction":
			st.ntype = kindPI
		case "text":
			st.ntype = kindText
		default:
			p.fail("%s() is not a node type", name)
		}
		st.test = testType
		p.skipBlanks()
		if st.ntype == kindPI && p.cur() != ')' {
			st.name = p.parseLiteral()
			st.test = testPI
			p.skipBlanks()
		}
		if p.cur() != ')' {
			p.fail("expected ')', found %q", p.rest())
		}
		p.next()
		return
	}
	st.test = testName
	st.name = name
	if !blanks && p.cur() == ':' {
		p.next()
		st.prefix = name
		if p.cur() == '*' {
			p.next()
			st.test = testAll
			st.name = ""
			return
		}
		st.name = p.parseNCName()
		if st.name == "" {
			p.fail("expected a local name after %s:", name)
		}
	}
}

// optimize applies libxml2's one rewrite (xmlXPathOptimizeExpression):
// descendant-or-self::node()/child::x, without predicates, becomes
// descendant::x. The result is the same; "//Param" just gets cheaper.
func optimize(e expr) expr {
	switch t := e.(type) {
	case *orExpr:
		t.l, t.r = optimize(t.l), optimize(t.r)
	case *andExpr:
		t.l, t.r = optimize(t.l), optimize(t.r)
	case *eqExpr:
		t.l, t.r = optimize(t.l), optimize(t.r)
	case *cmpExpr:
		t.l, t.r = optimize(t.l), optimize(t.r)
	case *arithExpr:
		t.l, t.r = optimize(t.l), optimize(t.r)
	case *unionExpr:
		t.l, t.r = optimize(t.l), optimize(t.r)
	case *negExpr:
		t.x = optimize(t.x)
	case *parenExpr:
		t.x = optimize(t.x)
	case *funcCall:
		for i := range t.args {
			t.args[i] = optimize(t.args[i])
		}
	case *filterExpr:
		t.prim = optimize(t.prim)
		for i := range t.preds {
			t.preds[i] = optimize(t.preds[i])
		}
	case *pathExpr:
		if t.from != nil {
			t.from = optimize(t.from)
		}
		for _, s := range t.steps {
			for i := range s.preds {
				s.preds[i] = optimize(s.preds[i])
			}
		}
		// libxml2 walks from the last step back to the first.
		for j := len(t.steps) - 1; j >= 1; {
			prev, s := t.steps[j-1], t.steps[j]
			if len(s.preds) == 0 && len(prev.preds) == 0 && prev.axis == axisDescendantOrSelf &&
				prev.test == testType && prev.ntype == kindDoc {
				switch s.axis {
				case axisChild, axisDescendant:
					s.axis = axisDescendant
				case axisSelf, axisDescendantOrSelf:
					s.axis = axisDescendantOrSelf
				default:
					j--
					continue
				}
				t.steps = append(t.steps[:j-1], t.steps[j:]...)
				j -= 2
				continue
			}
			j--
		}
	}
	return e
}

// positional reports whether a predicate is a literal number that libxml2
// treats as "[n]" (xmlXPathIsPositionalPredicate), and n.
func positional(e expr) (int, bool) {
	l, ok := e.(*litNumber)
	if !ok || !(l.n > math.MinInt32 && l.n < math.MaxInt32) {
		return 0, false
	}
	n := int(l.n)
	return n, float64(n) == l.n
}
