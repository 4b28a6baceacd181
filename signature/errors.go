package signature

import "errors"

// Reasons a document is refused, for errors.Is. Every error returned by
// VerifyEvent and VerifyAny wraps exactly one of them; its text is meant for
// a VTP nak Result or a log line and starts with the reason.
var (
	ErrDocument          = errors.New("not a well-formed XML document")
	ErrUnsigned          = errors.New("no signature")
	ErrTooManySignatures = errors.New("too many signature blocks")
	ErrMalformed         = errors.New("malformed signature block") // garbage or truncated armour, not a signature packet
	ErrUnknownKey        = errors.New("unknown key")               // signer not in Trusted or Others
	ErrBadSignature      = errors.New("bad signature")             // does not verify: tampered, wrong span, refused algorithm or type
	ErrNotSigningKey     = errors.New("key not capable of signing")
	ErrExpired           = errors.New("expired or not yet valid") // key, signature or certification
	ErrKeyRevoked        = errors.New("key revoked")
	ErrUntrusted         = errors.New("untrusted signer")
	ErrIdentityMismatch  = errors.New("signer identity does not match AuthorIVORN")
)

// Key file and signer errors.
var (
	ErrKeybox          = errors.New("GnuPG keybox files cannot be read")
	ErrNoSuchKey       = errors.New("no such key")
	ErrAmbiguousKeyID  = errors.New("ambiguous key ID")
	ErrWrongPassphrase = errors.New("wrong passphrase")
)

// failureRank orders block failures from most to least informative when no
// block is acceptable. Failures of a signature that verified (identity, key
// state) come first; a bad signature comes before an untrusted one because
// it points at tampering; an unknown key or garbage says least.
var failureRank = []error{
	ErrIdentityMismatch,
	ErrKeyRevoked,
	ErrExpired,
	ErrNotSigningKey,
	ErrBadSignature,
	ErrUntrusted,
	ErrUnknownKey,
	ErrMalformed,
}

// rank returns the position of err's reason in failureRank (lower is more
// informative).
func rank(err error) int {
	for i, r := range failureRank {
		if errors.Is(err, r) {
			return i
		}
	}
	return len(failureRank)
}
