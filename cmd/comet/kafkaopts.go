package main

import (
	"flag"
	"strings"
	"time"

	"github.com/comet-go/comet/ingress"
	"github.com/comet-go/comet/internal/broker"
	"github.com/comet-go/comet/kafka"
	"github.com/comet-go/comet/stages"
)

// kafkaConn names one Kafka cluster and how to authenticate to it: the
// source's options are --kafka-*, the output's --kafka-out-*.
type kafkaConn struct {
	prefix                               string
	brokers                              string
	sasl, user, passwordFile             string
	clientID, clientSecretFile, tokenURL string
	tls                                  bool
	tlsCA                                string
	tokenRenewBefore                     time.Duration
}

func (k *kafkaConn) register(fs *flag.FlagSet, prefix, what string) {
	k.prefix = prefix
	p := "--" + prefix
	fs.StringVar(&k.brokers, prefix, "", what+" `BROKERS`: host:port[,host:port...] (default port 9092)")
	fs.StringVar(&k.sasl, prefix+"-sasl", kafka.SASLNone, "SASL `MECHANISM` towards "+p+": "+strings.Join(kafka.Mechanisms(), ", "))
	fs.StringVar(&k.user, prefix+"-user", "", "SASL `USER` (plain, scram-*) for "+p)
	fs.StringVar(&k.passwordFile, prefix+"-password-file", "", "`FILE` whose first line is the SASL password for "+p)
	fs.StringVar(&k.clientID, prefix+"-client-id", "", "OIDC client `ID` (oauthbearer) for "+p)
	fs.StringVar(&k.clientSecretFile, prefix+"-client-secret-file", "", "`FILE` whose first line is the OIDC client secret (oauthbearer) for "+p)
	fs.StringVar(&k.tokenURL, prefix+"-token-url", "", "OIDC token endpoint `URL` (client-credentials flow) for "+p)
	fs.BoolVar(&k.tls, prefix+"-tls", false, "dial "+p+" with TLS, verified against the system's CAs")
	fs.StringVar(&k.tlsCA, prefix+"-tls-ca", "", "PEM `FILE` of the CA of "+p+"'s certificates (implies TLS)")
	fs.DurationVar(&k.tokenRenewBefore, prefix+"-token-renew-before", kafka.DefaultTokenRenewBefore, "replace an OAUTHBEARER token this long before it expires (at most half its lifetime)")
}

// set reports whether any option of this connection was given.
func (k *kafkaConn) set() bool {
	return k.brokers != "" || (k.sasl != "" && k.sasl != kafka.SASLNone) || k.user != "" || k.passwordFile != "" ||
		k.clientID != "" || k.clientSecretFile != "" || k.tokenURL != "" || k.tls || k.tlsCA != ""
}

func (k *kafkaConn) config() kafka.Config {
	var brokers []string
	for _, b := range strings.Split(k.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	return kafka.Config{
		Brokers: brokers, SASL: k.sasl, User: k.user, PasswordFile: k.passwordFile,
		ClientID: k.clientID, ClientSecretFile: k.clientSecretFile, TokenURL: k.tokenURL,
		TLS: k.tls, TLSCA: k.tlsCA, TokenRenewBefore: k.tokenRenewBefore,
	}
}

// kafkaOptions are the Kafka source's and output's options.
type kafkaOptions struct {
	in               kafkaConn
	topics           listValues
	group, start     string
	acceptTest       bool
	heartbeatTopic   string
	heartbeatTimeout time.Duration
	sessionTimeout   time.Duration
	gcnClientID      string
	gcnDomain        string

	out            kafkaConn
	outTopic       string
	outTimeout     time.Duration
	outConcurrency int
}

func (k *kafkaOptions) register(fs *flag.FlagSet) {
	k.in.register(fs, "kafka", "read VOEvents from the Kafka cluster at")
	fs.Var(&k.topics, "kafka-topic", "Kafka `TOPIC` to read; a value starting with ^ is a regular expression (new matching topics are picked up); repeatable")
	fs.StringVar(&k.group, "kafka-group", "", "Kafka consumer group `ID` (default: comet-NODE); processes in one group share the partitions")
	fs.StringVar(&k.start, "kafka-start", ingress.KafkaStartLatest, "`WHERE` a new consumer group starts: earliest or latest")
	fs.BoolVar(&k.acceptTest, "kafka-accept-test", false, "relay records marked _test (hop-client test messages) instead of skipping them")
	fs.StringVar(&k.heartbeatTopic, "kafka-heartbeat-topic", "", "`TOPIC` of heartbeats that tell whether the source is live (--gcn-kafka: gcn.heartbeat; none: off)")
	fs.DurationVar(&k.heartbeatTimeout, "kafka-heartbeat-timeout", ingress.DefaultKafkaHeartbeatTimeout, "the source is stale after this long without a heartbeat")
	fs.DurationVar(&k.sessionTimeout, "kafka-session-timeout", ingress.DefaultKafkaSessionTimeout, "a consumer-group member silent this long loses its partitions to the others")
	fs.StringVar(&k.gcnClientID, "gcn-kafka", "", "read GCN's VOEvents from GCN Kafka as this OIDC `CLIENT_ID` (with --kafka-client-secret-file): fills in the brokers, oauthbearer, TLS, the token URL, the VOEvent topics and the heartbeat topic")
	fs.StringVar(&k.gcnDomain, "gcn-domain", kafka.GCNDomain, "GCN's `DOMAIN` for --gcn-kafka (test.gcn.nasa.gov for the test servers)")

	k.out.register(fs, "kafka-out", "publish every accepted event to the Kafka cluster at")
	fs.StringVar(&k.outTopic, "kafka-out-topic", "", "Kafka `TOPIC` --kafka-out publishes to")
	fs.DurationVar(&k.outTimeout, "kafka-out-timeout", stages.DefaultKafkaOutTimeout, "longest one publish to --kafka-out may take before it counts as failed and is retried")
	fs.IntVar(&k.outConcurrency, "kafka-out-concurrency", stages.DefaultKafkaOutConcurrency, "events published to --kafka-out at once (1 keeps the bus's order)")
}

// config fills the broker's Kafka parts.
func (k *kafkaOptions) config(cfg *broker.Config, node, localIVO string) error {
	if k.gcnClientID != "" {
		if k.in.brokers != "" || (k.in.sasl != "" && k.in.sasl != kafka.SASLNone) || k.in.user != "" || k.in.passwordFile != "" ||
			k.in.clientID != "" || k.in.tokenURL != "" || k.in.tls || k.in.tlsCA != "" {
			return usageError{"--gcn-kafka fills in --kafka, --kafka-sasl, --kafka-client-id, --kafka-token-url and TLS: give only --kafka-client-secret-file with it"}
		}
		if k.in.clientSecretFile == "" {
			return usageError{"--gcn-kafka needs --kafka-client-secret-file (the OIDC client secret from GCN's console)"}
		}
		conn := kafka.GCN(k.gcnDomain, k.gcnClientID, k.in.clientSecretFile)
		k.in.brokers, k.in.sasl, k.in.clientID, k.in.tokenURL, k.in.tls =
			strings.Join(conn.Brokers, ","), conn.SASL, conn.ClientID, conn.TokenURL, conn.TLS
		if len(k.topics) == 0 {
			k.topics = kafka.GCNVOEventTopics()
		}
		if k.heartbeatTopic == "" {
			k.heartbeatTopic = kafka.GCNHeartbeatTopic
		}
	}
	if k.heartbeatTopic == "none" {
		k.heartbeatTopic = ""
	}
	switch {
	case k.in.brokers != "":
		if len(k.topics) == 0 {
			return usageError{"--kafka needs --kafka-topic (a name, or a pattern starting with ^)"}
		}
		c := k.in.config()
		if err := c.Validate(); err != nil {
			return usageError{"--kafka: " + err.Error()}
		}
		group := k.group
		if group == "" {
			group = "comet-" + node
		}
		cfg.KafkaIn = &broker.KafkaIn{Conn: c, Source: ingress.KafkaConfig{
			Topics: k.topics, Group: group, Start: k.start, AcceptTest: k.acceptTest,
			HeartbeatTopic: k.heartbeatTopic, HeartbeatTimeout: k.heartbeatTimeout, SessionTimeout: k.sessionTimeout,
		}}
		if err := cfg.KafkaIn.Source.Validate(); err != nil {
			return usageError{strings.TrimPrefix(err.Error(), "ingress: ")}
		}
	case k.in.set() || len(k.topics) > 0 || k.group != "" || k.acceptTest || k.heartbeatTopic != "":
		return usageError{"the --kafka-* source options need --kafka BROKER or --gcn-kafka CLIENT_ID"}
	}
	switch {
	case k.out.brokers != "":
		if k.outTopic == "" {
			return usageError{"--kafka-out needs --kafka-out-topic"}
		}
		c := k.out.config()
		if err := c.Validate(); err != nil {
			return usageError{"--kafka-out: " + err.Error()}
		}
		if k.outTimeout <= 0 || k.outConcurrency < 1 {
			return usageError{"--kafka-out-timeout must be > 0 and --kafka-out-concurrency >= 1"}
		}
		sender := localIVO
		if sender == "" {
			sender = node
		}
		cfg.KafkaOut = &broker.KafkaOut{Conn: c, Stage: stages.KafkaOutConfig{
			Topic: k.outTopic, Sender: sender, Timeout: k.outTimeout, Concurrency: k.outConcurrency,
		}}
	case k.out.set() || k.outTopic != "":
		return usageError{"the --kafka-out-* options need --kafka-out BROKER"}
	}
	return nil
}
