package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"

	"github.com/comet-go/comet/bus"
)

// natsOptions name an external NATS system: the broker's --nats options
// and comet tap's are the same.
type natsOptions struct {
	url, creds, ca, cert, key string
}

func (n *natsOptions) register(fs *flag.FlagSet, urlUsage string) {
	fs.StringVar(&n.url, "nats", "", urlUsage)
	fs.StringVar(&n.creds, "nats-creds", "", "credentials file (JWT and NKey seed) for the external NATS system")
	fs.StringVar(&n.ca, "nats-tls-ca", "", "PEM file of the CA that signed the external NATS servers' certificates")
	fs.StringVar(&n.cert, "nats-tls-cert", "", "PEM client certificate for the external NATS system (mutual TLS; needs --nats-tls-key)")
	fs.StringVar(&n.key, "nats-tls-key", "", "PEM private key of --nats-tls-cert")
}

// secured reports whether any credential or TLS option is given.
func (n *natsOptions) secured() bool {
	return n.creds != "" || n.ca != "" || n.cert != "" || n.key != ""
}

// connection checks the credential and TLS files now, so that a typo is a
// start-up error naming the option rather than a connection failure.
func (n *natsOptions) connection() (creds string, tlsCfg *tls.Config, err error) {
	if n.creds != "" {
		if _, err := os.Stat(n.creds); err != nil {
			return "", nil, fmt.Errorf("--nats-creds: %w", err)
		}
	}
	tlsCfg, err = bus.ClientTLS(n.ca, n.cert, n.key)
	return n.creds, tlsCfg, err
}
