package sessionkitprom

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRateLimitMetrics checks the rate limit series: at zero from the
// start for the listed rules and both outcomes, then moved by exactly the
// calls made, a rule not listed included.
func TestRateLimitMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewRateLimitMetrics(reg, RateLimitOptions{Rules: []string{"login-user", "login-ip"}, ConstLabels: prometheus.Labels{"app": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`sessionkit_ratelimit_refused_total{app="a",rule="login-user"}`: 0,
		`sessionkit_ratelimit_refused_total{app="a",rule="login-ip"}`:   0,
		`sessionkit_ratelimit_outages_total{app="a",outcome="served"}`:  0,
		`sessionkit_ratelimit_outages_total{app="a",outcome="refused"}`: 0,
	}
	check := func(when string) {
		t.Helper()
		got := gather(t, reg)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v", when, k, got[k], v)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d series, want %d: %v", when, len(got), len(want), got)
		}
	}
	check("at start")
	m.RateLimited("login-user")
	m.RateLimited("login-user")
	m.RateLimited("api")
	m.RateLimitUnavailable(true)
	m.RateLimitUnavailable(false)
	m.RateLimitUnavailable(false)
	want[`sessionkit_ratelimit_refused_total{app="a",rule="login-user"}`] = 2
	want[`sessionkit_ratelimit_refused_total{app="a",rule="api"}`] = 1
	want[`sessionkit_ratelimit_outages_total{app="a",outcome="served"}`] = 1
	want[`sessionkit_ratelimit_outages_total{app="a",outcome="refused"}`] = 2
	check("after the calls")

	if _, err := NewRateLimitMetrics(reg, RateLimitOptions{}); err == nil {
		t.Error("registering the series twice in one registry = nil error")
	}
	if _, err := NewRateLimitMetrics(prometheus.NewRegistry(), RateLimitOptions{ConstLabels: prometheus.Labels{"rule": "x"}}); err == nil {
		t.Error(`ConstLabels {"rule"} = nil error`)
	}
	if _, err := NewRateLimitMetrics(nil, RateLimitOptions{}); err == nil {
		t.Error("nil Registerer = nil error")
	}
}

// TestNewRateLimitMetricsAllOrNothing checks that a NewRateLimitMetrics
// that fails registers nothing, so that once the conflict is gone it
// succeeds.
func TestNewRateLimitMetricsAllOrNothing(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Taken before: the second collector NewRateLimitMetrics registers.
	// The same series as its own (a registry keeps a name's labels and help
	// for good, even once unregistered), registered elsewhere first.
	taken := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessionkit_ratelimit_outages_total",
		Help: "Requests whose rate limit count failed (Redis unavailable or refusing): served unlimited (FailOpen) or refused with 503 (FailClosed).",
	}, []string{"outcome"})
	reg.MustRegister(taken)
	if _, err := NewRateLimitMetrics(reg, RateLimitOptions{}); err == nil {
		t.Fatal("NewRateLimitMetrics on a registry that has sessionkit_ratelimit_outages_total succeeded")
	}
	reg.Unregister(taken)
	if _, err := NewRateLimitMetrics(reg, RateLimitOptions{}); err != nil {
		t.Errorf("NewRateLimitMetrics once the conflict is gone = %v, want nil: the failed call left a registration behind", err)
	}
}
