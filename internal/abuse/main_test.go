package abuse

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// rssLimit bounds the peak resident set of the whole suite (issue 6).
const rssLimit = 256 << 20

// wantNoFile is how many file descriptors the connection probes need: a
// thousand connections are two thousand descriptors in this process (both
// ends), plus the bus and the test peers.
const wantNoFile = 5000

// noFileErr is set when the descriptor limit cannot be raised far enough;
// the tests that need many connections skip with it.
var noFileErr error

// tmpl is the benchmark workload event every good submission is made from.
var tmpl []byte

func TestMain(m *testing.M) {
	noFileErr = raiseNoFile(wantNoFile)
	var err error
	tmpl, err = os.ReadFile(filepath.Join(testdataDir, "bench", "gbm_flt_pos_v20.xml"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "abuse: reading the benchmark event:", err)
		os.Exit(1)
	}
	stop := sampleGoMemory()
	code := m.Run()
	goPeak := stop()
	hwm, err := peakRSS()
	if err != nil {
		fmt.Fprintln(os.Stderr, "abuse: cannot read the peak RSS:", err)
		os.Exit(max(code, 1))
	}
	// Without the race detector the bound applies to the process's peak
	// RSS. With it, RSS also holds ThreadSanitizer's shadow memory and
	// per-goroutine clocks (5-10x, by Go's documentation), which are not
	// the broker's: the bound then applies to the memory the Go runtime
	// itself holds (heap, stacks, metadata; sampled), which is what the
	// RSS would be without the detector.
	measured, what := hwm, "peak RSS (VmHWM)"
	if raceEnabled {
		measured, what = goPeak, "peak Go runtime memory (race detector on; VmHWM "+mb(hwm)+")"
	}
	if measured > rssLimit {
		fmt.Fprintf(os.Stderr, "FAIL: abuse suite %s %s is over the %d MB bound\n", what, mb(measured), rssLimit>>20)
		code = max(code, 1)
	} else {
		fmt.Printf("abuse suite %s %s (bound %d MB; Go runtime peak %s)\n", what, mb(measured), rssLimit>>20, mb(goPeak))
	}
	os.Exit(code)
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/(1<<20)) }

// sampleGoMemory samples the memory the Go runtime holds (mapped and not
// released to the OS) every 5 ms until the returned function is called,
// which returns the peak.
func sampleGoMemory() func() int64 {
	samples := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	var peak atomic.Int64
	read := func() {
		metrics.Read(samples)
		if n := int64(samples[0].Value.Uint64() - samples[1].Value.Uint64()); n > peak.Load() {
			peak.Store(n)
		}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				read()
			}
		}
	}()
	return func() int64 {
		close(done)
		<-stopped
		read()
		return peak.Load()
	}
}

// raiseNoFile raises the soft RLIMIT_NOFILE to at least want (up to the
// hard limit). The Go runtime already raises it to the hard limit on
// Linux; this is for the platforms and containers where it does not.
func raiseNoFile(want uint64) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Cur >= want {
		return nil
	}
	rl.Cur = min(max(want, rl.Cur), rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("setrlimit: %w", err)
	}
	if rl.Cur < want {
		return fmt.Errorf("RLIMIT_NOFILE hard limit is %d, below the %d descriptors needed", rl.Max, want)
	}
	return nil
}

func needFDs(t testing.TB) {
	t.Helper()
	if noFileErr != nil {
		t.Skipf("cannot hold a thousand connections: %v", noFileErr)
	}
}

// peakRSS is VmHWM of /proc/self/status, in bytes.
func peakRSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM line")
}

// rss is the current VmRSS in bytes (for logging).
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
