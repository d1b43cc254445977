package sessionkitprom

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionkit/sessionkit/internal/redistest"
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
			`sessionkit_redis_pool_exhausted`:                   0,
			`sessionkit_redis_pool_waits_total`:                 0,
			`sessionkit_redis_pool_wait_seconds_total`:          0,
			`sessionkit_redis_dials_total`:                      0,
			`sessionkit_redis_dial_errors_total`:                0,
			`sessionkit_redis_sentinels_down`:                   0,
			`sessionkit_redis_sentinel_lookup_failures_total`:   0,
			`sessionkit_redis_sentinels_failing`:                0,
		}},
		{"busy", redisstore.PoolStats{
			Active: 10, Idle: 3, MaxActive: 64,
			Waits: 7, WaitTime: 1500 * time.Millisecond,
			Dials: 12, DialErrors: 2,
			SentinelsDown: true, SentinelLookupFailures: 5, SentinelsFailing: 2,
		}, map[string]float64{
			`sessionkit_redis_pool_connections{state="in_use"}`: 7,
			`sessionkit_redis_pool_connections{state="idle"}`:   3,
			`sessionkit_redis_pool_max_connections`:             64,
			`sessionkit_redis_pool_exhausted`:                   0,
			`sessionkit_redis_pool_waits_total`:                 7,
			`sessionkit_redis_pool_wait_seconds_total`:          1.5,
			`sessionkit_redis_dials_total`:                      12,
			`sessionkit_redis_dial_errors_total`:                2,
			`sessionkit_redis_sentinels_down`:                   1,
			`sessionkit_redis_sentinel_lookup_failures_total`:   5,
			`sessionkit_redis_sentinels_failing`:                2,
		}},
		{"full", redisstore.PoolStats{Active: 64, MaxActive: 64}, map[string]float64{
			`sessionkit_redis_pool_connections{state="in_use"}`: 64,
			`sessionkit_redis_pool_exhausted`:                   1,
		}},
		// A Cluster's counts add up its nodes' pools: one node's full
		// pool is exhaustion, though the sum is under MaxActive, and the
		// sum at MaxActive with no node full is none.
		{"cluster node full", redisstore.PoolStats{Active: 2, MaxActive: 2, Nodes: 3, ExhaustedNodes: 1}, map[string]float64{
			`sessionkit_redis_pool_exhausted`: 1,
		}},
		{"cluster none full", redisstore.PoolStats{Active: 3, MaxActive: 2, Nodes: 3}, map[string]float64{
			`sessionkit_redis_pool_exhausted`: 0,
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

// poolExhaustedQuery is the README's "Pool exhausted" alert, which
// TestPoolExhaustedQuery evaluates on a real exhausted pool.
const poolExhaustedQuery = `sessionkit_redis_pool_exhausted == 1`

// readmeQuery returns the PromQL lines under the comment line that starts
// with comment in README.md's queries, joined with single spaces.
func readmeQuery(t *testing.T, comment string) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+comment)
	if !ok {
		t.Fatalf("README.md has no query under %q", comment)
	}
	var query []string
	for _, line := range strings.Split(rest, "\n")[1:] {
		line = strings.TrimSpace(line)
		if line == "" || line == "```" {
			break
		}
		if !strings.HasPrefix(line, "#") {
			query = append(query, line)
		}
	}
	return strings.Join(query, " ")
}

// TestPoolExhaustedQuery holds the pool's only connection and lets a call
// time out waiting for it: the README's "Pool exhausted" query is true of
// the series then, and false once the connection is back, while
// sessionkit_redis_pool_waits_total stays flat (redigo counts only the
// waits that got a connection), which is why the alert does not use it.
func TestPoolExhaustedQuery(t *testing.T) {
	if got := readmeQuery(t, "# Pool exhausted"); got != poolExhaustedQuery {
		t.Fatalf("README.md's Pool exhausted query = %q, want %q (the one this test evaluates)", got, poolExhaustedQuery)
	}
	m, reg := newMetrics(t, Options{})
	srv := redistest.Start(t)
	store, err := redisstore.Open(redisstore.Config{Addr: srv.Addr(), MaxActive: 1, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := m.WatchPool(store); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := store.Insert(ctx, "held", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	// exhausted evaluates poolExhaustedQuery on a scrape.
	exhausted := func(s map[string]float64) bool {
		return s["sessionkit_redis_pool_exhausted"] == 1
	}

	// A Merge whose function waits holds the only connection.
	holding, release, merged := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		_, err := store.Merge(ctx, "held", time.Minute, func(b []byte) ([]byte, error) {
			close(holding)
			<-release
			return b, nil
		})
		merged <- err
	}()
	<-holding
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, _, err := store.Load(short, "other", 0); !errors.Is(err, redisstore.ErrUnavailable) {
		t.Errorf("Load on the exhausted pool = %v, want ErrUnavailable", err)
	}
	during := gather(t, reg)
	close(release)
	if err := <-merged; err != nil {
		t.Fatalf("Merge holding the connection: %v", err)
	}
	if !exhausted(during) {
		t.Errorf("with the pool exhausted, the Pool exhausted query is false of %v", during)
	}
	if w := during["sessionkit_redis_pool_waits_total"]; w != 0 {
		t.Errorf("sessionkit_redis_pool_waits_total = %v after a wait that timed out, want 0 as documented", w)
	}
	if after := gather(t, reg); exhausted(after) {
		t.Errorf("with the connection back, the Pool exhausted query is true of %v", after)
	}
}
