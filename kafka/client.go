// Package kafka is what the Kafka source (ingress) and the Kafka output
// stage share: reaching and authenticating to a cluster (brokers, SASL
// PLAIN, SCRAM or OAUTHBEARER with OIDC client-credentials tokens, TLS),
// GCN's preset, the record headers, and turning a record's value back
// into the VOEvent bytes whatever hop-client version wrote it
// (docs/kafka.md). It holds no role: the roles build their franz-go
// clients from Config.Options.
package kafka

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms (--kafka-sasl), as operators write them.
const (
	SASLNone        = "none"
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
	SASLOAuthBearer = "oauthbearer"
)

// Mechanisms lists the SASL mechanisms in the order -h shows them.
func Mechanisms() []string {
	return []string{SASLNone, SASLPlain, SASLScramSHA256, SASLScramSHA512, SASLOAuthBearer}
}

// Defaults for Config fields left zero.
const (
	// DefaultDialTimeout bounds one connection attempt to a broker (TCP,
	// TLS and SASL together).
	DefaultDialTimeout = 10 * time.Second
	// DefaultRequestTimeout bounds a start-up check of the cluster
	// (Config.Check).
	DefaultRequestTimeout = 20 * time.Second
)

// SoftwareName is the client software name this broker gives the Kafka
// cluster (its request logs and quotas show it).
const SoftwareName = "comet-go"

// Config is how to reach and authenticate to one Kafka cluster. Secrets
// are only ever read from files, when Options is called, and never
// logged.
type Config struct {
	Brokers []string // host:port seeds; a missing port is 9092

	SASL         string // one of Mechanisms(); "" = SASLNone
	User         string // plain and scram
	PasswordFile string // plain and scram: the password is the file's first line

	ClientID         string // oauthbearer: the OIDC client
	ClientSecretFile string // oauthbearer: the secret is the file's first line
	TokenURL         string // oauthbearer: the OIDC token endpoint
	// TokenRenewBefore: a token is replaced this long before it expires
	// (at most half its lifetime before); 0 = DefaultTokenRenewBefore.
	TokenRenewBefore time.Duration

	TLS   bool   // dial the brokers with TLS, verified against the system CAs
	TLSCA string // PEM file of the CA(s) to verify the brokers with instead; implies TLS

	DialTimeout time.Duration // 0 = DefaultDialTimeout
}

// Describe is the cluster and the authentication, for logs: never a
// secret.
func (c Config) Describe() string {
	s := strings.Join(c.Brokers, ",")
	switch c.mechanism() {
	case SASLNone:
	case SASLOAuthBearer:
		s += " sasl=oauthbearer client_id=" + c.ClientID
	default:
		s += " sasl=" + c.mechanism() + " user=" + c.User
	}
	if c.TLS || c.TLSCA != "" {
		s += " tls"
	}
	return s
}

func (c Config) mechanism() string {
	if c.SASL == "" {
		return SASLNone
	}
	return strings.ToLower(c.SASL)
}

// Validate checks the configuration without reading any file.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("no Kafka broker given")
	}
	for _, b := range c.Brokers {
		if b == "" || strings.ContainsAny(b, " \t/") {
			return fmt.Errorf("Kafka broker %q: want HOST or HOST:PORT", b)
		}
	}
	m := c.mechanism()
	if !slices.Contains(Mechanisms(), m) {
		return fmt.Errorf("unknown SASL mechanism %q; known: %s", c.SASL, strings.Join(Mechanisms(), ", "))
	}
	tlsOn := c.TLS || c.TLSCA != ""
	switch m {
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.User == "" || c.PasswordFile == "" {
			return fmt.Errorf("SASL %s needs a user and a password file", m)
		}
		if m == SASLPlain && !tlsOn {
			return errors.New("SASL plain sends the password in clear text: give TLS as well")
		}
	case SASLOAuthBearer:
		if c.ClientID == "" || c.ClientSecretFile == "" || c.TokenURL == "" {
			return errors.New("SASL oauthbearer needs a client id, a client secret file and a token URL")
		}
		if !tlsOn {
			return errors.New("SASL oauthbearer sends the token in clear text: give TLS as well")
		}
	}
	if m != SASLPlain && m != SASLScramSHA256 && m != SASLScramSHA512 && (c.User != "" || c.PasswordFile != "") {
		return fmt.Errorf("a user and password need SASL plain or scram, not %s", m)
	}
	if m != SASLOAuthBearer && (c.ClientID != "" || c.ClientSecretFile != "" || c.TokenURL != "") {
		return fmt.Errorf("a client id, client secret and token URL need SASL oauthbearer, not %s", m)
	}
	if c.TokenRenewBefore < 0 || c.DialTimeout < 0 {
		return errors.New("negative Kafka timeout")
	}
	return nil
}

// Client is a resolved Config: the franz-go options every client of this
// cluster starts from, and the token source when OAUTHBEARER is used.
type Client struct {
	cfg    Config
	opts   []kgo.Opt
	tokens *TokenSource // nil unless oauthbearer
}

// Resolve reads the secret files and the CA file and builds the client
// options. log receives franz-go's own warnings and errors.
func (c Config) Resolve(log *slog.Logger) (*Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	cl := &Client{cfg: c}
	cl.opts = []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.SoftwareNameAndVersion(SoftwareName, "1"),
		kgo.DialTimeout(cmp.Or(c.DialTimeout, DefaultDialTimeout)),
		kgo.WithLogger(logger{log}),
	}
	if c.TLS || c.TLSCA != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.TLSCA != "" {
			pem, err := os.ReadFile(c.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("Kafka TLS CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("Kafka TLS CA %s: no PEM certificate found", c.TLSCA)
			}
			tc.RootCAs = pool
		}
		cl.opts = append(cl.opts, kgo.DialTLSConfig(tc))
	}
	var mech sasl.Mechanism
	switch m := c.mechanism(); m {
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		pass, err := ReadSecret(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("Kafka password: %w", err)
		}
		switch m {
		case SASLPlain:
			mech = plain.Auth{User: c.User, Pass: pass}.AsMechanism()
		case SASLScramSHA256:
			mech = scram.Auth{User: c.User, Pass: pass}.AsSha256Mechanism()
		default:
			mech = scram.Auth{User: c.User, Pass: pass}.AsSha512Mechanism()
		}
	case SASLOAuthBearer:
		secret, err := ReadSecret(c.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("Kafka client secret: %w", err)
		}
		cl.tokens = NewTokenSource(c.TokenURL, c.ClientID, secret, c.TokenRenewBefore)
		mech = oauth.Oauth(func(ctx context.Context) (oauth.Auth, error) {
			tok, err := cl.tokens.Token(ctx)
			return oauth.Auth{Token: tok}, err
		})
	}
	if mech != nil {
		cl.opts = append(cl.opts, kgo.SASL(mech))
	}
	return cl, nil
}

// Options returns the connection options followed by more (the role's
// own), for kgo.NewClient.
func (cl *Client) Options(more ...kgo.Opt) []kgo.Opt {
	return append(slices.Clip(cl.opts), more...)
}

// Tokens is the OAUTHBEARER token source; nil for other mechanisms.
func (cl *Client) Tokens() *TokenSource { return cl.tokens }

// Describe is Config.Describe.
func (cl *Client) Describe() string { return cl.cfg.Describe() }

// AuthError is a refusal of this broker's credentials: by the token
// endpoint or by the Kafka cluster. Retrying does not help, so it is a
// start-up error.
type AuthError struct{ Err error }

func (e *AuthError) Error() string { return "Kafka authentication refused: " + e.Err.Error() }
func (e *AuthError) Unwrap() error { return e.Err }

// Check fetches a first token (OAUTHBEARER) and asks the cluster for its
// API versions over an authenticated connection, within
// DefaultRequestTimeout. Credentials refused by either are an *AuthError;
// any other failure (the cluster or the token endpoint unreachable) is
// returned as it is, and clients retry it on their own.
func (cl *Client) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultRequestTimeout)
	defer cancel()
	if cl.tokens != nil {
		if _, err := cl.tokens.Token(ctx); err != nil {
			if refused(err) {
				return &AuthError{err}
			}
			return fmt.Errorf("Kafka token endpoint: %w", err)
		}
	}
	k, err := kgo.NewClient(cl.Options()...)
	if err != nil {
		return fmt.Errorf("Kafka client: %w", err)
	}
	defer k.Close()
	if err := k.Ping(ctx); err != nil {
		if refused(err) {
			return &AuthError{err}
		}
		return fmt.Errorf("Kafka cluster %s: %w", strings.Join(cl.cfg.Brokers, ","), err)
	}
	return nil
}

// refused reports errors that mean the credentials were refused.
func refused(err error) bool {
	var tr *TokenError
	if errors.As(err, &tr) {
		return tr.Refused()
	}
	return errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.IllegalSaslState) ||
		errors.Is(err, kerr.UnsupportedSaslMechanism) || errors.Is(err, kerr.TopicAuthorizationFailed) ||
		errors.Is(err, kerr.GroupAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed)
}

// ReadSecret reads a secret from the first line of a file (without its
// line ending). An empty secret is an error.
func ReadSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s, _, _ := strings.Cut(string(b), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", fmt.Errorf("%s: empty first line", path)
	}
	return s, nil
}

// logger hands franz-go's log lines to slog: its warnings and errors at
// their level, its info lines at debug (it logs every connection).
type logger struct{ l *slog.Logger }

func (l logger) Level() kgo.LogLevel {
	switch {
	case l.l.Enabled(context.Background(), slog.LevelDebug):
		return kgo.LogLevelInfo
	case l.l.Enabled(context.Background(), slog.LevelWarn):
		return kgo.LogLevelWarn
	}
	return kgo.LogLevelError
}

func (l logger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelWarn:
		lv = slog.LevelWarn
	}
	l.l.Log(context.Background(), lv, "kafka client: "+msg, keyvals...)
}
