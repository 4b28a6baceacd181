// Package tap turns events read from the bus into JSON lines for people
// and scripts (comet tap): one object per event with the bus headers and
// what a reader of a VOEvent looks for first (Who/Date, the What Params,
// the WhereWhen time and position, the Citations).
//
// Reading is lenient: a part an event lacks is left out, and a payload
// that does not parse still gives its line, with the header fields and
// parse_error. Parsing goes through xmlsafe, as everywhere in Comet: no
// DTD, no entity expansion, nothing fetched.
package tap

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/xmlsafe"
)

// Record is the JSON line of one event. Field names are snake_case
// throughout, the Param attribute dataType included, so that one rule
// covers every key. Values read from the payload are its text, trimmed,
// except the position's numbers.
type Record struct {
	Seq        uint64 `json:"seq"`                   // stream sequence
	Subject    string `json:"subject"`               // stream subject
	SHA1       string `json:"sha1"`                  // of the payload, as stored
	IVORN      string `json:"ivorn"`                 // Comet-Ivorn, else the root's ivorn
	Role       string `json:"role"`                  // Comet-Role, else the root's role
	Author     string `json:"author,omitempty"`      // Who/AuthorIVORN
	Date       string `json:"date,omitempty"`        // Who/Date as written
	ReceivedAt string `json:"received_at,omitempty"` // RFC 3339 UTC, nanoseconds
	Origin     string `json:"origin,omitempty"`      // "author", "upstream" or "kafka"
	Node       string `json:"node,omitempty"`        // receiving node
	Peer       string `json:"peer,omitempty"`        // sender's address
	Signature  string `json:"signature,omitempty"`   // "unchecked" or "verified:<fingerprint>"

	Params    []Param    `json:"params,omitempty"`
	WhereWhen *WhereWhen `json:"wherewhen,omitempty"`
	Citations *Citations `json:"citations,omitempty"`

	// Encoding names the payload's encoding when it is not UTF-8
	// ("UTF-16LE", "ISO-8859-15", "Shift_JIS", ...): the fields above and
	// the payload below are its characters, decoded.
	Encoding string `json:"encoding,omitempty"`
	// ParseError says why the payload could not be read; the fields
	// above that come from it are then empty.
	ParseError string `json:"parse_error,omitempty"`
	// Payload is the event itself, only on request, as text: a payload in
	// another encoding is decoded (its XML declaration still names that
	// encoding). JSON strings are Unicode: bytes that cannot be decoded
	// show as U+FFFD, so use sha1 to fetch the exact bytes from the stream
	// if that matters.
	Payload *string `json:"payload,omitempty"`
}

// Param is one What/Param, in document order, including those in a Group.
type Param struct {
	Name string `json:"name"`
	// Value is the value attribute or, lacking one, the text of the
	// Param's Value element.
	Value     string `json:"value"`
	Unit      string `json:"unit,omitempty"`
	UCD       string `json:"ucd,omitempty"`
	DataType  string `json:"data_type,omitempty"`
	Group     string `json:"group,omitempty"`      // name of the enclosing Group
	GroupType string `json:"group_type,omitempty"` // its type attribute
}

// WhereWhen is the first WhereWhen/ObsDataLocation.
type WhereWhen struct {
	Observatory string    `json:"observatory,omitempty"`  // ObservatoryLocation id
	CoordSystem string    `json:"coord_system,omitempty"` // AstroCoords coord_system_id, else AstroCoordSystem id
	Time        string    `json:"time,omitempty"`         // Time/TimeInstant/ISOTime as written
	Position    *Position `json:"position,omitempty"`
}

// Position is AstroCoords/Position2D. RA and Dec are C1 and C2, which
// they are in the equatorial systems (FK5, ICRS) VOEvents use; Name1 and
// Name2 say so. A number that does not parse is left out.
type Position struct {
	RA          json.Number `json:"ra,omitempty"`
	Dec         json.Number `json:"dec,omitempty"`
	ErrorRadius json.Number `json:"error_radius,omitempty"` // Error2Radius
	Unit        string      `json:"unit,omitempty"`
	Name1       string      `json:"name1,omitempty"`
	Name2       string      `json:"name2,omitempty"`
}

// Citations are the event's references to earlier events.
type Citations struct {
	Events      []Citation `json:"events,omitempty"`
	Description string     `json:"description,omitempty"`
}

// Citation is one Citations/EventIVORN. An empty element gives an empty
// IVORN, as written.
type Citation struct {
	IVORN string `json:"ivorn"`
	Cite  string `json:"cite,omitempty"` // followup, supersedes or retraction
}

// NewRecord builds the record of d, reading its payload; it never fails
// (see ParseError). With payload, the record carries the event itself.
func NewRecord(d *bus.Delivery, payload bool) *Record {
	r := &Record{
		Seq:       d.Seq,
		Subject:   d.Subject,
		SHA1:      d.SHA1,
		IVORN:     d.IVORN,
		Role:      d.Role,
		Author:    d.Author,
		Origin:    d.Origin,
		Node:      d.Node,
		Peer:      d.Peer,
		Signature: d.Signature,
	}
	if !d.ReceivedAt.IsZero() {
		r.ReceivedAt = d.ReceivedAt.UTC().Format(bus.ReceivedAtLayout)
	}
	if err := read(d.Payload, r); err != nil {
		r.ParseError = err.Error()
	}
	if payload {
		text := d.Payload
		if r.Encoding != "" {
			if t, _, err := xmlsafe.Decode(d.Payload); err == nil {
				text = t
			}
		}
		s := string(text)
		r.Payload = &s
	}
	return r
}

// number makes XML text a JSON number: as written if JSON accepts it
// ("18.7000" stays so), else as Go reads it ("+5", ".5"); nothing if it
// is no finite float64, which JSON readers could not take.
func number(s string) json.Number {
	s = strings.TrimSpace(s)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return ""
	}
	if c := s[0]; (c == '-' || c >= '0' && c <= '9') && json.Valid([]byte(s)) {
		return json.Number(s)
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
}
