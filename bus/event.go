package bus

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Header names on every event message (public contract).
const (
	HeaderMsgID      = jetstream.MsgIDHeader // "Nats-Msg-Id" = sha1
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
	SHA1       string // Digest(Payload), computed by the caller
	IVORN      string
	Role       string
	Author     string // AuthorIVORN; may be empty
	Origin     string // OriginAuthor, OriginUpstream or OriginKafka
	Node       string // receiving node; empty means Config.Node
	Peer       string // sender's address
	Signature  string // e.g. SignatureUnchecked
	ReceivedAt time.Time
}

// Outcome of Ingest.
type Outcome int

const (
	// Accepted: the event is new and now stored on the stream.
	Accepted Outcome = iota + 1
	// Duplicate: the event was seen before; nothing was stored.
	Duplicate
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Duplicate:
		return "duplicate"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
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

func validSHA1(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (b *Bus) checkEvent(ev *Event) error {
	switch {
	case !validSHA1(ev.SHA1):
		return fmt.Errorf("SHA1 %q is not 40 lowercase hex digits", ev.SHA1)
	case ev.Origin != OriginAuthor && ev.Origin != OriginUpstream && ev.Origin != OriginKafka:
		return fmt.Errorf("origin %q is not %q, %q or %q", ev.Origin, OriginAuthor, OriginUpstream, OriginKafka)
	case len(ev.Payload) > b.cfg.MaxPayload:
		return fmt.Errorf("payload of %d bytes exceeds MaxPayload %d", len(ev.Payload), b.cfg.MaxPayload)
	}
	return nil
}

// Ingest records ev as seen and stores it on the stream, atomically with
// respect to every other Ingest of the same bytes in any process. It
// returns Accepted only once the stream has acknowledged storing the event
// (guarantee 1), and Accepted at most once per SHA-1 per SeenTTL
// (guarantee 2); an error means the event is not known to be stored and
// the sender should retry.
//
// The seen-record (KV Create) is a claim made before the publish. If the
// process dies between the two, the claim would make the author's retry a
// Duplicate and lose the event. So an existing record younger than
// DupWindow counts only if the stream holds the event: while the record is
// younger than ClaimTimeout (its publish may still be in flight) this call
// waits for the event to appear, and once it is older the claim is stale
// and this call takes it over (revision-guarded, so one taker wins) and
// publishes. A late publish by
// the original claimant is then dropped by the stream's Nats-Msg-Id
// window. Records older than DupWindow are Duplicates unconditionally.
// Record ages use the server's timestamp of the record, so with an
// external system the clocks must agree to well within ClaimTimeout.
func (b *Bus) Ingest(ctx context.Context, ev *Event) (Outcome, error) {
	if err := b.checkEvent(ev); err != nil {
		return 0, fmt.Errorf("bus: ingest: %w", err)
	}
	c := b.pick()
	key := ev.SHA1
	for attempt := 0; ; attempt++ {
		// Each call gets RequestTimeout, not the whole of ctx: a reply lost
		// with a dying NATS node would otherwise hold the author until its
		// deadline. Asking again finds our own claim and waits on it.
		cctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
		rev, err := c.kv.Create(cctx, key, recordValue(time.Now()))
		cancel()
		if err == nil {
			return b.publish(ctx, c, ev, rev)
		}
		if unanswered(err) && ctx.Err() == nil && attempt < maxUnansweredClaims {
			b.log.Warn("no answer to the seen-record claim; asking again", "sha1", key, "err", err)
			continue
		}
		if !isKeyExists(err) {
			return 0, fmt.Errorf("bus: recording %s as seen: %w", key, err)
		}
		// Not c.kv.Get: the bucket allows direct gets, which any replica
		// answers, and one that has not applied the record yet says "not
		// found" although Create just said it exists.
		e, err := b.seenRecord(ctx, c, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) && attempt < 3 {
			continue // released by a failed publish since our Create
		}
		if err != nil {
			return 0, fmt.Errorf("bus: reading seen-record %s: %w", key, err)
		}
		age := time.Since(e.created)
		if age >= b.cfg.DupWindow {
			return Duplicate, nil
		}
		// A young claim is a publish in flight, or one that died with its
		// process (the author then retries at once, often through another
		// ingress). Wait for the stream to hold the event; if the claim
		// reaches ClaimTimeout first, it is stale: take it over below.
		stored, err := b.stored(ctx, key)
		for err == nil && !stored && age < b.cfg.ClaimTimeout {
			select {
			case <-ctx.Done():
				return 0, fmt.Errorf("bus: waiting for the claim on %s: %w", key, ctx.Err())
			case <-time.After(min(b.cfg.ClaimTimeout-age, ClaimPollInterval)):
			}
			age = time.Since(e.created)
			stored, err = b.stored(ctx, key)
		}
		if err != nil {
			return 0, fmt.Errorf("bus: looking for %s on the stream: %w", key, err)
		}
		if stored {
			return Duplicate, nil
		}
		rev, err = c.kv.Update(ctx, key, recordValue(time.Now()), e.revision)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || isKeyExists(err) {
			return Duplicate, nil // another process took it over first
		}
		if err != nil {
			return 0, fmt.Errorf("bus: taking over stale claim %s: %w", key, err)
		}
		b.log.Warn("taking over a stale seen-record (a publish never happened)", "sha1", key, "age", age)
		return b.publish(ctx, c, ev, rev)
	}
}

// maxUnansweredClaims bounds how often Ingest repeats an unanswered claim
// within the caller's deadline.
const maxUnansweredClaims = 4

// publish stores a claimed event and waits for the stream's ack. On
// failure it releases the claim, unless the event may be stored after all.
func (b *Bus) publish(ctx context.Context, c *conn, ev *Event, rev uint64) (Outcome, error) {
	pctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	pa, err := c.js.PublishMsg(pctx, b.message(ev))
	cancel()
	if err == nil {
		if pa.Stream == StreamName {
			return Accepted, nil // a Duplicate ack also means stored
		}
		err = fmt.Errorf("stored in stream %s instead of %s: overlapping stream subjects", pa.Stream, StreamName)
	}
	// ctx may be what failed; clean up on a fresh one.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.RequestTimeout)
	defer cancel()
	if !notStored(err) {
		// A timeout or lost connection leaves it open whether the stream
		// stored the event; ask it.
		stored, serr := b.stored(rctx, ev.SHA1)
		if serr != nil {
			return 0, fmt.Errorf("bus: storing %s: %w (outcome unknown; the claim stays and a retry after %v takes it over)",
				ev.SHA1, err, b.cfg.ClaimTimeout)
		}
		if stored {
			return Accepted, nil
		}
	}
	if derr := c.kv.Delete(rctx, ev.SHA1, jetstream.LastRevision(rev)); derr != nil {
		return 0, fmt.Errorf("bus: storing %s: %w; releasing its seen-record also failed: %v", ev.SHA1, err, derr)
	}
	return 0, fmt.Errorf("bus: storing %s: %w", ev.SHA1, err)
}

// notStored reports errors after which the event is certainly not stored.
func notStored(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject)
}

// isKeyExists matches a failed KV Create or Update on an existing key:
// code 10071, or 10164 from replicated streams.
func isKeyExists(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// stored reports whether the stream holds an event with this SHA-1, under
// any origin, role or authority.
func (b *Bus) stored(ctx context.Context, sha1 string) (bool, error) {
	_, err := b.stream.GetLastMsgForSubject(ctx, SubjectPrefix+"*.*.*."+sha1)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Seen reports whether sha1 is in the previously-seen bucket.
func (b *Bus) Seen(ctx context.Context, sha1 string) (bool, error) {
	if !validSHA1(sha1) {
		return false, fmt.Errorf("bus: SHA1 %q is not 40 lowercase hex digits", sha1)
	}
	_, err := b.pick().kv.Get(ctx, sha1)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("bus: reading seen-record %s: %w", sha1, err)
	}
	return true, nil
}

// recordValue is Comet's format: seconds since the epoch with a fraction.
func recordValue(t time.Time) []byte {
	us := t.UnixMicro()
	buf := make([]byte, 0, 24)
	buf = strconv.AppendInt(buf, us/1e6, 10)
	buf = append(buf, '.')
	frac := strconv.AppendInt(make([]byte, 0, 8), 1e6+us%1e6, 10)
	return append(buf, frac[1:]...)
}

// message builds the stream message of ev; one allocation holds all the
// header values.
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
		ev.SHA1,
		headerValue(ev.IVORN),
		headerValue(ev.Role),
		ev.Origin,
		string(at.UTC().AppendFormat(tb[:0], ReceivedAtLayout)),
		headerValue(node),
		headerValue(ev.Peer),
		headerValue(ev.Signature),
		headerValue(ev.Author),
	}
	keys := [...]string{HeaderMsgID, HeaderSHA1, HeaderIVORN, HeaderRole, HeaderOrigin,
		HeaderReceivedAt, HeaderNode, HeaderPeer, HeaderSignature, HeaderAuthor}
	n := len(keys)
	if ev.Author == "" {
		n-- // Author is last
	}
	vs := vals[:] // escapes to the heap once
	h := make(nats.Header, n)
	for i := 0; i < n; i++ {
		h[keys[i]] = vs[i : i+1 : i+1]
	}
	return &nats.Msg{
		Subject: Subject(ev.Origin, ev.Role, Authority(ev.IVORN), ev.SHA1),
		Header:  h,
		Data:    ev.Payload,
	}
}

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

// record is a seen-record as its stream's leader has it.
type record struct {
	created  time.Time
	revision uint64
}

// seenRecord reads the seen-record of key from the bucket stream's leader
// ($JS.API.STREAM.MSG.GET, not a direct get), so it sees every write
// acknowledged before. A deleted or purged key is ErrKeyNotFound.
func (b *Bus) seenRecord(ctx context.Context, c *conn, key string) (record, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + SeenBucket + "." + key})
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.cfg.RequestTimeout)
		defer cancel()
	}
	msg, err := c.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+SeenBucket, req)
	if err != nil {
		return record{}, err
	}
	var resp struct {
		Message *struct {
			Seq  uint64    `json:"seq"`
			Hdrs []byte    `json:"hdrs"`
			Time time.Time `json:"time"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return record{}, fmt.Errorf("bus: bad STREAM.MSG.GET reply: %w", err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound) {
			return record{}, jetstream.ErrKeyNotFound
		}
		return record{}, fmt.Errorf("bus: STREAM.MSG.GET: %s (%d)", resp.Error.Description, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return record{}, errors.New("bus: empty STREAM.MSG.GET reply")
	}
	// A Delete or Purge leaves a marker with a KV-Operation header.
	if bytes.Contains(resp.Message.Hdrs, []byte("KV-Operation")) {
		return record{}, jetstream.ErrKeyNotFound
	}
	return record{created: resp.Message.Time, revision: resp.Message.Seq}, nil
}
