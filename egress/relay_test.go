package egress

import "testing"

// The relay's memory of sequences: a redelivery of an event still in
// flight is skipped, one already acked is re-acked, and one never seen is
// broadcast even when newer events came first (a delivery lost in a bus
// failover and redelivered after AckWait).
func TestSeqSetHandlesRedeliveriesInAnyOrder(t *testing.T) {
	s := newSeqSet(3)
	for _, seq := range []uint64{10, 12} {
		if got := s.claim(seq); got != seqNew {
			t.Fatalf("first delivery of %d: %v", seq, got)
		}
	}
	if got := s.claim(12); got != seqInFlight {
		t.Errorf("redelivery of 12 while in flight: %v, want in flight", got)
	}
	if got := s.claim(11); got != seqNew {
		t.Errorf("11 arriving after 12 (lost, then redelivered): %v, want new", got)
	}
	s.finish(10)
	if got := s.claim(10); got != seqDone {
		t.Errorf("redelivery of 10 after its ack: %v, want done", got)
	}
	// Only the last max acked sequences are remembered.
	for _, seq := range []uint64{11, 12} {
		s.finish(seq)
	}
	s.claim(13)
	s.finish(13) // forgets 10
	if got := s.claim(10); got != seqNew {
		t.Errorf("10 after being forgotten: %v, want new", got)
	}
	for _, seq := range []uint64{11, 12, 13} {
		if got := s.claim(seq); got != seqDone {
			t.Errorf("%d: %v, want done", seq, got)
		}
	}
	if len(s.done) != 3 || len(s.order) != 3 {
		t.Errorf("remembered %d acked sequences (%d in order), want 3", len(s.done), len(s.order))
	}
}
