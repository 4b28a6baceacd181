package stages

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/comet-go/comet/bus"
)

// Names of the built-in actions (--action NAME, --print-event,
// --save-event).
const (
	ActionPrintEvent = "print-event"
	ActionSaveEvent  = "save-event"
)

// Defaults for Config fields left zero.
const (
	// DefaultCmdTimeout bounds one run of a --cmd; past it the command's
	// process group is killed and the run counts as failed.
	DefaultCmdTimeout = 60 * time.Second
	// DefaultCmdPool is how many runs of one --cmd may be under way at
	// once.
	DefaultCmdPool = 8
	// DefaultMaxRetries is how many times a failed event is retried by a
	// stage before it is dead-lettered.
	DefaultMaxRetries = 5
	// DefaultRetryInitial is the wait before the first retry; each next
	// wait doubles (RetryMultiplier), up to DefaultRetryMax.
	DefaultRetryInitial = 1 * time.Second
	// DefaultRetryMax caps the wait between two retries.
	DefaultRetryMax = 30 * time.Second
)

// Limits that are not configurable.
const (
	// RetryMultiplier scales the wait between retries.
	RetryMultiplier = 2.0
	// RetryJitter randomizes each wait by up to this fraction either way.
	RetryJitter = 0.1
	// BuiltinAttemptBudget is what one attempt of a stage without its own
	// timeout (print-event, save-event, Config.Stages) is assumed to take
	// at most when sizing the bus's AckWait. It is not enforced.
	BuiltinAttemptBudget = 30 * time.Second
	// AckWaitMargin is added to a stage's worst-case retry schedule to get
	// the AckWait of its consumer: how long the bus waits before handing
	// an unacked event to another process.
	AckWaitMargin = time.Minute
	// CmdWaitDelay is how long a finished or killed command's output pipes
	// may stay open (held by a child it left behind) before they are
	// closed.
	CmdWaitDelay = 5 * time.Second
	// CmdMaxOutputLine cuts the command output logged in one record.
	CmdMaxOutputLine = 4096
	// MaxSaveCollisions bounds the "_" suffixes save-event tries.
	MaxSaveCollisions = 10000
	// RouterCloseTimeout bounds how long Close waits for handlers in
	// progress (commands are killed at once, so they end quickly).
	RouterCloseTimeout = 15 * time.Second
)

// Stage is one event handler. Handle is called for every event, possibly
// more than once for the same event (retries, redeliveries after a stop or
// a crash), and concurrently when the stage implements Bounded with a
// concurrency above 1. ctx ends when the runner stops: Handle should then
// return promptly; the event is handled again at the next start.
type Stage interface {
	// Name is stable across restarts: the bus consumer is "stage-"+Name
	// and dead letters go to comet.deadletter.<Name>. Only A-Z, a-z, 0-9,
	// - and _.
	Name() string
	Handle(ctx context.Context, ev *bus.Event) error
}

// Bounded is implemented by stages with their own limits.
type Bounded interface {
	// Concurrency is how many events the stage handles at once.
	Concurrency() int
	// AttemptTimeout bounds one Handle call.
	AttemptTimeout() time.Duration
}

// Config configures Start. Zero values take the Default constants.
type Config struct {
	// Actions are built-in stages by name (KnownActions); duplicates are
	// ignored.
	Actions []string
	// SaveDir is save-event's directory (created when missing); default:
	// the working directory at start.
	SaveDir string
	// Commands are the --cmd executables, run in this order. Each must
	// exist and be executable at start unless AllowMissingCommands.
	Commands []string
	// AllowMissingCommands accepts a command that does not exist or is
	// not executable yet (it will appear later, say from a deployment
	// step): its events fail, are retried and dead-lettered until it does.
	AllowMissingCommands bool
	// CmdTimeout bounds one run of a command.
	CmdTimeout time.Duration
	// CmdPool is how many runs of one command may be under way at once.
	CmdPool int
	// MaxRetries is how many times a failed event is retried; 0 means
	// DefaultMaxRetries, a negative value means no retry.
	MaxRetries int
	// RetryInitial and RetryMax set the exponential backoff between
	// retries.
	RetryInitial time.Duration
	RetryMax     time.Duration
	// Stdout is where print-event writes; default os.Stdout.
	Stdout io.Writer
	// Stages are more stages to run, after the commands and the actions.
	Stages []Stage
	Logger *slog.Logger
}

// setDefaults resolves the zero values. It is applied once, where a
// Config enters the package (Start, Stages): applied twice, MaxRetries
// would go from none back to the default.
func (c *Config) setDefaults() error {
	c.CmdTimeout = cmp.Or(c.CmdTimeout, DefaultCmdTimeout)
	c.CmdPool = cmp.Or(c.CmdPool, DefaultCmdPool)
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = DefaultMaxRetries
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	c.RetryInitial = cmp.Or(c.RetryInitial, DefaultRetryInitial)
	c.RetryMax = cmp.Or(c.RetryMax, DefaultRetryMax)
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.CmdTimeout < 0:
		return fmt.Errorf("command timeout %v must be positive", c.CmdTimeout)
	case c.CmdPool < 0:
		return fmt.Errorf("command pool %d must be positive", c.CmdPool)
	case c.RetryInitial < 0 || c.RetryMax < 0:
		return errors.New("retry backoff must be positive")
	case c.RetryMax < c.RetryInitial:
		return fmt.Errorf("retry backoff maximum %v is below its initial value %v", c.RetryMax, c.RetryInitial)
	}
	return nil
}

// KnownActions lists the built-in action names, sorted.
func KnownActions() []string {
	return []string{ActionPrintEvent, ActionSaveEvent}
}

// NewAction returns the built-in stage called name, configured from cfg
// (Stdout, SaveDir). An unknown name is an error listing the known ones.
func NewAction(name string, cfg Config) (Stage, error) {
	switch name {
	case ActionPrintEvent:
		return NewPrintEvent(cfg.Stdout), nil
	case ActionSaveEvent:
		return NewSaveEvent(cfg.SaveDir)
	}
	return nil, fmt.Errorf("unknown action %q; known actions: %s", name, strings.Join(KnownActions(), ", "))
}

// Stages builds the stages cfg asks for, in Comet's order: every command in
// order, then the actions, then cfg.Stages. It checks everything Start
// would, so it suits a start-up check of the options.
func Stages(cfg Config) ([]Stage, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("stages: %w", err)
	}
	return build(cfg)
}

// build is Stages on a resolved cfg.
func build(cfg Config) ([]Stage, error) {
	var out []Stage
	for _, path := range cfg.Commands {
		c, err := NewCommand(path, cfg)
		if err != nil {
			return nil, fmt.Errorf("stages: %w", err)
		}
		out = append(out, c)
	}
	var seen []string
	for _, name := range cfg.Actions {
		if slices.Contains(seen, name) {
			continue
		}
		seen = append(seen, name)
		a, err := NewAction(name, cfg)
		if err != nil {
			return nil, fmt.Errorf("stages: %w", err)
		}
		out = append(out, a)
	}
	out = append(out, cfg.Stages...)
	names := map[string]bool{}
	for _, s := range out {
		n := s.Name()
		if err := bus.CheckStageName(n); err != nil {
			return nil, fmt.Errorf("stages: %w", err)
		}
		if names[n] {
			if c, ok := s.(*Command); ok {
				return nil, fmt.Errorf("stages: command %q given twice", c.Path())
			}
			return nil, fmt.Errorf("stages: two stages named %q", n)
		}
		names[n] = true
	}
	return out, nil
}
