package e2e

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// nobody is the unprivileged user the broker runs as where a test needs
// file permissions to hold (root ignores them).
const nobody = 65534

// Bounds of what an author may wait around a store fault (issue 16).
const (
	faultAnswerWithin  = time.Second
	recoverAckedWithin = 10 * time.Second
)

// The store's directory is made unwritable under a running broker (run as
// an unprivileged user, so that permissions hold), then writable again:
// the broker says so once, closes each submission without a receipt
// within a second while it lasts, acks again within ten seconds of the
// directory being writable, without a restart; every acked event reaches
// the subscriber, once.
func TestStoreDirectoryUnwritableMidRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the broker as another user and mount its store")
	}
	top, err := os.MkdirTemp("", "comet-unwritable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	os.Chmod(top, 0o755) // the broker's user must reach its store
	mnt := vtptest.MountTmpfs(t, top, 256<<20, fmt.Sprintf("uid=%d,gid=%d,mode=0755", nobody, nobody))
	bin := filepath.Join(mnt, "comet")
	copyFile(t, filepath.Join(binDir, "comet"), bin, 0o755)
	store := filepath.Join(mnt, "store")

	p := newPorts(t)
	pr := newProc(execCometAs(bin, nobody,
		"--receive", fmt.Sprintf("tcp:%d:interface=127.0.0.1", p.recv),
		"--broadcast", fmt.Sprintf("tcp:%d:interface=127.0.0.1", p.cast),
		"--local-ivo", localIVO, "--eventdb", store, "--node", "e2e",
		"--broadcast-test-interval", "0", "--max-store", "64MB"))
	pr.start(t, "comet", io.Discard)
	for _, addr := range []string{p.recvAddr(), p.castAddr()} {
		pr.waitListening(t, addr, 20*time.Millisecond)
	}
	sub := dial(t, p.castAddr())
	ev := benchEvent(t)
	ivorn := func(i int) string { return fmt.Sprintf("ivo://test.author/unwritable#%d", i) }
	event := func(i int) []byte { return vtptest.WithIVORN(ev, ivorn(i)) }
	var acked []string
	for i := range 20 {
		if m := submit(t, p.recvAddr(), event(i)); m == nil || m.Role != vtp.RoleAck {
			t.Fatalf("event %d before the fault: %+v", i, m)
		}
		acked = append(acked, ivorn(i))
	}

	chmodDirs(t, store, 0o555)
	next, refused := 20, 0
	deadline := time.Now().Add(5 * time.Second)
	for refused < 10 {
		t0 := time.Now()
		m, err := vtptest.Submit(p.recvAddr(), event(next), wait)
		d := time.Since(t0)
		switch {
		case err != nil:
			t.Fatal(err)
		case m != nil && m.Role == vtp.RoleAck && refused == 0 && time.Now().Before(deadline):
			acked = append(acked, ivorn(next)) // before the broker noticed
		case m != nil:
			t.Fatalf("submission %d during the fault answered %s; want the connection closed without a receipt", next, m.Role)
		case d > faultAnswerWithin:
			t.Fatalf("submission %d during the fault closed after %v; want within %v", next, d, faultAnswerWithin)
		default:
			refused++
		}
		next++
	}

	chmodDirs(t, store, 0o750)
	freed := time.Now()
	for {
		m, err := vtptest.Submit(p.recvAddr(), event(next), wait)
		if err != nil {
			t.Fatal(err)
		}
		if m != nil && m.Role == vtp.RoleAck {
			acked = append(acked, ivorn(next))
			break
		}
		if m != nil {
			t.Fatalf("submission after the fault answered %s", m.Role)
		}
		if time.Since(freed) > recoverAckedWithin {
			t.Fatalf("no submission acked within %v of the directory being writable again", recoverAckedWithin)
		}
		next++
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("acked again %v after the directory was writable again", time.Since(freed).Round(time.Millisecond))
	for range 10 {
		next++
		if m := submit(t, p.recvAddr(), event(next)); m == nil || m.Role != vtp.RoleAck {
			t.Fatalf("event %d after the fault: %+v", next, m)
		}
		acked = append(acked, ivorn(next))
	}
	select {
	case <-pr.exited:
		t.Fatalf("comet exited:\n%s", pr.out.String())
	default:
	}
	if !sub.WaitFor(wait, func(s *vtptest.Subscriber) bool { return len(missing(s.IVORNs(), acked)) == 0 }) {
		t.Fatalf("the subscriber lacks acked events %v", missing(sub.IVORNs(), acked))
	}
	time.Sleep(time.Second) // anything delivered twice would come now
	seen := map[string]int{}
	for _, iv := range sub.IVORNs() {
		if seen[iv]++; seen[iv] == 2 {
			t.Errorf("%s delivered twice", iv)
		}
	}
	log := pr.out.String()
	if n := strings.Count(log, "event store is not taking writes"); n != 1 {
		t.Errorf("the fault was logged %d times, want once:\n%s", n, log)
	}
	if !strings.Contains(log, "store="+store) || !strings.Contains(log, "free=") {
		t.Errorf("the fault's log line does not name the store and its free space:\n%s", log)
	}
}

// execCometAs is the comet binary bin run as uid (and the same gid).
func execCometAs(bin string, uid uint32, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	return cmd
}

// chmodDirs sets the mode of dir and of every directory under it.
func chmodDirs(t *testing.T, dir string, mode fs.FileMode) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(path, mode)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string, mode fs.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
}

// missing lists what of want is not in have.
func missing(have, want []string) []string {
	set := make(map[string]bool, len(have))
	for _, h := range have {
		set[h] = true
	}
	var out []string
	for _, w := range want {
		if !set[w] {
			out = append(out, w)
		}
	}
	return out
}

// --max-store sizes the store to the disk: 64MB starts on a 200 MB file
// system, where the default (1.5 GiB) is refused at start in one line
// naming the numbers, with exit status 2.
func TestMaxStoreFitsTheDisk(t *testing.T) {
	mnt := vtptest.Tmpfs(t, 200<<20)
	p := newPorts(t)
	pr := startComet(t, filepath.Join(mnt, "small"), p, "--max-store", "64MB")
	if m := submit(t, p.recvAddr(), benchEvent(t)); m == nil || m.Role != vtp.RoleAck {
		t.Fatalf("submission to a 64MB store: %+v", m)
	}
	pr.kill(t)

	db := filepath.Join(mnt, "large")
	out, code := runCmd(t, "comet", nil, "--receive", fmt.Sprintf("tcp:%d:interface=127.0.0.1", freePort(t)),
		"--local-ivo", localIVO, "--eventdb", db)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	want := "comet: --max-store 1.5 GiB does not fit in --eventdb " + db + ": its file system has "
	if code != 2 || len(lines) != 1 || !strings.HasPrefix(last, want) || !strings.Contains(last, "give --max-store ") {
		t.Fatalf("default store on 200 MB: exit %d, output %q; want 2 and a line starting %q", code, out, want)
	}
	t.Log(last)
}

// A store that cannot come back in this process (its file system fills,
// then the store's JetStream directory turns read-only while the rest of
// the file system is writable again, as after a volume remounted
// read-only under it): the broker tries StoreRestartAttempts restarts and
// then exits with status 74 (ExitStoreFailed), which a service manager
// restarts, instead of waiting for ever.
func TestUnrecoverableStoreExits74(t *testing.T) {
	mnt := vtptest.Tmpfs(t, 96<<20)
	store := filepath.Join(mnt, "store")
	p := newPorts(t)
	pr := startComet(t, store, p, "--max-store", "32MB")
	ev := benchEvent(t)
	event := func(i int) []byte {
		return vtptest.WithIVORN(ev, fmt.Sprintf("ivo://test.author/unrecoverable#%d", i))
	}
	for i := range 20 {
		if m := submit(t, p.recvAddr(), event(i)); m == nil || m.Role != vtp.RoleAck {
			t.Fatalf("event %d before the fault: %+v", i, m)
		}
	}

	free := vtptest.Fill(t, mnt)
	next, refused := 20, 0
	deadline := time.Now().Add(10 * time.Second)
	for refused < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the broker still acks with its file system full")
		}
		m, err := vtptest.Submit(p.recvAddr(), event(next), wait)
		switch {
		case err != nil:
			t.Fatal(err)
		case m == nil:
			refused++
		case m.Role != vtp.RoleAck:
			t.Fatalf("submission %d during the fault answered %s; want the connection closed without a receipt", next, m.Role)
		}
		next++
	}

	js := filepath.Join(store, "jetstream")
	readOnlyBind(t, js)
	free()
	start := time.Now()
	// Each attempt waits StoreRetryInterval (1 s) and restarts JetStream.
	limit := time.Duration(bus.StoreRestartAttempts)*3*time.Second + 10*time.Second
	select {
	case <-pr.exited:
	case <-time.After(limit):
		t.Fatalf("comet still running %v after its store became unrecoverable:\n%s", limit, pr.out.String())
	}
	code := pr.cmd.ProcessState.ExitCode()
	t.Logf("exited with %d after %v", code, time.Since(start).Round(time.Millisecond))
	if code != 74 {
		t.Fatalf("exit status %d, want 74 (ExitStoreFailed):\n%s", code, pr.out.String())
	}
	log := pr.out.String()
	if n := strings.Count(log, "event store restarted but still not taking writes"); n != bus.StoreRestartAttempts {
		t.Errorf("%d failed restarts logged, want %d:\n%s", n, bus.StoreRestartAttempts, log)
	}
	if !strings.Contains(log, bus.ErrStoreUnrecoverable.Error()) || !strings.Contains(log, store) {
		t.Errorf("the last words do not say the store %s cannot be recovered:\n%s", store, log)
	}
}

// readOnlyBind makes dir read-only, for root too, by bind-mounting it on
// itself read-only; the test's cleanup unmounts it.
func readOnlyBind(t *testing.T, dir string) {
	t.Helper()
	for _, args := range [][]string{{"--bind", dir, dir}, {"-o", "remount,bind,ro", dir}} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			exec.Command("umount", dir).Run()
			t.Fatalf("mount %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}
