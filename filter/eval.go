package filter

import (
	"math"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// Evaluation follows libxml2's xmlXPathCompOpEval and friends: what is
// evaluated, in which order, and what raises an error (which makes the
// filter not match). Errors are lazy, as in libxml2: "true() or foo()"
// matches, "//Nope[voe:x]" evaluates the prefixed step never and is an
// empty node-set. Node-sets are kept in document order.

type valueKind uint8

const (
	vNodes valueKind = iota
	vBool
	vNum
	vStr
)

// value is an XPath object. Node-sets hold node refs in document order;
// a negative ref is a namespace node.
type value struct {
	k  valueKind
	b  bool
	n  float64
	s  string
	ns []int32
}

// evalError is an XPath evaluation error: the filter does not match.
type evalError struct{ msg string }

func (e *evalError) Error() string { return e.msg }

// evaluator holds the state of one evaluation. Evaluators are pooled: a
// node-set lives in the arena until the evaluation ends, scratch buffers
// are recycled, so a typical Match allocates nothing.
type evaluator struct {
	d     *Doc
	steps int
	limit int       // the budget: steps allowed
	arena []int32   // node-sets are carved from it
	bufs  [][]int32 // free scratch buffers
}

var evaluators = sync.Pool{New: func() any { return new(evaluator) }}

func getEvaluator(d *Doc, budget int) *evaluator {
	ev := evaluators.Get().(*evaluator)
	ev.d, ev.steps, ev.limit = d, 0, budget
	return ev
}

func putEvaluator(ev *evaluator) {
	ev.d = nil
	if cap(ev.arena) > 1<<16 {
		ev.arena = nil // do not keep a hostile evaluation's memory
	}
	ev.arena = ev.arena[:0]
	if len(ev.bufs) > 16 {
		ev.bufs = ev.bufs[:16]
	}
	evaluators.Put(ev)
}

// alloc returns a node-set of n refs that lives until the evaluation ends.
func (ev *evaluator) alloc(n int) []int32 {
	if n > cap(ev.arena)-len(ev.arena) {
		ev.arena = make([]int32, 0, max(1024, n))
	}
	i := len(ev.arena)
	ev.arena = ev.arena[:i+n]
	return ev.arena[i : i+n : i+n]
}

func (ev *evaluator) single(ref int32) []int32 {
	s := ev.alloc(1)
	s[0] = ref
	return s
}

// keep copies a scratch node-set into the arena.
func (ev *evaluator) keep(ns []int32) []int32 {
	if len(ns) == 0 {
		return nil
	}
	out := ev.alloc(len(ns))
	copy(out, ns)
	return out
}

func (ev *evaluator) getBuf() []int32 {
	if n := len(ev.bufs); n > 0 {
		b := ev.bufs[n-1]
		ev.bufs = ev.bufs[:n-1]
		return b[:0]
	}
	return make([]int32, 0, 64)
}

func (ev *evaluator) putBuf(b []int32) {
	if cap(b) <= 1<<16 {
		ev.bufs = append(ev.bufs, b)
	}
}

// ctx is the evaluation context; pos and size are -1 outside predicates,
// where libxml2 (as lxml sets it up) makes position() and last() errors.
type ctx struct {
	node      int32
	pos, size int
}

func (ev *evaluator) fail(msg string) { panic(&evalError{msg}) }

const stepLimitMsg = "evaluation step limit exceeded"

func (ev *evaluator) tick(n int) {
	ev.steps += n
	if ev.steps > ev.limit {
		ev.fail(stepLimitMsg)
	}
}

// run evaluates e with the root element as context node.
func (ev *evaluator) run(e expr) value {
	return ev.eval(e, ctx{node: ev.d.rootElement(), pos: -1, size: -1})
}

func (d *Doc) rootElement() int32 {
	for c := d.nodes[0].first; c != none; c = d.nodes[c].next {
		if d.nodes[c].kind == kindElem {
			return c
		}
	}
	return 0
}

func (ev *evaluator) eval(e expr, c ctx) value {
	ev.tick(1)
	switch t := e.(type) {
	case *litString:
		return value{k: vStr, s: t.s}
	case *litNumber:
		return value{k: vNum, n: t.n}
	case *pathExpr:
		return value{k: vNodes, ns: ev.evalPath(t, c, false)}
	case *filterExpr:
		return ev.evalFilter(t, len(t.preds), c)
	case *orExpr:
		if ev.toBool(ev.eval(t.l, c)) {
			return value{k: vBool, b: true}
		}
		return value{k: vBool, b: ev.toBool(ev.eval(t.r, c))}
	case *andExpr:
		if !ev.toBool(ev.eval(t.l, c)) {
			return value{k: vBool}
		}
		return value{k: vBool, b: ev.toBool(ev.eval(t.r, c))}
	case *eqExpr:
		l := ev.eval(t.l, c)
		r := ev.eval(t.r, c)
		return value{k: vBool, b: ev.equal(l, r, t.neq)}
	case *cmpExpr:
		l := ev.eval(t.l, c)
		r := ev.eval(t.r, c)
		return value{k: vBool, b: ev.compare(l, r, t.less, t.strict)}
	case *arithExpr:
		l := ev.toNumber(ev.eval(t.l, c))
		r := ev.toNumber(ev.eval(t.r, c))
		var n float64
		switch t.op {
		case '+':
			n = l + r
		case '-':
			n = l - r
		case '*':
			n = l * r
		case '/':
			n = l / r
		case '%':
			if r == 0 {
				n = math.NaN()
			} else {
				n = math.Mod(l, r)
			}
		}
		return value{k: vNum, n: n}
	case *negExpr:
		n := ev.toNumber(ev.eval(t.x, c))
		if t.flip {
			n = -n
		}
		return value{k: vNum, n: n}
	case *unionExpr:
		l := ev.eval(t.l, c)
		return ev.unionOf(l, ev.eval(t.r, c))
	case *varRef:
		if t.prefix != "" && t.prefix != "xml" {
			ev.fail("undefined namespace prefix " + t.prefix)
		}
		ev.fail("undefined variable $" + t.name)
	case *funcCall:
		return ev.call(t, c)
	case *parenExpr:
		return ev.eval(t.x, c)
	}
	panic("filter: unknown expression node")
}

// evalFilter applies the first k predicates of f (XPATH_OP_FILTER). Two
// libxml2 shortcuts change more than speed. A final "[1]", after another
// predicate or a parenthesized (SORTed) primary, goes through
// xmlXPathCompOpEvalFirst: the predicate before it stops at its first
// match, a union prunes its right branch, and a non-node-set passes
// through unchecked ("(count(x))[1]" is a number). A "[last()]" right
// after a parenthesized primary goes through xmlXPathCompOpEvalLast and
// also lets a non-node-set through.
func (ev *evaluator) evalFilter(f *filterExpr, k int, c ctx) value {
	if k == 0 {
		return ev.eval(f.prim, c)
	}
	pred := f.preds[k-1]
	afterSort := k == 1 && f.sorted
	if l, ok := pred.(*litNumber); ok && l.n == 1 && (afterSort || k > 1) {
		first := int32(none)
		var v value
		if k > 1 {
			v = ev.filterFirst(f, k-1, c, &first)
		} else {
			v = ev.evalFirst(f.prim, c, &first)
		}
		if v.k == vNodes && len(v.ns) > 1 {
			v.ns = v.ns[:1]
		}
		return v
	}
	if afterSort && isLastCall(pred) {
		last := int32(none)
		return ev.keepLast(ev.evalLast(f.prim, c, &last))
	}
	v := ev.evalFilter(f, k-1, c)
	if v.k != vNodes {
		ev.fail("filter on a non-node-set")
	}
	if len(v.ns) > 0 {
		v.ns = ev.filterSet(ev.owned(v.ns), pred, 1, len(v.ns))
	}
	return v
}

// evalFirst is xmlXPathCompOpEvalFirst: e when only its first node is
// wanted. *first, once known, prunes the forward axes of later steps.
func (ev *evaluator) evalFirst(e expr, c ctx, first *int32) value {
	switch t := e.(type) {
	case *filterExpr:
		return ev.filterFirst(t, len(t.preds), c, first)
	case *unionExpr:
		l := ev.evalFirst(t.l, c, first)
		if l.k == vNodes && len(l.ns) > 0 {
			*first = l.ns[0]
		}
		return ev.unionOf(l, ev.evalFirst(t.r, c, first))
	case *pathExpr:
		if len(t.steps) > 0 {
			return value{k: vNodes, ns: ev.evalPathPruned(t, c, prune{ref: first})}
		}
	}
	return ev.eval(e, c)
}

// evalLast is xmlXPathCompOpEvalLast, the same for the last node, which
// prunes the reverse axes.
func (ev *evaluator) evalLast(e expr, c ctx, last *int32) value {
	switch t := e.(type) {
	case *unionExpr:
		l := ev.evalLast(t.l, c, last)
		if l.k == vNodes && len(l.ns) > 0 {
			*last = l.ns[len(l.ns)-1]
		}
		return ev.unionOf(l, ev.evalLast(t.r, c, last))
	case *pathExpr:
		if len(t.steps) > 0 {
			return value{k: vNodes, ns: ev.evalPathPruned(t, c, prune{ref: last, last: true})}
		}
	}
	return ev.eval(e, c)
}

// filterFirst is xmlXPathCompOpEvalFilterFirst: f with its first k
// predicates, the last of which stops at its first match.
func (ev *evaluator) filterFirst(f *filterExpr, k int, c ctx, first *int32) value {
	if k == 1 && f.sorted && isLastCall(f.preds[0]) {
		last := int32(none)
		v := ev.keepLast(ev.evalLast(f.prim, c, &last))
		if v.k == vNodes && len(v.ns) > 0 {
			*first = v.ns[0]
		}
		return v
	}
	v := ev.evalFilter(f, k-1, c)
	if v.k != vNodes {
		ev.fail("filter on a non-node-set")
	}
	if len(v.ns) > 0 {
		v.ns = ev.filterSet(ev.owned(v.ns), f.preds[k-1], 1, 1)
		if len(v.ns) > 0 {
			*first = v.ns[0]
		}
	}
	return v
}

func (ev *evaluator) unionOf(l, r value) value {
	if l.k != vNodes || r.k != vNodes {
		ev.fail("union of non-node-sets")
	}
	return value{k: vNodes, ns: ev.union(l.ns, r.ns)}
}

// keepLast keeps the last node of a node-set and passes anything else.
func (ev *evaluator) keepLast(v value) value {
	if v.k == vNodes && len(v.ns) > 1 {
		v.ns = v.ns[len(v.ns)-1:]
	}
	return v
}

// isLastCall reports a bare "last()" predicate (not parenthesized).
func isLastCall(e expr) bool {
	fc, ok := e.(*funcCall)
	return ok && fc.fn == fnLast && fc.prefix == "" && len(fc.args) == 0
}

// owned returns a copy of a node-set that the caller may modify.
func (ev *evaluator) owned(ns []int32) []int32 { return ev.keep(ns) }

// filterSet is xmlXPathNodeSetFilter: keep the nodes of set (in the order
// of evaluation) for which pred holds, counting positions of the kept
// ones, and only those between minPos and maxPos; it stops at maxPos.
func (ev *evaluator) filterSet(set []int32, pred expr, minPos, maxPos int) []int32 {
	if len(set) < minPos {
		return set[:0]
	}
	size := len(set)
	j, pos := 0, 1
	for i, n := range set {
		res := ev.predicate(pred, ctx{node: n, pos: i + 1, size: size})
		if res && pos >= minPos && pos <= maxPos {
			set[j] = n
			j++
		}
		if res {
			if pos == maxPos {
				break
			}
			pos++
		}
	}
	return set[:j]
}

// predicate evaluates a predicate for one node
// (xmlXPathCompOpEvalToBoolean with isPredicate): a number is compared
// with the position, and a location path is only asked whether it is
// empty, which stops it early.
func (ev *evaluator) predicate(e expr, c ctx) bool {
	if p, ok := e.(*pathExpr); ok && len(p.steps) > 0 {
		ev.tick(1)
		return len(ev.evalPath(p, c, true)) > 0
	}
	v := ev.eval(e, c)
	switch v.k {
	case vBool:
		return v.b
	case vNum:
		return v.n == float64(c.pos)
	case vStr:
		return v.s != ""
	default:
		return len(v.ns) > 0
	}
}

// prune is the node by which xmlXPathCompOpEvalFirst (or ...Last) cuts
// an axis walk short; ref points to none until it is known.
type prune struct {
	ref  *int32
	last bool
}

// evalPath evaluates a location path. With toBool (a predicate asking
// only for emptiness) the last step stops after the first context node
// that yields something, as libxml2 does.
func (ev *evaluator) evalPath(p *pathExpr, c ctx, toBool bool) []int32 {
	return ev.path(p, c, toBool, prune{})
}

// evalPathPruned evaluates a path whose last step is pruned.
func (ev *evaluator) evalPathPruned(p *pathExpr, c ctx, pr prune) []int32 {
	return ev.path(p, c, false, pr)
}

func (ev *evaluator) path(p *pathExpr, c ctx, toBool bool, pr prune) []int32 {
	var set []int32
	switch {
	case p.from != nil:
		v := ev.eval(p.from, c)
		if v.k != vNodes {
			ev.fail("path step on a non-node-set")
		}
		set = v.ns
	case p.root:
		set = ev.single(0)
	default:
		set = ev.single(c.node)
	}
	for i, st := range p.steps {
		lastStep := i == len(p.steps)-1
		var stepPrune prune
		if lastStep {
			stepPrune = pr
		}
		set = ev.evalStep(st, set, toBool && lastStep, stepPrune)
	}
	return set
}

// resolve maps a name-test prefix to its namespace: only "xml" is bound,
// anything else is libxml2's "Undefined namespace prefix".
func (ev *evaluator) resolve(prefix string) string {
	if prefix == "" {
		return ""
	}
	if prefix == "xml" {
		return xmlNamespace
	}
	ev.fail("undefined namespace prefix " + prefix)
	return ""
}

// evalStep is xmlXPathNodeCollectAndTest for one step over every context
// node of in.
func (ev *evaluator) evalStep(st *step, in []int32, toBool bool, pr prune) []int32 {
	uri := ev.resolve(st.prefix) // before looking at the input, as libxml2
	if len(in) == 0 {
		return nil
	}
	preds := st.preds
	maxPos, axisRange, predRange := 0, false, false
	if len(preds) > 0 {
		if n, ok := positional(preds[len(preds)-1]); ok {
			maxPos = n
			preds = preds[:len(preds)-1]
			if len(preds) > 0 {
				predRange = true
			} else {
				axisRange = true
			}
		}
	}
	col := collector{ev: ev, st: st, uri: uri, axisRange: axisRange, maxPos: maxPos,
		firstHit: toBool && len(preds) == 0 && !axisRange, seq: ev.getBuf()}
	// libxml2 prunes only these axes, "first" the forward ones, "last"
	// the reverse ones.
	switch st.axis {
	case axisChild, axisDescendant, axisDescendantOrSelf, axisFollowing, axisFollowingSibling:
		if pr.ref != nil && !pr.last {
			col.prune = pr
		}
	case axisAncestor, axisAncestorOrSelf, axisParent, axisPreceding, axisPrecedingSibling:
		if pr.ref != nil && pr.last {
			col.prune = pr
		}
	}
	out := ev.getBuf()
	defer func() { ev.putBuf(col.seq); ev.putBuf(out) }()
	sorted := true
	for _, cn := range in {
		col.seq = col.seq[:0]
		col.pos = 0
		ev.walk(&col, cn)
		seq := col.seq
		if len(preds) > 0 && len(seq) > 0 {
			for i, p := range preds {
				lo, hi := 1, len(seq)
				if predRange && i == len(preds)-1 {
					lo, hi = maxPos, maxPos
				}
				seq = ev.filterSet(seq, p, lo, hi)
				if len(seq) == 0 {
					break
				}
			}
		}
		if len(seq) == 0 {
			continue
		}
		if st.axis.reverse() {
			slices.Reverse(seq)
		}
		if len(out) > 0 && !ev.d.before(out[len(out)-1], seq[0]) {
			sorted = false
		}
		out = append(out, seq...)
		if toBool {
			break
		}
	}
	if !sorted {
		out = ev.d.sortNodes(out)
	}
	return ev.keep(out)
}

// collector gathers the nodes of one axis that pass the node test.
type collector struct {
	ev        *evaluator
	st        *step
	uri       string
	seq       []int32
	pos       int
	maxPos    int
	axisRange bool  // only the maxPos-th match is wanted
	firstHit  bool  // only whether there is a match
	prune     prune // stop at or past this node (checked as libxml2 does)
	total     int   // nodes visited in this step, over all context nodes
}

// add tests ref and reports whether the walk may stop.
func (c *collector) add(ref int32) bool {
	c.ev.tick(1)
	if c.prune.ref != nil {
		if p := *c.prune.ref; p != none {
			// libxml2 compares positions only every 256 nodes.
			if ref == p || c.total%256 == 0 &&
				(!c.prune.last && !c.ev.d.before(ref, p) || c.prune.last && !c.ev.d.before(p, ref)) {
				return true
			}
		}
	}
	c.total++
	if !c.ev.d.matches(c.st, c.uri, ref) {
		return false
	}
	if c.axisRange {
		c.pos++
		if c.pos == c.maxPos {
			c.seq = append(c.seq, ref)
			return true
		}
		return false
	}
	c.seq = append(c.seq, ref)
	return c.firstHit
}

// walk visits the axis of st from cn in axis order (libxml2's
// xmlXPathNext* functions, including their treatment of attribute and
// namespace context nodes).
func (ev *evaluator) walk(c *collector, cn int32) {
	d := ev.d
	nodes := d.nodes
	if cn < 0 { // namespace node
		owner := d.ns[-cn-1].owner
		switch c.st.axis {
		case axisSelf, axisDescendantOrSelf, axisAncestorOrSelf:
			if c.add(cn) {
				return
			}
			if c.st.axis == axisAncestorOrSelf {
				ev.ancestors(c, owner)
			}
		case axisParent:
			c.add(owner)
		case axisAncestor:
			ev.ancestors(c, owner)
		case axisFollowing:
			ev.following(c, owner)
		case axisPreceding:
			ev.preceding(c, owner)
		}
		return
	}
	n := &nodes[cn]
	switch c.st.axis {
	case axisChild:
		if n.kind == kindElem || n.kind == kindDoc {
			// For a name test libxml2 walks element children only
			// (xmlXPathNextChildElement), which matters to its pruning.
			elemsOnly := c.st.test == testName || c.st.test == testAll
			for k := n.first; k != none; k = nodes[k].next {
				if elemsOnly && nodes[k].kind != kindElem {
					continue
				}
				if c.add(k) {
					return
				}
			}
		}
	case axisAttribute:
		if n.kind == kindElem {
			for k := cn + 1; k <= cn+n.nattr; k++ {
				if c.add(k) {
					return
				}
			}
		}
	case axisSelf:
		c.add(cn)
	case axisDescendantOrSelf, axisDescendant:
		if c.st.axis == axisDescendantOrSelf && c.add(cn) {
			return
		}
		if n.kind == kindElem || n.kind == kindDoc {
			for k := cn + 1 + n.nattr; k <= n.end; k++ {
				if nodes[k].kind == kindAttr {
					continue
				}
				if c.add(k) {
					return
				}
			}
		}
	case axisParent:
		if cn != 0 {
			c.add(n.parent)
		}
	case axisAncestor:
		if cn != 0 {
			ev.ancestors(c, n.parent)
		}
	case axisAncestorOrSelf:
		if c.add(cn) {
			return
		}
		if cn != 0 {
			ev.ancestors(c, n.parent)
		}
	case axisFollowingSibling:
		if n.kind != kindAttr && cn != 0 {
			for k := n.next; k != none; k = nodes[k].next {
				if c.add(k) {
					return
				}
			}
		}
	case axisPrecedingSibling:
		if n.kind != kindAttr && cn != 0 {
			for k := n.prev; k != none; k = nodes[k].prev {
				if c.add(k) {
					return
				}
			}
		}
	case axisFollowing:
		if n.kind == kindAttr {
			cn = n.parent
		}
		if cn != 0 {
			ev.following(c, cn)
		}
	case axisPreceding:
		if n.kind == kindAttr {
			cn = n.parent
		}
		if cn != 0 {
			ev.preceding(c, cn)
		}
	case axisNamespace:
		if n.kind == kindElem {
			d.nsOnce.Do(d.buildNS)
			if d.nsOverflow {
				ev.fail("too many namespace nodes")
			}
			r := d.nsRange[cn]
			for k := r[0]; k < r[1]; k++ {
				if c.add(-k - 1) {
					return
				}
			}
		}
	}
}

// ancestors visits from (a node, then its ancestors up to the document).
func (ev *evaluator) ancestors(c *collector, from int32) {
	for k := from; k != none; k = ev.d.nodes[k].parent {
		if c.add(k) {
			return
		}
	}
}

// following visits the nodes after cn's subtree, in document order.
func (ev *evaluator) following(c *collector, cn int32) {
	nodes := ev.d.nodes
	for k := nodes[cn].end + 1; k < int32(len(nodes)); k++ {
		if nodes[k].kind == kindAttr {
			continue
		}
		if c.add(k) {
			return
		}
	}
}

// preceding visits the nodes before cn that are not its ancestors, in
// reverse document order.
func (ev *evaluator) preceding(c *collector, cn int32) {
	nodes := ev.d.nodes
	for k := cn - 1; k > 0; k-- {
		n := &nodes[k]
		if n.kind == kindAttr || n.end >= cn {
			continue
		}
		if c.add(k) {
			return
		}
	}
}

// matches is the node test of xmlXPathNodeCollectAndTest.
func (d *Doc) matches(st *step, uri string, ref int32) bool {
	if ref < 0 {
		ns := &d.ns[-ref-1]
		switch st.test {
		case testType:
			return st.ntype == kindDoc
		case testAll:
			return st.axis == axisNamespace
		case testName:
			return st.axis == axisNamespace && ns.prefix != "" && ns.prefix == st.name
		}
		return false
	}
	n := &d.nodes[ref]
	switch st.test {
	case testType:
		if st.ntype == kindDoc {
			return true
		}
		return n.kind == st.ntype
	case testPI:
		return n.kind == kindPI && n.local == st.name
	case testAll:
		switch st.axis {
		case axisAttribute:
			return n.kind == kindAttr && (st.prefix == "" || n.uri != "" && n.uri == uri)
		case axisNamespace:
			return false
		}
		return n.kind == kindElem && (st.prefix == "" || n.uri != "" && n.uri == uri)
	case testName:
		switch st.axis {
		case axisAttribute:
			if n.kind != kindAttr {
				return false
			}
		case axisNamespace:
			return false
		default:
			if n.kind != kindElem {
				return false
			}
		}
		if n.local != st.name {
			return false
		}
		if st.prefix == "" {
			return n.uri == ""
		}
		return n.uri != "" && n.uri == uri
	}
	return false
}

// before reports whether a precedes b in document order. A namespace node
// sits right after its element, before the attributes.
func (d *Doc) before(a, b int32) bool {
	am, an := d.orderKey(a)
	bm, bn := d.orderKey(b)
	return am < bm || am == bm && an < bn
}

func (d *Doc) orderKey(ref int32) (int32, int32) {
	if ref >= 0 {
		return ref, -1
	}
	return d.ns[-ref-1].owner, -ref - 1
}

// sortNodes sorts into document order and drops duplicates.
func (d *Doc) sortNodes(ns []int32) []int32 {
	if slices.ContainsFunc(ns, func(r int32) bool { return r < 0 }) {
		slices.SortFunc(ns, func(a, b int32) int {
			switch {
			case a == b:
				return 0
			case d.before(a, b):
				return -1
			}
			return 1
		})
	} else {
		slices.Sort(ns)
	}
	return slices.Compact(ns)
}

func (ev *evaluator) union(a, b []int32) []int32 {
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 {
		return a
	}
	ev.tick((len(a) + len(b)) * 4 / bytesPerStep)
	out := ev.alloc(len(a) + len(b))
	copy(out[copy(out, a):], b)
	return ev.d.sortNodes(out)
}

// Conversions (xmlXPathCastTo*).

func (ev *evaluator) toBool(v value) bool {
	switch v.k {
	case vBool:
		return v.b
	case vNum:
		return v.n != 0 && !math.IsNaN(v.n)
	case vStr:
		return v.s != ""
	}
	return len(v.ns) > 0
}

func (ev *evaluator) toString(v value) string {
	switch v.k {
	case vStr:
		return v.s
	case vBool:
		if v.b {
			return "true"
		}
		return "false"
	case vNum:
		return numberToString(v.n)
	}
	if len(v.ns) == 0 {
		return ""
	}
	return ev.str(v.ns[0])
}

func (ev *evaluator) toNumber(v value) float64 {
	switch v.k {
	case vNum:
		return v.n
	case vBool:
		if v.b {
			return 1
		}
		return 0
	}
	return stringToNumber(ev.toString(v))
}

// str is a node's string-value, charged to the step budget.
func (ev *evaluator) str(ref int32) string {
	s := ev.d.stringValue(ref)
	ev.tick(len(s) / bytesPerStep)
	return s
}

// equal is xmlXPathEqualValues / xmlXPathNotEqualValues.
func (ev *evaluator) equal(a, b value, neq bool) bool {
	if a.k != vNodes && b.k != vNodes {
		return ev.equalAtoms(a, b) != neq
	}
	if a.k != vNodes {
		a, b = b, a
	}
	switch b.k {
	case vNodes:
		if len(a.ns) == 0 || len(b.ns) == 0 {
			return false
		}
		if !neq {
			for _, x := range a.ns {
				if slices.Contains(b.ns, x) {
					return true
				}
			}
		}
		bs := make([]string, len(b.ns))
		for j, y := range b.ns {
			bs[j] = ev.str(y)
		}
		for _, x := range a.ns {
			xs := ev.str(x)
			for _, ys := range bs {
				ev.tick(1)
				if (xs == ys) != neq {
					return true
				}
			}
		}
		return false
	case vBool:
		return (len(a.ns) > 0) == b.b != neq
	case vNum:
		for _, x := range a.ns {
			v := stringToNumber(ev.str(x))
			if neq && v != b.n || !neq && v == b.n {
				return true
			}
		}
		return false
	default:
		for _, x := range a.ns {
			if (ev.str(x) == b.s) != neq {
				return true
			}
		}
		return false
	}
}

// equalAtoms compares two non-node-set values (xmlXPathEqualValuesCommon).
func (ev *evaluator) equalAtoms(a, b value) bool {
	switch {
	case a.k == vBool || b.k == vBool:
		return ev.toBool(a) == ev.toBool(b)
	case a.k == vNum || b.k == vNum:
		return ev.toNumber(a) == ev.toNumber(b)
	default:
		return a.s == b.s
	}
}

// compare is xmlXPathCompareValues for <, <=, >, >=.
func (ev *evaluator) compare(a, b value, less, strict bool) bool {
	if a.k == vNodes || b.k == vNodes {
		if a.k != vNodes { // put the node-set first and flip the operator
			a, b, less = b, a, !less
		}
		switch b.k {
		case vNodes:
			if len(a.ns) == 0 || len(b.ns) == 0 {
				return false
			}
			bn := make([]float64, len(b.ns))
			for j, y := range b.ns {
				bn[j] = stringToNumber(ev.str(y))
			}
			for _, x := range a.ns {
				xn := stringToNumber(ev.str(x))
				for _, yn := range bn {
					ev.tick(1)
					if cmpNum(xn, yn, less, strict) {
						return true
					}
				}
			}
			return false
		case vBool:
			return cmpNum(boolNum(len(a.ns) > 0), boolNum(b.b), less, strict)
		case vNum:
			for _, x := range a.ns {
				if cmpNum(stringToNumber(ev.str(x)), b.n, less, strict) {
					return true
				}
			}
			return false
		default:
			bn := stringToNumber(b.s)
			for _, x := range a.ns {
				if cmpNum(stringToNumber(ev.str(x)), bn, less, strict) {
					return true
				}
			}
			return false
		}
	}
	return cmpNum(ev.toNumber(a), ev.toNumber(b), less, strict)
}

func boolNum(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// cmpNum is an IEEE comparison; NaN compares false.
func cmpNum(a, b float64, less, strict bool) bool {
	switch {
	case less && strict:
		return a < b
	case less:
		return a <= b
	case strict:
		return a > b
	default:
		return a >= b
	}
}

// Functions.

type builtin uint8

const (
	fnUnknown builtin = iota
	fnBoolean
	fnCeiling
	fnCount
	fnConcat
	fnContains
	fnID
	fnFalse
	fnFloor
	fnLast
	fnLang
	fnLocalName
	fnNot
	fnName
	fnNamespaceURI
	fnNormalizeSpace
	fnNumber
	fnPosition
	fnRound
	fnString
	fnStringLength
	fnStartsWith
	fnSubstring
	fnSubstringBefore
	fnSubstringAfter
	fnSum
	fnTrue
	fnTranslate
)

// builtins are the XPath 1.0 core functions, all libxml2 knows without a
// namespace (lxml registers its EXSLT functions under their namespace
// URIs, which no prefix reaches here).
var builtins = map[string]builtin{
	"boolean": fnBoolean, "ceiling": fnCeiling, "count": fnCount, "concat": fnConcat,
	"contains": fnContains, "id": fnID, "false": fnFalse, "floor": fnFloor,
	"last": fnLast, "lang": fnLang, "local-name": fnLocalName, "not": fnNot,
	"name": fnName, "namespace-uri": fnNamespaceURI, "normalize-space": fnNormalizeSpace,
	"number": fnNumber, "position": fnPosition, "round": fnRound, "string": fnString,
	"string-length": fnStringLength, "starts-with": fnStartsWith, "substring": fnSubstring,
	"substring-before": fnSubstringBefore, "substring-after": fnSubstringAfter,
	"sum": fnSum, "true": fnTrue, "translate": fnTranslate,
}

func (ev *evaluator) arity(f *funcCall, min, max int) {
	if len(f.args) < min || len(f.args) > max {
		ev.fail("invalid number of arguments to " + f.name + "()")
	}
}

func (ev *evaluator) call(f *funcCall, c ctx) value {
	// libxml2 evaluates every argument before it looks the function up.
	var buf [4]value
	args := buf[:0]
	for _, a := range f.args {
		args = append(args, ev.eval(a, c))
	}
	if f.prefix != "" {
		if f.prefix != "xml" {
			ev.fail("undefined namespace prefix " + f.prefix)
		}
		ev.fail("unregistered function " + f.prefix + ":" + f.name + "()")
	}
	// arg0 is the argument or, for a function that allows none, the
	// context node as a node-set.
	var arg0 value
	if len(args) > 0 {
		arg0 = args[0]
	} else {
		arg0 = value{k: vNodes, ns: ev.single(c.node)}
	}
	switch f.fn {
	case fnLast, fnPosition:
		ev.arity(f, 0, 0)
		n := c.size
		if f.fn == fnPosition {
			n = c.pos
		}
		if n < 0 {
			ev.fail(f.name + "() outside a predicate")
		}
		return value{k: vNum, n: float64(n)}
	case fnCount:
		ev.arity(f, 1, 1)
		return value{k: vNum, n: float64(len(ev.nodeSet(f, args[0])))}
	case fnID:
		ev.arity(f, 1, 1)
		return value{k: vNodes, ns: ev.id(args[0])}
	case fnLocalName, fnName, fnNamespaceURI:
		ev.arity(f, 0, 1)
		ns := ev.nodeSet(f, arg0)
		if len(ns) == 0 {
			return value{k: vStr}
		}
		return value{k: vStr, s: ev.d.nameOf(ns[0], f.fn)}
	case fnString:
		ev.arity(f, 0, 1)
		return value{k: vStr, s: ev.toString(arg0)}
	case fnStringLength:
		ev.arity(f, 0, 1)
		return value{k: vNum, n: float64(utf8.RuneCountInString(ev.toString(arg0)))}
	case fnNormalizeSpace:
		ev.arity(f, 0, 1)
		return value{k: vStr, s: ev.built(normalizeSpace(ev.toString(arg0)))}
	case fnNumber:
		ev.arity(f, 0, 1)
		return value{k: vNum, n: ev.toNumber(arg0)}
	case fnConcat:
		if len(args) < 2 {
			ev.fail("invalid number of arguments to concat()")
		}
		// Charged before the result is built, and built in one allocation.
		parts := make([]string, len(args))
		n := 0
		for i, a := range args {
			parts[i] = ev.toString(a)
			n += len(parts[i])
			ev.tick(len(parts[i]) / bytesPerStep)
		}
		var sb strings.Builder
		sb.Grow(n)
		for _, p := range parts {
			sb.WriteString(p)
		}
		return value{k: vStr, s: sb.String()}
	case fnContains, fnStartsWith, fnSubstringBefore, fnSubstringAfter:
		ev.arity(f, 2, 2)
		s, t := ev.toString(args[0]), ev.toString(args[1])
		switch f.fn {
		case fnContains:
			return value{k: vBool, b: strings.Contains(s, t)}
		case fnStartsWith:
			return value{k: vBool, b: strings.HasPrefix(s, t)}
		}
		i := strings.Index(s, t)
		switch {
		case i < 0:
			return value{k: vStr}
		case f.fn == fnSubstringBefore:
			return value{k: vStr, s: s[:i]}
		default:
			return value{k: vStr, s: s[i+len(t):]}
		}
	case fnSubstring:
		ev.arity(f, 2, 3)
		var length *float64
		if len(args) == 3 {
			l := ev.toNumber(args[2])
			length = &l
		}
		start := ev.toNumber(args[1])
		return value{k: vStr, s: substring(ev.toString(args[0]), start, length)}
	case fnTranslate:
		ev.arity(f, 3, 3)
		s, from, to := ev.toString(args[0]), ev.toString(args[1]), ev.toString(args[2])
		ev.tick(len(s) * (len(from)/10 + 1) / bytesPerStep)
		return value{k: vStr, s: translate(s, from, to)}
	case fnBoolean:
		ev.arity(f, 1, 1)
		return value{k: vBool, b: ev.toBool(args[0])}
	case fnNot:
		ev.arity(f, 1, 1)
		return value{k: vBool, b: !ev.toBool(args[0])}
	case fnTrue, fnFalse:
		ev.arity(f, 0, 0)
		return value{k: vBool, b: f.fn == fnTrue}
	case fnLang:
		ev.arity(f, 1, 1)
		return value{k: vBool, b: ev.d.lang(c.node, ev.toString(args[0]))}
	case fnSum:
		ev.arity(f, 1, 1)
		sum := 0.0
		for _, n := range ev.nodeSet(f, args[0]) {
			sum += stringToNumber(ev.str(n))
		}
		return value{k: vNum, n: sum}
	case fnFloor, fnCeiling, fnRound:
		ev.arity(f, 1, 1)
		n := ev.toNumber(args[0])
		switch f.fn {
		case fnFloor:
			n = math.Floor(n)
		case fnCeiling:
			n = math.Ceil(n)
		default:
			n = round(n)
		}
		return value{k: vNum, n: n}
	}
	ev.fail("unregistered function " + f.name + "()")
	return value{}
}

// nodeSet is a function argument that must be a node-set.
func (ev *evaluator) nodeSet(f *funcCall, v value) []int32 {
	if v.k != vNodes {
		ev.fail(f.name + "() needs a node-set")
	}
	return v.ns
}

// built charges a freshly built string to the budget.
func (ev *evaluator) built(s string) string {
	ev.tick(len(s) / bytesPerStep)
	return s
}

// round is xmlXPathRoundFunction (half up, keeping the sign of zero).
func round(f float64) float64 {
	if f >= -0.5 && f < 0.5 {
		return f * 0.0
	}
	r := math.Floor(f)
	if f-r >= 0.5 {
		r++
	}
	return r
}

// substring is xmlXPathSubstringFunction, positions in characters.
func substring(s string, in float64, le *float64) string {
	const intMax = math.MaxInt32
	i, j := 1, intMax
	if !(in < intMax) {
		i = intMax
	} else if in >= 1.0 {
		i = int(in)
		if in-math.Floor(in) >= 0.5 {
			i++
		}
	}
	if le != nil {
		rin := math.Floor(in)
		if in-rin >= 0.5 {
			rin++
		}
		rle := math.Floor(*le)
		if *le-rle >= 0.5 {
			rle++
		}
		end := rin + rle
		if !(end >= 1.0) {
			j = 1
		} else if end < intMax {
			j = int(end)
		}
	}
	i--
	j--
	n := utf8.RuneCountInString(s)
	if i >= j || i >= n {
		return ""
	}
	var sb strings.Builder
	k := 0
	for _, r := range s {
		if k >= i && k < j {
			sb.WriteRune(r)
		}
		k++
	}
	return sb.String()
}

// normalizeSpace collapses runs of space, tab, CR and LF.
func normalizeSpace(s string) string {
	var sb strings.Builder
	blank := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isBlank(c) {
			blank = sb.Len() > 0
			continue
		}
		if blank {
			sb.WriteByte(' ')
			blank = false
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

func translate(s, from, to string) string {
	fr, tr := []rune(from), []rune(to)
	var sb strings.Builder
	for _, r := range s {
		k := slices.Index(fr, r)
		switch {
		case k < 0:
			sb.WriteRune(r)
		case k < len(tr):
			sb.WriteRune(tr[k])
		}
	}
	return sb.String()
}

// id is xmlXPathIdFunction. Without a DTD, libxml2 knows only xml:id.
func (ev *evaluator) id(v value) []int32 {
	blank := func(r rune) bool { return r < 0x80 && isBlank(byte(r)) }
	var tokens []string
	if v.k == vNodes {
		for _, n := range v.ns {
			tokens = append(tokens, strings.FieldsFunc(ev.str(n), blank)...)
		}
	} else {
		tokens = strings.FieldsFunc(ev.toString(v), blank)
	}
	var out []int32
	for _, t := range tokens {
		if e, ok := ev.d.ids[t]; ok {
			out = append(out, e)
		}
	}
	return ev.d.sortNodes(out)
}

// nameOf is local-name(), name() or namespace-uri() of one node.
func (d *Doc) nameOf(ref int32, fn builtin) string {
	if ref < 0 {
		if fn == fnNamespaceURI {
			return ""
		}
		return d.ns[-ref-1].prefix
	}
	n := &d.nodes[ref]
	switch n.kind {
	case kindElem, kindAttr:
		switch fn {
		case fnNamespaceURI:
			return n.uri
		case fnName:
			if n.prefix != "" && n.uri != "" {
				return n.prefix + ":" + n.local
			}
		}
		return n.local
	case kindPI:
		if fn == fnNamespaceURI {
			return ""
		}
		return n.local
	}
	return ""
}

// lang is xmlXPathLangFunction: the nearest xml:lang, compared ignoring
// ASCII case, a "-" suffix allowed.
func (d *Doc) lang(ref int32, want string) bool {
	if ref < 0 {
		return false
	}
	for k := ref; k != none && k != 0; k = d.nodes[k].parent {
		n := &d.nodes[k]
		if n.kind != kindElem {
			continue
		}
		for a := k + 1; a <= k+n.nattr; a++ {
			at := &d.nodes[a]
			if at.local == "lang" && at.uri == xmlNamespace {
				have := at.value
				if len(have) < len(want) {
					return false
				}
				for i := 0; i < len(want); i++ {
					if upper(want[i]) != upper(have[i]) {
						return false
					}
				}
				return len(have) == len(want) || have[len(want)] == '-'
			}
		}
	}
	return false
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 32
	}
	return c
}
