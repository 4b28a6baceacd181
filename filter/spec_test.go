package filter

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/comet-go/comet/internal/vtptest"
)

// sampleEvent is the event composed for docs/filtering.md §3, verbatim.
const sampleEvent = vtptest.FilteringSample

// sendTo is the broadcaster's decision for one subscriber, as the
// broadcaster makes it: compile each filter, keep those that fail as
// refused (never matching), then MatchAny.
func sendTo(t testing.TB, d *Doc, exprs ...string) bool {
	t.Helper()
	var fs []*Filter
	for _, e := range exprs {
		f, err := Compile(e)
		if err != nil {
			t.Logf("refused: %v", err)
			f = Refuse(e, err)
		}
		fs = append(fs, f)
	}
	return d.MatchAny(fs, DefaultBudget, nil)
}

func mustParse(t testing.TB, payload []byte) *Doc {
	t.Helper()
	d, err := Parse(payload)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return d
}

// TestWorkedExamples is docs/filtering.md §3, every row: the XPath result
// and whether the event is sent.
func TestWorkedExamples(t *testing.T) {
	d := mustParse(t, []byte(sampleEvent))
	tests := []struct {
		n      int
		expr   string
		result string // what evaluate gives: compile, eval, nodes:N, bool:, num:, str:
		sent   bool
	}{
		{1, `/*[local-name()="VOEvent" and @role!="test"]`, "nodes:1", true},
		{2, `//Param[@name="SNR" and @value>10]`, "nodes:1", true},
		{3, `//Param[@name="SNR" and @value>20]`, "nodes:0", false},
		{4, `//voe:VOEvent`, "eval", false},
		{5, `//voe::VOEvent`, "compile", false}, // refused: never matches (Comet: dropped, so unfiltered)
		{6, `//Who[AuthorIVORN="ivo://example.observatory/survey"]`, "nodes:1", true},
		{7, `count(//Param)`, "num:3", true},
		{8, `count(//Table)`, "num:0", false},
		{9, `string(//Why/@importance)`, "str:", false},
		{10, `string(//Who/AuthorIVORN)`, "str:ivo://example.observatory/survey", true},
		{11, `boolean(//Citations/EventIVORN[@cite="retraction"])`, "bool:false", false},
		{12, `number(//Param[@name="Packet_Type"]/@value) = 61`, "bool:true", true},
		{13, `number(//Param[@name="Nope"]/@value)`, "num:NaN", true},
		{14, `@role = "observation"`, "bool:true", true},
		{15, `/VOEvent`, "nodes:0", false},
		{16, `//Param[@name="Retracted"]/@value = "false"`, "bool:true", true},
		{17, `//Param[@name="Retracted" and @value="true"]`, "nodes:0", false},
		{18, `"false"`, "str:false", true},
		{19, `0 div 0`, "num:NaN", true},
		{19, `1 div 0`, "num:Infinity", true},
		{19, `-0`, "num:0", false},
		{20, `starts-with(@ivorn, "ivo://example.observatory/")`, "bool:true", true},
		{21, `//Position2D/Value2/C1 > 100 and //Position2D/Value2/C2 < 0`, "bool:true", true},
		{22, `re:test(//Param/@name, "^S")`, "eval", false},
	}
	for _, tc := range tests {
		if got := describe(t, d, tc.expr); got != tc.result {
			t.Errorf("#%d %s: result %s, want %s", tc.n, tc.expr, got, tc.result)
		}
		if got := sendTo(t, d, tc.expr); got != tc.sent {
			t.Errorf("#%d %s: sent=%v, want %v", tc.n, tc.expr, got, tc.sent)
		}
	}
	// -0 is negative zero, which Python's truth test treats as false.
	if v := mustEval(t, d, "-0"); !(v.n == 0 && 1/v.n < 0) {
		t.Errorf("-0 evaluates to %v, want negative zero", v.n)
	}
}

// TestCombinations is the end of docs/filtering.md §3: filters are OR'd,
// and a refused filter never matches. Comet drops a filter that does not
// compile, so a subscriber whose every filter is refused gets everything
// there; here it gets nothing: refusing a filter never widens what a
// subscriber receives.
func TestCombinations(t *testing.T) {
	d := mustParse(t, []byte(sampleEvent))
	const (
		f2 = `//Param[@name="SNR" and @value>10]`
		f3 = `//Param[@name="SNR" and @value>20]`
		f4 = `//voe:VOEvent`
		f5 = `//voe::VOEvent`
		f8 = `count(//Table)`
	)
	tests := []struct {
		exprs []string
		sent  bool
	}{
		{[]string{f3, f8}, false},
		{[]string{f3, f2}, true},
		{[]string{f4, f5}, false},     // #4 errors, #5 is refused
		{[]string{f5}, false},         // only a refused filter: nothing (Comet: everything)
		{nil, true},                   // no filters asked for: everything
		{[]string{f5, f5, f5}, false}, // (Comet: everything)
		{[]string{f5, f2}, true},      // a refused filter does not stop the others
		{[]string{f4, f3, f8}, false},
		{[]string{f4, f2}, true}, // an erroring filter does not stop the others
	}
	for _, tc := range tests {
		if got := sendTo(t, d, tc.exprs...); got != tc.sent {
			t.Errorf("%q: sent=%v, want %v", tc.exprs, got, tc.sent)
		}
	}
}

// TestCrossCheck is docs/filtering.md §4: exact match sets over the 37
// test events.
func TestCrossCheck(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "voevents", "*.xml"))
	if err != nil || len(files) != 37 {
		t.Fatalf("want the 37 test events, found %d (%v)", len(files), err)
	}
	docs := map[string]*Doc{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[filepath.Base(f)] = mustParse(t, raw)
	}
	except := func(drop ...string) []string {
		var out []string
		for name := range docs {
			if !slices.Contains(drop, name) {
				out = append(out, name)
			}
		}
		return out
	}
	var gcn []string // ivorn starts ivo://nasa.gsfc.gcn/, except kill_socket.xml
	for name, d := range docs {
		if name != "kill_socket.xml" && sendTo(t, d, `starts-with(@ivorn, "ivo://nasa.gsfc.gcn/")`) {
			gcn = append(gcn, name)
		}
	}
	tests := []struct {
		expr string
		want []string
	}{
		{`//Param[@name="Packet_Type" and @value="61"]`,
			[]string{"BAT_GRB_Pos_655721-214.xml", "SWIFT_1125809-092.xml"}},
		{`starts-with(@ivorn, "ivo://gwnet/LVC#")`,
			[]string{"GW190425_initial.xml", "MS181101ab-1-Preliminary.xml", "MS181101ab-4-Retraction.xml", "S190510g-1-Preliminary.xml"}},
		{`//Citations/EventIVORN[@cite="retraction"]`,
			[]string{"MS181101ab-4-Retraction.xml"}},
		{`//voe:VOEvent`, nil},
		{`/*[local-name()="VOEvent" and @role!="test"]`, except(
			"BrokerTest-2014-04-23T14_15_07.59.xml", "GRB180422.913_Subthreshold.xml",
			"MS181101ab-1-Preliminary.xml", "MS181101ab-4-Retraction.xml", "Offline_Pos_000234-0-165.xml",
			"SA_Test_Pos_2016-07-01T01_51_55.00_099999-379.xml", "TestEvent-2016-07-01T00_39_01.xml",
			"TestEvent-2019-05-01T00_40_17Z.xml", "no_namespace_packet.xml", "rfcand210513UT20SGx.xml", "sample3.xml")},
		{`//Who[AuthorIVORN="ivo://nasa.gsfc.tan/gcn"]`, gcn},
		{`count(//Param) > 30`, []string{
			"1404240180654111988.xml", "BAT_GRB_Pos_655721-214.xml", "BAT_SubSubThresh_Pos_-1999855175-759.xml",
			"GRB180116A_Fermi_GBM_Alert.xml", "GRB180116A_Fermi_GBM_Flt_Pos.xml", "GRB180116A_Fermi_GBM_Gnd_Pos.xml",
			"GRB180422.913_Subthreshold.xml", "MOA_Lensing_Event_2015-07-10T14_50_54.00.xml", "Offline_Pos_000234-0-165.xml",
			"Point_Dir_2017-10-26T19_40_00.00_000000-0-136.xml", "SA_Test_Pos_2016-07-01T01_51_55.00_099999-379.xml",
			"SWIFT_1125809-092.xml", "SWIFT_xrt_position_v1.1_example.xml", "gbm_flt_pos.xml"}},
	}
	if len(tests[4].want) != 26 || len(gcn) != 18 {
		t.Fatalf("table sizes: %d files with role != test (want 26), %d GCN files (want 18)", len(tests[4].want), len(gcn))
	}
	for _, tc := range tests {
		var got []string
		for name, d := range docs {
			if sendTo(t, d, tc.expr) {
				got = append(got, name)
			}
		}
		sort.Strings(got)
		want := slices.Clone(tc.want)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s:\n got  %s\n want %s", tc.expr, strings.Join(got, " "), strings.Join(want, " "))
		}
	}
}
