package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRegroupHandlesOptionalAndVariadicValues(t *testing.T) {
	in := []string{"-r", "--receive", "tcp:9000", "-b", "--whitelist", "10.0.0.0/8", "192.168.0.0/16",
		"--local-ivo", "ivo://a.b/c", "-vv", "--broadcast-whitelist", "--eventdb", "/x"}
	want := []string{"-r", "--receive=tcp:9000", "-b", "--whitelist=10.0.0.0/8 192.168.0.0/16",
		"--local-ivo", "ivo://a.b/c", "-v", "-v", "--broadcast-whitelist=", "--eventdb", "/x"}
	if got := regroup(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("regroup:\n got %q\nwant %q", got, want)
	}
}

func TestOptionsBuildTheConfig(t *testing.T) {
	o, err := parseArgs([]string{"-r", "--receive", "unix:/tmp/c.sock", "--broadcast-port", "9099", "-b",
		"--whitelist", "127.0.0.1/32", "--author-whitelist", "10.0.0.0/255.0.0.0", "--broadcast-whitelist",
		"--local-ivo", "ivo://a.b/c", "--eventdb", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.config(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Receive) != 2 || cfg.Receive[0].Address != ":8098" || cfg.Receive[1].Network != "unix" {
		t.Errorf("receive endpoints %v", cfg.Receive)
	}
	if len(cfg.Broadcast) != 1 || cfg.Broadcast[0].Address != ":9099" {
		t.Errorf("broadcast endpoints %v", cfg.Broadcast)
	}
	if got := cfg.Receiver.Whitelist.Networks(); !reflect.DeepEqual(got, []string{"127.0.0.1/32", "10.0.0.0/8"}) {
		t.Errorf("receive whitelist %q: repeated occurrences add up", got)
	}
	if cfg.Broadcaster.Whitelist == nil || len(cfg.Broadcaster.Whitelist.Networks()) != 0 {
		t.Errorf("broadcast whitelist given without value must be empty (refuse all), got %v", cfg.Broadcaster.Whitelist)
	}
}

// The broadcaster's and receiver's flow limits reach their parts' configs,
// and a limit that cannot work is one line naming the option.
func TestFlowLimitsReachTheirParts(t *testing.T) {
	o, err := parseArgs([]string{"--receive", "--broadcast", "--local-ivo", "ivo://a.b/c", "--eventdb", t.TempDir(),
		"--max-in-flight", "7", "--ack-stall-timeout", "3s", "--queue-wait", "250ms", "--linger-timeout", "2s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.config(nil)
	if err != nil {
		t.Fatal(err)
	}
	if b := cfg.Broadcaster; b.MaxInFlight != 7 || b.AckStallTimeout != 3*time.Second || b.QueueWait != 250*time.Millisecond {
		t.Errorf("broadcaster: MaxInFlight %d, AckStallTimeout %v, QueueWait %v", b.MaxInFlight, b.AckStallTimeout, b.QueueWait)
	}
	if cfg.Receiver.LingerTimeout != 2*time.Second {
		t.Errorf("receiver: LingerTimeout %v", cfg.Receiver.LingerTimeout)
	}
	for flag, want := range map[string]string{
		"--max-in-flight=0":      "--max-in-flight 0: must be at least 1",
		"--ack-stall-timeout=0s": "--ack-stall-timeout 0s: must be more than 0",
		"--queue-wait=-1s":       "--queue-wait -1s: must be more than 0",
		"--linger-timeout=0s":    "--linger-timeout 0s: must be more than 0",
	} {
		o, err := parseArgs([]string{"--receive", "--broadcast", "--local-ivo", "ivo://a.b/c", "--eventdb", t.TempDir(), flag}, io.Discard)
		if err == nil {
			_, err = o.config(nil)
		}
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", flag, err, want)
		}
	}
}

// Every comet command line in deployments/ must parse.
func TestDeploymentCommandLinesParse(t *testing.T) {
	units, _ := filepath.Glob("../../deployments/systemd/*.service")
	if len(units) == 0 {
		t.Fatal("no systemd units found")
	}
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(data), "\\\n", " ")
		for _, line := range strings.Split(text, "\n") {
			rest, ok := strings.CutPrefix(line, "ExecStart=")
			if !ok {
				continue
			}
			fields := strings.Fields(rest)
			if !strings.HasSuffix(fields[0], "/comet") {
				continue
			}
			// The units' handlers are not installed here.
			o, err := parseArgs(append(fields[1:], "--cmd-allow-missing"), io.Discard)
			if err == nil {
				_, err = o.config(nil)
			}
			if err != nil {
				t.Errorf("%s: %v", filepath.Base(u), err)
			}
		}
	}
}

// Every option is listed in "comet -h", once, in a group, with its
// aliases.
func TestEveryOptionIsListed(t *testing.T) {
	if unlisted, unknown := usage.Unlisted((&options{}).flags()); len(unlisted)+len(unknown) > 0 {
		t.Errorf("options not listed in comet -h: %q; listed but no option, or listed twice: %q", unlisted, unknown)
	}
}
