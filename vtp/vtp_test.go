package vtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

var ts = time.Date(2024, 5, 1, 12, 34, 56, 0, time.UTC)

const cometRoot = `<trn:Transport xmlns:trn="http://www.telescope-networks.org/xml/Transport/v1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="1.0" xsi:schemaLocation="http://telescope-networks.org/schema/Transport/v1.1 http://www.telescope-networks.org/schema/Transport-v1.1.xsd" role=`

// The composed ack of docs/vtp.md §2.3, byte for byte.
func TestAckMatchesCometBytes(t *testing.T) {
	want := "<?xml version='1.0' encoding='UTF-8'?>\n" + cometRoot + `"ack">
  <Origin>ivo://example.org/author#evt-0001</Origin>
  <Response>ivo://example.org/broker</Response>
  <TimeStamp>2024-05-01T12:34:56Z</TimeStamp>
</trn:Transport>
`
	got := Ack("ivo://example.org/author#evt-0001", "ivo://example.org/broker", ts)
	if string(got) != want {
		t.Fatalf("ack differs:\n got %q\nwant %q", got, want)
	}
	// docs/vtp.md §2.3: 496 bytes, so the prefix is 00 00 01 F0.
	if !bytes.Equal(Frame(got)[:4], []byte{0, 0, 1, 0xF0}) {
		t.Fatalf("prefix %x, want 000001f0", Frame(got)[:4])
	}
}

func TestNakMatchesCometBytes(t *testing.T) {
	want := "<?xml version='1.0' encoding='UTF-8'?>\n" + cometRoot + `"nak">
  <Origin>ivo://example.org/author#evt-0001</Origin>
  <Response>ivo://example.org/broker</Response>
  <TimeStamp>2024-05-01T12:35:10Z</TimeStamp>
  <Meta>
    <Result>Event rejected: Previously seen by this broker</Result>
  </Meta>
</trn:Transport>
`
	got := Nak("ivo://example.org/author#evt-0001", "ivo://example.org/broker",
		"Event rejected: Previously seen by this broker", time.Date(2024, 5, 1, 12, 35, 10, 0, time.UTC))
	if string(got) != want {
		t.Fatalf("nak differs:\n got %q\nwant %q", got, want)
	}
}

func TestProbesMatchCometBytes(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 36, 0, 0, time.UTC)
	want := "<?xml version='1.0' encoding='UTF-8'?>\n" + cometRoot + `"iamalive">
  <Origin>ivo://example.org/broker</Origin>
  <TimeStamp>2024-05-01T12:36:00Z</TimeStamp>
</trn:Transport>
`
	if got := IAmAlive("ivo://example.org/broker", "", at); string(got) != want {
		t.Fatalf("iamalive differs:\n got %q\nwant %q", got, want)
	}
	at = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	want = "<?xml version='1.0' encoding='UTF-8'?>\n" + cometRoot + `"authenticate">
  <Origin>ivo://example.org/broker</Origin>
  <TimeStamp>2024-05-01T12:00:00Z</TimeStamp>
</trn:Transport>
`
	if got := AuthenticateRequest("ivo://example.org/broker", at); string(got) != want {
		t.Fatalf("authenticate differs:\n got %q\nwant %q", got, want)
	}
}

func TestAuthenticateReplyEscapesFilters(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	want := "<?xml version='1.0' encoding='UTF-8'?>\n" + cometRoot + `"authenticate">
  <Origin>ivo://example.org/broker</Origin>
  <Response>ivo://example.org/listener</Response>
  <TimeStamp>2024-05-01T12:00:00Z</TimeStamp>
  <Meta>
    <Param name="xpath-filter" value="//Param[@name=&quot;SNR&quot; and @value&gt;10]"/>
    <Param name="xpath-filter" value="/*[local-name()=&quot;VOEvent&quot; and @role!=&quot;test&quot;]"/>
  </Meta>
</trn:Transport>
`
	filters := []string{`//Param[@name="SNR" and @value>10]`, `/*[local-name()="VOEvent" and @role!="test"]`}
	got := AuthenticateReply("ivo://example.org/broker", "ivo://example.org/listener", filters, at)
	if string(got) != want {
		t.Fatalf("reply differs:\n got %q\nwant %q", got, want)
	}
	m, err := ParseTransport(got)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.Filters, filters) {
		t.Fatalf("round trip filters %q", m.Filters)
	}
	empty := AuthenticateReply("ivo://example.org/broker", "", nil, at)
	if !strings.Contains(string(empty), "  <Meta/>\n") || strings.Contains(string(empty), "Response") {
		t.Fatalf("empty reply must carry <Meta/> and no Response:\n%s", empty)
	}
}

func TestParseAcceptsEveryNamespaceAndPygcnForm(t *testing.T) {
	pygcn := `<?xml version='1.0' encoding='UTF-8'?><trn:Transport role="iamalive" version="1.0" xmlns:trn="http://telescope-networks.org/schema/Transport/v1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://telescope-networks.org/schema/Transport/v1.1 http://telescope-networks.org/schema/Transport-v1.1.xsd"><Origin>ivo://example.org/broker</Origin><Response>ivo://example.org/listener</Response><TimeStamp>2024-05-01T14:36:00.512345</TimeStamp></trn:Transport>`
	m, err := ParseTransport([]byte(pygcn))
	if err != nil {
		t.Fatal(err)
	}
	if m.Role != RoleIAmAlive || m.Origin != "ivo://example.org/broker" || m.Response != "ivo://example.org/listener" ||
		m.TimeStamp != "2024-05-01T14:36:00.512345" || m.Namespace != NamespaceVTP {
		t.Fatalf("parsed %+v", m)
	}
	for _, ns := range []string{NamespaceComet, NamespaceVTP, NamespacePygcnAlt, "urn:anything"} {
		doc := `<t:Transport xmlns:t="` + ns + `" role="ack" version="1.0"><Origin>x</Origin><TimeStamp>t</TimeStamp></t:Transport>`
		if m, err := ParseTransport([]byte(doc)); err != nil || m.Role != RoleAck || m.Origin != "x" {
			t.Fatalf("namespace %s: %+v %v", ns, m, err)
		}
	}
}

func TestParseFiltersBothFormsParamsFirst(t *testing.T) {
	doc := `<trn:Transport xmlns:trn="` + NamespaceComet + `" role="authenticate" version="1.0">
  <Origin>ivo://b/x</Origin><TimeStamp>t</TimeStamp>
  <Meta>
    <filter type="xpath">//Param[@name="SNR" and @value&gt;10]</filter>
    <Param name="xpath-filter" value="old-second"/>
    <Param name="other" value="ignored"/>
    <filter type="regex">ignored</filter>
    <filter type="xpath">/*[local-name()="VOEvent" and @role!="test"]</filter>
  </Meta>
</trn:Transport>`
	m, err := ParseTransport([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"old-second", `//Param[@name="SNR" and @value>10]`, `/*[local-name()="VOEvent" and @role!="test"]`}
	if !reflect.DeepEqual(m.Filters, want) {
		t.Fatalf("filters %q want %q", m.Filters, want)
	}
}

func TestParseNakResult(t *testing.T) {
	m, err := ParseTransport(Nak("ivo://a.b/c#d", "ivo://x.y/z", "Event rejected: <bad> & \"worse\"", ts))
	if err != nil {
		t.Fatal(err)
	}
	if m.Role != RoleNak || m.Result != `Event rejected: <bad> & "worse"` || m.Origin != "ivo://a.b/c#d" {
		t.Fatalf("parsed %+v", m)
	}
}

func TestParseRefusesNonTransportAndUnsafe(t *testing.T) {
	cases := map[string]string{
		"voevent":   `<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" role="observation" ivorn="ivo://a.b/c#d" version="2.0"/>`,
		"no role":   `<trn:Transport xmlns:trn="x" version="1.0"><Origin>x</Origin></trn:Transport>`,
		"dtd":       `<!DOCTYPE t [<!ENTITY e "x">]><Transport role="ack"><Origin>&e;</Origin></Transport>`,
		"not xml":   `hello`,
		"empty":     ``,
		"two roots": `<Transport role="ack"/><Transport role="ack"/>`,
	}
	for name, doc := range cases {
		if _, err := ParseTransport([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFramingRoundTripAndSplitReads(t *testing.T) {
	var buf bytes.Buffer
	payloads := [][]byte{[]byte("one"), {}, bytes.Repeat([]byte("x"), 1000)}
	for _, p := range payloads {
		if err := WriteFrame(&buf, p); err != nil {
			t.Fatal(err)
		}
	}
	// One byte per Read: a frame split over many TCP reads.
	fr := NewFrameReader(iotestOneByte{&buf}, 0)
	for i, want := range payloads {
		got, err := fr.ReadFrame()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %q %v", i, got, err)
		}
	}
	if _, err := fr.ReadFrame(); err != io.EOF {
		t.Fatalf("after last frame: %v, want io.EOF", err)
	}
}

func TestFrameLimitIsCometsAndCheckedBeforeAllocation(t *testing.T) {
	ok := Frame(make([]byte, DefaultMaxFrame))
	if _, err := NewFrameReader(bytes.NewReader(ok), 0).ReadFrame(); err != nil {
		t.Fatalf("99,999 bytes refused: %v", err)
	}
	over := Frame(make([]byte, DefaultMaxFrame+1))
	if _, err := NewFrameReader(bytes.NewReader(over), 0).ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("100,000 bytes: %v", err)
	}
	// A little-endian prefix of 1,000 reads as 3,892,510,720: refused at once,
	// without waiting for (or allocating) the claimed payload. Bytes, not
	// allocation counts, tell: other goroutines of the test binary may
	// allocate a little meanwhile, never gigabytes.
	le := []byte{0xE8, 0x03, 0x00, 0x00}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := NewFrameReader(bytes.NewReader(le), 0).ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("little-endian prefix: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("refusing a huge prefix 10 times allocated %d bytes", n)
	}
}

func TestTruncatedFrame(t *testing.T) {
	b := Frame([]byte("hello"))
	_, err := NewFrameReader(bytes.NewReader(b[:6]), 0).ReadFrame()
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated payload: %v", err)
	}
	_, err = NewFrameReader(bufio.NewReader(bytes.NewReader(b[:2])), 0).ReadFrame()
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated prefix: %v", err)
	}
}

// ReadFrameSlice reads the same frames and reports the same errors as
// ReadFrame, whether the frames fit the bufio.Reader's buffer or not, over
// split reads, truncations and oversized prefixes; and it allocates
// nothing for frames that fit.
func TestReadFrameSliceReadsWhatReadFrameReads(t *testing.T) {
	var stream bytes.Buffer
	for _, p := range [][]byte{[]byte("ack"), {}, bytes.Repeat([]byte("x"), 100), bytes.Repeat([]byte("y"), 5000), []byte("last")} {
		WriteFrame(&stream, p)
	}
	inputs := map[string][]byte{
		"whole":           stream.Bytes(),
		"truncated frame": stream.Bytes()[:stream.Len()-2],
		"truncated size":  stream.Bytes()[:4+3+4+2],
		"over the limit":  append(Frame([]byte("ok")), 0, 0, 0x30, 0),
		"large first":     append(Frame(bytes.Repeat([]byte("z"), 9000)), Frame([]byte("next"))...),
		"empty":           {},
		"short prefix":    {0, 0},
	}
	for name, in := range inputs {
		for _, size := range []int{16, 1024, 64 << 10} {
			for _, split := range []bool{false, true} {
				src := func() io.Reader {
					if split {
						return iotestOneByte{bytes.NewReader(in)}
					}
					return bytes.NewReader(in)
				}
				// ReadSoleFrame reads the first frame as ReadFrame does.
				w, werr := NewFrameReader(src(), 10000).ReadFrame()
				if g, gerr := ReadSoleFrame(src(), 10000); !bytes.Equal(g, w) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
					t.Fatalf("%s, split %v: ReadSoleFrame %q %v, want %q %v", name, split, g, gerr, w, werr)
				}
				want := NewFrameReader(bufio.NewReaderSize(src(), size), 10000)
				got := NewFrameReader(bufio.NewReaderSize(src(), size), 10000)
				for i := 0; ; i++ {
					w, werr := want.ReadFrame()
					g, gerr := got.ReadFrameSlice()
					if !bytes.Equal(g, w) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
						t.Fatalf("%s, buffer %d, split %v, frame %d: %q %v, want %q %v", name, size, split, i, g, gerr, w, werr)
					}
					if werr != nil {
						break
					}
				}
			}
		}
	}
	ack := Frame(ackForBench)
	r := bytes.NewReader(nil)
	if n := testing.AllocsPerRun(100, func() {
		r.Reset(ack)
		if p, err := ReadSoleFrame(r, 0); err != nil || !bytes.Equal(p, ackForBench) {
			t.Fatalf("%q %v", p, err)
		}
	}); n != 1 {
		t.Errorf("ReadSoleFrame: %v allocations, want 1 (the payload's)", n)
	}
	fr := NewFrameReader(bufio.NewReaderSize(r, 1024), 0)
	if n := testing.AllocsPerRun(100, func() {
		r.Reset(ack)
		if p, err := fr.ReadFrameSlice(); err != nil || !bytes.Equal(p, ackForBench) {
			t.Fatalf("%q %v", p, err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per ack, want 0", n)
	}
}

type iotestOneByte struct{ r io.Reader }

func (o iotestOneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func FuzzParseTransport(f *testing.F) {
	f.Add(Ack("ivo://a.b/c#d", "ivo://x.y/z", ts))
	f.Add(AuthenticateReply("ivo://a.b/c", "", []string{"//Param"}, ts))
	f.Add([]byte(`<t:Transport xmlns:t="x" role="authenticate"><Meta><filter type="xpath">//a</filter></Meta></t:Transport>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseTransport(b)
		if err == nil && !IsTransportRole(m.Role) {
			t.Fatalf("accepted role %q", m.Role)
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	f.Add(Frame([]byte("abc")))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := NewFrameReader(bytes.NewReader(b), 1024)
		// ReadFrameSlice, over a buffer smaller than some frames, reads the same.
		sl := NewFrameReader(bufio.NewReaderSize(bytes.NewReader(b), 64), 1024)
		first, ferr := ReadSoleFrame(iotestOneByte{bytes.NewReader(b)}, 1024)
		for {
			p, err := fr.ReadFrame()
			q, serr := sl.ReadFrameSlice()
			if first != nil || ferr != nil {
				if !bytes.Equal(p, first) || fmt.Sprint(ferr) != fmt.Sprint(err) {
					t.Fatalf("ReadSoleFrame: %q %v, ReadFrame: %q %v", first, ferr, p, err)
				}
				first, ferr = nil, nil
			}
			if !bytes.Equal(p, q) || fmt.Sprint(serr) != fmt.Sprint(err) {
				t.Fatalf("ReadFrameSlice: %q %v, ReadFrame: %q %v", q, serr, p, err)
			}
			if err != nil {
				return
			}
			if len(p) > 1024 {
				t.Fatalf("frame of %d bytes over limit", len(p))
			}
		}
	})
}

func BenchmarkParseAck(b *testing.B) {
	ack := ackForBench
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTransport(ack); err != nil {
			b.Fatal(err)
		}
	}
}

var ackForBench = Ack("ivo://nasa.gsfc.gcn/Fermi#GBM_Flt_Pos_2018-01-16T14:55:42.99_537634547_0-004", "ivo://example.org/listener", ts)
