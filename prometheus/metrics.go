package sessionkitprom

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// namespace prefixes every series name.
const namespace = "sessionkit"

// Options configures New. The zero value is ready to use.
type Options struct {
	// Buckets are the upper bounds, in seconds, of the store call duration
	// histogram, strictly increasing. Nil (the default) means 100µs,
	// 250µs, 500µs, 1ms, 2.5ms, 5ms, 10ms, 25ms, 50ms, 100ms, 250ms,
	// 500ms and 1s: a call on a healthy local network takes well under a
	// millisecond, and redisstore's default Config.Timeout is 1s, so the
	// calls above the last bucket are those that ran out of time.
	Buckets []float64

	// ConstLabels are added to every series. They tell apart several
	// Metrics (for several Managers or Stores) in one registry, which
	// accepts a name only with one set of label names: give each Metrics
	// the same label names with values of its own, for example
	// {"store": "main"} and {"store": "admin"}. Nil (the default) adds
	// none, for one Metrics per registry. The names op, class, event,
	// reason, state and le are the series' own.
	ConstLabels prometheus.Labels
}

// defaultBuckets returns the default of Options.Buckets.
func defaultBuckets() []float64 {
	return []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
}

// Metrics counts what a session.Manager and a redisstore.Store report and
// exports it to Prometheus. It implements session.Metrics (set it as
// session.Config.Metrics) and redisstore.Observer (set it as
// redisstore.Config.Observer). It is safe for concurrent use; its methods
// do not allocate for the ops, events and reasons the core documents.
type Metrics struct {
	reg         prometheus.Registerer
	constLabels prometheus.Labels

	duration       *prometheus.HistogramVec // {op}
	storeErrors    *prometheus.CounterVec   // {op, class}
	sessions       *prometheus.CounterVec   // {event}
	rejected       *prometheus.CounterVec   // {reason}
	anonymous      prometheus.Counter
	commitFailures prometheus.Counter

	// ops maps an op to its children: those of the documented ops from
	// New on, another op's from its first call. It is never changed in
	// place: addOp replaces it with a larger copy, under opsMu.
	ops   atomic.Pointer[map[string]*opMetrics]
	opsMu sync.Mutex
	// events and reasons hold the children of the documented label
	// values; built by New and only read afterwards. Others are looked up
	// in the vector on every call.
	events  map[session.EventKind]prometheus.Counter
	reasons map[session.RejectReason]prometheus.Counter
}

// reservedLabels are the label names of the series, and the histogram's
// bucket label, which Options.ConstLabels must not use.
var reservedLabels = []string{"op", "class", "event", "reason", "state", "le"}

// ops are the ops of redisstore.Observer.
var ops = [...]string{
	"load", "insert", "update", "merge", "remove", "ping", "iterate",
	"add_user_session", "move_session", "remove_user_session",
	"user_sessions", "vouch", "remove_user_sessions", "key_stats",
	"find", "commit", "delete", "rate_limit", "take_scs",
}

// events are the kinds of session.Event.
var events = [...]session.EventKind{
	session.EventCreated, session.EventRenewed, session.EventDestroyed,
	session.EventRevoked, session.EventExpired, session.EventMigrated,
}

// reasons are the reasons of session.Metrics.TokenRejected.
var reasons = [...]session.RejectReason{
	session.RejectOversized, session.RejectMalformed,
	session.RejectBadSignature, session.RejectRetiredKey,
}

// New registers the collectors of the store and session series with reg
// and returns the Metrics that feeds them. It returns an error, and
// registers nothing, if opts is invalid or reg refuses a collector: for
// example because another Metrics with the same Options.ConstLabels
// registered there before (prometheus.AlreadyRegisteredError), or one
// with other label names.
func New(reg prometheus.Registerer, opts Options) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("sessionkitprom: New: nil Registerer; pass prometheus.DefaultRegisterer or a registry of your own")
	}
	buckets := opts.Buckets
	if buckets == nil {
		buckets = defaultBuckets()
	}
	if len(buckets) == 0 {
		return nil, errors.New("sessionkitprom: Options.Buckets: want at least one bucket, or nil for the default")
	}
	for i := 1; i < len(buckets); i++ {
		if !(buckets[i] > buckets[i-1]) {
			return nil, fmt.Errorf("sessionkitprom: Options.Buckets: want strictly increasing bounds, got %v after %v", buckets[i], buckets[i-1])
		}
	}
	for name := range opts.ConstLabels {
		if slices.Contains(reservedLabels, name) {
			return nil, fmt.Errorf("sessionkitprom: Options.ConstLabels: %q is a label of the series themselves", name)
		}
	}
	constLabels := maps.Clone(opts.ConstLabels)
	m := &Metrics{
		reg:         reg,
		constLabels: constLabels,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace:   namespace,
			Name:        "store_operation_duration_seconds",
			Help:        "Duration of the session store's calls to Redis, by op, including the wait for a connection and retries, failed calls included.",
			Buckets:     slices.Clone(buckets),
			ConstLabels: constLabels,
		}, []string{"op"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   namespace,
			Name:        "store_errors_total",
			Help:        "Failed session store calls, by op and class: unavailable (Redis should recover), refused (fix the configuration), contention (writers racing on one key) or other.",
			ConstLabels: constLabels,
		}, []string{"op", "class"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   namespace,
			Name:        "sessions_total",
			Help:        "Session events: created (login), renewed, destroyed (logout), revoked, expired (a request came with a token past its absolute deadline), migrated (a signed-in scs session carried over).",
			ConstLabels: constLabels,
		}, []string{"event"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   namespace,
			Name:        "tokens_rejected_total",
			Help:        "Session tokens refused before any store command, by reason: oversized, malformed, bad_signature (forged or of an unknown key), retired_key (signed by a key of RetiredKeys).",
			ConstLabels: constLabels,
		}, []string{"reason"}),
		anonymous: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace:   namespace,
			Name:        "requests_anonymous_on_outage_total",
			Help:        "Requests that carried a valid session token but were served anonymous because the session store could not read the session: unavailable, or refusing the read (a wrong password, a command the ACL denies).",
			ConstLabels: constLabels,
		}),
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace:   namespace,
			Name:        "commit_failures_total",
			Help:        "Requests whose session changes could not be saved: store unavailable or contention, answered 503 by the middleware, or a session record over its size limit, answered 500.",
			ConstLabels: constLabels,
		}),
		events:  make(map[session.EventKind]prometheus.Counter, len(events)),
		reasons: make(map[session.RejectReason]prometheus.Counter, len(reasons)),
	}
	known := make(map[string]*opMetrics, len(ops))
	for _, op := range ops {
		known[op] = m.newOp(op)
	}
	m.ops.Store(&known)
	for _, e := range events {
		m.events[e] = m.sessions.WithLabelValues(string(e))
	}
	for _, r := range reasons {
		m.reasons[r] = m.rejected.WithLabelValues(string(r))
	}
	if err := register(reg, m.duration, m.storeErrors, m.sessions, m.rejected, m.anonymous, m.commitFailures); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers cs with reg, all or none.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("sessionkitprom: register: %w", err)
		}
	}
	return nil
}

var (
	_ session.Metrics     = (*Metrics)(nil)
	_ redisstore.Observer = (*Metrics)(nil)
)

// SessionEvent implements session.Metrics: it counts
// sessionkit_sessions_total{event=kind}.
func (m *Metrics) SessionEvent(kind session.EventKind) {
	if c, ok := m.events[kind]; ok {
		c.Inc()
		return
	}
	m.sessions.WithLabelValues(string(kind)).Inc()
}

// TokenRejected implements session.Metrics: it counts
// sessionkit_tokens_rejected_total{reason=reason}.
func (m *Metrics) TokenRejected(reason session.RejectReason) {
	if c, ok := m.reasons[reason]; ok {
		c.Inc()
		return
	}
	m.rejected.WithLabelValues(string(reason)).Inc()
}

// ServedAnonymous implements session.Metrics: it counts
// sessionkit_requests_anonymous_on_outage_total.
func (m *Metrics) ServedAnonymous() {
	m.anonymous.Inc()
}

// CommitFailed implements session.Metrics: it counts
// sessionkit_commit_failures_total.
func (m *Metrics) CommitFailed() {
	m.commitFailures.Inc()
}
