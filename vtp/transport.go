package vtp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/comet-go/comet/xmlsafe"
)

// Transport roles (docs/vtp.md §2.1).
const (
	RoleIAmAlive     = "iamalive"
	RoleAuthenticate = "authenticate"
	RoleAck          = "ack"
	RoleNak          = "nak"
)

// Namespaces a Transport root may carry. Comet emits NamespaceComet; the
// VTP documents and pygcn use NamespaceVTP. Input is never checked against
// them (Comet doesn't), they are listed for emitters and tests.
const (
	NamespaceComet    = "http://www.telescope-networks.org/xml/Transport/v1.1"
	NamespaceVTP      = "http://telescope-networks.org/schema/Transport/v1.1"
	NamespacePygcnAlt = "http://telescope-networks.org/xml/Transport/v1.1"
)

// FilterParam is the Meta/Param name that carries an XPath filter in an
// authenticate reply (Comet >= 1.2).
const FilterParam = "xpath-filter"

// TimeStampLayout is Comet latest's TimeStamp format: UTC, seconds, 'Z'.
const TimeStampLayout = "2006-01-02T15:04:05Z"

// Param is a Meta/Param of a Transport message.
type Param struct{ Name, Value string }

// Message is a Transport message. For output only Role, Origin, Response,
// Meta and Result are used; the other fields are filled when parsing.
type Message struct {
	Role      string
	Origin    string
	Response  string // omitted when empty
	TimeStamp string // as received; set by the builders for output
	// Meta controls whether a <Meta> element is written even when empty
	// (Comet always includes it in authenticate replies).
	Meta    bool
	Params  []Param
	Result  string
	Filters []string // parsed: Param xpath-filter values, then old <filter type="xpath"> texts

	Namespace string // parsed: namespace of the root element
	Root      string // parsed: local name of the root element
}

const (
	xmlDecl  = "<?xml version='1.0' encoding='UTF-8'?>\n"
	rootOpen = `<trn:Transport xmlns:trn="` + NamespaceComet +
		`" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="1.0"` +
		` xsi:schemaLocation="http://telescope-networks.org/schema/Transport/v1.1 http://www.telescope-networks.org/schema/Transport-v1.1.xsd" role="`
	rootClose = "</trn:Transport>\n"
)

// Marshal renders m exactly as Comet (lxml, pretty-printed) does, so that
// byte-level comparisons with Comet hold.
func (m *Message) Marshal() []byte {
	var b strings.Builder
	b.Grow(512 + len(m.Result))
	b.WriteString(xmlDecl)
	b.WriteString(rootOpen)
	WriteEscaped(&b, m.Role, true)
	b.WriteString("\">\n")
	element(&b, "  ", "Origin", m.Origin)
	if m.Response != "" {
		element(&b, "  ", "Response", m.Response)
	}
	element(&b, "  ", "TimeStamp", m.TimeStamp)
	switch {
	case len(m.Params) > 0 || m.Result != "":
		b.WriteString("  <Meta>\n")
		for _, p := range m.Params {
			b.WriteString(`    <Param name="`)
			WriteEscaped(&b, p.Name, true)
			b.WriteString(`" value="`)
			WriteEscaped(&b, p.Value, true)
			b.WriteString("\"/>\n")
		}
		if m.Result != "" {
			element(&b, "    ", "Result", m.Result)
		}
		b.WriteString("  </Meta>\n")
	case m.Meta:
		b.WriteString("  <Meta/>\n")
	}
	b.WriteString(rootClose)
	return []byte(b.String())
}

// TimeStamp formats t as Comet latest does.
func TimeStamp(t time.Time) string { return t.UTC().Format(TimeStampLayout) }

// Ack is the receipt for an accepted event: Origin is the event's ivorn,
// Response the acknowledging node's IVOID (omitted when empty).
func Ack(ivorn, local string, now time.Time) []byte {
	return (&Message{Role: RoleAck, Origin: ivorn, Response: local, TimeStamp: TimeStamp(now)}).Marshal()
}

// Nak is the receipt for a refused event; reason becomes Meta/Result
// verbatim (the receiver passes "Event rejected: ...").
func Nak(ivorn, local, reason string, now time.Time) []byte {
	return (&Message{Role: RoleNak, Origin: ivorn, Response: local, TimeStamp: TimeStamp(now), Result: reason}).Marshal()
}

// IAmAlive is a keep-alive probe (origin = the broker's IVOID) or, from a
// subscriber, its reply (origin copied from the probe).
func IAmAlive(origin, response string, now time.Time) []byte {
	return (&Message{Role: RoleIAmAlive, Origin: origin, Response: response, TimeStamp: TimeStamp(now)}).Marshal()
}

// AuthenticateRequest is what a broadcaster sends on connect.
func AuthenticateRequest(origin string, now time.Time) []byte {
	return (&Message{Role: RoleAuthenticate, Origin: origin, TimeStamp: TimeStamp(now)}).Marshal()
}

// AuthenticateReply is a subscriber's answer carrying its filters in the
// schema-valid Param form; Meta is always present, as Comet writes it.
func AuthenticateReply(origin, response string, filters []string, now time.Time) []byte {
	m := &Message{Role: RoleAuthenticate, Origin: origin, Response: response, TimeStamp: TimeStamp(now), Meta: true}
	for _, f := range filters {
		m.Params = append(m.Params, Param{Name: FilterParam, Value: f})
	}
	return m.Marshal()
}

// ErrNotTransport is returned by ParseTransport when the root role is not a
// Transport role.
var ErrNotTransport = errors.New("not a Transport message")

// parser is what ParseTransport reuses: a broadcaster parses one ack per
// subscriber per event.
type parser struct {
	sc   xmlsafe.Scanner
	text []byte // the current element's text
}

var parsers = sync.Pool{New: func() any { return new(parser) }}

// maxKeptText bounds the text buffer a pooled parser keeps.
const maxKeptText = 4 << 10

// ParseTransport reads a Transport message. Like Comet it classifies by the
// root's role only and reads unqualified children by name; the namespace is
// recorded, never checked, so every namespace variant is accepted. The whole
// document must be well-formed and free of DTDs (package xmlsafe).
func ParseTransport(payload []byte) (*Message, error) {
	p := parsers.Get().(*parser)
	m, err := p.parse(payload)
	p.sc.Reset(nil, 0) // no reference to the payload
	if cap(p.text) > maxKeptText {
		p.text = nil
	}
	parsers.Put(p)
	return m, err
}

func (p *parser) parse(payload []byte) (*Message, error) {
	sc := &p.sc
	sc.Reset(payload, 0)
	m := &Message{}
	var oldFilters []string
	text := p.text[:0]
	defer func() { p.text = text[:0] }()
	depth := 0
	inMeta, inFilter := false, false
	for {
		kind, err := sc.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("unparsable: %w", err)
		}
		switch kind {
		case xmlsafe.KindStart:
			depth++
			space, local := sc.Name()
			if depth == 1 {
				m.Root, m.Namespace = intern(local), intern(space)
				for i := range sc.NumAttr() {
					if as, al := sc.Attr(i); len(as) == 0 && string(al) == "role" {
						m.Role = intern(sc.AttrValue(i))
					}
				}
				if !IsTransportRole(m.Role) {
					return m, fmt.Errorf("%w: role %q", ErrNotTransport, m.Role)
				}
			}
			text = text[:0]
			if depth == 2 && string(local) == "Meta" {
				m.Meta, inMeta = true, true
			}
			if depth == 3 && inMeta {
				switch string(local) {
				case "Param":
					var p Param
					for i := range sc.NumAttr() {
						switch _, al := sc.Attr(i); string(al) {
						case "name":
							p.Name = string(sc.AttrValue(i))
						case "value":
							p.Value = string(sc.AttrValue(i))
						}
					}
					m.Params = append(m.Params, p)
					if p.Name == FilterParam {
						m.Filters = append(m.Filters, p.Value)
					}
				case "filter":
					for i := range sc.NumAttr() {
						if _, al := sc.Attr(i); string(al) == "type" && string(sc.AttrValue(i)) == "xpath" {
							inFilter = true
						}
					}
				}
			}
		case xmlsafe.KindText:
			text = append(text, sc.Text()...)
		case xmlsafe.KindEnd:
			_, local := sc.Name()
			switch {
			case depth == 2 && string(local) == "Origin":
				m.Origin = string(bytes.TrimSpace(text))
			case depth == 2 && string(local) == "Response":
				m.Response = string(bytes.TrimSpace(text))
			case depth == 2 && string(local) == "TimeStamp":
				m.TimeStamp = string(bytes.TrimSpace(text))
			case depth == 2:
				inMeta = false
			case depth == 3 && inMeta && string(local) == "Result":
				m.Result = string(text)
			case depth == 3 && inMeta && string(local) == "filter" && inFilter:
				oldFilters = append(oldFilters, string(text))
				inFilter = false
			}
			text = text[:0]
			depth--
		}
	}
	if m.Root == "" {
		return nil, errors.New("unparsable: no root element")
	}
	// Comet latest: all Param filters first, then all old-style ones.
	m.Filters = append(m.Filters, oldFilters...)
	return m, nil
}

// intern returns the usual root names, namespaces and roles without
// allocating.
func intern(b []byte) string {
	switch string(b) {
	case "Transport":
		return "Transport"
	case NamespaceComet:
		return NamespaceComet
	case NamespaceVTP:
		return NamespaceVTP
	case NamespacePygcnAlt:
		return NamespacePygcnAlt
	case RoleAck:
		return RoleAck
	case RoleIAmAlive:
		return RoleIAmAlive
	case RoleNak:
		return RoleNak
	case RoleAuthenticate:
		return RoleAuthenticate
	}
	return string(b)
}

// IsTransportRole reports whether role is one of the four Transport roles.
func IsTransportRole(role string) bool {
	switch role {
	case RoleIAmAlive, RoleAuthenticate, RoleAck, RoleNak:
		return true
	}
	return false
}

// element writes one line: <name>text</name>, indented.
func element(b *strings.Builder, indent, name, text string) {
	b.WriteString(indent)
	b.WriteByte('<')
	b.WriteString(name)
	b.WriteByte('>')
	WriteEscaped(b, text, false)
	b.WriteString("</")
	b.WriteString(name)
	b.WriteString(">\n")
}

// WriteEscaped writes s to b escaped as lxml (and so Comet) escapes it:
// &, <, > and CR everywhere, and in an attribute value (attr) also ", LF
// and TAB, so that the bytes match Comet's.
func WriteEscaped(b *strings.Builder, s string, attr bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '&':
			b.WriteString("&amp;")
		case c == '<':
			b.WriteString("&lt;")
		case c == '>':
			b.WriteString("&gt;")
		case c == '\r':
			b.WriteString("&#13;")
		case attr && c == '"':
			b.WriteString("&quot;")
		case attr && c == '\n':
			b.WriteString("&#10;")
		case attr && c == '\t':
			b.WriteString("&#9;")
		default:
			b.WriteByte(c)
		}
	}
}
