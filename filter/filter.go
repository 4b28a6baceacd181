// Package filter decides, for each event and each subscriber, whether the
// subscriber's XPath filters let the event through, as Comet does
// (docs/filtering.md): filters are OR'd, no filter means everything, an
// evaluation error means "no match", no namespace prefix is bound, the
// context node is the root element, and a result matches if it is a
// non-empty node-set, true, a non-zero or NaN number, or a non-empty
// string.
//
// Two rules are stricter than Comet's, so that nothing the broker refuses
// ever widens what a subscriber receives (fail closed): a filter the
// broker refuses (it does not compile, or it is past a limit) stays in the
// subscriber's list and never matches, where Comet drops it and, with none
// left, sends everything (Refuse); and every evaluation runs under a step
// budget, a filter that exhausts it being no match for that event
// (DefaultBudget).
//
// Comet evaluates with libxml2. github.com/antchfx/xpath, the obvious Go
// engine, differs from it where it matters here and has no hook to change
// that (it converts with strconv.ParseFloat, so "+5" > 4; it compares a
// string with a node-set as numbers and a number with only the first node;
// it rejects unknown functions and variables at compile time and accepts
// ends-with() and matches(); it lacks id() and lang(); a prefixed name
// test is an empty node-set instead of an error). So this package carries
// its own small XPath 1.0 engine, a transcription of libxml2's xpath.c:
// same grammar and quirks, same conversions, same lazy errors.
package filter

import (
	"container/list"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"weak"
)

// MaxExprLen is the longest filter expression, in bytes, that Compile
// accepts. Filters come from remote peers; real ones are well under 200
// bytes. Comet has no limit.
const MaxExprLen = 4096

// Filter is one subscriber filter: compiled, or refused (see Refuse).
// Safe for concurrent use: it is never modified after it is made.
type Filter struct {
	src     string
	root    expr
	refusal error // why a refused filter was refused; nil if compiled
}

// Compile compiles a filter as libxml2 would. It fails only where libxml2
// fails to compile ("Filter ... is not valid XPath"); unknown functions,
// variables and namespace prefixes compile and make every evaluation fail.
func Compile(s string) (*Filter, error) {
	if len(s) > MaxExprLen {
		return nil, fmt.Errorf("Filter %q is not valid XPath: %d bytes, longer than the limit of %d",
			s[:64]+"...", len(s), MaxExprLen)
	}
	e, err := compile(s)
	if err != nil {
		return nil, fmt.Errorf("Filter %q is not valid XPath: %w", s, err)
	}
	return &Filter{src: s, root: e}, nil
}

// Refuse returns a filter standing for one a subscriber sent and the
// broker refused (it does not compile, or it is past a limit): it never
// matches. Refused filters stay in the subscriber's list, so refusing a
// filter can only narrow what the subscriber receives: a list whose every
// filter was refused lets nothing through, where an empty list (the
// subscriber asked for no filtering) lets everything through.
func Refuse(s string, reason error) *Filter {
	if reason == nil {
		reason = errors.New("refused")
	}
	return &Filter{src: s, refusal: reason}
}

// String returns the expression as the subscriber sent it.
func (f *Filter) String() string { return f.src }

// Refusal is why f was refused (see Refuse), nil for a compiled filter.
func (f *Filter) Refusal() error { return f.refusal }

// Outcome is what one filter decides on one event.
type Outcome uint8

const (
	// NoMatch: the result is false, or evaluation failed (an undefined
	// prefix, function or variable), or the filter was refused.
	NoMatch Outcome = iota
	// Match: the event goes to the subscriber.
	Match
	// OverBudget: evaluation was stopped at its step budget. The event
	// does not go (fail closed); the caller should say so, as the
	// subscriber would otherwise never know.
	OverBudget
)

func (o Outcome) String() string {
	switch o {
	case Match:
		return "match"
	case OverBudget:
		return "over budget"
	}
	return "no match"
}

// Eval decides f on d within budget steps (DefaultBudget if budget <= 0;
// at most MaxBudget). Each filter is evaluated at most once per Doc (for
// the first budget asked), however many subscribers hold it.
func (d *Doc) Eval(f *Filter, budget int) Outcome {
	if d == nil || f == nil || f.root == nil {
		return NoMatch
	}
	budget = clampBudget(budget)
	d.mu.Lock()
	if d.memo == nil {
		d.memo = make(map[*Filter]*memoEntry)
	}
	e := d.memo[f]
	if e == nil {
		e = &memoEntry{budget: budget}
		d.memo[f] = e
	}
	d.mu.Unlock()
	if e.budget != budget {
		// One budget per Doc in practice (the broker's); another one is
		// answered afresh.
		return d.evalOnce(f, budget)
	}
	e.once.Do(func() { e.outcome = d.evalOnce(f, budget) })
	return e.outcome
}

// MatchAny applies the rule for one subscriber's filters: no filters
// means every event; otherwise the event goes if any filter matches
// within budget. overBudget, if not nil, is called for each filter
// evaluated that ran out of budget (filters after the first match are
// not evaluated).
func (d *Doc) MatchAny(fs []*Filter, budget int, overBudget func(*Filter)) bool {
	if len(fs) == 0 {
		return true
	}
	for _, f := range fs {
		switch d.Eval(f, budget) {
		case Match:
			return true
		case OverBudget:
			if overBudget != nil {
				overBudget(f)
			}
		}
	}
	return false
}

// testHookEval, if set (by tests), runs at each evaluation.
var testHookEval func()

func (d *Doc) evalOnce(f *Filter, budget int) (out Outcome) {
	if testHookEval != nil {
		testHookEval()
	}
	ev := getEvaluator(d, budget)
	defer func() {
		// An evaluation error is a non-match; so is a bug here, rather
		// than a crashed writer (tests call evaluate, which lets bugs
		// through). Only an evaluator that stopped cleanly, or on an
		// XPath error, is reused.
		if r := recover(); r != nil {
			out = NoMatch
			ee, xpathErr := r.(*evalError)
			if !xpathErr {
				return
			}
			if ee.msg == stepLimitMsg {
				out = OverBudget
			}
		}
		putEvaluator(ev)
	}()
	if truthy(ev.run(f.root)) {
		return Match
	}
	return NoMatch
}

// evaluate runs f within DefaultBudget and returns its value; only XPath
// evaluation errors are turned into err.
func (d *Doc) evaluate(f *Filter) (v value, err error) {
	defer func() {
		if r := recover(); r != nil {
			ee, ok := r.(*evalError)
			if !ok {
				panic(r)
			}
			err = ee
		}
	}()
	ev := &evaluator{d: d, limit: DefaultBudget}
	return ev.run(f.root), nil
}

// Steps evaluates f on d afresh (not memoized) with a budget of limit
// steps (at most MaxBudget) and reports the steps used; within is false
// if the budget ran out. For measuring what filters cost.
func (f *Filter) Steps(d *Doc, limit int) (steps int, within bool) {
	if f.root == nil {
		return 0, true
	}
	ev := &evaluator{d: d, limit: clampBudget(limit)}
	defer func() {
		if r := recover(); r != nil {
			ee, ok := r.(*evalError)
			if !ok {
				panic(r)
			}
			steps, within = ev.steps, ee.msg != stepLimitMsg
		}
	}()
	ev.run(f.root)
	return ev.steps, true
}

// truthy is Comet's test of the result, Python's truth value of what lxml
// returns: NaN is true, unlike XPath's boolean(); and lxml leaves the
// document node out of the list it returns, so a node-set holding only
// the document node ("/", ".." from the root element) is an empty list.
func truthy(v value) bool {
	switch v.k {
	case vBool:
		return v.b
	case vNum:
		return v.n != 0 // NaN != 0; -0 == 0
	case vStr:
		return v.s != ""
	}
	for _, n := range v.ns {
		if n != 0 {
			return true
		}
	}
	return false
}

// DefaultCacheSize is the number of expressions a Cache keeps compiled
// when NewCache is given max <= 0.
const DefaultCacheSize = 1024

// Cache interns compiled filters by expression, so that subscribers using
// the same filter share one *Filter and each Doc evaluates it once. Safe
// for concurrent use.
//
// Bound: the max most recently used expressions (compile failures
// included) are held; an evicted filter that a subscriber still holds
// stays interned, through a weak pointer, until it is garbage collected.
// So memory is max entries plus the filters subscribers hold anyway.
type Cache struct {
	mu  sync.Mutex
	max int
	lru list.List // of *cacheEntry, most recent first
	m   map[string]*cacheEntry
}

type cacheEntry struct {
	src  string
	f    *Filter // held while in the LRU
	err  error
	wp   weak.Pointer[Filter]
	elem *list.Element // nil once evicted
}

// NewCache returns a cache holding up to max recently used expressions
// (DefaultCacheSize if max <= 0).
func NewCache(max int) *Cache {
	if max <= 0 {
		max = DefaultCacheSize
	}
	return &Cache{max: max, m: make(map[string]*cacheEntry)}
}

// Compile returns the interned filter for s, compiling it if needed. The
// same string gives the same *Filter while anyone holds it.
func (c *Cache) Compile(s string) (*Filter, error) {
	c.mu.Lock()
	if f, err, ok := c.lookup(s); ok {
		c.mu.Unlock()
		return f, err
	}
	c.mu.Unlock()

	f, err := Compile(s) // outside the lock; a racing twin is resolved below

	c.mu.Lock()
	defer c.mu.Unlock()
	if f2, err2, ok := c.lookup(s); ok {
		return f2, err2
	}
	e := &cacheEntry{src: s, f: f, err: err}
	if f != nil {
		e.wp = weak.Make(f)
		runtime.AddCleanup(f, c.forget, cleanupKey{s, e.wp})
	}
	c.m[s] = e
	e.elem = c.lru.PushFront(e)
	c.evict()
	return f, err
}

// evict trims the LRU to max. An evicted filter stays in the map only
// while it is alive (weakly held). c.mu is held.
func (c *Cache) evict() {
	for c.lru.Len() > c.max {
		old := c.lru.Remove(c.lru.Back()).(*cacheEntry)
		old.elem, old.f = nil, nil
		if old.err != nil || old.wp.Value() == nil {
			delete(c.m, old.src)
		}
	}
}

// lookup finds a live entry and marks it recently used. c.mu is held.
func (c *Cache) lookup(s string) (*Filter, error, bool) {
	e, ok := c.m[s]
	if !ok {
		return nil, nil, false
	}
	f := e.f
	if e.err == nil && f == nil {
		if f = e.wp.Value(); f == nil {
			return nil, nil, false // collected; its cleanup is pending
		}
	}
	if e.elem != nil {
		c.lru.MoveToFront(e.elem)
	} else {
		e.f = f
		e.elem = c.lru.PushFront(e)
		c.evict()
	}
	return f, e.err, true
}

type cleanupKey struct {
	src string
	wp  weak.Pointer[Filter]
}

// forget drops the entry of a collected filter.
func (c *Cache) forget(k cleanupKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k.src]; ok && e.wp == k.wp && e.elem == nil {
		delete(c.m, k.src)
	}
}

// size reports the entries held (tests).
func (c *Cache) size() (held, interned int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), len(c.m)
}
