package egress

import (
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/filter"
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

// Real filters fit the probe budget with room to spare; nested scans of
// //* do not.
func TestFilterCost(t *testing.T) {
	for _, e := range []string{
		`//Param[@name="Packet_Type" and @value="61"]`,
		`/*[local-name()="VOEvent" and @role!="test"]`,
		`count(//Param) > 30`,
		`//Who[AuthorIVORN="ivo://nasa.gsfc.tan/gcn"]`,
		`starts-with(@ivorn, "ivo://gwnet/LVC#")`,
		`//Citations/EventIVORN[@cite="retraction"]`,
	} {
		f, err := filter.Compile(e)
		if err != nil {
			t.Fatal(err)
		}
		if steps, ok := affordable(f); !ok || steps > FilterProbeSteps/8 {
			t.Errorf("%s: %d steps (ok %v): real filters must be cheap", e, steps, ok)
		}
	}
	for _, e := range []string{`//*[count(//*[count(//*) > 0]) > 0]`, `//*[count(//*) = count(//*)]`} {
		f, _ := filter.Compile(e)
		if steps, ok := affordable(f); ok {
			t.Errorf("%s: %d steps accepted, want refused", e, steps)
		}
	}
}
