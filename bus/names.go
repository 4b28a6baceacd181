package bus

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The one rule for the names Comet gives bus objects (durable consumers,
// stages, dead-letter subjects) and the file names derived from them:
// 1 to some maximum of the characters A-Z, a-z, 0-9, - and _. Subject
// tokens follow it too (EscapeToken).

// CheckName returns an error unless name is 1 to max characters
// [A-Za-z0-9_-]; what names the kind of name in the error.
func CheckName(what, name string, max int) error {
	if name == "" || len(name) > max {
		return fmt.Errorf("bus: %s %q: must be 1 to %d characters", what, name, max)
	}
	for i := 0; i < len(name); i++ {
		if !tokenSafe(name[i]) {
			return fmt.Errorf("bus: %s %q: only A-Z, a-z, 0-9, - and _ allowed", what, name)
		}
	}
	return nil
}

// SafeName makes s follow the rule by replacing each character outside it
// (a whole UTF-8 sequence, or each byte that is not valid UTF-8) with "_".
// It does not bound the length.
func SafeName(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for len(s) > 0 {
		_, n := utf8.DecodeRuneInString(s)
		if n == 1 && tokenSafe(s[0]) {
			b.WriteByte(s[0])
		} else {
			b.WriteByte('_')
		}
		s = s[n:]
	}
	return b.String()
}
