package signature

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Trust holds the Verifier built from the operator's key files and rebuilds
// it on Reload (the broker calls Reload on SIGHUP). Verifications in flight
// keep the Verifier they started with; a failed reload keeps the current
// keys. It is safe for concurrent use.
type Trust struct {
	trustedPath, othersPath string

	mu      sync.Mutex // serialises Reload
	current atomic.Pointer[Verifier]
}

// NewTrust loads the trusted keys from trustedPath and, when othersPath is
// not empty, further public keys (e.g. notaries') from othersPath; each path
// is a file or a directory as for LoadKeyring.
func NewTrust(trustedPath, othersPath string) (*Trust, error) {
	t := &Trust{trustedPath: trustedPath, othersPath: othersPath}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload re-reads the same paths. On error the current keys stay in use and
// the error says which file is wrong.
func (t *Trust) Reload() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	trusted, err := LoadKeyring(t.trustedPath)
	if err != nil {
		return fmt.Errorf("trusted keys: %w", err)
	}
	v := &Verifier{Trusted: trusted}
	if t.othersPath != "" {
		if v.Others, err = LoadKeyring(t.othersPath); err != nil {
			return fmt.Errorf("other keys: %w", err)
		}
	}
	t.current.Store(v)
	return nil
}

// Current returns the Verifier in use; it never changes once returned.
func (t *Trust) Current() *Verifier { return t.current.Load() }

// EventSigner is the receiver's --sender-auth check with the keys in use:
// see Verifier.EventSigner.
func (t *Trust) EventSigner(payload []byte, authorIVORN string) (string, error) {
	return t.Current().EventSigner(payload, authorIVORN)
}

// SubscriberSigner is the broadcaster's --subscriber-auth check with the
// keys in use: see Verifier.SubscriberSigner.
func (t *Trust) SubscriberSigner(msg []byte) (string, error) {
	return t.Current().SubscriberSigner(msg)
}
