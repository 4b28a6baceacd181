package main

// comet status and comet healthcheck: a running broker's HTTP endpoint
// (--http-addr) read from the command line.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/comet-go/comet/internal/cli"
	"github.com/comet-go/comet/internal/observe"
)

// DefaultHTTPAddr is where comet status and comet healthcheck look for a
// broker's endpoint when --http-addr is not given: the address the
// README's examples and the deployments give the broker's --http-addr.
const DefaultHTTPAddr = "127.0.0.1:8090"

// DefaultProbeTimeout bounds one request of comet status or healthcheck.
const DefaultProbeTimeout = 10 * time.Second

const statusUsage = `usage: comet status [--http-addr HOST:PORT]

Print a running broker's status as terminal tables: readiness, listeners,
counts, subscribers, upstreams, stages and the bus, read from its HTTP
endpoint (the broker's --http-addr). Exit status 0 when the broker is
ready, 1 when it is not or cannot be reached, 2 for a bad command line.

Options:
`

const healthcheckUsage = `usage: comet healthcheck [--http-addr HOST:PORT] [--live]

Ask a running broker's HTTP endpoint whether it is ready (/readyz), or
with --live only whether it is alive (/healthz): exit status 0 if so, 1 if
not (with the broker's one-line reason), 2 for a bad command line. For
container health checks in images without a shell.

Options:
`

// probeFlags are the options comet status and healthcheck share.
type probeFlags struct {
	addr    string
	timeout time.Duration
}

func (p *probeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.addr, "http-addr", DefaultHTTPAddr, "the broker's HTTP endpoint: `HOST:PORT` (its --http-addr) or an http:// URL")
	fs.DurationVar(&p.timeout, "timeout", DefaultProbeTimeout, "longest wait for the answer")
}

// url is the endpoint's URL of path.
func (p *probeFlags) url(path string) (string, error) {
	if strings.HasPrefix(p.addr, "http://") || strings.HasPrefix(p.addr, "https://") {
		return strings.TrimSuffix(p.addr, "/") + path, nil
	}
	host, port, err := net.SplitHostPort(p.addr)
	if err != nil || port == "" {
		return "", fmt.Errorf("--http-addr %q: want HOST:PORT or an http:// URL", p.addr)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1" // the broker listens everywhere; ask it here
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// get fetches path; a transport failure is one line naming the URL.
func (p *probeFlags) get(path string) (*http.Response, []byte, error) {
	u, err := p.url(path)
	if err != nil {
		return nil, nil, usageError{err.Error()}
	}
	c := http.Client{Timeout: p.timeout}
	resp, err := c.Get(u)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			err = ue.Unwrap()
		}
		return nil, nil, fmt.Errorf("%s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", u, err)
	}
	return resp, body, nil
}

// parseProbeArgs reads the shared options of a probe command.
func parseProbeArgs(name, usageText string, args []string, stdout io.Writer, more func(*flag.FlagSet)) (*probeFlags, error) {
	p := &probeFlags{}
	fs := flag.NewFlagSet("comet "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	p.register(fs)
	if more != nil {
		more(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usageText)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, usageError{cli.ParseError(err, args, "comet "+name+" -h")}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected argument %q; see comet %s -h", fs.Arg(0), name)}
	}
	if p.timeout <= 0 {
		return nil, usageError{"--timeout must be more than 0"}
	}
	return p, nil
}

// exitFor is the exit status of a subcommand's error: 2 for a bad
// command line, 1 for anything else.
func exitFor(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// runStatus is "comet status ARGS".
func runStatus(args []string, stdout, stderr io.Writer) int {
	p, err := parseProbeArgs("status", statusUsage, args, stdout, nil)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil {
		var resp *http.Response
		var body []byte
		if resp, body, err = p.get(observe.PathStatus); err == nil {
			var st observe.Status
			switch {
			case resp.StatusCode != http.StatusOK:
				err = fmt.Errorf("%s answered %s", resp.Request.URL, resp.Status)
			case json.Unmarshal(body, &st) != nil:
				err = fmt.Errorf("%s did not answer a comet status", resp.Request.URL)
			default:
				if werr := observe.WriteText(stdout, &st, time.Now()); werr != nil {
					return 1
				}
				if !st.Ready {
					return 1
				}
				return 0
			}
		}
	}
	fmt.Fprintf(stderr, "comet status: %v\n", err)
	return exitFor(err)
}

// runHealthcheck is "comet healthcheck ARGS".
func runHealthcheck(args []string, stdout, stderr io.Writer) int {
	var live bool
	p, err := parseProbeArgs("healthcheck", healthcheckUsage, args, stdout, func(fs *flag.FlagSet) {
		fs.BoolVar(&live, "live", false, "only ask whether the process is alive (/healthz), not whether it is ready")
	})
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil {
		path := observe.PathReadyz
		if live {
			path = observe.PathHealthz
		}
		var resp *http.Response
		var body []byte
		if resp, body, err = p.get(path); err == nil {
			line := strings.TrimSpace(string(body))
			if resp.StatusCode == http.StatusOK {
				fmt.Fprintln(stdout, line)
				return 0
			}
			err = fmt.Errorf("%s (%s)", line, resp.Status)
		}
	}
	fmt.Fprintf(stderr, "comet healthcheck: %v\n", err)
	return exitFor(err)
}
