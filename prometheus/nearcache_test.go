package sessionkitprom

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionkit/sessionkit/redisstore"
)

// fakeNearCache is a store whose near-cache counters the test sets.
type fakeNearCache struct{ st *redisstore.NearCacheStats }

func (f fakeNearCache) NearCacheStats() redisstore.NearCacheStats { return *f.st }

func TestWatchNearCache(t *testing.T) {
	m, reg := newMetrics(t, Options{})
	st := &redisstore.NearCacheStats{Hits: 7, Misses: 3, Invalidations: 2, Flushes: 1, LeaseExpiries: 4, Evictions: 5, Entries: 6, Connected: true}
	if err := m.WatchNearCache(fakeNearCache{st}); err != nil {
		t.Fatalf("WatchNearCache: %v", err)
	}
	want := map[string]float64{
		"sessionkit_nearcache_hits_total":           7,
		"sessionkit_nearcache_misses_total":         3,
		"sessionkit_nearcache_invalidations_total":  2,
		"sessionkit_nearcache_flushes_total":        1,
		"sessionkit_nearcache_lease_expiries_total": 4,
		"sessionkit_nearcache_evictions_total":      5,
		"sessionkit_nearcache_entries":              6,
		"sessionkit_nearcache_connected":            1,
	}
	got := gather(t, reg)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// Read at scrape time: a later snapshot shows.
	st.Hits, st.Connected = 8, false
	got = gather(t, reg)
	if got["sessionkit_nearcache_hits_total"] != 8 || got["sessionkit_nearcache_connected"] != 0 {
		t.Errorf("after a change: hits %v connected %v, want 8 and 0", got["sessionkit_nearcache_hits_total"], got["sessionkit_nearcache_connected"])
	}
	var already prometheus.AlreadyRegisteredError
	if err := m.WatchNearCache(fakeNearCache{st}); !errors.As(err, &already) {
		t.Errorf("second WatchNearCache = %v, want AlreadyRegisteredError", err)
	}
	if err := m.WatchNearCache(nil); err == nil {
		t.Error("WatchNearCache(nil) = nil, want an error")
	}
}
