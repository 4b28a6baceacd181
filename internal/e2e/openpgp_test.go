package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/comet-go/comet/internal/gpgtest"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/signature"
	"github.com/comet-go/comet/voevent"
	"github.com/comet-go/comet/vtp"
)

// OpenPGP with the real binaries (docs/openpgp.md): key reloading on
// SIGHUP, comet-sendvo --sign, signatures checked by and made with real
// GnuPG, start-up errors.

var pgpDir = filepath.Join(testdataDir, "openpgp")

const (
	authorFpr   = "486658CA5AAD0680E4D75E445EFA82579802FF2D"
	authorLong  = "5EFA82579802FF2D"
	listenerFpr = "CBB85D4B7F4A992A9CC35AC39475EF81F46E9064"
	authorIVORN = "ivo://example.org/author"
)

func pgpFile(name string) string { return filepath.Join(pgpDir, name) }

func pgpVector(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(pgpFile(name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// unsignedEvent is event-unsigned.xml (AuthorIVORN ivo://example.org/author)
// with another ivorn, written to a file for comet-sendvo.
func unsignedEvent(t *testing.T, fragment string) (path string, data []byte) {
	t.Helper()
	data = vtptest.WithIVORN(pgpVector(t, "event-unsigned.xml"), authorIVORN+"#"+fragment)
	return writeFile(t, filepath.Join(t.TempDir(), fragment+".xml"), data), data
}

// waitLog waits until the process output holds s n times.
func (p *proc) waitLog(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for strings.Count(p.out.String(), s) < n {
		select {
		case <-p.exited:
			t.Fatalf("comet exited (%v) before logging %q:\n%s", p.cmd.ProcessState, s, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not logged %d times:\n%s", s, n, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hup sends SIGHUP. cmd/comet installs its SIGHUP handler only after
// broker.Start returns, while its ports accept connections as soon as
// they are bound, before the bus opens: a SIGHUP in between kills the
// process (status 129). So wait for the end of start-up first.
func (p *proc) hup(t *testing.T) {
	t.Helper()
	p.waitLog(t, "broker started", 1)
	time.Sleep(100 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGHUP)
}

// reload sends SIGHUP and waits for one more log line containing want
// than there were before: each reload logs the same lines, so an earlier
// reload's line must not count for this one.
func (p *proc) reload(t *testing.T, want string) {
	t.Helper()
	n := strings.Count(p.out.String(), want)
	p.hup(t)
	p.waitLog(t, want, n+1)
}

func mustAckE2E(t *testing.T, addr string, payload []byte) {
	t.Helper()
	if m := submit(t, addr, payload); m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("want ack, got %+v", m)
	}
}

func sendSigned(t *testing.T, addr, file string, signArgs ...string) {
	t.Helper()
	args := append(append([]string{}, signArgs...), "--secret-keys", pgpFile("author.sec.asc"), addr, file)
	out, code := runCmd(t, "comet-sendvo", nil, args...)
	if code != 0 || !strings.Contains(out, "acknowledged") {
		t.Fatalf("comet-sendvo %q: exit %d: %s", args, code, out)
	}
}

// SIGHUP re-reads --trusted-keys: an author whose key was added is
// accepted without a restart; a bad key file keeps the keys in use.
func TestOpenPGPSIGHUPReloadsTrustedKeys(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "notary.pub.asc"), pgpVector(t, "notary.pub.asc"))
	db, p := t.TempDir(), newPorts(t)
	c := startComet(t, db, p, "--sender-auth", "--trusted-keys", dir)
	s := dial(t, p.castAddr())

	signed := pgpVector(t, "event-signed-author.xml")
	m := submit(t, p.recvAddr(), signed)
	if m == nil || m.Role != vtp.RoleNak || !strings.HasPrefix(m.Result, "Event rejected: Signature validation failed: unknown key") ||
		!strings.Contains(m.Result, authorFpr) {
		t.Fatalf("author key not loaded yet: want a nak naming the unknown key, got %+v", m)
	}

	writeFile(t, filepath.Join(dir, "author.pub.asc"), pgpVector(t, "author.pub.asc"))
	c.reload(t, "OpenPGP keys reloaded")
	// The nak recorded nothing: the same bytes are accepted now.
	mustAckE2E(t, p.recvAddr(), signed)
	if !s.WaitEvents(1, wait) || !bytes.Equal(s.Events()[0], signed) {
		t.Fatalf("subscriber got %q, want the signed event byte-identical", s.IVORNs())
	}

	writeFile(t, filepath.Join(dir, "garbage.asc"), []byte("this is not a key\n"))
	c.reload(t, "OpenPGP keys not reloaded")
	if !strings.Contains(c.out.String(), "garbage.asc") {
		t.Errorf("the failed reload does not name the bad file:\n%s", c.out.String())
	}
	file, _ := unsignedEvent(t, "after-bad-reload")
	sendSigned(t, p.recvAddr(), file, "--sign", "--key", authorFpr, "--passphrase-file", pgpFile("passphrase.txt"))
	if !s.WaitEvents(2, wait) {
		t.Fatal("event accepted after the failed reload not delivered")
	}
	if strings.Count(c.out.String(), "OpenPGP keys reloaded") != 1 {
		t.Errorf("a reload with a bad file was reported as done:\n%s", c.out.String())
	}
}

// gpgVerify has gpg check doc's signature over the span the signature
// package extracts: span A, and the one block's armour.
func gpgVerify(t *testing.T, g *gpgtest.Home, doc []byte) (string, error) {
	t.Helper()
	a, _, err := signature.Spans(doc)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := signature.Blocks(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 1 {
		t.Fatalf("%d signature blocks, want 1", len(blocks))
	}
	return g.Verify(blocks[0].Armour, a)
}

// gpgSign has gpg sign span A of doc with key fpr and appends the
// signature as signature.Append does.
func gpgSign(t *testing.T, g *gpgtest.Home, fpr string, doc []byte) []byte {
	t.Helper()
	a, _, err := signature.Spans(doc)
	if err != nil {
		t.Fatal(err)
	}
	return signature.Append(doc, g.DetachSign(fpr, a))
}

// comet-sendvo --sign, in both forms, against comet --sender-auth: acked,
// and what subscribers receive is the event's own bytes plus a signature
// that GnuPG verifies over span A.
func TestOpenPGPSendVOSignVerifiedByGnuPG(t *testing.T) {
	g := gpgtest.New(t)
	g.Run(nil, "--import", pgpFile("author.pub.asc"))

	db, p := t.TempDir(), newPorts(t)
	startComet(t, db, p, "--sender-auth", "--trusted-keys", pgpFile("author.pub.asc"))
	s := dial(t, p.castAddr())
	pass := pgpFile("passphrase.txt")
	file1, ev1 := unsignedEvent(t, "sendvo-sign-key")
	sendSigned(t, p.recvAddr(), file1, "--sign", "--key", authorFpr, "--passphrase-file", pass)
	file2, ev2 := unsignedEvent(t, "sendvo-sign-keyid-file")
	sendSigned(t, p.recvAddr(), file2, "--sign", authorLong+":"+pass)
	file3, ev3 := unsignedEvent(t, "sendvo-s-shortid-file")
	sendSigned(t, p.recvAddr(), file3, "-s", authorFpr[32:]+":"+pass) // short key ID

	if !s.WaitEvents(3, wait) {
		t.Fatalf("subscriber got %q", s.IVORNs())
	}
	for i, want := range [][]byte{ev1, ev2, ev3} {
		got := s.Events()[i]
		if !bytes.HasPrefix(got, want) || !bytes.HasPrefix(got[len(want):], []byte("<!--\n=====BEGIN PGP SIGNATURE=====\n")) ||
			!bytes.HasSuffix(got, []byte("=====END PGP SIGNATURE=====\n\n-->")) {
			t.Fatalf("event %d: not the file's bytes followed by one signature comment:\n%s", i, got)
		}
		out, err := gpgVerify(t, g, got)
		if err != nil {
			t.Fatalf("event %d: gpg --verify: %v\n%s", i, err, out)
		}
		if !strings.Contains(out, `Good signature from "ivo://example.org/author"`) {
			t.Fatalf("event %d: gpg says:\n%s", i, out)
		}
		// The check has teeth: one byte changed in the span fails.
		tampered := bytes.Replace(got, []byte("Composed event"), []byte("Composed Event"), 1)
		if out, err := gpgVerify(t, g, tampered); err == nil || !strings.Contains(out, "BAD signature") {
			t.Fatalf("event %d: gpg accepted a tampered span:\n%s", i, out)
		}
	}
}

// signedSub answers the broker's authenticate request with reply (exact
// bytes), answers iamalive and acks events.
type signedSub struct {
	conn   net.Conn
	mu     sync.Mutex
	events [][]byte
	done   chan struct{}
}

func dialSigned(t *testing.T, addr string, reply []byte) *signedSub {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := &signedSub{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		fr := vtp.NewFrameReader(conn, 1<<20)
		for {
			p, err := fr.ReadFrame()
			if err != nil {
				return
			}
			info, err := voevent.Inspect(p, voevent.Options{})
			switch {
			case err != nil:
			case voevent.IsVOEventRole(info.Role):
				s.mu.Lock()
				s.events = append(s.events, p)
				s.mu.Unlock()
				vtp.WriteFrame(conn, vtp.Ack(info.IVORN, "ivo://test.subscriber/gpg", time.Now()))
			case info.Role == vtp.RoleAuthenticate:
				vtp.WriteFrame(conn, reply)
			case info.Role == vtp.RoleIAmAlive:
				vtp.WriteFrame(conn, vtp.IAmAlive(localIVO, "ivo://test.subscriber/gpg", time.Now()))
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-s.done })
	return s
}

func (s *signedSub) Events() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.events...)
}

// A key made by GnuPG (user ID = the event's AuthorIVORN) and signatures
// made by gpg: the event is accepted by comet --sender-auth, and a
// subscriber whose authenticate reply gpg signed is served by
// --subscriber-auth; an unsigned one is dropped without events.
func TestOpenPGPGnuPGMadeKeyAndSignatures(t *testing.T) {
	g := gpgtest.New(t)
	fpr := g.GenKey(authorIVORN, "ed25519")
	keyFile := writeFile(t, filepath.Join(t.TempDir(), "gpg-key.asc"), g.Run(nil, "--export", "--armor", fpr))

	db, p := t.TempDir(), newPorts(t)
	c := startComet(t, db, p, "--sender-auth", "--subscriber-auth", "--trusted-keys", keyFile, "--auth-timeout", "10s")

	reply := gpgSign(t, g, fpr, vtp.AuthenticateReply(localIVO, "ivo://test.subscriber/gpg", nil, time.Now()))
	served := dialSigned(t, p.castAddr(), reply)
	c.waitLog(t, "subscriber authenticated", 1)
	if !strings.Contains(c.out.String(), fpr) {
		t.Errorf("the authentication log line does not name the gpg key %s:\n%s", fpr, c.out.String())
	}
	unsigned := dialMode(t, p.castAddr(), vtptest.Comet) // replies unsigned
	c.waitLog(t, "authentication failed: no signature", 1)

	_, ev := unsignedEvent(t, "gpg-signed")
	signed := gpgSign(t, g, fpr, ev)
	mustAckE2E(t, p.recvAddr(), signed)
	if !vtptest.WaitUntil(wait, func() bool { return len(served.Events()) == 1 }) {
		t.Fatal("gpg-authenticated subscriber did not get the gpg-signed event")
	}
	if !bytes.Equal(served.Events()[0], signed) {
		t.Fatal("delivered event is not the submitted bytes")
	}
	if !vtptest.WaitUntil(wait, unsigned.Closed) || unsigned.Count() != 0 {
		t.Fatalf("unsigned subscriber: closed %v, %d events", unsigned.Closed(), unsigned.Count())
	}
	// The unsigned original is refused by the same process.
	if m := submit(t, p.recvAddr(), vtptest.WithIVORN(ev, authorIVORN+"#gpg-unsigned")); m == nil || m.Role != vtp.RoleNak ||
		!strings.Contains(m.Result, "Signature validation failed: no signature") {
		t.Fatalf("unsigned event: %+v", m)
	}
}

// OpenPGP start-up errors: exit status 2 and one line saying what is wrong.
func TestOpenPGPStartupErrors(t *testing.T) {
	dir := t.TempDir()
	wrongPass := writeFile(t, filepath.Join(dir, "wrong-pass"), []byte("not-the-passphrase\n"))
	kbx := make([]byte, 32)
	copy(kbx[8:], "KBXf")
	kbxFile := writeFile(t, filepath.Join(dir, "pubring.kbx"), kbx)
	recv := []string{"--receive", "tcp:" + strconv.Itoa(freePort(t)) + ":interface=127.0.0.1", "--local-ivo", localIVO, "--eventdb", t.TempDir()}
	sub := []string{"--subscribe", "127.0.0.1:1", "--eventdb", t.TempDir(), "--secret-keys", pgpFile("listener.sec.asc")}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"wrong passphrase", append(sub[:len(sub):len(sub)], "--key-id", listenerFpr, "--passphrase-file", wrongPass), "wrong passphrase"},
		{"wrong passphrase, --sign form", append(sub[:len(sub):len(sub)], "--sign", listenerFpr+":"+wrongPass), "wrong passphrase"},
		{"unreadable passphrase file", append(sub[:len(sub):len(sub)], "--key-id", listenerFpr, "--passphrase-file", filepath.Join(dir, "missing")), "passphrase file"},
		{"passphrase file is a directory", append(sub[:len(sub):len(sub)], "--key-id", listenerFpr, "--passphrase-file", dir), "passphrase file"},
		{"sender-auth without trusted keys", append(recv[:len(recv):len(recv)], "--sender-auth"), "--trusted-keys"},
		{"keybox as trusted keys", append(recv[:len(recv):len(recv)], "--sender-auth", "--trusted-keys", kbxFile), "gpg --export"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, code := runCmd(t, "comet", nil, c.args...)
			line := strings.TrimSuffix(out, "\n")
			if code != 2 || strings.Contains(line, "\n") || !strings.HasPrefix(line, "comet: ") || !strings.Contains(line, c.want) {
				t.Fatalf("exit %d, output %q; want 2 and one line with %q", code, out, c.want)
			}
			t.Log(line)
		})
	}
	// comet-sendvo refuses a wrong passphrase the same way.
	file, _ := unsignedEvent(t, "wrong-pass")
	out, code := runCmd(t, "comet-sendvo", nil, "--sign", "--key", authorFpr, "--passphrase-file", wrongPass,
		"--secret-keys", pgpFile("author.sec.asc"), "127.0.0.1:1", file)
	if code != 2 || !strings.Contains(out, "wrong passphrase") || strings.Contains(strings.TrimSuffix(out, "\n"), "\n") {
		t.Fatalf("comet-sendvo with a wrong passphrase: exit %d, output %q", code, out)
	}
}

// A SIGHUP (a key reload) that comes while the broker is still starting
// must not kill it. Here it comes as soon as the receive port accepts
// connections, the usual readiness check of scripts and supervisors; the
// listeners are bound before the bus opens, so the broker is still
// starting. SIGHUP's default action would end the process (exit status
// 129), so cmd/comet must catch it before it opens the listeners.
func TestOpenPGPSIGHUPDuringStartupKeepsBroker(t *testing.T) {
	p := newPorts(t)
	c := launch(t, "comet", "--receive", fmt.Sprintf("tcp:%d:interface=127.0.0.1", p.recv), "--local-ivo", localIVO,
		"--eventdb", t.TempDir(), "--node", "e2e", "--sender-auth", "--trusted-keys", pgpFile("author.pub.asc"))
	c.waitListening(t, p.recvAddr(), time.Millisecond)
	c.cmd.Process.Signal(syscall.SIGHUP)
	select {
	case <-c.exited:
		t.Fatalf("comet died of a SIGHUP sent once its port accepted (%v)", c.cmd.ProcessState)
	case <-time.After(time.Second):
	}
	mustAckE2E(t, p.recvAddr(), pgpVector(t, "event-signed-author.xml"))
}
