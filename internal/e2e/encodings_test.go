package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/text/encoding/unicode"

	"github.com/comet-go/comet/internal/gpgtest"
	"github.com/comet-go/comet/internal/vtptest"
)

// The real binaries with the notice in every encoding
// (testdata/encodings): comet-sendvo submits each file byte for byte and
// exits 0 exactly where Comet acks; `comet tap --filter` on the non-ASCII
// Param value prints every accepted one, decoded, naming its encoding.
func TestEncodedNoticesThroughSendVOAndTap(t *testing.T) {
	dir := filepath.Join(testdataDir, "encodings")
	expr, notices := vtptest.EncodedNotices(t, dir)
	natsPort := freePort(t)
	p := newPorts(t)
	startComet(t, t.TempDir(), p, "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort))
	note := map[string]string{}
	for _, n := range notices {
		out, code := runCmd(t, "comet-sendvo", nil, p.recvAddr(), filepath.Join(dir, n.File))
		switch acked := n.Comet == "ack"; {
		case acked && code != 0:
			t.Errorf("%s: exit %d: %s", n.File, code, out)
		case !acked && (code != 1 || !strings.Contains(out, "without a receipt") && !strings.Contains(out, "not a well-formed XML document")):
			t.Errorf("%s: exit %d: %s; Comet sends no reply", n.File, code, out)
		case acked:
			note[n.IVORN] = n.LocalNote
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "comet"), "tap", "--nats", fmt.Sprintf("nats://127.0.0.1:%d", natsPort),
		"--since", "1h", "--follow=false", "--payload", "--filter", expr)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("comet tap: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != len(note) {
		t.Fatalf("tap printed %d lines, want %d", len(lines), len(note))
	}
	encodings := map[string]bool{}
	for _, l := range lines {
		var got struct {
			IVORN, Encoding, Payload string
			Params                   []struct{ Name, Value string }
		}
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatal(err)
		}
		encodings[got.Encoding] = true
		want, ok := note[got.IVORN]
		if !ok {
			t.Errorf("tap printed %s, which was not acked", got.IVORN)
			continue
		}
		var value string
		for _, p := range got.Params {
			if p.Name == "Local_Note" {
				value = p.Value
			}
		}
		if value != want || !strings.Contains(got.Payload, `<Param name="Loc_Error"`) {
			t.Errorf("%s (%s): Local_Note %q, want %q", got.IVORN, got.Encoding, value, want)
		}
	}
	for _, e := range []string{"", "UTF-16LE", "UTF-16BE", "UTF-32BE", "Shift_JIS", "GB18030", "KOI8-R", "IBM037"} {
		if !encodings[e] {
			t.Errorf("no line with encoding %q (have %v)", e, encodings)
		}
	}
}

// comet-sendvo --sign on a UTF-16 event, against --sender-auth: the
// signature over the root element's UTF-16 bytes travels in a UTF-16
// comment; the broker verifies it, the subscriber gets the bytes, and
// GnuPG verifies it too.
func TestSendVOSignsUTF16Event(t *testing.T) {
	g := gpgtest.New(t)
	g.Run(nil, "--import", pgpFile("author.pub.asc"))
	db, p := t.TempDir(), newPorts(t)
	startComet(t, db, p, "--sender-auth", "--trusted-keys", pgpFile("author.pub.asc"))
	s := dial(t, p.castAddr())

	_, utf8 := unsignedEvent(t, "sendvo-sign-utf16")
	text := bytes.Replace(utf8, []byte(`encoding="UTF-8"`), []byte(`encoding="UTF-16"`), 1)
	if bytes.Equal(text, utf8) {
		t.Fatal("event-unsigned.xml has no UTF-8 declaration to change")
	}
	ev, err := unicode.UTF16(unicode.LittleEndian, unicode.UseBOM).NewEncoder().Bytes(text)
	if err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, filepath.Join(t.TempDir(), "utf16.xml"), ev)
	sendSigned(t, p.recvAddr(), file, "--sign", "--key", authorFpr, "--passphrase-file", pgpFile("passphrase.txt"))
	if !s.WaitEvents(1, wait) {
		t.Fatal("signed UTF-16 event not delivered")
	}
	got := s.Events()[0]
	comment, _ := unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM).NewEncoder().Bytes([]byte("<!--\n=====BEGIN PGP SIGNATURE=====\n"))
	if !bytes.HasPrefix(got, ev) || !bytes.HasPrefix(got[len(ev):], comment) {
		t.Fatalf("not the file's bytes followed by a UTF-16 signature comment: % X", got[len(ev):min(len(got), len(ev)+32)])
	}
	out, err := gpgVerify(t, g, got)
	if err != nil || !strings.Contains(out, `Good signature from "ivo://example.org/author"`) {
		t.Fatalf("gpg --verify: %v\n%s", err, out)
	}
}
