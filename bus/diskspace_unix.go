//go:build unix

package bus

import "golang.org/x/sys/unix"

// diskSpace is the space free to unprivileged users, and the size, of the
// file system holding dir.
func diskSpace(dir string) (free, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}
