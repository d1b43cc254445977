package sessionkitprom

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// TestHotPathAllocs checks that the methods called on every request do not
// allocate: a store read (ObserveCall "load", which observes the
// histogram), a failed call, and the Manager's hooks.
func TestHotPathAllocs(t *testing.T) {
	m, _ := newMetrics(t, Options{})
	unavailable := fmt.Errorf("redisstore: load: %w: connection refused", redisstore.ErrUnavailable)
	contention := fmt.Errorf("redisstore: merge: %w", redisstore.ErrContention)
	m.ObserveCall("key stats", time.Millisecond, nil) // first sight of an undocumented op
	tests := []struct {
		name string
		f    func()
	}{
		{"read", func() { m.ObserveCall("load", 180*time.Microsecond, nil) }},
		{"read failed", func() { m.ObserveCall("load", time.Millisecond, unavailable) }},
		{"merge contended", func() { m.ObserveCall("merge", time.Second, contention) }},
		{"undocumented op seen before", func() { m.ObserveCall("key stats", time.Millisecond, nil) }},
		{"session event", func() { m.SessionEvent(session.EventRenewed) }},
		{"token rejected", func() { m.TokenRejected(session.RejectBadSignature) }},
		{"served anonymous", m.ServedAnonymous},
		{"commit failed", m.CommitFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tc.f); n != 0 {
				t.Errorf("%s allocates %v times per call, want 0", tc.name, n)
			}
		})
	}
}

// BenchmarkObserveCall measures the Observer's cost per store call.
func BenchmarkObserveCall(b *testing.B) {
	unavailable := fmt.Errorf("redisstore: load: %w: connection refused", redisstore.ErrUnavailable)
	for _, bc := range []struct {
		name string
		op   string
		err  error
	}{
		{"read", "load", nil},
		{"read_failed", "load", unavailable},
		{"undocumented_op", "key stats", nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m, err := New(prometheus.NewRegistry(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				m.ObserveCall(bc.op, 180*time.Microsecond, bc.err)
			}
		})
	}
	// The floor: one Observe on a histogram child looked up beforehand.
	b.Run("baseline_histogram_observe", func(b *testing.B) {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "h", Buckets: defaultBuckets()}, []string{"op"}).WithLabelValues("load")
		b.ReportAllocs()
		for b.Loop() {
			h.Observe((180 * time.Microsecond).Seconds())
		}
	})
	b.Run("read_parallel", func(b *testing.B) {
		m, err := New(prometheus.NewRegistry(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.ObserveCall("load", 180*time.Microsecond, nil)
			}
		})
	})
}

// BenchmarkSessionHooks measures the Manager's hooks.
func BenchmarkSessionHooks(b *testing.B) {
	m, err := New(prometheus.NewRegistry(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("SessionEvent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.SessionEvent(session.EventCreated)
		}
	})
	b.Run("TokenRejected", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.TokenRejected(session.RejectMalformed)
		}
	})
}
