package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
)

// testStaleness is the NearCache.Staleness of these tests.
const testStaleness = 20 * time.Millisecond

// otherSource is a Source that is not a *redis.Pool, so that the
// near-cache of a Store that New makes on it dials Config.Addr (a proxy, a
// fake, another server) while the Store's calls go through the pool.
type otherSource struct{ *redis.Pool }

// openNear returns a Store on srv with a near-cache, closed at cleanup, once
// its invalidation connection holds a lease.
func openNear(t *testing.T, srv *redistest.Server, near NearCache) *Store {
	t.Helper()
	if near.MaxEntries == 0 {
		near.MaxEntries = 100
	}
	if near.Staleness == 0 {
		near.Staleness = testStaleness
	}
	s, err := Open(Config{Addr: srv.Addr(), NearCache: near})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	waitLease(t, s)
	return s
}

// waitLease waits until the near-cache of s is connected and may serve.
func waitLease(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.NearCacheStats().Connected || s.near.clock() >= s.near.lease.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("near-cache not serving after 10s: %+v", s.NearCacheStats())
		}
		time.Sleep(time.Millisecond)
	}
}

// waitReconnected waits until the near-cache of s has replaced its
// invalidation connection, whose CLIENT ID was old, after what, and the
// new one holds a lease.
func waitReconnected(t *testing.T, s *Store, old int64, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for id := s.near.track.clientID(); id == old || id == 0; id = s.near.track.clientID() {
		if time.Now().After(deadline) {
			t.Fatalf("no new invalidation connection 10s after %s", what)
		}
		time.Sleep(time.Millisecond)
	}
	waitLease(t, s)
}

// warm loads id until the near-cache serves it, and returns the record.
func warm(t *testing.T, s *Store, id string) []byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := s.NearCacheStats().Hits
		b, found, err := s.Load(context.Background(), id, 0)
		if err != nil || !found {
			t.Fatalf("Load(%s) = %q, %v, %v, want the record", id, b, found, err)
		}
		if s.NearCacheStats().Hits > before {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("Load(%s) never served from memory: %+v", id, s.NearCacheStats())
		}
		time.Sleep(time.Millisecond)
	}
}

// expectGone checks that every Load of id that begins more than staleness
// after changed reports no record, for a while; Loads before may still see
// the old one. It fails if the old record is seen too late.
func expectGone(t *testing.T, s *Store, id string, changed time.Time, staleness time.Duration) {
	t.Helper()
	after := 0
	for after < 50 {
		start := time.Now()
		b, found, err := s.Load(context.Background(), id, 0)
		if start.Sub(changed) > staleness {
			if found {
				t.Fatalf("Load(%s) %v after the change = %q, want no record (stale beyond %v); stats %+v",
					id, start.Sub(changed), b, staleness, s.NearCacheStats())
			}
			if err == nil {
				after++
			}
		}
		if time.Since(changed) > 20*time.Second {
			t.Fatalf("no successful Load 20s after the change: last error %v", err)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func set(t *testing.T, srv *redistest.Server, id, value string) {
	t.Helper()
	srv.Do(t, "SET", "session:"+id, value, "PX", 600000)
}

func TestNearCacheHitCostsNoCommand(t *testing.T) {
	srv := redistest.Start(t)
	s := openNear(t, srv, NearCache{})
	set(t, srv, "a", "v1")
	if b := warm(t, s, "a"); string(b) != "v1" {
		t.Fatalf("Load = %q, want v1", b)
	}
	srv.ResetStats(t)
	before := s.NearCacheStats()
	const n = 100
	for range n {
		b, found, err := s.Load(context.Background(), "a", 0)
		if err != nil || !found || string(b) != "v1" {
			t.Fatalf("Load = %q, %v, %v, want v1", b, found, err)
		}
		b[0] = 'X' // the caller's copy: the next Load must not see it
	}
	after := s.NearCacheStats()
	hits := after.Hits - before.Hits
	calls := srv.Calls(t)
	if hits < n/2 {
		t.Errorf("%d of %d Loads served from memory, want most (stats %+v)", hits, n, after)
	}
	if got := calls["get"]; got != n-hits {
		t.Errorf("%d GETs for %d Loads with %d hits, want %d", got, n, hits, n-hits)
	}
}

func TestNearCacheSeesChanges(t *testing.T) {
	srv := redistest.Start(t)
	s := openNear(t, srv, NearCache{})
	tests := []struct {
		name   string
		change func(key string)
		want   string // "" for no record
	}{
		{"DEL", func(key string) { srv.Do(t, "DEL", key) }, ""},
		{"SET", func(key string) { srv.Do(t, "SET", key, "v2", "PX", 600000) }, "v2"},
		{"PEXPIRE to the past", func(key string) { srv.Do(t, "PEXPIRE", key, 1) }, ""},
		{"UNLINK", func(key string) { srv.Do(t, "UNLINK", key) }, ""},
		{"FLUSHALL", func(string) { srv.Do(t, "FLUSHALL") }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := strings.ReplaceAll(tc.name, " ", "-")
			set(t, srv, id, "v1")
			warm(t, s, id)
			tc.change("session:" + id)
			changed := time.Now()
			if tc.want == "" {
				expectGone(t, s, id, changed, testStaleness)
				return
			}
			time.Sleep(testStaleness)
			for range 20 {
				b, _, err := s.Load(context.Background(), id, 0)
				if err != nil || string(b) != tc.want {
					t.Fatalf("Load %v after %s = %q, %v, want %q", time.Since(changed), tc.name, b, err, tc.want)
				}
			}
		})
	}
}

// TestNearCacheInsertRace changes the key between a fill's read and its
// insert, once the invalidation has been applied: the fill must not keep
// what it read.
func TestNearCacheInsertRace(t *testing.T) {
	srv := redistest.Start(t)
	s := openNear(t, srv, NearCache{})
	set(t, srv, "a", "v1")
	raced := false
	s.near.afterRead = func(id string) {
		if raced {
			return
		}
		raced = true
		srv.Do(t, "DEL", "session:"+id)
		deadline := time.Now().Add(10 * time.Second)
		for { // until the invalidation has spoiled this fill
			s.near.mu.Lock()
			gen := s.near.pending[id].gen
			s.near.mu.Unlock()
			if gen > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("no invalidation of the fill within 10s")
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	b, found, err := s.Load(context.Background(), "a", 0)
	if err != nil || !found || string(b) != "v1" {
		t.Fatalf("first Load = %q, %v, %v, want v1 (read before the DEL)", b, found, err)
	}
	if !raced {
		t.Fatal("the fill never ran")
	}
	for range 10 {
		b, found, err := s.Load(context.Background(), "a", 0)
		if err != nil || found {
			t.Fatalf("Load after the DEL = %q, %v, %v, want no record", b, found, err)
		}
	}
}

func TestNearCacheConnectionKilled(t *testing.T) {
	srv := redistest.Start(t)
	s := openNear(t, srv, NearCache{})
	for round := range 3 {
		id := fmt.Sprint("k", round)
		set(t, srv, id, "v1")
		warm(t, s, id)
		old := s.near.track.clientID()
		srv.Do(t, "CLIENT", "KILL", "ID", old)
		srv.Do(t, "DEL", "session:"+id)
		expectGone(t, s, id, time.Now(), testStaleness)
		waitLease(t, s)
		if got := s.near.track.clientID(); got == old || got == 0 {
			t.Fatalf("round %d: CLIENT ID after the kill = %d, want a new one (was %d)", round, got, old)
		}
		// The new connection reports changes as the first did.
		set(t, srv, id, "v2")
		warm(t, s, id)
		srv.Do(t, "DEL", "session:"+id)
		expectGone(t, s, id, time.Now(), testStaleness)
	}
	if st := s.NearCacheStats(); st.Flushes < 3 {
		t.Errorf("Flushes = %d after 3 kills, want at least 3", st.Flushes)
	}
}

func TestNearCacheRedisRestarted(t *testing.T) {
	srv := redistest.Start(t)
	s := openNear(t, srv, NearCache{})
	set(t, srv, "a", "v1")
	warm(t, s, "a")
	srv.Restart(t) // without persistence: every key is gone
	expectGone(t, s, "a", time.Now(), testStaleness)
	waitLease(t, s)
	set(t, srv, "a", "v2")
	if b := warm(t, s, "a"); string(b) != "v2" {
		t.Fatalf("Load after the restart = %q, want v2", b)
	}
	srv.Do(t, "DEL", "session:a")
	expectGone(t, s, "a", time.Now(), testStaleness)
}

// openNearProxied returns a Store on srv with a near-cache of the given
// Staleness whose Loads go to srv directly but whose invalidation
// connection goes through the returned proxy, once it holds a lease and
// memory holds the record "a" (v1). The Store is closed at cleanup.
func openNearProxied(t *testing.T, srv *redistest.Server, staleness time.Duration) (*Store, *redistest.Proxy) {
	t.Helper()
	proxy := srv.Proxy(t)
	pool, err := NewPool(Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Addr: proxy.Addr(), NearCache: NearCache{MaxEntries: 10, Staleness: staleness}}
	s, err := New(otherSource{pool}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	waitLease(t, s)
	set(t, srv, "a", "v1")
	warm(t, s, "a")
	return s, proxy
}

// TestNearCacheSilentPartition stalls the invalidation connection (through
// a proxy) while the pooled connections still reach Redis: the lease must
// stop the near-cache in time.
func TestNearCacheSilentPartition(t *testing.T) {
	srv := redistest.Start(t)
	s, proxy := openNearProxied(t, srv, testStaleness)
	expiries := s.NearCacheStats().LeaseExpiries

	proxy.Stall()
	srv.Do(t, "DEL", "session:a")
	expectGone(t, s, "a", time.Now(), testStaleness)

	// The lease ran out, and then ReadTimeout ended the connection.
	deadline := time.Now().Add(20 * time.Second)
	for s.NearCacheStats().Connected && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	proxy.Heal()
	waitLease(t, s)
	set(t, srv, "a", "v2")
	if b := warm(t, s, "a"); string(b) != "v2" {
		t.Fatalf("Load after healing = %q, want v2", b)
	}
	st := s.NearCacheStats()
	if st.Flushes == 0 || st.LeaseExpiries <= expiries {
		t.Errorf("stats %+v: want a lease expiry and a flush after the partition", st)
	}
}

// TestNearCacheFarRedis slows the invalidation connection (through a
// proxy) until its PINGs take longer than half of Staleness to come back,
// as with Redis in another zone: a barrier, which needs the answer to a
// PING sent after the Load began, while another is nearly always in
// flight, could then hardly ever end in time. A Load of a record held in
// memory must read Redis at once rather than wait Staleness for it, and
// the lease expiries keep counting, so that the metric shows it. Round
// trips of twice Staleness (far) and of about three quarters of it (near
// the edge, where a barrier that waited would time out, too) both.
func TestNearCacheFarRedis(t *testing.T) {
	const staleness = 80 * time.Millisecond
	for name, delay := range map[string]time.Duration{"far": staleness, "edge": staleness * 3 / 8} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			s, proxy := openNearProxied(t, srv, staleness)
			proxy.Slow(delay) // each way
			deadline := time.Now().Add(10 * time.Second)
			for !s.near.slow() {
				if time.Now().After(deadline) {
					t.Fatalf("not slow with PINGs delayed %v each way; stats %+v", delay, s.NearCacheStats())
				}
				time.Sleep(5 * time.Millisecond)
			}
			expiries := s.NearCacheStats().LeaseExpiries
			// A Load that waited for a barrier would take Staleness,
			// or the most of it: the fastest of a few shows whether
			// any did.
			fastest := time.Hour
			for range 5 {
				start := time.Now()
				b, found, err := s.Load(context.Background(), "a", 0)
				fastest = min(fastest, time.Since(start))
				if err != nil || !found || string(b) != "v1" {
					t.Fatalf("Load(a) = %q, %v, %v; want v1", b, found, err)
				}
			}
			if fastest >= staleness/4 {
				t.Errorf("the fastest of 5 Loads took %v with PINGs delayed %v each way: a barrier held them", fastest, delay)
			}
			time.Sleep(5 * staleness) // a few more PINGs
			if st := s.NearCacheStats(); st.LeaseExpiries <= expiries || !st.Connected {
				t.Errorf("stats %+v with PINGs delayed %v each way: want lease expiries beyond %d, and still connected", st, delay, expiries)
			}
			// Never staler for it: a record written on Redis is what a
			// Load that begins Staleness later returns, round after
			// round, at jittered times (the PINGs' answers, and so the
			// leases, fall anywhere between).
			want := "v1"
			for i := range 60 {
				want = fmt.Sprintf("v%d", i+2)
				set(t, srv, "a", want)
				time.Sleep(staleness + time.Duration(rand.IntN(10))*time.Millisecond)
				if b, _, err := s.Load(context.Background(), "a", 0); err != nil || string(b) != want {
					t.Fatalf("round %d: Load(a) %v after its record was written = %q, %v; want %s", i, staleness, b, err, want)
				}
			}

			proxy.Heal()
			deadline = time.Now().Add(10 * time.Second)
			for s.near.slow() {
				if time.Now().After(deadline) {
					t.Fatalf("still slow 10 s after the connection healed; stats %+v", s.NearCacheStats())
				}
				time.Sleep(5 * time.Millisecond)
			}
			if b := warm(t, s, "a"); string(b) != want {
				t.Errorf("Load(a) from memory after healing = %q, want %s", b, want)
			}
		})
	}
}

// TestNearCacheEntryDeadline keeps Redis from reporting the key's expiry
// (active expiry off): the entry's own deadline must end it.
func TestNearCacheEntryDeadline(t *testing.T) {
	srv := redistest.Start(t, "--enable-debug-command", "local")
	srv.Do(t, "DEBUG", "SET-ACTIVE-EXPIRE", 0)
	s := openNear(t, srv, NearCache{})
	srv.Do(t, "SET", "session:a", "v1", "PX", 300)
	warm(t, s, "a")
	expired := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(expired.Add(100 * time.Millisecond)) {
		start := time.Now()
		_, found, err := s.Load(context.Background(), "a", 0)
		if err != nil {
			t.Fatal(err)
		}
		if found && start.After(expired) {
			t.Fatalf("Load %v after the key's expiry found it", start.Sub(expired))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestNearCacheIdleExtension: with a ttl, hits leave the key's time to live
// alone until it has fallen ExtendEvery below ttl; then a Load extends it.
func TestNearCacheIdleExtension(t *testing.T) {
	srv := redistest.Start(t)
	const ttl, every = 10 * time.Second, 500 * time.Millisecond
	s := openNear(t, srv, NearCache{ExtendEvery: every})
	srv.Do(t, "SET", "session:a", "v1", "PX", ttl.Milliseconds())
	ctx := context.Background()
	srv.ResetStats(t)
	start := time.Now()
	for time.Since(start) < 3*every {
		loadStart := time.Now()
		if _, found, err := s.Load(ctx, "a", ttl); err != nil || !found {
			t.Fatalf("Load = %v, %v", found, err)
		}
		// Never less than ttl - every left after a Load (1s margin for the
		// PTTL's own round trip on a busy machine).
		left, err := redis.Int64(srv.Do(t, "PTTL", "session:a"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if min := ttl - every - time.Second - time.Since(loadStart); time.Duration(left)*time.Millisecond < min {
			t.Fatalf("PTTL after a Load = %dms, want at least %v", left, min)
		}
		time.Sleep(5 * time.Millisecond)
	}
	calls := srv.Calls(t)
	st := s.NearCacheStats()
	if calls["getex"] == 0 || calls["getex"] > 8 {
		t.Errorf("GETEX sent %d times in %v with ExtendEvery %v, want 1 to 8", calls["getex"], 3*every, every)
	}
	if st.Hits < 10 {
		t.Errorf("Hits = %d, want most Loads (stats %+v)", st.Hits, st)
	}
}

// TestNearCacheLongerIdleWindow: a record whose time to live is longer
// than the idle timeout a Load asks for (written by an instance with a
// longer one, before a deployment lowered it, or beside it) gets a GETEX
// that cuts it down, as a Store without the cache does, whether memory
// holds it already or not; memory then serves it again. Served from
// memory without one, the session would outlive the lower idle timeout by
// up to the longer one.
func TestNearCacheLongerIdleWindow(t *testing.T) {
	srv := redistest.Start(t)
	s := openNear(t, srv, NearCache{})
	ctx := context.Background()
	const long, short = time.Hour, 4 * time.Second
	for _, held := range []bool{false, true} {
		srv.Do(t, "SET", "session:w", "v1", "PX", long.Milliseconds())
		if held {
			// Memory holds it, filled by a Load with the longer timeout.
			for range 2 {
				if _, found, err := s.Load(ctx, "w", long); err != nil || !found {
					t.Fatalf("Load = %v, %v", found, err)
				}
			}
		}
		srv.ResetStats(t)
		for i := range 3 {
			if _, found, err := s.Load(ctx, "w", short); err != nil || !found {
				t.Fatalf("Load = %v, %v", found, err)
			}
			left, err := redis.Int64(srv.Do(t, "PTTL", "session:w"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if left <= 0 || left > short.Milliseconds() {
				t.Fatalf("held %v: PTTL after Load %d with ttl %v = %dms, want at most the idle timeout", held, i, short, left)
			}
		}
		if n := srv.Calls(t)["getex"]; n != 1 {
			t.Errorf("held %v: GETEX sent %d times in 3 Loads, want 1: the first cuts the window, memory serves the rest", held, n)
		}
	}
}

// TestNearCacheKeyWithoutExpiry: a record without a time to live (an
// outside writer's, a PERSIST) is never kept, and a Load with a ttl gives
// it one, as a Store without the cache does: its idle timeout holds.
func TestNearCacheKeyWithoutExpiry(t *testing.T) {
	srv := redistest.Start(t)
	s := openNear(t, srv, NearCache{})
	srv.Do(t, "SET", "session:p", "v1")
	const ttl = 4 * time.Second
	for range 5 {
		if b, found, err := s.Load(context.Background(), "p", ttl); err != nil || !found || string(b) != "v1" {
			t.Fatalf("Load = %q, %v, %v, want v1", b, found, err)
		}
		left, err := redis.Int64(srv.Do(t, "PTTL", "session:p"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if left <= 0 || left > ttl.Milliseconds() {
			t.Fatalf("PTTL after a Load with ttl %v = %dms, want the idle timeout", ttl, left)
		}
		srv.Do(t, "PERSIST", "session:p")
	}
	if st := s.NearCacheStats(); st.Hits != 0 {
		t.Errorf("Hits = %d, want 0: a record without expiry is never kept", st.Hits)
	}
}

func TestNearCacheEvicts(t *testing.T) {
	srv := redistest.Start(t)
	s := openNear(t, srv, NearCache{MaxEntries: 2})
	for _, id := range []string{"a", "b", "c"} {
		set(t, srv, id, "v-"+id)
		warm(t, s, id)
	}
	st := s.NearCacheStats()
	if st.Entries != 2 || st.Evictions < 1 {
		t.Errorf("stats %+v, want 2 entries and an eviction", st)
	}
	// "a" was the least recently used: it is a miss now.
	before := s.NearCacheStats().Misses
	if b, _, _ := s.Load(context.Background(), "a", 0); string(b) != "v-a" {
		t.Fatalf("Load(a) = %q", b)
	}
	if s.NearCacheStats().Misses != before+1 {
		t.Errorf("Load of the evicted entry was not a miss")
	}
}

// TestNearCacheStrict: with Strict, a Load that begins after a change was
// acknowledged never sees the old record, with no wait in between.
func TestNearCacheStrict(t *testing.T) {
	srv := redistest.Start(t)
	s := openNear(t, srv, NearCache{Strict: true})
	conn, err := redis.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hits := 0
	for i := range 300 {
		id := fmt.Sprint("s", i%10)
		if _, err := conn.Do("SET", "session:"+id, "v1", "PX", 600000); err != nil {
			t.Fatal(err)
		}
		warm(t, s, id)
		hits++
		if _, err := conn.Do("DEL", "session:"+id); err != nil {
			t.Fatal(err)
		}
		b, found, err := s.Load(context.Background(), id, 0)
		if err != nil || found {
			t.Fatalf("trial %d: Load right after DEL = %q, %v, %v, want no record", i, b, found, err)
		}
	}
	if hits == 0 {
		t.Fatal("no hits")
	}
}

func TestNearCacheConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // in the error; "" for none
	}{
		{"off", Config{}, ""},
		{"on", Config{NearCache: NearCache{MaxEntries: 1}}, ""},
		{"negative entries", Config{NearCache: NearCache{MaxEntries: -1}}, "NearCache.MaxEntries"},
		{"negative staleness", Config{NearCache: NearCache{MaxEntries: 1, Staleness: -1}}, "NearCache.Staleness"},
		{"tiny staleness", Config{NearCache: NearCache{MaxEntries: 1, Staleness: time.Millisecond}}, "NearCache.Staleness"},
		{"negative extend", Config{NearCache: NearCache{MaxEntries: 1, ExtendEvery: -1}}, "NearCache.ExtendEvery"},
		{"cluster", Config{ClusterNodes: []string{"127.0.0.1:1"}, NearCache: NearCache{MaxEntries: 1}}, "Redis Cluster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.normalize()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("normalize() = %v, want no error", err)
				}
				if got.NearCache.MaxEntries > 0 && (got.NearCache.Staleness != DefaultNearCacheStaleness || got.NearCache.ExtendEvery != DefaultNearCacheExtendEvery) {
					t.Errorf("defaults = %+v", got.NearCache)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("normalize() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

// TestNearCacheUnavailable: a Store whose invalidation connection cannot
// connect serves every Load from Redis.
func TestNearCacheUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	pool, err := NewPool(Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	proxy := srv.Proxy(t)
	proxy.Drop()
	s, err := New(otherSource{pool}, Config{Addr: proxy.Addr(), NearCache: NearCache{MaxEntries: 10}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	set(t, srv, "a", "v1")
	for range 20 {
		b, found, err := s.Load(context.Background(), "a", 0)
		if err != nil || !found || !bytes.Equal(b, []byte("v1")) {
			t.Fatalf("Load = %q, %v, %v", b, found, err)
		}
	}
	if st := s.NearCacheStats(); st.Hits != 0 || st.Connected {
		t.Errorf("stats %+v, want no hits and not connected", st)
	}
	srv.Do(t, "DEL", "session:a")
	if _, found, err := s.Load(context.Background(), "a", 0); found || err != nil {
		t.Fatalf("Load after DEL = %v, %v", found, err)
	}
}

// TestNearCacheSentinel fails the master over: the invalidation connection
// must follow the Store to the new master, and a change made there right
// after the failover must be seen within Staleness.
func TestNearCacheSentinel(t *testing.T) {
	sn := startSentinel(t)
	cfg := sentinelConfig(sn)
	cfg.NearCache = NearCache{MaxEntries: 100, Staleness: testStaleness}
	s := openSentinel(t, cfg)
	waitLease(t, s)
	sn.Master(t).Do(t, "SET", "session:a", "v1", "PX", 600000)
	warm(t, s, "a")
	oldID := s.near.track.clientID()

	sn.Failover(t)
	newMaster := sn.Master(t)
	newMaster.Do(t, "DEL", "session:a")
	expectGone(t, s, "a", time.Now(), testStaleness)

	// The connection moved: a new client on the new master.
	deadline := time.Now().Add(20 * time.Second)
	for !tracked(t, newMaster) {
		if time.Now().After(deadline) {
			t.Fatalf("no tracking connection on the new master 20s after the failover (client id was %d, now %d)", oldID, s.near.track.clientID())
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitLease(t, s)
	newMaster.Do(t, "SET", "session:b", "v1", "PX", 600000)
	warm(t, s, "b")
	newMaster.Do(t, "DEL", "session:b")
	expectGone(t, s, "b", time.Now(), testStaleness)

	// The Store's Source learns of another master while the connection's
	// server keeps it open (here a made-up one, which the sentinels
	// correct within a second): the connection is dropped and redialled.
	flushes, id := s.NearCacheStats().Flushes, s.near.track.clientID()
	sentinelOf(s).setMaster("127.0.0.1:1")
	deadline = time.Now().Add(20 * time.Second)
	for s.near.track.clientID() == id || s.near.track.clientID() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("invalidation connection still client %d 20s after the master changed", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.NearCacheStats().Flushes; got == flushes {
		t.Errorf("Flushes = %d after the master changed, want more", got)
	}
}

// tracked reports whether srv has a client in broadcast tracking mode.
func tracked(t *testing.T, srv *redistest.Server) bool {
	list, err := redis.String(srv.Do(t, "CLIENT", "LIST", "TYPE", "pubsub"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(list, "\n") {
		for _, f := range strings.Fields(line) {
			if flags, ok := strings.CutPrefix(f, "flags="); ok && strings.Contains(flags, "t") && strings.Contains(flags, "P") {
				return true
			}
		}
	}
	return false
}

// TestNearCacheOwnWrites: a Store's own writes are seen by its next Load at
// once, without waiting for Redis's report of them.
func TestNearCacheOwnWrites(t *testing.T) {
	srv := redistest.Start(t)
	s := openNear(t, srv, NearCache{})
	ctx := context.Background()
	for i := range 100 {
		id := fmt.Sprint("w", i%5)
		want := fmt.Sprint("v", i)
		if _, err := s.Insert(ctx, id, []byte("first"), time.Minute); err != nil {
			t.Fatal(err)
		}
		warm(t, s, id)
		if ok, err := s.Update(ctx, id, []byte(want), time.Minute); err != nil || !ok {
			t.Fatalf("Update = %v, %v", ok, err)
		}
		if b, _, err := s.Load(ctx, id, 0); err != nil || string(b) != want {
			t.Fatalf("trial %d: Load right after Update = %q, %v, want %q", i, b, err, want)
		}
		warm(t, s, id)
		if _, err := s.RemoveUserSession(ctx, "", id); err != nil {
			t.Fatal(err)
		}
		if b, found, err := s.Load(ctx, id, 0); err != nil || found {
			t.Fatalf("trial %d: Load right after RemoveUserSession = %q, %v, %v, want no record", i, b, found, err)
		}
	}
}

// TestNearCacheLongStaleness: with a Staleness far above 4 x ReadTimeout,
// the PINGs still come often enough that a healthy connection never runs
// into ReadTimeout, which would drop, flush and redial it.
func TestNearCacheLongStaleness(t *testing.T) {
	srv := redistest.Start(t)
	const readTimeout = time.Second
	s, err := Open(Config{Addr: srv.Addr(), ReadTimeout: readTimeout, NearCache: NearCache{MaxEntries: 10, Staleness: 8 * readTimeout}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	waitLease(t, s)
	id := s.near.track.clientID()
	for start := time.Now(); time.Since(start) < 5*readTimeout/2; time.Sleep(10 * time.Millisecond) {
		if got := s.near.track.clientID(); got != id {
			t.Fatalf("invalidation connection %v after it connected = client %d, want still %d (stats %+v)", time.Since(start), got, id, s.NearCacheStats())
		}
	}
}

// TestNearCacheFlushCount: Flushes counts one per loss of a subscribed
// invalidation connection and one per FLUSHDB reported, and nothing for
// the first subscription of a new Store.
func TestNearCacheFlushCount(t *testing.T) {
	srv := redistest.Start(t)
	s := openNear(t, srv, NearCache{})
	flushesAfter := func(what string, want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for s.NearCacheStats().Flushes < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := s.NearCacheStats().Flushes; got != want {
			t.Fatalf("Flushes after %s = %d, want %d", what, got, want)
		}
	}
	flushesAfter("connecting", 0)

	old := s.near.track.clientID()
	srv.Do(t, "CLIENT", "KILL", "ID", old)
	waitReconnected(t, s, old, "the kill")
	flushesAfter("a connection lost and replaced", 1)

	srv.Do(t, "FLUSHDB")
	flushesAfter("a FLUSHDB", 2)
}

// TestNearCacheStrayMessage: a PUBLISH to the invalidation channel by
// another client, which Redis's tracking never sends, empties the cache,
// which connects again and goes on serving and hearing of changes; a
// Warn line says so, once per interval however many such messages come.
func TestNearCacheStrayMessage(t *testing.T) {
	srv := redistest.Start(t)
	logs := new(syncbuf.Buffer)
	s, err := Open(Config{Addr: srv.Addr(), Logger: slog.New(slog.NewTextHandler(logs, nil)),
		NearCache: NearCache{MaxEntries: 100, Staleness: testStaleness}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	waitLease(t, s)
	set(t, srv, "k", "v1")
	warm(t, s, "k")
	for i, msg := range []string{"session:k", "", "garbage"} {
		old := s.near.track.clientID()
		srv.Do(t, "PUBLISH", invalidateChannel, msg)
		waitReconnected(t, s, old, fmt.Sprintf("PUBLISH %q", msg))
		if got := s.NearCacheStats().Flushes; got != int64(i+1) {
			t.Errorf("Flushes after %d PUBLISHes = %d, want %d", i+1, got, i+1)
		}
	}
	if n := strings.Count(logs.String(), "unexpected message on its invalidation connection"); n != 1 {
		t.Errorf("%d lines of the unexpected messages, want 1 (per interval):\n%s", n, logs)
	}
	if strings.Contains(logs.String(), "session:k") {
		t.Errorf("the log quotes the message:\n%s", logs)
	}
	// The new connection reports changes as the first did.
	if b := warm(t, s, "k"); string(b) != "v1" {
		t.Errorf("Load(k) = %q, want v1", b)
	}
	srv.Do(t, "DEL", "session:k")
	expectGone(t, s, "k", time.Now(), testStaleness)
}

// TestNearCacheNewOtherServer: New with a near-cache on a Source that is
// not a *redis.Pool requires Addr (whose default, 127.0.0.1:6379, may be
// another server than the Source's), and a near-cache whose Addr reaches
// another server than the Source's stays disconnected: it would hear of
// none of the Source's changes.
func TestNearCacheNewOtherServer(t *testing.T) {
	srv, other := redistest.Start(t), redistest.Start(t)
	pool, err := NewPool(Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	src := otherSource{pool}
	near := NearCache{MaxEntries: 10}
	if s, err := New(src, Config{NearCache: near}); err == nil || !strings.Contains(err.Error(), "Config.Addr") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("New(Source, Config without Addr, with NearCache) = %v, want an error naming Config.Addr", err)
	}

	stats, err := redis.Dial("tcp", other.Addr()) // not a new connection per look
	if err != nil {
		t.Fatal(err)
	}
	defer stats.Close()
	before := connectionsReceived(t, stats)
	s, err := New(src, Config{Addr: other.Addr(), NearCache: near})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Wait until the near-cache has connected, or has dialled other a
	// second time, which it does only once the first connection failed.
	deadline := time.Now().Add(10 * time.Second)
	for !s.NearCacheStats().Connected && connectionsReceived(t, stats) < before+2 {
		if time.Now().After(deadline) {
			t.Fatal("near-cache neither connected nor retried within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	if st := s.NearCacheStats(); st.Connected {
		t.Fatalf("near-cache with Addr on another server than the pool's: stats %+v, want not connected", st)
	}
}

// TestNearCacheCloseAfterNew: a Store with a near-cache on a Source that
// is not a *redis.Pool, closed within 1.5 ms of New, while its near-cache
// borrows from the Source to check the server, neither panics nor races:
// redigo's Pool.Close races with a GetContext that waits for a free
// connection (and panics, sending on the pool's closed channel, when that
// GetContext's context ends as the pool closes), so Close lets the borrow
// get past that wait first.
func TestNearCacheCloseAfterNew(t *testing.T) {
	srv := redistest.Start(t)
	for range 300 {
		pool, err := NewPool(Config{Addr: srv.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(otherSource{pool}, Config{Addr: srv.Addr(), NearCache: NearCache{MaxEntries: 10}})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
		s.Close()
	}
}

// connectionsReceived returns the total_connections_received of INFO stats
// on conn.
func connectionsReceived(t *testing.T, conn redis.Conn) int {
	t.Helper()
	info, err := redis.String(conn.Do("INFO", "stats"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_connections_received:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no total_connections_received in INFO stats")
	return 0
}

// TestNearCacheExtensionGoesStraightToGETEX: a Load whose entry is held
// but due for extension sends GETEX alone, without first reading the record
// and its time to live again (GET and PTTL) only to find it due.
func TestNearCacheExtensionGoesStraightToGETEX(t *testing.T) {
	srv := redistest.Start(t)
	s := openNear(t, srv, NearCache{})
	set(t, srv, "a", "v1") // 10 minutes to live
	warm(t, s, "a")        // ttl 0: held without extending
	srv.ResetStats(t)
	const ttl = 20 * time.Minute // the entry is due: far more than ttl/4 below ttl
	if b, found, err := s.Load(context.Background(), "a", ttl); err != nil || !found || string(b) != "v1" {
		t.Fatalf("Load = %q, %v, %v, want v1", b, found, err)
	}
	calls := srv.Calls(t)
	if calls["getex"] != 1 || calls["get"] != 0 || calls["pttl"] != 0 {
		t.Errorf("Load of an entry due for extension sent GETEX %d, GET %d, PTTL %d times; want GETEX once and nothing else", calls["getex"], calls["get"], calls["pttl"])
	}
}

// TestNearCacheLoadTTLCountsTheWait checks that a Load that misses, reads
// the record for the cache, finds its idle window due and extends it with
// a second round trip gives it what is left of the time to live asked at
// the call, not all of it from that second round trip (see
// TestTTLCountsTheWait), here after the read waited 700 ms on a paused
// Redis.
func TestNearCacheLoadTTLCountsTheWait(t *testing.T) {
	srv := redistest.Start(t)
	s, err := Open(Config{Addr: srv.Addr(), Timeout: 3 * time.Second, NearCache: NearCache{MaxEntries: 100}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Insert(ctx, "near1", []byte("rec"), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	// Live first: before, a Load reads Redis without the cache, in one
	// GETEX, which a paused Redis holds whole.
	for deadline := time.Now().Add(5 * time.Second); !s.NearCacheStats().Connected; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the near-cache did not connect")
		}
	}
	const ttl = 5 * time.Second
	srv.Pause(t)
	start := time.Now()
	done := make(chan error)
	go func() {
		_, _, err := s.Load(ctx, "near1", ttl)
		done <- err
	}()
	time.Sleep(700 * time.Millisecond)
	srv.Resume(t)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ms, err := redis.Int64(srv.Do(t, "PTTL", "session:near1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	left := time.Duration(ms) * time.Millisecond
	if over := left - (ttl - time.Since(start)); over > 50*time.Millisecond {
		t.Errorf("PTTL after the Load = %v: %v more than the ttl counted from the call", left, over)
	}
}

// closeCounter is a redis.Conn that counts its Closes.
type closeCounter struct {
	redis.Conn
	closed *atomic.Int32
}

func (c closeCounter) Close() error {
	c.closed.Add(1)
	return nil
}

// TestDetachedCall: a call whose function does not return gives up at the
// end of its context; the next call waits for that function, rather than
// start another, and gives up likewise; the connection the function
// returns at last is closed, and the call after that runs the function
// again and returns its connection.
func TestDetachedCall(t *testing.T) {
	var d detachedCall
	var runs, closed atomic.Int32
	release := make(chan struct{})
	f := func() (redis.Conn, error) {
		runs.Add(1)
		<-release
		return closeCounter{closed: &closed}, nil
	}
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		c, err := d.call(ctx, f)
		cancel()
		if c != nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d = %v, %v, want no connection and the deadline", i, c, err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("the function ran %d times while the first run hung, want 1", n)
	}
	close(release)
	for deadline := time.Now().Add(5 * time.Second); closed.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the connection returned after its caller gave up is not closed")
		}
	}
	c, err := d.call(context.Background(), f)
	if err != nil || c == nil {
		t.Fatalf("call after the release = %v, %v, want a connection", c, err)
	}
	if runs.Load() != 2 || closed.Load() != 1 {
		t.Errorf("runs %d, closes %d, want 2 and 1 (the caller's connection stays open)", runs.Load(), closed.Load())
	}
}

// setMaster records the master's address, named by no sentinel in
// particular.
func (s *sentinelSource) setMaster(addr string) {
	s.setMasterNamedBy(addr, "")
}

// clientID returns the CLIENT ID of the tracker's current connection, 0
// when there is none.
func (t *tracker) clientID() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.id
}
