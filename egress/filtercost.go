package egress

import (
	_ "embed"
	"fmt"
	"sync"

	"github.com/comet-go/comet/filter"
)

// Limits on what a subscriber's filters may cost. Filters come from
// untrusted peers and run on every event, in the fan-out path.
const (
	// MaxFiltersPerSubscriber bounds one authenticate reply; further
	// filters are dropped (logged), as invalid ones are.
	MaxFiltersPerSubscriber = 32
	// MaxFiltersExamined bounds the filters of one authenticate reply that
	// are compiled and costed at all; the rest are dropped unexamined.
	MaxFiltersExamined = 2 * MaxFiltersPerSubscriber
	// FilterProbeSteps is the evaluation budget a filter gets on
	// referenceEvent when installed. Typical filters take 10 to 2,000
	// steps there (//Param[@name="SNR" and @value>10]: 1,111); one that
	// runs out (quadratic scans of //*, say) is refused like an invalid
	// filter. filter.MaxEvalSteps still bounds every evaluation on real
	// events.
	FilterProbeSteps = 1 << 14
)

// referenceEvent is a large real notice (a Fermi pointing direction from
// GCN, 108 Params) on which new filters are costed.
//
//go:embed reference_event.xml
var referenceEvent []byte

var reference = sync.OnceValue(func() *filter.Doc {
	d, err := filter.Parse(referenceEvent)
	if err != nil {
		panic(fmt.Sprintf("egress: reference event does not parse: %v", err))
	}
	return d
})

// affordable reports whether f stays within FilterProbeSteps on the
// reference event, and the steps it took.
func affordable(f *filter.Filter) (int, bool) {
	return f.Steps(reference(), FilterProbeSteps)
}
