package stages

import "syscall"

// dieWithBroker makes the kernel kill a command when the broker dies, even
// by SIGKILL, so that no orphan goes on handling an event that the
// restarted broker will hand to a new run anyway.
func dieWithBroker(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
