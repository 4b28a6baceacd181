// Package loadgen drives a VTP broker the way its real peers do and measures
// it: M subscribers hold long-lived connections on the broadcast port while
// C workers submit N unique events on the receive port, one TCP connection
// per event (docs/vtp.md §4.1, §4.2). It reports throughput, ack and
// end-to-end latency percentiles, losses, duplicates, naks and errors, and
// optionally the broker's CPU time per event and peak RSS from /proc.
//
// The workers can be spread over several receive ports (the ingresses of a
// scaled-out broker) and can retry, like an author that fails over: an
// attempt that gets no receipt is repeated, with the same bytes, on the
// next port (Config.RetryFor). Config.OnResult tells the caller what
// became of each event.
//
// The client side is built not to be the bottleneck: exactly C submitting
// goroutines and M reading goroutines, buffered IO with per-worker reused
// buffers, events rendered by splicing bytes into the template, received
// events classified by scanning only the root start tag.
package loadgen

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/comet-go/comet/vtp"
)

// Defaults applied by Run to zero-valued Config fields.
const (
	DefaultConcurrency = 1
	DefaultTimeout     = 20 * time.Second // Comet's receiver timeout
	DefaultSettle      = 5 * time.Second
)

// Retry backoff: the pause before the second attempt of an event, doubled
// before each further attempt up to maxBackoff.
const (
	firstBackoff = 50 * time.Millisecond
	maxBackoff   = time.Second
)

// Config describes one load run.
type Config struct {
	// ReceiveAddrs are the broker's author ports, e.g. 127.0.0.1:8098:
	// one, or the ingresses of a scaled-out broker. Worker i starts on
	// ReceiveAddrs[i % len] and moves to the next address after an
	// attempt that got no receipt (it stays there for its next events).
	// An address may be a tls: target description
	// (tls:HOST:PORT:trustRoots=DIR, docs/tls.md §2): every event then
	// makes its own TLS handshake, as an author's would.
	ReceiveAddrs []string
	// ReceiveAddr is shorthand for ReceiveAddrs = {ReceiveAddr}; setting
	// both is an error unless they say the same.
	ReceiveAddr   string
	BroadcastAddr string // broker's subscriber port, e.g. 127.0.0.1:8099; needed when Subscribers > 0

	Events      int     // N: events to submit (> 0)
	Concurrency int     // C: submitting workers, each with at most one connection open (0 = 1)
	Subscribers int     // M: subscriber connections (0 = none, only ack latency is measured)
	Rate        float64 // events/s over the whole run; 0 = as fast as the C workers go

	Template []byte // a VOEvent document; its root ivorn value is replaced per event

	// IVORNPrefix makes the run's ivorns unique: event seq (0..N-1) gets
	// ivorn IVORNPrefix + "-" + seq. Empty = the template's ivorn up to its
	// '#' (or '?') + "#vtp-load-" + a random run id. It must differ between
	// runs against the same broker, whose previously-seen database naks
	// repeated bytes.
	IVORNPrefix string

	Timeout time.Duration // per attempt, connect to receipt; also the subscribers' handshake limit (0 = 20 s)

	// Settle bounds the wait, after the last submission finished, for
	// deliveries still in flight; Run returns as soon as every live
	// subscriber holds every accepted event (0 = 5 s).
	Settle time.Duration

	// RetryFor, when > 0, makes an event whose attempt got no receipt
	// (connect or send error, connection closed without a receipt,
	// Timeout) be submitted again, with the same bytes, on the worker's
	// next receive address, after a pause of 50 ms doubling up to 1 s,
	// until it is acked or naked. No attempt starts once RetryFor has
	// passed since the event's first one; the event then counts as
	// given up. 0 = one attempt per event.
	//
	// A nak after a failed attempt is counted apart (Report.NakedAfterRetry):
	// an earlier attempt may have stored the event before its connection
	// broke, and the nak then says "previously seen".
	RetryFor time.Duration

	// OnResult, when set, is called once per submitted event when its
	// fate is known: acked, naked, or given up (which includes attempts
	// cut short because ctx ended). It is called from the submitting
	// goroutines, concurrently: it must be safe for that, and quick, as
	// the worker waits for it. Events never submitted (ctx ended first)
	// get no call.
	OnResult func(Result)

	// BrokerPID, when > 0, is sampled from /proc (Linux) before the
	// submissions and after the settle: utime+stime give CPU per accepted
	// event, VmHWM the peak RSS.
	BrokerPID int

	MaxFrame int // largest frame read or sent (0 = vtp.DefaultMaxFrame, Comet's 99,999)
}

// fdReserve is what the process needs besides the C + M sockets: stdio,
// the netpoller, /proc reads, a listener or two in tests.
const fdReserve = 32

func (c Config) normalize() (Config, error) {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Settle == 0 {
		c.Settle = DefaultSettle
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = vtp.DefaultMaxFrame
	}
	switch {
	case c.ReceiveAddr != "" && len(c.ReceiveAddrs) == 0:
		c.ReceiveAddrs = []string{c.ReceiveAddr}
	case c.ReceiveAddr != "" && !slices.Equal(c.ReceiveAddrs, []string{c.ReceiveAddr}):
		return c, fmt.Errorf("loadgen: ReceiveAddr %q and ReceiveAddrs %q both set, differently", c.ReceiveAddr, c.ReceiveAddrs)
	}
	c.ReceiveAddrs = slices.Clone(c.ReceiveAddrs)
	switch {
	case len(c.ReceiveAddrs) == 0:
		return c, errors.New("loadgen: ReceiveAddr or ReceiveAddrs is required")
	case slices.Contains(c.ReceiveAddrs, ""):
		return c, fmt.Errorf("loadgen: empty address in ReceiveAddrs %q", c.ReceiveAddrs)
	case c.Events <= 0:
		return c, fmt.Errorf("loadgen: Events must be > 0 (got %d)", c.Events)
	case c.Concurrency < 0:
		return c, fmt.Errorf("loadgen: Concurrency must be >= 0 (got %d)", c.Concurrency)
	case c.Subscribers < 0:
		return c, fmt.Errorf("loadgen: Subscribers must be >= 0 (got %d)", c.Subscribers)
	case c.Subscribers > 0 && c.BroadcastAddr == "":
		return c, errors.New("loadgen: BroadcastAddr is required when Subscribers > 0")
	case c.Rate < 0 || c.Rate != c.Rate:
		return c, fmt.Errorf("loadgen: Rate must be >= 0 (got %v)", c.Rate)
	case c.Timeout < 0 || c.Settle < 0 || c.RetryFor < 0:
		return c, errors.New("loadgen: Timeout, Settle and RetryFor must be >= 0")
	case len(c.Template) == 0:
		return c, errors.New("loadgen: Template is empty")
	}
	if c.Concurrency > c.Events {
		c.Concurrency = c.Events
	}
	if lim, ok := fdLimit(); ok {
		need := uint64(c.Concurrency) + uint64(c.Subscribers) + fdReserve
		if need > lim {
			return c, fmt.Errorf("loadgen: %d subscribers + %d workers + %d reserve = %d file descriptors, "+
				"but RLIMIT_NOFILE allows %d: lower -m/-c or raise the limit (ulimit -n)",
				c.Subscribers, c.Concurrency, fdReserve, need, lim)
		}
	}
	return c, nil
}

// newRunID returns 12 random hex digits.
func newRunID() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; fall back to time.
		return strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return hex.EncodeToString(b[:])
}

// defaultPrefix keeps the template's authority and resource key, so the
// ivorns pass the broker's IVOID check exactly when the template's does.
func defaultPrefix(templateIVORN, runID string) string {
	base := templateIVORN
	if i := strings.IndexAny(base, "#?"); i >= 0 {
		base = base[:i]
	}
	return base + "#vtp-load-" + runID
}
