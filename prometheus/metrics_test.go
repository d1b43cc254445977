package sessionkitprom

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// gather returns every series of g by name and labels, as
// `name{a="x",b="y"}`. A histogram gives its _count and _sum (its buckets
// depend on timing, and a test of them reads the family itself).
func gather(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := make(map[string]float64)
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := func(name string) string {
				if len(labels) == 0 {
					return name
				}
				return name + "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case mt.Counter != nil:
				out[key(f.GetName())] = mt.GetCounter().GetValue()
			case mt.Gauge != nil:
				out[key(f.GetName())] = mt.GetGauge().GetValue()
			case mt.Histogram != nil:
				out[key(f.GetName()+"_count")] = float64(mt.GetHistogram().GetSampleCount())
				out[key(f.GetName()+"_sum")] = mt.GetHistogram().GetSampleSum()
			default:
				t.Fatalf("series %s of unexpected type %v", f.GetName(), f.GetType())
			}
		}
	}
	return out
}

// diff returns the series whose value changed from before to after,
// by how much; a series new in after counts from zero.
func diff(before, after map[string]float64) map[string]float64 {
	d := make(map[string]float64)
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

// newMetrics returns Metrics registered with a fresh registry.
func newMetrics(t *testing.T, opts Options) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := New(reg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m, reg
}

// TestSeriesExistAtZero checks that New creates every series of a known
// label value, at zero, and nothing else.
func TestSeriesExistAtZero(t *testing.T) {
	_, reg := newMetrics(t, Options{})
	want := map[string]float64{
		"sessionkit_commit_failures_total":              0,
		"sessionkit_requests_anonymous_on_outage_total": 0,
	}
	for _, op := range ops {
		want[`sessionkit_store_operation_duration_seconds_count{op="`+op+`"}`] = 0
		want[`sessionkit_store_operation_duration_seconds_sum{op="`+op+`"}`] = 0
		for _, class := range classNames {
			want[`sessionkit_store_errors_total{class="`+class+`",op="`+op+`"}`] = 0
		}
	}
	for _, e := range []string{"created", "renewed", "destroyed", "revoked", "expired", "migrated"} {
		want[`sessionkit_sessions_total{event="`+e+`"}`] = 0
	}
	for _, r := range []string{"oversized", "malformed", "bad_signature", "retired_key"} {
		want[`sessionkit_tokens_rejected_total{reason="`+r+`"}`] = 0
	}
	got := gather(t, reg)
	for k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("series %s missing after New", k)
		}
	}
	for k, v := range got {
		if w, ok := want[k]; !ok || v != w {
			t.Errorf("after New, %s = %v; want only the series above, at 0", k, v)
		}
	}
}

// TestOpsMatchObserverDoc checks that the table of documented ops is the
// list of ops in the documentation of redisstore.Observer, read from the
// core module's source one directory up.
func TestOpsMatchObserverDoc(t *testing.T) {
	path := filepath.Join("..", "redisstore", "stats.go")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read the Observer's documentation: %v", err)
	}
	// The comment of ObserveCall, without its comment markers.
	src := string(b)
	end := strings.Index(src, "\tObserveCall(op string")
	start := strings.LastIndex(src[:max(end, 0)], "interface {")
	if start < 0 || end < 0 {
		t.Fatalf("%s: no method ObserveCall in an interface", path)
	}
	var text strings.Builder
	for _, line := range strings.Split(src[start:end], "\n") {
		if c, ok := strings.CutPrefix(strings.TrimSpace(line), "//"); ok {
			text.WriteString(c)
		}
	}
	_, list, ok := strings.Cut(text.String(), "The ops are ")
	if !ok {
		t.Fatalf("%s: the ObserveCall documentation no longer says \"The ops are ...\": %q", path, text.String())
	}
	list = regexp.MustCompile(`\([^)]*\)`).ReplaceAllString(list, "") // the parenthetical notes
	list, _, _ = strings.Cut(list, ".")
	var documented []string
	for _, w := range regexp.MustCompile(`[\s,]+`).Split(list, -1) {
		if w != "" && w != "and" {
			documented = append(documented, w)
		}
	}
	got := slices.Clone(ops[:])
	sort.Strings(got)
	sort.Strings(documented)
	if !slices.Equal(got, documented) {
		t.Errorf("ops = %v, but redisstore.Observer documents %v", got, documented)
	}
}

// TestREADMEOpsAndSeries checks that README.md lists the ops of the code
// and gives the number of series New and WatchPool register.
func TestREADMEOpsAndSeries(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	_, list, ok := strings.Cut(readme, "`op` is one of the")
	list, _, _ = strings.Cut(list, "An op the Store reports")
	if !ok {
		t.Fatal("README.md no longer says \"`op` is one of the ...\"")
	}
	var listed []string
	for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(list, -1) {
		listed = append(listed, m[1])
	}
	want := slices.Sorted(slices.Values(ops[:]))
	if got := slices.Sorted(slices.Values(listed)); !slices.Equal(got, want) {
		t.Errorf("README.md lists the ops %v, want %v", got, want)
	}
	if n := fmt.Sprintf("`op` is one of the %d ops", len(ops)); !strings.Contains(readme, n) {
		t.Errorf("README.md does not say %q", n)
	}

	m, reg := newMetrics(t, Options{})
	if err := m.WatchPool(fakePool{}); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var series, histogram int // as a scrape shows them
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			if h := mt.GetHistogram(); h != nil {
				n := len(h.GetBucket()) + 3 // +Inf, _sum and _count
				series += n
				histogram += n
				continue
			}
			series++
		}
	}
	got := regexp.MustCompile(`give a registry (\d+) sessionkit\s+series whatever the traffic, (\d+) of them the histogram's`).FindStringSubmatch(readme)
	if want := []string{fmt.Sprint(series), fmt.Sprint(histogram)}; got == nil || !slices.Equal(got[1:], want) {
		t.Errorf("README.md's series count: %q, want %v (series, histogram's)", got, want)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		reg  prometheus.Registerer
		opts Options
		want string
	}{
		{"nil registerer", nil, Options{}, "nil Registerer"},
		{"empty buckets", prometheus.NewRegistry(), Options{Buckets: []float64{}}, "Options.Buckets"},
		{"unsorted buckets", prometheus.NewRegistry(), Options{Buckets: []float64{.1, .01}}, "Options.Buckets"},
		{"equal buckets", prometheus.NewRegistry(), Options{Buckets: []float64{.1, .1}}, "Options.Buckets"},
		{"const label op", prometheus.NewRegistry(), Options{ConstLabels: prometheus.Labels{"op": "x"}}, "Options.ConstLabels"},
		{"const label le", prometheus.NewRegistry(), Options{ConstLabels: prometheus.Labels{"le": "1"}}, "Options.ConstLabels"},
		{"const label state", prometheus.NewRegistry(), Options{ConstLabels: prometheus.Labels{"state": "x"}}, "Options.ConstLabels"},
		{"invalid const label", prometheus.NewRegistry(), Options{ConstLabels: prometheus.Labels{"__reserved": "x"}}, "register"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.reg, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "sessionkitprom: ") {
				t.Fatalf("New() = %v, %v; want an error naming %q", m, err, tc.want)
			}
		})
	}
}

// TestNewRegistersAllOrNothing checks that a New that fails registers
// nothing, that a second New into one registry fails with
// prometheus.AlreadyRegisteredError, and that two Metrics fit in one
// registry with distinct values of the same ConstLabels.
func TestNewRegistersAllOrNothing(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Taken before New: the last collector New registers.
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "sessionkit_commit_failures_total", Help: "taken"}))
	if _, err := New(reg, Options{}); err == nil {
		t.Fatal("New on a registry that has sessionkit_commit_failures_total succeeded")
	}
	if got := gather(t, reg); len(got) != 1 {
		t.Errorf("a failed New left %d series registered, want only the 1 registered before: %v", len(got), got)
	}

	reg = prometheus.NewRegistry()
	if _, err := New(reg, Options{}); err != nil {
		t.Fatalf("New: %v", err)
	}
	_, err := New(reg, Options{})
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second New on one registry = %v, want a prometheus.AlreadyRegisteredError", err)
	}

	reg = prometheus.NewRegistry()
	byStore := make(map[string]*Metrics)
	for _, store := range []string{"main", "admin"} {
		m, err := New(reg, Options{ConstLabels: prometheus.Labels{"store": store}})
		if err != nil {
			t.Fatalf("New with ConstLabels store=%s: %v", store, err)
		}
		if err := m.WatchPool(fakePool{}); err != nil {
			t.Fatalf("WatchPool with ConstLabels store=%s: %v", store, err)
		}
		byStore[store] = m
	}
	byStore["admin"].CommitFailed()
	got := gather(t, reg)
	for k, want := range map[string]float64{
		`sessionkit_commit_failures_total{store="admin"}`: 1,
		`sessionkit_commit_failures_total{store="main"}`:  0,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}

func TestObserveCall(t *testing.T) {
	tests := []struct {
		name string
		op   string
		err  error
		want map[string]float64 // change of each series
	}{
		{"success", "load", nil, map[string]float64{
			`sessionkit_store_operation_duration_seconds_count{op="load"}`: 1,
			`sessionkit_store_operation_duration_seconds_sum{op="load"}`:   0.002,
		}},
		{"unavailable", "insert", fmt.Errorf("redisstore: insert: %w: dial tcp: connection refused", redisstore.ErrUnavailable), map[string]float64{
			`sessionkit_store_operation_duration_seconds_count{op="insert"}`: 1,
			`sessionkit_store_operation_duration_seconds_sum{op="insert"}`:   0.002,
			`sessionkit_store_errors_total{class="unavailable",op="insert"}`: 1,
		}},
		{"refused", "ping", fmt.Errorf("redisstore: ping: %w: NOAUTH", redisstore.ErrRefused), map[string]float64{
			`sessionkit_store_operation_duration_seconds_count{op="ping"}`: 1,
			`sessionkit_store_operation_duration_seconds_sum{op="ping"}`:   0.002,
			`sessionkit_store_errors_total{class="refused",op="ping"}`:     1,
		}},
		{"contention", "merge", fmt.Errorf("redisstore: merge: %w", redisstore.ErrContention), map[string]float64{
			`sessionkit_store_operation_duration_seconds_count{op="merge"}`: 1,
			`sessionkit_store_operation_duration_seconds_sum{op="merge"}`:   0.002,
			`sessionkit_store_errors_total{class="contention",op="merge"}`:  1,
		}},
		{"other", "move_session", errors.New("session: unreadable record"), map[string]float64{
			`sessionkit_store_operation_duration_seconds_count{op="move_session"}`: 1,
			`sessionkit_store_operation_duration_seconds_sum{op="move_session"}`:   0.002,
			`sessionkit_store_errors_total{class="other",op="move_session"}`:       1,
		}},
		// A client that went away: timed, not an error of Redis's.
		{"caller cancelled", "load", fmt.Errorf("redisstore: load: %w", context.Canceled), map[string]float64{
			`sessionkit_store_operation_duration_seconds_count{op="load"}`: 1,
			`sessionkit_store_operation_duration_seconds_sum{op="load"}`:   0.002,
		}},
		{"undocumented op", "key stats", fmt.Errorf("redisstore: key stats: %w", redisstore.ErrUnavailable), map[string]float64{
			`sessionkit_store_operation_duration_seconds_count{op="key stats"}`: 1,
			`sessionkit_store_operation_duration_seconds_sum{op="key stats"}`:   0.002,
			`sessionkit_store_errors_total{class="unavailable",op="key stats"}`: 1,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := newMetrics(t, Options{})
			before := gather(t, reg)
			m.ObserveCall(tc.op, 2*time.Millisecond, tc.err)
			checkDiff(t, before, gather(t, reg), tc.want)
		})
	}
}

// TestUndocumentedOpSeries checks that an op New did not know gets all
// its series on first sight, at zero but for what was observed, and keeps
// them.
func TestUndocumentedOpSeries(t *testing.T) {
	m, reg := newMetrics(t, Options{})
	m.ObserveCall("key stats", time.Millisecond, nil)
	m.ObserveCall("key stats", time.Millisecond, nil)
	got := gather(t, reg)
	if c := got[`sessionkit_store_operation_duration_seconds_count{op="key stats"}`]; c != 2 {
		t.Errorf(`duration count of op "key stats" = %v, want 2`, c)
	}
	for _, class := range classNames {
		k := `sessionkit_store_errors_total{class="` + class + `",op="key stats"}`
		if v, ok := got[k]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", k, v, ok)
		}
	}
}

func TestSessionHooks(t *testing.T) {
	tests := []struct {
		name string
		call func(m *Metrics)
		want string
	}{
		{"created", func(m *Metrics) { m.SessionEvent(session.EventCreated) }, `sessionkit_sessions_total{event="created"}`},
		{"renewed", func(m *Metrics) { m.SessionEvent(session.EventRenewed) }, `sessionkit_sessions_total{event="renewed"}`},
		{"destroyed", func(m *Metrics) { m.SessionEvent(session.EventDestroyed) }, `sessionkit_sessions_total{event="destroyed"}`},
		{"revoked", func(m *Metrics) { m.SessionEvent(session.EventRevoked) }, `sessionkit_sessions_total{event="revoked"}`},
		{"expired", func(m *Metrics) { m.SessionEvent(session.EventExpired) }, `sessionkit_sessions_total{event="expired"}`},
		{"unknown event", func(m *Metrics) { m.SessionEvent("resumed") }, `sessionkit_sessions_total{event="resumed"}`},
		{"oversized", func(m *Metrics) { m.TokenRejected(session.RejectOversized) }, `sessionkit_tokens_rejected_total{reason="oversized"}`},
		{"malformed", func(m *Metrics) { m.TokenRejected(session.RejectMalformed) }, `sessionkit_tokens_rejected_total{reason="malformed"}`},
		{"bad signature", func(m *Metrics) { m.TokenRejected(session.RejectBadSignature) }, `sessionkit_tokens_rejected_total{reason="bad_signature"}`},
		{"retired key", func(m *Metrics) { m.TokenRejected(session.RejectRetiredKey) }, `sessionkit_tokens_rejected_total{reason="retired_key"}`},
		{"unknown reason", func(m *Metrics) { m.TokenRejected("replayed") }, `sessionkit_tokens_rejected_total{reason="replayed"}`},
		{"served anonymous", (*Metrics).ServedAnonymous, "sessionkit_requests_anonymous_on_outage_total"},
		{"commit failed", (*Metrics).CommitFailed, "sessionkit_commit_failures_total"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := newMetrics(t, Options{})
			before := gather(t, reg)
			tc.call(m)
			checkDiff(t, before, gather(t, reg), map[string]float64{tc.want: 1})
		})
	}
}

// checkDiff checks that exactly the series of want changed, each by its
// amount (approximately, for sums of durations).
func checkDiff(t *testing.T, before, after, want map[string]float64) {
	t.Helper()
	got := diff(before, after)
	for k, w := range want {
		if g := got[k]; g < w-1e-9 || g > w+1e-9 {
			t.Errorf("%s moved by %v, want %v", k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s moved by %v, want 0", k, g)
		}
	}
}

// TestBuckets checks the default and a custom set of buckets.
func TestBuckets(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []float64
	}{
		{"default", Options{}, defaultBuckets()},
		{"custom", Options{Buckets: []float64{.001, .01, .1}}, []float64{.001, .01, .1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := newMetrics(t, tc.opts)
			m.ObserveCall("load", 300*time.Microsecond, nil)
			families, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range families {
				if f.GetName() != "sessionkit_store_operation_duration_seconds" {
					continue
				}
				for _, mt := range f.GetMetric() {
					if mt.GetLabel()[0].GetValue() != "load" {
						continue
					}
					var bounds []float64
					for _, b := range mt.GetHistogram().GetBucket() {
						bounds = append(bounds, b.GetUpperBound())
						want := uint64(0)
						if b.GetUpperBound() >= 300e-6 {
							want = 1
						}
						if b.GetCumulativeCount() != want {
							t.Errorf("bucket le=%v holds %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
						}
					}
					if !slices.Equal(bounds, tc.want) {
						t.Errorf("buckets = %v, want %v", bounds, tc.want)
					}
					return
				}
			}
			t.Fatal(`no series sessionkit_store_operation_duration_seconds{op="load"}`)
		})
	}
}

// TestOptionsNotRetained checks that New copies Options.Buckets and
// Options.ConstLabels: changing them afterwards changes nothing.
func TestOptionsNotRetained(t *testing.T) {
	buckets := []float64{.001, .01}
	labels := prometheus.Labels{"store": "main"}
	m, reg := newMetrics(t, Options{Buckets: buckets, ConstLabels: labels})
	buckets[0], labels["store"] = 5, "changed"
	if err := m.WatchPool(fakePool{}); err != nil {
		t.Fatal(err)
	}
	got := gather(t, reg)
	if _, ok := got[`sessionkit_redis_pool_max_connections{store="main"}`]; !ok {
		t.Errorf(`no series sessionkit_redis_pool_max_connections{store="main"}: ConstLabels changed after New reached WatchPool`)
	}
}
