package kafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// GCN Kafka (NASA's General Coordinates Network): what --gcn-kafka fills
// in, from GCN's own client code and documentation.
const (
	// GCNDomain is GCN's production domain; kafka.test.gcn.nasa.gov and
	// auth.test.gcn.nasa.gov serve the test domain test.gcn.nasa.gov.
	GCNDomain = "gcn.nasa.gov"
	// GCNPort is the port of GCN's Kafka brokers (SASL_SSL).
	GCNPort = "9092"
	// GCNHeartbeatTopic carries {"alert_datetime": ...} about once a
	// second.
	GCNHeartbeatTopic = "gcn.heartbeat"
)

// GCNVOEventTopics are the patterns of GCN's VOEvent topics: every GCN
// Classic notice type (gcn.classic.voevent.<NOTICE_TYPE>, no fixed list)
// and SVOM's (gcn.notices.svom.voevent.{grm,eclairs,mxt,vt}).
func GCNVOEventTopics() []string {
	return []string{`^gcn\.classic\.voevent\.`, `^gcn\.notices\.svom\.voevent\.`}
}

// GCN returns the connection to GCN Kafka in domain (GCNDomain if empty)
// for an OIDC client: TLS with the system's CAs, OAUTHBEARER with tokens
// from https://auth.<domain>/oauth2/token.
func GCN(domain, clientID, clientSecretFile string) Config {
	if domain == "" {
		domain = GCNDomain
	}
	return Config{
		Brokers:          []string{"kafka." + domain + ":" + GCNPort},
		SASL:             SASLOAuthBearer,
		ClientID:         clientID,
		ClientSecretFile: clientSecretFile,
		TokenURL:         "https://auth." + domain + "/oauth2/token",
		TLS:              true,
	}
}

// ParseHeartbeat reads the alert_datetime of a GCN heartbeat record.
func ParseHeartbeat(value []byte) (time.Time, error) {
	var hb struct {
		AlertDatetime *string `json:"alert_datetime"`
	}
	if err := json.Unmarshal(value, &hb); err != nil {
		return time.Time{}, fmt.Errorf("heartbeat: %w", err)
	}
	if hb.AlertDatetime == nil {
		return time.Time{}, errors.New("heartbeat: no alert_datetime")
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00"} {
		if t, err := time.Parse(layout, *hb.AlertDatetime); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("heartbeat: alert_datetime %q is not a date and time", *hb.AlertDatetime)
}
