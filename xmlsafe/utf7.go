package xmlsafe

import "fmt"

// UTF-7 (RFC 2152) as glibc's iconv decodes it, which is what libxml2
// gives Comet: outside base64, the "direct" and "optional direct"
// characters stand for themselves ('\\', '~' and controls other than tab,
// LF and CR are refused), "+-" is '+', and '+' opens a base64 run of
// UTF-16 code units which any other byte closes ('-' is then dropped);
// leftover bits must be zero and fewer than six, surrogates must pair.

// utf7Direct reports whether glibc reads ASCII byte c outside base64.
func utf7Direct(c byte) bool {
	switch {
	case c == '\t' || c == '\n' || c == '\r':
		return true
	case c < ' ' || c > '}':
		return false
	}
	return c != '+' && c != '\\'
}

func utf7Value(c byte) (uint32, bool) {
	switch {
	case 'A' <= c && c <= 'Z':
		return uint32(c - 'A'), true
	case 'a' <= c && c <= 'z':
		return uint32(c-'a') + 26, true
	case '0' <= c && c <= '9':
		return uint32(c-'0') + 52, true
	case c == '+':
		return 62, true
	case c == '/':
		return 63, true
	}
	return 0, false
}

// decodeUTF7 follows glibc's utf-7.c: shift counts down from 32 the bits
// still free in the 32-bit accumulator wch. A character's bytes are those
// read since the previous character ended (the '+' opening a run counts
// with the character after it, the '-' closing one with the character
// before it).
func (t *transcoder) decodeUTF7(src []byte) error {
	base := t.in
	bad := func(i int, why string) error {
		return &decodeError{base + i, fmt.Sprintf("byte %#02x: %s (UTF-7)", src[i], why)}
	}
	inBase64 := false
	shift, wch := 0, uint32(0)
	for i := 0; i < len(src); {
		c := src[i]
		if !inBase64 {
			switch {
			case utf7Direct(c):
				t.emit(rune(c), 1)
				i++
			case c == '+' && i+1 < len(src) && src[i+1] == '-':
				t.emit('+', 2)
				i += 2
			case c == '+' && i+1 < len(src):
				inBase64, shift, wch = true, 32, 0
				if !t.skip(1) {
					return bad(i, "too long a base64 run without a character")
				}
				i++
			case c == '+':
				return bad(i, "'+' at the end of the document")
			default:
				return bad(i, "not a UTF-7 character")
			}
			continue
		}
		v, ok := utf7Value(c)
		if !ok {
			if wch != 0 || shift <= 26 {
				return bad(i, "base64 run ends inside a character")
			}
			inBase64 = false
			if c == '-' {
				// The '-' closing a run belongs to the run's last
				// character, so that a token's span decodes to it alone.
				t.extendLast(1)
				i++
			}
			continue
		}
		if shift > 6 {
			shift -= 6
			w := wch | v<<shift
			switch {
			case shift <= 16 && shift > 10:
				// A UTF-16 code unit is complete.
				if u := w >> 16; u < 0xD800 || u >= 0xDC00 {
					if u >= 0xDC00 && u < 0xE000 {
						return bad(i, "unpaired low surrogate")
					}
					w <<= 16
					shift += 16
					t.emit(rune(u), 1)
					i++
					wch = w
					continue
				}
			case shift <= 10 && shift > 4:
				// After a high surrogate, the next unit must be a low one.
				if u := w & 0xFFFF; u < 0xDC00 || u >= 0xE000 {
					return bad(i, "high surrogate without a low one")
				}
			}
			wch = w
		} else {
			// A surrogate pair is complete.
			hi := wch >> 16
			lo := wch&0xFFFF | v>>(6-shift)
			wch = (v << shift) << 26
			shift += 26
			t.emit(rune(0x10000+(hi-0xD800)<<10+(lo-0xDC00)), 1)
			i++
			continue
		}
		if !t.skip(1) {
			return bad(i, "too long a base64 run without a character")
		}
		i++
	}
	if inBase64 && (wch != 0 || shift <= 26) {
		return &decodeError{base + len(src), "document ends inside a UTF-7 character"}
	}
	return nil
}

// appendUTF7 appends text (UTF-8) in UTF-7: glibc's direct characters as
// themselves, '+' as "+-", any other run in base64 closed by '-'.
func appendUTF7(dst, text []byte) []byte {
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var units []uint16
	flush := func() {
		if len(units) == 0 {
			return
		}
		dst = append(dst, '+')
		var acc uint32
		bits := 0
		for _, u := range units {
			acc = acc<<16 | uint32(u)
			bits += 16
			for bits >= 6 {
				bits -= 6
				dst = append(dst, b64[acc>>bits&63])
			}
		}
		if bits > 0 {
			dst = append(dst, b64[acc<<(6-bits)&63])
		}
		dst = append(dst, '-')
		units = units[:0]
	}
	for _, r := range string(text) {
		switch {
		case r < 0x80 && utf7Direct(byte(r)):
			flush()
			dst = append(dst, byte(r))
		case r == '+':
			flush()
			dst = append(dst, '+', '-')
		case r >= 0x10000:
			r -= 0x10000
			units = append(units, uint16(0xD800+r>>10), uint16(0xDC00+r&0x3FF))
		default:
			units = append(units, uint16(r))
		}
	}
	flush()
	return dst
}
