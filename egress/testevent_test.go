package egress

import (
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/voevent"
)

// The test event has Comet latest's shape, is valid VOEvent 2.0, and has a
// single '#' even when the broker's IVOID carries a fragment.
func TestTestEventShape(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, local := range []string{"ivo://example.org/broker", "ivo://example.org/broker#frag"} {
		ev := TestEvent(local, "1.2.3 <&>", at)
		info, err := voevent.Inspect(ev, voevent.Options{Schema: true})
		if err != nil || info.SchemaErr != nil {
			t.Fatalf("%s: %v %v\n%s", local, err, info.SchemaErr, ev)
		}
		if info.IVORN != "ivo://example.org/broker#TestEvent-2024-05-01T12:00:00Z" || info.Role != "test" ||
			info.Author != "ivo://example.org/broker" || info.Date != "2024-05-01T12:00:00Z" {
			t.Errorf("%s: %+v", local, info)
		}
		if err := voevent.CheckEventIVORN(info.IVORN); err != nil {
			t.Errorf("%s: test ivorn refused by the receiver's check: %v", local, err)
		}
		if !strings.Contains(string(ev), "Comet for Go 1.2.3 &lt;&amp;&gt;.") {
			t.Errorf("version not escaped:\n%s", ev)
		}
	}
}
