package abuse

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/vtp"
)

// prefix is a 4-byte big-endian length prefix.
func prefix(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

// Hostile framing on the receive port: every case closes without a reply,
// without waiting for the receive timeout where nothing more can come, and
// without allocating from a hostile length prefix.
func TestReceiverHostileFraming(t *testing.T) {
	h := start(t, nil) // default 20 s receive timeout: a quick close is a refusal

	t.Run("random bytes", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(6, 6))
		for i := range 20 {
			junk := make([]byte, 64+rng.IntN(4096))
			for j := range junk {
				junk[j] = byte(rng.UintN(256))
			}
			if i%2 == 1 {
				// A plausible prefix in front of the junk.
				copy(junk, prefix(uint32(len(junk)-4)))
			}
			c := dialFrom(t, "", h.recv())
			c.Write(junk)
			c.(*net.TCPConn).CloseWrite()
			got, closed, after := readUntilClosed(c, quickClose)
			if !closed || len(got) != 0 {
				t.Errorf("random frame %d (%d bytes): closed %v after %v, reply %q", i, len(junk), closed, after, got)
			}
		}
		h.healthy()
	})

	t.Run("zero-length frame", func(t *testing.T) {
		c := dialFrom(t, "", h.recv())
		c.Write(prefix(0)) // and keep the connection open
		got, closed, after := readUntilClosed(c, quickClose)
		if !closed || len(got) != 0 {
			t.Errorf("zero-length frame: closed %v after %v, reply %q", closed, after, got)
		}
		h.healthy()
	})

	t.Run("hostile length prefixes are refused before allocating", func(t *testing.T) {
		ev, iv := goodEvent("little-endian")
		le := binary.LittleEndian.AppendUint32(nil, uint32(len(ev)))
		cases := map[string][]byte{
			"0x7fffffff":               prefix(0x7fffffff),
			"0xffffffff":               prefix(0xffffffff),
			"0x80000000":               prefix(0x80000000),
			"limit+1 (100000)":         prefix(vtp.DefaultMaxFrame + 1),
			"little-endian real event": append(le, ev...),
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const conns = 25 // of each: an allocation per prefix would be terabytes
		var wg sync.WaitGroup
		for name, raw := range cases {
			for range conns {
				wg.Go(func() {
					c := dialFrom(t, "", h.recv())
					c.Write(raw) // the connection stays open: only a refusal closes it quickly
					got, closed, after := readUntilClosed(c, quickClose)
					if !closed || len(got) != 0 {
						t.Errorf("prefix %s: closed %v after %v, reply %q", name, closed, after, got)
					}
				})
			}
		}
		wg.Wait()
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<20 {
			t.Errorf("%d hostile prefixes allocated %d MB", conns*len(cases), grew>>20)
		}
		h.notRecorded("little-endian event", ev)
		h.healthy(iv)
		h.mustAck("the little-endian event, framed properly", ev) // never recorded
	})

	t.Run("truncated frame then close", func(t *testing.T) {
		ev, iv := goodEvent("truncated")
		for _, cut := range []int{2, 4, 4 + len(ev)/2, 4 + len(ev) - 1} {
			c := dialFrom(t, "", h.recv())
			c.Write(vtp.Frame(ev)[:cut])
			c.(*net.TCPConn).CloseWrite()
			got, closed, after := readUntilClosed(c, quickClose)
			if !closed || len(got) != 0 {
				t.Errorf("truncated at %d: closed %v after %v, reply %q", cut, closed, after, got)
			}
		}
		h.notRecorded("truncated event", ev)
		h.healthy(iv)
		h.mustAck("the truncated event, complete", ev)
	})

	t.Run("frame over the size limit", func(t *testing.T) {
		// 99,999 bytes is accepted (Comet's limit), 100,000 is not.
		ev, _ := goodEvent("limit")
		exact := append(ev, bytes.Repeat([]byte("\n"), vtp.DefaultMaxFrame-len(ev))...)
		h.mustAck("a frame of exactly the limit", exact)

		over, iv := goodEvent("over-limit")
		over = append(over, bytes.Repeat([]byte("\n"), vtp.DefaultMaxFrame+1-len(over))...)
		c := dialFrom(t, "", h.recv())
		c.Write(prefix(uint32(len(over)))) // the prefix alone must be enough to refuse
		got, closed, after := readUntilClosed(c, quickClose)
		if !closed || len(got) != 0 {
			t.Errorf("oversized frame: closed %v after %v, reply %q", closed, after, got)
		}
		h.noReply("oversized frame sent whole", over)
		h.healthy(iv)
	})
}

// Documents with a DTD, entities of any kind or external references are
// refused as unparsable: the connection is closed without a reply (Comet's
// outcome for unparsable input, docs/vtp.md §6; a nak would need the ivorn
// of a document the broker refuses to read), the refusal is logged with
// its reason, nothing is recorded, forwarded, fetched or expanded.
func TestReceiverRefusesDTDsAndEntities(t *testing.T) {
	h := start(t, nil)
	trap := newFetchTrap(t)
	doctype := func(ev []byte, decl string) []byte {
		i := bytes.Index(ev, []byte("<voe:VOEvent"))
		return append(append(append([]byte{}, ev[:i]...), decl+"\n"...), ev[i:]...)
	}
	inText := func(ev []byte, ref string) []byte {
		return bytes.Replace(ev, []byte("This VOEvent message was created"), []byte(ref+"This VOEvent message was created"), 1)
	}
	inAttr := func(ev []byte, ref string) []byte {
		return bytes.Replace(ev, []byte(`value="111"`), []byte(`value="`+ref+`"`), 1)
	}
	lol := `<!DOCTYPE voe:VOEvent [<!ENTITY lol "lol">` +
		`<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">`
	for i := 2; i <= 9; i++ {
		lol += fmt.Sprintf(`<!ENTITY lol%d "%s">`, i, strings.Repeat(fmt.Sprintf("&lol%d;", i-1), 10))
	}
	lol += `]>`
	cases := []struct {
		name  string
		build func(ev []byte) []byte
	}{
		{"internal subset, entity declared and unused (Comet forwards this)", func(ev []byte) []byte {
			return doctype(ev, `<!DOCTYPE voe:VOEvent [<!ENTITY e "MARK-INTERNAL">]>`)
		}},
		{"empty internal subset", func(ev []byte) []byte { return doctype(ev, `<!DOCTYPE voe:VOEvent []>`) }},
		{"bare DOCTYPE", func(ev []byte) []byte { return doctype(ev, `<!DOCTYPE voe:VOEvent>`) }},
		{"internal entity in text", func(ev []byte) []byte {
			return inText(doctype(ev, `<!DOCTYPE voe:VOEvent [<!ENTITY e "MARK-INTERNAL">]>`), "&e;")
		}},
		{"internal entity in an attribute (Comet expands it)", func(ev []byte) []byte {
			return inAttr(doctype(ev, `<!DOCTYPE voe:VOEvent [<!ENTITY e "MARK-INTERNAL">]>`), "&e;")
		}},
		{"billion laughs", func(ev []byte) []byte { return inText(doctype(ev, lol), "&lol9;") }},
		{"external entity over http, in text", func(ev []byte) []byte {
			return inText(doctype(ev, `<!DOCTYPE voe:VOEvent [<!ENTITY x SYSTEM "`+trap.url("entity")+`">]>`), "&x;")
		}},
		{"external entity over http, in an attribute", func(ev []byte) []byte {
			return inAttr(doctype(ev, `<!DOCTYPE voe:VOEvent [<!ENTITY x SYSTEM "`+trap.url("attr")+`">]>`), "&x;")
		}},
		{"external entity from a local file", func(ev []byte) []byte {
			return inText(doctype(ev, `<!DOCTYPE voe:VOEvent [<!ENTITY x SYSTEM "`+trap.fileURL()+`">]>`), "&x;")
		}},
		{"external entity from a bare local path", func(ev []byte) []byte {
			return inText(doctype(ev, `<!DOCTYPE voe:VOEvent [<!ENTITY x SYSTEM "`+trap.file+`">]>`), "&x;")
		}},
		{"external entity, PUBLIC identifier", func(ev []byte) []byte {
			return inText(doctype(ev, `<!DOCTYPE voe:VOEvent [<!ENTITY x PUBLIC "-//ABUSE//X" "`+trap.url("public-entity")+`">]>`), "&x;")
		}},
		{"parameter entity over http", func(ev []byte) []byte {
			return doctype(ev, `<!DOCTYPE voe:VOEvent [<!ENTITY % p SYSTEM "`+trap.url("param.dtd")+`"> %p;]>`)
		}},
		{"parameter entity from a local file", func(ev []byte) []byte {
			return doctype(ev, `<!DOCTYPE voe:VOEvent [<!ENTITY % p SYSTEM "`+trap.fileURL()+`"> %p;]>`)
		}},
		{"parameter entity defining an external general entity", func(ev []byte) []byte {
			return inText(doctype(ev, `<!DOCTYPE voe:VOEvent [<!ENTITY % d "<!ENTITY x SYSTEM '`+trap.fileURL()+`'>"> %d;]>`), "&x;")
		}},
		{"external DTD, SYSTEM", func(ev []byte) []byte {
			return doctype(ev, `<!DOCTYPE voe:VOEvent SYSTEM "`+trap.url("system.dtd")+`">`)
		}},
		{"external DTD, PUBLIC", func(ev []byte) []byte {
			return doctype(ev, `<!DOCTYPE voe:VOEvent PUBLIC "-//ABUSE//DTD X//EN" "`+trap.url("public.dtd")+`">`)
		}},
		{"external DTD from a local file, entity from it used", func(ev []byte) []byte {
			return inText(doctype(ev, `<!DOCTYPE voe:VOEvent SYSTEM "`+trap.fileURL()+`">`), "&web;")
		}},
		{"DOCTYPE with odd spacing and quotes", func(ev []byte) []byte {
			return doctype(ev, "<!DOCTYPE\n\tvoe:VOEvent\r\n SYSTEM\t'"+trap.url("odd.dtd")+"' >")
		}},
		{"undeclared entity, no DTD", func(ev []byte) []byte { return inText(ev, "&x;") }},
		{"undeclared entity in an attribute, no DTD", func(ev []byte) []byte { return inAttr(ev, "&x;") }},
		{"DOCTYPE after the root", func(ev []byte) []byte {
			return append(append([]byte{}, ev...), `<!DOCTYPE voe:VOEvent SYSTEM "`+trap.url("late.dtd")+`">`...)
		}},
	}
	var forbidden []string
	before := h.rejected(ingress.RejectUnparsable)
	for _, c := range cases {
		ev, iv := goodEvent("dtd")
		p := c.build(ev)
		h.noReply(c.name, p)
		forbidden = append(forbidden, iv)
	}
	if n := h.rejected(ingress.RejectUnparsable) - before; n != uint64(len(cases)) {
		t.Errorf("%d refusals counted as unparsable, want %d", n, len(cases))
	}
	if n := h.logs.Count("DTD not allowed"); n < 17 {
		t.Errorf("only %d refusals logged with the reason %q", n, "DTD not allowed")
	}
	h.healthy(forbidden...)
	h.notForwarded("MARK-INTERNAL", "lollollol")
	trap.check(h)

	// References outside any DTD are not fetched either: an XInclude and a
	// stylesheet processing instruction are not XML features the broker
	// implements, so whatever the verdict, nothing is fetched and the
	// bytes are relayed as they are, never resolved.
	xi, _ := goodEvent("xinclude")
	xi = bytes.Replace(xi, []byte("<What>"), []byte(`<What><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="`+trap.fileURL()+`" parse="text"/><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="`+trap.url("xinclude")+`"/>`), 1)
	if m, err := vtptest.Submit(h.recv(), xi, quickClose); err != nil || m == nil || m.Role != vtp.RoleNak || !strings.HasPrefix(m.Result, "Event rejected: ") {
		t.Errorf("XInclude (not in the VOEvent schema): want a nak with a reason, got %+v %v", m, err)
	}
	pi, _ := goodEvent("stylesheet")
	pi = bytes.Replace(pi, []byte("<voe:VOEvent"), []byte(`<?xml-stylesheet type="text/xsl" href="`+trap.url("style.xsl")+`"?>`+"\n<voe:VOEvent"), 1)
	m, err := vtptest.Submit(h.recv(), pi, quickClose)
	t.Logf("stylesheet processing instruction: %+v %v", m, err)
	h.healthy()
	trap.check(h)
}

// Documents that are not events get Comet's outcome: no reply (logged)
// when there is nothing to nak, a nak with a reason otherwise.
func TestReceiverRefusesNonEvents(t *testing.T) {
	h := start(t, nil)
	removeAttr := func(ev []byte, attr string) []byte {
		s := string(ev)
		i := strings.Index(s, " "+attr+"=")
		q := s[i+len(attr)+2]
		j := strings.IndexByte(s[i+len(attr)+3:], q)
		return []byte(s[:i] + s[i+len(attr)+3+j+1:])
	}
	setRole := func(ev []byte, role string) []byte {
		return bytes.Replace(ev, []byte(`role="observation"`), []byte(`role="`+role+`"`), 1)
	}
	deep := func(name string, n int) []byte {
		ev, _ := goodEvent("deep")
		ev = bytes.Replace(ev, []byte("<What>"), []byte("<What>"+strings.Repeat("<"+name+">", n)+strings.Repeat("</"+name+">", n)), 1)
		if len(ev) > vtp.DefaultMaxFrame {
			panic("deep event over the frame limit")
		}
		return ev
	}
	noReply := []struct {
		name string
		p    []byte
	}{
		{"non-XML text", []byte("hello, broker")},
		{"JSON", []byte(`{"ivorn": "ivo://test.abuse/json#1", "role": "observation"}`)},
		{"HTML", []byte(`<html><body role="observation">hi</body></html>`)},
		{"binary zeros", make([]byte, 512)},
		{"XML without role", removeAttr(mustGood("norole"), "role")},
		{"XML with an unknown role", setRole(mustGood("badrole"), "rumour")},
		{"XML with an empty role", setRole(mustGood("emptyrole"), "")},
		{"XML without ivorn", removeAttr(mustGood("noivorn"), "ivorn")},
		{"root without anything", []byte(`<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0"/>`)},
		{"Transport iamalive on the receive port", vtp.IAmAlive("ivo://test.abuse/peer", "", time.Now())},
		{"Transport ack on the receive port", vtp.Ack("ivo://test.abuse/x#1", "ivo://test.abuse/peer", time.Now())},
		{"Transport nak on the receive port", vtp.Nak("ivo://test.abuse/x#1", "ivo://test.abuse/peer", "no", time.Now())},
		{"Transport authenticate on the receive port", vtp.AuthenticateReply(localIVO, "ivo://test.abuse/peer", []string{"//*"}, time.Now())},
		{"two roots", append(mustGood("tworoots"), []byte(`<voe:VOEvent role="observation" ivorn="ivo://test.abuse/x#2"/>`)...)},
		{"text after the root", append(mustGood("trailing"), "trailing junk"...)},
		{"unclosed root", bytes.TrimSuffix(bytes.TrimSpace(mustGood("unclosed")), []byte("</voe:VOEvent>"))},
		{"invalid UTF-8 in text", bytes.Replace(mustGood("utf8"), []byte("Julie Mcenery"), []byte("Julie \xff\xfe Mcenery"), 1)},
		{"invalid UTF-8 in an attribute", bytes.Replace(mustGood("utf8"), []byte(`value="111"`), []byte("value=\"1\xc3\x28\""), 1)},
		{"overlong UTF-8 encoding", bytes.Replace(mustGood("utf8"), []byte("Julie Mcenery"), []byte("Julie \xc0\xaf Mcenery"), 1)},
		{"UTF-8 encoded surrogate", bytes.Replace(mustGood("utf8"), []byte("Julie Mcenery"), []byte("Julie \xed\xa0\x80 Mcenery"), 1)},
		{"truncated UTF-8 sequence", bytes.Replace(mustGood("utf8"), []byte("Julie Mcenery"), []byte("Julie \xe2\x82"), 1)},
		{"invalid UTF-8 in a name", bytes.Replace(mustGood("utf8"), []byte("<Who>"), []byte("<Wh\xffo></Wh\xffo><Who>"), 1)},
		{"NUL byte", bytes.Replace(mustGood("nul"), []byte("Julie Mcenery"), []byte("Julie\x00Mcenery"), 1)},
		{"control character", bytes.Replace(mustGood("ctl"), []byte("Julie Mcenery"), []byte("Julie\x01Mcenery"), 1)},
		{"character reference to NUL", bytes.Replace(mustGood("ref"), []byte("Julie Mcenery"), []byte("Julie&#0;Mcenery"), 1)},
		{"character reference to a surrogate", bytes.Replace(mustGood("ref"), []byte("Julie Mcenery"), []byte("Julie&#xD800;Mcenery"), 1)},
		{"character reference out of range", bytes.Replace(mustGood("ref"), []byte("Julie Mcenery"), []byte("Julie&#x110000;Mcenery"), 1)},
		{"UTF-16 byte order mark", append([]byte{0xfe, 0xff}, mustGood("utf16")...)},
		{"declared encoding UTF-16", bytes.Replace(mustGood("utf16"), []byte("encoding = 'UTF-8'"), []byte("encoding = 'UTF-16'"), 1)},
		{"declared unknown encoding", bytes.Replace(mustGood("enc"), []byte("encoding = 'UTF-8'"), []byte("encoding = 'X-ABUSE'"), 1)},
		{"10,000-deep nesting", deep("G", 10000)},
		{"10,000-deep nesting, bare", []byte(strings.Repeat("<a>", 10000) + strings.Repeat("</a>", 10000))},
	}
	var forbidden []string
	for _, c := range noReply {
		t0 := time.Now()
		h.noReply(c.name, c.p)
		if d := time.Since(t0); d > time.Second {
			t.Errorf("%s: took %v to refuse", c.name, d)
		}
		if iv := ivornOf(c.p); strings.HasPrefix(iv, "ivo://test.abuse/") {
			forbidden = append(forbidden, iv)
		}
	}
	if n := h.logs.Count("element nesting too deep"); n != 2 {
		t.Errorf("%d refusals logged as too deep, want 2", n)
	}
	if n := h.rejected(ingress.RejectTransport); n != 4 {
		t.Errorf("%d Transport messages on the receive port counted as such, want 4", n)
	}
	h.healthy(forbidden...)

	// Nesting within the limit but outside the schema is a nak with a
	// reason, not a silent drop.
	ok := deep("Group", 200)
	if m, err := vtptest.Submit(h.recv(), ok, quickClose); err != nil || m == nil || m.Role != vtp.RoleNak || !strings.HasPrefix(m.Result, "Event rejected: ") {
		t.Errorf("200-deep nesting: want a nak with a reason, got %+v %v", m, err)
	}
	// Bad ivorns are naks with Comet's reasons.
	for iv, want := range map[string]string{
		"":                         "Event rejected: Invalid IVOID: ",
		"ivo://test.abuse/nolocal": "Event rejected: No per-event local ID",
		"http://test.abuse/x#1":    "Event rejected: Invalid IVOID: http://test.abuse/x#1",
	} {
		m, err := vtptest.Submit(h.recv(), vtptest.WithIVORN(tmpl, iv), quickClose)
		if err != nil || m == nil || m.Role != vtp.RoleNak || !strings.HasPrefix(m.Result, want) {
			t.Errorf("ivorn %q: want nak %q, got %+v %v", iv, want, m, err)
		}
	}
	h.healthy(forbidden...)
}

func mustGood(tag string) []byte { ev, _ := goodEvent(tag); return ev }

// One event per connection: a second event on the same connection is
// never processed, recorded or forwarded, and the author gets exactly one
// receipt, for the first.
func TestReceiverProcessesOnlyTheFirstOfTwoEvents(t *testing.T) {
	h := start(t, nil)
	for _, mode := range []string{"one write", "after the receipt"} {
		first, iv1 := goodEvent("first")
		second, iv2 := goodEvent("second")
		c := dialFrom(t, "", h.recv())
		c.SetDeadline(time.Now().Add(healthyWait))
		if mode == "one write" {
			c.Write(append(vtp.Frame(first), vtp.Frame(second)...))
		} else {
			c.Write(vtp.Frame(first))
		}
		fr := vtp.NewFrameReader(c, 0)
		reply, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("%s: no receipt for the first event: %v", mode, err)
		}
		if m, _ := vtp.ParseTransport(reply); m == nil || m.Role != vtp.RoleAck || m.Origin != iv1 {
			t.Fatalf("%s: receipt %s, want an ack of %s", mode, reply, iv1)
		}
		if mode == "after the receipt" {
			c.Write(vtp.Frame(second)) // may fail: the broker has half-closed
		}
		if _, err := fr.ReadFrame(); err == nil {
			t.Fatalf("%s: a second receipt was sent", mode)
		}
		c.Close()
		if !h.sub.WaitFor(healthyWait, func(s *vtptest.Subscriber) bool { return slices.Contains(s.IVORNs(), iv1) }) {
			t.Fatalf("%s: first event not delivered", mode)
		}
		h.healthy(iv2)
		h.notRecorded(mode+": second event", second)
		h.mustAck(mode+": the second event, resubmitted alone", second)
	}
}
