package kafka

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/comet-go/comet/internal/kafkatest"
	"github.com/comet-go/comet/internal/vtptest"
)

// OAUTHBEARER as GCN runs it: TLS, tokens from the OIDC client-credentials
// flow (no scope), short-lived. The cluster side of the SASL exchange
// receives the endpoint's token; re-authentication (KIP-368) presents a
// new one fetched before the old one expired, so no expired token ever
// reaches the cluster.
func TestOAuthBearerTokensReachTheClusterAndAreRenewedBeforeExpiry(t *testing.T) {
	const lifetime = 3 * time.Second
	oidc := kafkatest.StartOIDC(t, "comet-client", "s3cret", lifetime)
	c := kafkatest.Start(t, kafkatest.Options{Topics: []string{"t"}, TLS: true, OIDC: oidc, ReauthEvery: 500 * time.Millisecond})
	cl, err := Config{
		Brokers: c.BrokerList(), SASL: SASLOAuthBearer, ClientID: "comet-client",
		ClientSecretFile: kafkatest.PasswordFile(t, "s3cret"), TokenURL: oidc.URL, TLSCA: c.CAFile(),
	}.Resolve(vtptest.Logger(t, slog.LevelWarn))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.Check(ctx); err != nil {
		t.Fatalf("check: %v", err)
	}
	if p := c.Tokens(); len(p) == 0 || !p[0].Valid || p[0].Token != oidc.Issued()[0].Token {
		t.Fatalf("presented %+v, issued %+v", p, oidc.Issued())
	}

	// A producer working for a few token lifetimes.
	k, err := kgo.NewClient(cl.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	for end := time.Now().Add(3 * lifetime); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if err := k.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	issued, presented := oidc.Issued(), c.Tokens()
	if len(issued) < 3 {
		t.Fatalf("%d tokens fetched in %v of %v tokens", len(issued), 3*lifetime, lifetime)
	}
	for i, is := range issued {
		if is.Scope != "" || is.ClientID != "comet-client" {
			t.Fatalf("token request %d: scope %q client %q", i, is.Scope, is.ClientID)
		}
		if i > 0 && !is.At.Before(issued[i-1].Expires) {
			t.Fatalf("token %d fetched at %v, after token %d expired at %v", i, is.At, i-1, issued[i-1].Expires)
		}
	}
	distinct := map[string]bool{}
	for _, p := range presented {
		if !p.Valid {
			t.Fatalf("an invalid or expired token reached the cluster at %v", p.At)
		}
		distinct[p.Token] = true
	}
	if len(distinct) < 3 {
		t.Fatalf("%d distinct tokens presented (%d authentications)", len(distinct), len(presented))
	}
	if cl.Tokens().Fetches() != len(issued) {
		t.Fatalf("fetches %d, issued %d", cl.Tokens().Fetches(), len(issued))
	}
}

// A wrong client secret is refused by the token endpoint: Check says so
// in one line, as an *AuthError, without the secret. An unreachable token
// endpoint is not an AuthError (it may come back).
func TestOAuthBearerWrongSecretIsAnAuthError(t *testing.T) {
	oidc := kafkatest.StartOIDC(t, "comet-client", "s3cret", time.Minute)
	c := kafkatest.Start(t, kafkatest.Options{TLS: true, OIDC: oidc})
	cfg := Config{Brokers: c.BrokerList(), SASL: SASLOAuthBearer, ClientID: "comet-client",
		ClientSecretFile: kafkatest.PasswordFile(t, "wrong-secret"), TokenURL: oidc.URL, TLSCA: c.CAFile()}
	cl, err := cfg.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	err = cl.Check(context.Background())
	var ae *AuthError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "invalid_client") || strings.Contains(err.Error(), "wrong-secret") ||
		strings.Contains(err.Error(), "\n") {
		t.Fatalf("err %v", err)
	}
	if len(c.Tokens()) != 0 {
		t.Fatal("the cluster was contacted without a token")
	}

	cfg.TokenURL = "http://127.0.0.1:1/oauth2/token"
	cl, _ = cfg.Resolve(nil)
	if err := cl.Check(context.Background()); err == nil || errors.As(err, &ae) {
		t.Fatalf("unreachable endpoint: %v", err)
	}
}

// SCRAM-SHA-512 with the right password passes the check; a token the
// cluster refuses is an AuthError too.
func TestCheckSCRAM(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Options{})
	cl, err := Config{Brokers: c.BrokerList(), SASL: "SCRAM-SHA-512", User: kafkatest.User,
		PasswordFile: kafkatest.PasswordFile(t, kafkatest.Password)}.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Brokers: []string{"k:9092"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]Config{
		"no broker":             {},
		"broker with a path":    {Brokers: []string{"kafka://k/x"}},
		"unknown mechanism":     {Brokers: []string{"k"}, SASL: "gssapi"},
		"scram without user":    {Brokers: []string{"k"}, SASL: SASLScramSHA512, PasswordFile: "f"},
		"plain without TLS":     {Brokers: []string{"k"}, SASL: SASLPlain, User: "u", PasswordFile: "f"},
		"oauth without TLS":     {Brokers: []string{"k"}, SASL: SASLOAuthBearer, ClientID: "c", ClientSecretFile: "f", TokenURL: "https://a/t"},
		"oauth without secret":  {Brokers: []string{"k"}, SASL: SASLOAuthBearer, ClientID: "c", TokenURL: "https://a/t", TLS: true},
		"user without SASL":     {Brokers: []string{"k"}, User: "u"},
		"client id with scram":  {Brokers: []string{"k"}, SASL: SASLScramSHA256, User: "u", PasswordFile: "f", ClientID: "c"},
		"negative renew before": {Brokers: []string{"k"}, TokenRenewBefore: -1},
	}
	for name, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	gcn := GCN("", "id", "f")
	if err := gcn.Validate(); err != nil || gcn.Brokers[0] != "kafka.gcn.nasa.gov:9092" || gcn.TokenURL != "https://auth.gcn.nasa.gov/oauth2/token" {
		t.Fatalf("GCN preset %+v: %v", gcn, err)
	}
	if d := GCN("test.gcn.nasa.gov", "id", "f"); d.Brokers[0] != "kafka.test.gcn.nasa.gov:9092" || d.TokenURL != "https://auth.test.gcn.nasa.gov/oauth2/token" {
		t.Fatalf("GCN test domain %+v", d)
	}
	if s := gcn.Describe(); s != "kafka.gcn.nasa.gov:9092 sasl=oauthbearer client_id=id tls" {
		t.Fatalf("describe %q", s)
	}
}

func TestReadSecret(t *testing.T) {
	if s, err := ReadSecret(kafkatest.PasswordFile(t, "pw")); err != nil || s != "pw" {
		t.Fatalf("%q %v", s, err)
	}
	if _, err := ReadSecret(kafkatest.PasswordFile(t, "")); err == nil {
		t.Fatal("empty secret accepted")
	}
}
