package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const event = `<?xml version="1.0" encoding="UTF-8"?>
<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" version="2.0" role="observation" ivorn="ivo://example.org/author#evt-0001"/>
`

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for name, args := range map[string][]string{
		"no -file":     {"-n", "1"},
		"missing file": {"-file", filepath.Join(dir, "nope.xml")},
		"bad flag":     {"-bogus"},
		"extra args":   {"-file", "x", "y"},
		"bad config":   {"-file", writeEvent(t, dir), "-n", "0"},
		"empty addr":   {"-file", writeEvent(t, dir), "-receive", "127.0.0.1:1,,127.0.0.1:2"},
		"bad retry":    {"-file", writeEvent(t, dir), "-retry", "-1s"},
	} {
		var out, errb bytes.Buffer
		if rc := run(args, &out, &errb); rc != 2 {
			t.Errorf("%s: exit %d, want 2 (stderr %q)", name, rc, errb.String())
		}
	}
	var errb bytes.Buffer
	run([]string{}, &bytes.Buffer{}, &errb)
	if !strings.Contains(errb.String(), "-file is required") || !strings.Contains(errb.String(), "usage: vtp-load") {
		t.Errorf("usage text: %q", errb.String())
	}
}

func TestFailedRunExitsNonZero(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connection refused: every submission errors
	file := writeEvent(t, t.TempDir())

	var out bytes.Buffer
	if rc := run([]string{"-file", file, "-receive", addr, "-n", "3", "-c", "2"}, &out, &bytes.Buffer{}); rc != 1 {
		t.Errorf("exit %d, want 1", rc)
	}
	if !strings.Contains(out.String(), "FAILED: 3 errored") {
		t.Errorf("report:\n%s", out.String())
	}

	out.Reset()
	if rc := run([]string{"-file", file, "-receive", addr, "-n", "2", "-json"}, &out, &bytes.Buffer{}); rc != 1 {
		t.Errorf("json: exit %d, want 1", rc)
	}
	var rep map[string]any
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep["failed"] != true || rep["errors"] != float64(2) {
		t.Errorf("json report %v: %s", err, out.String())
	}
}

func TestRetryOverSeveralAddresses(t *testing.T) {
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		ln.Close() // connection refused
	}
	file := writeEvent(t, t.TempDir())
	var out bytes.Buffer
	rc := run([]string{"-file", file, "-receive", addrs[0] + ", " + addrs[1], "-retry", "200ms", "-n", "2", "-c", "1"},
		&out, &bytes.Buffer{})
	if rc != 1 {
		t.Errorf("exit %d, want 1", rc)
	}
	for _, want := range []string{addrs[0] + ", " + addrs[1], "retrying for 200ms", "retries: 2 events", "2 gave up\n", "FAILED: 2 gave up"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	rc = run([]string{"-file", file, "-receive", strings.Join(addrs, ","), "-retry", "100ms", "-n", "1", "-json"}, &out, &bytes.Buffer{})
	var rep struct {
		Addrs    []string `json:"receive_addrs"`
		RetryFor int64    `json:"retry_for_ns"`
		Retried  int      `json:"retried"`
		GaveUp   int      `json:"gave_up"`
		Errors   int      `json:"errors"`
		NAR      *int     `json:"naked_after_retry"`
		Failed   bool     `json:"failed"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rc != 1 || !rep.Failed || len(rep.Addrs) != 2 ||
		rep.RetryFor != 100e6 || rep.Retried != 1 || rep.GaveUp != 1 || rep.Errors < 2 || rep.NAR == nil {
		t.Errorf("exit %d, json %+v (%v): %s", rc, rep, err, out.String())
	}
}

func writeEvent(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "event.xml")
	if err := os.WriteFile(p, []byte(event), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
