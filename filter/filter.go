// Package filter decides, for each event and each subscriber, whether the
// subscriber's XPath filters let the event through, exactly as Comet does
// (docs/filtering.md): filters are OR'd, no filter means everything, a
// filter that does not compile is dropped by the caller, an evaluation
// error means "no match", no namespace prefix is bound, the context node
// is the root element, and a result matches if it is a non-empty node-set,
// true, a non-zero or NaN number, or a non-empty string.
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
	"fmt"
	"runtime"
	"sync"
	"weak"
)

// MaxExprLen is the longest filter expression, in bytes, that Compile
// accepts. Filters come from remote peers; real ones are well under 200
// bytes. Comet has no limit.
const MaxExprLen = 4096

// Filter is one compiled subscriber filter. Safe for concurrent use: the
// compiled form is never modified after Compile.
type Filter struct {
	src  string
	root expr
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

// String returns the expression as given to Compile.
func (f *Filter) String() string { return f.src }

// Match reports whether f lets the event through. An evaluation error,
// including the MaxEvalSteps limit, is no match. Each filter is evaluated
// at most once per Doc.
func (d *Doc) Match(f *Filter) bool {
	if d == nil || f == nil {
		return false
	}
	d.mu.Lock()
	if d.memo == nil {
		d.memo = make(map[*Filter]*memoEntry)
	}
	e := d.memo[f]
	if e == nil {
		e = &memoEntry{}
		d.memo[f] = e
	}
	d.mu.Unlock()
	e.once.Do(func() { e.ok = d.matchOnce(f) })
	return e.ok
}

// MatchAny applies Comet's rule for one subscriber: no filters means every
// event; otherwise the event goes if any filter matches.
func (d *Doc) MatchAny(fs []*Filter) bool {
	if len(fs) == 0 {
		return true
	}
	for _, f := range fs {
		if d.Match(f) {
			return true
		}
	}
	return false
}

// testHookEval, if set (by tests), runs at each evaluation.
var testHookEval func()

func (d *Doc) matchOnce(f *Filter) (ok bool) {
	if testHookEval != nil {
		testHookEval()
	}
	ev := getEvaluator(d)
	defer func() {
		// An evaluation error is a non-match; so is a bug here, rather
		// than a crashed broadcaster (tests call evaluate, which lets
		// bugs through). Only an evaluator that stopped cleanly, or on
		// an XPath error, is reused.
		if r := recover(); r != nil {
			ok = false
			if _, xpathErr := r.(*evalError); !xpathErr {
				return
			}
		}
		putEvaluator(ev)
	}()
	return truthy(ev.run(f.root))
}

// evaluate runs f and returns its value; only XPath evaluation errors are
// turned into err.
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
	ev := &evaluator{d: d, limit: MaxEvalSteps}
	return ev.run(f.root), nil
}

// Steps evaluates f on d afresh (not memoized) with a budget of limit
// steps and reports the steps used; within is false if the budget ran out.
// A broadcaster uses it to refuse filters too costly to run on every event.
func (f *Filter) Steps(d *Doc, limit int) (steps int, within bool) {
	ev := &evaluator{d: d, limit: min(limit, MaxEvalSteps)}
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
