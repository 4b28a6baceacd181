// Command comet-sendvo submits one VOEvent to a broker and waits for its
// receipt. It exits 0 only when the broker acknowledged the event.
//
//	comet-sendvo [-v] [--timeout 20s] TARGET EVENT     (Comet latest)
//	comet-sendvo [-h HOST] [-p PORT] [-f FILE]         (Comet 2012)
//	comet-sendvo --sign --key KEYID --passphrase-file FILE --secret-keys KEYS TARGET EVENT
//	comet-sendvo --sign KEYID:FILE --secret-keys KEYS TARGET EVENT
//
// With --sign the event is signed with OpenPGP before it is sent
// (docs/openpgp.md): a detached signature over the root element, appended
// in a comment, the event's own bytes unchanged.
// TARGET is host, host:port, tcp:host:port, unix:PATH or, over TLS,
// tls:HOST:PORT[:trustRoots=DIR][:certificate=CERT:privateKey=KEY]
// (docs/tls.md §2; default port 8098); EVENT is a file name or - for
// standard input. The file is sent byte for byte.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/internal/cli"
	"github.com/comet-go/comet/signature"
	"github.com/comet-go/comet/voevent"
	"github.com/comet-go/comet/vtp"
)

// DefaultTimeout bounds the wait for the receipt.
const DefaultTimeout = vtp.DefaultSubmitTimeout

// Exit statuses.
const (
	exitAck    = 0
	exitFailed = 1 // nak, no reply, connection failure, unreadable event
	exitUsage  = 2
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// usage lists the options by what they are for, each with its alias.
var usage = cli.Layout{
	Head: `usage: comet-sendvo [options] TARGET EVENT
       comet-sendvo [-h HOST] [-p PORT] [-f FILE]              (Comet 2012)
       comet-sendvo --sign --key KEYID --passphrase-file FILE --secret-keys KEYS TARGET EVENT

Submit one VOEvent to a broker and wait for its receipt; exit 0 only on ack,
1 when the event was refused or got no receipt, 2 for a bad command line.
TARGET is host, host:port, tcp:host:port, unix:PATH or, over TLS,
tls:HOST:PORT[:trustRoots=DIR][:certificate=CERT.pem:privateKey=KEY.pem]
(default port 8098); EVENT is a file name or - for standard input. The file
is sent byte for byte.
`,
	Groups: []cli.Group{
		{Title: "Sending", Names: [][]string{{"timeout"}, {"max-event-size"}, {"v"}}},
		{Title: "Comet 2012's form, instead of TARGET EVENT", Names: [][]string{{"host", "h"}, {"port", "p"}, {"file", "f"}}},
		{Title: "OpenPGP", Names: [][]string{{"sign", "s"}, {"key"}, {"passphrase-file"}, {"secret-keys"}}},
	},
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("comet-sendvo", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are one line, below; --help goes to stdout
	fs.Usage = func() {}
	var host, file string
	var port, verbose int
	var timeout time.Duration
	var maxFrame int
	var sign signOpt
	var keyID, passphraseFile, secretKeys string
	fs.StringVar(&host, "host", "", "broker `HOST` (default localhost)")
	fs.StringVar(&host, "h", "", "broker `HOST` (default localhost)")
	fs.IntVar(&port, "port", vtp.DefaultReceivePort, "broker `PORT`")
	fs.IntVar(&port, "p", vtp.DefaultReceivePort, "broker `PORT`")
	fs.StringVar(&file, "file", "", "event `FILE`, - for standard input (the default)")
	fs.StringVar(&file, "f", "", "event `FILE`, - for standard input (the default)")
	fs.DurationVar(&timeout, "timeout", DefaultTimeout, "how long to wait for the receipt")
	fs.IntVar(&maxFrame, "max-event-size", vtp.DefaultMaxFrame, "largest frame to send or accept, in `BYTES`")
	fs.BoolFunc("v", "more output (repeatable)", func(string) error { verbose++; return nil })
	fs.Var(&sign, "sign", "sign the event with OpenPGP (with --key, --passphrase-file, --secret-keys), or --sign KEYID:PASSPHRASE_FILE")
	fs.Var(&sign, "s", "sign the event with OpenPGP (with --key, --passphrase-file, --secret-keys), or --sign KEYID:PASSPHRASE_FILE")
	fs.StringVar(&keyID, "key", "", "OpenPGP `KEY` to sign with: fingerprint, long or short key ID")
	fs.StringVar(&passphraseFile, "passphrase-file", "", "`FILE` whose first line is the key's passphrase")
	fs.StringVar(&secretKeys, "secret-keys", "", "exported OpenPGP secret key `FILE` holding --key (gpg --export-secret-keys KEYID)")
	if err := fs.Parse(regroupSign(args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage.Write(stdout, fs)
			return exitAck
		}
		fmt.Fprintf(stderr, "comet-sendvo: %s\n", cli.ParseError(err, args, "comet-sendvo --help"))
		return exitUsage
	}
	var target endpoint.Endpoint
	var err error
	switch fs.NArg() {
	case 2: // latest: TARGET EVENT
		if host != "" || file != "" {
			fmt.Fprintln(stderr, "comet-sendvo: give either TARGET EVENT or -h/-p/-f, not both")
			return exitUsage
		}
		target, err = endpoint.ParseClient(fs.Arg(0), vtp.DefaultReceivePort)
		file = fs.Arg(1)
	case 0: // 2012: -h -p -f
		if host == "" {
			host = "localhost"
		}
		if file == "" {
			file = "-"
		}
		target, err = endpoint.ParseClient(net.JoinHostPort(host, strconv.Itoa(port)), vtp.DefaultReceivePort)
	default:
		fmt.Fprintln(stderr, "comet-sendvo: want TARGET and EVENT; see comet-sendvo --help")
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "comet-sendvo: %v\n", err)
		return exitUsage
	}

	if f, ok := stdin.(*os.File); ok && file == "-" && term.IsTerminal(int(f.Fd())) {
		// Otherwise it looks hung: say what it waits for.
		fmt.Fprintln(stderr, "comet-sendvo: reading the event from standard input (a terminal): paste it, then press Ctrl-D; or give a file (see comet-sendvo --help)")
	}
	payload, err := readEvent(file, stdin, maxFrame)
	if err != nil {
		fmt.Fprintf(stderr, "comet-sendvo: %v\n", err)
		return exitFailed
	}
	info, err := voevent.Inspect(payload, voevent.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "comet-sendvo: %s is not a well-formed XML document: %v\n", file, err)
		return exitFailed
	}
	if !voevent.IsVOEventRole(info.Role) || !info.HasIVORN {
		fmt.Fprintf(stderr, "comet-sendvo: %s is not a VOEvent with a role and an ivorn (role %q)\n", file, info.Role)
		return exitFailed
	}

	if sign.set {
		if sign.keyID != "" {
			if keyID != "" || passphraseFile != "" {
				fmt.Fprintln(stderr, "comet-sendvo: give either --sign KEYID:FILE or --key with --passphrase-file, not both")
				return exitUsage
			}
			keyID, passphraseFile = sign.keyID, sign.passphraseFile
		}
		if keyID == "" || passphraseFile == "" || secretKeys == "" {
			fmt.Fprintln(stderr, "comet-sendvo: --sign needs --key, --passphrase-file and --secret-keys")
			return exitUsage
		}
		signer, err := signature.LoadSigner(secretKeys, keyID, passphraseFile)
		if err != nil {
			fmt.Fprintf(stderr, "comet-sendvo: %v\n", err)
			return exitUsage
		}
		if payload, err = signer.Sign(payload); err != nil {
			fmt.Fprintf(stderr, "comet-sendvo: signing %s: %v\n", file, err)
			return exitFailed
		}
		if len(payload) > maxFrame {
			fmt.Fprintf(stderr, "comet-sendvo: %s with its signature is larger than %d bytes: every Comet broker would refuse it\n", file, maxFrame)
			return exitFailed
		}
	} else if keyID != "" || passphraseFile != "" || secretKeys != "" {
		fmt.Fprintln(stderr, "comet-sendvo: --key, --passphrase-file and --secret-keys only apply with --sign")
		return exitUsage
	}

	logf := func(format string, a ...any) {
		if verbose > 0 {
			fmt.Fprintf(stderr, format+"\n", a...)
		}
	}
	// A tls: target's trust roots and client certificate are read now.
	dialer, err := endpoint.NewDialer(target, timeout)
	if err != nil {
		fmt.Fprintf(stderr, "comet-sendvo: %v\n", err)
		return exitUsage
	}
	author := &vtp.Author{Timeout: timeout, MaxFrame: maxFrame, Dial: dialer.Dial, Skipped: func(m *vtp.Message, err error) {
		if err != nil {
			logf("ignoring unparsable reply: %v", err)
		} else {
			logf("ignoring %s message with Origin %q", m.Role, m.Origin)
		}
	}}
	logf("sending %d bytes to %s", len(payload), target)
	msg, err := author.Submit(context.Background(), target.Network, target.Address, payload, info.IVORN)
	if err != nil {
		fmt.Fprintf(stderr, "comet-sendvo: %s: %v\n", info.IVORN, err)
		return exitFailed
	}
	if msg.Role == vtp.RoleNak {
		fmt.Fprintf(stderr, "comet-sendvo: remote refused event %s: %s\n", info.IVORN, msg.Result)
		return exitFailed
	}
	fmt.Fprintf(stdout, "event %s acknowledged by %s\n", info.IVORN, orUnknown(msg.Response))
	return exitAck
}

func readEvent(file string, stdin io.Reader, maxFrame int) ([]byte, error) {
	var r io.Reader = stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, int64(maxFrame)+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if len(data) > maxFrame {
		return nil, fmt.Errorf("%s is larger than %d bytes: every Comet broker would refuse it", file, maxFrame)
	}
	return data, nil
}

// signOpt is --sign: a flag (Comet 2012: -s/--sign with --key and
// --passphrase-file) or KEYID:PASSPHRASE_FILE (Comet's late 2012 branch).
type signOpt struct {
	set                   bool
	keyID, passphraseFile string
}

func (o *signOpt) String() string   { return "" }
func (o *signOpt) IsBoolFlag() bool { return true }
func (o *signOpt) Set(v string) error {
	o.set = true
	if v == "true" || v == "" {
		return nil
	}
	if v == "false" {
		o.set = false
		return nil
	}
	id, file, ok := strings.Cut(v, ":")
	if !ok || id == "" || file == "" {
		return fmt.Errorf("want KEYID:PASSPHRASE_FILE, got %q", v)
	}
	o.keyID, o.passphraseFile = id, file
	return nil
}

// regroupSign turns "--sign KEYID:FILE" into "--sign=KEYID:FILE" when the
// next argument starts with something shaped like a key ID (8, 16 or 40
// hex digits), since --sign alone is a flag; a host:port target does not
// look like one. "--sign=KEYID:FILE" always works.
func regroupSign(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if (a == "--sign" || a == "-sign" || a == "-s") && i+1 < len(args) {
			if id, _, ok := strings.Cut(args[i+1], ":"); ok && looksLikeKeyID(id) {
				out = append(out, a+"="+args[i+1])
				i++
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

func looksLikeKeyID(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if n := len(s); n != 8 && n != 16 && n != 40 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

func orUnknown(s string) string {
	if s == "" {
		return "the broker"
	}
	return s
}
