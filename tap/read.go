package tap

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/comet-go/comet/xmlsafe"
)

// read fills r's payload fields from one streaming pass. Elements are
// matched by local name whatever their namespace: VOEvent children are
// unqualified, but some producers put them in a default namespace, and a
// tap should show those too. Only on success are the fields filled: a
// half-read event would look complete.
func read(payload []byte, r *Record) error {
	rd := reader{sc: xmlsafe.NewScanner(payload, 0)}
	if err := rd.run(); err != nil {
		return err
	}
	if r.IVORN == "" {
		r.IVORN = rd.ivorn
	}
	if r.Role == "" {
		r.Role = rd.role
	}
	if r.Author == "" {
		r.Author = rd.author
	}
	if enc := rd.sc.Encoding(); enc != "UTF-8" {
		r.Encoding = enc
	}
	r.Date = rd.date
	r.Params = rd.params
	if rd.pos != (Position{}) {
		rd.ww.Position = &rd.pos
	}
	if rd.ww != (WhereWhen{}) {
		r.WhereWhen = &rd.ww
	}
	if len(rd.cites.Events) > 0 || rd.cites.Description != "" {
		r.Citations = &rd.cites
	}
	return nil
}

type reader struct {
	sc    *xmlsafe.Scanner
	stack []string // local names from the root down

	// Text of the element at depth capDepth goes to capTo when it ends.
	capTo    func(string)
	capDepth int
	text     []byte

	ivorn, role  string
	author, date string
	haveWho      bool // the first Who only

	params       []Param
	group        string
	groupType    string
	paramValue   bool // the current Param has a value attribute
	obsLocations int  // WhereWhen/ObsDataLocation seen
	astroCoords  int  // AstroCoords seen in the first one

	ww    WhereWhen
	pos   Position
	cites Citations
}

func (rd *reader) run() error {
	for {
		kind, err := rd.sc.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unparsable payload: %w", err)
		}
		switch kind {
		case xmlsafe.KindStart:
			_, local := rd.sc.Name()
			rd.stack = append(rd.stack, string(local))
			rd.start()
		case xmlsafe.KindEnd:
			if rd.capTo != nil && len(rd.stack) == rd.capDepth {
				rd.capTo(strings.TrimSpace(string(rd.text)))
				rd.capTo = nil
			}
			rd.end()
			rd.stack = rd.stack[:len(rd.stack)-1]
		case xmlsafe.KindText:
			if rd.capTo != nil && len(rd.stack) == rd.capDepth {
				rd.text = append(rd.text, rd.sc.Text()...)
			}
		}
	}
}

// capture sends the text of the element just started to to.
func (rd *reader) capture(to func(string)) {
	rd.capTo, rd.capDepth, rd.text = to, len(rd.stack), rd.text[:0]
}

// attr is the value of the unqualified attribute name ("" if absent).
func (rd *reader) attr(name string) (string, bool) {
	for i := 0; i < rd.sc.NumAttr(); i++ {
		if space, local := rd.sc.Attr(i); len(space) == 0 && string(local) == name {
			return strings.TrimSpace(string(rd.sc.AttrValue(i))), true
		}
	}
	return "", false
}

func (rd *reader) attrOr(name string) string {
	v, _ := rd.attr(name)
	return v
}

// Paths below the root that start() acts on.
const (
	obsData  = "WhereWhen/ObsDataLocation"
	obsLoc   = obsData + "/ObservationLocation"
	coords   = obsLoc + "/AstroCoords"
	position = coords + "/Position2D"
)

func (rd *reader) start() {
	if len(rd.stack) == 1 {
		rd.ivorn, rd.role = rd.attrOr("ivorn"), rd.attrOr("role")
		return
	}
	path := strings.Join(rd.stack[1:], "/")
	switch {
	case path == "Who" || strings.HasPrefix(path, "Who/"):
		rd.who(path)
	case path == "What/Group":
		rd.group, rd.groupType = rd.attrOr("name"), rd.attrOr("type")
	case path == "What/Param" || path == "What/Group/Param":
		p := Param{Name: rd.attrOr("name"), Unit: rd.attrOr("unit"), UCD: rd.attrOr("ucd"),
			DataType: rd.attrOr("dataType"), Group: rd.group, GroupType: rd.groupType}
		p.Value, rd.paramValue = rd.attr("value")
		rd.params = append(rd.params, p)
	case path == "What/Param/Value" || path == "What/Group/Param/Value":
		if !rd.paramValue && len(rd.params) > 0 {
			p := &rd.params[len(rd.params)-1]
			rd.capture(func(s string) { p.Value = s })
		}
	case path == obsData:
		rd.obsLocations++
	case strings.HasPrefix(path, obsData+"/") && rd.obsLocations == 1:
		rd.whereWhen(path)
	case path == "Citations/EventIVORN":
		c := Citation{Cite: rd.attrOr("cite")}
		rd.capture(func(s string) { c.IVORN = s; rd.cites.Events = append(rd.cites.Events, c) })
	case path == "Citations/Description":
		rd.capture(func(s string) {
			if rd.cites.Description != "" && s != "" {
				s = rd.cites.Description + "\n" + s
			}
			if s != "" {
				rd.cites.Description = s
			}
		})
	}
}

func (rd *reader) who(path string) {
	switch {
	case rd.haveWho:
	case path == "Who/AuthorIVORN" && rd.author == "":
		rd.capture(func(s string) { rd.author = s })
	case path == "Who/Date" && rd.date == "":
		rd.capture(func(s string) { rd.date = s })
	}
}

func (rd *reader) whereWhen(path string) {
	if path == coords {
		rd.astroCoords++
		if rd.astroCoords == 1 {
			if id := rd.attrOr("coord_system_id"); id != "" {
				rd.ww.CoordSystem = id
			}
		}
		return
	}
	if strings.HasPrefix(path, coords+"/") && rd.astroCoords != 1 {
		return // only the first AstroCoords
	}
	switch path {
	case obsData + "/ObservatoryLocation":
		rd.ww.Observatory = rd.attrOr("id")
	case obsLoc + "/AstroCoordSystem":
		if rd.ww.CoordSystem == "" {
			rd.ww.CoordSystem = rd.attrOr("id")
		}
	case coords + "/Time/TimeInstant/ISOTime":
		rd.capture(func(s string) { rd.ww.Time = s })
	case position:
		rd.pos.Unit = rd.attrOr("unit")
	case position + "/Name1":
		rd.capture(func(s string) { rd.pos.Name1 = s })
	case position + "/Name2":
		rd.capture(func(s string) { rd.pos.Name2 = s })
	case position + "/Value2/C1":
		rd.capture(func(s string) { rd.pos.RA = number(s) })
	case position + "/Value2/C2":
		rd.capture(func(s string) { rd.pos.Dec = number(s) })
	case position + "/Error2Radius":
		rd.capture(func(s string) { rd.pos.ErrorRadius = number(s) })
	}
}

func (rd *reader) end() {
	switch strings.Join(rd.stack[1:], "/") {
	case "Who":
		rd.haveWho = true
	case "What/Group":
		rd.group, rd.groupType = "", ""
	}
}
