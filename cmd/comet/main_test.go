package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
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
