package voevent

import (
	"math"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Lexical checks of the XSD built-in types the VOEvent 2.0 schema uses,
// reproducing libxml2's behaviour (xmlschemastypes.c), quirks included.

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func trimBlank(b []byte) []byte {
	for len(b) > 0 && isBlank(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isBlank(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func allBlank(b []byte) bool {
	for _, c := range b {
		if !isBlank(c) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// validFloat is libxml2's xs:float lexical check: leading blanks, then NaN,
// INF or -INF with nothing after them (libxml2 does not skip trailing blanks
// there), or [+-]digits[.digits][(e|E)[+-]digits*] and trailing blanks. The
// exponent digits are optional in libxml2.
func validFloat(b []byte) bool {
	_, ok := parseFloat(b)
	return ok
}

// parseFloat checks b like validFloat and returns its value as the float32
// libxml2 computes with sscanf("%f").
func parseFloat(b []byte) (float64, bool) {
	i := 0
	for i < len(b) && isBlank(b[i]) {
		i++
	}
	switch string(b[i:]) {
	case "NaN":
		return math.NaN(), true
	case "INF":
		return math.Inf(1), true
	case "-INF":
		return math.Inf(-1), true
	}
	start := i
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		i++
	}
	if i >= len(b) || b[i] == '+' || b[i] == '-' {
		return 0, false
	}
	digits := 0
	for i < len(b) && isDigit(b[i]) {
		i, digits = i+1, digits+1
	}
	if i < len(b) && b[i] == '.' {
		i++
		for i < len(b) && isDigit(b[i]) {
			i, digits = i+1, digits+1
		}
	}
	if digits == 0 {
		return 0, false
	}
	mantEnd := i
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '-' || b[i] == '+') {
			i++
		}
		expDigits := 0
		for i < len(b) && isDigit(b[i]) {
			i, expDigits = i+1, expDigits+1
		}
		if expDigits > 0 {
			mantEnd = i
		}
	}
	numEnd := mantEnd
	for i < len(b) && isBlank(b[i]) {
		i++
	}
	if i != len(b) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(b[start:numEnd]), 32)
	if err != nil && err.(*strconv.NumError).Err != strconv.ErrRange {
		return 0, false
	}
	return f, true
}

// validSmallFloat is the schema's probability type: xs:float in [0, 1].
// NaN compares greater than everything in libxml2, so it fails maxInclusive.
func validSmallFloat(b []byte) bool {
	f, ok := parseFloat(b)
	return ok && f >= 0 && f <= 1
}

var daysInMonth = [12]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

func isLeap(y int64) bool { return y%4 == 0 && y%100 != 0 || y%400 == 0 }

func twoDigits(b []byte, i int) (int, bool) {
	if i+1 >= len(b) || !isDigit(b[i]) || !isDigit(b[i+1]) {
		return 0, false
	}
	return int(b[i]-'0')*10 + int(b[i+1]-'0'), true
}

// validDateTime is libxml2's xs:dateTime check:
// [-]YYYY-MM-DDThh:mm:ss[.f+][Z|(+|-)hh:mm]. Quirks reproduced: leading
// blanks are refused (libxml2 skips them for an xs:time attempt, then
// re-parses the date from the original start), and trailing blanks are
// accepted only after a time zone.
func validDateTime(b []byte) bool {
	i := 0
	neg := false
	if i < len(b) && b[i] == '-' {
		neg, i = true, i+1
	}
	first := i
	var year int64
	for i < len(b) && isDigit(b[i]) {
		if year > (math.MaxInt64-9)/10 {
			return false
		}
		year = year*10 + int64(b[i]-'0')
		i++
	}
	if n := i - first; n < 4 || n > 4 && b[first] == '0' {
		return false
	}
	if neg {
		year = -year
	}
	if year == 0 || i >= len(b) || b[i] != '-' {
		return false
	}
	mon, ok := twoDigits(b, i+1)
	if !ok || mon < 1 || mon > 12 || i+3 >= len(b) || b[i+3] != '-' {
		return false
	}
	day, ok := twoDigits(b, i+4)
	if !ok || day < 1 {
		return false
	}
	maxDay := daysInMonth[mon-1]
	if mon == 2 && isLeap(year) {
		maxDay = 29
	}
	if day > maxDay {
		return false
	}
	i += 6
	if i >= len(b) || b[i] != 'T' {
		return false
	}
	hour, ok := twoDigits(b, i+1)
	if !ok || i+3 >= len(b) || b[i+3] != ':' || hour > 24 {
		return false
	}
	min, ok := twoDigits(b, i+4)
	if !ok || min > 59 || i+6 >= len(b) || b[i+6] != ':' {
		return false
	}
	sec, ok := twoDigits(b, i+7)
	if !ok {
		return false
	}
	i += 9
	frac := false
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for i < len(b) && isDigit(b[i]) {
			frac = frac || b[i] != '0'
			i++
		}
	}
	if sec >= 60 || hour == 24 && (min != 0 || sec != 0 || frac) {
		return false
	}
	if i == len(b) {
		return true
	}
	// Blanks may only follow a time zone: libxml2 reads anything else after
	// the seconds as a malformed zone.
	switch b[i] {
	case 'Z':
		i++
	case '+', '-':
		th, ok1 := twoDigits(b, i+1)
		tm, ok2 := twoDigits(b, i+4)
		if !ok1 || !ok2 || b[i+3] != ':' || th > 23 || tm > 59 || th*60+tm > 840 {
			return false
		}
		i += 6
	default:
		return false
	}
	for i < len(b) && isBlank(b[i]) {
		i++
	}
	return i == len(b)
}

// validNCName checks an xs:ID / NCName after whitespace collapsing.
func validNCName(b []byte) bool {
	b = trimBlank(b)
	if len(b) == 0 {
		return false
	}
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		if i == 0 {
			if !(r == '_' || unicode.IsLetter(r)) {
				return false
			}
		} else if !(r == '_' || r == '-' || r == '.' || r == 0xB7 || unicode.IsLetter(r) ||
			unicode.IsDigit(r) || unicode.In(r, unicode.Mn, unicode.Mc, unicode.Lm)) {
			return false
		}
		i += n
	}
	return true
}

// validAnyURI reproduces libxml2's xs:anyURI check: collapse whitespace,
// replace characters RFC 3986 forbids (controls, non-ASCII, space and
// <>"{}|\^`') by '_', then require an RFC 3986 URI-reference as libxml2's
// xmlParseURI parses it. In practice only bad %-escapes, a second '#',
// brackets outside a fragment or IP literal, a bad port or a ':' in a
// relative reference's first segment fail.
func validAnyURI(b []byte) bool {
	b = trimBlank(b)
	if len(b) == 0 {
		return true
	}
	p := uriParser{s: b}
	if p.absoluteURI() {
		return true
	}
	p.i = 0
	return p.relativeRef()
}

// validNamespaceName reports whether libxml2 accepts b in a namespace
// declaration: it must parse as a URI reference as it stands (no
// replacement of unwise characters), else libxml2 raises a namespace error,
// which makes lxml (and so Comet) refuse the document.
func validNamespaceName(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	p := uriParser{s: b, raw: true}
	if p.absoluteURI() {
		return true
	}
	p.i = 0
	return p.relativeRef()
}

type uriParser struct {
	s   []byte
	i   int
	raw bool // no replacement of unwise characters
}

// at returns the byte at i after libxml2's replacement of unwise characters.
func (p *uriParser) at(i int) byte {
	if i >= len(p.s) {
		return 0
	}
	c := p.s[i]
	if p.raw {
		if c == 0 {
			return 1 // never a URI character; 0 means end
		}
		return c
	}
	if c < 32 || c >= 127 {
		return '_'
	}
	switch c {
	case ' ', '<', '>', '"', '{', '}', '|', '\\', '^', '`', '\'':
		return '_'
	}
	return c
}

func isAlpha(c byte) bool { return 'A' <= c&^0x20 && c&^0x20 <= 'Z' }

func isHex(c byte) bool { return isDigit(c) || 'A' <= c&^0x20 && c&^0x20 <= 'F' }

func isUnreserved(c byte) bool {
	return isAlpha(c) || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~'
}

func isSubDelim(c byte) bool {
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=':
		return true
	}
	return false
}

// pct reports the length of a percent-encoding at i (0 if none).
func (p *uriParser) pct(i int) int {
	if p.at(i) == '%' && isHex(p.at(i+1)) && isHex(p.at(i+2)) {
		return 3
	}
	return 0
}

// pchar returns the length of a pchar at i (0 if none); colon controls
// whether ':' counts (segment-nz-nc excludes it).
func (p *uriParser) pchar(i int, colon bool) int {
	c := p.at(i)
	switch {
	case c == 0:
		return 0
	case isUnreserved(c) || isSubDelim(c) || c == '@' || colon && c == ':':
		return 1
	}
	return p.pct(i)
}

func (p *uriParser) segment(colon bool) int {
	start := p.i
	for {
		n := p.pchar(p.i, colon)
		if n == 0 {
			return p.i - start
		}
		p.i += n
	}
}

func (p *uriParser) pathAbEmpty() {
	for p.at(p.i) == '/' {
		p.i++
		p.segment(true)
	}
}

func (p *uriParser) authority() bool {
	// userinfo "@" is optional: try it, else start over at the host.
	start := p.i
	for {
		c := p.at(p.i)
		if isUnreserved(c) || isSubDelim(c) || c == ':' {
			p.i++
		} else if n := p.pct(p.i); n > 0 {
			p.i += n
		} else {
			break
		}
	}
	if p.at(p.i) == '@' {
		p.i++
	} else {
		p.i = start
	}
	if p.at(p.i) == '[' {
		j := p.i + 1
		for j < len(p.s) && p.s[j] != ']' {
			j++
		}
		if j < len(p.s) {
			p.i = j + 1
		}
	} else {
		for {
			c := p.at(p.i)
			if isUnreserved(c) || isSubDelim(c) {
				p.i++
			} else if n := p.pct(p.i); n > 0 {
				p.i += n
			} else {
				break
			}
		}
	}
	if p.at(p.i) == ':' {
		p.i++
		port := int64(0)
		digits := 0
		for isDigit(p.at(p.i)) {
			port = port*10 + int64(p.at(p.i)-'0')
			if port > math.MaxInt32 {
				return false
			}
			p.i++
			digits++
		}
		if digits == 0 {
			return false
		}
	}
	return true
}

// tail parses [ "?" query ] [ "#" fragment ] and requires the end.
func (p *uriParser) tail() bool {
	if p.at(p.i) == '?' {
		p.i++
		for {
			c := p.at(p.i)
			if c == '/' || c == '?' {
				p.i++
			} else if n := p.pchar(p.i, true); n > 0 {
				p.i += n
			} else {
				break
			}
		}
	}
	if p.at(p.i) == '#' {
		p.i++
		for {
			c := p.at(p.i)
			if c == '/' || c == '?' || c == '[' || c == ']' {
				p.i++
			} else if n := p.pchar(p.i, true); n > 0 {
				p.i += n
			} else {
				break
			}
		}
	}
	return p.i == len(p.s)
}

func (p *uriParser) absoluteURI() bool {
	if !isAlpha(p.at(0)) {
		return false
	}
	p.i = 1
	for {
		c := p.at(p.i)
		if isAlpha(c) || isDigit(c) || c == '+' || c == '-' || c == '.' {
			p.i++
			continue
		}
		break
	}
	if p.at(p.i) != ':' {
		return false
	}
	p.i++
	switch {
	case p.at(p.i) == '/' && p.at(p.i+1) == '/':
		p.i += 2
		if !p.authority() {
			return false
		}
		p.pathAbEmpty()
	case p.at(p.i) == '/':
		p.i++
		if p.segment(true) > 0 {
			p.pathAbEmpty()
		}
	default:
		if p.segment(true) > 0 {
			p.pathAbEmpty()
		}
	}
	return p.tail()
}

func (p *uriParser) relativeRef() bool {
	switch {
	case p.at(0) == '/' && p.at(1) == '/':
		p.i = 2
		if !p.authority() {
			return false
		}
		p.pathAbEmpty()
	case p.at(0) == '/':
		p.i = 1
		if p.segment(true) > 0 {
			p.pathAbEmpty()
		}
	default:
		if p.segment(false) > 0 {
			p.pathAbEmpty()
		}
	}
	return p.tail()
}
