package filter

import (
	"log/slog"
	"time"
)

// The evaluation budget (docs/filtering.md §5). Filters come from remote,
// untrusted peers and run on every event, so each evaluation of one filter
// on one event is bounded in steps: each node visited on an axis, each
// sub-expression evaluated, each pair of values compared and every
// bytesPerStep bytes of string or node-set built count one step. So the
// budget bounds both the time and the memory a filter takes per event,
// however it is written (nested // with predicates over predicates,
// unions of unions, strings built from strings). A filter that exhausts
// its budget on an event is no match for that event: the event is not sent
// on its account (fail closed), and the caller logs it (OverBudgetLog).
const (
	// DefaultBudget is the steps one filter may take on one event. Sized
	// from the realistic filters of testdata/filters over the real events
	// of testdata/voevents (TestRealisticFilterCosts prints the table):
	// the costliest, quadratic comparisons of every Param with another
	// (`//Param[@value = //Param[@name="TrigID"]/@value and @name !=
	// "TrigID"]`), take up to 115,817 steps on the largest GCN notice (108
	// Params), an eighteenth of this; ordinary filters take 10 to 2,200.
	// Quadratic filters grow with the square of the event, so this leaves
	// room for events four times that size. An exhausted budget costs 15
	// to 30 ms of one core and allocates 10 to 32 MB, most of it
	// short-lived (BenchmarkExhaustedBudget).
	DefaultBudget = 1 << 21
	// MaxBudget is the largest budget accepted (--filter-budget), 32 times
	// the default: about a second of one core per exhausted evaluation.
	MaxBudget = 1 << 26
	// bytesPerStep: building this many bytes of string or node-set costs
	// one step, so memory is bounded by the budget too.
	bytesPerStep = 8
)

// clampBudget maps a caller's budget to the one used: DefaultBudget for
// zero or less, at most MaxBudget.
func clampBudget(b int) int {
	if b <= 0 {
		return DefaultBudget
	}
	return min(b, MaxBudget)
}

// DefaultOverBudgetLogInterval is how often, at most, OverBudgetLog
// repeats its line for a filter that keeps exhausting its budget.
const DefaultOverBudgetLogInterval = time.Minute

// OverBudgetLog tells the operator about filters that exhaust their
// budget, which would otherwise silently miss events: one warning the
// first time a filter does, then at most one per Interval while it goes
// on, with the number of events it missed since the last line. One per
// subscriber (or other holder of a filter list); not safe for concurrent
// use.
type OverBudgetLog struct {
	Logger   *slog.Logger  // nil: slog.Default()
	Budget   int           // the budget in force, for the log line
	Interval time.Duration // 0: DefaultOverBudgetLogInterval

	seen map[*Filter]*overBudgetEntry
	now  func() time.Time // tests
}

// maxOverBudgetEntries bounds the filters an OverBudgetLog remembers (a
// subscriber may replace its filters many times).
const maxOverBudgetEntries = 256

// forget drops the filters last logged before cutoff (they would be logged
// at their next report anyway), or every filter if that is not enough.
func (l *OverBudgetLog) forget(cutoff time.Time) {
	for f, e := range l.seen {
		if e.last.Before(cutoff) {
			delete(l.seen, f)
		}
	}
	if len(l.seen) >= maxOverBudgetEntries {
		clear(l.seen)
	}
}

type overBudgetEntry struct {
	last   time.Time
	missed int // events over budget since the last line
}

// Report records that f exhausted its budget on one event, and logs it if
// it is the first time or Interval has passed since the last line.
func (l *OverBudgetLog) Report(f *Filter) {
	now := time.Now
	if l.now != nil {
		now = l.now
	}
	t := now()
	if l.seen == nil {
		l.seen = make(map[*Filter]*overBudgetEntry)
	}
	interval := l.Interval
	if interval <= 0 {
		interval = DefaultOverBudgetLogInterval
	}
	e := l.seen[f]
	if e == nil {
		if len(l.seen) >= maxOverBudgetEntries {
			l.forget(t.Add(-interval))
		}
		e = &overBudgetEntry{}
		l.seen[f] = e
	}
	e.missed++
	if !e.last.IsZero() && t.Sub(e.last) < interval {
		return
	}
	log := l.Logger
	if log == nil {
		log = slog.Default()
	}
	log.Warn("filter exhausted its evaluation budget: no match for the event (fail closed)",
		"filter", f.String(), "budget", clampBudget(l.Budget), "missed_events", e.missed)
	e.last, e.missed = t, 0
}
