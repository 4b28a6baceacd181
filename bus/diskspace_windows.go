//go:build windows

package bus

import "golang.org/x/sys/windows"

// diskSpace is the space free to this user, and the size, of the volume
// holding dir.
func diskSpace(dir string) (free, total int64, err error) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, 0, err
	}
	var avail, size, all uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &size, &all); err != nil {
		return 0, 0, err
	}
	return int64(avail), int64(size), nil
}
