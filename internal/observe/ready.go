package observe

import (
	"context"
	"strings"
	"sync"
	"time"
)

// CheckTimeout bounds each readiness check: a bus that does not answer
// within it is not ready.
const CheckTimeout = 2 * time.Second

// Readiness is the process's list of named readiness checks: the bus is
// reachable, every configured listener is open, and whatever another part
// adds (a store that takes writes, say). The process is ready when every
// check passes. Safe for concurrent use.
type Readiness struct {
	mu     sync.Mutex
	checks []namedCheck
}

type namedCheck struct {
	name string
	fn   func(context.Context) error
}

// Add adds a check: fn returns nil when its part can serve, else an error
// that says why in one line. It is called for every /readyz and status,
// with a context bounded by CheckTimeout.
func (r *Readiness) Add(name string, fn func(context.Context) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, namedCheck{name, fn})
}

// Run runs every check at once and returns their results in the order
// they were added.
func (r *Readiness) Run(ctx context.Context) []Check {
	r.mu.Lock()
	checks := append([]namedCheck(nil), r.checks...)
	r.mu.Unlock()
	out := make([]Check, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, CheckTimeout)
			defer cancel()
			out[i] = Check{Name: c.name, OK: true}
			if err := c.fn(cctx); err != nil {
				out[i] = Check{Name: c.name, Error: oneLine(err.Error())}
			}
		})
	}
	wg.Wait()
	return out
}

// Ready reports whether every check passed, and if not, why, in one line.
func Ready(checks []Check) (bool, string) {
	var failed []string
	for _, c := range checks {
		if !c.OK {
			failed = append(failed, c.Name+": "+c.Error)
		}
	}
	return len(failed) == 0, strings.Join(failed, "; ")
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
