package sessionkitprom

import (
	"errors"
	"fmt"
	"maps"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionkit/sessionkit/middleware"
)

// RateLimitMetrics counts what the rate limiters of package middleware
// report and exports it to Prometheus. Set it as
// middleware.RateLimitConfig.Metrics; several limiters may share one. It
// is safe for concurrent use.
//
// Series:
//
//	sessionkit_ratelimit_refused_total{rule}      requests answered 429, by the rule they were over
//	sessionkit_ratelimit_outages_total{outcome}   requests whose count failed: outcome "served" (FailOpen) or "refused" (FailClosed, 503)
//
// The time and errors of the counts themselves are the Store's op
// "rate_limit" in sessionkit_store_operation_duration_seconds and
// sessionkit_store_errors_total (see Metrics).
type RateLimitMetrics struct {
	refused       *prometheus.CounterVec // {rule}
	rules         map[string]prometheus.Counter
	served        prometheus.Counter
	refusedOutage prometheus.Counter
}

var _ middleware.RateLimitMetrics = (*RateLimitMetrics)(nil)

// RateLimitOptions configures NewRateLimitMetrics. The zero value is ready
// to use.
type RateLimitOptions struct {
	// Rules are the names of the limiters' rules, whose refusal series
	// then exist at zero from the start, so that rate() sees the first
	// refusal and the count does not allocate. A rule not listed gets its
	// series at its first refusal. Default none.
	Rules []string

	// ConstLabels are added to every series, as Options.ConstLabels. The
	// names rule and outcome are the series' own. Default none.
	ConstLabels prometheus.Labels
}

// NewRateLimitMetrics registers the rate limit series with reg and returns
// their RateLimitMetrics. On an error it registers nothing.
func NewRateLimitMetrics(reg prometheus.Registerer, opts RateLimitOptions) (*RateLimitMetrics, error) {
	if reg == nil {
		return nil, errors.New("sessionkitprom: NewRateLimitMetrics: nil Registerer; pass prometheus.DefaultRegisterer or a registry of your own")
	}
	for name := range opts.ConstLabels {
		if name == "rule" || name == "outcome" {
			return nil, fmt.Errorf("sessionkitprom: RateLimitOptions.ConstLabels: %q is a label of the series themselves", name)
		}
	}
	constLabels := maps.Clone(opts.ConstLabels)
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace:   namespace,
		Name:        "ratelimit_refused_total",
		Help:        "Requests answered 429 by a rate limiter, by the rule they were over.",
		ConstLabels: constLabels,
	}, []string{"rule"})
	outages := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace:   namespace,
		Name:        "ratelimit_outages_total",
		Help:        "Requests whose rate limit count failed (Redis unavailable or refusing): served unlimited (FailOpen) or refused with 503 (FailClosed).",
		ConstLabels: constLabels,
	}, []string{"outcome"})
	// All or nothing, as New: a failed call leaves reg as it was, so
	// that it may be called again.
	if err := register(reg, refused, outages); err != nil {
		return nil, fmt.Errorf("sessionkitprom: NewRateLimitMetrics: %w", err)
	}
	m := &RateLimitMetrics{
		refused:       refused,
		rules:         make(map[string]prometheus.Counter, len(opts.Rules)),
		served:        outages.WithLabelValues("served"),
		refusedOutage: outages.WithLabelValues("refused"),
	}
	for _, r := range opts.Rules {
		m.rules[r] = refused.WithLabelValues(r)
	}
	return m, nil
}

// RateLimited implements middleware.RateLimitMetrics.
func (m *RateLimitMetrics) RateLimited(rule string) {
	if c, ok := m.rules[rule]; ok {
		c.Inc()
		return
	}
	m.refused.WithLabelValues(rule).Inc()
}

// RateLimitUnavailable implements middleware.RateLimitMetrics.
func (m *RateLimitMetrics) RateLimitUnavailable(served bool) {
	if served {
		m.served.Inc()
	} else {
		m.refusedOutage.Inc()
	}
}
