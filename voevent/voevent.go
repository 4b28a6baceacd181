// Package voevent reads what a broker needs from a VOEvent (or any VTP
// payload) in one streaming pass: the root's namespace, name, role, ivorn
// and version, Who/AuthorIVORN and Who/Date, the root element's byte span,
// and optionally its validity against the VOEvent 2.0 schema as Comet's
// receiver checks it. It also implements Comet's IVOID grammar.
//
// Parsing goes through xmlsafe: no DTD, no entity expansion, no I/O,
// bounded depth. The payload is never modified or re-serialized.
package voevent

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/comet-go/comet/xmlsafe"
)

// ErrUnparsable is wrapped by every error Inspect returns: the payload is
// not a well-formed, safe XML document (Comet: no reply, connection closed).
var ErrUnparsable = errors.New("unparsable")

// Info is what the broker reads from a payload in ONE parse.
type Info struct {
	RootSpace, RootLocal string // resolved namespace URI and local name of the root element
	Role                 string // root @role ("" if absent)
	HasRole              bool
	IVORN                string // root @ivorn
	HasIVORN             bool
	Version              string // root @version
	Author               string // Who/AuthorIVORN text (trimmed), "" if absent
	Date                 string // Who/Date text (trimmed)
	RootStart, RootEnd   int    // byte offsets of the root's opening '<' and just past its closing '>'
	SchemaErr            error  // only filled when Options.Schema is true: nil = valid against VOEvent 2.0
}

// Options controls Inspect.
type Options struct {
	Schema   bool // also validate against the VOEvent 2.0 schema (receiver only), in the same pass
	MaxDepth int  // 0 = xmlsafe.DefaultMaxDepth
}

// IsVOEventRole reports whether role makes a payload a VOEvent for Comet.
func IsVOEventRole(role string) bool {
	switch role {
	case "observation", "prediction", "utility", "test":
		return true
	}
	return false
}

type inspector struct {
	sc      xmlsafe.Scanner
	v       validator
	capture []byte
}

var inspectors = sync.Pool{New: func() any { return new(inspector) }}

func (in *inspector) release() {
	in.sc.Reset(nil, 0) // drop references to the payload
	in.v.reset(nil)
	if cap(in.capture) > 64<<10 {
		in.capture = nil
	}
	if cap(in.v.text) > 64<<10 {
		in.v.text = nil
	}
	inspectors.Put(in)
}

// Who children captured as strings.
const (
	capNone = iota
	capAuthor
	capDate
)

// Inspect parses payload once and returns what the broker needs. The
// error, if any, wraps ErrUnparsable and the parser's reason; a missing
// role or ivorn is not an error (see HasRole, HasIVORN).
func Inspect(payload []byte, opt Options) (*Info, error) {
	in := inspectors.Get().(*inspector)
	defer in.release()
	sc := &in.sc
	sc.Reset(payload, opt.MaxDepth)
	if opt.Schema {
		in.v.reset(sc)
	}
	info := &Info{}
	var (
		inWho                bool
		capture              = capNone
		haveAuthor, haveDate bool
	)
	for {
		kind, err := sc.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnparsable, err)
		}
		switch kind {
		case xmlsafe.KindStart:
			if err := checkNamespaceNames(sc); err != nil {
				return nil, err
			}
			depth := sc.Depth()
			space, local := sc.Name()
			switch {
			case depth == 1:
				info.RootStart, _ = sc.Span()
				info.RootSpace = internSpace(space)
				info.RootLocal = intern(local)
				rootAttrs(sc, info)
			case depth == 2:
				inWho = len(space) == 0 && string(local) == "Who"
			case depth == 3 && inWho && len(space) == 0:
				switch {
				case !haveAuthor && string(local) == "AuthorIVORN":
					capture, haveAuthor = capAuthor, true
					in.capture = in.capture[:0]
				case !haveDate && string(local) == "Date":
					capture, haveDate = capDate, true
					in.capture = in.capture[:0]
				}
			}
			if opt.Schema {
				in.v.start(depth)
			}
		case xmlsafe.KindEnd:
			depth := sc.Depth()
			if opt.Schema {
				in.v.end()
			}
			switch depth {
			case 0:
				_, info.RootEnd = sc.Span()
			case 2:
				switch capture {
				case capAuthor:
					info.Author = string(trimBlank(in.capture))
				case capDate:
					info.Date = string(trimBlank(in.capture))
				}
				capture = capNone
			}
		case xmlsafe.KindText:
			text := sc.Text()
			if capture != capNone {
				in.capture = append(in.capture, text...)
			}
			if opt.Schema {
				in.v.charData(text)
			}
		}
	}
	if opt.Schema {
		info.SchemaErr = in.v.result()
	}
	return info, nil
}

// checkNamespaceNames refuses namespace declarations libxml2 reports as
// errors (lxml, hence Comet, then refuses the whole document).
func checkNamespaceNames(sc *xmlsafe.Scanner) error {
	for i := 0; i < sc.NumAttr(); i++ {
		if space, _ := sc.Attr(i); string(space) != xmlsafe.NamespaceXMLNS {
			continue
		}
		if v := sc.AttrValue(i); !validNamespaceName(v) {
			start, _ := sc.Span()
			return fmt.Errorf("%w: line %d: namespace name %q is not a valid URI", ErrUnparsable, sc.Line(start), v)
		}
	}
	return nil
}

// rootAttrs reads the unqualified role, ivorn and version (Comet reads
// element.attrib without namespace).
func rootAttrs(sc *xmlsafe.Scanner, info *Info) {
	for i := 0; i < sc.NumAttr(); i++ {
		space, local := sc.Attr(i)
		if len(space) != 0 {
			continue
		}
		switch string(local) {
		case "role":
			info.Role, info.HasRole = intern(sc.AttrValue(i)), true
		case "ivorn":
			info.IVORN, info.HasIVORN = string(sc.AttrValue(i)), true
		case "version":
			info.Version = intern(sc.AttrValue(i))
		}
	}
}

// intern returns common values without allocating.
func intern(b []byte) string {
	switch string(b) {
	case "VOEvent":
		return "VOEvent"
	case "Transport":
		return "Transport"
	case "observation":
		return "observation"
	case "prediction":
		return "prediction"
	case "utility":
		return "utility"
	case "test":
		return "test"
	case "iamalive":
		return "iamalive"
	case "ack":
		return "ack"
	case "nak":
		return "nak"
	case "authenticate":
		return "authenticate"
	case "2.0":
		return "2.0"
	case "1.1":
		return "1.1"
	case "1.0":
		return "1.0"
	case "2.1":
		return "2.1"
	}
	return string(b)
}

func internSpace(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case NamespaceVOEvent20:
		return NamespaceVOEvent20
	case NamespaceVOEvent11:
		return NamespaceVOEvent11
	case NamespaceVOEvent21:
		return NamespaceVOEvent21
	case "http://www.telescope-networks.org/xml/Transport/v1.1":
		return "http://www.telescope-networks.org/xml/Transport/v1.1"
	case "http://telescope-networks.org/schema/Transport/v1.1":
		return "http://telescope-networks.org/schema/Transport/v1.1"
	case "http://telescope-networks.org/xml/Transport/v1.1":
		return "http://telescope-networks.org/xml/Transport/v1.1"
	}
	return string(b)
}
