package broker_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/filter"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// issueFilter is the filter of issue 17: quadratic in the Params, refused
// by the old authenticate-time probe, after which its subscriber got every
// event. lxml matches it on none of the real events.
const issueFilter = `//Param[@value = //Param[@name="TrigID"]/@value and @name != "TrigID"]`

// explosive is cubic in the nodes of the event and true whenever it can be
// evaluated: within smallBudget on the smallest events only.
const explosive = `count(//node()[count(//node()[count(//node()) >= 0]) >= 0]) >= 0`

// smallBudget is the --filter-budget of the explosive filter's test, so
// that its exhausted evaluations stay cheap under the race detector.
const smallBudget = 20_000

// lxmlAnswers reads the recorded answers of lxml (Comet's engine) for the
// realistic filters over the real events: filter -> file -> answer.
func lxmlAnswers(t *testing.T) (exprs []string, answers map[string]map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testdataDir, "filters", "lxml_answers.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Filters []struct {
			Filter  string
			Answers map[string]string
		}
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	answers = map[string]map[string]string{}
	for _, f := range rec.Filters {
		exprs = append(exprs, f.Filter)
		answers[f.Filter] = f.Answers
	}
	return exprs, answers
}

// filteredBroker starts a broker that takes the real events from a
// scripted GCN-like upstream (no schema check on that path, so all 37 go
// through).
func filteredBroker(t *testing.T, mutate func(*broker.Config)) (*broker.Broker, *vtptest.Upstream) {
	t.Helper()
	up, err := vtptest.StartUpstream(vtptest.GCNUpstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	b := start(t, func(c *broker.Config) {
		c.Receive = nil
		c.Subscribe = []endpoint.Endpoint{tcp(up.Addr())}
		if mutate != nil {
			mutate(c)
		}
	})
	if !up.WaitFor(10*time.Second, func(u *vtptest.Upstream) bool { return u.Connected() == 1 }) {
		t.Fatal("the broker did not subscribe to the upstream")
	}
	return b, up
}

// sendAll relays every real event through the broker, waits until each
// subscriber has had its filters decide on every one (received or
// withheld), and returns the file name of each payload.
func sendAll(t *testing.T, b *broker.Broker, up *vtptest.Upstream, subs []*vtptest.Subscriber) map[string]string {
	t.Helper()
	name := map[string]string{}
	smps := samples(t)
	for _, smp := range smps {
		name[string(smp.Data)] = smp.Name
		up.Send(smp.Data)
	}
	decided := func(s *vtptest.Subscriber) bool {
		for _, st := range b.Stats().Subscribers {
			if st.Peer == s.LocalAddr() {
				return s.Count()+int(st.Withheld) == len(smps)
			}
		}
		return false
	}
	for _, s := range subs {
		if !waitUntil(30*time.Second, func() bool { return decided(s) }) {
			t.Fatalf("subscriber %q: %d events received, %+v (closed: %v %v)", s.Filters, s.Count(), b.Stats().Subscribers, s.Closed(), s.Err())
		}
	}
	return name
}

func received(s *vtptest.Subscriber, name map[string]string) []string {
	var got []string
	for _, p := range s.Events() {
		got = append(got, name[string(p)])
	}
	slices.Sort(got)
	return got
}

// Through real subscriber connections, at the default budget, each
// realistic filter delivers, of the 37 real events, exactly those lxml
// matches (the filter of issue 17: none); a subscriber whose only filter is
// refused gets nothing (Comet: everything).
func TestRealisticFiltersThroughSubscribers(t *testing.T) {
	b, up := filteredBroker(t, nil)
	exprs, answers := lxmlAnswers(t)
	if len(exprs) < 40 || !slices.Contains(exprs, issueFilter) {
		t.Fatalf("%d recorded filters; want 40 or more, with the filter of issue 17", len(exprs))
	}
	subs := map[string]*vtptest.Subscriber{}
	var all []*vtptest.Subscriber
	for _, e := range exprs {
		s := subscribe(t, b, vtptest.Comet, e)
		subs[e] = s
		all = append(all, s)
	}
	const syntaxError = `//voe::VOEvent` // one of the realistic filters too
	refusedOnly := subs[syntaxError]
	for _, st := range b.Stats().Subscribers {
		if st.Peer == refusedOnly.LocalAddr() && (len(st.Filters) != 0 || !slices.Equal(st.Refused, []string{syntaxError})) {
			t.Errorf("a syntax error: installed %q, refused %q", st.Filters, st.Refused)
		}
	}

	name := sendAll(t, b, up, all)
	files := slices.Sorted(maps.Values(name))
	for _, e := range exprs {
		var want []string
		for _, f := range files {
			if answers[e][f] == "match" {
				want = append(want, f)
			}
		}
		if got := received(subs[e], name); !slices.Equal(got, want) {
			t.Errorf("%s:\n got  %q\n want %q (lxml)", e, got, want)
		}
	}
	if got := received(subs[issueFilter], name); len(got) != 0 {
		t.Errorf("the filter of issue 17 let %d events through; lxml matches none", len(got))
	}
	if n := len(refusedOnly.Events()); n != 0 {
		t.Errorf("a subscriber whose only filter was refused got %d events, want none", n)
	}
}

// A filter over the budget on an event never lets it through: the
// explosive filter, true wherever it can be evaluated, gets exactly the
// events it can evaluate within the budget; the others are counted and
// logged (once, then at most once a minute).
func TestFilterOverBudgetThroughSubscribers(t *testing.T) {
	logs := &vtptest.SyncBuffer{}
	b, up := filteredBroker(t, func(c *broker.Config) {
		c.FilterBudget = smallBudget
		c.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(logs, vtptest.LogWriter{T: t}), nil))
	})
	s := subscribe(t, b, vtptest.Comet, explosive)
	name := sendAll(t, b, up, []*vtptest.Subscriber{s})

	f, _ := filter.Compile(explosive)
	var want []string
	over := 0
	for _, smp := range samples(t) {
		d, err := filter.Parse(smp.Data)
		if err != nil {
			t.Fatal(err)
		}
		switch d.Eval(f, smallBudget) {
		case filter.Match:
			want = append(want, smp.Name)
		case filter.OverBudget:
			over++
		}
	}
	slices.Sort(want)
	if over == 0 || len(want) == 0 {
		t.Fatalf("the explosive filter is over the budget on %d events and matches %d: it must do both", over, len(want))
	}
	if got := received(s, name); !slices.Equal(got, want) {
		t.Errorf("explosive filter:\n got  %q\n want %q (the %d events within the budget)", got, want, len(want))
	}
	for _, st := range b.Stats().Subscribers {
		if st.Peer == s.LocalAddr() && st.OverBudget != uint64(over) {
			t.Errorf("%d evaluations over the budget counted, want %d", st.OverBudget, over)
		}
	}
	// One line for the first event over the budget; the others are
	// counted in the next line, at most a minute later.
	if n := strings.Count(logs.String(), "filter exhausted its evaluation budget"); n != 1 {
		t.Errorf("%d over-budget lines for one filter over the budget on %d events, want 1", n, over)
	}
}

// A broker's own --filter is applied to what its upstream sends, under
// the same budget, whatever the upstream does with it: a GCN server
// ignores filters, yet only what the filter selects is relayed; with a
// budget too small for the filter, nothing is.
func TestUpstreamFiltersAppliedLocally(t *testing.T) {
	const f = `//Param[@name="Packet_Type" and @value="61"]`
	for _, tc := range []struct {
		name   string
		budget int
		want   []string
	}{
		{"default budget", 0, []string{"BAT_GRB_Pos_655721-214.xml", "SWIFT_1125809-092.xml"}},
		{"budget too small", 50, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, up := filteredBroker(t, func(c *broker.Config) {
				c.Subscriber.Filters = []string{f}
				c.FilterBudget = tc.budget
			})
			s := subscribe(t, b, vtptest.Comet)
			name := map[string]string{}
			for _, smp := range samples(t) {
				name[string(smp.Data)] = smp.Name
				up.Send(smp.Data)
			}
			if !up.WaitFor(deliveryWait, func(u *vtptest.Upstream) bool { return count(u.Received(), vtp.RoleAck) == len(name) }) {
				t.Fatalf("%d acks of %d events", count(up.Received(), vtp.RoleAck), len(name))
			}
			// Each ack follows the decision on its event; then the
			// selected ones arrive, and a moment shows nothing more does.
			s.WaitEvents(len(tc.want), deliveryWait)
			time.Sleep(300 * time.Millisecond)
			if got := received(s, name); !slices.Equal(got, tc.want) {
				t.Errorf("relayed %q, want %q", got, tc.want)
			}
		})
	}
}
