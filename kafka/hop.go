package kafka

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/comet-go/comet/vtp"
)

// Header names of hop-client (SCiMMA's Hopskotch) records.
const (
	HeaderFormat = "_format" // the body's format; "voevent" for VOEvents
	HeaderTest   = "_test"   // present on test messages, whatever its value
	HeaderID     = "_id"     // a 16-byte UUID naming the message
	HeaderSender = "_sender" // who published it
)

// FormatVOEvent is the _format of a VOEvent.
const FormatVOEvent = "voevent"

// MaxJSONDepth bounds the nesting of a JSON body (a VOEvent's XML is at
// most a dozen levels deep; xmlsafe's bound applies to the rebuilt XML).
const MaxJSONDepth = 64

// Form is how a record's value carried the VOEvent.
type Form uint8

const (
	// FormXML: the value is the XML document itself (GCN; hop-client
	// 0.12 and later), relayed byte for byte.
	FormXML Form = iota + 1
	// FormEnvelopeXML: an old hop-client JSON envelope
	// {"format":"voevent","content":"<xml…>"} whose content is the XML
	// text: those bytes are relayed.
	FormEnvelopeXML
	// FormRebuilt: hop-client's xmltodict-style JSON rendering of the
	// XML (0.6 to 0.11, or an envelope whose content is that rendering):
	// the original bytes are gone and the XML is rebuilt (RebuildVOEvent).
	FormRebuilt
)

func (f Form) String() string {
	switch f {
	case FormXML:
		return "xml"
	case FormEnvelopeXML:
		return "envelope"
	case FormRebuilt:
		return "rebuilt"
	}
	return fmt.Sprintf("Form(%d)", uint8(f))
}

// Errors of Decode.
var (
	ErrEmpty      = errors.New("empty record value")
	ErrNotVOEvent = errors.New("not a VOEvent")
	ErrBadJSON    = errors.New("bad hop-client JSON body")
)

// IsTest reports whether a record is a hop-client test message: it has a
// _test header (hop-client tests only for the header's presence).
func IsTest(r *kgo.Record) bool {
	for _, h := range r.Headers {
		if h.Key == HeaderTest {
			return true
		}
	}
	return false
}

// Header returns the value of the record's first header called key.
func Header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// Decode returns the VOEvent document a record value carries, whichever
// hop-client version (or GCN) wrote it, and how it was carried. format is
// the record's _format header ("" when it has none): any other format
// than voevent is ErrNotVOEvent. A value that is not a JSON object is
// taken as XML and returned as it is, whatever its encoding: the caller
// parses it with the same checks as any event, which refuse what is not
// XML.
func Decode(value []byte, format string) ([]byte, Form, error) {
	if format != "" && !strings.EqualFold(format, FormatVOEvent) {
		return nil, 0, fmt.Errorf("%w: _format %q", ErrNotVOEvent, format)
	}
	switch c, ok := firstByte(value); {
	case !ok:
		return nil, 0, ErrEmpty
	case c == '{':
	default:
		// XML, in whatever encoding (the parser reads every one the
		// receiver does), or not: the caller's parse decides.
		return value, FormXML, nil
	}
	obj, err := parseObject(value)
	if err != nil {
		return nil, 0, err
	}
	if format == "" {
		// No _format header: only the old envelope says what it holds.
		f, hasFormat := obj.get("format")
		c, hasContent := obj.get("content")
		if !hasFormat || !hasContent {
			return nil, 0, fmt.Errorf("%w: a JSON body without _format header or envelope", ErrNotVOEvent)
		}
		return decodeEnvelope(f, c)
	}
	doc, err := RebuildVOEvent(obj)
	if err != nil {
		return nil, 0, err
	}
	return doc, FormRebuilt, nil
}

func decodeEnvelope(format, content any) ([]byte, Form, error) {
	if f, ok := format.(string); !ok || !strings.EqualFold(f, FormatVOEvent) {
		return nil, 0, fmt.Errorf("%w: envelope format %v", ErrNotVOEvent, format)
	}
	switch c := content.(type) {
	case string:
		if b, _ := firstByte([]byte(c)); b != '<' {
			return nil, 0, fmt.Errorf("%w: envelope content is text but not XML", ErrBadJSON)
		}
		return []byte(c), FormEnvelopeXML, nil
	case object:
		doc, err := RebuildVOEvent(c)
		if err != nil {
			return nil, 0, err
		}
		return doc, FormRebuilt, nil
	}
	return nil, 0, fmt.Errorf("%w: envelope content is neither XML text nor an object", ErrBadJSON)
}

// firstByte is the first byte after a UTF-8 byte-order mark and white
// space; false when there is none.
func firstByte(b []byte) (byte, bool) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c, true
	}
	return 0, false
}

// The namespaces of a rebuilt VOEvent's root.
const (
	VOEventNamespace = "http://www.ivoa.net/xml/VOEvent/v2.0"
	xsiNamespace     = "http://www.w3.org/2001/XMLSchema-instance"
	voeventSchemaLoc = "http://www.ivoa.net/xml/VOEvent/v2.0 http://www.ivoa.net/xml/VOEvent/VOEvent-v2.0.xsd"
)

// voeventAttributes are the attribute names of the VOEvent 2.0 schema.
// hop-client's rendering (xmltodict with an empty attribute prefix) does
// not tell attributes from child elements; a string under one of these
// names is written as an attribute, any other as an element. The schema
// has no element with one of these names (its elements that differ only
// in case, Name and Value, are capitalised).
var voeventAttributes = map[string]bool{
	"ivorn": true, "role": true, "version": true,
	"name": true, "value": true, "unit": true, "ucd": true, "dataType": true, "utype": true,
	"type": true, "id": true, "coord_system_id": true,
	"uri": true, "mimetype": true, "meaning": true,
	"probability": true, "relation": true, "importance": true, "expires": true, "cite": true,
}

// RebuildVOEvent writes hop-client's JSON rendering of a VOEvent (the
// fields ivorn, role and version, then Who, What, WhereWhen, How, Why,
// Citations, Description and Reference as xmltodict made them) back as a
// VOEvent 2.0 document (docs/kafka.md §3):
//
//   - an XML declaration, then the root voe:VOEvent with the VOEvent and
//     XML Schema namespaces, xsi:schemaLocation, and the ivorn, role and
//     version attributes;
//   - every other member in its order in the JSON: an empty object is a
//     section the original did not have (hop-client's default) and is
//     left out; null is an empty element; an array is the element
//     repeated; a string is an attribute when its name is one of the
//     schema's attribute names (voeventAttributes) and an element
//     otherwise; "#text" is the element's text; numbers and booleans are
//     written as JSON wrote them;
//   - names with a namespace prefix are left out, but xsi: ones;
//   - two spaces of indentation per level, text and attributes escaped as
//     lxml escapes them (vtp.WriteEscaped).
//
// The original bytes, comments, namespace prefixes and white space are
// not recoverable: the result differs from the author's document, so its
// SHA-1 does too.
func RebuildVOEvent(obj object) ([]byte, error) {
	ivorn, ok := obj.get("ivorn")
	if s, isStr := ivorn.(string); !ok || !isStr || s == "" {
		return nil, fmt.Errorf("%w: no ivorn member", ErrNotVOEvent)
	}
	w := &xmlWriter{}
	w.buf.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	root := object{
		{"xmlns:voe", VOEventNamespace},
		{"xmlns:xsi", xsiNamespace},
		{"xsi:schemaLocation", voeventSchemaLoc},
	}
	for _, m := range obj {
		if strings.Contains(m.key, ":") {
			continue // hop-client drops them; ours are above
		}
		root = append(root, m)
	}
	if err := w.element("voe:VOEvent", root, 0); err != nil {
		return nil, err
	}
	w.buf.WriteByte('\n')
	return []byte(w.buf.String()), nil
}

type xmlWriter struct{ buf strings.Builder }

func (w *xmlWriter) indent(depth int) {
	w.buf.WriteByte('\n')
	for range depth {
		w.buf.WriteString("  ")
	}
}

// emit writes member value v under name at depth.
func (w *xmlWriter) emit(name string, v any, depth int) error {
	if depth > MaxJSONDepth {
		return fmt.Errorf("%w: nested too deep", ErrBadJSON)
	}
	if !validName(name) {
		return fmt.Errorf("%w: %q is not an XML name", ErrBadJSON, name)
	}
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			if _, nested := e.([]any); nested {
				return fmt.Errorf("%w: array in an array under %q", ErrBadJSON, name)
			}
			if err := w.emit(name, e, depth); err != nil {
				return err
			}
		}
		return nil
	case object:
		if len(v) == 0 && depth == 1 {
			return nil // a section the event did not have
		}
		w.indent(depth)
		return w.element(name, v, depth)
	case nil:
		w.indent(depth)
		w.buf.WriteString("<" + name + "/>")
		return nil
	default:
		w.indent(depth)
		w.buf.WriteString("<" + name + ">")
		vtp.WriteEscaped(&w.buf, scalar(v), false)
		w.buf.WriteString("</" + name + ">")
		return nil
	}
}

// element writes <name attrs>children</name>; the indentation before it
// is the caller's.
func (w *xmlWriter) element(name string, obj object, depth int) error {
	w.buf.WriteString("<" + name)
	var text *string
	var children object
	for i := range obj {
		m := &obj[i]
		s, isStr := m.val.(string)
		switch {
		case m.key == "#text":
			t := scalar(m.val)
			text = &t
		case isStr && (voeventAttributes[m.key] || strings.HasPrefix(m.key, "xmlns:") || strings.HasPrefix(m.key, "xsi:")):
			if !validName(m.key) {
				return fmt.Errorf("%w: %q is not an XML name", ErrBadJSON, m.key)
			}
			w.buf.WriteString(" " + m.key + `="`)
			vtp.WriteEscaped(&w.buf, s, true)
			w.buf.WriteByte('"')
		case strings.Contains(m.key, ":"):
			// A prefix nobody declared: leave it out.
		default:
			children = append(children, *m)
		}
	}
	if text == nil && len(children) == 0 {
		w.buf.WriteString("/>")
		return nil
	}
	w.buf.WriteByte('>')
	if text != nil {
		vtp.WriteEscaped(&w.buf, *text, false)
	}
	for _, c := range children {
		if err := w.emit(c.key, c.val, depth+1); err != nil {
			return err
		}
	}
	if len(children) > 0 {
		w.indent(depth)
	}
	w.buf.WriteString("</" + name + ">")
	return nil
}

func scalar(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		if v {
			return "true"
		}
		return "false"
	}
	return ""
}

// validName accepts the XML names VOEvent uses: a letter or _ first,
// then letters, digits, '.', '-', '_', at most one ':' inside.
func validName(s string) bool {
	if s == "" || strings.Count(s, ":") > 1 || strings.HasPrefix(s, ":") || strings.HasSuffix(s, ":") {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || r == ':' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= 0x80 && r != utf8.RuneError:
		case i > 0 && (r >= '0' && r <= '9' || r == '.' || r == '-'):
		default:
			return false
		}
	}
	return true
}

// object is a JSON object with its members in document order (hop-client
// wrote them in the XML's order).
type object []member

type member struct {
	key string
	val any // string, json.Number, bool, nil, object or []any
}

func (o object) get(key string) (any, bool) {
	for _, m := range o {
		if m.key == key {
			return m.val, true
		}
	}
	return nil, false
}

// parseObject parses one JSON object, keeping member order, at most
// MaxJSONDepth deep, with nothing after it.
func parseObject(b []byte) (object, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	v, err := parseValue(d, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadJSON, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the object", ErrBadJSON)
	}
	obj, ok := v.(object)
	if !ok {
		return nil, fmt.Errorf("%w: not an object", ErrBadJSON)
	}
	return obj, nil
}

func parseValue(d *json.Decoder, depth int) (any, error) {
	if depth > MaxJSONDepth {
		return nil, errors.New("nested too deep")
	}
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			obj := object{}
			for d.More() {
				k, err := d.Token()
				if err != nil {
					return nil, err
				}
				v, err := parseValue(d, depth+1)
				if err != nil {
					return nil, err
				}
				obj = append(obj, member{k.(string), v})
			}
			_, err := d.Token() // '}'
			return obj, err
		case '[':
			arr := []any{}
			for d.More() {
				v, err := parseValue(d, depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			_, err := d.Token() // ']'
			return arr, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default:
		return t, nil // string, json.Number, bool or nil
	}
}
