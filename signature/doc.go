// Package signature signs and verifies VTP messages (VOEvents and Transport
// messages) with detached OpenPGP signatures, as fixed by docs/openpgp.md.
//
// A signature covers the root element's bytes exactly as received (span A;
// verifiers also try the 2012 branch code's "declaration + root" span B) and
// travels, ASCII-armoured and escaped, in an XML comment appended after the
// root element, so brokers without signature support relay it untouched and
// comments outside the root may change without breaking it.
//
// In a document that is not UTF-8 (xmlsafe reads UTF-16, UTF-32 and the
// legacy charsets libxml2 reads), the spans are still the bytes as
// received: for UTF-16, span A is the root element's UTF-16 code units in
// the document's byte order (the byte order mark, before the declaration,
// is in neither span) and span B the declaration's code units followed by
// them. The comment that carries the armour is written in the document's
// encoding, so the document stays well-formed, and verifiers look for the
// armour in the decoded comment. Offsets (Block.Offset) are byte offsets
// into the payload.
//
// Trust is explicit: a Verifier has a ring of Trusted public keys and a ring
// of Others (e.g. notaries' keys). A signature counts when its key is trusted
// or its primary user ID is certified by a trusted key; VerifyEvent also
// demands that the trusted key's user ID name equal the event's AuthorIVORN.
// Signer signs with a key exported from GnuPG; Trust reloads the key files
// (on SIGHUP) without disturbing verifications in flight.
//
// Files: envelope.go (spans, comment blocks), armour.go, keyring.go,
// keys.go (key validity), verify.go, sign.go, trust.go, errors.go.
package signature
