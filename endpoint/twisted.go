package endpoint

import (
	"errors"
	"fmt"
	"strings"
)

// description is an endpoint string split as Twisted's strports parser
// splits it: the type, then positional arguments and keyword arguments.
type description struct {
	kind string
	args []string
	kw   map[string]string
}

// split tokenizes s as Twisted does (twisted.internet.endpoints._parse):
// fields are separated by ':'; the first '=' of a field separates a
// keyword from its value (later ones belong to the value); a backslash
// makes the next character literal, so "C\:/key.pem" is one value. A
// repeated keyword keeps its last value, as in Twisted.
func split(s string) (description, error) {
	var fields [][]string // each: [value] or [keyword, value]
	var cur strings.Builder
	field := []string{}
	inValue := false // after '=' only ':' separates
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			if i+1 == len(s) {
				return description{}, errors.New("ends with an unescaped backslash")
			}
			i++
			cur.WriteByte(s[i])
		case c == ':':
			fields = append(fields, append(field, cur.String()))
			field, inValue = []string{}, false
			cur.Reset()
		case c == '=' && !inValue:
			field = append(field, cur.String())
			inValue = true
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	fields = append(fields, append(field, cur.String()))
	d := description{kind: fields[0][0], kw: map[string]string{}}
	if len(fields[0]) != 1 {
		return description{}, fmt.Errorf("no endpoint type before %q", fields[0][0]+"=")
	}
	for _, f := range fields[1:] {
		if len(f) == 1 {
			d.args = append(d.args, f[0])
		} else {
			d.kw[f[0]] = f[1]
		}
	}
	return d, nil
}

// param is one parameter of an endpoint type, in Twisted's order.
type param struct {
	name     string
	required bool
	def      string
	// keywordOnly parameters are this project's extensions: positional
	// arguments never reach them, so a Twisted description cannot change
	// meaning.
	keywordOnly bool
}

// bind assigns d's arguments to params as Python binds a call to a
// function's signature: positional arguments in order, then keywords by
// name; a parameter given twice, an unknown keyword, too many positional
// arguments or a missing required parameter is an error, as it is for
// Twisted. The result holds every parameter given or defaulted; given
// reports which were given.
func bind(d description, params []param) (vals map[string]string, given map[string]bool, err error) {
	vals, given = map[string]string{}, map[string]bool{}
	positional := 0
	for _, p := range params {
		if !p.keywordOnly {
			positional++
		}
	}
	if len(d.args) > positional {
		return nil, nil, fmt.Errorf("%s takes at most %d positional arguments, %d given (%s)",
			d.kind, positional, len(d.args), strings.Join(d.args, ", "))
	}
	for i, a := range d.args {
		vals[params[i].name], given[params[i].name] = a, true
	}
	for k, v := range d.kw {
		i := indexOf(params, k)
		switch {
		case i < 0:
			return nil, nil, fmt.Errorf("%s has no parameter %q (it takes %s)", d.kind, k, names(params))
		case given[k]:
			return nil, nil, fmt.Errorf("%s: %s given both by position and as %s=", d.kind, k, k)
		}
		vals[k], given[k] = v, true
	}
	for _, p := range params {
		if given[p.name] {
			continue
		}
		if p.required {
			return nil, nil, fmt.Errorf("%s needs %s", d.kind, p.name)
		}
		if p.def != "" {
			vals[p.name] = p.def
		}
	}
	return vals, given, nil
}

func indexOf(params []param, name string) int {
	for i, p := range params {
		if p.name == name {
			return i
		}
	}
	return -1
}

func names(params []param) string {
	out := make([]string, len(params))
	for i, p := range params {
		out[i] = p.name
	}
	return strings.Join(out, ", ")
}

// Quote escapes a value for an endpoint description: '\' and ':' get a
// backslash (Twisted's quoteStringArgument).
func Quote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(s)
}
