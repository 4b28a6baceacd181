package signature

import (
	"crypto"
	"fmt"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// maxClockSkew is how far in the future a signature or key creation time may
// lie: an author's clock a little ahead of ours must not get events refused.
const maxClockSkew = 5 * time.Minute

// primaryIdentity returns the user ID that stands for the key: the valid
// (not revoked, self-signature not expired) one marked primary, else the
// one with the newest self-signature; ties go to the smallest name so the
// choice never depends on map order (go-crypto's PrimaryIdentity does).
func primaryIdentity(e *openpgp.Entity, now time.Time) *openpgp.Identity {
	var best *openpgp.Identity
	score := func(id *openpgp.Identity) (valid, primary bool) {
		self := id.SelfSignature
		valid = !id.Revoked(now) && validity("", self.CreationTime, self.SigLifetimeSecs, now) == nil
		primary = self.IsPrimaryId != nil && *self.IsPrimaryId
		return
	}
	for _, id := range e.Identities {
		if id.SelfSignature == nil {
			continue
		}
		if best == nil {
			best = id
			continue
		}
		v1, p1 := score(id)
		v0, p0 := score(best)
		t1, t0 := id.SelfSignature.CreationTime, best.SelfSignature.CreationTime
		switch {
		case v1 != v0:
			if v1 {
				best = id
			}
		case p1 != p0:
			if p1 {
				best = id
			}
		case !t1.Equal(t0):
			if t1.After(t0) {
				best = id
			}
		case id.Name < best.Name:
			best = id
		}
	}
	return best
}

// selfSignature is the signature holding the primary key's properties
// (flags, expiry): the primary user ID's, or the direct-key one for v6.
func selfSignature(e *openpgp.Entity, id *openpgp.Identity) *packet.Signature {
	if e.PrimaryKey.Version == 6 {
		return e.SelfSignature
	}
	if id == nil {
		return nil
	}
	return id.SelfSignature
}

// userID is the primary user ID's full text ("" if none).
func userID(e *openpgp.Entity, now time.Time) string {
	if id := primaryIdentity(e, now); id != nil {
		return id.Name
	}
	return ""
}

// namePart is a user ID without " (comment)" and " <email>"
// (docs/openpgp.md §4); "ivo://example.org/author" is its own name.
func namePart(uid string) string {
	s := strings.TrimSpace(uid)
	if strings.HasSuffix(s, ">") {
		if i := strings.LastIndexByte(s, '<'); i >= 0 {
			s = strings.TrimSpace(s[:i])
		}
	}
	if strings.HasSuffix(s, ")") {
		if i := strings.LastIndexByte(s, '('); i >= 0 {
			s = strings.TrimSpace(s[:i])
		}
	}
	return s
}

// keyUsable checks that ref (a primary key or subkey) may make signatures
// (usage packet.KeyFlagSign) or certifications (packet.KeyFlagCertify) at
// now: not revoked, within its validity period, flagged for the usage.
func keyUsable(ref keyRef, usage int, now time.Time) error {
	e := ref.ent
	id := primaryIdentity(e, now)
	self := selfSignature(e, id)
	if self == nil {
		return fmt.Errorf("%w: key %s has no valid self-signature", ErrNotSigningKey, fingerprint(e.PrimaryKey))
	}
	if r := activeRevocation(e.Revocations, now); r != nil {
		return fmt.Errorf("%w: key %s%s", ErrKeyRevoked, fingerprint(e.PrimaryKey), revocationText(r))
	}
	if id != nil && id.Revoked(now) {
		return fmt.Errorf("%w: key %s: its user IDs are revoked", ErrKeyRevoked, fingerprint(e.PrimaryKey))
	}
	if err := validity("key "+fingerprint(e.PrimaryKey), e.PrimaryKey.CreationTime, self.KeyLifetimeSecs, now); err != nil {
		return err
	}
	if err := validity("self-signature of key "+fingerprint(e.PrimaryKey), self.CreationTime, self.SigLifetimeSecs, now); err != nil {
		return err
	}
	flags := self
	if ref.sub != nil {
		sub := ref.sub
		name := "subkey " + fingerprint(sub.PublicKey)
		if r := activeRevocation(sub.Revocations, now); r != nil {
			return fmt.Errorf("%w: %s%s", ErrKeyRevoked, name, revocationText(r))
		}
		if err := validity(name, sub.PublicKey.CreationTime, sub.Sig.KeyLifetimeSecs, now); err != nil {
			return err
		}
		if err := validity("binding signature of "+name, sub.Sig.CreationTime, sub.Sig.SigLifetimeSecs, now); err != nil {
			return err
		}
		flags = sub.Sig
	}
	what := "sign"
	if usage == packet.KeyFlagCertify {
		what = "certify"
	}
	switch {
	case !ref.pub.PubKeyAlgo.CanSign():
		return fmt.Errorf("%w: key %s uses an algorithm that cannot %s", ErrNotSigningKey, fingerprint(ref.pub), what)
	case flags.FlagsValid && usage == packet.KeyFlagSign && !flags.FlagSign,
		flags.FlagsValid && usage == packet.KeyFlagCertify && !flags.FlagCertify,
		// A subkey must carry flags: go-crypto checks a signing subkey's
		// cross-signature only when the sign flag is set.
		!flags.FlagsValid && ref.sub != nil:
		return fmt.Errorf("%w: key %s is not flagged to %s", ErrNotSigningKey, fingerprint(ref.pub), what)
	}
	return nil
}

// activeRevocation returns a revocation in effect at now, with go-crypto's
// rule: a "key compromised" revocation applies at all times, others from
// their creation on.
func activeRevocation(revs []*packet.Signature, now time.Time) *packet.Signature {
	for _, r := range revs {
		if r.RevocationReason != nil && *r.RevocationReason == packet.KeyCompromised || !r.SigExpired(now) {
			return r
		}
	}
	return nil
}

func revocationText(r *packet.Signature) string {
	s := " on " + r.CreationTime.UTC().Format(time.DateOnly)
	if r.RevocationReasonText != "" {
		s += fmt.Sprintf(" (%q)", r.RevocationReasonText)
	}
	return s
}

// validity checks that something created at created with an optional
// lifetime is valid at now, allowing maxClockSkew for creation times.
func validity(what string, created time.Time, lifetimeSecs *uint32, now time.Time) error {
	if created.After(now.Add(maxClockSkew)) {
		return fmt.Errorf("%w: %s created %s, in the future", ErrExpired, what, created.UTC().Format(time.RFC3339))
	}
	if lifetimeSecs != nil && *lifetimeSecs != 0 {
		if exp := created.Add(time.Duration(*lifetimeSecs) * time.Second); now.After(exp) {
			return fmt.Errorf("%w: %s expired %s", ErrExpired, what, exp.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// weakHash reports hashes refused for document signatures and third-party
// certifications: SHA-1 and older admit practical collisions (SHA-1 chosen-
// prefix collisions were demonstrated on OpenPGP certifications).
func weakHash(h crypto.Hash) bool {
	switch h {
	case crypto.MD5, crypto.SHA1, crypto.RIPEMD160:
		return true
	}
	return false
}
