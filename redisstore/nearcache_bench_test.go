package redisstore

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

// benchRecord is a session record of a realistic size (about 300 bytes).
var benchRecord = []byte(`{"v":1,"user_id":"user-42","created_at":"2026-01-02T15:04:05Z","expires_at":"2026-01-03T15:04:05Z","last_seen":"2026-01-02T15:04:05Z","ip":"203.0.113.7","user_agent":"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0","values":{"theme":{"string":"dark"},"lang":{"string":"en"}}}`)

// BenchmarkNearCacheRead measures one Load, serially: the raw GET on a
// pooled connection (the floor of any store), Load without the near-cache
// (GET), Load served from the near-cache, and the same in Strict mode.
func BenchmarkNearCacheRead(b *testing.B) {
	srv := redistest.Start(b)
	srv.Do(b, "SET", "session:a", benchRecord, "PX", 3600_000)
	ctx := context.Background()
	b.Run("raw-get", func(b *testing.B) {
		pool, err := NewPool(Config{Addr: srv.Addr()})
		if err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
		b.ReportAllocs()
		for b.Loop() {
			conn := pool.Get()
			v, err := redis.Bytes(conn.Do("GET", "session:a"))
			conn.Close()
			if err != nil || len(v) != len(benchRecord) {
				b.Fatalf("GET = %d bytes, %v", len(v), err)
			}
		}
	})
	for _, mode := range []struct {
		name string
		near NearCache
	}{
		{"load", NearCache{}},
		{"near", NearCache{MaxEntries: 1000}},
		{"near-strict", NearCache{MaxEntries: 1000, Strict: true}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			s, err := Open(Config{Addr: srv.Addr(), NearCache: mode.near})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if mode.near.MaxEntries > 0 {
				waitServing(b, s, "a")
			}
			before := s.NearCacheStats()
			b.ReportAllocs()
			for b.Loop() {
				v, found, err := s.Load(ctx, "a", 0)
				if err != nil || !found || len(v) != len(benchRecord) {
					b.Fatalf("Load = %d bytes, %v, %v", len(v), found, err)
				}
			}
			if mode.near.MaxEntries > 0 {
				st := s.NearCacheStats()
				b.ReportMetric(float64(st.Hits-before.Hits)/float64(b.N), "hits/op")
			}
		})
	}
}

// BenchmarkNearCacheParallel measures Loads of 1,000 sessions by 64
// goroutines at once, as a loaded server makes them: without the
// near-cache (GET), from the near-cache, and in Strict mode, where
// concurrent Loads share each barrier round trip.
func BenchmarkNearCacheParallel(b *testing.B) {
	srv := redistest.Start(b)
	const sessions = 1000
	for i := range sessions {
		srv.Do(b, "SET", fmt.Sprint("session:", i), benchRecord, "PX", 3600_000)
	}
	for _, mode := range []struct {
		name string
		near NearCache
	}{
		{"load", NearCache{}},
		{"near", NearCache{MaxEntries: 10_000}},
		{"near-strict", NearCache{MaxEntries: 10_000, Strict: true}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			s, err := Open(Config{Addr: srv.Addr(), NearCache: mode.near})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if mode.near.MaxEntries > 0 {
				for i := range sessions {
					waitServing(b, s, fmt.Sprint(i))
				}
			}
			var next atomic.Int64
			b.SetParallelism(64 / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					id := fmt.Sprint(next.Add(1) % sessions)
					v, found, err := s.Load(ctx, id, 0)
					if err != nil || !found || len(v) != len(benchRecord) {
						b.Errorf("Load = %d bytes, %v, %v", len(v), found, err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkNearCacheRevocation measures, between two Stores on one Redis
// (two app instances), the time from a DEL by one to the first Load of the
// other that no longer finds the record, over -revocation.trials trials,
// idle and with every Go processor busy with other Loads. The other
// instance Loads every 20µs, as a server would on incoming requests, so
// the figures include its timer and scheduling delays. It reports p50, p99
// and max in microseconds from the DEL's acknowledgement (ack-) and from
// its sending (sent-), and how long after the acknowledgement the last
// Load that still found the record began (stale-, 0 when none did): the
// staleness Staleness bounds. It fails if that ever exceeds Staleness.
func BenchmarkNearCacheRevocation(b *testing.B) {
	srv := redistest.Start(b)
	for _, mode := range []struct {
		name string
		load bool
	}{{"idle", false}, {"busy", true}} {
		b.Run(mode.name, func(b *testing.B) {
			near := NearCache{MaxEntries: 10_000, Staleness: DefaultNearCacheStaleness}
			a, err := Open(Config{Addr: srv.Addr()})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			other, err := Open(Config{Addr: srv.Addr(), NearCache: near})
			if err != nil {
				b.Fatal(err)
			}
			defer other.Close()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			if mode.load {
				busy(b, srv, other, stop, &wg)
			}
			fromAck := make([]time.Duration, 0, *revocationTrials)
			fromSent := make([]time.Duration, 0, *revocationTrials)
			stale := make([]time.Duration, 0, *revocationTrials)
			b.ResetTimer()
			for i := range *revocationTrials {
				id := fmt.Sprint("r", i)
				if _, err := a.Insert(context.Background(), id, benchRecord, time.Hour); err != nil {
					b.Fatal(err)
				}
				waitServing(b, other, id)
				sent, acked, refused, lastFound := revoke(b, a, other, id, near.Staleness)
				fromAck = append(fromAck, refused.Sub(acked))
				fromSent = append(fromSent, refused.Sub(sent))
				stale = append(stale, max(lastFound.Sub(acked), 0))
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
			report := func(prefix string, lat []time.Duration) {
				slices.Sort(lat)
				us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
				b.ReportMetric(us(lat[len(lat)/2]), prefix+"p50-µs")
				b.ReportMetric(us(lat[len(lat)*99/100]), prefix+"p99-µs")
				b.ReportMetric(us(lat[len(lat)-1]), prefix+"max-µs")
			}
			report("ack-", fromAck)
			report("sent-", fromSent)
			report("stale-", stale)
			b.ReportMetric(float64(len(fromAck)), "trials")
			b.ReportMetric(float64(other.NearCacheStats().LeaseExpiries), "lease-expiries")
		})
	}
}

// revocationTrials is the number of revocations BenchmarkNearCacheRevocation
// measures in each mode.
var revocationTrials = flag.Int("revocation.trials", 2000, "revocations `n` measured by BenchmarkNearCacheRevocation, per mode")

// revoke deletes id through a and Loads it through other every 20µs until
// other no longer finds it. It returns when the DEL was sent and
// acknowledged, when the first Load that found nothing returned, and when
// the last Load that found the record began (sent, if none did).
func revoke(b *testing.B, a, other *Store, id string, staleness time.Duration) (sent, acked, refused, lastFound time.Time) {
	ctx := context.Background()
	sent = time.Now()
	if err := a.Remove(ctx, id); err != nil {
		b.Fatal(err)
	}
	acked = time.Now()
	lastFound = sent
	for {
		start := time.Now()
		_, found, err := other.Load(ctx, id, 0)
		if err != nil {
			b.Fatal(err)
		}
		if !found {
			return sent, acked, time.Now(), lastFound
		}
		lastFound = start
		if start.Sub(acked) > staleness {
			b.Fatalf("Load %v after the DEL was acknowledged still found the record (Staleness %v)", start.Sub(acked), staleness)
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// busy keeps every Go processor busy until stop is closed: goroutines that
// Load sessions of s (served from memory, with a miss now and then), two
// per processor.
func busy(b *testing.B, srv *redistest.Server, s *Store, stop chan struct{}, wg *sync.WaitGroup) {
	const sessions = 100
	for i := range sessions {
		srv.Do(b, "SET", fmt.Sprint("session:busy", i), benchRecord, "PX", 3600_000)
	}
	for g := range 2 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := s.Load(ctx, fmt.Sprint("busy", i%sessions), 0); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
}

// waitServing loads id until s holds it in memory and may serve it.
func waitServing(tb testing.TB, s *Store, id string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, found, err := s.Load(context.Background(), id, 0); err != nil || !found {
			tb.Fatalf("Load = %v, %v, want the record", found, err)
		}
		if s.near.get(id, 0, s.near.clock()) != nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("never served from memory: %+v", s.NearCacheStats())
		}
		time.Sleep(100 * time.Microsecond)
	}
}
