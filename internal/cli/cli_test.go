package cli

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
)

func testFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Bool("receive", false, "accept events")
	fs.Bool("r", false, "accept events")
	fs.Int("pool", 8, "runs at once")
	fs.String("dir", "", "`DIR` to save into")
	return fs
}

func TestParseErrorsAreOneLineNamingTheOption(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--recieve"}, "unknown option --recieve; see x -h"},
		{[]string{"-recieve=1"}, "unknown option -recieve; see x -h"},
		{[]string{"--dir"}, "--dir needs a value; see x -h"},
		{[]string{"--pool", "many"}, `--pool "many": not a number; see x -h`},
	} {
		err := testFlags().Parse(c.args)
		if got := ParseError(err, c.args, "x -h"); got != c.want {
			t.Errorf("%q: %q, want %q", c.args, got, c.want)
		}
	}
}

func TestUsageGroupsOptionsWithAliases(t *testing.T) {
	l := &Layout{Head: "usage: x\n", Groups: []Group{
		{"Receiving", [][]string{{"receive", "r"}}},
		{"Limits", [][]string{{"pool"}, {"dir"}}},
	}}
	var out bytes.Buffer
	fs := testFlags()
	l.Write(&out, fs)
	want := "usage: x\n\nReceiving:\n  --receive, -r\n      accept events\n\nLimits:\n  --pool N\n      runs at once (default 8)\n  --dir DIR\n      DIR to save into\n"
	if out.String() != want {
		t.Errorf("usage:\n%s\nwant:\n%s", out.String(), want)
	}
	if unlisted, unknown := l.Unlisted(fs); len(unlisted)+len(unknown) != 0 {
		t.Errorf("unlisted %v, unknown %v", unlisted, unknown)
	}
	l.Groups = l.Groups[1:]
	if unlisted, _ := l.Unlisted(fs); strings.Join(unlisted, " ") != "r receive" {
		t.Errorf("unlisted %v", unlisted)
	}
}
