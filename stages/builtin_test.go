package stages

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/internal/vtptest"
)

func TestSaveName(t *testing.T) {
	for _, c := range []struct{ ivorn, want string }{
		// docs/handlers.md §5
		{"ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_1125809-092", "ivo__nasa.gsfc.gcn_SWIFTBAT_GRB_Pos_1125809092"},
		{"ivo://gwnet/LVC#S190425z-1-Initial", "ivo__gwnet_LVCS190425z1Initial"},
		{"ivo://voevent.4pisky.org/ASASSN#2016-09-25.47_2016fvf_PTSS-16nqb_PS16ejf", "ivo__voevent.4pisky.org_ASASSN20160925.47_2016fvf_PTSS16nqb_PS16ejf"},
		{"ivo://au.csiro.atnf/parkes#FRB1405141714/56791.71885417", "ivo__au.csiro.atnf_parkesFRB1405141714_56791.71885417"},
		{"ivo://example.org/broker#TestEvent-2024-05-01T12:00:00Z", "ivo__example.org_brokerTestEvent20240501T120000Z"},
		// the rules one by one
		{".hidden", "hidden"},
		{"..x", ".x"},
		{`a\b/c`, "a_b_c"},
		{"é ü#?*", ""},
		{"", ""},
	} {
		if got := SaveName(c.ivorn); got != c.want {
			t.Errorf("SaveName(%q) = %q, want %q", c.ivorn, got, c.want)
		}
	}
}

func TestSaveCollisions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "dir") // created on first use
	s, err := NewSaveEvent(dir)
	if err != nil {
		t.Fatal(err)
	}
	ivorn := "ivo://gwnet/LVC#S190425z-1-Initial"
	base := "ivo__gwnet_LVCS190425z1Initial"
	for i, want := range []string{base, base + "_", base + "__"} {
		payload := []byte(fmt.Sprintf("<event n=\"%d\"/>\r\n\x00\xff", i))
		name, err := s.Save(ivorn, payload)
		if err != nil || name != want {
			t.Fatalf("save %d = %q, %v; want %q", i, name, err, want)
		}
		got, err := os.ReadFile(filepath.Join(dir, want))
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("file %s holds %q (%v), want %q", want, got, err, payload)
		}
	}
	// Names that are the directory itself or its parent are taken.
	for _, c := range []struct{ ivorn, want string }{{"", "_"}, {"#", "__"}, {".", "___"}, {"...", ".._"}} {
		if name, err := s.Save(c.ivorn, []byte("x")); err != nil || name != c.want {
			t.Errorf("Save(%q) = %q, %v; want %q", c.ivorn, name, err, c.want)
		}
	}

	// Concurrent saves of one ivorn: every payload lands in a file of its own.
	const n = 24
	var wg sync.WaitGroup
	names := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if names[i], err = s.Save("ivo://x/y#same", []byte(fmt.Sprintf("payload %d", i))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	all := readAll(t, dir, "ivo__x_ysame")
	if len(all) != n {
		t.Fatalf("%d files for %d saves", len(all), n)
	}
	for i := range n {
		if c := countEqual(all, []byte(fmt.Sprintf("payload %d", i))); c != 1 {
			t.Errorf("payload %d found %d times", i, c)
		}
		if strings.Trim(names[i], "_") != "ivo__x_ysame" {
			t.Errorf("name %q", names[i])
		}
	}
	if tmp := files(t, dir, ".comet-save-"); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

func TestPrintEventSerialized(t *testing.T) {
	var buf vtptest.SyncBuffer
	p := NewPrintEvent(&buf)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Handle(t.Context(), &bus.Event{Payload: []byte(strings.Repeat(fmt.Sprint(i%10), 1000))})
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 50 {
		t.Fatalf("%d lines", len(lines))
	}
	for _, l := range lines {
		if l != strings.Repeat(l[:1], 1000) {
			t.Fatalf("interleaved line %.40q...", l)
		}
	}
}

func TestUnknownAction(t *testing.T) {
	_, err := Stages(Config{Actions: []string{"print-event", "x"}})
	want := `unknown action "x"; known actions: print-event, save-event`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if _, err := Start(t.Context(), nil, Config{Actions: []string{"bogus"}}); err == nil ||
		!strings.Contains(err.Error(), `unknown action "bogus"; known actions: print-event, save-event`) {
		t.Fatalf("Start: %v", err)
	}
	if _, err := Stages(Config{Commands: []string{"/bin/true", "/bin/true"}}); err == nil ||
		!strings.Contains(err.Error(), "given twice") {
		t.Fatalf("duplicate command: %v", err)
	}
	sts, err := Stages(Config{Commands: []string{"/bin/true"}, Actions: []string{"save-event", "print-event", "save-event"}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range sts {
		names = append(names, s.Name())
	}
	if got := strings.Join(names, " "); got != CommandStageName("/bin/true")+" save-event print-event" {
		t.Errorf("stages %s", got)
	}
}

func TestCommandStageName(t *testing.T) {
	a := CommandStageName("/usr/local/bin/notify me.sh")
	if !strings.HasPrefix(a, "cmd-notify_me_sh-") || len(a) != len("cmd-notify_me_sh-")+8 {
		t.Errorf("name %q", a)
	}
	if a != CommandStageName("/usr/local/bin/notify me.sh") || a == CommandStageName("/usr/bin/notify me.sh") {
		t.Error("names are not stable per path")
	}
	wd, _ := os.Getwd()
	if CommandStageName("x.sh") != CommandStageName(filepath.Join(wd, "x.sh")) {
		t.Error("relative and absolute forms of one path differ")
	}
	if err := bus.CheckStageName(CommandStageName(strings.Repeat("ü", 300))); err != nil {
		t.Error(err)
	}
}

func TestAckWaitCoversRetries(t *testing.T) {
	cfg := Config{}
	cfg.setDefaults()
	got := ackWait(DefaultCmdTimeout+CmdWaitDelay, cfg)
	// 6 attempts of 65 s, backoff 1+2+4+8+16 s (+10%), plus the margin.
	want := 6*65*time.Second + time.Duration(31*1.1*float64(time.Second)) + AckWaitMargin
	if got != want {
		t.Errorf("ackWait = %v, want %v", got, want)
	}
}
