package loadgen

import "time"

// Outcome is what became of one event.
type Outcome uint8

const (
	Acked  Outcome = iota + 1 // the broker acked it
	Naked                     // the broker naked it (Result.Nak says why)
	GaveUp                    // no attempt got a receipt (Result.LastErr says why the last failed)
)

func (o Outcome) String() string {
	switch o {
	case Acked:
		return "acked"
	case Naked:
		return "naked"
	case GaveUp:
		return "gave up"
	}
	return "unknown"
}

// Result is one event's fate, as passed to Config.OnResult.
type Result struct {
	Seq     int    // 0..Events-1
	IVORN   string // IVORNPrefix + "-" + Seq
	Outcome Outcome

	Start    time.Time // the first attempt began
	At       time.Time // the receipt was read, or the event was given up
	Attempts int       // connections tried, the one that got the receipt included
	Addr     string    // the receive address that answered; for GaveUp, the last one tried
	Nak      string    // the nak's reason, when Naked
	LastErr  string    // the last failed attempt's error; "" when none failed
}

// FailedAttempts is how many attempts got no receipt.
func (r Result) FailedAttempts() int {
	if r.Outcome == GaveUp {
		return r.Attempts
	}
	return max(r.Attempts-1, 0)
}
