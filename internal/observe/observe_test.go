package observe

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// What subscribers send (filters) and what events carry (ivorns, authors)
// reaches the page escaped: a peer cannot put markup, let alone a script,
// on the operator's page.
func TestPageEscapesWhatPeersSend(t *testing.T) {
	hostile := `"><script>alert(1)</script><a href="x`
	n := uint64(3)
	st := &Status{
		Identity:     Identity{Node: "n<1>", Version: "v", Started: time.Now().Add(-time.Hour)},
		Ready:        true,
		Broadcasting: true,
		Subscribers:  []Subscriber{{Address: "127.0.0.1:1", Since: time.Now(), Filters: []string{hostile}, Refused: []string{hostile}}},
		Stages:       []Stage{{Name: "cmd-x", Pending: &n, DeadLetters: &n}},
		Events:       []Event{{IVORN: "ivo://a/b#" + hostile, Author: hostile, Time: time.Now()}},
		Upstreams:    []Upstream{{Kind: "vtp", Address: "up:8099", State: "waiting", LastError: hostile, NextRetry: time.Now().Add(90 * time.Second)}},
	}
	var b strings.Builder
	if err := renderPage(&b, st, time.Now()); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if strings.Contains(page, "<script") || strings.Contains(page, `<a href="x`) {
		t.Fatal("markup from a peer reached the page unescaped")
	}
	if strings.Count(page, "&lt;script&gt;") < 5 {
		t.Errorf("hostile text not shown escaped:\n%s", page)
	}
	for _, want := range []string{`<tr class="subscriber">`, `<span class="badge bad">3</span>`, "in 1m", "n&lt;1&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// Checks run at once, each bounded by CheckTimeout; the results keep the
// order the checks were added in, and a hung check fails with a reason
// instead of hanging /readyz.
func TestReadinessChecks(t *testing.T) {
	var r Readiness
	r.Add("first", func(context.Context) error { return nil })
	r.Add("hung", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	r.Add("broken", func(context.Context) error { return errors.New("disk\nfull") })
	start := time.Now()
	got := r.Run(context.Background())
	if took := time.Since(start); took > CheckTimeout+time.Second {
		t.Errorf("checks took %v: not run at once, or not bounded", took)
	}
	if len(got) != 3 || !got[0].OK || got[1].OK || got[2].OK || got[0].Name != "first" || got[2].Name != "broken" {
		t.Fatalf("results %+v", got)
	}
	ok, why := Ready(got)
	if ok || why != "hung: context deadline exceeded; broken: disk full" {
		t.Errorf("Ready = %v %q", ok, why)
	}
	if ok, why := Ready(got[:1]); !ok || why != "" {
		t.Errorf("Ready of passing checks = %v %q", ok, why)
	}
}

// comet status's tables say NOT READY with the failing check, and list
// the subscribers and stages.
func TestWriteText(t *testing.T) {
	n := uint64(7)
	st := &Status{
		Identity:     Identity{Node: "edge", Version: "1", Started: time.Now()},
		Checks:       []Check{{Name: "bus", Error: "the connection to nats://x:4222 is reconnecting"}},
		Broadcasting: true,
		Subscribers:  []Subscriber{{Address: "10.0.0.1:5000", Since: time.Now(), Delivered: 12}},
		Stages:       []Stage{{Name: "save-event", Pending: &n}},
		Accepted:     map[string]uint64{"author": 3},
	}
	var b strings.Builder
	if err := WriteText(&b, st, time.Now()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"NOT READY", "FAIL: the connection to nats://x:4222 is reconnecting", "10.0.0.1:5000",
		"save-event", "accepted (author)  3", "SUBSCRIBERS (1 connected"} {
		if !strings.Contains(out, want) {
			t.Errorf("status text lacks %q:\n%s", want, out)
		}
	}
}
