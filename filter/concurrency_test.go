package filter

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentMatch: many goroutines share Filters and Docs, matching
// the same Filter on different Docs and on the same Doc (run with -race).
// Each (Doc, Filter) pair is evaluated once.
func TestConcurrentMatch(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "voevents", "*.xml"))
	var payloads [][]byte
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, raw)
	}
	payloads = append(payloads, []byte(sampleEvent))
	exprs := []string{
		`//Param[@name="Packet_Type" and @value="61"]`,
		`/*[local-name()="VOEvent" and @role!="test"]`,
		`count(//Param) > 30`,
		`//voe:VOEvent`,
		`count(namespace::*) > 2`, // builds namespace nodes lazily
		`string(//Who/AuthorIVORN)`,
		`number(//Param[@name="Nope"]/@value)`,
		`//Param[@value > 10]/@name = "SNR"`,
	}
	var fs []*Filter
	for _, e := range exprs {
		f, err := Compile(e)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	// Expected answers, from Docs of their own.
	want := make([][]bool, len(payloads))
	for i, p := range payloads {
		d := mustParse(t, p)
		for _, f := range fs {
			want[i] = append(want[i], d.Eval(f, DefaultBudget) == Match)
		}
	}

	var evals atomic.Int64
	testHookEval = func() { evals.Add(1) }
	defer func() { testHookEval = nil }()

	docs := make([]*Doc, len(payloads))
	for i, p := range payloads {
		docs[i] = mustParse(t, p)
	}
	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 20 {
				for k := range docs {
					i := (k + w + round) % len(docs) // different Docs at once
					for j := range fs {
						j := (j + w) % len(fs)
						if got := docs[i].Eval(fs[j], DefaultBudget) == Match; got != want[i][j] {
							errs <- fmt.Errorf("doc %d filter %q: %v, want %v", i, exprs[j], got, want[i][j])
							return
						}
					}
					if got := docs[i].MatchAny(fs, DefaultBudget, nil); got != anyTrue(want[i]) {
						errs <- fmt.Errorf("doc %d MatchAny: %v", i, got)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := evals.Load(); n != int64(len(docs)*len(fs)) {
		t.Errorf("%d evaluations for %d (Doc, Filter) pairs: memoization broken", n, len(docs)*len(fs))
	}
}

func anyTrue(bs []bool) bool {
	for _, b := range bs {
		if b {
			return true
		}
	}
	return false
}

// TestConcurrentCompileAndParse: compiling and parsing concurrently, and
// evaluating fresh pairs while others evaluate (pooled evaluators).
func TestConcurrentCompileAndParse(t *testing.T) {
	c := NewCache(4)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				e := fmt.Sprintf(`count(//Param[@value > %d]) >= 0`, (i+w)%6)
				f, err := c.Compile(e)
				if err != nil {
					t.Error(err)
					return
				}
				d, err := Parse([]byte(sampleEvent))
				if err != nil {
					t.Error(err)
					return
				}
				if d.Eval(f, DefaultBudget) != Match {
					t.Errorf("%s did not match", e)
					return
				}
			}
		}()
	}
	wg.Wait()
}
