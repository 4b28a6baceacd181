package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/comet-go/comet/internal/vtptest"
)

// openPTY returns a new pseudo-terminal: the master, and the slave a
// process can take as its terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// comet-sendvo with no file and a terminal on standard input says what it
// waits for, then reads the event from the terminal (here: nothing, so the
// empty input is refused).
func TestSendVOSaysWhatItWaitsForOnATerminal(t *testing.T) {
	master, slave := openPTY(t)
	cmd := exec.Command(filepath.Join(binDir, "comet-sendvo"), "-h", "127.0.0.1", "-p", "1")
	stderr := &vtptest.SyncBuffer{}
	cmd.Stdin, cmd.Stderr = slave, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	const want = "comet-sendvo: reading the event from standard input (a terminal): paste it, then press Ctrl-D; or give a file (see comet-sendvo --help)\n"
	deadline := time.Now().Add(wait)
	for stderr.String() != want {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("stderr %q, want %q", stderr.String(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	master.Write([]byte{4}) // Ctrl-D: end of input
	select {
	case <-exited:
	case <-time.After(wait):
		cmd.Process.Kill()
		t.Fatal("comet-sendvo still waiting after Ctrl-D")
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit %d after an empty event; stderr %q", code, stderr.String())
	}
}
