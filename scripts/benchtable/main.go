// Command benchtable prints the target table of scripts/bench.sh from the
// reports it collected: every figure of this build next to the null
// broker's of the same run (and, for an A/B, the base build's), the ratio
// and the target of BENCHMARKS.md.
//
// Usage: go run ./scripts/benchtable DIR
//
// DIR holds RUN/SCENARIO/BUILD/load-K.json (vtp-load -json reports; K
// counts the load tools run at once) and, for the scenarios with an
// external nats-server, RUN/SCENARIO/BUILD/cpu and cpu-nats: "TICKS
// CLK_TCK", the CPU time of every broker process (comet and nats-server),
// and of nats-server alone, over the run.
// BUILD is null, this or base.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/comet-go/comet/internal/loadgen"
)

// result is one scenario run by one build: its load tools' reports merged.
type result struct {
	accepted, deliveries int
	duration             time.Duration // the longest load's, first submission to last ack
	acceptedPerSec       float64       // all accepted / duration
	deliveriesPerSec     float64
	cpuPerEvent          time.Duration
	natsCPUPerEvent      time.Duration // external nats-server only
	peakRSS              int64
	e2eP99               time.Duration
	lost, expected       int // deliveries missing; deliveries expected (accepted × subscribers)
	problems             []string
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtable DIR")
		os.Exit(2)
	}
	res, runs, err := load(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	printTable(os.Stdout, res, runs)
}

// key names one result.
type key struct{ run, scenario, build string }

func load(dir string) (map[key]*result, []string, error) {
	out := map[key]*result{}
	var runs []string
	files, err := filepath.Glob(filepath.Join(dir, "*", "*", "*", "load-*.json"))
	if err != nil {
		return nil, nil, err
	}
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		p := strings.Split(rel, string(filepath.Separator))
		k := key{p[0], p[1], p[2]}
		if !slices.Contains(runs, k.run) {
			runs = append(runs, k.run)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		var rep loadgen.Report
		if err := json.Unmarshal(b, &rep); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f, err)
		}
		r := out[k]
		if r == nil {
			r = &result{}
			out[k] = r
		}
		r.add(&rep)
		if d, ok := perEvent(filepath.Join(filepath.Dir(f), "cpu"), r.accepted); ok {
			r.cpuPerEvent = d
		}
		if d, ok := perEvent(filepath.Join(filepath.Dir(f), "cpu-nats"), r.accepted); ok {
			r.natsCPUPerEvent = d
		}
	}
	slices.SortFunc(runs, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
	return out, runs, nil
}

// perEvent reads a "TICKS CLK_TCK" file: CPU time per accepted event.
func perEvent(file string, accepted int) (time.Duration, bool) {
	b, err := os.ReadFile(file)
	if err != nil || accepted == 0 {
		return 0, false
	}
	var t, hz int64
	if _, err := fmt.Sscan(string(b), &t, &hz); err != nil || hz <= 0 {
		return 0, false
	}
	return time.Duration(t) * time.Second / time.Duration(hz) / time.Duration(accepted), true
}

// add merges one load tool's report (two run at once against two
// ingresses).
func (r *result) add(rep *loadgen.Report) {
	r.accepted += rep.Accepted
	r.duration = max(r.duration, rep.Duration)
	if r.duration > 0 {
		r.acceptedPerSec = float64(r.accepted) / r.duration.Seconds()
	}
	r.deliveries += rep.Deliveries
	r.deliveriesPerSec += rep.DeliveriesPerSec
	r.cpuPerEvent = rep.BrokerCPUPerEvent
	r.peakRSS = max(r.peakRSS, rep.BrokerPeakRSS)
	r.e2eP99 = max(r.e2eP99, rep.EndToEnd.P99)
	r.lost += rep.Lost
	r.expected += rep.Accepted * rep.Subscribers
	r.problems = append(r.problems, rep.Problems()...)
}

// row is one line of the table: a figure of one scenario.
type row struct {
	name     string
	scenario string
	value    func(*result) float64
	unit     string
	// ratio: the figure over the null broker's (0 = none); target: what
	// the ratio (or, without one, the figure) must reach; less: whether
	// it must stay at or below the target rather than above.
	ratio  bool
	target float64
	less   bool
	note   string
}

var rows = []row{
	{name: "submit, 32 authors: accepted events/s", scenario: "c32", value: func(r *result) float64 { return r.acceptedPerSec },
		ratio: true, target: 0.5},
	{name: "broker CPU per accepted event", scenario: "c32", unit: "µs", value: func(r *result) float64 { return us(r.cpuPerEvent) },
		target: 100, less: true, note: "stretch 80"},
	{name: "10 subscribers: deliveries/s", scenario: "m10", value: func(r *result) float64 { return r.deliveriesPerSec },
		ratio: true, target: 0.5},
	{name: "50 subscribers: deliveries/s", scenario: "m50", value: func(r *result) float64 { return r.deliveriesPerSec },
		ratio: true, target: 0.6},
	{name: "e2e p99, 250 events/s, 50 subscribers", scenario: "paced", unit: "ms", value: func(r *result) float64 { return ms(r.e2eP99) },
		ratio: true, target: 2, less: true},
	{name: "peak RSS, submit at full speed", scenario: "c32", unit: "MiB", value: func(r *result) float64 { return mib(r.peakRSS) },
		target: 128, less: true},
	{name: "peak RSS, paced", scenario: "paced", unit: "MiB", value: func(r *result) float64 { return mib(r.peakRSS) },
		target: 64, less: true},
	{name: "10,000 subscribers, 200 events: deliveries missing", scenario: "m10k", value: func(r *result) float64 {
		return float64(r.expected - r.deliveries + r.lost)
	}, target: 0, less: true},
	{name: "10,000 subscribers, 200 events: peak RSS", scenario: "m10k", unit: "MiB", value: func(r *result) float64 { return mib(r.peakRSS) },
		target: 512, less: true},
	{name: "1 ingress, external nats-server: accepted events/s", scenario: "ext1", value: func(r *result) float64 { return r.acceptedPerSec }},
	{name: "2 ingresses, external nats-server: accepted events/s", scenario: "ext2", value: func(r *result) float64 { return r.acceptedPerSec }},
	{name: "CPU per accepted event, 2 ingresses + nats-server", scenario: "ext2", unit: "µs", value: func(r *result) float64 { return us(r.cpuPerEvent) }},
	{name: "  of which nats-server (the bus)", scenario: "ext2", unit: "µs", value: func(r *result) float64 { return us(r.natsCPUPerEvent) }},
	{name: "  bus capacity, one core: events/s", scenario: "ext2", value: func(r *result) float64 {
		if r.natsCPUPerEvent <= 0 {
			return 0
		}
		return float64(time.Second) / float64(r.natsCPUPerEvent)
	}},
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(n int64) float64        { return float64(n) / (1 << 20) }

func printTable(w *os.File, res map[key]*result, runs []string) {
	hasBase := false
	for k := range res {
		hasBase = hasBase || k.build == "base"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "figure\tthis build\tnull\tratio\t"
	if hasBase {
		head += "base\tthis/base\t"
	}
	fmt.Fprintln(tw, head+"target\tmet")
	for _, r := range rows {
		var this, null, ratio, base, ab []string
		met, any := true, false
		for _, run := range runs {
			t, ok := res[key{run, r.scenario, "this"}]
			if !ok {
				continue
			}
			any = true
			tv := r.value(t)
			this = append(this, num(tv, r.unit))
			got := tv
			if n, ok := res[key{run, r.scenario, "null"}]; ok {
				nv := r.value(n)
				null = append(null, num(nv, r.unit))
				if r.ratio && nv > 0 {
					got = tv / nv
					ratio = append(ratio, fmt.Sprintf("%.2f", got))
				}
			}
			if b, ok := res[key{run, r.scenario, "base"}]; ok {
				bv := r.value(b)
				base = append(base, num(bv, r.unit))
				if bv > 0 {
					ab = append(ab, fmt.Sprintf("%.2f", tv/bv))
				}
			}
			if r.target != 0 || r.less {
				met = met && (r.less && got <= r.target || !r.less && got >= r.target)
			}
		}
		if !any {
			continue
		}
		line := r.name + "\t" + strings.Join(this, " / ") + "\t" + strings.Join(null, " / ") + "\t" + strings.Join(ratio, " / ") + "\t"
		if hasBase {
			line += strings.Join(base, " / ") + "\t" + strings.Join(ab, " / ") + "\t"
		}
		target, verdict := "", ""
		if r.target != 0 || r.less {
			op := "≥"
			if r.less {
				op = "≤"
			}
			target = op + " " + strconv.FormatFloat(r.target, 'f', -1, 64)
			if r.ratio {
				target += " × null"
			} else if r.unit != "" {
				target += " " + r.unit
			}
			if r.note != "" {
				target += " (" + r.note + ")"
			}
			verdict = map[bool]string{true: "yes", false: "NO"}[met]
		}
		fmt.Fprintln(tw, line+target+"\t"+verdict)
	}
	// The scaling target compares two scenarios of the same run.
	var scale []string
	met := true
	for _, run := range runs {
		one, ok1 := res[key{run, "ext1", "this"}]
		two, ok2 := res[key{run, "ext2", "this"}]
		if ok1 && ok2 && one.acceptedPerSec > 0 {
			s := two.acceptedPerSec / one.acceptedPerSec
			scale = append(scale, fmt.Sprintf("%.2f", s))
			met = met && s >= 1.6
		}
	}
	if len(scale) > 0 {
		line := "2 ingresses / 1 ingress, external nats-server\t\t\t" + strings.Join(scale, " / ") + "\t"
		if hasBase {
			line += "\t\t"
		}
		fmt.Fprintln(tw, line+"≥ 1.6\t"+map[bool]string{true: "yes", false: "NO"}[met])
	}
	tw.Flush()
	for _, run := range runs {
		for k, r := range res {
			if k.run == run && len(r.problems) > 0 {
				fmt.Fprintf(w, "run %s %s %s: %s\n", k.run, k.scenario, k.build, strings.Join(r.problems, ", "))
			}
		}
	}
}

// num formats a figure: thousands separated, two decimals below 10.
func num(v float64, unit string) string {
	switch {
	case unit == "ms":
		return fmt.Sprintf("%.2f ms", v)
	case v < 10 && v != float64(int64(v)):
		return fmt.Sprintf("%.2f %s", v, unit)
	}
	s := strconv.FormatInt(int64(v+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if unit != "" {
		b.WriteString(" " + unit)
	}
	return b.String()
}
