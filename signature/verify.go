package signature

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// MaxBlocks bounds the signature blocks a document may carry. Anyone
// relaying a document can append comments without breaking its signatures,
// and each block costs up to two public-key verifications (spans A and B),
// so a document with more blocks is refused before any is checked.
const MaxBlocks = 8

// maxSignatureSize bounds one decoded signature block: RSA signatures take a
// few hundred bytes, the largest post-quantum ones about 30 KB.
const maxSignatureSize = 64 << 10

// Span names the bytes a signature was found to cover (docs/openpgp.md §2).
type Span uint8

const (
	SpanRoot     Span = iota + 1 // A: the root element (what Sign signs)
	SpanDeclRoot                 // B: XML declaration + root element (2012 branch code)
)

func (s Span) String() string {
	switch s {
	case SpanRoot:
		return "root element"
	case SpanDeclRoot:
		return "declaration + root element"
	}
	return "unknown span"
}

// Result describes the signature that authenticated a document.
type Result struct {
	Fingerprint string // signer's primary key fingerprint, upper-case hex
	UserID      string // signer's primary user ID
	// TrustedBy is the fingerprint of the trusted key that vouches for the
	// signer: Fingerprint itself, or the trusted key that certified the
	// signer's user ID (a notary's signature).
	TrustedBy string
	Span      Span
	Block     int // index of the signature in Blocks(payload)
}

// Verifier checks signed documents against explicit key sets (the model of
// docs/openpgp.md §4). A signature counts when its key is in Trusted, or
// when its primary user ID carries a valid certification by a key in
// Trusted. Others holds further public keys that are not trusted by
// themselves but may be vouched for that way, typically notaries' keys: a
// signer's public key must be in Trusted or Others, since keys are never
// fetched. A key in both is taken from Trusted.
//
// Keys, signatures and certifications must be valid at Now (default
// time.Now): not revoked, not expired, not from the future (beyond a few
// minutes of clock skew), and the signing key must be flagged for signing.
// Signatures must be binary (type 0x00), detached, with a hash stronger
// than SHA-1. A Verifier is safe for concurrent use.
type Verifier struct {
	Trusted *Keyring
	Others  *Keyring
	Now     func() time.Time
}

// VerifyEvent authenticates an event's author (sender authentication): it
// accepts the document if some signature block verifies, over span A or
// else span B, and the trusted key vouching for it (the signer's own key,
// or a key that certified the signer's user ID) has a primary user ID whose
// name part equals authorIVORN. The error, when the document is refused,
// wraps one of the Err reasons: the most informative one when several
// signatures fail.
func (v *Verifier) VerifyEvent(payload []byte, authorIVORN string) (*Result, error) {
	return v.verify(payload, authorIVORN, true)
}

// VerifyAny authenticates a subscriber's reply: any signature that verifies
// and is trusted (the key is in Trusted, or its user ID is certified by a
// key in Trusted) is enough; no user ID is compared.
func (v *Verifier) VerifyAny(payload []byte) (*Result, error) {
	return v.verify(payload, "", false)
}

// EventSigner is VerifyEvent in the shape of the receiver's hook
// (ingress.Receiver.VerifySignature): the signing key's fingerprint, or
// why the event is refused.
func (v *Verifier) EventSigner(payload []byte, authorIVORN string) (string, error) {
	res, err := v.VerifyEvent(payload, authorIVORN)
	if err != nil {
		return "", err
	}
	return res.Fingerprint, nil
}

// SubscriberSigner is VerifyAny in the shape of the broadcaster's hook
// (egress.Broadcaster.VerifySubscriber): the signer's fingerprint and
// user ID, for the log.
func (v *Verifier) SubscriberSigner(msg []byte) (string, error) {
	res, err := v.VerifyAny(msg)
	if err != nil {
		return "", err
	}
	return res.Fingerprint + " " + res.UserID, nil
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) verify(payload []byte, identity string, checkIdentity bool) (*Result, error) {
	env, err := scan(payload)
	if err != nil {
		return nil, err
	}
	blocks := env.blocks(MaxBlocks)
	switch {
	case len(blocks) == 0:
		return nil, ErrUnsigned
	case len(blocks) > MaxBlocks:
		return nil, fmt.Errorf("%w: more than %d", ErrTooManySignatures, MaxBlocks)
	}
	now := v.now()
	spanA, decl := env.spanA(payload), env.decl(payload)
	var best error
	bestIndex := 0
	for i, b := range blocks {
		res, err := v.checkBlock(b.Armour, spanA, decl, identity, checkIdentity, now)
		if err == nil {
			res.Block = i
			return res, nil
		}
		if best == nil || rank(err) < rank(best) {
			best, bestIndex = err, i
		}
	}
	if len(blocks) > 1 {
		best = fmt.Errorf("%w (signature %d of %d; none is acceptable)", best, bestIndex+1, len(blocks))
	}
	return nil, best
}

// checkBlock parses one block and checks it against every key that may have
// made it.
func (v *Verifier) checkBlock(armour, spanA, decl []byte, identity string, checkIdentity bool, now time.Time) (res *Result, err error) {
	// go-crypto parses hostile bytes here; a bug there must cost one
	// refused document, not the broker.
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("%w: unparsable signature (%v)", ErrMalformed, r)
		}
	}()
	typ, body, _, err := decodeArmour(armour)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if typ != "PGP SIGNATURE" || len(body) > maxSignatureSize {
		return nil, fmt.Errorf("%w: not a PGP SIGNATURE block of at most %d bytes", ErrMalformed, maxSignatureSize)
	}
	sig, err := parseSignature(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch {
	case sig.SigType != packet.SigTypeBinary:
		return nil, fmt.Errorf("%w: signature type 0x%02x, want 0x00 (binary document)", ErrBadSignature, uint8(sig.SigType))
	case !sig.Hash.Available():
		return nil, fmt.Errorf("%w: unsupported hash algorithm", ErrBadSignature)
	case weakHash(sig.Hash):
		return nil, fmt.Errorf("%w: made with %v, which is refused", ErrBadSignature, sig.Hash)
	}
	for _, n := range sig.Notations {
		if n.IsCritical {
			return nil, fmt.Errorf("%w: unknown critical notation %q", ErrBadSignature, n.Name)
		}
	}
	refs := v.Trusted.keys(sig)
	for _, r := range v.Others.keys(sig) {
		if !v.Trusted.contains(r.ent) {
			refs = append(refs, r)
		}
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("%w: signed by %s, which is neither a trusted nor a known key", ErrUnknownKey, issuer(sig))
	}
	var best error
	for _, ref := range refs {
		res, err := v.checkKey(ref, body, spanA, decl, identity, checkIdentity, now)
		if err == nil {
			return res, nil
		}
		if best == nil || rank(err) < rank(best) {
			best = err
		}
	}
	return nil, best
}

// parseSignature reads the one signature packet a block must hold.
func parseSignature(body []byte) (*packet.Signature, error) {
	r := bytes.NewReader(body)
	p, err := packet.Read(r)
	if err != nil {
		return nil, fmt.Errorf("not an OpenPGP signature: %w", err)
	}
	sig, ok := p.(*packet.Signature)
	if !ok {
		return nil, fmt.Errorf("holds a %T packet, not a signature", p)
	}
	if r.Len() > 0 {
		return nil, errors.New("more than one packet (each signature goes in its own block)")
	}
	if sig.IssuerKeyId == nil && sig.IssuerFingerprint == nil {
		return nil, errors.New("signature names no issuer key")
	}
	return sig, nil
}

func issuer(sig *packet.Signature) string {
	if sig.IssuerFingerprint != nil {
		return "key " + strings.ToUpper(fmt.Sprintf("%x", sig.IssuerFingerprint))
	}
	return fmt.Sprintf("key ID %016X", *sig.IssuerKeyId)
}

// checkKey checks a block against one candidate key: cryptography, then the
// key's state, then trust and identity.
func (v *Verifier) checkKey(ref keyRef, body, spanA, decl []byte, identity string, checkIdentity bool, now time.Time) (*Result, error) {
	signer := ref.ent
	fpr, uid := fingerprint(signer.PrimaryKey), userID(signer, now)
	who := fmt.Sprintf("key %s (%q)", fpr, uid)
	if !ref.pub.PubKeyAlgo.CanSign() {
		return nil, fmt.Errorf("%w: %s: its algorithm cannot sign", ErrNotSigningKey, who)
	}
	span, sig, err := verifySpans(ref.pub, body, spanA, decl)
	if err != nil {
		over := "the root element"
		if decl != nil {
			over += " nor the declaration + root element"
		}
		return nil, fmt.Errorf("%w: %s: does not verify over %s (tampered, or signed other bytes)", ErrBadSignature, who, over)
	}
	if err := keyUsable(ref, packet.KeyFlagSign, now); err != nil {
		return nil, err
	}
	if err := validity("signature by "+who, sig.CreationTime, sig.SigLifetimeSecs, now); err != nil {
		return nil, err
	}
	if sig.CreationTime.Before(ref.pub.CreationTime) {
		return nil, fmt.Errorf("%w: %s: signature predates its key", ErrBadSignature, who)
	}
	vouchers, whyNot := v.vouchers(signer, now)
	if len(vouchers) == 0 {
		return nil, fmt.Errorf("%w: %s is not trusted, and no trusted key certifies its user ID%s", ErrUntrusted, who, whyNot)
	}
	res := &Result{Fingerprint: fpr, UserID: uid, Span: span}
	if !checkIdentity {
		res.TrustedBy = fingerprint(vouchers[0].PrimaryKey)
		return res, nil
	}
	if identity == "" {
		return nil, fmt.Errorf("%w: signer %s, but the event has no AuthorIVORN", ErrIdentityMismatch, who)
	}
	var names []string
	for _, t := range vouchers {
		name := userID(t, now)
		if namePart(name) == identity {
			res.TrustedBy = fingerprint(t.PrimaryKey)
			return res, nil
		}
		names = append(names, fmt.Sprintf("%q", name))
	}
	if len(vouchers) == 1 && vouchers[0] == signer {
		return nil, fmt.Errorf("%w: signer %s is not AuthorIVORN %q", ErrIdentityMismatch, who, identity)
	}
	return nil, fmt.Errorf("%w: signer %s is vouched for by %s, not by AuthorIVORN %q", ErrIdentityMismatch, who, strings.Join(names, ", "), identity)
}

// verifySpans checks the signature in body against pub over span A, then
// span B when there is one. The packet is parsed afresh for each attempt:
// go-crypto's VerifySignature may modify it (v5 signatures).
func verifySpans(pub *packet.PublicKey, body, spanA, decl []byte) (Span, *packet.Signature, error) {
	try := func(parts ...[]byte) (*packet.Signature, error) {
		sig, err := parseSignature(body)
		if err != nil {
			return nil, err
		}
		h, err := sig.PrepareVerify()
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			h.Write(p)
		}
		return sig, pub.VerifySignature(h, sig)
	}
	sig, err := try(spanA)
	if err == nil {
		return SpanRoot, sig, nil
	}
	if decl != nil {
		if sig, errB := try(decl, spanA); errB == nil {
			return SpanDeclRoot, sig, nil
		}
	}
	return 0, nil, err
}

// vouchers returns the trusted keys that vouch for signer: signer itself
// when trusted, and every trusted key with a valid certification of
// signer's primary user ID. whyNot explains refused certifications.
func (v *Verifier) vouchers(signer *openpgp.Entity, now time.Time) (out []*openpgp.Entity, whyNot string) {
	if v.Trusted.contains(signer) {
		out = append(out, signer)
	}
	id := primaryIdentity(signer, now)
	if id == nil {
		return out, ""
	}
	for _, cert := range id.Signatures {
		if cert.SigType < packet.SigTypeGenericCert || cert.SigType > packet.SigTypePositiveCert || cert.CheckKeyIdOrFingerprint(signer.PrimaryKey) {
			continue // not a third-party certification
		}
		for _, ref := range v.Trusted.keys(cert) {
			t := ref.ent
			if ref.sub != nil || t == signer || containsEntity(out, t) {
				continue // certifications are made by primary keys
			}
			if err := certValid(signer, id, cert, t, now); err != nil {
				whyNot = fmt.Sprintf(" (its certification by trusted key %s is refused: %v)", fingerprint(t.PrimaryKey), err)
				continue
			}
			out = append(out, t)
		}
	}
	return out, whyNot
}

func containsEntity(list []*openpgp.Entity, e *openpgp.Entity) bool {
	for _, x := range list {
		if x == e {
			return true
		}
	}
	return false
}

// certValid checks certifier's certification cert of signer's user ID id.
func certValid(signer *openpgp.Entity, id *openpgp.Identity, cert *packet.Signature, certifier *openpgp.Entity, now time.Time) error {
	switch {
	case !cert.Hash.Available():
		return errors.New("unsupported hash algorithm")
	case weakHash(cert.Hash):
		return fmt.Errorf("made with %v", cert.Hash)
	case cert.CreationTime.Before(certifier.PrimaryKey.CreationTime):
		return errors.New("predates the certifying key")
	}
	if err := validity("certification", cert.CreationTime, cert.SigLifetimeSecs, now); err != nil {
		return err
	}
	if err := certifier.PrimaryKey.VerifyUserIdSignature(id.Name, signer.PrimaryKey, cert); err != nil {
		return fmt.Errorf("does not verify: %v", err)
	}
	if err := keyUsable(keyRef{ent: certifier, pub: certifier.PrimaryKey}, packet.KeyFlagCertify, now); err != nil {
		return err
	}
	// A later certification revocation by the same key withdraws it.
	for _, r := range id.Signatures {
		if r.SigType == packet.SigTypeCertificationRevocation && r.CheckKeyIdOrFingerprint(certifier.PrimaryKey) &&
			!r.CreationTime.Before(cert.CreationTime) && !r.CreationTime.After(now.Add(maxClockSkew)) &&
			certifier.PrimaryKey.VerifyUserIdSignature(id.Name, signer.PrimaryKey, r) == nil {
			return fmt.Errorf("%w: certification revoked on %s", ErrKeyRevoked, r.CreationTime.UTC().Format(time.DateOnly))
		}
	}
	return nil
}
