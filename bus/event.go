package bus

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Header names on every event message (public contract). Event messages
// carry no Nats-Msg-Id: the expected-sequence check of Ingest, not the
// stream's duplicate window, keeps a payload from being stored twice.
const (
	HeaderSHA1       = "Comet-Sha1"
	HeaderIVORN      = "Comet-Ivorn"
	HeaderRole       = "Comet-Role"
	HeaderAuthor     = "Comet-Author"
	HeaderOrigin     = "Comet-Origin"
	HeaderReceivedAt = "Comet-Received-At"
	HeaderNode       = "Comet-Node"
	HeaderPeer       = "Comet-Peer"
	HeaderSignature  = "Comet-Signature"
)

// HeaderMsgID ("Nats-Msg-Id") deduplicates dead letters (see
// DeadLetterPublisher); event messages do not carry it.
const HeaderMsgID = jetstream.MsgIDHeader

// Origin values: how the event reached this broker.
const (
	OriginAuthor   = "author"   // submitted by an author (receiver role)
	OriginUpstream = "upstream" // relayed by a broker we subscribe to
	OriginKafka    = "kafka"    // read from a Kafka topic (--kafka)
)

// SignatureUnchecked is the Comet-Signature of an event whose signature
// was not checked.
const SignatureUnchecked = "unchecked"

// SignatureVerified is the Comet-Signature of an event whose OpenPGP
// signature the receiver checked (--sender-auth):
// "verified:<fingerprint of the signing key>".
func SignatureVerified(fingerprint string) string { return "verified:" + fingerprint }

// ReceivedAtLayout is the Comet-Received-At format: RFC 3339 in UTC with
// all nine fractional digits.
const ReceivedAtLayout = "2006-01-02T15:04:05.000000000Z07:00"

// MaxTokenLen caps an escaped subject token; longer ones are cut and end
// in "~" (which escaping never produces), keeping subjects well under the
// server's 4 KiB control line.
const MaxTokenLen = 128

// Event is one VOEvent as stored on the bus.
type Event struct {
	Payload    []byte // exactly as received
	SHA1       string // Digest(Payload); Ingest sets it
	IVORN      string
	Role       string
	Author     string // AuthorIVORN; may be empty
	Origin     string // OriginAuthor, OriginUpstream or OriginKafka
	Node       string // receiving node; empty means Config.Node
	Peer       string // sender's address
	Signature  string // e.g. SignatureUnchecked
	ReceivedAt time.Time
}

// Digest is the previously-seen key of a payload: the lowercase hex SHA-1
// of all its bytes (docs/bus.md §2.1).
func Digest(payload []byte) string {
	sum := sha1.Sum(payload)
	return hex.EncodeToString(sum[:])
}

// Subject is the stream subject of an event:
// comet.event.<origin>.<role>.<authority>.<sha1>, each token escaped.
func Subject(origin, role, authority, sha1 string) string {
	return SubjectPrefix + EscapeToken(origin) + "." + EscapeToken(role) + "." +
		EscapeToken(authority) + "." + EscapeToken(sha1)
}

// EscapeToken makes s one subject token: every byte outside [A-Za-z0-9-_]
// becomes %XX (uppercase hex), so dots and wildcards cannot split or widen
// subjects; "" becomes "_". See MaxTokenLen for very long values.
func EscapeToken(s string) string {
	if s == "" {
		return "_"
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !tokenSafe(s[i]) {
			n++
		}
	}
	if n == 0 && len(s) <= MaxTokenLen {
		return s
	}
	const hexDigits = "0123456789ABCDEF"
	buf := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if tokenSafe(c) {
			buf = append(buf, c)
		} else {
			buf = append(buf, '%', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	if len(buf) > MaxTokenLen {
		cut := MaxTokenLen - 1
		// Never split a %XX triple ('%' only ever starts one).
		if buf[cut-1] == '%' {
			cut--
		} else if buf[cut-2] == '%' {
			cut -= 2
		}
		buf = append(buf[:cut], '~')
	}
	return string(buf)
}

func tokenSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// Authority is the authority part of an IVORN ("ivo://auth/path#frag"),
// "" if there is none.
func Authority(ivorn string) string {
	const scheme = "ivo://"
	if len(ivorn) < len(scheme) || !strings.EqualFold(ivorn[:len(scheme)], scheme) {
		return ""
	}
	rest := ivorn[len(scheme):]
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// message builds the stream message of ev (whose SHA1 is set): the
// payload, the Comet-* headers, the payload's time to live, and the
// expected-sequence pair that makes its store the atomic previously-seen
// check (see Ingest). One allocation holds all the header values.
func (b *Bus) message(ev *Event) *nats.Msg {
	node := ev.Node
	if node == "" {
		node = b.cfg.Node
	}
	at := ev.ReceivedAt
	if at.IsZero() {
		at = time.Now()
	}
	var tb [40]byte
	vals := [...]string{
		ev.SHA1,
		headerValue(ev.IVORN),
		headerValue(ev.Role),
		ev.Origin,
		string(at.UTC().AppendFormat(tb[:0], ReceivedAtLayout)),
		headerValue(node),
		headerValue(ev.Peer),
		headerValue(ev.Signature),
		"0",
		seenSubject(ev.SHA1),
		b.payloadTTL,
		headerValue(ev.Author),
	}
	keys := [...]string{HeaderSHA1, HeaderIVORN, HeaderRole, HeaderOrigin,
		HeaderReceivedAt, HeaderNode, HeaderPeer, HeaderSignature,
		jetstream.ExpectedLastSubjSeqHeader, jetstream.ExpectedLastSubjSeqSubjHeader, jetstream.MsgTTLHeader,
		HeaderAuthor}
	n := len(keys)
	if ev.Author == "" {
		n-- // Author is last
	}
	vs := vals[:] // escapes to the heap once
	h := make(nats.Header, n)
	for i := 0; i < n; i++ {
		if vs[i] != "" || keys[i] != jetstream.MsgTTLHeader {
			h[keys[i]] = vs[i : i+1 : i+1]
		}
	}
	return &nats.Msg{
		Subject: Subject(ev.Origin, ev.Role, Authority(ev.IVORN), ev.SHA1),
		Header:  h,
		Data:    ev.Payload,
	}
}

// seenSubject matches the stream record of a payload under any origin,
// role and authority: comet.event.*.*.*.<sha1>.
func seenSubject(sha1 string) string { return SubjectPrefix + "*.*.*." + sha1 }

// headerValue keeps a value to one line and MaxHeaderValue bytes.
func headerValue(s string) string {
	if len(s) > MaxHeaderValue {
		cut := MaxHeaderValue
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	if strings.ContainsAny(s, "\r\n") {
		s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	}
	return s
}
