package observe

import (
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strings"
	"time"
)

// PageRefresh is how often the status page reloads itself, in seconds.
const PageRefresh = 10

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"ago":    ago,
	"until":  until,
	"utc":    utc,
	"uptime": func(id Identity, now time.Time) string { return id.Uptime(now).String() },
	"join":   strings.Join,
	"bytes":  humanBytes,
	"limit": func(n int64) string {
		if n < 0 {
			return "none"
		}
		return humanBytes(uint64(n))
	},
	"opt": func(p *uint64) string {
		if p == nil {
			return "?"
		}
		return fmt.Sprint(*p)
	},
	"deref": func(p *uint64) uint64 { return *p },
}).Parse(pageHTML))

// pageData is what the template reads: the status and what is derived
// from it.
type pageData struct {
	S         *Status
	Now       time.Time
	Refresh   int
	EventsMax int
}

func (p pageData) RejectedTotal() uint64 {
	var n uint64
	for _, r := range p.S.Rejected {
		n += r.Count
	}
	return n
}

// RejectedNonZero are the rejection counts above zero, largest first.
func (p pageData) RejectedNonZero() []Rejected {
	var out []Rejected
	for _, r := range p.S.Rejected {
		if r.Count > 0 {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b Rejected) int { return cmp.Compare(b.Count, a.Count) })
	return out
}

// DropsNonZero are the subscriber drop counts above zero, largest first.
func (p pageData) DropsNonZero() []Rejected {
	var out []Rejected
	for cause, n := range p.S.Drops {
		if n > 0 {
			out = append(out, Rejected{Reason: cause, Count: n})
		}
	}
	slices.SortFunc(out, func(a, b Rejected) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Reason, b.Reason))
	})
	return out
}

func (p pageData) Connected() int {
	n := 0
	for _, u := range p.S.Upstreams {
		if u.Connected() {
			n++
		}
	}
	return n
}

// DeadLetters is the dead letters stored for this process's stages.
func (p pageData) DeadLetters() uint64 {
	var n uint64
	for _, s := range p.S.Stages {
		if s.DeadLetters != nil {
			n += *s.DeadLetters
		}
	}
	return n
}

func renderPage(w io.Writer, st *Status, now time.Time) error {
	return pageTemplate.Execute(w, pageData{S: st, Now: now, Refresh: PageRefresh, EventsMax: RecentEvents})
}

// ago is how long before now t was, "never" for a zero time.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return short(now.Sub(t)) + " ago"
}

// until is how long after now t is, "" for a zero time.
func until(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	if d := t.Sub(now); d > 0 {
		return "in " + short(d)
	}
	return "now"
}

func short(d time.Duration) string {
	switch {
	case d < time.Second:
		return "<1s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func utc(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
