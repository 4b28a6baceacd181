// Package xmlsafe reads untrusted XML (VOEvents and VTP Transport messages)
// without ever expanding entities, fetching anything or recursing without
// bound. Its Scanner (scanner.go) refuses any DTD (docs/voevent.md §6: no
// real VOEvent or Transport message carries one), accepts only the
// predefined entities and character references, bounds element nesting and
// applies libxml2's well-formedness rules, in one allocation-free pass over
// an in-memory document with exact byte offsets.
package xmlsafe

import "errors"

// DefaultMaxDepth bounds element nesting. Real VOEvents nest about 10 deep;
// 256 leaves room for anything legitimate while keeping a hostile
// 10,000-deep document cheap to refuse.
const DefaultMaxDepth = 256

// Errors callers may test with errors.Is.
var (
	// ErrDTD is returned for any <!DOCTYPE ...> declaration.
	ErrDTD = errors.New("DTD not allowed")
	// ErrTooDeep is returned when nesting exceeds the configured depth.
	ErrTooDeep = errors.New("element nesting too deep")
	// ErrNoRoot is returned for a document without a root element.
	ErrNoRoot = errors.New("no root element")
)
