package accept

import "runtime"

// ChecksPerCPU sets the default size of a Gate: a few checks per core
// keep every core busy without letting a flood of signed messages queue
// unbounded work.
const ChecksPerCPU = 4

// Gate bounds costly work that any peer can ask for, such as an OpenPGP
// signature check of a submission or of an authenticate reply: at most
// its size at once; the rest wait for a slot.
type Gate struct{ slots chan struct{} }

// NewGate admits n at once; n <= 0 means ChecksPerCPU × GOMAXPROCS.
func NewGate(n int) *Gate {
	if n <= 0 {
		n = ChecksPerCPU * runtime.GOMAXPROCS(0)
	}
	return &Gate{slots: make(chan struct{}, n)}
}

// Enter takes a free slot, or waits for one until stop is closed or
// sends; it reports whether it got one. A caller that got one must Leave.
func (g *Gate) Enter(stop <-chan struct{}) bool {
	select {
	case g.slots <- struct{}{}:
		return true
	default:
	}
	select {
	case g.slots <- struct{}{}:
		return true
	case <-stop:
		return false
	}
}

// Leave gives the slot back.
func (g *Gate) Leave() { <-g.slots }
