package voevent

import (
	"errors"
	"testing"

	"github.com/comet-go/comet/vtp"
)

// The examples of docs/voevent.md §3.1 (Comet's check gives the same
// verdicts), plus the quirks described there.
func TestIVOIDWorkedExamples(t *testing.T) {
	const (
		pass     = "pass"
		noLocal  = "grammar ok, receiver nak (empty local)"
		badIVOID = "fail"
	)
	tests := []struct {
		ivorn                      string
		want                       string
		authority, resource, local string // checked when want != fail
	}{
		{"ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_1125809-092", pass, "nasa.gsfc.gcn", "/SWIFT", "BAT_GRB_Pos_1125809-092"},
		{"ivo://gwnet/LVC#S190425z-1-Initial", pass, "gwnet", "/LVC", "S190425z-1-Initial"},
		{"ivo://nasa.gsfc.gcn/Fermi#GBM_Fin_Pos2019-04-25T08:18:05.00_577873090_0-540", pass, "nasa.gsfc.gcn", "/Fermi", "GBM_Fin_Pos2019-04-25T08:18:05.00_577873090_0-540"},
		{"ivo://au.csiro.atnf/parkes#FRB1405141714/56791.71885417", pass, "au.csiro.atnf", "/parkes", "FRB1405141714/56791.71885417"},
		{"ivo://nvo.caltech/voeventnet/catot#1404240180654111988", pass, "nvo.caltech", "/voeventnet/catot", "1404240180654111988"},
		{"ivo://testing#111", pass, "testing", "", "111"},
		{"ivo://psws.irap/VOEvent/Tao_Jupiter_2018-10-02T17_34_45::v1.0", pass, "psws.irap", "/VOEvent/Tao_Jupiter_2018-10-02T17_34_45", "::v1.0"},
		{"ivo://example.org/catot?100407", pass, "example.org", "/catot", "?100407"},
		{"ivo://comet.broker/test#", noLocal, "comet.broker", "/test", ""},
		{"ivo://nasa.gsfc.gcn/gcn", noLocal, "nasa.gsfc.gcn", "/gcn", ""},
		{"ivo://uk.org.estar/estar.ex#", noLocal, "uk.org.estar", "/estar.ex", ""},
		{"ivo://comet.broker/#local", badIVOID, "", "", ""}, // resource key ends with /
		{"ivo://comet.broker/a//b#x", badIVOID, "", "", ""},
		{"ivo://comet.broker/a/./b#x", badIVOID, "", "", ""},
		{"ivo://comet.broker/a/../b#x", badIVOID, "", "", ""},
		{"ivo://co/test#x", badIVOID, "", "", ""}, // authority too short
		{"ivo://_co/test#x", badIVOID, "", "", ""},
		{"ivo://ébroker/x#1", badIVOID, "", "", ""}, // first authority character must be ASCII
		{"ivo://#localID", badIVOID, "", "", ""},
		{"ivo:///resourceKey#", badIVOID, "", "", ""},
		{"ivo://", badIVOID, "", "", ""},
		{"ivo://comet.broker/test#a b", badIVOID, "", "", ""},
		{"ivo://comet.broker/test#a#b", badIVOID, "", "", ""},
		{"ivo://comet.broker/test#a<b", badIVOID, "", "", ""},
		{"ivo://comet.broker/te st#x", badIVOID, "", "", ""},
		{"IVO://comet.broker/test#x", badIVOID, "", "", ""},                       // scheme is case-sensitive
		{"ivo://comét.broker/tést#lôcal", pass, "comét.broker", "/tést", "lôcal"}, // Unicode quirk

		// Quirks and edges described in §3.1.
		{"ivo://a.b/c:d", pass, "a.b", "/c", ":d"},
		{"ivo://a.b/c?d", pass, "a.b", "/c", "?d"},
		{"ivo://comet.broker/test#x\n", badIVOID, "", "", ""}, // trailing-newline quirk NOT reproduced
		{"ivo://comet.broker/test#x\t", badIVOID, "", "", ""},
		{"ivo://comet.broker/test#\x00", badIVOID, "", "", ""},
		{"ivo://abc", noLocal, "abc", "", ""},
		{"ivo://ab", badIVOID, "", "", ""},
		{"ivo://9ab/x#1", pass, "9ab", "/x", "1"},
		{"ivo://a(b)c'~*/r_(1)#l+=/%!$&,;:@?", pass, "a(b)c'~*", "/r_(1)", "l+=/%!$&,;:@?"},
		{"ivo://aβγ/δ#٣", pass, "aβγ", "/δ", "٣"},     // Unicode letters and digits
		{"ivo://a.b/c#d\u0301", badIVOID, "", "", ""}, // combining mark is not \w
		{"ivo://a.b/c#[x]", badIVOID, "", "", ""},
		{"ivo://a.b:80/c#x", badIVOID, "", "", ""}, // no resource key after ':'; '#' cannot be in the local part
		{"ivo://a.b:80", pass, "a.b", "", ":80"},
		{"", badIVOID, "", "", ""},
		{"http://a.b/c#d", badIVOID, "", "", ""},
		// Without "#", the regexp backtracks to the longest valid resource
		// key and leaves the rest to the local part.
		{"ivo://a.b/c/", pass, "a.b", "/c", "/"},
		{"ivo://a.b/c//d", pass, "a.b", "/c", "//d"},
		{"ivo://a.b/", pass, "a.b", "", "/"},
	}
	for _, tc := range tests {
		auth, res, local, ok := SplitIVOID(tc.ivorn)
		if ok != (tc.want != badIVOID) || ValidIVOID(tc.ivorn) != ok {
			t.Errorf("%q: ok = %v, want %s", tc.ivorn, ok, tc.want)
			continue
		}
		if ok && (auth != tc.authority || res != tc.resource || local != tc.local) {
			t.Errorf("%q: split = %q %q %q, want %q %q %q", tc.ivorn, auth, res, local, tc.authority, tc.resource, tc.local)
		}
		err := CheckEventIVORN(tc.ivorn)
		switch tc.want {
		case pass:
			if err != nil {
				t.Errorf("%q: receiver: %v, want accept", tc.ivorn, err)
			}
		case noLocal:
			if err == nil || err.Error() != "No per-event local ID" || !errors.Is(err, ErrNoLocalID) {
				t.Errorf("%q: receiver: %v, want \"No per-event local ID\"", tc.ivorn, err)
			}
		case badIVOID:
			if err == nil || err.Error() != "Invalid IVOID: "+tc.ivorn || !errors.Is(err, ErrInvalidIVOID) {
				t.Errorf("%q: receiver: %v, want \"Invalid IVOID: %s\"", tc.ivorn, err, tc.ivorn)
			}
		}
	}
}

func TestRoles(t *testing.T) {
	for _, r := range []string{"observation", "prediction", "utility", "test"} {
		if !IsVOEventRole(r) || vtp.IsTransportRole(r) {
			t.Errorf("%q should be a VOEvent role only", r)
		}
	}
	for _, r := range []string{"iamalive", "ack", "nak", "authenticate"} {
		if !vtp.IsTransportRole(r) || IsVOEventRole(r) {
			t.Errorf("%q should be a Transport role only", r)
		}
	}
	for _, r := range []string{"", "Observation", "TEST", "test ", " ack", "Ack", "other"} {
		if IsVOEventRole(r) || vtp.IsTransportRole(r) {
			t.Errorf("%q must be neither (roles are case-sensitive and exact)", r)
		}
	}
}
