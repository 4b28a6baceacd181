package stages

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/comet-go/comet/bus"
)

// cmdNameBase caps the part of a command's stage name taken from its base
// name.
const cmdNameBase = 40

// Command is a --cmd stage: it runs an executable for every event, with
// Comet's latest semantics (docs/handlers.md §3) plus a timeout and a
// bound on concurrent runs.
type Command struct {
	path    string
	name    string
	timeout time.Duration
	pool    chan struct{}
	log     *slog.Logger
}

// NewCommand runs path (literally: not split, not looked up on $PATH; a
// relative path is relative to the working directory) with at most
// cfg.CmdPool runs under way at once, each killed after cfg.CmdTimeout.
// path must be executable now unless cfg.AllowMissingCommands; it is
// checked again before each run.
func NewCommand(path string, cfg Config) (*Command, error) {
	if path == "" {
		return nil, errors.New("command: empty path")
	}
	if cfg.CmdTimeout <= 0 || cfg.CmdPool <= 0 {
		return nil, fmt.Errorf("command %s: timeout and pool must be positive", path)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Command{path: path, name: CommandStageName(path), timeout: cfg.CmdTimeout,
		pool: make(chan struct{}, cfg.CmdPool), log: log.With("stage", CommandStageName(path))}
	if err := checkExecutable(path); err != nil {
		if !cfg.AllowMissingCommands {
			return nil, &NotExecutableError{Path: path, Err: err}
		}
		c.log.Warn("command is not executable (yet); its events fail until it is", "err", err)
	}
	return c, nil
}

// NotExecutableError is a command that cannot be run at start.
type NotExecutableError struct {
	Path string
	Err  error
}

func (e *NotExecutableError) Error() string {
	return fmt.Sprintf("command %s is not executable: %v", e.Path, e.Err)
}

func (e *NotExecutableError) Unwrap() error { return e.Err }

// CommandStageName is the stage name of --cmd path: "cmd-", the base name
// made safe by bus.SafeName (at most
// cmdNameBase of them), "-" and the first 8 hex digits of the SHA-256 of
// the absolute path. It stays the same across restarts from the same
// working directory, so a restarted broker resumes the same consumer.
func CommandStageName(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	sum := sha256.Sum256([]byte(abs))
	base := bus.SafeName(filepath.Base(path))
	if len(base) > cmdNameBase {
		base = base[:cmdNameBase]
	}
	return "cmd-" + base + "-" + hex.EncodeToString(sum[:4])
}

// Name is CommandStageName(path).
func (c *Command) Name() string { return c.name }

// Path is the command as given.
func (c *Command) Path() string { return c.path }

// Concurrency is the pool size.
func (c *Command) Concurrency() int { return cap(c.pool) }

// AttemptTimeout is the timeout plus the time the output pipes may stay
// open afterwards.
func (c *Command) AttemptTimeout() time.Duration { return c.timeout + CmdWaitDelay }

// Handle runs the command once with the event on its standard input. A
// non-zero exit, death by a signal, a timeout and a command that cannot be
// run are failures, each with an error that says which.
func (c *Command) Handle(ctx context.Context, ev *bus.Event) error {
	select {
	case c.pool <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-c.pool }()

	if err := checkExecutable(c.path); err != nil {
		return fmt.Errorf("%s is not executable: %w", c.path, err)
	}
	tctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	exe := c.path
	if !strings.ContainsRune(exe, filepath.Separator) {
		exe = "." + string(filepath.Separator) + exe // never looked up on $PATH
	}
	cmd := exec.CommandContext(tctx, exe)
	cmd.Args = []string{c.path}
	cmd.Stdin = bytes.NewReader(ev.Payload)
	log := c.log.With("ivorn", ev.IVORN, "sha1", ev.SHA1)
	stdout := &outputLog{log: log, stream: "stdout"}
	stderr := &outputLog{log: log, stream: "stderr"}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = CmdWaitDelay
	setProcessGroup(cmd)

	log.Debug("Running external command", "path", c.path)
	start := time.Now()
	err := cmd.Run()
	stdout.flush()
	stderr.flush()
	elapsed := time.Since(start).Round(time.Millisecond)
	var ee *exec.ExitError
	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay):
		// ErrWaitDelay: it exited 0 but something it left behind held its
		// output open; that output is cut.
		log.Debug("external command succeeded", "path", c.path, "elapsed", elapsed)
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%s stopped with the stages (%v): %w", c.path, err, context.Cause(ctx))
	case tctx.Err() != nil:
		return fmt.Errorf("%s timed out after %v; its process group was killed", c.path, c.timeout)
	case errors.As(err, &ee):
		if sig, ok := signaled(ee); ok {
			return fmt.Errorf("%s was killed by signal %s", c.path, sig)
		}
		return fmt.Errorf("%s returned non-zero (%d)", c.path, ee.ExitCode())
	default:
		return fmt.Errorf("running %s: %w", c.path, err)
	}
}

// outputLog logs a command's output line by line at debug level, as
// Comet's "External process said" (decoded as UTF-8); lines are cut at
// CmdMaxOutputLine bytes. Output is discarded when debug is off.
type outputLog struct {
	log    *slog.Logger
	stream string
	buf    []byte
	off    bool
	init   bool
}

func (o *outputLog) Write(p []byte) (int, error) {
	if !o.init {
		o.init = true
		o.off = !o.log.Enabled(context.Background(), slog.LevelDebug)
	}
	n := len(p)
	if o.off {
		return n, nil
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		room := CmdMaxOutputLine - len(o.buf)
		if len(chunk) >= room {
			o.buf = append(o.buf, chunk[:room]...)
			o.flush()
			p = p[room:]
			continue
		}
		o.buf = append(o.buf, chunk...)
		if i < 0 {
			break
		}
		o.flush()
		p = p[i+1:]
	}
	return n, nil
}

func (o *outputLog) flush() {
	if len(o.buf) == 0 {
		return
	}
	line := string(o.buf)
	if !utf8.ValidString(line) {
		line = strings.ToValidUTF8(line, "\uFFFD")
	}
	o.log.Debug("External process said", "stream", o.stream, "text", strings.TrimSuffix(line, "\r"))
	o.buf = o.buf[:0]
}

// checkNotDirectory is the part of Comet's pre-check every platform shares:
// the path exists and is not a directory.
func checkNotDirectory(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	return nil
}
