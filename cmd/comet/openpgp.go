package main

import (
	"fmt"
	"strings"

	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/signature"
)

// openpgp checks the OpenPGP options and sets the broker's signature hooks
// (docs/openpgp.md). It returns the loaded trust, whose keys SIGHUP
// reloads; nil when no option needs trusted keys.
func (o *options) openpgp(cfg *broker.Config) (*signature.Trust, error) {
	if o.sign != "" {
		if o.keyID != "" || o.passphraseFile != "" {
			return nil, usageError{"give either --sign KEYID:FILE or --key-id with --passphrase-file, not both"}
		}
		id, file, ok := strings.Cut(o.sign, ":")
		if !ok || id == "" || file == "" {
			return nil, usageError{"--sign wants KEYID:PASSPHRASE_FILE"}
		}
		o.keyID, o.passphraseFile = id, file
	}
	switch {
	case o.senderAuth && !o.receive.set:
		return nil, usageError{"--sender-auth checks submissions: it needs --receive"}
	case o.subAuth && !o.broadcast.set:
		return nil, usageError{"--subscriber-auth checks subscribers: it needs --broadcast"}
	case (o.senderAuth || o.subAuth) && o.trustedKeys == "":
		return nil, usageError{"--sender-auth and --subscriber-auth need --trusted-keys (a file or directory of exported public keys)"}
	case !o.senderAuth && !o.subAuth && (o.trustedKeys != "" || o.publicKeys != ""):
		return nil, usageError{"--trusted-keys and --public-keys are used by --sender-auth or --subscriber-auth; give one of them"}
	case o.keyID != "" && (o.passphraseFile == "" || o.secretKeys == ""):
		return nil, usageError{"--key-id needs --passphrase-file and --secret-keys"}
	case o.keyID == "" && (o.passphraseFile != "" || o.secretKeys != ""):
		return nil, usageError{"--passphrase-file and --secret-keys need --key-id"}
	case o.keyID != "" && len(o.subscribe) == 0:
		return nil, usageError{"--key-id signs authenticate replies to upstream brokers: it needs --subscribe"}
	case o.authTimeout <= 0:
		return nil, usageError{"--auth-timeout must be > 0"}
	}
	if o.keyID != "" {
		signer, err := signature.LoadSigner(o.secretKeys, o.keyID, o.passphraseFile)
		if err != nil {
			return nil, fmt.Errorf("--key-id %s: %w", o.keyID, err)
		}
		cfg.Subscriber.Sign = signer.Sign
	}
	if !o.senderAuth && !o.subAuth {
		return nil, nil
	}
	trust, err := signature.NewTrust(o.trustedKeys, o.publicKeys)
	if err != nil {
		return nil, err
	}
	if o.senderAuth {
		cfg.Receiver.VerifySignature = trust.EventSigner
	}
	if o.subAuth {
		cfg.Broadcaster.VerifySubscriber = trust.SubscriberSigner
		cfg.Broadcaster.AuthTimeout = o.authTimeout
	}
	return trust, nil
}
