// Command comet is the VOEvent broker: receiver, broadcaster and
// subscriber roles in one process over an embedded NATS JetStream bus, or
// against an external NATS cluster with --nats.
//
//	comet --receive --broadcast --local-ivo ivo://example.org/broker
//	comet tap --nats nats://127.0.0.1:4222 --since 1h    (events on a bus as JSON lines)
//
// Options follow Comet latest and accept the 2012 forms as aliases
// (README.md, Options). Run "comet -h" for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/comet-go/comet/accept"
	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/egress"
	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/filter"
	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/cli"
	"github.com/comet-go/comet/signature"
	"github.com/comet-go/comet/stages"
	"github.com/comet-go/comet/voevent"
	"github.com/comet-go/comet/vtp"
	"github.com/comet-go/comet/whitelist"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// DefaultShutdownTimeout bounds how long SIGTERM waits for in-flight
// submissions before the process exits anyway.
const DefaultShutdownTimeout = 30 * time.Second

// ExitStoreFailed is the exit status when the embedded event store
// stopped taking writes and could not be recovered within the process
// (bus.ErrStoreUnrecoverable): a restart by the service manager, once the
// disk takes writes, starts afresh. 74 is sysexits' EX_IOERR. Other
// statuses: 0 a clean stop, 1 a fatal service error or an unclean stop,
// 2 a bad command line or a failed start.
const ExitStoreFailed = 74

// Connection limits per listener (--max-connections,
// --max-connections-per-peer): far above what real authors and subscribers
// use, low enough that one source cannot take every file descriptor.
const (
	DefaultMaxConns        = 8192
	DefaultMaxConnsPerPeer = 256
)

// subcommands are the commands beside the broker: comet NAME ARGS.
var subcommands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"tap":         runTap,
	"status":      runStatus,
	"healthcheck": runHealthcheck,
	"deadletter":  runDeadletter,
}

func main() {
	if len(os.Args) > 1 {
		if sub, ok := subcommands[os.Args[1]]; ok {
			os.Exit(sub(os.Args[2:], os.Stdout, os.Stderr))
		}
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is a bad command line: one clear line and exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseArgs(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "comet: %v\n", err)
		return 2
	}
	if opts.showVersion {
		fmt.Fprintln(stdout, "comet", version)
		return 0
	}
	// INFO by default; each -v one step towards DEBUG, each -q towards ERROR.
	level := slog.LevelInfo - slog.Level(4*(opts.verbose-opts.quiet))
	logger := newLogger(stderr, opts.logFormat, level)

	cfg, err := opts.config(logger)
	if err == nil && cfg.Bus.URL == "" {
		if derr := usableDir(cfg.Bus.StoreDir); derr != nil {
			err = fmt.Errorf("--eventdb %s: %w", cfg.Bus.StoreDir, derr)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "comet: %v\n", err)
		return 2
	}
	for _, w := range opts.warnings {
		logger.Warn(w)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if opts.debugAddr != "" {
		stopDebug, err := serveDebug(opts.debugAddr, logger)
		if err != nil {
			fmt.Fprintf(stderr, "comet: %v\n", err)
			return 2
		}
		defer stopDebug()
	}
	// Catch SIGHUP before the listeners open: a reload sent as soon as the
	// port answers must wait for start-up, not kill the process (SIGHUP's
	// default action).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if cfg.Bus.URL == "" && cfg.Bus.StoreDir == broker.DefaultEventDB() {
		logger.Warn("the bus store is temporary: events and the previously-seen database are kept under the system temporary directory, "+
			"which the system may clear and every user of this machine shares; give --eventdb DIR for a durable store", "eventdb", cfg.Bus.StoreDir)
	}
	b, err := broker.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "comet: %v\n", startError(err, opts))
		return 2
	}
	status := 0
wait:
	for {
		select {
		case <-hup:
			// Reload the whitelists: the command-line networks plus the
			// files as they are now. A bad file keeps the current lists.
			recv, cast, err := opts.whitelists()
			if err == nil {
				err = b.Reload(recv, cast)
			}
			if err != nil {
				logger.Error("SIGHUP: whitelists not reloaded", "err", err)
			}
			// TLS certificates and keys: a bad file keeps the ones in use
			// for its endpoint, and says which.
			if err := b.ReloadTLS(); err != nil {
				logger.Error("SIGHUP: TLS files not reloaded; the previous ones stay in use for these endpoints", "err", err)
			}
			if cfg.AllowCerts != nil {
				fps, err := opts.allowedCerts()
				if err == nil {
					err = cfg.AllowCerts.Set(fps)
				}
				if err != nil {
					logger.Error("SIGHUP: allowed client certificates not reloaded; the previous list stays in use", "err", err)
				} else {
					logger.Info("SIGHUP: allowed client certificates reloaded", "certificates", cfg.AllowCerts.Len())
				}
			}
			if opts.trust != nil {
				// A bad key file keeps the keys in use.
				if err := opts.trust.Reload(); err != nil {
					logger.Error("SIGHUP: OpenPGP keys not reloaded; the previous keys stay in use", "err", err)
				} else {
					logger.Info("SIGHUP: OpenPGP keys reloaded", "trusted", opts.trust.Current().Trusted.Len())
				}
			}
		case <-ctx.Done():
			logger.Info("signal received; shutting down", "timeout", opts.shutdownTimeout)
			break wait
		case err := <-b.Err():
			logger.Error("fatal service error; shutting down", "err", err)
			status = 1
			if errors.Is(err, bus.ErrStoreUnrecoverable) {
				status = ExitStoreFailed
			}
			break wait
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), opts.shutdownTimeout)
	defer cancel()
	if err := b.Shutdown(sctx); err != nil {
		logger.Error("unclean shutdown", "err", err)
		status = max(status, 1)
	}
	return status
}

type options struct {
	receive, broadcast        multiOpt
	subscribe, filters        listValues
	filterBudget              int
	actions, commands         listValues
	printEvent, saveEvent     bool
	saveDir                   string
	cmdTimeout                time.Duration
	cmdPool, stageRetries     int
	cmdAllowMissing           bool
	receivePort, castPort     int
	localIVO                  string
	eventDB                   string
	receiveWL, broadcastWL    listOpt
	testInterval              secondsOpt
	verbose, quiet            int
	nats                      natsOptions
	natsListen                string
	replicas                  int
	senderAuth, subAuth       bool
	trustedKeys, publicKeys   string
	keyID, passphraseFile     string
	secretKeys, sign          string
	authTimeout               time.Duration
	trust                     *signature.Trust // loaded by config; reloaded on SIGHUP
	node                      string
	maxEventSize              int
	receiveTimeout            time.Duration
	lingerTimeout             time.Duration
	iamaliveInterval          time.Duration
	grace                     time.Duration
	queueLen, maxUnacked      int
	maxInFlight               int
	queueWait, ackStall       time.Duration
	writeTimeout              time.Duration
	shutdownTimeout           time.Duration
	syncAlways, showVersion   bool
	maxStore                  sizeOpt
	debugAddr                 string
	httpAddr                  string
	logFormat                 string
	maxConns, maxPerPeer      int
	receiveWLFile, castWLFile string
	kafka                     kafkaOptions
	allowCerts                listValues
	allowCertFile             string

	// warnings are options that have no effect, found by config; run logs
	// them.
	warnings []string
}

// Options that take an optional value (argparse nargs='?') and options
// that take zero or more values (nargs='*'); Go's flag package knows
// neither, so arguments are regrouped before parsing.
var (
	optionalValue = map[string]bool{"receive": true, "r": true, "broadcast": true, "b": true}
	zeroOrMore    = map[string]bool{
		"receive-whitelist": true, "whitelist": true, "author-whitelist": true,
		"broadcast-whitelist": true, "subscriber-whitelist": true,
	}
)

// usage is how "comet -h" lists the options: by role, each with its
// aliases (Comet 2012's, or a short form) beside it. Every option is in
// exactly one group (TestEveryOptionIsListed).
var usage = cli.Layout{Head: usageHead, Optional: optionalValue, Variadic: zeroOrMore, Groups: []cli.Group{
	{Title: "General", Names: [][]string{{"local-ivo"}, {"node"}, {"verbose", "v"}, {"quiet", "q"}, {"log-format"},
		{"shutdown-timeout"}, {"http-addr"}, {"debug-addr"}, {"version"}}},
	{Title: "Receiving events from authors", Names: [][]string{{"receive", "r"}, {"receive-port"},
		{"receive-whitelist", "whitelist", "author-whitelist"}, {"whitelist-file"}, {"receive-timeout"}}},
	{Title: "Broadcasting events to subscribers", Names: [][]string{{"broadcast", "b"}, {"broadcast-port"},
		{"broadcast-whitelist", "subscriber-whitelist"}, {"broadcast-whitelist-file"}, {"iamalive-interval"},
		{"broadcast-test-interval"}, {"broadcast-grace"}}},
	{Title: "Subscribing to other brokers", Names: [][]string{{"subscribe", "remote"}, {"filter"}}},
	{Title: "Handlers, run for every accepted event", Names: [][]string{{"print-event"}, {"save-event"}, {"save-event-directory"},
		{"action"}, {"cmd"}, {"cmd-timeout"}, {"cmd-pool"}, {"cmd-allow-missing"}, {"stage-retries"}}},
	{Title: "Reading events from Kafka (GCN, Hopskotch)", Names: [][]string{{"kafka"}, {"kafka-topic"}, {"gcn-kafka"}, {"gcn-domain"},
		{"kafka-group"}, {"kafka-start"}, {"kafka-sasl"}, {"kafka-user"}, {"kafka-password-file"}, {"kafka-client-id"},
		{"kafka-client-secret-file"}, {"kafka-token-url"}, {"kafka-token-renew-before"}, {"kafka-tls"}, {"kafka-tls-ca"},
		{"kafka-accept-test"}, {"kafka-heartbeat-topic"}, {"kafka-heartbeat-timeout"}, {"kafka-session-timeout"}}},
	{Title: "Publishing events to Kafka (a handler)", Names: [][]string{{"kafka-out"}, {"kafka-out-topic"}, {"kafka-out-sasl"},
		{"kafka-out-user"}, {"kafka-out-password-file"}, {"kafka-out-client-id"}, {"kafka-out-client-secret-file"},
		{"kafka-out-token-url"}, {"kafka-out-token-renew-before"}, {"kafka-out-tls"}, {"kafka-out-tls-ca"},
		{"kafka-out-timeout"}, {"kafka-out-concurrency"}}},
	{Title: "TLS: ssl: listeners and tls: upstreams (docs/tls.md); certificates re-read on SIGHUP", Names: [][]string{{"allow-cert"}, {"allow-cert-file"}}},
	{Title: "OpenPGP", Names: [][]string{{"sender-auth"}, {"subscriber-auth"}, {"trusted-keys"}, {"public-keys"}, {"auth-timeout"},
		{"key-id"}, {"passphrase-file"}, {"secret-keys"}, {"sign"}}},
	{Title: "Bus: where events are stored and shared", Names: [][]string{{"eventdb"}, {"nats"}, {"nats-creds"}, {"nats-tls-ca"},
		{"nats-tls-cert"}, {"nats-tls-key"}, {"nats-listen"}, {"replicas"}, {"sync-always"}, {"max-store"}}},
	{Title: "Limits", Names: [][]string{{"max-event-size"}, {"max-connections"}, {"max-connections-per-peer"},
		{"filter-budget"}, {"subscriber-queue"}, {"queue-wait"}, {"max-in-flight"}, {"ack-stall-timeout"}, {"max-unacked"},
		{"write-timeout"}, {"linger-timeout"}}},
}}

const usageHead = `usage: comet [options]
       comet tap --nats URL [options]     (the bus as JSON lines; comet tap -h)
       comet status [--http-addr ADDR]    (a running broker's status; comet status -h)
       comet healthcheck [--http-addr ADDR] (exit 0 when ready; comet healthcheck -h)
       comet deadletter list|replay       (events handlers gave up on; comet deadletter -h)

A VOEvent broker. Give at least one of --receive, --broadcast, --subscribe,
--kafka and a handler. Names after a comma are aliases: Comet 2012's, or a short
form.
`

// parseArgs reads the command line. -h and --help give flag.ErrHelp,
// after writing the usage to stdout; any other mistake is one line
// ending in "see comet -h".
func parseArgs(args []string, stdout io.Writer) (*options, error) {
	o := &options{testInterval: secondsOpt(egress.DefaultTestInterval), maxStore: bus.DefaultMaxStore}
	fs := o.flags()
	err := fs.Parse(regroup(args))
	if errors.Is(err, flag.ErrHelp) {
		usage.Write(stdout, fs)
		return nil, err
	}
	if err != nil {
		return nil, usageError{cli.ParseError(err, args, "comet -h")}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected argument %q; see comet -h", fs.Arg(0))}
	}
	if o.logFormat != logText && o.logFormat != logJSON {
		return nil, usageError{fmt.Sprintf("--log-format %q: text or json", o.logFormat)}
	}
	return o, nil
}

// flags defines the options, setting o.
func (o *options) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("comet", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, in one line
	fs.Usage = func() {}
	for _, n := range []string{"receive", "r"} {
		fs.Var(&o.receive, n, "accept event submissions from authors on `ENDPOINT` (HOST:PORT, tcp:PORT, tcp:PORT:interface=ADDR, tcp6:PORT, unix:PATH, "+
			"or TLS: ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem[:clientCA=CA.pem]; default tcp:"+strconv.Itoa(vtp.DefaultReceivePort)+"); repeatable")
	}
	for _, n := range []string{"broadcast", "b"} {
		fs.Var(&o.broadcast, n, "serve subscribers on `ENDPOINT` (as --receive; default tcp:"+strconv.Itoa(vtp.DefaultBroadcastPort)+"); repeatable")
	}
	for _, n := range []string{"subscribe", "remote"} {
		fs.Var(&o.subscribe, n, "subscribe to the broker at `ENDPOINT` (host, host:port, tcp:host:port, unix:PATH, "+
			"or TLS: tls:HOST:PORT[:trustRoots=DIR][:certificate=CERT.pem:privateKey=KEY.pem]; default port "+strconv.Itoa(vtp.DefaultBroadcastPort)+"); repeatable")
	}
	fs.Var(&o.allowCerts, "allow-cert", "with clientCA= on an ssl: listener, accept only the client certificate with this SHA-256 `FINGERPRINT` (openssl x509 -noout -fingerprint -sha256); repeatable")
	fs.StringVar(&o.allowCertFile, "allow-cert-file", "", "`FILE` of client-certificate fingerprints (one a line, # comments) accepted with clientCA=, added to --allow-cert; re-read on SIGHUP")
	fs.Var(&o.filters, "filter", "`XPATH` filter sent to every upstream broker, and applied to the events it sends (checked at start-up); repeatable")
	fs.IntVar(&o.filterBudget, "filter-budget", filter.DefaultBudget, filterBudgetUsage)
	fs.Var(&o.actions, "action", "enable a built-in handler by `NAME`: print-event, save-event (Comet 2012); repeatable")
	fs.BoolVar(&o.printEvent, "print-event", false, "print every accepted event on standard output")
	fs.BoolVar(&o.saveEvent, "save-event", false, "save every accepted event to a file in --save-event-directory")
	fs.StringVar(&o.saveDir, "save-event-directory", "", "`DIR` for --save-event, created if missing (default: the working directory)")
	fs.Var(&o.commands, "cmd", "run the executable `PATH` for every accepted event, the event on its standard input; repeatable")
	fs.DurationVar(&o.cmdTimeout, "cmd-timeout", stages.DefaultCmdTimeout, "longest one run of a --cmd may take; then it is killed and counts as failed")
	fs.IntVar(&o.cmdPool, "cmd-pool", stages.DefaultCmdPool, "runs of one --cmd under way at once")
	fs.BoolVar(&o.cmdAllowMissing, "cmd-allow-missing", false, "start although a --cmd does not exist or is not executable yet (its events fail, are retried and dead-lettered until it is)")
	fs.IntVar(&o.stageRetries, "stage-retries", stages.DefaultMaxRetries, "retries of a failing handler, with growing pauses, before the event is dead-lettered (0: none)")
	fs.IntVar(&o.receivePort, "receive-port", vtp.DefaultReceivePort, "`PORT` of the default receive endpoint (Comet 2012)")
	fs.IntVar(&o.castPort, "broadcast-port", vtp.DefaultBroadcastPort, "`PORT` of the default broadcast endpoint (Comet 2012)")
	fs.StringVar(&o.localIVO, "local-ivo", "", "this broker's IVOA identifier, `IVORN` (required with --receive or --broadcast)")
	fs.StringVar(&o.eventDB, "eventdb", broker.DefaultEventDB(), "`DIR` of the embedded bus: stored events and the previously-seen database")
	for _, n := range []string{"receive-whitelist", "whitelist", "author-whitelist"} {
		fs.Var(&o.receiveWL, n, "`NETWORK`s allowed to submit (CIDR or address/netmask); zero or more values; default everyone")
	}
	for _, n := range []string{"broadcast-whitelist", "subscriber-whitelist"} {
		fs.Var(&o.broadcastWL, n, "`NETWORK`s allowed to subscribe; zero or more values; default everyone")
	}
	fs.StringVar(&o.receiveWLFile, "whitelist-file", "", "`FILE` of networks allowed to submit (one or more per line, # comments), added to --receive-whitelist; re-read on SIGHUP")
	fs.StringVar(&o.castWLFile, "broadcast-whitelist-file", "", "`FILE` of networks allowed to subscribe, added to --broadcast-whitelist; re-read on SIGHUP")
	fs.IntVar(&o.maxConns, "max-connections", DefaultMaxConns, "open connections per listener; more are closed at accept (0: no limit)")
	fs.IntVar(&o.maxPerPeer, "max-connections-per-peer", DefaultMaxConnsPerPeer, "open connections per listener from one source address (0: no limit)")
	fs.BoolVar(&o.senderAuth, "sender-auth", false, "accept only events signed with OpenPGP by their author (AuthorIVORN = the signer's user ID) or by a key the author certified; keys from --trusted-keys")
	fs.BoolVar(&o.subAuth, "subscriber-auth", false, "serve only subscribers whose authenticate reply is signed by a key from --trusted-keys")
	fs.StringVar(&o.trustedKeys, "trusted-keys", "", "OpenPGP public keys trusted fully: a `FILE` or a directory of files, armoured or binary (gpg --export; not pubring.kbx); re-read on SIGHUP")
	fs.StringVar(&o.publicKeys, "public-keys", "", "more OpenPGP public keys (a `FILE` or directory), not trusted themselves: notaries whose user ID a trusted key certified; re-read on SIGHUP")
	fs.StringVar(&o.keyID, "key-id", "", "sign this broker's authenticate replies to upstream brokers with this OpenPGP `KEY` (fingerprint, long or short ID) from --secret-keys")
	fs.StringVar(&o.passphraseFile, "passphrase-file", "", "`FILE` whose first line is the passphrase of --key-id")
	fs.StringVar(&o.secretKeys, "secret-keys", "", "exported OpenPGP secret key `FILE` holding --key-id (gpg --export-secret-keys)")
	fs.StringVar(&o.sign, "sign", "", "`KEYID:PASSPHRASE_FILE`, the same as --key-id KEYID --passphrase-file PASSPHRASE_FILE (Comet's late 2012 form)")
	fs.DurationVar(&o.authTimeout, "auth-timeout", egress.DefaultAuthTimeout, "with --subscriber-auth, how long a subscriber has to send a signed authenticate reply")
	fs.Var(&o.testInterval, "broadcast-test-interval", "time between test events sent to subscribers: a `DURATION` (1h) or Comet's seconds (3600); 0 disables")
	fs.Var((*countOpt)(&o.verbose), "verbose", "more logging (repeatable)")
	fs.Var((*countOpt)(&o.verbose), "v", "more logging (repeatable)")
	fs.Var((*countOpt)(&o.quiet), "quiet", "less logging (repeatable)")
	fs.Var((*countOpt)(&o.quiet), "q", "less logging (repeatable)")
	o.nats.register(fs, "use the external NATS JetStream server(s) at `URL[,URL...]` instead of the embedded bus")
	fs.IntVar(&o.replicas, "replicas", 1, "replicas of the event stream when this process creates it (3 on a 3-node cluster); an existing one must match")
	fs.StringVar(&o.natsListen, "nats-listen", "", "expose the embedded bus to NATS clients on `HOST:PORT` (default: not exposed)")
	fs.StringVar(&o.node, "node", "", "`NAME` of this node, recorded on events and naming this broadcaster's bus consumer; default: the host name")
	fs.IntVar(&o.maxEventSize, "max-event-size", vtp.DefaultMaxFrame, "largest VTP frame accepted, in `BYTES` (Comet: 99999; every Comet peer drops larger frames)")
	fs.DurationVar(&o.receiveTimeout, "receive-timeout", ingress.DefaultReceiveTimeout, "time an author has from connect to deliver its event")
	fs.DurationVar(&o.lingerTimeout, "linger-timeout", ingress.DefaultLingerTimeout, "after a receipt, how long the receiver waits for the author to close before closing itself")
	fs.DurationVar(&o.iamaliveInterval, "iamalive-interval", egress.DefaultIAmAliveInterval, "keep-alive period towards subscribers")
	fs.DurationVar(&o.grace, "broadcast-grace", egress.DefaultGrace, "after a restart, how long subscribers get to reconnect before stored events are replayed")
	fs.IntVar(&o.queueLen, "subscriber-queue", egress.DefaultQueueLen, "frames queued per subscriber; one whose queue stays full for --queue-wait is dropped as too slow")
	fs.DurationVar(&o.queueWait, "queue-wait", egress.DefaultQueueWait, "how long an event waits for room in full subscriber queues before those subscribers are dropped")
	fs.IntVar(&o.maxInFlight, "max-in-flight", egress.DefaultMaxInFlight, "events sent to one subscriber and not yet acknowledged; at it, its writer waits for acks")
	fs.DurationVar(&o.ackStall, "ack-stall-timeout", egress.DefaultAckStallTimeout, "how long a subscriber at --max-in-flight may go without acknowledging an event before it is dropped")
	fs.IntVar(&o.maxUnacked, "max-unacked", egress.DefaultMaxUnacked, "unacknowledged events at a keep-alive tick that get a subscriber dropped")
	fs.DurationVar(&o.writeTimeout, "write-timeout", egress.DefaultWriteTimeout, "longest a write to one subscriber may block before it is dropped")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "on SIGTERM, longest wait for in-flight submissions")
	fs.BoolVar(&o.syncAlways, "sync-always", false, "fsync every bus write: survives power loss, costs throughput")
	fs.Var(&o.maxStore, "max-store", "most the bus stores, as a `SIZE` (64MB, 2GiB; K, M, G, T are powers of 1024): 2/3 for events and their previously-seen records, 1/6 each for dead letters and replays; the embedded store's file system must hold it and 1/8 more (docs/bus.md §4.2)")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	o.kafka.register(fs)
	fs.StringVar(&o.debugAddr, "debug-addr", "", "serve Go's pprof profiles on `HOST:PORT` (for profiling; keep it on loopback)")
	fs.StringVar(&o.httpAddr, "http-addr", "", "serve Prometheus /metrics, /healthz, /readyz and the status page (/, /status.json) on `HOST:PORT` (default: off; see SECURITY.md)")
	fs.StringVar(&o.logFormat, "log-format", logText, "log lines as `FORMAT`: text (key=value) or json (one object per line), with the same fields")
	return fs
}

// regroup rewrites "--receive tcp:8098" as "--receive=tcp:8098" and
// "--whitelist A B" as "--whitelist=A B", and splits "-vv" into "-v -v".
func regroup(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(a, "-")
		if a == "--" {
			return append(out, args[i:]...)
		}
		if strings.HasPrefix(a, "-") && !strings.Contains(name, "=") {
			switch {
			case optionalValue[name]:
				if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
					a += "=" + args[i+1]
					i++
				}
			case zeroOrMore[name]:
				var vals []string
				for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
					vals = append(vals, args[i+1])
					i++
				}
				a += "=" + strings.Join(vals, " ")
			case len(name) > 1 && strings.Trim(name, "v") == "" && !strings.HasPrefix(a, "--"):
				for range name {
					out = append(out, "-v")
				}
				continue
			case len(name) > 1 && strings.Trim(name, "q") == "" && !strings.HasPrefix(a, "--"):
				for range name {
					out = append(out, "-q")
				}
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

func (o *options) config(logger *slog.Logger) (broker.Config, error) {
	cfg := broker.Config{
		LocalIVO:     o.localIVO,
		Node:         o.node,
		Version:      version,
		MaxEventSize: o.maxEventSize,
		Bus: bus.Config{
			StoreDir:   o.eventDB,
			URL:        o.nats.url,
			Listen:     o.natsListen,
			SyncAlways: o.syncAlways,
			MaxStore:   int64(o.maxStore),
		},
		Receiver: ingress.ReceiverConfig{
			Timeout:       o.receiveTimeout,
			LingerTimeout: o.lingerTimeout,
		},
		Broadcaster: egress.Config{
			IAmAliveInterval: o.iamaliveInterval,
			TestInterval:     time.Duration(o.testInterval),
			Grace:            o.grace,
			QueueLen:         o.queueLen,
			QueueWait:        o.queueWait,
			MaxInFlight:      o.maxInFlight,
			AckStallTimeout:  o.ackStall,
			MaxUnacked:       o.maxUnacked,
			WriteTimeout:     o.writeTimeout,
		},
		HTTPAddr: o.httpAddr,
		Logger:   logger,
	}
	actions := append([]string(nil), o.actions...)
	if o.printEvent {
		actions = append(actions, stages.ActionPrintEvent)
	}
	if o.saveEvent {
		actions = append(actions, stages.ActionSaveEvent)
	}
	for _, a := range actions {
		if !slices.Contains(stages.KnownActions(), a) {
			return cfg, usageError{fmt.Sprintf("unknown action %q; known actions: %s", a, strings.Join(stages.KnownActions(), ", "))}
		}
	}
	if err := o.kafka.config(&cfg, o.node, o.localIVO); err != nil {
		return cfg, err
	}
	handlers := len(actions) + len(o.commands)
	if cfg.KafkaOut != nil {
		handlers++
	}
	roles := o.receive.set || o.broadcast.set || len(o.subscribe) > 0 || cfg.KafkaIn != nil
	if !roles && handlers == 0 {
		return cfg, usageError{"no services requested; stopping. Give --receive, --broadcast, --subscribe, --kafka and/or handlers (see -h)"}
	}
	if !roles && o.nats.url == "" {
		return cfg, usageError{"handlers alone make a stage worker, which needs the bus of other processes: give --nats URL"}
	}
	if err := o.checkLimits(); err != nil {
		return cfg, err
	}
	if o.httpAddr != "" {
		if _, port, err := net.SplitHostPort(o.httpAddr); err != nil || port == "" {
			return cfg, usageError{fmt.Sprintf("--http-addr %q: want HOST:PORT (127.0.0.1:8090; :8090 for every interface)", o.httpAddr)}
		}
	}
	retries := o.stageRetries
	if retries == 0 {
		retries = -1 // stages.Config: negative means no retry
	}
	cfg.Stages = stages.Config{
		Actions:              actions,
		SaveDir:              o.saveDir,
		Commands:             o.commands,
		AllowMissingCommands: o.cmdAllowMissing,
		CmdTimeout:           o.cmdTimeout,
		CmdPool:              o.cmdPool,
		MaxRetries:           retries,
		Logger:               logger,
	}
	if err := o.checkHandlers(cfg.Stages); err != nil {
		return cfg, err
	}
	if o.localIVO == "" && (o.receive.set || o.broadcast.set) {
		return cfg, usageError{"IVOA identifier required (--local-ivo)"}
	}
	if o.localIVO != "" && !voevent.ValidIVOID(o.localIVO) {
		return cfg, usageError{fmt.Sprintf("invalid IVOA identifier: %s; required format: ivo://authorityID/resourceKey#local_ID", o.localIVO)}
	}
	if o.maxEventSize < 1 || o.maxEventSize > 64<<20 {
		return cfg, usageError{"--max-event-size must be between 1 and 67108864"}
	}
	if min := bus.MinMaxStore(o.maxEventSize); int64(o.maxStore) < min {
		return cfg, usageError{fmt.Sprintf("--max-store %s is too small for --max-event-size %d: give at least %s",
			bus.FormatSize(int64(o.maxStore)), o.maxEventSize, bus.FormatSize(min))}
	}
	if o.nats.url == "" && o.eventDB == "" {
		return cfg, usageError{"--eventdb must name a directory"}
	}
	if o.nats.url == "" {
		switch {
		case o.nats.secured():
			return cfg, usageError{"--nats-creds and --nats-tls-* need --nats (the embedded bus has no credentials)"}
		case o.replicas != 1:
			return cfg, usageError{"--replicas needs --nats: the embedded bus is a single node"}
		}
	} else if o.natsListen != "" {
		return cfg, usageError{"--nats-listen exposes the embedded bus; with --nats, clients connect to that system directly"}
	}
	if o.replicas < 1 || o.replicas > 5 {
		return cfg, usageError{"--replicas must be between 1 and 5 (JetStream's limit)"}
	}
	var err error
	if cfg.Bus.CredsFile, cfg.Bus.TLS, err = o.nats.connection(); err != nil {
		return cfg, usageError{err.Error()}
	}
	cfg.Bus.Replicas = o.replicas
	if cfg.Receive, err = endpoints(o.receive, o.receivePort); err != nil {
		return cfg, err
	}
	if cfg.Broadcast, err = endpoints(o.broadcast, o.castPort); err != nil {
		return cfg, err
	}
	for _, t := range o.subscribe {
		ep, err := endpoint.ParseClient(t, vtp.DefaultBroadcastPort)
		if err != nil {
			return cfg, usageError{err.Error()}
		}
		cfg.Subscribe = append(cfg.Subscribe, ep)
	}
	for _, f := range o.filters {
		cf, err := filter.Compile(f)
		if err != nil {
			return cfg, usageError{fmt.Sprintf("invalid XPath expression: %v", err)}
		}
		for _, fn := range cf.UnknownFunctions() {
			o.warnings = append(o.warnings, fmt.Sprintf("--filter %s calls %s(), which XPath 1.0 does not define: it matches no event", f, fn))
		}
	}
	if len(o.filters) > 0 && len(o.subscribe) == 0 {
		o.warnings = append(o.warnings, "--filter has no effect without --subscribe: filters are sent to upstream brokers")
	}
	cfg.Subscriber.Filters = o.filters
	if err := checkFilterBudget(o.filterBudget); err != nil {
		return cfg, usageError{err.Error()}
	}
	cfg.FilterBudget = o.filterBudget
	if o.maxConns < 0 || o.maxPerPeer < 0 {
		return cfg, usageError{"--max-connections and --max-connections-per-peer must be >= 0"}
	}
	limits := accept.Limits{MaxConns: o.maxConns, MaxConnsPerPeer: o.maxPerPeer}
	cfg.Receiver.Limits, cfg.Broadcaster.Limits = limits, limits
	recv, cast, err := o.whitelists()
	if err == nil {
		cfg.Receiver.Whitelist, err = whitelistOf(recv)
	}
	if err == nil {
		cfg.Broadcaster.Whitelist, err = whitelistOf(cast)
	}
	if err != nil {
		return cfg, usageError{err.Error()}
	}
	if o.trust, err = o.openpgp(&cfg); err != nil {
		return cfg, err
	}
	if cfg.AllowCerts, err = o.allowList(cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// allowList is --allow-cert with --allow-cert-file, or nil when neither
// is given (every certificate clientCA= verifies).
func (o *options) allowList(cfg broker.Config) (*whitelist.Certs, error) {
	if len(o.allowCerts) == 0 && o.allowCertFile == "" {
		return nil, nil
	}
	mutual := false
	for _, ep := range append(append([]endpoint.Endpoint{}, cfg.Receive...), cfg.Broadcast...) {
		mutual = mutual || ep.TLS != nil && ep.TLS.ClientCA != ""
	}
	if !mutual {
		return nil, usageError{"--allow-cert and --allow-cert-file narrow what a listener's clientCA= accepts: give --receive or --broadcast ssl:PORT:...:clientCA=CA.pem"}
	}
	fps, err := o.allowedCerts()
	if err != nil {
		return nil, usageError{err.Error()}
	}
	certs, err := whitelist.NewCerts(fps)
	if err != nil {
		return nil, usageError{"--allow-cert: " + err.Error()}
	}
	return certs, nil
}

// allowedCerts combines the --allow-cert fingerprints with the file's,
// read now.
func (o *options) allowedCerts() ([]string, error) {
	fps := append([]string{}, o.allowCerts...)
	if o.allowCertFile != "" {
		more, err := whitelist.ReadCertsFile(o.allowCertFile)
		if err != nil {
			return nil, fmt.Errorf("--allow-cert-file: %w", err)
		}
		fps = append(fps, more...)
	}
	return fps, nil
}

// checkLimits refuses limits that cannot work, naming the option.
func (o *options) checkLimits() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"cmd-timeout", o.cmdTimeout}, {"receive-timeout", o.receiveTimeout}, {"linger-timeout", o.lingerTimeout},
		{"iamalive-interval", o.iamaliveInterval}, {"queue-wait", o.queueWait}, {"ack-stall-timeout", o.ackStall},
		{"write-timeout", o.writeTimeout}, {"shutdown-timeout", o.shutdownTimeout},
	} {
		if d.v <= 0 {
			return usageError{fmt.Sprintf("--%s %v: must be more than 0", d.name, d.v)}
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"cmd-pool", o.cmdPool}, {"subscriber-queue", o.queueLen}, {"max-in-flight", o.maxInFlight}, {"max-unacked", o.maxUnacked}} {
		if n.v < 1 {
			return usageError{fmt.Sprintf("--%s %d: must be at least 1", n.name, n.v)}
		}
	}
	switch {
	case o.stageRetries < 0:
		return usageError{fmt.Sprintf("--stage-retries %d: must be 0 or more", o.stageRetries)}
	case o.grace < 0:
		return usageError{fmt.Sprintf("--broadcast-grace %v: must be 0 or more", o.grace)}
	}
	return nil
}

// checkHandlers finds at start-up what would make a handler fail on every
// event: a --cmd that cannot be run (unless --cmd-allow-missing), a
// save-event directory that cannot be made or written. Options that have
// no effect are warnings.
func (o *options) checkHandlers(sc stages.Config) error {
	saving := slices.Contains(sc.Actions, stages.ActionSaveEvent)
	if o.saveDir != "" && !saving {
		o.warnings = append(o.warnings, "--save-event-directory has no effect without --save-event")
	}
	if saving {
		dir, flagName := o.saveDir, "--save-event-directory "+o.saveDir
		if dir == "" {
			dir, flagName = ".", "--save-event (into the working directory; give --save-event-directory)"
		}
		if err := usableDir(dir); err != nil {
			return usageError{fmt.Sprintf("%s: %v", flagName, err)}
		}
	}
	sc.Logger = slog.New(slog.DiscardHandler) // the broker logs them when it starts them
	if _, err := stages.Stages(sc); err != nil {
		var ne *stages.NotExecutableError
		if errors.As(err, &ne) {
			return usageError{fmt.Sprintf("--cmd %s: not executable: %v; give --cmd-allow-missing if it will appear later", ne.Path, ne.Err)}
		}
		return usageError{err.Error()}
	}
	return nil
}

// whitelists combines the command-line networks with the whitelist files,
// read now; nil means the default (everyone).
func (o *options) whitelists() (receive, broadcast []string, err error) {
	combine := func(l listOpt, file string) ([]string, error) {
		if !l.set && file == "" {
			return nil, nil
		}
		nets := l.values()
		if file != "" {
			more, err := whitelist.ReadFile(file)
			if err != nil {
				return nil, err
			}
			nets = append(nets, more...)
		}
		return nets, nil
	}
	if receive, err = combine(o.receiveWL, o.receiveWLFile); err != nil {
		return nil, nil, err
	}
	broadcast, err = combine(o.broadcastWL, o.castWLFile)
	return receive, broadcast, err
}

// whitelistOf is the list of networks; nil for none given (the broker's
// default allows everyone).
func whitelistOf(nets []string) (*whitelist.List, error) {
	if nets == nil {
		return nil, nil
	}
	return whitelist.New(nets)
}

func endpoints(m multiOpt, defaultPort int) ([]endpoint.Endpoint, error) {
	var out []endpoint.Endpoint
	for _, v := range m.vals {
		if v == "" || v == "true" {
			v = "tcp:" + strconv.Itoa(defaultPort)
		}
		ep, err := endpoint.ParseServer(v)
		if err != nil {
			return nil, usageError{err.Error()}
		}
		out = append(out, ep)
	}
	return out, nil
}

// multiOpt is a repeatable option whose value is optional.
type multiOpt struct {
	set  bool
	vals []string
}

func (m *multiOpt) String() string   { return strings.Join(m.vals, ",") }
func (m *multiOpt) IsBoolFlag() bool { return true }
func (m *multiOpt) Set(v string) error {
	m.set = true
	m.vals = append(m.vals, v)
	return nil
}

// listOpt takes zero or more networks per occurrence; occurrences add up,
// as Comet 2012's repeatable --whitelist did. Given with no value at all,
// it leaves an empty list: every TCP peer is refused (Comet latest).
type listOpt struct {
	set  bool
	vals []string
}

func (l *listOpt) String() string { return strings.Join(l.vals, " ") }
func (l *listOpt) Set(v string) error {
	l.set = true
	l.vals = append(l.vals, strings.Fields(strings.ReplaceAll(v, ",", " "))...)
	return nil
}
func (l *listOpt) values() []string { return append([]string{}, l.vals...) }

// listValues is a repeatable option, one value per occurrence.
type listValues []string

func (l *listValues) String() string     { return strings.Join(*l, " ") }
func (l *listValues) Set(v string) error { *l = append(*l, v); return nil }

// sizeOpt is a size in bytes given as 64MB, 1.5GiB or 1048576
// (bus.ParseSize); more than 0.
type sizeOpt int64

func (z *sizeOpt) String() string { return bus.FormatSize(int64(*z)) }
func (z *sizeOpt) Set(v string) error {
	n, err := bus.ParseSize(v)
	if err != nil {
		return err
	}
	if n <= 0 {
		return errors.New("must be more than 0")
	}
	*z = sizeOpt(n)
	return nil
}

// secondsOpt is a duration given as Comet's whole seconds ("3600") or as a
// Go duration ("1h"); not negative.
type secondsOpt time.Duration

func (d *secondsOpt) String() string { return time.Duration(*d).String() }
func (d *secondsOpt) Set(v string) error {
	var t time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n <= int64(math.MaxInt64/time.Second) {
		t = time.Duration(n) * time.Second
	} else if t, err = time.ParseDuration(v); err != nil {
		return errors.New("want a duration such as 1h or 90s, or whole seconds")
	}
	if t < 0 {
		return errors.New("must be 0 or more")
	}
	*d = secondsOpt(t)
	return nil
}

// countOpt counts occurrences (-v -v).
type countOpt int

func (c *countOpt) String() string   { return strconv.Itoa(int(*c)) }
func (c *countOpt) IsBoolFlag() bool { return true }
func (c *countOpt) Set(v string) error {
	if v == "true" || v == "" {
		*c++
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return err
	}
	*c += countOpt(n)
	return nil
}

// startError says a failure to start in the command line's terms where
// it can: a store another process holds names --eventdb and the holder;
// an event size the bus is not set up for names --max-event-size with the
// numbers that fit.
func startError(err error, o *options) error {
	var locked *bus.StoreLockedError
	if errors.As(err, &locked) {
		holder := "another process"
		if locked.PID > 0 {
			holder = fmt.Sprintf("process %d", locked.PID)
		}
		return fmt.Errorf("--eventdb %s is in use by %s; one process per store: give this one its own --eventdb", locked.Dir, holder)
	}
	var space *bus.StoreSpaceError
	if errors.As(err, &space) {
		return fmt.Errorf("--max-store %s does not fit in --eventdb %s: its file system has %s free and the store takes %s, "+
			"but %s are needed (the limit and %s for the server's own files); give --max-store %s or less, or free space",
			bus.FormatSize(space.MaxStore), space.Dir, bus.FormatSize(space.Free), bus.FormatSize(space.Used),
			bus.FormatSize(space.MaxStore+space.Room), bus.FormatSize(space.Room), bus.FormatSize(space.Fits()))
	}
	var se *bus.SizeMismatchError
	if !errors.As(err, &se) {
		return err
	}
	if se.Stream == "" {
		return fmt.Errorf("--max-event-size %d: the NATS server's max_payload of %d bytes carries events of at most %d bytes "+
			"(%d are kept for headers); raise max_payload in the server's configuration to at least %d, or give --max-event-size %d or less",
			se.MaxPayload, se.Limit, se.Fits(), bus.HeaderRoom, se.Needs(), se.Fits())
	}
	store := "the event store on the NATS system"
	if o.nats.url == "" {
		store = "the event store in --eventdb " + o.eventDB
	}
	return fmt.Errorf("--max-event-size %d: %s was made for --max-event-size %d (stream %s, max_msg_size %d); "+
		"give --max-event-size %d, or set the stream's max_msg_size to %d (nats stream edit %s --max-msg-size %d)",
		se.MaxPayload, store, se.Fits(), se.Stream, se.Limit, se.Fits(), se.Needs(), se.Stream, se.Needs())
}

// Values of --log-format.
const (
	logText = "text"
	logJSON = "json"
)

// newLogger is the process log in --log-format: slog's text or JSON
// handler, the same records and fields either way.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == logJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serveDebug exposes pprof on addr until the returned stop is called.
func serveDebug(addr string, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	logger.Info("pprof listening", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// usableDir creates dir if missing and checks that files can be made in it,
// so that a bad --eventdb is reported by name before the bus starts.
func usableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".comet-write-test-*")
	if err != nil {
		return fmt.Errorf("not writable: %w", err)
	}
	f.Close()
	return os.Remove(f.Name())
}

const filterBudgetUsage = "evaluation steps one XPath filter may take on one event (subscribers' filters, --filter); a filter that runs out is no match for that event, and logged"

// checkFilterBudget checks --filter-budget, the same for the broker and
// for comet tap.
func checkFilterBudget(n int) error {
	if n < 1 || n > filter.MaxBudget {
		return fmt.Errorf("--filter-budget must be between 1 and %d", filter.MaxBudget)
	}
	return nil
}
