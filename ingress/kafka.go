package ingress

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/comet-go/comet/bus"
	"github.com/comet-go/comet/kafka"
	"github.com/comet-go/comet/tally"
	"github.com/comet-go/comet/voevent"
	"github.com/comet-go/comet/vtp"
	"github.com/comet-go/comet/xmlsafe"
)

// Where a new consumer group starts (--kafka-start).
const (
	KafkaStartEarliest = "earliest" // at the oldest record the cluster keeps
	KafkaStartLatest   = "latest"   // at the next record produced
)

// Defaults for KafkaConfig fields left zero.
const (
	// DefaultKafkaHeartbeatTimeout: with a heartbeat topic, a source that
	// has read no heartbeat for this long is stale (GCN sends one a
	// second).
	DefaultKafkaHeartbeatTimeout = 30 * time.Second
	// DefaultKafkaSessionTimeout: a group member silent for this long is
	// dropped and its partitions go to the others (Kafka's default).
	DefaultKafkaSessionTimeout = 45 * time.Second
	// DefaultKafkaMaxPoll bounds the records taken in one poll: they are
	// stored, then their offsets committed together.
	DefaultKafkaMaxPoll = 500
	// DefaultKafkaStoreTimeout bounds one attempt to store an event on
	// the bus; a failed attempt is retried (the offset stays uncommitted).
	DefaultKafkaStoreTimeout = 20 * time.Second
)

// Limits of the Kafka source that are not configurable.
const (
	// KafkaStoreRetryMin and KafkaStoreRetryMax bound the pause between
	// attempts to store an event while the bus fails: it doubles from
	// the first to the second.
	KafkaStoreRetryMin = 100 * time.Millisecond
	KafkaStoreRetryMax = 5 * time.Second
	// KafkaCommitTimeout bounds one offset commit. A commit that fails is
	// logged and the records are read again later (and found previously
	// seen).
	KafkaCommitTimeout = 30 * time.Second
	// KafkaErrorPause is the pause after a poll that returned only errors
	// (the cluster unreachable, credentials refused), so that a lasting
	// failure is logged once a second, not in a tight loop.
	KafkaErrorPause = time.Second
)

// KafkaConfig configures a Kafka source. NewKafkaSource gives zero values
// their defaults and refuses negative ones.
type KafkaConfig struct {
	// Topics are topic names, or regular expressions when they start with
	// "^" (matched against the cluster's topics, new ones included).
	Topics []string
	// Group is the consumer group: processes with the same group share
	// the partitions, and its committed offsets are where a restart
	// resumes.
	Group string
	// Start is where a group without committed offsets starts:
	// KafkaStartEarliest or KafkaStartLatest ("" = latest).
	Start string
	// AcceptTest relays records marked _test (hop-client test messages)
	// instead of skipping them.
	AcceptTest bool
	// HeartbeatTopic, if set, is read by this process alone (no group,
	// from its end) to tell whether the source is live.
	HeartbeatTopic   string
	HeartbeatTimeout time.Duration // 0 = DefaultKafkaHeartbeatTimeout
	SessionTimeout   time.Duration // 0 = DefaultKafkaSessionTimeout
	MaxPoll          int           // 0 = DefaultKafkaMaxPoll
	StoreTimeout     time.Duration // 0 = DefaultKafkaStoreTimeout
	// MaxEventSize: a record value, or the XML rebuilt from it, larger
	// than this is skipped; 0 = vtp.DefaultMaxFrame.
	MaxEventSize int
	Node         string // recorded in the Comet-Node header
	// Timings, if set, is told how long the bus took to store each event
	// (Stored only).
	Timings Timings

	Logger *slog.Logger
}

// Validate reports what NewKafkaSource would refuse in c.
func (c KafkaConfig) Validate() error { return c.setDefaults() }

func (c *KafkaConfig) setDefaults() error {
	if len(c.Topics) == 0 {
		return errors.New("ingress: kafka: no topic")
	}
	if c.Group == "" {
		return errors.New("ingress: kafka: no consumer group")
	}
	for _, t := range c.Topics {
		if strings.HasPrefix(t, "^") {
			if _, err := regexp.Compile(t); err != nil {
				return fmt.Errorf("ingress: kafka: topic pattern %q: %w", t, err)
			}
		} else if t == "" {
			return errors.New("ingress: kafka: empty topic name")
		}
	}
	switch c.Start {
	case "":
		c.Start = KafkaStartLatest
	case KafkaStartEarliest, KafkaStartLatest:
	default:
		return fmt.Errorf("ingress: kafka: start %q is neither %s nor %s", c.Start, KafkaStartEarliest, KafkaStartLatest)
	}
	if c.HeartbeatTimeout < 0 || c.SessionTimeout < 0 || c.MaxPoll < 0 || c.StoreTimeout < 0 || c.MaxEventSize < 0 {
		return errors.New("ingress: kafka: negative limit")
	}
	c.HeartbeatTimeout = cmp.Or(c.HeartbeatTimeout, DefaultKafkaHeartbeatTimeout)
	c.SessionTimeout = cmp.Or(c.SessionTimeout, DefaultKafkaSessionTimeout)
	c.StoreTimeout = cmp.Or(c.StoreTimeout, DefaultKafkaStoreTimeout)
	c.MaxPoll = cmp.Or(c.MaxPoll, DefaultKafkaMaxPoll)
	c.MaxEventSize = cmp.Or(c.MaxEventSize, vtp.DefaultMaxFrame)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// KafkaSkip is why a Kafka record was skipped without storing an event.
// Every skipped record is logged with its topic, partition and offset,
// counted (KafkaSource.Stats), and its offset committed.
type KafkaSkip uint8

const (
	// SkipTest: a hop-client test message (_test header), without
	// AcceptTest.
	SkipTest KafkaSkip = iota + 1
	// SkipEmpty: no value, or only white space.
	SkipEmpty
	// SkipTooLarge: the value, or the XML rebuilt from it, is larger than
	// MaxEventSize.
	SkipTooLarge
	// SkipNotVOEvent: another _format, or a JSON body that is not one of
	// hop-client's VOEvent forms.
	SkipNotVOEvent
	// SkipBadJSON: a hop-client JSON body that cannot be turned into XML.
	SkipBadJSON
	// SkipDTD: the XML has a document type declaration (refused, as on
	// every port).
	SkipDTD
	// SkipUnparsable: not well-formed, safe XML.
	SkipUnparsable
	// SkipNotEvent: the root has no VOEvent role (a Transport message, or
	// none).
	SkipNotEvent
	// SkipNoIVORN: a VOEvent without an ivorn.
	SkipNoIVORN
	// SkipInvalidIVORN: an ivorn that fails the IVOID grammar.
	SkipInvalidIVORN
)

// maxKafkaSkip is the last KafkaSkip.
const maxKafkaSkip = SkipInvalidIVORN

// AllKafkaSkips lists every KafkaSkip, in order.
func AllKafkaSkips() []KafkaSkip { return tally.Values(maxKafkaSkip) }

// String is the reason's label in logs and metrics.
func (k KafkaSkip) String() string {
	switch k {
	case SkipTest:
		return "test"
	case SkipEmpty:
		return "empty"
	case SkipTooLarge:
		return "too_large"
	case SkipNotVOEvent:
		return "not_voevent"
	case SkipBadJSON:
		return "bad_json"
	case SkipDTD:
		return "dtd"
	case SkipUnparsable:
		return "unparsable"
	case SkipNotEvent:
		return "not_event"
	case SkipNoIVORN:
		return "no_ivorn"
	case SkipInvalidIVORN:
		return "invalid_ivorn"
	}
	return "KafkaSkip(" + strconv.Itoa(int(k)) + ")"
}

// KafkaStats counts what a Kafka source did since it started.
type KafkaStats struct {
	Accepted   uint64               // events stored on the bus
	Duplicates uint64               // events previously seen
	Rebuilt    uint64               // of those, events rebuilt from hop-client JSON
	Skipped    map[KafkaSkip]uint64 // records skipped, by reason (zero counts left out)
	StoreFails uint64               // failed attempts to store (each retried)
	Heartbeats uint64               // heartbeat records read
}

// KafkaState is whether a Kafka source's heartbeat topic shows it live.
type KafkaState uint8

const (
	// KafkaUnmonitored: no heartbeat topic was given.
	KafkaUnmonitored KafkaState = iota
	// KafkaWaiting: started less than the heartbeat timeout ago and no
	// heartbeat read yet.
	KafkaWaiting
	// KafkaLive: a heartbeat was read within the heartbeat timeout.
	KafkaLive
	// KafkaStale: no heartbeat for the heartbeat timeout: the cluster, the
	// network or the publisher is down, and events may be late.
	KafkaStale
)

func (s KafkaState) String() string {
	switch s {
	case KafkaUnmonitored:
		return "unmonitored"
	case KafkaWaiting:
		return "waiting"
	case KafkaLive:
		return "live"
	case KafkaStale:
		return "stale"
	}
	return "KafkaState(" + strconv.Itoa(int(s)) + ")"
}

// KafkaStatus is a snapshot of a Kafka source's liveness.
type KafkaStatus struct {
	State KafkaState
	// LastHeartbeat is when this process last read a heartbeat (zero:
	// never); AlertTime is the alert_datetime that heartbeat carried.
	LastHeartbeat time.Time
	AlertTime     time.Time
	Since         time.Time // when State began
}

// KafkaSource consumes VOEvents from Kafka topics into the bus, each
// through the same path as an event from an upstream VTP broker (relay),
// committing a record's offset only once its event is stored, refused as
// previously seen, or skipped as bad: a crash at any point loses nothing,
// and what is read again is previously seen, so nothing is broadcast
// twice. Records of one partition are stored in order.
type KafkaSource struct {
	client *kafka.Client
	store  Store
	cfg    KafkaConfig
	log    *slog.Logger

	accepted, duplicates, rebuilt, storeFails, heartbeats atomic.Uint64
	skipped                                               tally.Counts[KafkaSkip]

	mu     sync.Mutex
	status KafkaStatus
}

// NewKafkaSource returns a source reading cfg.Topics from the cluster of
// client into store. Run runs it.
func NewKafkaSource(client *kafka.Client, store Store, cfg KafkaConfig) (*KafkaSource, error) {
	if client == nil || store == nil {
		return nil, errors.New("ingress: kafka: no client or no store")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &KafkaSource{client: client, store: store, cfg: cfg,
		log: cfg.Logger.With("kafka", client.Describe(), "group", cfg.Group)}
	return s, nil
}

// Stats returns the source's counters.
func (s *KafkaSource) Stats() KafkaStats {
	st := KafkaStats{Accepted: s.accepted.Load(), Duplicates: s.duplicates.Load(), Rebuilt: s.rebuilt.Load(),
		StoreFails: s.storeFails.Load(), Heartbeats: s.heartbeats.Load(), Skipped: s.skipped.Snapshot()}
	return st
}

// Status returns the source's liveness as its heartbeat topic shows it.
func (s *KafkaSource) Status() KafkaStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Run consumes until ctx ends, then commits what it stored and leaves
// the group. It returns an error only if the consumer cannot be made.
func (s *KafkaSource) Run(ctx context.Context) error {
	opts := []kgo.Opt{
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(s.cfg.SessionTimeout),
		// Kafka's own ratio (3 s in 45 s), kept for shorter sessions.
		kgo.HeartbeatInterval(min(3*time.Second, s.cfg.SessionTimeout/3)),
		kgo.ConsumeResetOffset(startOffset(s.cfg.Start)),
		// franz-go calls these on every rebalance, also with nothing
		// changed (a cooperative rebalance takes two rounds): say only
		// what changed.
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			if len(a) > 0 {
				s.log.Info("kafka partitions assigned", "partitions", a)
			}
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, r map[string][]int32) {
			if len(r) > 0 {
				s.log.Info("kafka partitions revoked", "partitions", r)
			}
		}),
	}
	topics, regex := consumeTopics(s.cfg.Topics)
	opts = append(opts, kgo.ConsumeTopics(topics...))
	if regex {
		opts = append(opts, kgo.ConsumeRegex())
	}
	cl, err := kgo.NewClient(s.client.Options(opts...)...)
	if err != nil {
		return fmt.Errorf("ingress: kafka: %w", err)
	}
	var wg sync.WaitGroup
	s.setState(KafkaUnmonitored, time.Now())
	if s.cfg.HeartbeatTopic != "" {
		hb, err := kgo.NewClient(s.client.Options(kgo.ConsumeTopics(s.cfg.HeartbeatTopic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))...)
		if err != nil {
			cl.Close()
			return fmt.Errorf("ingress: kafka: heartbeat: %w", err)
		}
		s.setState(KafkaWaiting, time.Now())
		wg.Go(func() { s.readHeartbeats(ctx, hb) })
		wg.Go(func() { s.watchHeartbeats(ctx) })
	}
	s.log.Info("consuming from Kafka", "topics", s.cfg.Topics, "start", s.cfg.Start, "heartbeat", s.cfg.HeartbeatTopic)
	for ctx.Err() == nil {
		fetches := cl.PollRecords(ctx, s.cfg.MaxPoll)
		if fetches.IsClientClosed() {
			break
		}
		if logFetchErrors(s.log, fetches, "kafka fetch failed; retrying") && fetches.NumRecords() == 0 {
			cl.AllowRebalance()
			pause(ctx, KafkaErrorPause)
			continue
		}
		var done []*kgo.Record // the last record handled in each partition
		var mu sync.Mutex
		var pwg sync.WaitGroup
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			pwg.Go(func() {
				if last := s.partition(ctx, p.Records); last != nil {
					mu.Lock()
					done = append(done, last)
					mu.Unlock()
				}
			})
		})
		pwg.Wait()
		s.commit(ctx, cl, done)
		cl.AllowRebalance()
	}
	cl.CloseAllowingRebalance()
	wg.Wait()
	s.log.Info("kafka source stopped")
	return nil
}

// logFetchErrors logs the errors of a poll (but a stop's) and reports
// whether there were any.
func logFetchErrors(log *slog.Logger, fetches kgo.Fetches, msg string) bool {
	any := false
	fetches.EachError(func(topic string, p int32, err error) {
		if !errors.Is(err, context.Canceled) {
			any = true
			log.Warn(msg, "topic", topic, "partition", p, "err", err)
		}
	})
	return any
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func startOffset(start string) kgo.Offset {
	if start == KafkaStartEarliest {
		return kgo.NewOffset().AtStart()
	}
	return kgo.NewOffset().AtEnd()
}

// consumeTopics turns the topics into what kgo takes: with any pattern,
// every topic is a regular expression (names quoted and anchored).
func consumeTopics(topics []string) ([]string, bool) {
	regex := false
	for _, t := range topics {
		if strings.HasPrefix(t, "^") {
			regex = true
		}
	}
	if !regex {
		return topics, false
	}
	out := make([]string, len(topics))
	for i, t := range topics {
		if strings.HasPrefix(t, "^") {
			out[i] = t
		} else {
			out[i] = "^" + regexp.QuoteMeta(t) + "$"
		}
	}
	return out, true
}

// partition handles the records of one partition in order and returns
// the last one handled (nil if none: ctx ended first).
func (s *KafkaSource) partition(ctx context.Context, records []*kgo.Record) *kgo.Record {
	var last *kgo.Record
	for _, r := range records {
		if !s.record(ctx, r) {
			break
		}
		last = r
	}
	return last
}

// record handles one record: false if ctx ended before it was stored,
// skipped or found previously seen.
func (s *KafkaSource) record(ctx context.Context, r *kgo.Record) bool {
	skip := func(why KafkaSkip, err error) bool {
		s.skipped.Add(why)
		args := []any{"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reason", why.String(), "bytes", len(r.Value)}
		if err != nil {
			args = append(args, "err", err)
		}
		if why == SkipTest {
			s.log.Debug("kafka test record skipped", args...)
		} else {
			s.log.Warn("kafka record skipped", args...)
		}
		return true
	}
	if !s.cfg.AcceptTest && kafka.IsTest(r) {
		return skip(SkipTest, nil)
	}
	if len(r.Value) > s.cfg.MaxEventSize {
		return skip(SkipTooLarge, fmt.Errorf("%d bytes, limit %d", len(r.Value), s.cfg.MaxEventSize))
	}
	format, _ := kafka.Header(r, kafka.HeaderFormat)
	payload, form, err := kafka.Decode(r.Value, format)
	switch {
	case errors.Is(err, kafka.ErrEmpty):
		return skip(SkipEmpty, nil)
	case errors.Is(err, kafka.ErrBadJSON):
		return skip(SkipBadJSON, err)
	case err != nil:
		return skip(SkipNotVOEvent, err)
	case len(payload) > s.cfg.MaxEventSize:
		return skip(SkipTooLarge, fmt.Errorf("rebuilt XML of %d bytes, limit %d", len(payload), s.cfg.MaxEventSize))
	}
	info, err := voevent.Inspect(payload, voevent.Options{})
	switch {
	case errors.Is(err, xmlsafe.ErrDTD):
		return skip(SkipDTD, err)
	case err != nil:
		return skip(SkipUnparsable, err)
	case !voevent.IsVOEventRole(info.Role):
		return skip(SkipNotEvent, fmt.Errorf("root role %q", info.Role))
	}
	peer := "kafka:" + r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10)
	for attempt, pause := 1, KafkaStoreRetryMin; ; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
		ev, outcome, err := relay(sctx, s.store, payload, info, nil, bus.OriginKafka, peer, s.cfg.Node)
		cancel()
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return false
			}
			s.storeFails.Add(1)
			s.log.Error("could not store event from Kafka; retrying, offset not committed", "topic", r.Topic,
				"partition", r.Partition, "offset", r.Offset, "ivorn", info.IVORN, "attempt", attempt, "in", pause, "err", err)
			select {
			case <-ctx.Done():
				return false
			case <-time.After(pause):
			}
			pause = min(2*pause, KafkaStoreRetryMax)
			continue
		case outcome == relayNoIVORN:
			return skip(SkipNoIVORN, nil)
		case outcome == relayInvalidIVORN:
			return skip(SkipInvalidIVORN, fmt.Errorf("ivorn %q", info.IVORN))
		case outcome == relayDuplicate:
			s.duplicates.Add(1)
			s.log.Debug("event from Kafka previously seen", "topic", r.Topic, "partition", r.Partition,
				"offset", r.Offset, "ivorn", info.IVORN)
		default:
			s.accepted.Add(1)
			if f := s.cfg.Timings.Stored; f != nil {
				f(time.Since(ev.ReceivedAt)) // set just before the store
			}
			if form == kafka.FormRebuilt {
				s.rebuilt.Add(1)
			}
			s.log.Info("event accepted from Kafka", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
				"ivorn", info.IVORN, "sha1", ev.SHA1, "role", ev.Role, "form", form.String())
		}
		return true
	}
}

// commit commits the offsets past the records handled, on a context of
// its own so that what was stored before a stop is committed too.
func (s *KafkaSource) commit(ctx context.Context, cl *kgo.Client, done []*kgo.Record) {
	if len(done) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), KafkaCommitTimeout)
	defer cancel()
	if err := cl.CommitRecords(cctx, done...); err != nil {
		s.log.Warn("kafka offset commit failed; the records will be read again and found previously seen", "err", err)
	}
}

// readHeartbeats reads the heartbeat topic from its end with its own
// client until ctx ends.
func (s *KafkaSource) readHeartbeats(ctx context.Context, hb *kgo.Client) {
	defer hb.Close()
	for ctx.Err() == nil {
		fetches := hb.PollFetches(ctx)
		if fetches.IsClientClosed() {
			return
		}
		if logFetchErrors(s.log, fetches, "kafka heartbeat fetch failed; retrying") && fetches.NumRecords() == 0 {
			pause(ctx, KafkaErrorPause)
			continue
		}
		fetches.EachRecord(func(r *kgo.Record) {
			s.heartbeats.Add(1)
			at, err := kafka.ParseHeartbeat(r.Value)
			if err != nil {
				s.log.Debug("unreadable heartbeat; it still counts", "offset", r.Offset, "err", err)
			}
			s.beat(time.Now(), at)
		})
	}
}

func (s *KafkaSource) beat(now, alert time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.LastHeartbeat = now
	if !alert.IsZero() {
		s.status.AlertTime = alert
	}
	if s.status.State != KafkaLive {
		if s.status.State == KafkaStale {
			s.log.Info("kafka source live again: heartbeat read", "stale_for", now.Sub(s.status.Since).Round(time.Millisecond))
		} else {
			s.log.Info("kafka source live: heartbeat read")
		}
		s.status.State, s.status.Since = KafkaLive, now
	}
}

// watchHeartbeats marks the source stale once no heartbeat has been read
// for HeartbeatTimeout, checking a few times per timeout.
func (s *KafkaSource) watchHeartbeats(ctx context.Context) {
	tick := time.NewTicker(max(s.cfg.HeartbeatTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			s.mu.Lock()
			st := s.status
			from := st.LastHeartbeat
			if from.IsZero() {
				from = st.Since
			}
			if st.State != KafkaStale && now.Sub(from) >= s.cfg.HeartbeatTimeout {
				s.status.State, s.status.Since = KafkaStale, now
				s.log.Warn("kafka source stale: no heartbeat", "topic", s.cfg.HeartbeatTopic,
					"for", now.Sub(from).Round(time.Millisecond), "last_alert_datetime", st.AlertTime)
			}
			s.mu.Unlock()
		}
	}
}

func (s *KafkaSource) setState(st KafkaState, at time.Time) {
	s.mu.Lock()
	s.status.State, s.status.Since = st, at
	s.mu.Unlock()
}
