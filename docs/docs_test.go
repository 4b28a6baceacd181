// Package docs holds the protocol and design notes (Markdown) and this
// test, which keeps the repository's citations of them honest.
package docs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	// citation is "docs/NAME.md §N" with further ", §N.M" sections.
	citation = regexp.MustCompile(`docs/([A-Za-z0-9_-]+)\.md((?:,? ?§[0-9]+(?:\.[0-9]+)*)+)`)
	section  = regexp.MustCompile(`§([0-9]+(?:\.[0-9]+)*)`)
	heading  = regexp.MustCompile(`^#{2,4} ([0-9]+(?:\.[0-9]+)*)\.? `)
	// stale is a citation of the reference specs the project started from,
	// which are not in the repository.
	stale = regexp.MustCompile(`\bspec/[a-z]+\.md`)
)

// sections lists the numbered headings ("## 4. Title", "### 4.1 Title")
// of a note.
func sections(t *testing.T, name string) map[string]bool {
	t.Helper()
	f, err := os.Open(name + ".md")
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := heading.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = true
		}
	}
	return out
}

// Every "docs/NAME.md §N" anywhere in the repository names a note that
// exists and a numbered section it has, and nothing cites the specs the
// project was built from (they are not in the repository).
func TestCitations(t *testing.T) {
	notes := map[string]map[string]bool{}
	cited := 0
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != ".." && (strings.HasPrefix(n, ".") || n == "fuzz-cache") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".json", ".yaml", ".service", ".conf", ".sh", "":
		default:
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(data), "\n") {
			where := fmt.Sprintf("%s:%d", path, i+1)
			if stale.MatchString(line) && path != filepath.Join("..", "docs", "docs_test.go") {
				t.Errorf("%s: cites %s, which is not in the repository; cite docs/ instead", where, stale.FindString(line))
			}
			for _, m := range citation.FindAllStringSubmatch(line, -1) {
				have, ok := notes[m[1]]
				if !ok {
					have = sections(t, m[1])
					notes[m[1]] = have
				}
				if have == nil {
					t.Errorf("%s: cites docs/%s.md, which does not exist", where, m[1])
					continue
				}
				for _, s := range section.FindAllStringSubmatch(m[2], -1) {
					cited++
					if !have[s[1]] {
						t.Errorf("%s: cites docs/%s.md §%s, which has no such section", where, m[1], s[1])
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if cited < 20 {
		t.Errorf("found only %d section citations; is the pattern still right?", cited)
	}
}
