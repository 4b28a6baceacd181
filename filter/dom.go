package filter

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/comet-go/comet/xmlsafe"
)

// The tree is what libxml2 (through lxml's default parser, as Comet uses
// it) builds for an event: comments and processing instructions are nodes,
// CDATA is merged into the surrounding text, whitespace-only text is kept,
// namespace declarations are not attributes, line ends are normalized and
// attribute values get XML attribute-value normalization.

type nodeKind uint8

const (
	kindDoc nodeKind = iota
	kindElem
	kindAttr
	kindText
	kindComment
	kindPI
)

const none = -1

// node is one node; all nodes of a document sit in one slice in document
// order (an element, then its attributes, then its content), so a subtree
// is the index range [i, end].
type node struct {
	kind   nodeKind
	parent int32 // owner element for attributes; none for the document
	next   int32 // next sibling; none for attributes
	prev   int32
	first  int32 // first child
	last   int32
	end    int32 // last index in the subtree
	nattr  int32 // attributes are nodes i+1 .. i+nattr
	local  string
	prefix string
	uri    string
	value  string // text, comment, PI data, attribute value
}

// nsNode is a namespace node: an in-scope binding seen from one element.
// It is referred to by the negative ref -(index+1).
type nsNode struct {
	owner  int32
	prefix string
	uri    string
}

const (
	xmlNamespace   = "http://www.w3.org/XML/1998/namespace"
	xmlnsNamespace = "http://www.w3.org/2000/xmlns/"
)

// Parse errors callers may test with errors.Is.
var (
	// ErrNotWellFormed wraps every refusal of the payload.
	ErrNotWellFormed = errors.New("event is not well-formed for filtering")
)

// Doc is one event parsed once for filtering. Evaluating the same *Filter
// twice on one Doc evaluates it once, so each distinct filter costs one
// evaluation per event whatever the number of subscribers using it. Safe
// for concurrent use.
type Doc struct {
	nodes []node
	ids   map[string]int32 // xml:id values (libxml2 registers them as IDs)
	decls []nsDecl         // namespace declarations, by element

	nsOnce     sync.Once
	ns         []nsNode
	nsRange    [][2]int32 // per node index: [start, end) into ns
	nsOverflow bool

	mu   sync.Mutex
	memo map[*Filter]*memoEntry
}

type nsDecl struct {
	elem   int32
	prefix string
	uri    string
}

type memoEntry struct {
	once    sync.Once
	budget  int
	outcome Outcome
}

// Parse parses an event for filtering. It neither modifies nor keeps
// payload. It refuses what libxml2 refuses and, like xmlsafe, any DTD and
// nesting deeper than xmlsafe.DefaultMaxDepth (libxml2's own default limit
// is also 256); no entity is expanded and nothing is fetched.
func Parse(payload []byte) (*Doc, error) {
	src, err := toUTF8(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotWellFormed, err)
	}
	b := &builder{src: src}
	if err := b.run(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotWellFormed, err)
	}
	return &Doc{nodes: b.nodes, ids: b.ids, decls: b.decls}, nil
}

// toUTF8 returns the document as UTF-8 with line ends normalized (XML 1.0
// §2.11), so that byte offsets into it match what the decoder reads. The
// encoding is found and decoded as xmlsafe.Scanner does (libxml2's rules).
func toUTF8(p []byte) ([]byte, error) {
	p, _, err := xmlsafe.Decode(p)
	if err != nil {
		return nil, err
	}
	if bytes.IndexByte(p, '\r') >= 0 {
		q := make([]byte, 0, len(p))
		for i := 0; i < len(p); i++ {
			if p[i] == '\r' {
				q = append(q, '\n')
				if i+1 < len(p) && p[i+1] == '\n' {
					i++
				}
				continue
			}
			q = append(q, p[i])
		}
		p = q
	}
	return p, nil
}

type binding struct{ prefix, uri string }

type builder struct {
	src    []byte
	nodes  []node
	ids    map[string]int32
	decls  []nsDecl
	open   []int32   // open elements
	names  []string  // their raw QNames, to check end tags
	scope  []binding // in-scope namespace bindings, innermost last
	marks  []int     // len(scope) at each open element
	text   []byte    // pending character data
	rooted bool      // the root element has been seen
}

func (b *builder) run() error {
	d := xml.NewDecoder(bytes.NewReader(b.src))
	d.Strict = true
	d.Entity = nil
	// toUTF8 already decoded; the declared encoding is only a name now.
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	b.nodes = make([]node, 1, 16+len(b.src)/24)
	b.nodes[0] = node{kind: kindDoc, parent: none, next: none, prev: none, first: none, last: none}
	first := true
	for {
		off := d.InputOffset()
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(b.open) == 0 && b.rooted {
				return fmt.Errorf("content after the root element: <%s>", t.Name.Local)
			}
			if len(b.open) >= xmlsafe.DefaultMaxDepth {
				return fmt.Errorf("%w (limit %d)", xmlsafe.ErrTooDeep, xmlsafe.DefaultMaxDepth)
			}
			if err := b.start(t, off, d.InputOffset()); err != nil {
				return err
			}
		case xml.EndElement:
			if err := b.end(t); err != nil {
				return err
			}
		case xml.CharData:
			if len(b.open) == 0 {
				if len(bytes.Trim(t, " \t\n")) > 0 {
					return errors.New("text outside the root element")
				}
				break
			}
			b.text = append(b.text, t...)
		case xml.Comment:
			b.flush()
			b.add(node{kind: kindComment, value: string(t)})
		case xml.ProcInst:
			if t.Target == "xml" {
				if !first {
					return errors.New("XML declaration not at the start")
				}
				break
			}
			b.flush()
			b.add(node{kind: kindPI, local: t.Target, value: string(t.Inst)})
		case xml.Directive:
			if len(t) >= 7 && strings.EqualFold(string(t[:7]), "DOCTYPE") {
				return xmlsafe.ErrDTD
			}
			return fmt.Errorf("markup declaration not allowed: %.20q", string(t))
		}
		first = false
	}
	if len(b.open) > 0 {
		return io.ErrUnexpectedEOF
	}
	if !b.rooted {
		return xmlsafe.ErrNoRoot
	}
	b.nodes[0].end = int32(len(b.nodes) - 1)
	return nil
}

// add appends n as the last child of the current parent.
func (b *builder) add(n node) int32 {
	parent := int32(0)
	if len(b.open) > 0 {
		parent = b.open[len(b.open)-1]
	}
	i := int32(len(b.nodes))
	n.parent, n.next, n.first, n.last, n.end = parent, none, none, none, i
	p := &b.nodes[parent]
	n.prev = p.last
	if p.last != none {
		b.nodes[p.last].next = i
	} else {
		p.first = i
	}
	p.last = i
	b.nodes = append(b.nodes, n)
	return i
}

func (b *builder) flush() {
	if len(b.text) > 0 {
		b.add(node{kind: kindText, value: string(b.text)})
		b.text = b.text[:0]
	}
}

func (b *builder) lookup(prefix string) (string, bool) {
	if prefix == "xml" {
		return xmlNamespace, true
	}
	for i := len(b.scope) - 1; i >= 0; i-- {
		if b.scope[i].prefix == prefix {
			return b.scope[i].uri, true
		}
	}
	return "", prefix == ""
}

func qname(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

func checkQName(n xml.Name) error {
	if strings.Contains(n.Local, ":") || n.Local == "" {
		return fmt.Errorf("bad QName %q", qname(n))
	}
	return nil
}

func (b *builder) start(t xml.StartElement, from, to int64) error {
	b.flush()
	if err := checkQName(t.Name); err != nil {
		return err
	}
	b.marks = append(b.marks, len(b.scope))
	idx := int32(len(b.nodes))
	// Namespace declarations first: they apply to the element's own name.
	for _, a := range t.Attr {
		var prefix string
		if a.Value == xmlnsNamespace || a.Name.Space == "" && a.Value == xmlNamespace {
			if a.Name.Space == "xmlns" || a.Name.Local == "xmlns" {
				return fmt.Errorf("reserved namespace %q may not be declared", a.Value)
			}
		}
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
		case a.Name.Space == "xmlns":
			prefix = a.Name.Local
			if prefix == "" || strings.Contains(prefix, ":") || prefix == "xmlns" || a.Value == "" {
				return fmt.Errorf("bad namespace declaration xmlns:%s=%q", prefix, a.Value)
			}
			if (prefix == "xml") != (a.Value == xmlNamespace) {
				return fmt.Errorf("bad binding of the xml namespace: xmlns:%s=%q", prefix, a.Value)
			}
			if prefix == "xml" {
				continue // legal, and libxml2 does not record it
			}
		default:
			continue
		}
		for _, o := range b.scope[b.marks[len(b.marks)-1]:] {
			if o.prefix == prefix {
				return fmt.Errorf("namespace prefix %q declared twice", prefix)
			}
		}
		b.scope = append(b.scope, binding{prefix, a.Value})
		b.decls = append(b.decls, nsDecl{idx, prefix, a.Value})
	}
	uri, ok := b.lookup(t.Name.Space)
	if !ok {
		return fmt.Errorf("namespace prefix %s on %s is not defined", t.Name.Space, t.Name.Local)
	}
	b.add(node{kind: kindElem, local: t.Name.Local, prefix: t.Name.Space, uri: uri})
	b.open = append(b.open, idx)
	b.names = append(b.names, qname(t.Name))
	b.rooted = true

	var raw []string // libxml2-normalized values, computed only if needed
	n := int32(0)
	for i, a := range t.Attr {
		if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
			continue
		}
		if err := checkQName(a.Name); err != nil {
			return err
		}
		auri := ""
		if a.Name.Space != "" {
			if auri, ok = b.lookup(a.Name.Space); !ok {
				return fmt.Errorf("namespace prefix %s for %s is not defined", a.Name.Space, a.Name.Local)
			}
		}
		for j := idx + 1; j <= idx+n; j++ {
			o := &b.nodes[j]
			if o.local == a.Name.Local && (o.prefix == a.Name.Space || auri != "" && o.uri == auri) {
				return fmt.Errorf("attribute %s redefined", qname(a.Name))
			}
		}
		v := a.Value
		if strings.ContainsAny(v, "\t\n\r") {
			if raw == nil {
				raw = rawAttrValues(b.src[from:to], len(t.Attr))
			}
			if i < len(raw) {
				v = raw[i]
			} else {
				v = strings.Map(func(r rune) rune {
					if r == '\t' || r == '\n' || r == '\r' {
						return ' '
					}
					return r
				}, v)
			}
		}
		ai := int32(len(b.nodes))
		b.nodes = append(b.nodes, node{kind: kindAttr, parent: idx, next: none, prev: none,
			first: none, last: none, end: ai, local: a.Name.Local, prefix: a.Name.Space, uri: auri, value: v})
		if n > 0 {
			b.nodes[ai-1].next = ai
			b.nodes[ai].prev = ai - 1
		}
		n++
		if auri == xmlNamespace && a.Name.Local == "id" {
			if b.ids == nil {
				b.ids = make(map[string]int32)
			}
			if _, dup := b.ids[v]; !dup {
				b.ids[v] = idx
			}
		}
	}
	b.nodes[idx].nattr = n
	b.nodes[idx].end = idx + n
	return nil
}

func (b *builder) end(t xml.EndElement) error {
	b.flush()
	top := len(b.open) - 1
	if top < 0 || b.names[top] != qname(t.Name) {
		return fmt.Errorf("unexpected end tag </%s>", qname(t.Name))
	}
	idx := b.open[top]
	b.nodes[idx].end = int32(len(b.nodes) - 1)
	b.open, b.names = b.open[:top], b.names[:top]
	b.scope = b.scope[:b.marks[top]]
	b.marks = b.marks[:top]
	return nil
}

// rawAttrValues re-reads a start tag that encoding/xml has already
// accepted, to apply attribute-value normalization, which encoding/xml
// skips: a literal tab or newline becomes a space, a character reference
// (&#10;) stays. It returns nil if the tag does not look as expected.
func rawAttrValues(tag []byte, want int) []string {
	i := bytes.IndexByte(tag, '<')
	if i < 0 {
		return nil
	}
	i++
	for i < len(tag) && !isBlank(tag[i]) && tag[i] != '>' && tag[i] != '/' {
		i++
	}
	var out []string
	for {
		for i < len(tag) && isBlank(tag[i]) {
			i++
		}
		if i >= len(tag) || tag[i] == '>' || tag[i] == '/' {
			break
		}
		for i < len(tag) && tag[i] != '=' {
			i++
		}
		i++
		for i < len(tag) && isBlank(tag[i]) {
			i++
		}
		if i >= len(tag) {
			return nil
		}
		q := tag[i]
		j := bytes.IndexByte(tag[i+1:], q)
		if j < 0 {
			return nil
		}
		out = append(out, normalizeAttr(tag[i+1:i+1+j]))
		i += j + 2
	}
	if len(out) != want {
		return nil
	}
	return out
}

func normalizeAttr(raw []byte) string {
	var sb strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '\t' || c == '\n' || c == '\r':
			sb.WriteByte(' ')
		case c == '&':
			j := bytes.IndexByte(raw[i:], ';')
			if j < 0 {
				sb.WriteByte(c)
				continue
			}
			ref := string(raw[i+1 : i+j])
			i += j
			switch ref {
			case "lt":
				sb.WriteByte('<')
			case "gt":
				sb.WriteByte('>')
			case "amp":
				sb.WriteByte('&')
			case "apos":
				sb.WriteByte('\'')
			case "quot":
				sb.WriteByte('"')
			default:
				var r rune
				if _, err := fmt.Sscanf(ref, "#x%x", &r); err == nil && strings.HasPrefix(ref, "#x") {
					sb.WriteRune(r)
				} else if _, err := fmt.Sscanf(ref, "#%d", &r); err == nil {
					sb.WriteRune(r)
				}
			}
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// stringValue is the XPath string-value of a node (xmlNodeGetContent).
func (d *Doc) stringValue(ref int32) string {
	if ref < 0 {
		return d.ns[-ref-1].uri
	}
	n := &d.nodes[ref]
	switch n.kind {
	case kindElem, kindDoc:
		if n.first == none {
			return ""
		}
		if f := &d.nodes[n.first]; f.next == none && f.kind == kindText {
			return f.value // the common <X>text</X>
		}
		var sb strings.Builder
		for i := ref + 1; i <= n.end; i++ {
			if d.nodes[i].kind == kindText {
				sb.WriteString(d.nodes[i].value)
			}
		}
		return sb.String()
	default:
		return n.value
	}
}

// maxNSNodes bounds the namespace nodes built for one document (a
// hostile document can declare many prefixes on many nested elements).
// Past it the namespace axis is an evaluation error.
const maxNSNodes = 1 << 18

// buildNS creates the namespace nodes of every element, in libxml2's axis
// order: the xml namespace first, then xmlGetNsList's list read backwards
// (that list holds the element's own declarations first, then its
// ancestors', the innermost declaration of a prefix winning).
func (d *Doc) buildNS() {
	d.nsRange = make([][2]int32, len(d.nodes))
	di := 0
	for i := range d.nodes {
		n := &d.nodes[i]
		if n.kind != kindElem {
			continue
		}
		var own []nsDecl
		for di < len(d.decls) && d.decls[di].elem < int32(i) {
			di++
		}
		for k := di; k < len(d.decls) && d.decls[k].elem == int32(i); k++ {
			own = append(own, d.decls[k])
		}
		// The parent's list, in xmlGetNsList order, is its nodes after the
		// first (xml), reversed.
		var inherited []nsNode
		if p := n.parent; p > 0 {
			r := d.nsRange[p]
			for k := r[1] - 1; k > r[0]; k-- {
				inherited = append(inherited, d.ns[k])
			}
		}
		start := int32(len(d.ns))
		var list []binding
		for _, o := range own {
			list = append(list, binding{o.prefix, o.uri})
		}
	next:
		for _, h := range inherited {
			for _, o := range own {
				if o.prefix == h.prefix {
					continue next
				}
			}
			list = append(list, binding{h.prefix, h.uri})
		}
		if len(d.ns)+len(list)+1 > maxNSNodes {
			d.nsOverflow = true
			return
		}
		d.ns = append(d.ns, nsNode{owner: int32(i), prefix: "xml", uri: xmlNamespace})
		for k := len(list) - 1; k >= 0; k-- {
			d.ns = append(d.ns, nsNode{owner: int32(i), prefix: list[k].prefix, uri: list[k].uri})
		}
		d.nsRange[i] = [2]int32{start, int32(len(d.ns))}
	}
}
