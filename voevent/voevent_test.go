package voevent

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/comet-go/comet/xmlsafe"
)

// The shared test data sits beside the main checkout (as in CI).
var testdataDir = filepath.Join("..", "testdata")

func readTestdata(t testing.TB, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{testdataDir}, parts...)...))
	if err != nil {
		t.Fatalf("shared test data: %v", err)
	}
	return b
}

// sample is one row of testdata/voevents/README.md.
type sample struct {
	file, role, namespace, sha1, receiver string
	size                                  int
}

// loadSources parses the table of README.md: file, source, role,
// namespace, bytes, SHA-1, Comet receiver verdict, notes.
func loadSources(t testing.TB) []sample {
	t.Helper()
	var out []sample
	sc := bufio.NewScanner(bytes.NewReader(readTestdata(t, "voevents", "README.md")))
	for sc.Scan() {
		cells := strings.Split(sc.Text(), "|")
		if len(cells) != 10 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") || !strings.HasSuffix(strings.TrimSpace(cells[1]), ".xml`") {
			continue
		}
		unquote := func(s string) string { return strings.Trim(strings.TrimSpace(s), "`") }
		size, err := strconv.Atoi(strings.TrimSpace(cells[5]))
		if err != nil {
			t.Fatalf("README.md: bad size in %q", sc.Text())
		}
		out = append(out, sample{
			file:      unquote(cells[1]),
			role:      strings.TrimSpace(cells[3]),
			namespace: strings.TrimSpace(cells[4]),
			size:      size,
			sha1:      unquote(cells[6]),
			receiver:  strings.TrimSpace(cells[7]),
		})
	}
	return out
}

var namespaceColumn = map[string]string{
	"v1.1":   NamespaceVOEvent11,
	"v2.0":   NamespaceVOEvent20,
	"v2.1":   NamespaceVOEvent21,
	"(none)": "",
}

// The README.md table must describe every sample file, and only those.
func TestSourcesTableCoversEveryFile(t *testing.T) {
	rows := loadSources(t)
	var listed []string
	for _, r := range rows {
		listed = append(listed, r.file)
	}
	files, err := filepath.Glob(filepath.Join(testdataDir, "voevents", "*.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var present []string
	for _, f := range files {
		present = append(present, filepath.Base(f))
	}
	slices.Sort(listed)
	slices.Sort(present)
	if !slices.Equal(listed, present) {
		t.Fatalf("README.md rows %v\n  != files %v", listed, present)
	}
	if len(rows) != 37 {
		t.Errorf("%d samples, want 37", len(rows))
	}
}

// Every real sample: Comet's receiver verdict, role, namespace, and the
// root span, from one Inspect call.
func TestSamplesMatchCometReceiver(t *testing.T) {
	for _, s := range loadSources(t) {
		t.Run(s.file, func(t *testing.T) {
			payload := readTestdata(t, "voevents", s.file)
			sum := sha1.Sum(payload)
			if len(payload) != s.size || hex.EncodeToString(sum[:]) != s.sha1 {
				t.Fatalf("file differs from README.md (size %d, sha1 %x)", len(payload), sum)
			}
			info, err := Inspect(payload, Options{Schema: true})
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if !info.HasRole || info.Role != s.role {
				t.Errorf("role = %q (present %v), want %q", info.Role, info.HasRole, s.role)
			}
			if !IsVOEventRole(info.Role) {
				t.Errorf("role %q is not a VOEvent role", info.Role)
			}
			if want, ok := namespaceColumn[s.namespace]; !ok || info.RootSpace != want || info.RootLocal != "VOEvent" {
				t.Errorf("root = {%s}%s, want namespace column %q", info.RootSpace, info.RootLocal, s.namespace)
			}
			if !info.HasIVORN || !ValidIVOID(info.IVORN) {
				t.Errorf("ivorn %q (present %v) must pass the IVOID grammar (subscriber path)", info.IVORN, info.HasIVORN)
			}
			checkRootSpan(t, payload, info)

			ivornErr := CheckEventIVORN(info.IVORN)
			switch s.receiver {
			case "ack":
				if info.SchemaErr != nil {
					t.Errorf("schema: %v, want valid (Comet acks)", info.SchemaErr)
				}
				if ivornErr != nil {
					t.Errorf("ivorn: %v, want accepted (Comet acks)", ivornErr)
				}
			case "nak (schema)":
				if info.SchemaErr == nil {
					t.Errorf("schema valid, want invalid (Comet naks)")
				}
				if ivornErr != nil {
					t.Errorf("ivorn: %v", ivornErr)
				}
			case "nak (no-local-id; schema)":
				if ivornErr == nil || ivornErr.Error() != "No per-event local ID" {
					t.Errorf("ivorn: %v, want No per-event local ID", ivornErr)
				}
				if info.SchemaErr == nil {
					t.Errorf("schema valid, want invalid")
				}
			default:
				t.Fatalf("unknown verdict %q in README.md", s.receiver)
			}

			// Without schema validation the same facts come back.
			plain, err := Inspect(payload, Options{})
			if err != nil {
				t.Fatal(err)
			}
			info.SchemaErr = nil
			if *plain != *info {
				t.Errorf("Schema:false gives %+v\n  want %+v", *plain, *info)
			}
		})
	}
}

// checkRootSpan verifies RootStart/RootEnd delimit the root element and
// that only misc markup lies outside it.
func checkRootSpan(t *testing.T, payload []byte, info *Info) {
	t.Helper()
	if info.RootStart < 0 || info.RootEnd > len(payload) || info.RootStart >= info.RootEnd {
		t.Fatalf("root span [%d, %d) out of range", info.RootStart, info.RootEnd)
	}
	span := payload[info.RootStart:info.RootEnd]
	if span[0] != '<' || span[len(span)-1] != '>' {
		t.Errorf("root span %q... does not start with < and end with >", span[:min(20, len(span))])
	}
	if !bytes.Contains(span[:min(len(span), 64)], []byte(info.RootLocal)) {
		t.Errorf("root span does not start with the root tag: %q", span[:min(40, len(span))])
	}
	tail := bytes.TrimSpace(payload[info.RootEnd:])
	if len(tail) > 0 && !bytes.HasPrefix(tail, []byte("<!--")) && !bytes.HasPrefix(tail, []byte("<?")) {
		t.Errorf("unexpected content after the root span: %q", tail)
	}
}

func TestIVORNAuthorAndDate(t *testing.T) {
	tests := []struct{ file, ivorn, author, date string }{
		{"gbm_flt_pos.xml", "ivo://nasa.gsfc.gcn/Fermi#GBM_Flt_Pos_2011-09-04T03:54:36.02_336801278_45-956", "ivo://nasa.gsfc.tan/gcn", "2011-09-04T03:54:51"},
		{"TestEvent-2016-07-01T00_39_01.xml", "ivo://voevent.4pisky.org/voevent-broadcast#TestEvent-2016-07-01T00:39:01", "ivo://voevent.4pisky.org/voevent-broadcast", "2016-07-01T00:39:01.052121"},
		{"TestEvent-2019-05-01T00_40_17Z.xml", "ivo://voeventdb.4pisky.org/subscribe-only#TestEvent-2019-05-01T00:40:17Z", "ivo://voeventdb.4pisky.org/subscribe-only", "2019-05-01T00:40:17Z"},
		{"FRB140514_detection.xml", "ivo://au.csiro.atnf/parkes#FRB1405141714/56791.71885417", "ivo://au.csiro.atnf/contact", "2014-05-14T17:15:09"},
		{"no_namespace_packet.xml", "ivo://com.dc3/dc3.broker#BrokerTest-2014-02-24T15:55:27.72", "ivo://com.dc3/dc3.broker", "2014-02-24T15:55:27.72"},
		{"kill_socket.xml", "ivo://nasa.gsfc.gcn/gcn", "", ""}, // no Who
		{"sample3.xml", "ivo://testing#111", "", ""},           // Who without AuthorIVORN or Date
		{"GW190425_initial.xml", "ivo://gwnet/LVC#S190425z-1-Initial", "", "2019-04-25T09:00:51"},
		{"1404240180654111988.xml", "ivo://nvo.caltech/voeventnet/catot#1404240180654111988", "ivo://nvo.caltech/voeventnet", "2014-04-24T05:36:55"},
	}
	for _, tc := range tests {
		info, err := Inspect(readTestdata(t, "voevents", tc.file), Options{})
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if info.IVORN != tc.ivorn || info.Author != tc.author || info.Date != tc.date {
			t.Errorf("%s: ivorn %q author %q date %q, want %q %q %q", tc.file, info.IVORN, info.Author, info.Date, tc.ivorn, tc.author, tc.date)
		}
	}
}

// Span A of docs/openpgp.md §2: bytes 106..470 inclusive of the composed
// event.
func TestRootSpanOpenPGPExample(t *testing.T) {
	payload := readTestdata(t, "openpgp", "event-unsigned.xml")
	info, err := Inspect(payload, Options{Schema: true})
	if err != nil {
		t.Fatal(err)
	}
	if info.RootStart != 106 || info.RootEnd != 471 {
		t.Errorf("root span [%d, %d), want [106, 471)", info.RootStart, info.RootEnd)
	}
	if info.SchemaErr != nil || info.Author != "ivo://example.org/author" {
		t.Errorf("schema %v, author %q", info.SchemaErr, info.Author)
	}
	// The signature comment after the root is outside the span.
	signed := readTestdata(t, "openpgp", "event-signed-author.xml")
	info2, err := Inspect(signed, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(signed[info2.RootStart:info2.RootEnd], payload[106:471]) {
		t.Errorf("signed document's root span differs from the unsigned one")
	}
}

func TestRootSpanEmptyRoot(t *testing.T) {
	doc := `<?xml version="1.0"?>` + "\n" + `<voe:VOEvent xmlns:voe="` + NamespaceVOEvent20 + `" version="2.0" role="test" ivorn="ivo://a.b/c#d"/>` + "\n<!-- sig -->\n"
	info, err := Inspect([]byte(doc), Options{Schema: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := doc[info.RootStart:info.RootEnd]; !strings.HasPrefix(got, "<voe:VOEvent ") || !strings.HasSuffix(got, `#d"/>`) {
		t.Errorf("root span %q", got)
	}
	if info.SchemaErr != nil {
		t.Errorf("VOEvent with zero children: %v", info.SchemaErr)
	}
}

func TestBenchmarkWorkloadIsValid(t *testing.T) {
	info, err := Inspect(readTestdata(t, "bench", "gbm_flt_pos_v20.xml"), Options{Schema: true})
	if err != nil {
		t.Fatal(err)
	}
	if info.SchemaErr != nil || CheckEventIVORN(info.IVORN) != nil || info.Role != "observation" || info.Version != "2.0" {
		t.Errorf("benchmark workload: schema %v, ivorn %v, role %q, version %q", info.SchemaErr, CheckEventIVORN(info.IVORN), info.Role, info.Version)
	}
}

// Encodings and declarations of docs/voevent.md §4.
func TestDeclarationsAndEncodings(t *testing.T) {
	root := `<voe:VOEvent xmlns:voe="` + NamespaceVOEvent20 + `" version="2.0" role="test" ivorn="ivo://a.b/c#d"><Who><AuthorIVORN>ivo://a.b/caf%s</AuthorIVORN></Who></voe:VOEvent>`
	tests := []struct {
		name, decl, author string
		body               []byte
	}{
		{"double quotes", `<?xml version="1.0" encoding="UTF-8"?>`, "ivo://a.b/café", []byte("é")},
		{"single quotes", `<?xml version='1.0' encoding='UTF-8'?>`, "ivo://a.b/café", []byte("é")},
		{"no encoding", `<?xml version="1.0" ?>`, "ivo://a.b/café", []byte("é")},
		{"spaced GCN", `<?xml version = '1.0' encoding = 'UTF-8'?>`, "ivo://a.b/café", []byte("é")},
		{"no declaration", ``, "ivo://a.b/café", []byte("é")},
		{"lower-case utf-8", `<?xml version="1.0" encoding="utf-8"?>`, "ivo://a.b/café", []byte("é")},
		{"latin1", `<?xml version="1.0" encoding="ISO-8859-1"?>`, "ivo://a.b/café", []byte{0xE9}},
		{"latin1 alias", `<?xml version="1.0" encoding="latin1"?>`, "ivo://a.b/café", []byte{0xE9}},
		{"windows-1252", `<?xml version="1.0" encoding="windows-1252"?>`, "ivo://a.b/caf€", []byte{0x80}},
		{"US-ASCII", `<?xml version="1.0" encoding="US-ASCII"?>`, "ivo://a.b/caf&#233;", []byte("&#233;")},
		{"character reference", ``, "ivo://a.b/café", []byte("&#233;")},
		{"BOM", "\uFEFF", "ivo://a.b/café", []byte("é")},
	}
	for _, tc := range tests {
		doc := append([]byte(tc.decl+"\n"), fmt.Sprintf(root, tc.body)...)
		info, err := Inspect(doc, Options{Schema: true})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		want := strings.ReplaceAll(tc.author, "&#233;", "é")
		if info.Author != want || info.SchemaErr != nil {
			t.Errorf("%s: author %q schema %v, want %q", tc.name, info.Author, info.SchemaErr, want)
		}
	}
	// Declared ASCII with non-ASCII bytes is an encoding error for libxml2.
	doc := []byte(`<?xml version="1.0" encoding="US-ASCII"?>` + fmt.Sprintf(root, "é"))
	if _, err := Inspect(doc, Options{}); !errors.Is(err, ErrUnparsable) {
		t.Errorf("non-ASCII in a US-ASCII document: %v, want unparsable", err)
	}
}

// Mojibake and entity references in attributes survive (ASASSN sample).
func TestNonASCIIAttributes(t *testing.T) {
	payload := readTestdata(t, "voevents", "ASASSN_2016-09-25.47_2016fvf_PTSS-16nqb_PS16ejf.xml")
	if !bytes.Contains(payload, []byte("Â°")) {
		t.Fatal("sample no longer carries its mis-encoded degree sign")
	}
	info, err := Inspect(payload, Options{Schema: true})
	if err != nil || info.SchemaErr != nil {
		t.Fatalf("%v %v", err, info.SchemaErr)
	}
}

func TestMissingRoleOrIVORN(t *testing.T) {
	tests := []struct {
		doc                string
		hasRole, hasIVORN  bool
		role, ivorn, local string
	}{
		{`<VOEvent ivorn="ivo://a.b/c#d" version="2.0"/>`, false, true, "", "ivo://a.b/c#d", "VOEvent"},
		{`<VOEvent role="test" version="2.0"/>`, true, false, "test", "", "VOEvent"},
		{`<VOEvent role="" ivorn=""/>`, true, true, "", "", "VOEvent"},
		{`<voe:VOEvent xmlns:voe="urn:x" voe:role="test" voe:ivorn="ivo://a.b/c#d"/>`, false, false, "", "", "VOEvent"}, // qualified attributes are not Comet's
		{`<trn:Transport xmlns:trn="http://telescope-networks.org/schema/Transport/v1.1" role="iamalive" version="1.0"/>`, true, false, "iamalive", "", "Transport"},
	}
	for _, tc := range tests {
		info, err := Inspect([]byte(tc.doc), Options{})
		if err != nil {
			t.Errorf("%s: %v", tc.doc, err)
			continue
		}
		if info.HasRole != tc.hasRole || info.HasIVORN != tc.hasIVORN || info.Role != tc.role || info.IVORN != tc.ivorn || info.RootLocal != tc.local {
			t.Errorf("%s: got %+v", tc.doc, *info)
		}
	}
}

// docs/voevent.md §6: refuse DTDs and entities, never touch files or the
// network, bound depth; plus the unparsable cases of docs/vtp.md §6.
func TestUnparsable(t *testing.T) {
	deep := strings.Repeat("<a>", 10000) + strings.Repeat("</a>", 10000)
	tests := []struct {
		name, doc string
		is        error // extra errors.Is target, if any
	}{
		{"empty payload", "", xmlsafe.ErrNoRoot},
		{"whitespace only", " \n\t", xmlsafe.ErrNoRoot},
		{"comment only", "<!-- x -->", xmlsafe.ErrNoRoot},
		{"not XML", "hello, world", nil},
		{"JSON", `{"role": "observation"}`, nil},
		{"DOCTYPE internal subset", `<!DOCTYPE r [<!ENTITY e "x">]><r role="test">&e;</r>`, xmlsafe.ErrDTD},
		{"DOCTYPE unused", `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e "x">]><r role="test"/>`, xmlsafe.ErrDTD},
		{"external DTD", `<!DOCTYPE r SYSTEM "http://127.0.0.1:1/x.dtd"><r role="test"/>`, xmlsafe.ErrDTD},
		{"external entity", `<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r role="test">&x;</r>`, xmlsafe.ErrDTD},
		{"parameter entity", `<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><r role="test"/>`, xmlsafe.ErrDTD},
		{"billion laughs", `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><lolz role="test">&lol3;</lolz>`, xmlsafe.ErrDTD},
		{"lower-case doctype", `<!doctype r><r role="test"/>`, xmlsafe.ErrDTD},
		{"undeclared entity", `<r role="test">&foo;</r>`, nil},
		{"undeclared entity in attribute", `<r role="test" ivorn="&foo;"/>`, nil},
		{"10,000-deep nesting", deep, xmlsafe.ErrTooDeep},
		{"invalid UTF-8", "<r role=\"test\">\xff\xfe</r>", nil},
		{"invalid UTF-8 in attribute", "<r role=\"te\xc3st\"/>", nil},
		{"two roots", `<r role="test"/><r role="test"/>`, nil},
		{"text after root", `<r role="test"/>junk`, nil},
		{"text before root", `junk<r role="test"/>`, nil},
		{"unclosed root", `<r role="test">`, nil},
		{"mismatched end tag", `<r role="test"></s>`, nil},
		{"duplicate attribute", `<r role="test" role="ack"/>`, nil},
		{"undeclared prefix", `<p:r role="test"/>`, nil},
		{"unsupported charset", `<?xml version="1.0" encoding="UTF-16"?><r role="test"/>`, nil},
		{"XML declaration not first", ` <?xml version="1.0"?><r role="test"/>`, nil},
		{"illegal character", "<r role=\"test\">\x01</r>", nil},
		{"namespace name not a URI", `<r xmlns:p="a b" role="test"/>`, nil},
	}
	for _, tc := range tests {
		start := time.Now()
		info, err := Inspect([]byte(tc.doc), Options{Schema: true})
		if err == nil || info != nil {
			t.Errorf("%s: got %+v, %v; want unparsable", tc.name, info, err)
			continue
		}
		if !errors.Is(err, ErrUnparsable) || tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: %v, want ErrUnparsable wrapping %v", tc.name, err, tc.is)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: took %v", tc.name, d)
		}
	}
}

func TestMaxDepth(t *testing.T) {
	doc := []byte(`<r role="test"><a><b><c/></b></a></r>`) // depth 4
	if _, err := Inspect(doc, Options{MaxDepth: 4}); err != nil {
		t.Errorf("depth 4 with MaxDepth 4: %v", err)
	}
	if _, err := Inspect(doc, Options{MaxDepth: 3}); !errors.Is(err, xmlsafe.ErrTooDeep) || !errors.Is(err, ErrUnparsable) {
		t.Errorf("depth 4 with MaxDepth 3: %v", err)
	}
	deep := strings.Repeat("<a>", xmlsafe.DefaultMaxDepth) + strings.Repeat("</a>", xmlsafe.DefaultMaxDepth)
	if _, err := Inspect([]byte(deep), Options{}); err != nil {
		t.Errorf("depth %d with the default limit: %v", xmlsafe.DefaultMaxDepth, err)
	}
}

// No file or network access whatever a document references: a FIFO would
// block any open forever, and a listener records any connection.
func TestNoExternalAccess(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	connected := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			connected <- struct{}{}
			c.Close()
		}
	}()
	url := "http://" + ln.Addr().String() + "/x"
	docs := []string{
		`<!DOCTYPE r SYSTEM "` + fifo + `"><r role="test"/>`,
		`<!DOCTYPE r SYSTEM "file://` + fifo + `"><r role="test"/>`,
		`<!DOCTYPE r [<!ENTITY x SYSTEM "file://` + fifo + `">]><r role="test">&x;</r>`,
		`<!DOCTYPE r [<!ENTITY % p SYSTEM "` + url + `"> %p;]><r role="test"/>`,
		`<!DOCTYPE r SYSTEM "` + url + `"><r role="test"/>`,
		`<r role="test" xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="` + url + `"/></r>`,
		`<voe:VOEvent xmlns:voe="` + NamespaceVOEvent20 + `" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="` + NamespaceVOEvent20 + ` ` + url + `" version="2.0" role="test" ivorn="ivo://a.b/c#d"/>`,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, d := range docs {
			Inspect([]byte(d), Options{Schema: true})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Inspect blocked: it opened a referenced file")
	}
	select {
	case <-connected:
		t.Fatal("Inspect connected to a referenced URL")
	case <-time.After(100 * time.Millisecond):
	}
}
