//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package loadgen

func fdLimit() (uint64, bool) { return 0, false }
