package voevent

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/comet-go/comet/xmlsafe"
)

// A streaming validator for the VOEvent 2.0 schema (VOEvent-v2.0.xsd as
// libxml2 applies it; digest in docs/voevent.md §5). It is driven by the
// same token walk as Inspect and stops at the first error, as Comet reports
// only the first one.

// Namespace names.
const (
	NamespaceVOEvent20 = "http://www.ivoa.net/xml/VOEvent/v2.0"
	NamespaceVOEvent11 = "http://www.ivoa.net/xml/VOEvent/v1.1"
	NamespaceVOEvent21 = "http://www.ivoa.net/xml/VOEvent/v2.1"
	nsXSI              = "http://www.w3.org/2001/XMLSchema-instance"
	nsXSD              = "http://www.w3.org/2001/XMLSchema"
)

// SchemaError is a validation failure, worded like libxml2's messages.
type SchemaError struct {
	Line int    // line of the offending token
	Msg  string // e.g. "Element 'Foo': This element is not expected."
}

func (e *SchemaError) Error() string { return e.Msg }

// etype is the schema type of an element.
type etype uint8

const (
	tNone etype = iota
	tVOEvent
	tWho
	tAuthor
	tWhat
	tParam
	tGroup
	tTable
	tField
	tData
	tTR
	tWhereWhen
	tObsDataLocation
	tObservatoryLocation
	tObservationLocation
	tAstroCoordSystem
	tAstroCoords
	tTime
	tTimeInstant
	tPosition2D
	tPosition3D
	tValue2
	tValue3
	tHow
	tWhy
	tInference
	tCitations
	tEventIVORN
	tReference
	tString // xs:string leaf
	tFloat
	tDateTime
	tAnyURI
	nTypes
)

// content models
const (
	mAll           uint8 = iota + 1 // xs:all: each child at most once, some required
	mChoice                         // repeated choice that may be empty
	mChoice1                        // repeated choice, at least one child
	mCitations                      // EventIVORN+ then Description?
	mEmpty                          // no content at all, not even whitespace
	mSimple                         // simple type: text only
	mSimpleContent                  // complex type with simple content (text only)
)

type child struct {
	name string
	typ  etype
}

type attrType uint8

const (
	aString attrType = iota + 1
	aAnyURI
	aFloat
	aSmallFloat
	aDateTime
	aID
	aVersion
	aRole
	aDataType
	aCoordSystem
	aCite
)

type attrDecl struct {
	name     string
	typ      attrType
	required bool
}

type typeDecl struct {
	name     string // type name for xsi:type; "" = anonymous
	model    uint8
	children []child // bit i of a frame's seen mask is children[i]
	required uint32  // mAll: children that must occur
	attrs    []attrDecl
}

var (
	descRef     = []child{{"Description", tString}, {"Reference", tReference}}
	paramAttrs  = []attrDecl{{"name", aString, false}, {"ucd", aString, false}, {"value", aString, false}, {"unit", aString, false}, {"dataType", aDataType, false}, {"utype", aString, false}}
	nameType    = []attrDecl{{"name", aString, false}, {"type", aString, false}}
	unitAttr    = []attrDecl{{"unit", aString, false}}
	coordSystem = []child{{"AstroCoordSystem", tAstroCoordSystem}, {"AstroCoords", tAstroCoords}}
)

var types = [nTypes]typeDecl{
	tVOEvent: {model: mAll,
		children: []child{{"Who", tWho}, {"What", tWhat}, {"WhereWhen", tWhereWhen}, {"How", tHow}, {"Why", tWhy}, {"Citations", tCitations}, {"Description", tString}, {"Reference", tReference}},
		attrs:    []attrDecl{{"version", aVersion, true}, {"ivorn", aAnyURI, true}, {"role", aRole, false}}},
	tWho: {name: "Who", model: mAll,
		children: []child{{"AuthorIVORN", tAnyURI}, {"Date", tDateTime}, {"Description", tString}, {"Reference", tReference}, {"Author", tAuthor}}},
	tAuthor: {model: mChoice1,
		children: []child{{"title", tString}, {"shortName", tString}, {"logoURL", tAnyURI}, {"contactName", tString}, {"contactEmail", tString}, {"contactPhone", tString}, {"contributor", tString}}},
	tWhat: {name: "What", model: mChoice,
		children: []child{{"Param", tParam}, {"Group", tGroup}, {"Table", tTable}, {"Description", tString}, {"Reference", tReference}}},
	tParam: {name: "Param", model: mChoice,
		children: []child{{"Description", tString}, {"Reference", tReference}, {"Value", tString}},
		attrs:    paramAttrs},
	tGroup: {name: "Group", model: mChoice,
		children: []child{{"Param", tParam}, {"Description", tString}, {"Reference", tReference}},
		attrs:    nameType},
	tTable: {name: "Table", model: mChoice,
		children: []child{{"Description", tString}, {"Reference", tReference}, {"Param", tParam}, {"Field", tField}, {"Data", tData}},
		attrs:    nameType},
	tField: {name: "Field", model: mChoice, children: descRef,
		attrs: []attrDecl{{"name", aString, false}, {"ucd", aString, false}, {"unit", aString, false}, {"dataType", aDataType, false}, {"utype", aString, false}}},
	tData: {name: "Data", model: mChoice1, children: []child{{"TR", tTR}}},
	tTR:   {name: "TR", model: mChoice1, children: []child{{"TD", tString}}},
	tWhereWhen: {name: "WhereWhen", model: mChoice,
		children: []child{{"ObsDataLocation", tObsDataLocation}, {"Description", tString}, {"Reference", tReference}},
		attrs:    []attrDecl{{"id", aID, false}}},
	tObsDataLocation: {name: "ObsDataLocation", model: mAll, required: 3,
		children: []child{{"ObservatoryLocation", tObservatoryLocation}, {"ObservationLocation", tObservationLocation}}},
	tObservatoryLocation: {name: "ObservatoryLocation", model: mAll, children: coordSystem,
		attrs: []attrDecl{{"id", aString, false}}},
	tObservationLocation: {name: "ObservationLocation", model: mAll, required: 3, children: coordSystem},
	tAstroCoordSystem: {name: "AstroCoordSystem", model: mEmpty,
		attrs: []attrDecl{{"id", aCoordSystem, false}}},
	tAstroCoords: {name: "AstroCoords", model: mAll,
		children: []child{{"Time", tTime}, {"Position2D", tPosition2D}, {"Position3D", tPosition3D}},
		attrs:    []attrDecl{{"coord_system_id", aCoordSystem, false}}},
	tTime: {name: "Time", model: mChoice,
		children: []child{{"TimeInstant", tTimeInstant}, {"Error", tFloat}}, attrs: unitAttr},
	tTimeInstant: {name: "TimeInstant", model: mChoice,
		children: []child{{"ISOTime", tString}, {"TimeOffset", tFloat}, {"TimeScale", tString}}},
	tPosition2D: {name: "Position2D", model: mAll, required: 1<<2 | 1<<3,
		children: []child{{"Name1", tString}, {"Name2", tString}, {"Value2", tValue2}, {"Error2Radius", tFloat}},
		attrs:    unitAttr},
	tPosition3D: {name: "Position3D", model: mAll, required: 1 << 3,
		children: []child{{"Name1", tString}, {"Name2", tString}, {"Name3", tString}, {"Value3", tValue3}},
		attrs:    unitAttr},
	tValue2: {name: "Value2", model: mAll, required: 3,
		children: []child{{"C1", tFloat}, {"C2", tFloat}}},
	tValue3: {name: "Value3", model: mAll, required: 7,
		children: []child{{"C1", tFloat}, {"C2", tFloat}, {"C3", tFloat}}},
	tHow: {name: "How", model: mChoice1, children: descRef},
	tWhy: {name: "Why", model: mChoice1,
		children: []child{{"Name", tString}, {"Concept", tString}, {"Inference", tInference}, {"Description", tString}, {"Reference", tReference}},
		attrs:    []attrDecl{{"importance", aFloat, false}, {"expires", aDateTime, false}}},
	tInference: {name: "Inference", model: mChoice1,
		children: []child{{"Name", tString}, {"Concept", tString}, {"Description", tString}, {"Reference", tReference}},
		attrs:    []attrDecl{{"probability", aSmallFloat, false}, {"relation", aString, false}}},
	tCitations: {name: "Citations", model: mCitations,
		children: []child{{"EventIVORN", tEventIVORN}, {"Description", tString}}},
	tEventIVORN: {name: "EventIVORN", model: mSimpleContent,
		attrs: []attrDecl{{"cite", aCite, false}}},
	tReference: {name: "Reference", model: mEmpty,
		attrs: []attrDecl{{"uri", aAnyURI, true}, {"type", aString, false}, {"mimetype", aString, false}, {"meaning", aAnyURI, false}}},
	tString:   {name: "string", model: mSimple},
	tFloat:    {name: "float", model: mSimple},
	tDateTime: {name: "dateTime", model: mSimple},
	tAnyURI:   {name: "anyURI", model: mSimple},
}

var (
	roleValues     = []string{"observation", "prediction", "utility", "test"}
	dataTypeValues = []string{"string", "float", "int"}
	citeValues     = []string{"followup", "supersedes", "retraction"}
	coordValues    = []string{"TT-ICRS-TOPO", "UTC-ICRS-TOPO", "TT-FK5-TOPO", "UTC-FK5-TOPO", "GPS-ICRS-TOPO", "GPS-FK5-TOPO", "TT-ICRS-GEO", "UTC-ICRS-GEO", "TT-FK5-GEO", "UTC-FK5-GEO", "GPS-ICRS-GEO", "GPS-FK5-GEO", "TDB-ICRS-BARY", "TDB-FK5-BARY", "UTC-GEOD-TOPO"}
)

type vframe struct {
	t    etype
	seen uint32 // children seen (bit per children[] index); bit 31: any
	// name is the element as messages show it: the schema's own string
	// (a child's name, unqualified, or the root's), so that pushing a
	// frame copies no slices of the payload.
	name string
}

// rootDisplay is the validation root as messages show it.
const rootDisplay = "{" + NamespaceVOEvent20 + "}VOEvent"

const seenAny = 1 << 31

type validator struct {
	sc     *xmlsafe.Scanner
	err    *SchemaError
	frames []vframe
	text   []byte // accumulated text of a typed leaf
}

func (v *validator) reset(sc *xmlsafe.Scanner) {
	clear(v.frames[:cap(v.frames)]) // drop references to old payloads
	v.sc, v.err, v.frames, v.text = sc, nil, v.frames[:0], v.text[:0]
}

func (v *validator) result() error {
	if v.err != nil {
		return v.err
	}
	return nil
}

func (v *validator) fail(msg string) {
	start, _ := v.sc.Span()
	v.err = &SchemaError{Line: v.sc.Line(start), Msg: msg}
}

func display(space, local []byte) string {
	if len(space) == 0 {
		return string(local)
	}
	return "{" + string(space) + "}" + string(local)
}

func (f *vframe) display() string { return f.name }

// start handles a start tag at depth (1 = root).
func (v *validator) start(depth int) {
	if v.err != nil {
		return
	}
	space, local := v.sc.Name()
	if depth == 1 {
		if string(space) != NamespaceVOEvent20 || string(local) != "VOEvent" {
			v.fail("Element '" + display(space, local) + "': No matching global declaration available for the validation root.")
			return
		}
		v.push(tVOEvent, rootDisplay)
		return
	}
	p := &v.frames[len(v.frames)-1]
	decl := &types[p.t]
	switch decl.model {
	case mSimple:
		v.fail("Element '" + p.display() + "': Element content is not allowed, because the type definition is simple.")
		return
	case mSimpleContent:
		v.fail("Element '" + p.display() + "': Element content is not allowed, because the content type is a simple type definition.")
		return
	case mEmpty:
		v.fail("Element '" + p.display() + "': Element content is not allowed, because the content type is empty.")
		return
	}
	t, bit, name := tNone, uint32(0), ""
	if len(space) == 0 {
		for i := range decl.children {
			if decl.children[i].name == string(local) {
				t, bit, name = decl.children[i].typ, 1<<i, decl.children[i].name
				break
			}
		}
	}
	switch {
	case t == tNone:
	case decl.model == mAll && p.seen&bit != 0:
		t = tNone // each child of an xs:all at most once
	case decl.model == mCitations:
		// EventIVORN (bit 0) must come first; Description (bit 1) once, last.
		if bit == 1 && p.seen&2 != 0 || bit == 2 && (p.seen&1 == 0 || p.seen&2 != 0) {
			t = tNone
		}
	}
	if t == tNone {
		v.fail("Element '" + display(space, local) + "': This element is not expected." + v.expected(p))
		return
	}
	p.seen |= bit | seenAny
	v.push(t, name)
}

// expected lists what the parent could still take, as libxml2 does.
func (v *validator) expected(p *vframe) string {
	decl := &types[p.t]
	var names []string
	for i, c := range decl.children {
		switch decl.model {
		case mAll:
			if p.seen&(1<<i) != 0 {
				continue
			}
		case mCitations:
			if p.seen&1 == 0 && i == 1 || p.seen&2 != 0 {
				continue
			}
		}
		names = append(names, c.name)
	}
	return expectedList(names)
}

func expectedList(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return " Expected is ( " + names[0] + " )."
	}
	return " Expected is one of ( " + strings.Join(names, ", ") + " )."
}

func (v *validator) push(t etype, name string) {
	if t == tString || t == tFloat || t == tDateTime || t == tAnyURI {
		v.text = v.text[:0]
	}
	v.frames = append(v.frames, vframe{t: t, name: name})
	v.attributes(&v.frames[len(v.frames)-1])
}

func (v *validator) attributes(f *vframe) {
	decl := &types[f.t]
	sc := v.sc
	var present uint32
	for i := 0; i < sc.NumAttr(); i++ {
		space, local := sc.Attr(i)
		switch string(space) {
		case xmlsafe.NamespaceXMLNS:
			continue // namespace declarations are not attributes
		case nsXSI:
			if !v.xsiAttr(f, local, sc.AttrValue(i)) {
				return
			}
			continue
		case "":
			for k := range decl.attrs {
				if decl.attrs[k].name == string(local) {
					present |= 1 << k
					if !v.attrValue(f, &decl.attrs[k], sc.AttrValue(i)) {
						return
					}
					goto next
				}
			}
		}
		v.fail("Element '" + f.display() + "', attribute '" + display(space, local) + "': The attribute '" + display(space, local) + "' is not allowed.")
		return
	next:
	}
	for k := range decl.attrs {
		if decl.attrs[k].required && present&(1<<k) == 0 {
			v.fail("Element '" + f.display() + "': The attribute '" + decl.attrs[k].name + "' is required but missing.")
			return
		}
	}
}

func (v *validator) attrValue(f *vframe, a *attrDecl, val []byte) bool {
	var typ string
	switch a.typ {
	case aString:
		return true
	case aAnyURI:
		if validAnyURI(val) {
			return true
		}
		typ = "xs:anyURI"
	case aFloat:
		if validFloat(val) {
			return true
		}
		typ = "xs:float"
	case aSmallFloat:
		if !validFloat(val) {
			typ = "xs:float"
			break
		}
		if validSmallFloat(val) {
			return true
		}
		if x, _ := parseFloat(val); x < 0 {
			v.fail(fmt.Sprintf("Element '%s', attribute '%s': [facet 'minInclusive'] The value '%s' is less than the minimum value allowed ('0.0').", f.display(), a.name, val))
		} else { // NaN compares greater than everything in libxml2
			v.fail(fmt.Sprintf("Element '%s', attribute '%s': [facet 'maxInclusive'] The value '%s' is greater than the maximum value allowed ('1.0').", f.display(), a.name, val))
		}
		return false
	case aDateTime:
		if validDateTime(val) {
			return true
		}
		typ = "xs:dateTime"
	case aID:
		if validNCName(val) {
			return true
		}
		typ = "xs:ID"
	case aVersion:
		// xs:token, fixed: compared after whitespace collapsing.
		if string(collapse(val)) == "2.0" {
			return true
		}
		v.fail(fmt.Sprintf("Element '%s', attribute '%s': The value '%s' does not match the fixed value constraint '2.0'.", f.display(), a.name, val))
		return false
	case aRole:
		return v.enum(f, a, val, roleValues)
	case aDataType:
		return v.enum(f, a, val, dataTypeValues)
	case aCoordSystem:
		return v.enum(f, a, val, coordValues)
	case aCite:
		return v.enum(f, a, val, citeValues)
	}
	v.fail(fmt.Sprintf("Element '%s', attribute '%s': '%s' is not a valid value of the atomic type '%s'.", f.display(), a.name, val, typ))
	return false
}

func (v *validator) enum(f *vframe, a *attrDecl, val []byte, set []string) bool {
	for _, s := range set {
		if s == string(val) {
			return true
		}
	}
	v.fail(fmt.Sprintf("Element '%s', attribute '%s': [facet 'enumeration'] The value '%s' is not an element of the set {'%s'}.", f.display(), a.name, val, strings.Join(set, "', '")))
	return false
}

// xsiAttr handles the four XSD instance attributes. libxml2 ignores
// schemaLocation hints when validating against a given schema.
func (v *validator) xsiAttr(f *vframe, local, val []byte) bool {
	switch string(local) {
	case "schemaLocation", "noNamespaceSchemaLocation":
		return true
	case "nil":
		v.fail("Element '" + f.display() + "': The element is not 'nillable'.")
		return false
	case "type":
		if v.xsiTypeOK(f.t, val) { // not collapsed: libxml2 takes blanks as part of the QName
			return true
		}
		v.fail(fmt.Sprintf("Element '%s', attribute '{%s}type': The QName value '%s' of the xsi:type attribute does not resolve to the declared type of the element.", f.display(), nsXSI, val))
		return false
	}
	v.fail("Element '" + f.display() + "', attribute '{" + nsXSI + "}" + string(local) + "': The attribute '{" + nsXSI + "}" + string(local) + "' is not allowed.")
	return false
}

// xsiTypeOK accepts an xsi:type naming the element's declared type (and,
// for xs:string elements, xs:normalizedString or xs:token, whose values
// are unrestricted). Other derivations are not supported and fail.
func (v *validator) xsiTypeOK(t etype, qn []byte) bool {
	prefix, local := []byte(nil), qn
	if i := bytes.IndexByte(qn, ':'); i >= 0 {
		prefix, local = qn[:i], qn[i+1:]
	}
	if len(local) == 0 || !validNCName(local) || prefix != nil && !validNCName(prefix) {
		return false
	}
	ns, ok := v.sc.LookupPrefix(prefix)
	if !ok {
		return false
	}
	switch t {
	case tVOEvent, tAuthor:
		return false // anonymous types: nothing can derive from them
	case tString:
		return string(ns) == nsXSD && (string(local) == "string" || string(local) == "normalizedString" || string(local) == "token")
	case tFloat, tDateTime, tAnyURI:
		return string(ns) == nsXSD && string(local) == types[t].name
	}
	return string(ns) == NamespaceVOEvent20 && string(local) == types[t].name
}

// collapse applies the XSD "collapse" whitespace facet.
func collapse(b []byte) []byte {
	b = trimBlank(b)
	for i := 0; i < len(b); i++ {
		if isBlank(b[i]) && (b[i] != ' ' || i+1 < len(b) && isBlank(b[i+1])) {
			out := make([]byte, 0, len(b))
			space := false
			for _, c := range b {
				if isBlank(c) {
					space = true
					continue
				}
				if space {
					out = append(out, ' ')
					space = false
				}
				out = append(out, c)
			}
			return out
		}
	}
	return b
}

// text handles character data (text or CDATA) inside the current element.
func (v *validator) charData(text []byte) {
	if v.err != nil || len(v.frames) == 0 {
		return
	}
	f := &v.frames[len(v.frames)-1]
	switch types[f.t].model {
	case mSimple:
		if f.t != tString {
			v.text = append(v.text, text...)
		}
	case mSimpleContent:
	case mEmpty:
		if len(text) > 0 {
			v.fail("Element '" + f.display() + "': Character content is not allowed, because the content type is empty.")
		}
	default:
		if !allBlank(text) {
			v.fail("Element '" + f.display() + "': Character content other than whitespace is not allowed because the content type is 'element-only'.")
		}
	}
}

// end handles the end tag of the current element.
func (v *validator) end() {
	if v.err != nil || len(v.frames) == 0 {
		return
	}
	f := &v.frames[len(v.frames)-1]
	decl := &types[f.t]
	switch decl.model {
	case mAll:
		if missing := decl.required &^ f.seen; missing != 0 {
			var names []string
			for i, c := range decl.children {
				if missing&(1<<i) != 0 {
					names = append(names, c.name)
				}
			}
			v.fail("Element '" + f.display() + "': Missing child element(s)." + expectedList(names))
			return
		}
	case mChoice1:
		if f.seen == 0 {
			v.fail("Element '" + f.display() + "': Missing child element(s)." + v.expected(f))
			return
		}
	case mCitations:
		if f.seen&1 == 0 {
			v.fail("Element '" + f.display() + "': Missing child element(s). Expected is ( EventIVORN ).")
			return
		}
	case mSimple:
		ok := true
		switch f.t {
		case tFloat:
			ok = validFloat(v.text)
		case tDateTime:
			ok = validDateTime(v.text)
		case tAnyURI:
			ok = validAnyURI(v.text)
		}
		if !ok {
			v.fail(fmt.Sprintf("Element '%s': '%s' is not a valid value of the atomic type 'xs:%s'.", f.display(), v.text, decl.name))
			return
		}
	}
	v.frames = v.frames[:len(v.frames)-1]
}
