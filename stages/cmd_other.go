//go:build !unix

package stages

import (
	"os/exec"
)

func setProcessGroup(*exec.Cmd) {}

// checkExecutable has no execute permission to check here: the path must
// name a file.
func checkExecutable(path string) error { return checkNotDirectory(path) }

func signaled(*exec.ExitError) (string, bool) { return "", false }
