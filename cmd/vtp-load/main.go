// Command vtp-load drives a VTP broker with unique events and reports
// throughput, latency percentiles and delivery completeness. It is a thin
// wrapper around internal/loadgen; see its documentation for the details.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/comet-go/comet/internal/loadgen"
	"github.com/comet-go/comet/vtp"
)

const usage = `usage: vtp-load -file EVENT.xml [flags]

Submits -n unique copies of a VOEvent to a VTP broker's receive port, one TCP
connection per event from -c concurrent workers, while -m subscribers on the
broadcast port ack every event they receive. Each copy is the file with its
root ivorn replaced by PREFIX-SEQ. Prints ack and end-to-end latency
percentiles, throughput, losses, duplicates, naks and errors.

-receive may list several receive ports (the ingresses of a scaled-out
broker), comma-separated: worker i starts on the (i mod count)-th, and moves
to the next after an attempt that got no receipt. With -retry, such an event
is submitted again, with the same bytes, on the next port (pausing 50 ms,
doubling up to 1 s) until it is acked or naked or -retry has passed since
its first attempt. A nak after a failed attempt is reported apart ("naked
after a failed attempt"): it may be a "previously seen" for an event the
failed attempt stored, and does not fail the run.

With -null-broker it is the broker instead: a null broker listening on
-receive and -broadcast that frames, acks and forwards and does nothing else
(no parsing, no storage), until SIGINT or SIGTERM. scripts/bench.sh runs it
beside every scenario as the ceiling of the machine.

Exit status: 0 if every event was accepted and delivered exactly once to
every subscriber; 1 if any was lost, duplicated, naked or errored (or, with
-retry, given up; or the run was interrupted); 2 on a usage or setup error.
The report is printed either way.

flags:
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vtp-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		receive   = fs.String("receive", net.JoinHostPort("127.0.0.1", strconv.Itoa(vtp.DefaultReceivePort)), "broker's event submission (author) `address`es, comma-separated; tls:HOST:PORT:trustRoots=DIR submits over TLS")
		broadcast = fs.String("broadcast", net.JoinHostPort("127.0.0.1", strconv.Itoa(vtp.DefaultBroadcastPort)), "broker's subscription `address`")
		n         = fs.Int("n", 10000, "number of events to submit")
		c         = fs.Int("c", 32, "concurrent submitting workers (one connection each at a time)")
		m         = fs.Int("m", 0, "subscribers to connect to -broadcast (0 = measure submission only)")
		rate      = fs.Float64("rate", 0, "submission rate in events/s (0 = as fast as possible)")
		file      = fs.String("file", "", "VOEvent template `file` (required), e.g. testdata/bench/gbm_flt_pos_v20.xml")
		prefix    = fs.String("prefix", "", "ivorn `prefix` of the run's events (default: the template's ivorn up to '#', then #vtp-load-RUNID)")
		timeout   = fs.Duration("timeout", 20*time.Second, "per attempt limit, connect to receipt; also the subscriber handshake limit")
		retry     = fs.Duration("retry", 0, "retry an event that got no receipt on the next -receive address for up to this `duration` from its first attempt (0 = no retry)")
		settle    = fs.Duration("settle", 5*time.Second, "longest wait for deliveries after the last submission")
		pid       = fs.Int("pid", 0, "broker `pid`: report its CPU per event and peak RSS from /proc")
		maxFrame  = fs.Int("max-frame", vtp.DefaultMaxFrame, "largest frame sent or read, in `bytes`")
		asJSON    = fs.Bool("json", false, "print the report as JSON (durations in nanoseconds)")
		null      = fs.Bool("null-broker", false, "run a null broker on -receive and -broadcast instead of a load")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vtp-load: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return 2
	}
	if *null {
		return serveNull(*receive, *broadcast, *maxFrame, stderr)
	}
	if *file == "" {
		fmt.Fprintln(stderr, "vtp-load: -file is required")
		fs.Usage()
		return 2
	}
	tmpl, err := os.ReadFile(*file)
	if err != nil {
		fmt.Fprintf(stderr, "vtp-load: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadgen.Run(ctx, loadgen.Config{
		ReceiveAddrs:  receiveAddrs(*receive),
		BroadcastAddr: *broadcast,
		Events:        *n,
		Concurrency:   *c,
		Subscribers:   *m,
		Rate:          *rate,
		Template:      tmpl,
		IVORNPrefix:   *prefix,
		Timeout:       *timeout,
		RetryFor:      *retry,
		Settle:        *settle,
		BrokerPID:     *pid,
		MaxFrame:      *maxFrame,
	})
	if rep == nil {
		fmt.Fprintf(stderr, "vtp-load: %v\n", err)
		return 2
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "vtp-load: %v\n", err)
			return 2
		}
	} else {
		fmt.Fprint(stdout, rep)
	}
	if err != nil {
		fmt.Fprintf(stderr, "vtp-load: run interrupted: %v\n", err)
		return 1
	}
	if rep.Failed() {
		return 1
	}
	return 0
}

// serveNull runs a loadgen.NullBroker until SIGINT or SIGTERM.
func serveNull(receive, broadcast string, maxFrame int, stderr io.Writer) int {
	nb := &loadgen.NullBroker{LocalIVO: "ivo://vtp-load/null", MaxFrame: maxFrame}
	var lns []net.Listener
	for _, addr := range []string{receive, broadcast} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintf(stderr, "vtp-load: null broker: %v\n", err)
			for _, l := range lns {
				l.Close()
			}
			return 2
		}
		lns = append(lns, ln)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errs := make(chan error, 2)
	go func() { errs <- nb.ServeReceive(lns[0]) }()
	go func() { errs <- nb.ServeBroadcast(lns[1]) }()
	fmt.Fprintf(stderr, "vtp-load: null broker receiving on %s, broadcasting on %s\n", lns[0].Addr(), lns[1].Addr())
	code := 0
	select {
	case <-ctx.Done():
	case err := <-errs:
		fmt.Fprintf(stderr, "vtp-load: null broker: %v\n", err)
		code = 1
	}
	nb.Close()
	return code
}

// receiveAddrs splits -receive at commas; an empty element is left for
// loadgen to refuse.
func receiveAddrs(s string) []string {
	addrs := strings.Split(s, ",")
	for i, a := range addrs {
		addrs[i] = strings.TrimSpace(a)
	}
	return addrs
}
