package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// userHZ is the unit of utime/stime in /proc/PID/stat. The kernel exports
// these in USER_HZ, which is 100 on every Linux architecture's ABI.
const userHZ = 100

// procSample is one reading of a process's accounting.
type procSample struct {
	cpu      time.Duration // utime + stime
	hwm, rss int64         // VmHWM, VmRSS in bytes (0 if absent)
}

// readProc samples /proc/PID/stat and /proc/PID/status (Linux only).
func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return s, fmt.Errorf("broker pid %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may contain spaces
	// and parentheses itself: fields are counted after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("broker pid %d: unrecognised /proc stat line", pid)
	}
	f := bytes.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return s, fmt.Errorf("broker pid %d: short /proc stat line", pid)
	}
	utime, err1 := strconv.ParseUint(string(f[14-3]), 10, 64)
	stime, err2 := strconv.ParseUint(string(f[15-3]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return s, fmt.Errorf("broker pid %d: /proc stat: %w", pid, err)
	}
	s.cpu = time.Duration(utime+stime) * (time.Second / userHZ)

	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return s, fmt.Errorf("broker pid %d: %w", pid, err)
	}
	for line := range bytes.Lines(status) {
		switch {
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			s.hwm = kB(line[len("VmHWM:"):])
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			s.rss = kB(line[len("VmRSS:"):])
		}
	}
	return s, nil
}

// kB parses "   12345 kB\n" into bytes.
func kB(v []byte) int64 {
	f := bytes.Fields(v)
	if len(f) == 0 {
		return 0
	}
	n, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil {
		return 0
	}
	return n * 1024
}
