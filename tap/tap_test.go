package tap_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/filter"
	"github.com/comet-go/comet/internal/vtptest"
	"github.com/comet-go/comet/tap"
	"github.com/comet-go/comet/voevent"
)

const voevents = "../testdata/voevents"

func sample(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(voevents, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var receivedAt = time.Date(2026, 11, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))

// delivery is what the bus would hand over for payload: the headers as
// the receiver sets them.
func delivery(t testing.TB, payload []byte, seq uint64) *bus.Delivery {
	t.Helper()
	info, err := voevent.Inspect(payload, voevent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sha := bus.Digest(payload)
	return &bus.Delivery{
		Event: bus.Event{
			Payload: payload, SHA1: sha, IVORN: info.IVORN, Role: info.Role, Author: info.Author,
			Origin: bus.OriginAuthor, Node: "node-1", Peer: "127.0.0.1:40000",
			Signature: bus.SignatureUnchecked, ReceivedAt: receivedAt,
		},
		Subject: bus.Subject(bus.OriginAuthor, info.Role, bus.Authority(info.IVORN), sha),
		Seq:     seq,
	}
}

// line prints d and returns the line, checked to be one line of valid
// JSON, both as a Record and as a generic object (to see which keys are
// present and the exact number text).
func line(t testing.TB, d *bus.Delivery, opt tap.Options) (tap.Record, map[string]any) {
	t.Helper()
	var out bytes.Buffer
	printed, err := tap.NewPrinter(&out, opt).Print(d)
	if err != nil || !printed {
		t.Fatalf("Print = %v, %v", printed, err)
	}
	s := out.String()
	if !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 || !json.Valid(out.Bytes()) {
		t.Fatalf("not one line of valid JSON: %q", s)
	}
	var r tap.Record
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&out)
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return r, m
}

func param(t testing.TB, r tap.Record, name string) tap.Param {
	t.Helper()
	for _, p := range r.Params {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no param %q in %+v", name, r.Params)
	return tap.Param{}
}

// A GCN notice: headers, Params inside and outside Groups, WhereWhen with
// a position, Citations.
func TestGCNNotice(t *testing.T) {
	d := delivery(t, sample(t, "GRB180116A_Fermi_GBM_Flt_Pos.xml"), 7)
	r, m := line(t, d, tap.Options{})

	const ivorn = "ivo://nasa.gsfc.gcn/Fermi#GBM_Flt_Pos_2018-01-16T00:36:52.81_537755817_46-995"
	head := tap.Record{Seq: 7, Subject: "comet.event.author.observation.nasa%2Egsfc%2Egcn.1bbc6a5ac83bf5bea775f0e12d83d5f0c3c74860",
		SHA1: "1bbc6a5ac83bf5bea775f0e12d83d5f0c3c74860", IVORN: ivorn, Role: "observation",
		Author: "ivo://nasa.gsfc.tan/gcn", Date: "2018-01-16T00:36:56", ReceivedAt: "2026-11-01T11:00:00.123456789Z",
		Origin: "author", Node: "node-1", Peer: "127.0.0.1:40000", Signature: "unchecked"}
	got := r
	got.Params, got.WhereWhen, got.Citations = nil, nil, nil
	if !reflect.DeepEqual(got, head) {
		t.Errorf("header fields\n got %+v\nwant %+v", got, head)
	}

	if len(r.Params) != 46 {
		t.Errorf("%d params, want the file's 46", len(r.Params))
	}
	if p := r.Params[0]; p != (tap.Param{Name: "Packet_Type", Value: "111"}) {
		t.Errorf("first param %+v", p)
	}
	for name, want := range map[string]tap.Param{
		"Data_Signif":          {Name: "Data_Signif", Value: "6.30", Unit: "sigma", UCD: "stat.snr"},
		"Delayed_Transmission": {Name: "Delayed_Transmission", Value: "true", Group: "Misc_Flags"},
		"Sun_RA":               {Name: "Sun_RA", Value: "297.81", Unit: "deg", UCD: "pos.eq.ra", Group: "Obs_Support_Info"},
		"Coords_String":        {Name: "Coords_String", Value: "source_object"},
	} {
		if p := param(t, r, name); p != want {
			t.Errorf("param %s = %+v, want %+v", name, p, want)
		}
	}

	wantWW := &tap.WhereWhen{Observatory: "GEOLUN", CoordSystem: "UTC-FK5-GEO", Time: "2018-01-16T00:36:52.81",
		Position: &tap.Position{RA: "216.3833", Dec: "18.7000", ErrorRadius: "19.8333", Unit: "deg", Name1: "RA", Name2: "Dec"}}
	if !reflect.DeepEqual(r.WhereWhen, wantWW) {
		t.Errorf("wherewhen %+v / %+v", r.WhereWhen, r.WhereWhen.Position)
	}
	// Position numbers are JSON numbers, written as in the event.
	pos := m["wherewhen"].(map[string]any)["position"].(map[string]any)
	if pos["ra"] != json.Number("216.3833") || pos["dec"] != json.Number("18.7000") {
		t.Errorf("position in JSON: %v", pos)
	}

	wantCites := &tap.Citations{
		Events:      []tap.Citation{{IVORN: "ivo://nasa.gsfc.gcn/Fermi#GBM_Alert_2018-01-16T00:36:52.81_537755817_1-994", Cite: "followup"}},
		Description: "This is an updated position to the original trigger.",
	}
	if !reflect.DeepEqual(r.Citations, wantCites) {
		t.Errorf("citations %+v", r.Citations)
	}
	if _, ok := m["payload"]; ok {
		t.Error("payload present without Options.Payload")
	}
	if _, ok := m["parse_error"]; ok {
		t.Error("parse_error present")
	}
}

// A LIGO/Virgo alert: typed Params, Groups with a type and without a name,
// a WhereWhen with a time and no position, no AuthorIVORN, no Citations.
func TestGWAlert(t *testing.T) {
	r, m := line(t, delivery(t, sample(t, "GW190425_initial.xml"), 1), tap.Options{})
	if r.IVORN != "ivo://gwnet/LVC#S190425z-1-Initial" || r.Role != "observation" || r.Date != "2019-04-25T09:00:51" {
		t.Errorf("ivorn %q role %q date %q", r.IVORN, r.Role, r.Date)
	}
	for name, want := range map[string]tap.Param{
		"FAR": {Name: "FAR", Value: "4.53764787126e-13", Unit: "Hz", UCD: "arith.rate;stat.falsealarm", DataType: "float"},
		"skymap_fits": {Name: "skymap_fits", Value: "skyportal/tests/data/bayestar.fits.gz", UCD: "meta.ref.url",
			DataType: "string", Group: "bayestar", GroupType: "GW_SKYMAP"},
		"BNS":     {Name: "BNS", Value: "0.999402567114", UCD: "stat.probability", DataType: "float", GroupType: "Classification"},
		"GraceID": {Name: "GraceID", Value: "S190425z", UCD: "meta.id", DataType: "string"},
	} {
		if p := param(t, r, name); p != want {
			t.Errorf("param %s = %+v, want %+v", name, p, want)
		}
	}
	if len(r.Params) != 21 {
		t.Errorf("%d params, want 21", len(r.Params))
	}
	want := &tap.WhereWhen{Observatory: "LIGO Virgo", CoordSystem: "UTC-FK5-GEO", Time: "2019-04-25T08:18:05.017147"}
	if !reflect.DeepEqual(r.WhereWhen, want) {
		t.Errorf("wherewhen %+v", r.WhereWhen)
	}
	for _, absent := range []string{"author", "citations"} {
		if _, ok := m[absent]; ok {
			t.Errorf("%s present: %v", absent, m[absent])
		}
	}
	if _, ok := m["wherewhen"].(map[string]any)["position"]; ok {
		t.Error("position present in an event without one")
	}
}

func TestCitations(t *testing.T) {
	r, _ := line(t, delivery(t, sample(t, "MS181101ab-4-Retraction.xml"), 1), tap.Options{})
	want := &tap.Citations{Events: []tap.Citation{
		{IVORN: "ivo://gwnet/LVC#MS181101ab-1-Preliminary", Cite: "retraction"},
		{IVORN: "ivo://gwnet/LVC#MS181101ab-2-Initial", Cite: "retraction"},
		{IVORN: "ivo://gwnet/LVC#MS181101ab-3-Update", Cite: "retraction"},
	}, Description: "Determined to not be a viable GW event candidate"}
	if !reflect.DeepEqual(r.Citations, want) {
		t.Errorf("citations %+v", r.Citations)
	}

	// An empty EventIVORN is shown as written; positions keep their digits.
	r, _ = line(t, delivery(t, sample(t, "1404240180654111988.xml"), 1), tap.Options{})
	if !reflect.DeepEqual(r.Citations, &tap.Citations{Events: []tap.Citation{{Cite: "supersedes"}}}) {
		t.Errorf("citations %+v", r.Citations)
	}
	if p := r.WhereWhen.Position; p.RA != "187.7986500" || p.Dec != "-19.0105300" || r.WhereWhen.CoordSystem != "UTC-FK5-TOPO" {
		t.Errorf("wherewhen %+v %+v", r.WhereWhen, p)
	}
	if len(r.Params) != 69 {
		t.Errorf("%d params, want 69", len(r.Params))
	}
}

// A Param may carry its value in a Value element, and have no name.
func TestParamValueElement(t *testing.T) {
	r, _ := line(t, delivery(t, sample(t, "Gaia16aac.xml"), 1), tap.Options{})
	if p := r.Params[0]; p != (tap.Param{Value: "Gaia16aac", UCD: "meta.id", DataType: "string"}) {
		t.Errorf("first param %+v", p)
	}
	if p := param(t, r, "averagemag"); p.Value != "17.32" || p.Group != "alert-magnitude" {
		t.Errorf("averagemag %+v", p)
	}
	if p := r.WhereWhen.Position; p.RA != "73.29423" || p.Dec != "7.35212" || p.ErrorRadius != "0.00002" {
		t.Errorf("position %+v", p)
	}
}

// Every shared sample, accepted by Comet or not, gives one valid JSON line
// with the event's ivorn and no parse error.
func TestEverySample(t *testing.T) {
	for i, s := range vtptest.Samples(t, voevents) {
		d := delivery(t, s.Data, uint64(i+1))
		r, _ := line(t, d, tap.Options{Payload: true})
		if r.ParseError != "" {
			t.Errorf("%s: parse error %s", s.Name, r.ParseError)
		}
		if r.IVORN != d.IVORN || r.SHA1 != bus.Digest(s.Data) || r.Seq != uint64(i+1) {
			t.Errorf("%s: ivorn %q sha1 %s seq %d", s.Name, r.IVORN, r.SHA1, r.Seq)
		}
		if r.Payload == nil || (strings.ToValidUTF8(string(s.Data), "\uFFFD") != *r.Payload) {
			t.Errorf("%s: payload does not round-trip", s.Name)
		}
	}
}

// The payload's XML stays readable: no \u003c for every <.
func TestPayloadNotHTMLEscaped(t *testing.T) {
	var out bytes.Buffer
	if _, err := tap.NewPrinter(&out, tap.Options{Payload: true}).Print(delivery(t, sample(t, "sample3.xml"), 1)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"payload":"<?xml`) {
		t.Errorf("payload escaped: %s", out.String())
	}
}

// A payload that cannot be read still gives a line: header fields plus
// parse_error. A DTD is refused, never expanded or fetched.
func TestUnreadablePayloads(t *testing.T) {
	for name, payload := range map[string]string{
		"truncated": `<?xml version="1.0"?><voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" ivorn="ivo://a/b#c" role="test"><What><Param name="x" value="1"/>`,
		"not XML":   "hello",
		"empty":     "",
		"external entity": `<?xml version="1.0"?><!DOCTYPE VOEvent [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` +
			`<VOEvent ivorn="ivo://a/b#c" role="test"><What><Param name="x" value="&xxe;"/></What></VOEvent>`,
		"entity bomb": `<?xml version="1.0"?><!DOCTYPE VOEvent [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>` +
			`<VOEvent ivorn="ivo://a/b#c" role="test"><What><Param name="x" value="&b;"/></What></VOEvent>`,
		"undefined entity": `<VOEvent ivorn="ivo://a/b#c" role="test"><What><Param name="x" value="&nope;"/></What></VOEvent>`,
	} {
		p := []byte(payload)
		d := &bus.Delivery{Event: bus.Event{Payload: p, SHA1: bus.Digest(p), IVORN: "ivo://hdr/x#1", Role: "test",
			Origin: bus.OriginUpstream, ReceivedAt: receivedAt}, Subject: "comet.event.upstream.test.hdr.x", Seq: 3}
		r, m := line(t, d, tap.Options{})
		if r.ParseError == "" {
			t.Errorf("%s: no parse_error", name)
		}
		if r.IVORN != "ivo://hdr/x#1" || r.Role != "test" || r.Origin != "upstream" || r.Seq != 3 ||
			r.SHA1 != bus.Digest(p) || r.ReceivedAt != "2026-11-01T11:00:00.123456789Z" {
			t.Errorf("%s: header fields %+v", name, r)
		}
		for _, absent := range []string{"params", "wherewhen", "citations", "date"} {
			if _, ok := m[absent]; ok {
				t.Errorf("%s: %s present after a parse error", name, absent)
			}
		}
		if strings.Contains(name, "entity") && !strings.Contains(r.ParseError, "DTD") && name != "undefined entity" {
			t.Errorf("%s: parse_error %q does not name the DTD", name, r.ParseError)
		}
	}
}

// Without headers (a message put on the bus by hand) the payload fills in
// ivorn, role and author.
func TestPayloadFillsMissingHeaders(t *testing.T) {
	p := sample(t, "GRB180116A_Fermi_GBM_Alert.xml")
	r, _ := line(t, &bus.Delivery{Event: bus.Event{Payload: p}, Seq: 1}, tap.Options{})
	if r.IVORN != "ivo://nasa.gsfc.gcn/Fermi#GBM_Alert_2018-01-16T00:36:52.81_537755817_1-994" || r.Role != "observation" ||
		r.Author != "ivo://nasa.gsfc.tan/gcn" || r.ReceivedAt != "" {
		t.Errorf("%+v", r)
	}
}

// Filters select as Comet does for a subscriber: any filter matching lets
// the event through; an unparsable event matches none.
func TestFilters(t *testing.T) {
	var fs []*filter.Filter
	for _, x := range []string{`//Param[@name="Packet_Type" and @value="61"]`, `//Citations/EventIVORN[@cite="retraction"]`} {
		f, err := filter.Compile(x)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	var out bytes.Buffer
	pr := tap.NewPrinter(&out, tap.Options{Filters: fs})
	var printed []string
	for i, s := range vtptest.Samples(t, voevents) {
		ok, err := pr.Print(delivery(t, s.Data, uint64(i+1)))
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			printed = append(printed, s.Name)
		}
	}
	want := []string{"BAT_GRB_Pos_655721-214.xml", "MS181101ab-4-Retraction.xml", "SWIFT_1125809-092.xml"}
	if !reflect.DeepEqual(printed, want) {
		t.Errorf("printed %q, want %q", printed, want)
	}
	if n := strings.Count(out.String(), "\n"); n != len(want) {
		t.Errorf("%d lines for %d events", n, len(want))
	}
	bad := &bus.Delivery{Event: bus.Event{Payload: []byte("<nope")}}
	if ok, err := pr.Print(bad); ok || err != nil {
		t.Errorf("unparsable event with filters: printed %v, err %v", ok, err)
	}
	if ok, err := tap.NewPrinter(&out, tap.Options{}).Print(bad); !ok || err != nil {
		t.Errorf("unparsable event without filters: printed %v, err %v", ok, err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestWriteErrorIsReturned(t *testing.T) {
	_, err := tap.NewPrinter(failWriter{}, tap.Options{}).Print(delivery(t, sample(t, "sample3.xml"), 9))
	if err == nil || !strings.Contains(err.Error(), "broken pipe") || !strings.Contains(err.Error(), "event 9") {
		t.Errorf("error %v", err)
	}
}
