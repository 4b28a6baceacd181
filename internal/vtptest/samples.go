package vtptest

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Sample is one shared test VOEvent with Comet's receiver verdict.
type Sample struct {
	Name    string
	Data    []byte
	Verdict string // "ack" or "nak"
	Reason  string // for naks, e.g. "schema" or "no-local-id; schema"
}

// Samples reads every VOEvent in dir (the shared testdata/voevents) with
// Comet's receiver verdict from its README.md, failing t if a file has no
// verdict or the set is not the expected 37 files.
func Samples(t testing.TB, dir string) []Sample {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	verdicts := map[string][2]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cells := strings.Split(sc.Text(), "|")
		if len(cells) < 10 {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		if !strings.HasSuffix(name, ".xml") {
			continue
		}
		verb, why, _ := strings.Cut(strings.TrimSpace(cells[7]), " ")
		verdicts[name] = [2]string{verb, strings.Trim(why, "()")}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.xml"))
	var out []Sample
	for _, p := range files {
		name := filepath.Base(p)
		v, ok := verdicts[name]
		if !ok {
			t.Fatalf("%s has no verdict in README.md", name)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, Sample{name, data, v[0], v[1]})
	}
	if len(out) != 37 {
		t.Fatalf("found %d samples in %s, want 37", len(out), dir)
	}
	return out
}
