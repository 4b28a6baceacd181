package main

import (
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/comet-go/comet/filter"
)

const vectors = "../../testdata/openpgp/"

// Options that cannot work together, or files that cannot be used, are
// start-up errors that say what to do, before anything is bound.
func TestBusAndOpenPGPOptionErrors(t *testing.T) {
	base := []string{"--local-ivo", "ivo://a.b/c", "--eventdb", t.TempDir()}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-r", "--replicas", "3"}, "--replicas needs --nats"},
		{[]string{"-r", "--nats-creds", "x.creds"}, "need --nats"},
		{[]string{"-r", "--nats-tls-ca", "ca.pem"}, "need --nats"},
		{[]string{"-r", "--nats", "nats://127.0.0.1:4222", "--replicas", "7"}, "between 1 and 5"},
		{[]string{"-r", "--nats", "nats://127.0.0.1:4222", "--nats-listen", "127.0.0.1:0"}, "--nats-listen exposes the embedded bus"},
		{[]string{"-r", "--nats", "nats://127.0.0.1:4222", "--nats-creds", "/nonexistent.creds"}, "--nats-creds"},
		{[]string{"-r", "--nats", "nats://127.0.0.1:4222", "--nats-tls-cert", "c.pem"}, "needs both"},
		{[]string{"-r", "--sender-auth"}, "need --trusted-keys"},
		{[]string{"-b", "--sender-auth", "--trusted-keys", vectors + "author.pub.asc"}, "needs --receive"},
		{[]string{"-r", "--subscriber-auth", "--trusted-keys", vectors + "author.pub.asc"}, "needs --broadcast"},
		{[]string{"-r", "--trusted-keys", vectors + "author.pub.asc"}, "give one of them"},
		{[]string{"-r", "--sender-auth", "--trusted-keys", "/nonexistent/keys.asc"}, "/nonexistent/keys.asc"},
		{[]string{"-r", "--sender-auth", "--trusted-keys", vectors + "author.sec.asc"}, "secret"},
		{[]string{"-r", "--key-id", "9802FF2D"}, "needs --passphrase-file and --secret-keys"},
		{[]string{"-r", "--key-id", "9802FF2D", "--passphrase-file", vectors + "passphrase.txt", "--secret-keys", vectors + "author.sec.asc"}, "needs --subscribe"},
		{[]string{"--subscribe", "localhost", "--key-id", "9802FF2D", "--passphrase-file", vectors + "author.pub.asc", "--secret-keys", vectors + "author.sec.asc"}, "wrong passphrase"},
		{[]string{"--subscribe", "localhost", "--key-id", "9802FF2D", "--passphrase-file", "/nonexistent/pass", "--secret-keys", vectors + "author.sec.asc"}, "/nonexistent/pass"},
		{[]string{"--subscribe", "localhost", "--sign", "9802FF2D", "--secret-keys", vectors + "author.sec.asc"}, "KEYID:PASSPHRASE_FILE"},
		{[]string{"--subscribe", "localhost", "--sign", "9802FF2D:" + vectors + "passphrase.txt", "--key-id", "9802FF2D", "--secret-keys", vectors + "author.sec.asc"}, "not both"},
		{[]string{"-b", "--subscriber-auth", "--trusted-keys", vectors + "listener.pub.asc", "--auth-timeout", "0s"}, "--auth-timeout"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			o, err := parseArgs(append(append([]string{}, base...), c.args...), io.Discard)
			if err == nil {
				_, err = o.config(nil)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// The OpenPGP options set the broker's hooks: a sender-auth broker checks
// with the trusted keys, and a signing subscriber signs with the given key
// (both forms of the key options).
func TestOpenPGPOptionsSetTheHooks(t *testing.T) {
	for _, signing := range [][]string{
		{"--key-id", "486658CA5AAD0680E4D75E445EFA82579802FF2D", "--passphrase-file", vectors + "passphrase.txt"},
		{"--sign", "9802FF2D:" + vectors + "passphrase.txt"},
	} {
		args := append([]string{"-r", "-b", "--local-ivo", "ivo://a.b/c", "--eventdb", t.TempDir(),
			"--sender-auth", "--subscriber-auth", "--trusted-keys", vectors + "author.pub.asc",
			"--subscribe", "localhost", "--secret-keys", vectors + "author.sec.asc"}, signing...)
		o, err := parseArgs(args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := o.config(nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Receiver.VerifySignature == nil || cfg.Broadcaster.VerifySubscriber == nil || cfg.Subscriber.Sign == nil || o.trust == nil {
			t.Fatalf("hooks not all set: %+v", cfg)
		}
		signed, err := cfg.Subscriber.Sign([]byte(`<?xml version="1.0"?>` + "\n" + `<trn:Transport xmlns:trn="http://telescope-networks.org/schema/Transport/v1.1" role="authenticate" version="1.0"/>` + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		// Signed by the author key, which is trusted: a subscriber reply
		// passes; as an event it has no AuthorIVORN and fails the identity rule.
		if signer, err := cfg.Broadcaster.VerifySubscriber(signed); err != nil || !strings.Contains(signer, "486658CA5AAD0680E4D75E445EFA82579802FF2D") {
			t.Errorf("VerifySubscriber: %q %v", signer, err)
		}
		if _, err := cfg.Receiver.VerifySignature(signed, ""); err == nil {
			t.Error("VerifyEvent accepted a document without AuthorIVORN")
		}
	}
}

// --filter-budget reaches the broker's configuration, filter.DefaultBudget
// unless given, and is checked at start-up.
func TestFilterBudgetOption(t *testing.T) {
	base := []string{"--local-ivo", "ivo://a.b/c", "--eventdb", t.TempDir(), "-b"}
	for _, tc := range []struct {
		args []string
		want int
		err  string
	}{
		{nil, filter.DefaultBudget, ""},
		{[]string{"--filter-budget", "5000"}, 5000, ""},
		{[]string{"--filter-budget", strconv.Itoa(filter.MaxBudget)}, filter.MaxBudget, ""},
		{[]string{"--filter-budget", "0"}, 0, "--filter-budget must be between 1 and"},
		{[]string{"--filter-budget", strconv.Itoa(filter.MaxBudget + 1)}, 0, "--filter-budget must be between 1 and"},
	} {
		o, err := parseArgs(append(append([]string{}, base...), tc.args...), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := o.config(nil)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: %v, want an error containing %q", tc.args, err, tc.err)
		case tc.err == "" && (err != nil || cfg.FilterBudget != tc.want):
			t.Errorf("%q: budget %d (%v), want %d", tc.args, cfg.FilterBudget, err, tc.want)
		}
	}
}

// The Kafka options: what they need, what conflicts, and what --gcn-kafka
// fills in.
func TestKafkaOptions(t *testing.T) {
	base := []string{"--local-ivo", "ivo://a.b/c", "--eventdb", t.TempDir(), "--node", "n1"}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"--kafka", "k:9092"}, "--kafka needs --kafka-topic"},
		{[]string{"--kafka-topic", "t"}, "need --kafka BROKER or --gcn-kafka"},
		{[]string{"--kafka", "k", "--kafka-topic", "t", "--kafka-sasl", "gssapi"}, "unknown SASL mechanism"},
		{[]string{"--kafka", "k", "--kafka-topic", "t", "--kafka-sasl", "oauthbearer", "--kafka-client-id", "c",
			"--kafka-client-secret-file", "f", "--kafka-token-url", "https://a/t"}, "clear text"},
		{[]string{"--kafka", "k", "--kafka-topic", "^(", "-b"}, "topic pattern"},
		{[]string{"--kafka", "k", "--kafka-topic", "t", "--kafka-start", "middle"}, "neither earliest nor latest"},
		{[]string{"--gcn-kafka", "id"}, "needs --kafka-client-secret-file"},
		{[]string{"--gcn-kafka", "id", "--kafka-client-secret-file", "f", "--kafka", "k"}, "give only --kafka-client-secret-file"},
		{[]string{"--kafka-out", "k"}, "--kafka-out needs --kafka-out-topic"},
		{[]string{"-r", "--kafka-out-topic", "t"}, "need --kafka-out BROKER"},
		{[]string{"--kafka-out", "k", "--kafka-out-topic", "t"}, "needs the bus of other processes"},
		{[]string{"-r", "--kafka-out", "k", "--kafka-out-topic", "t", "--kafka-out-concurrency", "0"}, "--kafka-out-concurrency"},
	}
	for _, c := range bad {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			o, err := parseArgs(append(append([]string{}, base...), c.args...), io.Discard)
			if err == nil {
				_, err = o.config(nil)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}

	o, err := parseArgs(append(base, "--gcn-kafka", "my-client", "--kafka-client-secret-file", "secret.txt", "--gcn-domain", "test.gcn.nasa.gov"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.config(nil)
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.KafkaIn
	if k == nil || k.Conn.Brokers[0] != "kafka.test.gcn.nasa.gov:9092" || k.Conn.SASL != "oauthbearer" || !k.Conn.TLS ||
		k.Conn.TokenURL != "https://auth.test.gcn.nasa.gov/oauth2/token" || k.Conn.ClientID != "my-client" ||
		k.Conn.ClientSecretFile != "secret.txt" || strings.Join(k.Source.Topics, " ") != `^gcn\.classic\.voevent\. ^gcn\.notices\.svom\.voevent\.` ||
		k.Source.HeartbeatTopic != "gcn.heartbeat" || k.Source.Group != "comet-n1" || k.Source.Start != "latest" {
		t.Fatalf("--gcn-kafka: %+v", k)
	}

	o, _ = parseArgs(append(base, "-r", "--kafka-out", "a:1,b:2", "--kafka-out-topic", "out", "--kafka-out-sasl", "scram-sha-256",
		"--kafka-out-user", "u", "--kafka-out-password-file", "p"), io.Discard)
	if cfg, err = o.config(nil); err != nil {
		t.Fatal(err)
	}
	if out := cfg.KafkaOut; out == nil || len(out.Conn.Brokers) != 2 || out.Stage.Topic != "out" || out.Stage.Sender != "ivo://a.b/c" ||
		out.Conn.SASL != "scram-sha-256" || cfg.KafkaIn != nil {
		t.Fatalf("--kafka-out: %+v", cfg.KafkaOut)
	}
}
