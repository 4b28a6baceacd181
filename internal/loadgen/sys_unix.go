//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package loadgen

import "syscall"

// fdLimit is the soft RLIMIT_NOFILE (which the Go runtime has already
// raised to the hard limit at start-up). It is never raised further.
func fdLimit() (uint64, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return uint64(rl.Cur), true
}
