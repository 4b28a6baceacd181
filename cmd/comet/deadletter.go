package main

// comet deadletter list|replay: the events stages gave up on, on a bus.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/cli"
)

const deadletterUsage = `usage: comet deadletter list   [--eventdb DIR | --nats URL] [--stage NAME] [--ivorn IVORN]
       comet deadletter replay [--eventdb DIR | --nats URL] [--stage NAME] [--ivorn IVORN]

The events a stage (--cmd, --print-event, --save-event) gave up on after
its retries. list prints them (time, stage, ivorn, reason), oldest first.
replay hands each back to its stage, once: it leaves the dead letters and
the stage handles it again (now, or when it next runs), with its retries;
one that fails again is dead-lettered again. Fix the handler first.

The bus is the embedded one in --eventdb (default: the broker's default)
or an external NATS system with --nats. A running broker holds its
--eventdb: reach its bus with --nats nats://HOST:PORT of its --nats-listen
instead, or stop it first.

Options:
`

// deadletterConfig is a checked command line.
type deadletterConfig struct {
	replay       bool
	bus          bus.Config
	stage, ivorn string
}

// runDeadletter is "comet deadletter list|replay ARGS".
func runDeadletter(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseDeadletterArgs(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "comet deadletter: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg.bus.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := openDeadletterBus(ctx, cfg.bus)
	if err != nil {
		fmt.Fprintf(stderr, "comet deadletter: %v\n", err)
		return 1
	}
	defer b.Close()
	if err := deadletterMain(ctx, b, cfg, stdout); err != nil {
		fmt.Fprintf(stderr, "comet deadletter: %v\n", err)
		return 1
	}
	return 0
}

func parseDeadletterArgs(args []string, stdout io.Writer) (*deadletterConfig, error) {
	if len(args) == 0 {
		return nil, usageError{"list or replay? see comet deadletter -h"}
	}
	cfg := &deadletterConfig{}
	switch args[0] {
	case "list":
	case "replay":
		cfg.replay = true
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, deadletterUsage)
		fs := deadletterFlags(&deadletterConfig{}, &natsOptions{}, new(string))
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return nil, flag.ErrHelp
	default:
		return nil, usageError{fmt.Sprintf("unknown command %q: list or replay; see comet deadletter -h", args[0])}
	}
	var nats natsOptions
	var eventDB string
	fs := deadletterFlags(cfg, &nats, &eventDB)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, deadletterUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, usageError{cli.ParseError(err, args[1:], "comet deadletter -h")}
	}
	eventDBSet := false
	fs.Visit(func(f *flag.Flag) { eventDBSet = eventDBSet || f.Name == "eventdb" })
	switch {
	case fs.NArg() > 0:
		return nil, usageError{fmt.Sprintf("unexpected argument %q; see comet deadletter -h", fs.Arg(0))}
	case nats.url != "" && eventDBSet:
		return nil, usageError{"--eventdb and --nats are exclusive: one bus"}
	case cfg.stage != "" && bus.CheckStageName(cfg.stage) != nil:
		return nil, usageError{fmt.Sprintf("--stage %q: %v", cfg.stage, bus.CheckStageName(cfg.stage))}
	}
	if nats.url == "" {
		if nats.secured() {
			return nil, usageError{"--nats-creds and --nats-tls-* need --nats"}
		}
		cfg.bus = bus.Config{StoreDir: eventDB}
		return cfg, nil
	}
	creds, tlsCfg, err := nats.connection()
	if err != nil {
		return nil, usageError{err.Error()}
	}
	cfg.bus = bus.Config{URL: nats.url, CredsFile: creds, TLS: tlsCfg}
	return cfg, nil
}

func deadletterFlags(cfg *deadletterConfig, nats *natsOptions, eventDB *string) *flag.FlagSet {
	fs := flag.NewFlagSet("comet deadletter", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(eventDB, "eventdb", broker.DefaultEventDB(), "`DIR` of the embedded bus (a broker's --eventdb; not while that broker runs)")
	nats.register(fs, "the external NATS system at `URL[,URL...]`, or a running broker's --nats-listen")
	fs.StringVar(&cfg.stage, "stage", "", "only the dead letters of stage `NAME` (cmd-..., print-event, save-event)")
	fs.StringVar(&cfg.ivorn, "ivorn", "", "only the dead letters of the event `IVORN`")
	return fs
}

// openDeadletterBus opens the bus, made for the event size its streams
// were made for (the broker's --max-event-size), whatever that is.
func openDeadletterBus(ctx context.Context, cfg bus.Config) (*bus.Bus, error) {
	if cfg.URL == "" {
		if _, err := os.Stat(cfg.StoreDir); err != nil {
			return nil, fmt.Errorf("--eventdb: no store: %w", err)
		}
	}
	b, err := bus.Open(ctx, cfg)
	var se *bus.SizeMismatchError
	if errors.As(err, &se) && se.Fits() > 0 {
		cfg.MaxPayload = int(se.Fits())
		b, err = bus.Open(ctx, cfg)
	}
	var locked *bus.StoreLockedError
	if errors.As(err, &locked) {
		holder := "another process"
		if locked.PID > 0 {
			holder = fmt.Sprintf("process %d", locked.PID)
		}
		return nil, fmt.Errorf("--eventdb %s is in use by %s (a running broker): give --nats nats://HOST:PORT of its --nats-listen, or stop it first",
			locked.Dir, holder)
	}
	return b, err
}

func deadletterMain(ctx context.Context, b *bus.Bus, cfg *deadletterConfig, stdout io.Writer) error {
	all, err := b.DeadLetters(ctx, cfg.stage)
	if err != nil {
		return err
	}
	var dls []bus.DeadLetter
	for _, d := range all {
		if cfg.ivorn == "" || d.Event().IVORN == cfg.ivorn {
			dls = append(dls, d)
		}
	}
	if !cfg.replay {
		return listDeadLetters(stdout, dls, len(all) == bus.MaxDeadLetterRead)
	}
	if len(dls) == 0 {
		fmt.Fprintln(stdout, "no dead letter to replay")
		return nil
	}
	n, err := b.Replay(ctx, dls)
	byStage := map[string]int{}
	for _, d := range dls[:min(n, len(dls))] {
		byStage[d.Stage]++
	}
	var parts []string
	for stage, k := range byStage {
		parts = append(parts, fmt.Sprintf("%s: %d", stage, k))
	}
	fmt.Fprintf(stdout, "replayed %d dead letters (%s); each stage handles them when it runs\n", n, strings.Join(parts, ", "))
	return err
}

func listDeadLetters(w io.Writer, dls []bus.DeadLetter, capped bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSTAGE\tIVORN\tREASON")
	for _, d := range dls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Time.UTC().Format("2006-01-02T15:04:05Z"), d.Stage, d.Event().IVORN,
			strings.Join(strings.Fields(d.Reason), " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	more := ""
	if capped {
		more = fmt.Sprintf(" (the first %d read)", bus.MaxDeadLetterRead)
	}
	_, err := fmt.Fprintf(w, "%d dead letters%s\n", len(dls), more)
	return err
}
