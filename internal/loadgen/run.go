package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/comet-go/comet/endpoint"
	"github.com/comet-go/comet/vtp"
)

// maxSamples is how many nak texts and error messages a Report keeps.
const maxSamples = 5

// closeWait bounds how long a worker waits, after the receipt, for the
// broker to close the connection (docs/vtp.md §4.1: it does so at once).
// Letting the broker close first leaves TIME_WAIT on the broker's side of
// the connection, not on this host's ephemeral ports, so long runs of one
// connection per event do not exhaust them.
const closeWait = time.Second

// bitset is a fixed-size set of event sequence numbers, safe for one writer
// and concurrent readers (or several writers: set is an atomic OR).
type bitset []atomic.Uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

// set adds i and reports whether it was already present.
func (b bitset) set(i int) bool {
	m := uint64(1) << (uint(i) & 63)
	return b[i>>6].Or(m)&m != 0
}

// missing counts members of b absent from have.
func (b bitset) missing(have bitset) int {
	n := 0
	for i := range b {
		n += bits.OnesCount64(b[i].Load() &^ have[i].Load())
	}
	return n
}

// covered reports whether have holds every member of b.
func (b bitset) covered(have bitset) bool {
	for i := range b {
		if b[i].Load()&^have[i].Load() != 0 {
			return false
		}
	}
	return true
}

// run is the state shared by the workers, the subscribers and Run.
type run struct {
	cfg        Config
	tmpl       *Template
	prefix     string
	prefixDash []byte // prefix + "-"
	base       time.Time

	submitAt  []atomic.Int64 // per seq: ns since base + 1 at submission start; 0 = not submitted
	accepted  bitset         // seqs acked by the broker
	acceptedN atomic.Int64

	next atomic.Int64 // next seq when Rate == 0
	jobs chan int     // seqs released by the pacer when Rate > 0

	subs      []*subscriber
	dialers   map[string]*endpoint.Dialer // the tls: targets among ReceiveAddrs
	closing   atomic.Bool
	closeOnce sync.Once
}

func (r *run) now() int64 { return int64(time.Since(r.base)) }

// seqOf maps an ivorn of this run to its sequence number.
func (r *run) seqOf(ivorn []byte) (int, bool) {
	if !bytes.HasPrefix(ivorn, r.prefixDash) {
		return 0, false
	}
	d := ivorn[len(r.prefixDash):]
	if len(d) == 0 || len(d) > 18 || (d[0] == '0' && len(d) > 1) {
		return 0, false
	}
	n := 0
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n >= r.cfg.Events {
		return 0, false
	}
	return n, true
}

// worker is one submitting goroutine's private state; merged after the run.
type worker struct {
	buf    []byte // the framed event, reused
	ivorn  []byte // the event's ivorn, reused
	author *vtp.Author
	ackLat []int64

	addr int // index in ReceiveAddrs of the next attempt

	first, lastAck  int64 // ns since base; first = -1 until a submission starts
	submitted       int   // events
	accepted        int
	naked           int // at the first attempt
	nakedAfterRetry int // after a failed attempt
	retried         int // events with more than one attempt
	gaveUp          int // events without a receipt
	errors          int // attempts without a receipt
	timeouts        int
	notClosed       int
	nakSamples      []string
	errSamples      []string
}

// Run connects cfg.Subscribers subscribers, submits cfg.Events events and
// waits for their deliveries, then reports. A setup failure (bad config,
// unreachable broadcast port, no authenticate, unreadable BrokerPID)
// returns a nil Report. If ctx ends during the run, the partial Report is
// returned with ctx's error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	tmpl, err := ParseTemplate(cfg.Template)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	runID := newRunID()
	prefix := cfg.IVORNPrefix
	if prefix == "" {
		prefix = defaultPrefix(tmpl.IVORN(), runID)
	}
	if err := tmpl.CheckIVORN(prefix); err != nil {
		return nil, fmt.Errorf("loadgen: IVORNPrefix: %w", err)
	}
	lastIVORN := prefix + "-" + strconv.Itoa(cfg.Events-1)
	if n := tmpl.Len(len(lastIVORN)); n > cfg.MaxFrame {
		return nil, fmt.Errorf("loadgen: events would be %d bytes, above the %d-byte frame limit", n, cfg.MaxFrame)
	}

	r := &run{
		cfg:        cfg,
		tmpl:       tmpl,
		prefix:     prefix,
		prefixDash: []byte(prefix + "-"),
		base:       time.Now(),
		submitAt:   make([]atomic.Int64, cfg.Events),
		accepted:   newBitset(cfg.Events),
	}
	for _, addr := range cfg.ReceiveAddrs {
		if !strings.HasPrefix(addr, "tls:") {
			continue
		}
		target, err := endpoint.ParseClient(addr, vtp.DefaultReceivePort)
		if err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		d, err := endpoint.NewDialer(target, cfg.Timeout)
		if err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		if r.dialers == nil {
			r.dialers = make(map[string]*endpoint.Dialer)
		}
		r.dialers[addr] = d
	}
	defer r.closeSubscribers()
	if err := r.connectSubscribers(ctx); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	var before, after procSample
	if cfg.BrokerPID > 0 {
		if before, err = readProc(cfg.BrokerPID); err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
	}

	workers, lag := r.submitAll(ctx)
	settleStart := time.Now()
	r.settle(ctx)
	settled := time.Since(settleStart)

	var procErr error
	if cfg.BrokerPID > 0 {
		after, procErr = readProc(cfg.BrokerPID)
	}
	r.closeSubscribers()

	rep := r.report(runID, workers, lag, settled)
	if cfg.BrokerPID > 0 && procErr == nil {
		rep.BrokerCPU = after.cpu - before.cpu
		if rep.Accepted > 0 {
			rep.BrokerCPUPerEvent = rep.BrokerCPU / time.Duration(rep.Accepted)
		}
		rep.BrokerPeakRSS = max(after.hwm, after.rss, before.hwm)
		rep.BrokerRSS = after.rss
	} else if procErr != nil {
		rep.ErrorSamples = append(rep.ErrorSamples, "broker stats: "+procErr.Error())
	}
	return rep, ctx.Err()
}

// submitAll runs the C workers (and the pacer when Rate > 0) to the end.
func (r *run) submitAll(ctx context.Context) ([]*worker, time.Duration) {
	var lag time.Duration
	var pacerDone chan struct{}
	if r.cfg.Rate > 0 {
		r.jobs = make(chan int)
		pacerDone = make(chan struct{})
		go func() {
			defer close(pacerDone)
			lag = r.pace(ctx)
		}()
	}
	workers := make([]*worker, r.cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{
			buf: make([]byte, 0, r.tmpl.Len(len(r.prefix)+24)+4),
			// KeepAlive off: one connection per event.
			author: &vtp.Author{Dialer: net.Dialer{KeepAlive: -1}, Timeout: r.cfg.Timeout,
				MaxFrame: r.cfg.MaxFrame, CloseWait: closeWait},
			ackLat: make([]int64, 0, r.cfg.Events/r.cfg.Concurrency+1),
			first:  -1,
			addr:   i % len(r.cfg.ReceiveAddrs),
		}
		workers[i] = w
		wg.Go(func() { r.work(ctx, w) })
	}
	wg.Wait()
	if pacerDone != nil {
		<-pacerDone
	}
	return workers, lag
}

// pace releases seq i at start + i/Rate. The schedule is absolute, so
// timer slack or busy workers never make it drift: late releases are
// caught up immediately. It returns the largest lateness of a release,
// which is large when the workers cannot keep up with the rate.
func (r *run) pace(ctx context.Context) (maxLag time.Duration) {
	defer close(r.jobs)
	interval := float64(time.Second) / r.cfg.Rate
	start := time.Now()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for seq := 0; seq < r.cfg.Events; seq++ {
		due := start.Add(time.Duration(float64(seq) * interval))
		if d := time.Until(due); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				return maxLag
			}
		}
		select {
		case r.jobs <- seq:
		case <-ctx.Done():
			return maxLag
		}
		if l := time.Since(due); l > maxLag {
			maxLag = l
		}
	}
	return maxLag
}

func (r *run) work(ctx context.Context, w *worker) {
	for {
		var seq int
		if r.jobs != nil {
			s, ok := <-r.jobs
			if !ok {
				return
			}
			seq = s
		} else {
			if ctx.Err() != nil {
				return
			}
			s := r.next.Add(1) - 1
			if s >= int64(r.cfg.Events) {
				return
			}
			seq = int(s)
		}
		r.submit(ctx, w, seq)
	}
}

// submit sends event seq, on its own connection per attempt, until an
// attempt gets a receipt or retrying is over (see Config.RetryFor).
func (r *run) submit(ctx context.Context, w *worker, seq int) {
	w.buf = r.tmpl.appendFrame(w.buf[:0], r.prefix, seq)
	w.ivorn = strconv.AppendInt(append(w.ivorn[:0], r.prefixDash...), int64(seq), 10)

	t0 := time.Now()
	off := int64(t0.Sub(r.base))
	r.submitAt[seq].Store(off + 1)
	if w.first < 0 {
		w.first = off
	}
	w.submitted++
	giveUpAt := t0.Add(r.cfg.RetryFor)
	backoff := firstBackoff
	var lastErr error
	for attempt := 1; ; attempt++ {
		addr := r.cfg.ReceiveAddrs[w.addr]
		m, at, err := r.attempt(ctx, w, addr)
		if err == nil {
			r.receipt(w, seq, m, t0, at, attempt, addr, lastErr)
			return
		}
		w.fail(ctx, seq, attempt, addr, len(r.cfg.ReceiveAddrs) > 1, err)
		lastErr = err
		// The author moves on to the next address, for this event's next
		// attempt and for its next events.
		w.addr = (w.addr + 1) % len(r.cfg.ReceiveAddrs)
		left := time.Until(giveUpAt)
		if r.cfg.RetryFor <= 0 || left <= 0 || !sleepCtx(ctx, min(backoff, left)) {
			r.giveUp(w, seq, t0, attempt, addr, lastErr)
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// attempt sends the event in w.buf on a new connection to addr and waits
// for the receipt whose Origin is its ivorn (docs/vtp.md §4.1), as
// comet-sendvo does: both submit through vtp.Author. It returns the
// receipt and when it was read, or why there was none; the error names the
// stage that failed.
func (r *run) attempt(ctx context.Context, w *worker, addr string) (*vtp.Message, time.Time, error) {
	w.author.Dial = nil
	if d := r.dialers[addr]; d != nil {
		w.author.Dial = d.Dial
	}
	rc, err := w.author.SubmitFrame(ctx, "tcp", addr, w.buf, string(w.ivorn))
	if err != nil {
		return nil, time.Time{}, err
	}
	if rc.LeftOpen {
		w.notClosed++
	}
	return rc.Message, rc.At, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// receipt records the ack or nak that ended event seq's attempt number
// attempt; lastErr is why the attempt before it failed, if there was one.
func (r *run) receipt(w *worker, seq int, m *vtp.Message, t0, at time.Time, attempt int, addr string, lastErr error) {
	if attempt > 1 {
		w.retried++
	}
	outcome := Acked
	switch {
	case m.Role == vtp.RoleAck:
		r.accepted.set(seq)
		r.acceptedN.Add(1)
		w.accepted++
		w.ackLat = append(w.ackLat, int64(at.Sub(t0)))
		w.lastAck = max(w.lastAck, int64(at.Sub(r.base)))
	default:
		outcome = Naked
		res := m.Result
		if res == "" {
			res = "(no reason given)"
		}
		sample := string(w.ivorn) + ": " + res
		if attempt > 1 {
			w.nakedAfterRetry++
			sample += fmt.Sprintf(" (after %d failed attempt%s)", attempt-1, plural(attempt-1))
		} else {
			w.naked++
		}
		if len(w.nakSamples) < maxSamples {
			w.nakSamples = append(w.nakSamples, sample)
		}
	}
	if r.cfg.OnResult != nil {
		res := Result{Seq: seq, IVORN: string(w.ivorn), Outcome: outcome, Start: t0, At: at,
			Attempts: attempt, Addr: addr, Nak: m.Result}
		if lastErr != nil {
			res.LastErr = lastErr.Error()
		}
		r.cfg.OnResult(res)
	}
}

// giveUp records that event seq got no receipt in attempts attempts.
func (r *run) giveUp(w *worker, seq int, t0 time.Time, attempts int, addr string, lastErr error) {
	w.gaveUp++
	if attempts > 1 {
		w.retried++
	}
	if r.cfg.OnResult != nil {
		r.cfg.OnResult(Result{Seq: seq, IVORN: string(w.ivorn), Outcome: GaveUp, Start: t0, At: time.Now(),
			Attempts: attempts, Addr: addr, LastErr: lastErr.Error()})
	}
}

// sleepCtx waits d, or less if ctx ends; it reports whether ctx is live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// fail records an attempt that got no receipt.
func (w *worker) fail(ctx context.Context, seq, attempt int, addr string, showAddr bool, err error) {
	w.errors++
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
		w.timeouts++
	}
	if len(w.errSamples) < maxSamples {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (run interrupted)", err)
		}
		where := fmt.Sprintf("event %d", seq)
		if attempt > 1 {
			where += fmt.Sprintf(" attempt %d", attempt)
		}
		if showAddr {
			where += " to " + addr
		}
		w.errSamples = append(w.errSamples, fmt.Sprintf("%s: %v", where, err))
	}
}

// settle waits, at most Settle, until every live subscriber holds every
// accepted event.
func (r *run) settle(ctx context.Context) {
	if len(r.subs) == 0 || r.acceptedN.Load() == 0 {
		return
	}
	deadline := time.Now().Add(r.cfg.Settle)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !r.allDelivered() && time.Now().Before(deadline) {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

func (r *run) allDelivered() bool {
	acc := r.acceptedN.Load()
	for _, s := range r.subs {
		select {
		case <-s.done: // dropped: nothing more will arrive
			continue
		default:
		}
		if s.uniq.Load() < acc || !r.accepted.covered(s.got) {
			return false
		}
	}
	return true
}
