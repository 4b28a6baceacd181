package filter

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestCacheInterns(t *testing.T) {
	c := NewCache(0)
	if c.max != DefaultCacheSize {
		t.Errorf("NewCache(0) holds %d, want DefaultCacheSize", c.max)
	}
	a, err := c.Compile(`//Param`)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.Compile(`//Param`)
	if a != b {
		t.Error("same expression, different *Filter")
	}
	if o, _ := c.Compile(`//Param `); o == a {
		t.Error("different expressions, same *Filter")
	}
	if _, err := c.Compile(`//voe::VOEvent`); err == nil {
		t.Error("syntax error not reported")
	}
	if f, err := c.Compile(`//voe::VOEvent`); err == nil || f != nil {
		t.Error("cached syntax error not reported")
	}
	// One interned filter is evaluated once per Doc whoever asks.
	d := mustParse(t, []byte(sampleEvent))
	n := 0
	testHookEval = func() { n++ }
	defer func() { testHookEval = nil }()
	for range 100 {
		f, _ := c.Compile(`//Param`)
		d.MatchAny([]*Filter{f}, DefaultBudget, nil)
	}
	if n != 1 {
		t.Errorf("%d evaluations for one interned filter on one Doc", n)
	}
}

// TestCacheBound: at most max expressions are held; an evicted filter
// that someone still holds stays interned; dropped ones are forgotten.
func TestCacheBound(t *testing.T) {
	const max = 8
	c := NewCache(max)
	kept, _ := c.Compile(`//Kept`)
	for i := range 100 {
		if _, err := c.Compile(fmt.Sprintf(`//P%d`, i)); err != nil {
			t.Fatal(err)
		}
		c.Compile(fmt.Sprintf(`//bad%d[`, i)) // failures are cached and bounded too
	}
	if held, _ := c.size(); held > max {
		t.Errorf("%d held, bound is %d", held, max)
	}
	if again, _ := c.Compile(`//Kept`); again != kept {
		t.Error("a filter still in use was not interned after eviction")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		_, interned := c.size()
		if interned <= max+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d interned after GC, want at most %d", interned, max+1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(kept)
}

func TestCacheConcurrent(t *testing.T) {
	c := NewCache(16)
	exprs := []string{`//A`, `//B`, `//C`, `//D`}
	got := make([][]*Filter, 32)
	var wg sync.WaitGroup
	for w := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, e := range exprs {
				f, err := c.Compile(e)
				if err != nil {
					t.Error(err)
				}
				got[w] = append(got[w], f)
			}
		}()
	}
	wg.Wait()
	for w := range got {
		for i := range exprs {
			if got[w][i] != got[0][i] {
				t.Fatalf("%s interned twice", exprs[i])
			}
		}
	}
}
