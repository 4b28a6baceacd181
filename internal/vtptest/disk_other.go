//go:build !linux

package vtptest

import "testing"

// Tmpfs skips the test: mounting a tmpfs is Linux only.
func Tmpfs(t testing.TB, size int64) string {
	t.Skip("needs Linux and root to mount a small tmpfs under the store")
	return ""
}

// MountTmpfs skips the test: mounting a tmpfs is Linux only.
func MountTmpfs(t testing.TB, dir string, size int64, opts string) string {
	t.Skip("needs Linux and root to mount a small tmpfs under the store")
	return ""
}

// Fill is never reached off Linux (Tmpfs skipped the test).
func Fill(t testing.TB, dir string) (free func()) {
	t.Skip("needs Linux")
	return func() {}
}
