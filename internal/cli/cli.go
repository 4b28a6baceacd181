// Package cli is what the commands share in speaking to a user: usage
// grouped by role with each option's aliases beside it, on standard
// output, and command-line mistakes in one line that names the option as
// it was typed.
package cli

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// Group lists options under a title, each as its modern name followed by
// its aliases.
type Group struct {
	Title string
	Names [][]string
}

// Layout is a command's usage: a head, then the options by group.
type Layout struct {
	Head     string
	Groups   []Group
	Optional map[string]bool // options whose value may be left out: [ARG]
	Variadic map[string]bool // options taking zero or more values: [ARG ...]
}

// Write writes the usage of the options in fs.
func (l *Layout) Write(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, l.Head)
	for _, g := range l.Groups {
		fmt.Fprintf(w, "\n%s:\n", g.Title)
		for _, names := range g.Names {
			f := fs.Lookup(names[0])
			arg, help := flag.UnquoteUsage(f)
			switch arg {
			case "value": // a switch that counts, taking no value
				arg = ""
			case "duration":
				arg = "DURATION"
			case "int":
				arg = "N"
			case "string":
				arg = "VALUE"
			}
			switch {
			case l.Optional[f.Name]:
				arg = "[" + arg + "]"
			case l.Variadic[f.Name]:
				arg = "[" + arg + " ...]"
			}
			line := "  " + Dashed(names[0])
			for _, a := range names[1:] {
				line += ", " + Dashed(a)
			}
			if arg != "" {
				line += " " + arg
			}
			if d := f.DefValue; d != "" && d != "false" && d != "0" && !l.Optional[f.Name] {
				help += " (default " + d + ")"
			}
			fmt.Fprintln(w, line)
			for _, l := range wrap(help, 72) {
				fmt.Fprintln(w, "      "+l)
			}
		}
	}
}

// Unlisted returns the options of fs that no group lists, and the names
// groups list that are no option of fs: both should be empty.
func (l *Layout) Unlisted(fs *flag.FlagSet) (unlisted, unknown []string) {
	listed := map[string]bool{}
	for _, g := range l.Groups {
		for _, names := range g.Names {
			for _, n := range names {
				if fs.Lookup(n) == nil || listed[n] {
					unknown = append(unknown, n)
				}
				listed[n] = true
			}
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !listed[f.Name] {
			unlisted = append(unlisted, f.Name)
		}
	})
	return unlisted, unknown
}

// wrap breaks text into lines of at most width bytes at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}

// Dashed writes an option name as it is typed: -r, --receive.
func Dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// ParseError turns a parse error of the flag package into one line that
// names the option as it was typed in args and ends with "; see HELP"
// (e.g. "comet -h").
func ParseError(err error, args []string, help string) string {
	msg := err.Error()
	typed := func(name string) string {
		for _, a := range args {
			if tok, _, _ := strings.Cut(a, "="); strings.HasPrefix(tok, "-") && strings.TrimLeft(tok, "-") == name {
				return tok
			}
		}
		return Dashed(name)
	}
	see := "; see " + help
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return "unknown option " + typed(name) + see
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return typed(name) + " needs a value" + see
	}
	// invalid value "x" for flag -name: why
	if rest, ok := strings.CutPrefix(msg, "invalid value "); ok {
		if val, after, ok := strings.Cut(rest, " for flag -"); ok {
			if name, why, ok := strings.Cut(after, ": "); ok {
				if why == "parse error" {
					why = "not a number"
				}
				return typed(name) + " " + val + ": " + why + see
			}
		}
	}
	return msg + see
}
