//go:build unix && !linux

package stages

import "syscall"

// dieWithBroker has no equivalent outside Linux: a command may outlive a
// broker killed by SIGKILL (its event is still handled again after the
// restart).
func dieWithBroker(*syscall.SysProcAttr) {}
