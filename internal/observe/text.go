package observe

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the status as terminal tables (comet status), for
// hosts without a browser: the same sections as the page, the last
// events excepted.
func WriteText(w io.Writer, st *Status, now time.Time) error {
	p := pageData{S: st, Now: now}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }
	id := st.Identity
	ready := "READY"
	if !st.Ready {
		ready = "NOT READY"
	}
	line("comet %s\t%s", id.Node, ready)
	if id.LocalIVO != "" {
		line("local ivo\t%s", id.LocalIVO)
	}
	line("version\t%s (%s)", id.Version, id.Go)
	line("up\t%s (since %s)", id.Uptime(now), utc(id.Started))
	line("roles\t%s", strings.Join(id.Roles, ", "))
	line("bus\t%s", id.Bus)
	section := func(title string) { line("\n%s", title) }

	section("READINESS")
	for _, c := range st.Checks {
		state := "ok"
		if !c.OK {
			state = "FAIL: " + c.Error
		}
		line("  %s\t%s", c.Name, state)
	}
	section("LISTENERS")
	for _, l := range st.Listeners {
		state := "open"
		if !l.Open {
			state = "CLOSED"
		}
		line("  %s\t%s\t%s", l.Role, l.Address, state)
	}
	section("EVENTS")
	for origin, n := range st.Accepted {
		line("  accepted (%s)\t%d", origin, n)
	}
	for _, r := range p.RejectedNonZero() {
		line("  rejected (%s, %s)\t%d", r.Origin, r.Reason, r.Count)
	}
	for kind, n := range st.TLSFailures {
		line("  TLS handshakes failed (%s)\t%d", kind, n)
	}
	if st.Broadcasting {
		section(fmt.Sprintf("SUBSCRIBERS (%d connected, %d deliveries)", len(st.Subscribers), st.Delivered))
		if len(st.Subscribers) > 0 {
			line("  ADDRESS\tCONNECTED\tKEY\tFILTERS\tQUEUED\tUNACKED\tDELIVERED\tLAST ACK")
		}
		for _, s := range st.Subscribers {
			key := s.Key
			if s.CertSubject != "" {
				key = strings.TrimPrefix(key+" cert "+s.CertSubject, " ")
			}
			if key == "" {
				key = "-"
			}
			filters := "all"
			if n := len(s.Filters) + len(s.Refused); n > 0 {
				filters = fmt.Sprintf("%d (%d refused)", n, len(s.Refused))
			}
			line("  %s\t%s\t%s\t%s\t%d\t%d\t%d\t%s", s.Address, ago(s.Since, now), key, filters,
				s.Queued, s.InFlight, s.Delivered, ago(s.LastAck, now))
		}
		for _, d := range p.DropsNonZero() {
			line("  dropped (%s)\t%d", d.Reason, d.Count)
		}
	}
	if len(st.Upstreams) > 0 {
		section(fmt.Sprintf("UPSTREAMS (%d of %d connected)", p.Connected(), len(st.Upstreams)))
		line("  KIND\tADDRESS\tSTATE\tSINCE\tLAST EVENT\tNEXT RETRY\tACCEPTED")
		for _, u := range st.Upstreams {
			line("  %s\t%s\t%s\t%s\t%s\t%s\t%d", u.Kind, u.Address, u.State, ago(u.Since, now), ago(u.LastEvent, now),
				orDash(until(u.NextRetry, now)), u.Accepted)
		}
	}
	if len(st.Stages) > 0 {
		section("STAGES")
		line("  STAGE\tPENDING\tHANDLED\tFAILED\tDEAD-LETTERED\tDEAD LETTERS STORED")
		for _, s := range st.Stages {
			line("  %s\t%s\t%d\t%d\t%d\t%s", s.Name, optText(s.Pending), s.Handled, s.Failures, s.DeadLettered, optText(s.DeadLetters))
		}
	}
	section("BUS")
	if st.Bus.Up {
		line("  state\tup")
	} else {
		line("  state\tDOWN: %s", st.Bus.Error)
	}
	for _, s := range st.Bus.Streams {
		line("  %s\t%d messages\t%s", s.Name, s.Messages, humanBytes(s.Bytes))
	}
	return tw.Flush()
}

func optText(p *uint64) string {
	if p == nil {
		return "?"
	}
	return fmt.Sprint(*p)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
