package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/syncbuf"
)

// loginAPI logs alice in through POST /api/login and returns the
// Authorization header pair for her token and her session id.
func (e *e2e) loginAPI(c *http.Client) (bearer []string, id string) {
	e.t.Helper()
	r := e.send(c, "POST", "/api/login", `{"username":"alice","password":"wonderland"}`)
	if r.code != http.StatusOK {
		e.t.Fatalf("POST /api/login = %d %s, want 200", r.code, r.body)
	}
	login := e.json(r)
	token, _ := login["token"].(string)
	id, _ = login["session_id"].(string)
	if token == "" || id == "" {
		e.t.Fatalf("login answer %s lacks token or session_id", r.body)
	}
	return []string{"Authorization", "Bearer " + token}, id
}

// TestNearCacheFromEnv runs the example as `make run` wires it with
// REDIS_NEAR_CACHE_MAX_ENTRIES on a real redis-server: its reads are
// served from memory (the store's hits grow, GET /metrics shows them and
// the connection), a session deleted in Redis by another client is
// refused within the bound, and its own logout at once.
func TestNearCacheFromEnv(t *testing.T) {
	t.Setenv("REDIS_NEAR_CACHE_MAX_ENTRIES", "1000")
	e := startExample(t)
	store := e.app.store
	waitFor(t, 10*time.Second, "the near-cache's connection", func() bool { return store.NearCacheStats().Connected })
	api := &http.Client{Timeout: 10 * time.Second}

	me := func(bearer []string) int {
		t.Helper()
		return e.send(api, "GET", "/api/me", "", bearer...).code
	}
	bearer, id := e.loginAPI(api)
	before := store.NearCacheStats().Hits
	for i := range 20 {
		if code := me(bearer); code != http.StatusOK {
			t.Fatalf("GET /api/me #%d = %d, want 200", i+1, code)
		}
	}
	if hits := store.NearCacheStats().Hits - before; hits == 0 {
		t.Errorf("20 reads of one session: no near-cache hit (%+v)", store.NearCacheStats())
	}
	m := e.scrape()
	if m["sessionkit_nearcache_hits_total"] < 1 || m["sessionkit_nearcache_connected"] != 1 {
		t.Errorf("GET /metrics: sessionkit_nearcache_hits_total %v, sessionkit_nearcache_connected %v; want at least 1 and 1",
			m["sessionkit_nearcache_hits_total"], m["sessionkit_nearcache_connected"])
	}

	// Another instance's logout, as Redis sees it: the record deleted by
	// another client.
	e.redis.Do(t, "DEL", "session:"+id)
	waitFor(t, 10*time.Second, "GET /api/me to refuse a session deleted in Redis", func() bool { return me(bearer) == http.StatusUnauthorized })

	bearer, _ = e.loginAPI(api)
	if code := me(bearer); code != http.StatusOK {
		t.Fatalf("GET /api/me after a new login = %d, want 200", code)
	}
	if r := e.send(api, "POST", "/api/logout", "", bearer...); r.code != http.StatusNoContent {
		t.Fatalf("POST /api/logout = %d, want 204", r.code)
	}
	if code := me(bearer); code != http.StatusUnauthorized {
		t.Errorf("GET /api/me right after this instance's logout = %d, want 401", code)
	}
}

// TestEmbeddedWaitReplicasZero starts the example on its embedded Redis
// with REDIS_WAIT_REPLICAS=0, the default: nothing to warn of.
func TestEmbeddedWaitReplicasZero(t *testing.T) {
	for _, name := range redisServerVars {
		t.Setenv(name, "")
	}
	t.Setenv("SESSION_KEYS", testKeys())
	t.Setenv("REDIS_WAIT_REPLICAS", "0")
	var log syncbuf.Buffer
	a, err := setup(slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	a.close()
	if strings.Contains(log.String(), "REDIS_WAIT_REPLICAS is set") {
		t.Errorf("REDIS_WAIT_REPLICAS=0 on the embedded Redis was warned of:\n%s", log.String())
	}
}

// TestNearCacheEmbedded runs the example on its embedded Redis
// (miniredis, which has no CLIENT TRACKING) with the near-cache on: it
// says so in its log, works as without it, and every read goes to Redis.
// REDIS_WAIT_REPLICAS, set too, is logged as without effect.
func TestNearCacheEmbedded(t *testing.T) {
	for _, name := range []string{"REDIS_URL", "REDIS_HOST", "REDIS_SENTINELS", "REDIS_CLUSTER_NODES"} {
		t.Setenv(name, "")
	}
	t.Setenv("SESSION_KEYS", testKeys())
	t.Setenv("REDIS_NEAR_CACHE_MAX_ENTRIES", "1000")
	t.Setenv("REDIS_WAIT_REPLICAS", "1")
	var log syncbuf.Buffer
	a, err := setup(slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	srv := httptest.NewServer(a.handler)
	t.Cleanup(srv.Close)
	e := &e2e{t: t, url: srv.URL, app: a}
	if !strings.Contains(log.String(), "no CLIENT TRACKING") || !strings.Contains(log.String(), "near_cache_max_entries=1000") {
		t.Errorf("start-up log does not say the near-cache is on without CLIENT TRACKING:\n%s", log.String())
	}
	// REDIS_WAIT_REPLICAS does not apply to the embedded Redis either.
	if !strings.Contains(log.String(), "REDIS_WAIT_REPLICAS is set, but the embedded Redis has no replicas") || !strings.Contains(log.String(), "wait_replicas=0") {
		t.Errorf("start-up log does not say that REDIS_WAIT_REPLICAS has no effect on the embedded Redis:\n%s", log.String())
	}

	api := &http.Client{Timeout: 10 * time.Second}
	bearer, _ := e.loginAPI(api)
	for i := range 5 {
		if r := e.send(api, "GET", "/api/me", "", bearer...); r.code != http.StatusOK || e.json(r)["user_id"] != "alice" {
			t.Fatalf("GET /api/me #%d = %d %s, want 200 for alice", i+1, r.code, r.body)
		}
	}
	if r := e.send(api, "POST", "/api/logout", "", bearer...); r.code != http.StatusNoContent {
		t.Fatalf("POST /api/logout = %d, want 204", r.code)
	}
	if r := e.send(api, "GET", "/api/me", "", bearer...); r.code != http.StatusUnauthorized {
		t.Errorf("GET /api/me after logout = %d, want 401", r.code)
	}
	st := a.store.NearCacheStats()
	if st.Connected || st.Hits != 0 || st.Misses < 6 {
		t.Errorf("near-cache on miniredis: %+v, want disconnected, no hits, every read a miss", st)
	}
	if m := e.scrape(); m["sessionkit_nearcache_connected"] != 0 || m["sessionkit_nearcache_misses_total"] < 6 {
		t.Errorf("GET /metrics: sessionkit_nearcache_connected %v, misses %v; want 0 and at least 6",
			m["sessionkit_nearcache_connected"], m["sessionkit_nearcache_misses_total"])
	}
}

// TestNearCacheRefusedOnCluster checks that the example refuses to start
// with the near-cache on a Redis Cluster, naming the variable, before it
// connects to anything.
func TestNearCacheRefusedOnCluster(t *testing.T) {
	t.Setenv("REDIS_CLUSTER_NODES", "127.0.0.1:1")
	t.Setenv("SESSION_KEYS", testKeys())
	t.Setenv("REDIS_NEAR_CACHE_MAX_ENTRIES", "1000")
	_, err := setup(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "REDIS_NEAR_CACHE_MAX_ENTRIES") || !strings.Contains(err.Error(), "Cluster") {
		t.Fatalf("setup with the near-cache on a Cluster = %v, want an error naming REDIS_NEAR_CACHE_MAX_ENTRIES and the Cluster", err)
	}
}

// TestTagKeyRequiredOnCluster checks that the example refuses to start on
// a Redis Cluster with SESSION_KEYS but no SESSION_TAG_KEY, naming the
// variable, before it connects to anything: a TagKey made from the signing
// keys would change at their rotation, and log out everywhere would then
// miss the sessions made before.
func TestTagKeyRequiredOnCluster(t *testing.T) {
	t.Setenv("REDIS_CLUSTER_NODES", "127.0.0.1:1")
	t.Setenv("SESSION_KEYS", testKeys())
	_, err := setup(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "SESSION_TAG_KEY: required on a Redis Cluster") {
		t.Fatalf("setup on a Cluster without SESSION_TAG_KEY = %v, want an error naming SESSION_TAG_KEY", err)
	}
}

// TestNearCacheTimeoutNotToldAsElsewhere browses with the near-cache on,
// then stays idle until the session times out in Redis, which the
// near-cache may make happen up to min(ExtendEvery, IdleTimeout/4) before
// the idle timeout: the next page must not say "You were signed out from
// another device.", so the signed-in marker ends that much earlier too.
func TestNearCacheTimeoutNotToldAsElsewhere(t *testing.T) {
	t.Setenv("REDIS_NEAR_CACHE_MAX_ENTRIES", "1000")
	t.Setenv("SESSION_IDLE_TIMEOUT", "4s")
	e := startExample(t)
	waitFor(t, 10*time.Second, "near-cache connection", func() bool { return e.app.store.NearCacheStats().Connected })
	laptop := noRedirects()
	e.formLogin(laptop, "alice", "wonderland", firefoxWindows)
	id := ""
	if ids, _, err := e.app.store.UserSessions(t.Context(), "alice"); err == nil && len(ids) == 1 {
		id = ids[0]
	}
	// Browse for a while: pages every 300ms for 2.5s.
	start := time.Now()
	var last time.Time
	for time.Since(start) < 2500*time.Millisecond {
		r := e.send(laptop, "GET", "/", "", as(firefoxWindows)...)
		if r.code != http.StatusOK {
			t.Fatalf("GET / = %d", r.code)
		}
		last = time.Now()
		if p, _ := e.redis.Do(t, "PTTL", "session:"+id).(int64); time.Since(start) > time.Second && p < 3300 {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Wait until the key has timed out in Redis, then click once more while
	// the marker (4s from the last page) still lives.
	waitFor(t, 5*time.Second, "the session to time out", func() bool {
		n, _ := e.redis.Do(t, "EXISTS", "session:"+id).(int64)
		return n == 0
	})
	since := time.Since(last)
	r := e.send(laptop, "GET", "/", "", as(firefoxWindows)...)
	if since < 4*time.Second && strings.Contains(r.body, noticeEndedElsewhere) {
		t.Errorf("a session that timed out after %v idle is told %q", since, noticeEndedElsewhere)
	}
}
