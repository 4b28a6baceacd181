package egress

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/comet-go/comet/filter"
)

// Limits on a subscriber's filters. Filters come from untrusted peers; each
// one is evaluated on every event, under Config.FilterBudget.
const (
	// MaxFiltersPerSubscriber bounds the filters of one authenticate
	// reply that are compiled and evaluated; further ones are refused.
	MaxFiltersPerSubscriber = 32
	// MaxFiltersExamined bounds the filters of one authenticate reply
	// looked at one by one (and logged if refused); the rest are refused
	// together, unexamined.
	MaxFiltersExamined = 2 * MaxFiltersPerSubscriber
)

// compileFilters turns the filters of an authenticate reply into the
// subscriber's list. It fails closed: a filter that does not compile, or
// is past MaxFiltersPerSubscriber, is logged and kept as refused, never
// matching; so the subscriber never gets more than it asked for, and one
// whose every filter is refused gets nothing, where Comet drops such
// filters and, with none left, sends everything. The list is empty only if
// the subscriber sent no filter (it asked for every event).
func (b *Broadcaster) compileFilters(exprs []string, log *slog.Logger) []*filter.Filter {
	examined := exprs[:min(len(exprs), MaxFiltersExamined)]
	fs := make([]*filter.Filter, 0, len(examined)+1)
	for i, e := range examined {
		var (
			f   *filter.Filter
			err error
		)
		if i < MaxFiltersPerSubscriber {
			f, err = b.filters.Compile(e)
		} else {
			err = fmt.Errorf("past the limit of %d filters per subscriber", MaxFiltersPerSubscriber)
		}
		if err != nil {
			e = shortFilter(e)
			log.Warn("filter refused: it never matches (fail closed)", "filter", e, "reason", err)
			f = filter.Refuse(e, err)
		}
		fs = append(fs, f)
	}
	if n := len(exprs) - len(examined); n > 0 {
		err := fmt.Errorf("%d filters past the first %d of one authenticate reply, not examined", n, MaxFiltersExamined)
		log.Warn("filters refused unexamined: they never match (fail closed)", "count", n, "examined", MaxFiltersExamined)
		fs = append(fs, filter.Refuse(fmt.Sprintf("(%d more filters)", n), err))
	}
	return fs
}

// shortFilter keeps a refused filter short enough to log and hold.
func shortFilter(e string) string {
	const max = 200
	if len(e) <= max {
		return e
	}
	return fmt.Sprintf("%s... (%d bytes)", strings.ToValidUTF8(e[:max], ""), len(e))
}
