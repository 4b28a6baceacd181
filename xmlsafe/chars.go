package xmlsafe

// Character classes for the scanner (XML 1.0 fifth edition, as libxml2
// applies it by default).

const (
	nameStart uint8 = 1 << iota
	nameChar
)

// nameByte classifies ASCII bytes for Name productions.
var nameByte = func() (t [128]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = nameStart | nameChar
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = nameStart | nameChar
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = nameChar
	}
	t['_'] = nameStart | nameChar
	t[':'] = nameStart | nameChar
	t['-'] = nameChar
	t['.'] = nameChar
	return t
}()

const (
	cBad uint8 = iota // not an XML character
	cOK
	cWS // TAB or LF
	cCR
	cLT
	cAmp
	cRBracket
)

// textClass classifies ASCII bytes in character data and attribute values.
var textClass = func() (t [128]uint8) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = cOK
	}
	t['\t'], t['\n'], t['\r'] = cWS, cWS, cCR
	t['<'], t['&'], t[']'] = cLT, cAmp, cRBracket
	return t
}()

// Tables of the scanner's fast paths, indexed by any byte (non-ASCII
// bytes are never in them, so one lookup decides): ASCII bytes that start
// or continue an NCName (no colon), and ASCII bytes that need no attention
// in character data (no '<', '&', ']' or CR) or in an attribute value
// (neither, nor a quote nor TAB or LF).
var ncNameStartASCII, ncNameASCII, plainText, plainAttr = func() (start, name, text, attr [256]bool) {
	for c := range 128 {
		start[c] = nameByte[c]&nameStart != 0 && c != ':'
		name[c] = nameByte[c] != 0 && c != ':'
		text[c] = textClass[c] == cOK && c != ']' || textClass[c] == cWS
		attr[c] = textClass[c] == cOK && c != '"' && c != '\''
	}
	return
}()

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(d []byte, i int) int {
	for i < len(d) && isSpace(d[i]) {
		i++
	}
	return i
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

func hexVal(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return rune(c-'A') + 10
	}
	return -1
}

func isXMLChar(r rune) bool {
	switch {
	case r < 0x20:
		return r == 0x9 || r == 0xA || r == 0xD
	case r <= 0xD7FF:
		return true
	case r < 0xE000:
		return false
	case r <= 0xFFFD:
		return true
	}
	return r >= 0x10000 && r <= 0x10FFFF
}

func isNameStartRune(r rune) bool {
	if r < 0x80 {
		return nameByte[r]&nameStart != 0
	}
	switch {
	case r >= 0xC0 && r <= 0xD6, r >= 0xD8 && r <= 0xF6, r >= 0xF8 && r <= 0x2FF,
		r >= 0x370 && r <= 0x37D, r >= 0x37F && r <= 0x1FFF, r >= 0x200C && r <= 0x200D,
		r >= 0x2070 && r <= 0x218F, r >= 0x2C00 && r <= 0x2FEF, r >= 0x3001 && r <= 0xD7FF,
		r >= 0xF900 && r <= 0xFDCF, r >= 0xFDF0 && r <= 0xFFFD, r >= 0x10000 && r <= 0xEFFFF:
		return true
	}
	return false
}

func isNameRune(r rune) bool {
	if r < 0x80 {
		return nameByte[r] != 0
	}
	return isNameStartRune(r) || r == 0xB7 || (r >= 0x300 && r <= 0x36F) || (r >= 0x203F && r <= 0x2040)
}
