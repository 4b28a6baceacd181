package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/internal/vtptest"
)

// readmeCommands returns the shell commands of README.md's "Run it"
// section that start with "go run ", in order, each with its continuation
// lines joined.
func readmeCommands(t *testing.T) [][]string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "\n## Run it\n")
	if start < 0 {
		t.Fatal(`README.md has no "## Run it" section`)
	}
	section := text[start+1:]
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	var cmds [][]string
	parts := strings.Split(section, "```")
	for i := 1; i < len(parts); i += 2 {
		for _, c := range shellCommands(parts[i]) {
			if strings.HasPrefix(c, "go run ") {
				cmds = append(cmds, strings.Fields(c))
			}
		}
	}
	return cmds
}

// shellCommands are the commands of a code block, each with its
// continuation lines joined, without blank lines and comments.
func shellCommands(block string) []string {
	var cmds []string
	cur := ""
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(line)
		if cur == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		cur += line
		if strings.HasSuffix(cur, "\\") {
			cur = strings.TrimSuffix(cur, "\\") + " "
			continue
		}
		cmds = append(cmds, cur)
		cur = ""
	}
	return cmds
}

// The README's first run, as a new user would do it from a fresh clone:
// the broker, a watcher in a second terminal and a submission in a third;
// the watcher prints the example event. The commands are read from
// README.md, so this fails when the README drifts. Two substitutions, and
// only these: `go run ./cmd/NAME` becomes the binary built by TestMain (go
// run would build it again for every command, and signals would reach the
// go command rather than the program), and the ports 8098 and 8099 become
// free ones (fixed ports collide with other tests and other users of the
// machine). Each command runs in an empty directory holding a copy of
// examples/, as in a clone's root, so that the stores the README names are
// created there.
func TestREADMEFirstRun(t *testing.T) {
	cmds := readmeCommands(t)
	if len(cmds) != 3 {
		t.Fatalf("README \"Run it\": %d go run commands, want 3 (broker, watcher, submit): %q", len(cmds), cmds)
	}
	p := newPorts(t)
	ports := map[string]string{"8098": strconv.Itoa(p.recv), "8099": strconv.Itoa(p.cast)}
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "examples"), os.DirFS("../../examples")); err != nil {
		t.Fatal(err)
	}
	command := func(words []string) *exec.Cmd {
		t.Helper()
		if len(words) < 3 || !strings.HasPrefix(words[2], "./cmd/") {
			t.Fatalf("README command %q does not run ./cmd/NAME", words)
		}
		args := append([]string(nil), words[3:]...)
		substituted := 0
		for i, a := range args {
			for fixed, free := range ports {
				if strings.Contains(a, ":"+fixed) {
					args[i] = strings.Replace(a, ":"+fixed, ":"+free, 1)
					substituted++
				}
			}
		}
		if substituted == 0 {
			t.Fatalf("README command %q names neither port 8098 nor 8099", words)
		}
		cmd := exec.Command(filepath.Join(binDir, strings.TrimPrefix(words[2], "./cmd/")), args...)
		cmd.Dir = dir
		return cmd
	}
	eventdb := func(words []string) string {
		for i, w := range words {
			if w == "--eventdb" && i+1 < len(words) {
				return words[i+1]
			}
		}
		t.Fatalf("README command %q has no --eventdb", words)
		return ""
	}

	// First terminal: the broker.
	broker := newProc(command(cmds[0]))
	broker.start(t, "broker", broker.out)
	broker.waitListening(t, p.recvAddr(), 20*time.Millisecond)
	broker.waitListening(t, p.castAddr(), 20*time.Millisecond)

	// Second terminal: the watcher, its events on standard output.
	watcher := newProc(command(cmds[1]))
	printed := &vtptest.SyncBuffer{}
	watcher.start(t, "watcher", printed)
	if !vtptest.WaitUntil(wait, func() bool { return strings.Contains(watcher.out.String(), "connected to upstream broker") }) {
		t.Fatalf("watcher not subscribed:\n%s", watcher.out.String())
	}

	// Third terminal: the submission.
	submit := command(cmds[2])
	if out, err := submit.CombinedOutput(); err != nil {
		t.Fatalf("README submit command: %v\n%s", err, out)
	}
	event, err := os.ReadFile(filepath.Join(dir, cmds[2][len(cmds[2])-1]))
	if err != nil {
		t.Fatalf("the submitted file: %v", err)
	}
	want := append(append([]byte(nil), event...), '\n')
	if !vtptest.WaitUntil(wait, func() bool { return bytes.Contains([]byte(printed.String()), want) }) {
		t.Fatalf("watcher did not print the event; its standard output:\n%s\nits log:\n%s", printed.String(), watcher.out.String())
	}

	// Submitted again: refused as previously seen, exit status 1.
	again := command(cmds[2])
	out, err := again.CombinedOutput()
	if code := again.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), "Previously seen by this broker") {
		t.Errorf("second submission: exit status %d (%v), output %q; want 1 and the broker's reason", code, err, out)
	}

	// The stores the README names were made where it says, and a clone
	// ignores them.
	for _, c := range cmds[:2] {
		if st, err := os.Stat(filepath.Join(dir, eventdb(c))); err != nil || !st.IsDir() {
			t.Errorf("store %s of %q not created: %v", eventdb(c), c, err)
		}
	}
	checkIgnored(t, filepath.Join(eventdb(cmds[0]), "x"), filepath.Join(eventdb(cmds[1]), "x"), "comet", "comet-sendvo", "vtp-load")
}

// checkIgnored checks that git ignores each path, relative to the
// repository root.
func checkIgnored(t *testing.T, paths ...string) {
	t.Helper()
	root, err := exec.Command("git", "-C", "../..", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git work tree (%v): .gitignore not checked", err)
	}
	for _, p := range paths {
		check := exec.Command("git", "check-ignore", "-q", "--no-index", filepath.Clean(p))
		check.Dir = strings.TrimSpace(string(root))
		if err := check.Run(); err != nil {
			t.Errorf("git does not ignore %s at the repository root: %v", p, err)
		}
	}
}

// readmeBlocks returns the fenced code blocks of the README section whose
// heading is heading, up to the next heading.
func readmeBlocks(t *testing.T, heading string) []string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "\n"+heading+"\n")
	if start < 0 {
		t.Fatalf("README.md has no %q section", heading)
	}
	section := text[start+len(heading)+2:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	if end := strings.Index(section, "\n### "); end >= 0 {
		section = section[:end]
	}
	var blocks []string
	parts := strings.Split(section, "```")
	for i := 1; i < len(parts); i += 2 {
		body, _ := strings.CutPrefix(parts[i], "sh")
		blocks = append(blocks, body)
	}
	return blocks
}

// The README's secured link, as written: its openssl commands make the
// certificates; broker A (ssl: listeners, clientCA=, --allow-cert of B's
// fingerprint), broker B (a tls: subscription with its certificate,
// printing events) and the author's comet-sendvo over tls: run with the
// same substitutions as the first run (built binaries, free ports, run by
// bash for the $(...) in A's command); B prints the example event.
func TestREADMESecuredLink(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	blocks := readmeBlocks(t, "### Secured links (TLS)")
	if len(blocks) != 2 {
		t.Fatalf("README \"Secured links (TLS)\": %d code blocks, want 2 (certificates, the link)", len(blocks))
	}
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "examples"), os.DirFS("../../examples")); err != nil {
		t.Fatal(err)
	}
	certs := exec.Command("bash", "-euo", "pipefail", "-c", blocks[0])
	certs.Dir = dir
	if out, err := certs.CombinedOutput(); err != nil {
		t.Fatalf("README openssl commands: %v\n%s", err, out)
	}
	cmds := shellCommands(blocks[1])
	if len(cmds) != 3 {
		t.Fatalf("README secured link: %d commands, want 3 (broker A, broker B, the author): %q", len(cmds), cmds)
	}
	p := newPorts(t)
	shell := func(c string) *exec.Cmd {
		for _, name := range []string{"comet-sendvo", "comet"} {
			c = strings.ReplaceAll(c, "go run ./cmd/"+name+" ", filepath.Join(binDir, name)+" ")
		}
		c = strings.ReplaceAll(strings.ReplaceAll(c, ":8098", ":"+strconv.Itoa(p.recv)), ":8099", ":"+strconv.Itoa(p.cast))
		cmd := exec.Command("bash", "-c", "exec "+c)
		cmd.Dir = dir
		return cmd
	}
	a := newProc(shell(cmds[0]))
	a.start(t, "broker A", a.out)
	a.waitListening(t, p.recvAddr(), 20*time.Millisecond)
	a.waitListening(t, p.castAddr(), 20*time.Millisecond)
	b := newProc(shell(cmds[1]))
	printed := &vtptest.SyncBuffer{}
	b.start(t, "broker B", printed)
	a.waitLog(t, `peer_cert="CN=broker-b"`, 1)
	if out, err := shell(cmds[2]).CombinedOutput(); err != nil {
		t.Fatalf("README author command: %v\n%s", err, out)
	}
	event, err := os.ReadFile(filepath.Join(dir, "examples", "fermi-gbm-flt-pos.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if !vtptest.WaitUntil(wait, func() bool { return bytes.Contains([]byte(printed.String()), event) }) {
		t.Fatalf("broker B did not print the event:\n%s", b.out.String())
	}
	checkIgnored(t, "comet-tls/x", "comet-a/x", "comet-b/x")
}
