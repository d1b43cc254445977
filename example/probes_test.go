package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// probe sends GET path with the client's cookies and checks the answer is
// code with the JSON body want, and sets no cookie.
func (e *e2e) probe(c *http.Client, path string, code int, want map[string]any, hdr ...string) {
	e.t.Helper()
	r := e.send(c, "GET", path, "", hdr...)
	if got := e.json(r); r.code != code || !maps.Equal(got, want) {
		e.t.Errorf("GET %s = %d %s, want %d %v", path, r.code, r.body, code, want)
	}
	if sc := r.header.Values("Set-Cookie"); len(sc) > 0 {
		e.t.Errorf("GET %s set cookies %q, want none", path, sc)
	}
}

var (
	probeOK    = map[string]any{"status": "ok"}
	healthDown = map[string]any{"status": "unavailable"}
	notReady   = func(check string) map[string]any { return map[string]any{"status": "unavailable", "check": check} }
)

// pingCalls are the commands Store.Ping sends one server.
var pingCalls = map[string]int64{"ping": 1, "getex": 1, "exists": 1,
	"get": 1, "set": 1, "del": 1, "mget": 1, "scan": 1, "zadd": 1, "zrange": 1, "zrem": 1, "zremrangebyscore": 1,
	"pexpireat": 2, "watch": 1, "unwatch": 1, "multi": 1, "exec": 1, "discard": 1}

// TestProbesNeedNoSession sends the probes with a live session's cookie and
// token and a cross-site header: no session is loaded (/livez sends Redis
// nothing, /readyz and /healthz Store.Ping's PING, GETEX, EXISTS and
// permission checks, on keys that are no session's or user's, which find
// nothing), no cookie is set, and a
// method other than GET is refused.
func TestProbesNeedNoSession(t *testing.T) {
	e := startExample(t)
	c := noRedirects()
	if r := e.send(c, "POST", "/login", "username=alice&password=wonderland"); r.code != http.StatusSeeOther {
		t.Fatalf("POST /login = %d", r.code)
	}
	token, _ := e.apiLogin("alice", "wonderland")
	hdr := []string{"Authorization", "Bearer " + token, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}
	for _, tc := range []struct {
		path  string
		calls map[string]int64
	}{
		{"/livez", map[string]int64{}},
		{"/readyz", pingCalls},
		{"/healthz", pingCalls},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			e.redis.ResetStats(t)
			e.probe(c, tc.path, http.StatusOK, probeOK, hdr...)
			if got := e.redis.Calls(t); !maps.Equal(got, tc.calls) {
				t.Errorf("GET %s sent Redis %v, want %v", tc.path, got, tc.calls)
			}
			// A session loaded would be a keyspace hit.
			if info, _ := redis.String(e.redis.Do(t, "INFO", "stats"), nil); !strings.Contains(info, "keyspace_hits:0\r\n") {
				t.Errorf("GET %s read a key that exists: INFO stats %q, want keyspace_hits:0", tc.path, info)
			}
			if r := e.send(c, "POST", tc.path, ""); r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("POST %s = %d Allow %q, want 405 Allow GET, HEAD", tc.path, r.code, r.header.Get("Allow"))
			}
			if r := e.send(c, "HEAD", tc.path, ""); r.code != http.StatusOK {
				t.Errorf("HEAD %s = %d, want 200", tc.path, r.code)
			}
		})
	}
}

// TestLivezWithoutRedis takes Redis away (killed, or frozen with SIGSTOP,
// where anything that sent Redis a command would wait for its timeout):
// /livez still answers 200 at once, while /readyz and /healthz answer 503.
func TestLivezWithoutRedis(t *testing.T) {
	for _, tc := range []struct {
		name   string
		outage func(*redistest.Server, testing.TB)
	}{
		{"stopped", (*redistest.Server).Stop},
		{"paused", (*redistest.Server).Pause},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startExample(t)
			c := noRedirects()
			tc.outage(e.redis, t)
			start := time.Now()
			e.probe(c, "/livez", http.StatusOK, probeOK, "Cookie", "session=whatever")
			if d := time.Since(start); d >= readyTimeout {
				t.Errorf("GET /livez with Redis %s took %v, want an immediate answer", tc.name, d)
			}
			e.probe(c, "/readyz", http.StatusServiceUnavailable, notReady(checkRedis))
			e.probe(c, "/healthz", http.StatusServiceUnavailable, healthDown)
		})
	}
}

// TestProbesReadOnlyReplica points the example at a read-only replica,
// which refuses every login and every read of a session (GETEX is a write
// command): /readyz and /healthz answer 503, not 200, /livez 200, and the
// log says why once.
func TestProbesReadOnlyReplica(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	var logs syncbuf.Buffer
	e := startExampleLogging(t, replica, testKeys(), &logs)
	c := noRedirects()
	for range 2 {
		e.probe(c, "/readyz", http.StatusServiceUnavailable, notReady(checkRedis))
		e.probe(c, "/healthz", http.StatusServiceUnavailable, healthDown)
	}
	e.probe(c, "/livez", http.StatusOK, probeOK)
	if r := e.send(c, "POST", "/api/login", `{"username":"alice","password":"wonderland"}`); r.code != http.StatusServiceUnavailable {
		t.Errorf("POST /api/login on a replica = %d, want 503 (what the probes foretell)", r.code)
	}
	out := logs.String()
	if n := strings.Count(out, "example: not ready"); n != 1 || !strings.Contains(out, "read-only replica") {
		t.Errorf("2 failed probes logged %d not-ready lines, want 1 naming the read-only replica:\n%s", n, out)
	}
	if strings.Contains(out, "does not answer") {
		t.Errorf("the log says Redis does not answer, where it answers as a replica:\n%s", out)
	}
}

// TestProbesLogCauseChange has Redis fail the probes for one cause, then
// for another (stopped: connections refused; then back, but frozen: the
// probe's deadline runs out): each probe logs the new cause once, so that
// an operator does not read the first cause for as long as the probes
// fail, also after it has changed (a Redis that came up refusing the
// app's password, logged as not running).
func TestProbesLogCauseChange(t *testing.T) {
	var logs syncbuf.Buffer
	e := startExampleLogging(t, redistest.Start(t), testKeys(), &logs)
	c := noRedirects()
	e.probe(c, "/readyz", http.StatusOK, probeOK)
	e.redis.Stop(t)
	for range 2 {
		e.probe(c, "/readyz", http.StatusServiceUnavailable, notReady(checkRedis))
		e.send(c, "GET", "/healthz", "")
	}
	e.redis.Restart(t)
	e.redis.Pause(t)
	for range 2 {
		e.probe(c, "/readyz", http.StatusServiceUnavailable, notReady(checkRedis))
		e.send(c, "GET", "/healthz", "")
	}
	e.redis.Resume(t)
	out := logs.String()
	for _, line := range []string{"example: not ready", "example: health check: Redis unavailable"} {
		var causes []string
		for l := range strings.Lines(out) {
			if strings.Contains(l, line) {
				_, cause, _ := strings.Cut(l, "cause=")
				causes = append(causes, cause)
			}
		}
		if len(causes) != 2 || causes[0] == causes[1] {
			t.Errorf("%q logged for two causes, twice each: %d lines, want 2 with different causes:\n%s", line, len(causes), out)
		}
	}
}

// TestReadyzRedisOutage takes Redis away (killed, or frozen with SIGSTOP):
// /readyz answers 503 check=redis within its deadline, /livez 200, and
// /readyz 200 again as soon as Redis is back. The changes of readiness are
// logged once each, and so are those of /healthz; a frozen Redis's cause
// names /readyz's own deadline, not the store's Timeout.
func TestReadyzRedisOutage(t *testing.T) {
	for _, tc := range []struct {
		name          string
		outage, after func(*redistest.Server, testing.TB)
	}{
		{"stopped", (*redistest.Server).Stop, (*redistest.Server).Restart},
		{"paused", (*redistest.Server).Pause, (*redistest.Server).Resume},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			e := startExampleLogging(t, redistest.Start(t), testKeys(), &logs)
			c := noRedirects()
			e.probe(c, "/readyz", http.StatusOK, probeOK)

			tc.outage(e.redis, t)
			for range 3 {
				start := time.Now()
				e.probe(c, "/readyz", http.StatusServiceUnavailable, notReady(checkRedis))
				if d := time.Since(start); d > readyTimeout+time.Second {
					t.Errorf("GET /readyz with Redis %s took %v, want about %v", tc.name, d, readyTimeout)
				}
			}
			e.probe(c, "/livez", http.StatusOK, probeOK)
			for range 2 {
				if r := e.send(c, "GET", "/healthz", ""); r.code != http.StatusServiceUnavailable {
					t.Errorf("GET /healthz with Redis %s = %d, want 503", tc.name, r.code)
				}
			}

			tc.after(e.redis, t)
			e.probe(c, "/readyz", http.StatusOK, probeOK)
			e.probe(c, "/readyz", http.StatusOK, probeOK)
			for range 2 {
				if r := e.send(c, "GET", "/healthz", ""); r.code != http.StatusOK {
					t.Errorf("GET /healthz with Redis back = %d, want 200", r.code)
				}
			}

			out := logs.String()
			if n := strings.Count(out, "example: not ready"); n != 1 {
				t.Errorf("3 failed probes logged %d not-ready lines, want 1:\n%s", n, out)
			}
			if n := strings.Count(out, "example: ready: Redis answers"); n != 1 {
				t.Errorf("recovery logged %d ready lines, want 1:\n%s", n, out)
			}
			if n := strings.Count(out, "example: health check: Redis unavailable"); n != 1 {
				t.Errorf("2 failed health checks logged %d lines, want 1:\n%s", n, out)
			}
			if n := strings.Count(out, "example: health check: Redis answers again"); n != 1 {
				t.Errorf("the health check's recovery logged %d lines, want 1:\n%s", n, out)
			}
			// Frozen, Redis lets /readyz's own deadline run out, shorter
			// than the store's Timeout: the cause names that deadline.
			_, notReadyLine, _ := strings.Cut(out, "example: not ready")
			notReadyLine, _, _ = strings.Cut(notReadyLine, "\n")
			if tc.name == "paused" && (!strings.Contains(notReadyLine, "within the probe's deadline of 500ms") || strings.Contains(notReadyLine, "(Config.Timeout)")) {
				t.Errorf("the not-ready log does not name /readyz's deadline of %v:\n%s", readyTimeout, out)
			}
		})
	}
}

// TestReadyzPoolExhausted holds the only connection of a one-connection
// pool with a login whose write Redis keeps waiting (CLIENT PAUSE WRITE;
// Redis still answers PING on other connections): /readyz answers 503
// check=pool within its deadline, and 200 again once the login is done.
func TestReadyzPoolExhausted(t *testing.T) {
	r := redistest.Start(t)
	a, err := newApp(slog.New(slog.NewTextHandler(io.Discard, nil)),
		redisstore.Config{Addr: r.Addr(), MaxActive: 1, Timeout: 10 * time.Second},
		session.Config{Keys: [][]byte{randomKey()}, InsecureCookie: true}, loginConfig{key: randomKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	srv := httptest.NewServer(a.handler)
	t.Cleanup(srv.Close)
	e := &e2e{t: t, redis: r, url: srv.URL}
	c := noRedirects()
	e.probe(c, "/readyz", http.StatusOK, probeOK)

	r.Do(t, "CLIENT", "PAUSE", "20000", "WRITE")
	login := make(chan int, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/api/login", "application/json", strings.NewReader(`{"username":"alice","password":"wonderland"}`))
		if err != nil {
			login <- 0
			return
		}
		resp.Body.Close()
		login <- resp.StatusCode
	}()
	waitFor(t, 20*time.Second, "the login to hold the pool's only connection", func() bool { return a.store.PoolStats().Exhausted() })

	start := time.Now()
	e.probe(c, "/readyz", http.StatusServiceUnavailable, notReady(checkPool))
	if d := time.Since(start); d > readyTimeout+time.Second {
		t.Errorf("GET /readyz with the pool exhausted took %v, want about %v", d, readyTimeout)
	}
	if pong, err := redis.String(r.Do(t, "PING"), nil); pong != "PONG" {
		t.Fatalf("Redis PING on a new connection = %q, %v: want PONG, the pool alone exhausted", pong, err)
	}
	e.probe(c, "/livez", http.StatusOK, probeOK)

	r.Do(t, "CLIENT", "UNPAUSE")
	if code := <-login; code != http.StatusOK {
		t.Errorf("the login that held the connection = %d, want 200", code)
	}
	e.probe(c, "/readyz", http.StatusOK, probeOK)
}

// startExampleLogging is startExampleWith logging to w.
func startExampleLogging(t *testing.T, r *redistest.Server, keys string, w io.Writer) *e2e {
	t.Helper()
	t.Setenv("REDIS_URL", "redis://"+r.Addr())
	t.Setenv("SESSION_KEYS", keys)
	a, err := setup(slog.New(slog.NewTextHandler(w, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return serveApp(t, r, a)
}

// waitFor polls cond every 10ms until it holds, failing t after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testKeys returns a SESSION_KEYS value: one random key.
func testKeys() string {
	return base64.StdEncoding.EncodeToString(randomKey())
}

// randomKey returns 32 random bytes.
func randomKey() []byte {
	key := make([]byte, 32)
	rand.Read(key) // never fails
	return key
}

// TestProbesShared sends a hundred /readyz and a hundred /healthz probes
// at once while Redis holds every client's commands (CLIENT PAUSE): they
// wait for one Ping each route and share its outcome, rather than each
// send a Ping of its own, a pooled connection and a dozen commands that
// anyone who reaches the port could multiply.
func TestProbesShared(t *testing.T) {
	e := startExample(t)
	c := noRedirects()
	e.probe(c, "/readyz", http.StatusOK, probeOK)
	e.probe(c, "/healthz", http.StatusOK, probeOK)
	e.redis.ResetStats(t)
	e.redis.Do(t, "CLIENT", "PAUSE", "300", "ALL")
	const probes = 100
	codes := make(chan int, 2*probes)
	var wg sync.WaitGroup
	for range probes {
		for _, path := range []string{"/readyz", "/healthz"} {
			wg.Go(func() {
				resp, err := c.Get(e.url + path)
				if err != nil {
					codes <- 0
					return
				}
				resp.Body.Close()
				codes <- resp.StatusCode
			})
		}
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != http.StatusOK {
			t.Errorf("a probe while Redis paused for 300 ms = %d, want 200", code)
		}
	}
	// One Ping each route, but a probe that came only after its Ping
	// ended starts another: on a machine so busy that the probes' sending
	// outlasts the pause, a few more. A Ping a probe is 200.
	if n := e.redis.Calls(t)["ping"]; n < 2 || n > 2*probes/10 {
		t.Errorf("%d probes sent Redis %d PINGs, want one or two each route, and at most one in ten probes on a busy machine", 2*probes, n)
	}
}

// TestProbesStopAtClose leaves /readyz's and /healthz's checks running on
// a paused Redis, their clients gone, and closes the app: it waits for the
// checks (a command in flight ends within its deadline), and they log
// nothing about Redis, such as Redis unavailable once the store has
// closed.
func TestProbesStopAtClose(t *testing.T) {
	var logs syncbuf.Buffer
	r := redistest.Start(t)
	t.Setenv("REDIS_URL", "redis://"+r.Addr())
	t.Setenv("SESSION_KEYS", testKeys())
	a, err := setup(slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r.Do(t, "CLIENT", "PAUSE", "1500", "ALL")
	for _, path := range []string{"/readyz", "/healthz"} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		a.handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequestWithContext(ctx, "GET", path, nil))
		cancel()
	}
	start := time.Now()
	a.close()
	if d := time.Since(start); d > healthTimeout+time.Second {
		t.Errorf("close took %v with the probes' checks waiting on a paused Redis, want %v at most", d, healthTimeout)
	}
	closed := len(logs.String())
	time.Sleep(1500 * time.Millisecond) // past both checks' deadlines
	if after := logs.String()[closed:]; strings.Contains(after, "ready") || strings.Contains(after, "health check") {
		t.Errorf("the probes' checks logged after close:\n%s", after)
	}
	rec := httptest.NewRecorder()
	a.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), checkShutdown) {
		t.Errorf("GET /readyz after close = %d %s, want 503 naming %q", rec.Code, rec.Body, checkShutdown)
	}
}

// TestProbeClientGone sends /readyz and /healthz probes whose client has
// gone (the context cancelled) to a healthy example: their failed PINGs
// say nothing of Redis, so nothing is logged and readiness does not flip.
func TestProbeClientGone(t *testing.T) {
	var logs syncbuf.Buffer
	e := startExampleLogging(t, redistest.Start(t), testKeys(), &logs)
	for range 3 {
		for _, path := range []string{"/readyz", "/healthz"} {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			e.app.handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequestWithContext(ctx, "GET", path, nil))
		}
	}
	e.probe(noRedirects(), "/readyz", http.StatusOK, probeOK)
	for _, line := range []string{"not ready", "health check", "ready: Redis answers"} {
		if out := logs.String(); strings.Contains(out, line) {
			t.Errorf("probes of clients gone logged %q:\n%s", line, out)
		}
	}
}
