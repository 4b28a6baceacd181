package abuse

import (
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/stages"
	"github.com/comet-go/comet/vtp"
)

// saveHarness is a broker running the save-event stage into root/a/b.
func saveHarness(t *testing.T) (h *harness, root, dir string) {
	root = t.TempDir()
	dir = filepath.Join(root, "a", "b")
	h = start(t, func(c *broker.Config) {
		c.Stages = stages.Config{Actions: []string{stages.ActionSaveEvent}, SaveDir: dir}
	})
	return h, root, dir
}

// savedFiles lists the files under root: those directly in dir, and any
// elsewhere. Saves in progress (temporary files) are left out.
func savedFiles(root, dir string) (in, out []string) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".comet-save-") {
			return nil
		}
		if filepath.Dir(p) == dir {
			in = append(in, filepath.Base(p))
		} else {
			out = append(out, p)
		}
		return nil
	})
	return
}

// Authors choose the ivorn that --save-event turns into a file name: an
// ivorn made of path syntax either gets a nak with a reason or is saved
// inside the directory, never elsewhere, never over another file.
func TestSaveEventStaysInItsDirectory(t *testing.T) {
	h, root, dir := saveHarness(t)
	ivorns := []string{
		"ivo://test.abuse/x#../../../escape",
		"ivo://test.abuse/..#..",
		"ivo://test.abuse/x#..%2F..%2Fescape",
		`ivo://test.abuse/x#..\..\escape`,
		"ivo://test.abuse/x#/etc/passwd",
		"ivo://test.abuse/x#.",
		"ivo://test.abuse/x#../../../escape", // again: a second file, not an overwrite
	}
	saved := 0
	for i, iv := range ivorns {
		p := append(vtptest.WithIVORN(tmpl, iv), strings.Repeat("\n", i)...) // a distinct payload each time
		m, err := vtptest.Submit(h.recv(), p, healthyWait)
		switch {
		case err != nil || m == nil:
			t.Errorf("%s: no receipt (%v)", iv, err)
		case m.Role == vtp.RoleNak:
			if !strings.HasPrefix(m.Result, "Event rejected: ") {
				t.Errorf("%s: nak without a reason: %q", iv, m.Result)
			}
			t.Logf("%s: nak %q", iv, m.Result)
		default:
			saved++
		}
	}
	if !waitUntil(5*time.Second, func() bool { in, _ := savedFiles(root, dir); return len(in) >= saved }) {
		in, _ := savedFiles(root, dir)
		t.Errorf("%d of %d acked events saved: %q", len(in), saved, in)
	}
	in, out := savedFiles(root, dir)
	t.Logf("saved as %q", in)
	if len(out) != 0 {
		t.Errorf("files written outside the save directory: %q", out)
	}
	h.healthy()
}

// An acked event is saved whatever its ivorn's length: a valid ivorn may
// map to a name longer than the file system allows (255 bytes).
func TestSaveEventLongIVORN(t *testing.T) {
	h, root, dir := saveHarness(t)
	iv := "ivo://test.abuse/x#" + strings.Repeat("a", 300)
	h.mustAck("an event with a 319-byte ivorn", vtptest.WithIVORN(tmpl, iv))
	// The first attempt is immediate; retries come 1 s apart and grow.
	if !waitUntil(3*time.Second, func() bool { in, _ := savedFiles(root, dir); return len(in) == 1 }) {
		in, _ := savedFiles(root, dir)
		t.Errorf("an acked event whose ivorn maps to a %d-byte file name is not saved (saved: %q): "+
			"save-event fails with ENAMETOOLONG on every attempt, so after its retries the event is dead-lettered",
			len(stages.SaveName(iv)), in)
	}
	if in, _ := savedFiles(root, dir); len(in) == 1 && !slices.Contains(in, stages.SaveName(iv)) {
		t.Logf("saved under a shortened name %q", in[0])
	}
	h.healthy()
}
