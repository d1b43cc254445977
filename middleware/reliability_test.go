package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// TestNoLostUpdates runs requests that each put a different value into the
// same session, all loaded before any of them saves: every value survives.
func TestNoLostUpdates(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	h.login(c, "alice")
	const writers = 8
	var loaded sync.WaitGroup
	loaded.Add(writers)
	start := make(chan struct{})
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		loaded.Done()
		<-start // every request has read the record before any writes it
		key := r.URL.Query().Get("k")
		if err := session.Put(r.Context(), key, key); err != nil {
			t.Error(err)
		}
	}
	var done sync.WaitGroup
	for i := range writers {
		done.Add(1)
		go func() {
			defer done.Done()
			if got := h.do(c, "POST", fmt.Sprintf("/hook?k=k%d", i), nil).code; got != 200 {
				t.Errorf("writer %d: %d", i, got)
			}
		}()
	}
	loaded.Wait()
	close(start)
	done.Wait()
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		for i := range writers {
			if v, ok := session.Get[string](r.Context(), fmt.Sprintf("k%d", i)); !ok || v != fmt.Sprintf("k%d", i) {
				t.Errorf("value k%d = %q, %v: lost", i, v, ok)
			}
		}
	}
	h.do(c, "POST", "/hook", nil)
}

// TestEndingIsFinal repeats, 1,000 times for each way a token ends, a
// request that loads a session and writes it slowly while another request
// ends it: the ended token never works again.
func TestEndingIsFinal(t *testing.T) {
	const rounds = 1000
	ends := map[string]func(h *harness, c *http.Client, id string){
		"logout": func(h *harness, c *http.Client, id string) { h.do(c, "POST", "/logout", nil) },
		"revoke": func(h *harness, c *http.Client, id string) {
			if err := h.m.Revoke(context.Background(), "alice", id); err != nil {
				h.t.Error(err)
			}
		},
		"renew": func(h *harness, c *http.Client, id string) { h.do(c, "POST", "/renew", nil) },
	}
	for name, end := range ends {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			for i := range rounds {
				c := h.client()
				id, token := h.login(c, "alice")
				bearer := map[string]string{"Authorization": "Bearer " + token}
				loaded, release := make(chan struct{}), make(chan struct{})
				h.hooked = func(w http.ResponseWriter, r *http.Request) {
					close(loaded)
					<-release
					session.Put(r.Context(), "late", i)
				}
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					h.do(&http.Client{}, "POST", "/hook", bearer) // the slow writer holds the old token
				}()
				<-loaded
				end(h, c, id)
				close(release)
				wg.Wait()
				if h.exists(id) {
					t.Fatalf("round %d: the ended session's record is back", i)
				}
				if got := h.do(&http.Client{}, "GET", "/me", bearer).code; got != http.StatusUnauthorized {
					t.Fatalf("round %d: the ended token: GET /me = %d, want 401", i, got)
				}
			}
		})
	}
}

// TestRestartUnderTraffic restarts Redis, with AOF, while clients keep
// requesting: requests during the outage may get 503, never 401 (nobody is
// logged out), and once Redis is back every request succeeds.
func TestRestartUnderTraffic(t *testing.T) {
	r := redistest.Start(t, redistest.AppendOnly("everysec")...)
	h := newHarness(t, harnessOpts{redis: r})
	const clients = 8
	cs := make([]*http.Client, clients)
	for i := range cs {
		cs[i] = h.client()
		h.login(cs[i], fmt.Sprintf("user%d", i))
	}
	waitAOF(t, r)

	var phase atomic.Int32 // 0 before the restart, 1 during, 2 after
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var after, failedAfter, unauthorized atomic.Int64
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 10_000; n++ { // bounded; stop ends it sooner
				select {
				case <-stop:
					return
				default:
				}
				p := phase.Load()
				resp, err := c.Get(h.srv.URL + "/me")
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusUnauthorized {
					unauthorized.Add(1)
				}
				if p == 2 {
					after.Add(1)
					if resp.StatusCode != 200 {
						failedAfter.Add(1)
					}
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond) // traffic before the restart
	phase.Store(1)
	r.Restart(t) // kill -9, then start on the same port from the AOF
	phase.Store(2)
	time.Sleep(300 * time.Millisecond) // traffic after it
	close(stop)
	wg.Wait()
	if after.Load() == 0 {
		t.Fatal("no request ran after the restart")
	}
	if n := failedAfter.Load(); n != 0 {
		t.Errorf("%d of %d requests failed after Redis was back", n, after.Load())
	}
	if n := unauthorized.Load(); n != 0 {
		t.Errorf("%d requests were answered 401: a restart logged users out", n)
	}
}

// waitAOF waits (bounded) until the AOF holds everything written so far.
func waitAOF(t *testing.T, r *redistest.Server) {
	t.Helper()
	r.Do(t, "BGREWRITEAOF")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, _ := redis.String(r.Do(t, "INFO", "persistence"), nil)
		if strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0") && strings.Contains(info, "aof_buffer_length:0") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("AOF not written within 5s:\n%s", info)
		}
	}
}

// TestStalledRedis pauses Redis (SIGSTOP) with the default store timeout:
// protected routes answer 503 with Retry-After within about a second, public
// routes answer as anonymous, nothing hangs, and all is well after Resume.
func TestStalledRedis(t *testing.T) {
	h := newHarness(t, harnessOpts{storeCfg: &redisstore.Config{}}) // defaults: 1s timeout
	c := h.client()
	h.login(c, "alice")
	h.redis.Pause(t)
	defer h.redis.Resume(t)

	var wg sync.WaitGroup
	for _, path := range []string{"/me", "/public", "/me", "/public"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			resp := h.do(c, "GET", path, nil)
			took := time.Since(start)
			switch {
			case path == "/me" && (resp.code != http.StatusServiceUnavailable || resp.header.Get("Retry-After") == ""):
				t.Errorf("GET /me with Redis stalled = %d, want 503 with Retry-After", resp.code)
			case path == "/public" && (resp.code != 200 || resp.body != "anonymous"):
				t.Errorf("GET /public with Redis stalled = %d %q, want 200 anonymous", resp.code, resp.body)
			}
			// The bound is the 1s default timeout plus slack for -race on a
			// loaded machine; what it rules out is a hang.
			if took > 4*time.Second {
				t.Errorf("GET %s with Redis stalled took %v", path, took)
			}
		}()
	}
	wg.Wait()
	h.redis.Resume(t)
	if got := h.do(c, "GET", "/me", nil); got.code != 200 || got.body != "alice" {
		t.Errorf("GET /me after Resume = %d %q, want 200 alice", got.code, got.body)
	}
}

// TestNetworkFaults puts a proxy between the store and Redis and drops,
// stalls and slows the connection.
func TestNetworkFaults(t *testing.T) {
	r := redistest.Start(t)
	proxy := r.Proxy(t)
	h := newHarness(t, harnessOpts{redis: r, storeCfg: &redisstore.Config{Addr: proxy.Addr()}})
	c := h.client()
	h.login(c, "alice")
	faults := []struct {
		name   string
		inject func()
	}{
		{"drop", proxy.Drop},
		{"stall", proxy.Stall},
		{"slow beyond the timeout", func() { proxy.Slow(1500 * time.Millisecond) }},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			f.inject()
			start := time.Now()
			resp := h.do(c, "GET", "/me", nil)
			if resp.code != http.StatusServiceUnavailable || resp.header.Get("Retry-After") == "" {
				t.Errorf("GET /me = %d, want 503 with Retry-After", resp.code)
			}
			if took := time.Since(start); took > 4*time.Second {
				t.Errorf("GET /me took %v; the store timeout is 1s", took)
			}
			if got := h.do(c, "GET", "/public", nil); got.code != 200 || got.body != "anonymous" {
				t.Errorf("GET /public = %d %q, want 200 anonymous", got.code, got.body)
			}
			proxy.Heal()
			if got := h.do(c, "GET", "/me", nil); got.code != 200 {
				t.Errorf("GET /me after healing = %d, want 200", got.code)
			}
		})
	}
}

// TestPoolExhaustion sends many concurrent requests through a pool of two
// connections to a slow Redis: every request ends, bounded by the timeout,
// as 200 or 503, and the pool serves normally once Redis is fast again.
func TestPoolExhaustion(t *testing.T) {
	r := redistest.Start(t)
	proxy := r.Proxy(t)
	pool, err := redisstore.NewPool(redisstore.Config{Addr: proxy.Addr(), MaxActive: 2, MaxIdle: 2})
	if err != nil {
		t.Fatal(err)
	}
	store, err := redisstore.New(pool, redisstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := newHarness(t, harnessOpts{redis: r, store: store})
	c := h.client()
	h.login(c, "alice")

	proxy.Slow(200 * time.Millisecond) // each command takes about 400ms: the pool of 2 serves ~5 a second
	const requests = 30
	var ok, unavailable atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch got := h.do(c, "GET", "/me", nil).code; got {
			case 200:
				ok.Add(1)
			case http.StatusServiceUnavailable:
				unavailable.Add(1)
			default:
				t.Errorf("GET /me = %d, want 200 or 503", got)
			}
		}()
	}
	wg.Wait()
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("%d requests through an exhausted pool took %v: waits are not bounded", requests, took)
	}
	if unavailable.Load() == 0 {
		t.Errorf("no request was turned away (200: %d): the pool never ran out", ok.Load())
	}
	proxy.Heal()
	for range 5 {
		if got := h.do(c, "GET", "/me", nil).code; got != 200 {
			t.Errorf("GET /me after the pool drained = %d, want 200", got)
		}
	}
	if s := pool.Stats(); s.ActiveCount > 2 || s.IdleCount > 2 {
		t.Errorf("pool after the burst: %+v, want at most 2 connections", s)
	}
}

// TestUnknownRecordVersion stores a record of a future schema version: it is
// no session, deleted, and never a 500.
func TestUnknownRecordVersion(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	id, _ := h.login(c, "alice")
	h.redis.Do(t, "SET", "session:"+id, `{"v":99,"user_id":"alice","created_at":"2026-01-01T00:00:00Z","expires_at":"2099-01-01T00:00:00Z"}`)
	if got := h.do(c, "GET", "/me", nil).code; got != http.StatusUnauthorized {
		t.Errorf("GET /me with a v99 record = %d, want 401", got)
	}
	if h.exists(id) {
		t.Error("the unreadable record was not deleted")
	}
}
