// Package gpgtest runs real GnuPG for tests: a throw-away home per test,
// keys made by gpg, detached signatures made and checked by gpg. It knows
// nothing of the signature envelope; callers hand it the bytes to sign.
package gpgtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Home is a GnuPG home that lives as long as the test.
type Home struct {
	t   testing.TB
	Dir string
}

// New makes a home, or skips the test if gpg is not installed (CI
// installs it). The agent it starts is stopped and the home removed when
// the test ends.
func New(t testing.TB) *Home {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Skip("gpg not on PATH")
	}
	// Not t.TempDir(): gpg-agent's socket path must fit in a sockaddr_un
	// (about 100 bytes).
	dir, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kill := exec.Command("gpgconf", "--kill", "gpg-agent")
		kill.Env = append(os.Environ(), "GNUPGHOME="+dir)
		_ = kill.Run()
		os.RemoveAll(dir)
	})
	return &Home{t: t, Dir: dir}
}

// Try runs gpg non-interactively (keys without passphrase) and returns its
// standard output and error together, and how it ended.
func (h *Home) Try(stdin []byte, args ...string) (string, error) {
	cmd := h.command(stdin, args)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Run is Try that fails the test if gpg fails; it returns gpg's standard
// output.
func (h *Home) Run(stdin []byte, args ...string) []byte {
	h.t.Helper()
	cmd := h.command(stdin, args)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		h.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, errOut.Bytes())
	}
	return out.Bytes()
}

func (h *Home) command(stdin []byte, args []string) *exec.Cmd {
	cmd := exec.Command("gpg", append([]string{"--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+h.Dir)
	cmd.Stdin = bytes.NewReader(stdin)
	return cmd
}

// GenKey makes a signing key for uid with algo (rsa2048, ed25519, ...),
// valid for a day, and returns its fingerprint.
func (h *Home) GenKey(uid, algo string) string {
	h.t.Helper()
	h.Run(nil, "--quick-gen-key", uid, algo, "sign", "1d")
	out := h.Run(nil, "--with-colons", "--list-keys", "="+uid)
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" && len(f) > 9 {
			return f[9]
		}
	}
	h.t.Fatalf("no fingerprint for %s in\n%s", uid, out)
	return ""
}

// File writes data to name in the home and returns its path.
func (h *Home) File(name string, data []byte) string {
	h.t.Helper()
	path := filepath.Join(h.Dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		h.t.Fatal(err)
	}
	return path
}

// DetachSign has gpg sign data with key fpr and returns the armoured
// signature; extra gpg arguments (e.g. --comment) may be given.
func (h *Home) DetachSign(fpr string, data []byte, extra ...string) []byte {
	h.t.Helper()
	span := h.File("span.bin", data)
	sig := span + ".asc"
	os.Remove(sig)
	args := append([]string{"--local-user", fpr, "--detach-sign", "--armor", "--output", sig}, extra...)
	h.Run(nil, append(args, span)...)
	out, err := os.ReadFile(sig)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// Verify has gpg check the armoured detached signature sig over data; the
// output holds gpg's machine-readable status lines ("GOODSIG", "BADSIG")
// and its messages ("Good signature", "BAD signature").
func (h *Home) Verify(sig, data []byte) (string, error) {
	h.t.Helper()
	return h.Try(nil, "--status-fd", "1", "--verify", h.File("check.asc", sig), h.File("check.bin", data))
}
