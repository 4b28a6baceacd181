package voevent

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrNoLocalID is the receiver's rejection of an IVORN without a per-event
// local part; its text is Comet's nak reason.
var ErrNoLocalID = errors.New("No per-event local ID")

// ErrInvalidIVOID is matched (errors.Is) by the error CheckEventIVORN returns
// for an IVORN that fails the IVOID grammar.
var ErrInvalidIVOID = errors.New("Invalid IVOID")

type invalidIVOIDError struct{ ivorn string }

func (e *invalidIVOIDError) Error() string { return "Invalid IVOID: " + e.ivorn }
func (e *invalidIVOIDError) Unwrap() error { return ErrInvalidIVOID }

// CheckEventIVORN applies Comet's receiver rule (docs/voevent.md §3.1): the
// IVORN must pass the IVOID grammar and have a non-empty local part. The
// error text is Comet's nak reason without the "Event rejected: " prefix.
func CheckEventIVORN(s string) error {
	_, _, local, ok := SplitIVOID(s)
	if !ok {
		return &invalidIVOIDError{ivorn: s}
	}
	if local == "" {
		return ErrNoLocalID
	}
	return nil
}

// ValidIVOID reports whether s passes Comet's IVOID grammar (Comet 3.0 and
// later), without the trailing-newline quirk.
func ValidIVOID(s string) bool {
	_, _, _, ok := SplitIVOID(s)
	return ok
}

// SplitIVOID splits s as Comet's anchored regular expression does:
// "ivo://" authority [resource-key] ["#"] local. resource is "" or starts
// with "/"; a "#" separator is dropped, while ":" or "?" starting a local
// part without "#" stay in it. Where several splits match, the groups are
// those of the regexp's greedy, backtracking match: the longest valid
// resource key.
func SplitIVOID(s string) (authority, resource, local string, ok bool) {
	const scheme = "ivo://"
	if !strings.HasPrefix(s, scheme) {
		return "", "", "", false
	}
	i := len(scheme)
	// Authority: an ASCII letter or digit, then at least two more.
	if i >= len(s) || !isASCIIAlnum(s[i]) {
		return "", "", "", false
	}
	j := i + 1
	for j < len(s) {
		r, n := utf8.DecodeRuneInString(s[j:])
		if !isAuthorityRune(r) {
			break
		}
		j += n
	}
	if utf8.RuneCountInString(s[i:j]) < 3 {
		return "", "", "", false
	}
	authority = s[i:j]
	rest := s[j:]

	// Maximal run of resource-key characters, then try it and each shorter
	// prefix, as the regexp engine backtracks.
	m := 0
	if strings.HasPrefix(rest, "/") {
		m = 1
		for m < len(rest) {
			r, n := utf8.DecodeRuneInString(rest[m:])
			if !isResourceRune(r) {
				break
			}
			m += n
		}
	}
	for k := m; k > 0; {
		if validResourceKey(rest[:k]) {
			if l, ok := localPart(rest[k:]); ok {
				return authority, rest[:k], l, true
			}
		}
		_, n := utf8.DecodeLastRuneInString(rest[:k])
		k -= n
	}
	if l, ok := localPart(rest); ok {
		return authority, "", l, true
	}
	return "", "", "", false
}

// localPart matches `#?` then the local-part alphabet to the end of t.
func localPart(t string) (string, bool) {
	t = strings.TrimPrefix(t, "#")
	for _, r := range t {
		if !isLocalRune(r) {
			return "", false
		}
	}
	return t, true
}

func validResourceKey(k string) bool {
	return !strings.HasSuffix(k, "/") && !strings.Contains(k, "//") &&
		!strings.Contains(k, "/./") && !strings.Contains(k, "/../")
}

func isASCIIAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isWord is Python's Unicode \w: letters, numbers and underscore.
func isWord(r rune) bool {
	if r < utf8.RuneSelf {
		return isASCIIAlnum(byte(r)) || r == '_'
	}
	return unicode.IsLetter(r) || unicode.IsNumber(r)
}

func isAuthorityRune(r rune) bool {
	return isWord(r) || strings.ContainsRune("-.~*'()", r)
}

func isResourceRune(r rune) bool {
	return isWord(r) || strings.ContainsRune("-.~*'()/", r)
}

func isLocalRune(r rune) bool {
	return isWord(r) || strings.ContainsRune("-.~*'()+=/%!$&,;:@?", r)
}
