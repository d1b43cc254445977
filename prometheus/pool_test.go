package sessionkitprom

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionkit/sessionkit/redisstore"
)

// fakePool returns fixed PoolStats.
type fakePool struct {
	stats redisstore.PoolStats
	calls *atomic.Int64 // counts PoolStats calls when set
}

func (p fakePool) PoolStats() redisstore.PoolStats {
	if p.calls != nil {
		p.calls.Add(1)
	}
	return p.stats
}

func TestWatchPool(t *testing.T) {
	tests := []struct {
		name  string
		stats redisstore.PoolStats
		want  map[string]float64
	}{
		{"zero", redisstore.PoolStats{}, map[string]float64{
			`sessionkit_redis_pool_connections{state="in_use"}`: 0,
			`sessionkit_redis_pool_connections{state="idle"}`:   0,
			`sessionkit_redis_pool_max_connections`:             0,
			`sessionkit_redis_pool_waits_total`:                 0,
			`sessionkit_redis_pool_wait_seconds_total`:          0,
			`sessionkit_redis_dials_total`:                      0,
			`sessionkit_redis_dial_errors_total`:                0,
		}},
		{"busy", redisstore.PoolStats{
			Active: 10, Idle: 3, MaxActive: 64,
			Waits: 7, WaitTime: 1500 * time.Millisecond,
			Dials: 12, DialErrors: 2,
		}, map[string]float64{
			`sessionkit_redis_pool_connections{state="in_use"}`: 7,
			`sessionkit_redis_pool_connections{state="idle"}`:   3,
			`sessionkit_redis_pool_max_connections`:             64,
			`sessionkit_redis_pool_waits_total`:                 7,
			`sessionkit_redis_pool_wait_seconds_total`:          1.5,
			`sessionkit_redis_dials_total`:                      12,
			`sessionkit_redis_dial_errors_total`:                2,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := newMetrics(t, Options{})
			calls := new(atomic.Int64)
			if err := m.WatchPool(fakePool{stats: tc.stats, calls: calls}); err != nil {
				t.Fatalf("WatchPool: %v", err)
			}
			got := gather(t, reg)
			for k, w := range tc.want {
				if g, ok := got[k]; !ok || g != w {
					t.Errorf("%s = %v (present %v), want %v", k, g, ok, w)
				}
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("one scrape called PoolStats %d times, want 1 (one snapshot per scrape)", n)
			}
		})
	}
}

func TestWatchPoolErrors(t *testing.T) {
	m, _ := newMetrics(t, Options{})
	if err := m.WatchPool(nil); err == nil {
		t.Error("WatchPool(nil) = nil, want an error")
	}
	if err := m.WatchPool(fakePool{}); err != nil {
		t.Fatalf("WatchPool: %v", err)
	}
	err := m.WatchPool(fakePool{})
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second WatchPool = %v, want a prometheus.AlreadyRegisteredError", err)
	}
}
