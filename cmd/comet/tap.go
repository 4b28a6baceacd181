package main

// comet tap: print the events on a bus as JSON lines.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/filter"
	"github.com/comet-go/comet/internal/cli"
	"github.com/comet-go/comet/tap"
)

const tapUsage = `usage: comet tap --nats URL[,URL...] [options]

Print the events on a Comet bus as JSON lines, one per event in stream
order: seq, subject, sha1, ivorn, role, author, date, received_at, origin,
node, peer, signature, params, wherewhen, citations (parse_error if the
event cannot be read). By default from now on, until interrupted.

The bus is an external NATS JetStream system (comet --nats), or the
embedded bus of a running broker started with --nats-listen HOST:PORT.

Examples:
  comet tap --nats nats://127.0.0.1:4222 --since 1h --follow=false
  comet tap --nats nats://127.0.0.1:4222 --filter '//Param[@name="Packet_Type" and @value="61"]' | jq .ivorn

Options:
`

// tapConfig is a checked command line.
type tapConfig struct {
	bus     bus.Config
	start   bus.TapOptions
	printer tap.Options
}

// runTap is "comet tap ARGS": exit status 0 when done or interrupted
// (SIGINT, SIGTERM), 1 when the bus fails, 2 for a bad command line.
func runTap(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return tapMain(ctx, args, stdout, stderr)
}

// tapMain is runTap with the lifetime given by ctx; its end is a normal
// end, not a failure.
func tapMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseTapArgs(args, stderr, time.Now())
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "comet tap: %v\n", err)
		return 2
	}
	// Connection trouble goes to stderr; stdout carries only events.
	cfg.bus.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.printer.Logger = cfg.bus.Logger
	r, err := bus.Dial(ctx, cfg.bus)
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		fmt.Fprintf(stderr, "comet tap: %v\n", err)
		return 1
	}
	defer r.Close()
	p := tap.NewPrinter(stdout, cfg.printer)
	err = r.Tap(ctx, cfg.start, func(d *bus.Delivery) error {
		_, err := p.Print(d)
		return err
	})
	if err != nil {
		fmt.Fprintf(stderr, "comet tap: %v\n", err)
		return 1
	}
	return 0
}

// filterList collects repeated --filter values.
type filterList []string

func (l *filterList) String() string     { return strings.Join(*l, " ") }
func (l *filterList) Set(v string) error { *l = append(*l, v); return nil }

func parseTapArgs(args []string, stderr io.Writer, now time.Time) (*tapConfig, error) {
	var (
		nats            natsOptions
		since           string
		seq             uint64
		filters         filterList
		filterBudget    int
		follow, payload bool
	)
	fs := flag.NewFlagSet("comet tap", flag.ContinueOnError)
	// Errors are reported in one line by the caller; only -h shows usage.
	fs.SetOutput(io.Discard)
	nats.register(fs, "the bus: NATS server URL[,URL...] (required); a broker's embedded bus once it runs with --nats-listen")
	fs.StringVar(&since, "since", "", "start with the events stored since a DURATION ago (90m, 2h, 7d) or a TIME (2026-11-01T00:00:00Z, 2026-11-01)")
	fs.Uint64Var(&seq, "seq", 0, "start at this stream sequence N (the seq field of a line)")
	fs.Var(&filters, "filter", "print only events this XPath matches (the broadcaster's rules; repeatable: any may match)")
	fs.IntVar(&filterBudget, "filter-budget", filter.DefaultBudget, filterBudgetUsage)
	fs.BoolVar(&follow, "follow", true, "keep printing new events; --follow=false exits after the events stored at start")
	fs.BoolVar(&payload, "payload", false, "add the event XML to each line (\"payload\")")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), tapUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.Usage()
			return nil, err
		}
		return nil, errors.New(cli.ParseError(err, args, "comet tap -h"))
	}
	seqSet := false
	fs.Visit(func(f *flag.Flag) { seqSet = seqSet || f.Name == "seq" })

	cfg := &tapConfig{}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case nats.url == "":
		return nil, errors.New("--nats URL is required (a broker exposes its embedded bus with --nats-listen HOST:PORT)")
	case seqSet && since != "":
		return nil, errors.New("--since and --seq are exclusive")
	case seqSet && seq == 0:
		return nil, errors.New("--seq: stream sequences start at 1")
	case !follow && !seqSet && since == "":
		return nil, errors.New("--follow=false needs --since or --seq: from now on, nothing is stored yet")
	}
	cfg.start = bus.TapOptions{Seq: seq, StopWhenCaughtUp: !follow}
	if since != "" {
		t, err := parseSince(since, now)
		if err != nil {
			return nil, err
		}
		cfg.start.Since = t
	}
	for _, x := range filters {
		f, err := filter.Compile(x)
		if err != nil {
			return nil, fmt.Errorf("--filter: %w", err)
		}
		cfg.printer.Filters = append(cfg.printer.Filters, f)
	}
	if err := checkFilterBudget(filterBudget); err != nil {
		return nil, err
	}
	cfg.printer.FilterBudget = filterBudget
	cfg.printer.Payload = payload

	creds, tlsConfig, err := nats.connection()
	if err != nil {
		return nil, err
	}
	cfg.bus = bus.Config{URL: nats.url, CredsFile: creds, TLS: tlsConfig}
	return cfg, nil
}

// parseSince reads --since: a duration back from now (Go syntax, plus
// whole days as "7d", since the stream keeps a week by default), an RFC
// 3339 time, or a date or time without zone, taken as UTC like VOEvent
// times.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %s: a duration counts back from now and cannot be negative", s)
		}
		return now.Add(-d), nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseUint(days, 10, 16); err == nil {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration (90m, 2h, 7d) or a time (2026-11-01T00:00:00Z, 2026-11-01)", s)
}
