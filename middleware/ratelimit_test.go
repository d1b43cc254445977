package middleware_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// rateSecret is the limiters' HMAC key in these tests.
var rateSecret = []byte("test rate limit secret, 32 bytes")

// rateStore opens a Store on addr with a generous timeout (CI runs
// packages in parallel under -race), closed at cleanup: a rate limiter's
// counter, or a Manager's store.
func rateStore(t *testing.T, addr string, timeout time.Duration) *redisstore.Store {
	t.Helper()
	s, err := redisstore.Open(redisstore.Config{Addr: addr, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// okHandler answers 200 "ok" and reads the whole body, as a login would.
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	io.WriteString(w, "ok")
})

// limited builds the middleware with build around okHandler, failing the
// test on a configuration error.
func limited(t *testing.T, build func(middleware.RateCounter, middleware.RateLimitConfig) (func(http.Handler) http.Handler, error), c middleware.RateCounter, cfg middleware.RateLimitConfig) http.Handler {
	t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = rateSecret
	}
	mw, err := build(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return mw(okHandler)
}

// serve sends r to h and returns the recorded answer.
func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// rateKeys returns the keys in srv's database 0.
func rateKeys(t *testing.T, srv *redistest.Server) []string {
	t.Helper()
	keys, err := redis.Strings(srv.Do(t, "KEYS", "*"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestRateLimitHeaders sends Limit requests, which pass with the draft's
// headers counting down, then one more, which gets 429 with Retry-After
// and a JSON or HTML body by Accept, without reaching the handler.
func TestRateLimitHeaders(t *testing.T) {
	srv := redistest.Start(t)
	h := limited(t, middleware.RateLimit, rateStore(t, srv.Addr(), 2*time.Second), middleware.RateLimitConfig{
		Rules: []middleware.Rule{{Name: "api", Limit: 3, Window: time.Minute, Key: middleware.ByIP()}},
	})
	state := regexp.MustCompile(`^"api";r=(\d+);t=(\d+)$`)
	for i := range 3 {
		w := serve(h, httptest.NewRequest("GET", "/", nil))
		if w.Code != 200 || w.Body.String() != "ok" {
			t.Fatalf("request %d = %d %q, want 200 ok", i+1, w.Code, w.Body)
		}
		if got, want := w.Header().Get("RateLimit-Policy"), `"api";q=3;w=60`; got != want {
			t.Errorf("RateLimit-Policy = %q, want %q", got, want)
		}
		m := state.FindStringSubmatch(w.Header().Get("RateLimit"))
		if m == nil || m[1] != strconv.Itoa(2-i) {
			t.Errorf("request %d: RateLimit = %q, want r=%d", i+1, w.Header().Get("RateLimit"), 2-i)
		} else if s, _ := strconv.Atoi(m[2]); s < 1 || s > 60 {
			t.Errorf("request %d: RateLimit t=%d, want 1 to 60", i+1, s)
		}
		if w.Header().Get("Retry-After") != "" {
			t.Errorf("request %d within the limit has Retry-After %q", i+1, w.Header().Get("Retry-After"))
		}
	}
	for _, tc := range []struct {
		accept, contentType, body string
	}{
		{"application/json", "application/json", `"error":"too many requests"`},
		{"text/html,application/xhtml+xml", "text/html; charset=utf-8", "Please try again in"},
	} {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header.Set("Accept", tc.accept)
		w := serve(h, r)
		if w.Code != http.StatusTooManyRequests || w.Body.String() == "ok" {
			t.Fatalf("Accept %s over the limit = %d %q, want 429", tc.accept, w.Code, w.Body)
		}
		ra, err := strconv.Atoi(w.Header().Get("Retry-After"))
		if err != nil || ra < 1 || ra > 60 {
			t.Errorf("Retry-After = %q, want 1 to 60 seconds", w.Header().Get("Retry-After"))
		}
		if m := state.FindStringSubmatch(w.Header().Get("RateLimit")); m == nil || m[1] != "0" || m[2] != strconv.Itoa(ra) {
			t.Errorf("RateLimit = %q, want r=0 and t equal to Retry-After %d", w.Header().Get("RateLimit"), ra)
		}
		if ct := w.Header().Get("Content-Type"); ct != tc.contentType || !strings.Contains(w.Body.String(), tc.body) {
			t.Errorf("Accept %s: %s %q, want %s with %q", tc.accept, ct, w.Body, tc.contentType, tc.body)
		}
		if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("Accept %s: X-Content-Type-Options %q, want nosniff", tc.accept, got)
		}
		if tc.accept == "application/json" {
			var body struct {
				RetryAfter int `json:"retry_after"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.RetryAfter != ra {
				t.Errorf("JSON body %q: retry_after want %d (%v)", w.Body, ra, err)
			}
		}
	}
	// Another address has its own count.
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "198.51.100.7:4000"
	if w := serve(h, r); w.Code != 200 {
		t.Errorf("another address = %d, want 200", w.Code)
	}
}

// TestRateLimitOnLimited lets the application write the 429 itself, as the
// example's login page does, with the headers already set.
func TestRateLimitOnLimited(t *testing.T) {
	srv := redistest.Start(t)
	var gotRetry time.Duration
	h := limited(t, middleware.LoginLimit, rateStore(t, srv.Addr(), 2*time.Second), middleware.RateLimitConfig{
		Rules: []middleware.Rule{{Name: "login-user", Limit: 1, Window: 15 * time.Minute, Key: middleware.ByFormField("username")}},
		OnLimited: func(w http.ResponseWriter, r *http.Request, retry time.Duration) {
			gotRetry = retry
			if r.FormValue("username") != "Alice" {
				t.Errorf("OnLimited: username %q, want the body as sent", r.FormValue("username"))
			}
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, "try again later")
		},
	})
	post := func(user string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/login", strings.NewReader("username="+user+"&password=x"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return serve(h, r)
	}
	if w := post("Alice"); w.Code != 200 {
		t.Fatalf("first login = %d, want 200", w.Code)
	}
	w := post("Alice")
	if w.Code != http.StatusTooManyRequests || w.Body.String() != "try again later" || w.Header().Get("Retry-After") == "" {
		t.Errorf("second login = %d %q Retry-After %q, want the OnLimited 429 with Retry-After", w.Code, w.Body, w.Header().Get("Retry-After"))
	}
	if gotRetry <= 14*time.Minute || gotRetry > 15*time.Minute {
		t.Errorf("OnLimited retry = %v, want just under 15m", gotRetry)
	}
}

// TestRateLimitHookStatus: what OnLimited, OnTooLarge and OnUnavailable
// write goes out with 429, 413 and 503 unless they call WriteHeader with
// another status, also when they write nothing at all (a hook whose body
// is only a comment), write a body without WriteHeader, or flush first;
// the headers the limiter set before calling them stay.
func TestRateLimitHookStatus(t *testing.T) {
	up, down := redistest.Start(t), redistest.Start(t)
	upStore, downStore := rateStore(t, up.Addr(), 2*time.Second), rateStore(t, down.Addr(), 300*time.Millisecond)
	down.Stop(t)
	answers := []struct {
		name     string
		answer   func(w http.ResponseWriter)
		redirect bool // the answer's own status, 303
		body     string
	}{
		{"nothing", func(http.ResponseWriter) {}, false, ""},
		{"header only", func(w http.ResponseWriter) { w.Header().Set("Content-Type", "text/plain") }, false, ""},
		{"Write", func(w http.ResponseWriter) { w.Write([]byte("page")) }, false, "page"},
		{"WriteString", func(w http.ResponseWriter) { io.WriteString(w, "page") }, false, "page"},
		{"Flush", func(w http.ResponseWriter) {
			http.NewResponseController(w).Flush()
			io.WriteString(w, "page")
		}, false, "page"},
		{"redirect", func(w http.ResponseWriter) {
			w.Header().Set("Location", "/wait")
			w.WriteHeader(http.StatusSeeOther)
		}, true, ""},
	}
	hooks := []struct {
		name string
		code int
		// config returns a counter and a config with answer as the
		// hook, and how many requests reach it: the last one does.
		config func(name string, answer func(w http.ResponseWriter)) (middleware.RateCounter, middleware.RateLimitConfig, int)
	}{
		{"OnLimited", http.StatusTooManyRequests, func(name string, answer func(w http.ResponseWriter)) (middleware.RateCounter, middleware.RateLimitConfig, int) {
			return upStore, middleware.RateLimitConfig{
				Rules:     []middleware.Rule{{Name: name, Limit: 1, Window: time.Minute, Key: middleware.ByIP()}},
				OnLimited: func(w http.ResponseWriter, _ *http.Request, _ time.Duration) { answer(w) },
			}, 2
		}},
		{"OnTooLarge", http.StatusRequestEntityTooLarge, func(name string, answer func(w http.ResponseWriter)) (middleware.RateCounter, middleware.RateLimitConfig, int) {
			return upStore, middleware.RateLimitConfig{
				Rules:      []middleware.Rule{{Name: name, Limit: 5, Window: time.Minute, Key: middleware.ByFormField("username")}},
				MaxBody:    8,
				OnTooLarge: func(w http.ResponseWriter, _ *http.Request) { answer(w) },
			}, 1
		}},
		{"OnUnavailable", http.StatusServiceUnavailable, func(name string, answer func(w http.ResponseWriter)) (middleware.RateCounter, middleware.RateLimitConfig, int) {
			return downStore, middleware.RateLimitConfig{
				Rules:         []middleware.Rule{{Name: name, Limit: 5, Window: time.Minute, Key: middleware.ByFormField("username")}},
				OnUnavailable: func(w http.ResponseWriter, _ *http.Request) { answer(w) },
			}, 1
		}},
	}
	n := 0
	for _, hook := range hooks {
		for _, a := range answers {
			t.Run(hook.name+"/"+a.name, func(t *testing.T) {
				n++
				c, cfg, requests := hook.config(fmt.Sprintf("r%d", n), a.answer)
				h := limited(t, middleware.LoginLimit, c, cfg)
				var w *httptest.ResponseRecorder
				for range requests {
					r := httptest.NewRequest("POST", "/login", strings.NewReader("username=alice&password=x"))
					r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					w = serve(h, r)
				}
				want := hook.code
				if a.redirect {
					want = http.StatusSeeOther
				}
				if w.Code != want || w.Body.String() != a.body {
					t.Errorf("%s answering %s = %d %q, want %d %q", hook.name, a.name, w.Code, w.Body, want, a.body)
				}
				if hook.code != http.StatusRequestEntityTooLarge && w.Header().Get("Retry-After") == "" {
					t.Errorf("%s answering %s: no Retry-After", hook.name, a.name)
				}
			})
		}
	}
}

// TestRateLimitOnUnavailable lets the application write the 503 of a
// limiter that fails closed, as the example's login page does, with
// Retry-After set and the body readable again; a limiter that fails open
// never calls it.
func TestRateLimitOnUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), 300*time.Millisecond)
	srv.Stop(t)
	called := 0
	cfg := middleware.RateLimitConfig{
		Rules: []middleware.Rule{{Name: "login-user", Limit: 5, Window: 15 * time.Minute, Key: middleware.ByFormField("username")}},
		OnUnavailable: func(w http.ResponseWriter, r *http.Request) {
			called++
			if r.FormValue("username") != "Alice" {
				t.Errorf("OnUnavailable: username %q, want the body as sent", r.FormValue("username"))
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "sign-in is unavailable")
		},
	}
	post := func(h http.Handler) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/login", strings.NewReader("username=Alice&password=x"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return serve(h, r)
	}
	w := post(limited(t, middleware.LoginLimit, store, cfg))
	if w.Code != http.StatusServiceUnavailable || w.Body.String() != "sign-in is unavailable" || w.Header().Get("Retry-After") == "" || called != 1 {
		t.Errorf("login with Redis down = %d %q Retry-After %q, %d calls; want the OnUnavailable 503 with Retry-After, once", w.Code, w.Body, w.Header().Get("Retry-After"), called)
	}
	cfg.Outage = middleware.FailOpen
	if w := post(limited(t, middleware.LoginLimit, store, cfg)); w.Code != 200 || called != 1 {
		t.Errorf("FailOpen with Redis down = %d, %d OnUnavailable calls; want served, no call", w.Code, called-1)
	}
}

// TestRateLimitKeys checks the Redis keys: "rate_limit:<hash>:<rule>" with
// the key value hashed (never the address or user name), a time to live
// of the window, one counter per (rule, value) that a rule of the same
// name in another limiter shares, another for another secret, and values
// that would collide if joined naively kept apart.
func TestRateLimitKeys(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), 2*time.Second)
	user := "victim.name@example.org"
	rules := []middleware.Rule{
		{Name: "login-user", Limit: 5, Window: 900 * time.Second, Key: middleware.ByFormField("username")},
		{Name: "login-ip", Limit: 50, Window: 900 * time.Second, Key: middleware.ByIP()},
	}
	form := limited(t, middleware.LoginLimit, store, middleware.RateLimitConfig{Rules: rules})
	apiRules := []middleware.Rule{rules[0], rules[1]}
	apiRules[0].Key = middleware.ByJSONField("username")
	api := limited(t, middleware.LoginLimit, store, middleware.RateLimitConfig{Rules: apiRules})

	r := httptest.NewRequest("POST", "/login", strings.NewReader("username="+user))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = "203.0.113.9:5555"
	serve(form, r)
	r = httptest.NewRequest("POST", "/api/login", strings.NewReader(`{"username":"`+strings.ToUpper(user)+`"}`))
	r.RemoteAddr = "203.0.113.9:5556"
	w := serve(api, r)
	// The user name's rule is left out of RateLimit: its count is
	// everyone's who sends the name.
	if got := w.Header().Get("RateLimit"); !strings.HasPrefix(got, `"login-ip";r=48;`) || strings.Contains(got, "login-user") {
		t.Errorf("second attempt through the API: RateLimit %q, want the form's count of the address shared (r=48) and no login-user", got)
	}

	keys := rateKeys(t, srv)
	for _, k := range keys {
		if n, _ := redis.Int(srv.Do(t, "GET", k), nil); n != 2 {
			t.Errorf("%s counts %d, want the form's and the API's attempts shared (2)", k, n)
		}
	}
	shape := regexp.MustCompile(`^rate_limit:[A-Za-z0-9_-]{22}:(login-user|login-ip)$`)
	if len(keys) != 2 {
		t.Fatalf("keys = %q, want one per rule", keys)
	}
	for _, k := range keys {
		if !shape.MatchString(k) {
			t.Errorf("key %q, want rate_limit:<22-character hash>:<rule>", k)
		}
		for _, secret := range []string{user, strings.ToLower(user), "203.0.113.9", "victim"} {
			if strings.Contains(k, secret) {
				t.Errorf("key %q contains %q", k, secret)
			}
		}
		ttl, _ := redis.Int64(srv.Do(t, "PTTL", k), nil)
		if ttl <= 0 || ttl > 900_000 {
			t.Errorf("PTTL %s = %d, want within the 900s window", k, ttl)
		}
	}

	// Another secret counts under other keys.
	other := limited(t, middleware.LoginLimit, store, middleware.RateLimitConfig{Rules: rules, Secret: []byte("another rate limit secret (32 b)")})
	r = httptest.NewRequest("POST", "/login", strings.NewReader("username="+user))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = "203.0.113.9:5555"
	serve(other, r)
	if got := len(rateKeys(t, srv)); got != 4 {
		t.Errorf("after a request under another secret: %d keys, want 4", got)
	}

	// Values that a plain join would confuse ("a:b"+"c" and "a"+"b:c",
	// or a value naming another rule) get keys of their own.
	srv.Do(t, "FLUSHDB")
	byHeader := limited(t, middleware.RateLimit, store, middleware.RateLimitConfig{Rules: []middleware.Rule{
		{Name: "a", Limit: 9, Window: time.Minute, Key: middleware.ByFunc(func(r *http.Request) string { return r.Header.Get("X-K") })},
		{Name: "a-b", Limit: 9, Window: time.Minute, Key: middleware.ByFunc(func(r *http.Request) string { return r.Header.Get("X-K2") })},
	}})
	for _, hdr := range [][2]string{{"b:a-b", ""}, {"b", ""}, {"", "b"}, {"", ":a"}, {"x:a", ""}} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("X-K", hdr[0])
		r.Header.Set("X-K2", hdr[1])
		serve(byHeader, r)
	}
	if got := rateKeys(t, srv); len(got) != 5 {
		t.Errorf("five distinct (rule, value) pairs made %d keys: %q", len(got), got)
	}
}

// TestRateLimitConcurrency runs several app instances, each with its own
// Store and so its own pool, sharing one redis-server, and sends hundreds
// of concurrent requests for one user name through them: exactly Limit
// are admitted in the window, however the requests interleave.
func TestRateLimitConcurrency(t *testing.T) {
	srv := redistest.Start(t)
	const (
		instances  = 4
		goroutines = 100 // per instance
		limit      = 50
	)
	handlers := make([]http.Handler, instances)
	for i := range handlers {
		handlers[i] = limited(t, middleware.LoginLimit, rateStore(t, srv.Addr(), 5*time.Second), middleware.RateLimitConfig{
			Rules: []middleware.Rule{{Name: "login-user", Limit: limit, Window: time.Hour, Key: middleware.ByJSONField("username")}},
		})
	}
	var (
		mu    sync.Mutex
		codes = make(map[int]int)
		wg    sync.WaitGroup
	)
	start := make(chan struct{})
	for i := range instances * goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := httptest.NewRequest("POST", "/api/login", strings.NewReader(`{"username":"alice","password":"guess-`+strconv.Itoa(i)+`"}`))
			w := serve(handlers[i%instances], r)
			mu.Lock()
			codes[w.Code]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if codes[200] != limit || codes[429] != instances*goroutines-limit {
		t.Errorf("answers %v, want exactly %d × 200 and the other %d × 429", codes, limit, instances*goroutines-limit)
	}
}

// TestRateLimitWindowEnds checks that a window ends by itself: once its
// key expires, the next request opens a new one and is admitted.
func TestRateLimitWindowEnds(t *testing.T) {
	srv := redistest.Start(t)
	h := limited(t, middleware.RateLimit, rateStore(t, srv.Addr(), 2*time.Second), middleware.RateLimitConfig{
		Rules: []middleware.Rule{{Name: "api", Limit: 1, Window: time.Second, Key: middleware.ByIP()}},
	})
	if w := serve(h, httptest.NewRequest("GET", "/", nil)); w.Code != 200 {
		t.Fatalf("first = %d, want 200", w.Code)
	}
	if w := serve(h, httptest.NewRequest("GET", "/", nil)); w.Code != 429 {
		t.Fatalf("second = %d, want 429", w.Code)
	}
	// Poll, rather than sleep for the window, until Redis has deleted the
	// key; refused requests in between must not have prolonged it.
	deadline := time.Now().Add(10 * time.Second)
	for len(rateKeys(t, srv)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the 1s window's key still exists after 10s")
		}
		serve(h, httptest.NewRequest("GET", "/", nil))
		time.Sleep(50 * time.Millisecond)
	}
	if w := serve(h, httptest.NewRequest("GET", "/", nil)); w.Code != 200 {
		t.Errorf("after the window = %d, want 200", w.Code)
	}
}

// countingMetrics records a limiter's metrics.
type countingMetrics struct {
	mu      sync.Mutex
	limited map[string]int
	served  map[bool]int
}

func (m *countingMetrics) RateLimited(rule string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.limited == nil {
		m.limited = make(map[string]int)
	}
	m.limited[rule]++
}

func (m *countingMetrics) RateLimitUnavailable(served bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.served == nil {
		m.served = make(map[bool]int)
	}
	m.served[served]++
}

// TestRateLimitOutage takes Redis away, killed or stalled behind a proxy:
// a RateLimit limiter serves (fail open), a LoginLimit limiter answers 503
// with Retry-After (fail closed), each logs and counts it, and neither
// waits past the Store's time budget. Explicit Outage settings override
// the defaults.
func TestRateLimitOutage(t *testing.T) {
	for _, fault := range []string{"stopped", "stalled"} {
		t.Run(fault, func(t *testing.T) {
			srv := redistest.Start(t)
			addr := srv.Addr()
			var proxy *redistest.Proxy
			if fault == "stalled" {
				proxy = srv.Proxy(t)
				addr = proxy.Addr()
			}
			// A store timeout long enough that the bound below (within one
			// timeout, not two) holds on a loaded machine under -race.
			const timeout = time.Second
			store := rateStore(t, addr, timeout)
			rules := []middleware.Rule{{Name: "r", Limit: 5, Window: time.Minute, Key: middleware.ByIP()}}
			type limiterCase struct {
				name    string
				build   func(middleware.RateCounter, middleware.RateLimitConfig) (func(http.Handler) http.Handler, error)
				outage  middleware.Outage
				served  bool
				logs    *bytes.Buffer
				metrics *countingMetrics
				h       http.Handler
			}
			cases := []*limiterCase{
				{name: "RateLimit", build: middleware.RateLimit, served: true},
				{name: "LoginLimit", build: middleware.LoginLimit, served: false},
				{name: "RateLimit FailClosed", build: middleware.RateLimit, outage: middleware.FailClosed, served: false},
				{name: "LoginLimit FailOpen", build: middleware.LoginLimit, outage: middleware.FailOpen, served: true},
			}
			for _, c := range cases {
				c.logs, c.metrics = new(bytes.Buffer), new(countingMetrics)
				c.h = limited(t, c.build, store, middleware.RateLimitConfig{
					Rules: rules, Outage: c.outage, Metrics: c.metrics,
					Logger: slog.New(slog.NewTextHandler(c.logs, nil)),
				})
				if w := serve(c.h, httptest.NewRequest("GET", "/", nil)); w.Code != 200 {
					t.Fatalf("%s with Redis up = %d, want 200", c.name, w.Code)
				}
			}
			if proxy != nil {
				proxy.Stall()
			} else {
				srv.Stop(t)
			}
			for _, c := range cases {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				r := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
				done := make(chan *httptest.ResponseRecorder, 1)
				go func() { done <- serve(c.h, r) }()
				var w *httptest.ResponseRecorder
				start := time.Now()
				select {
				case w = <-done:
				case <-time.After(20 * time.Second):
					t.Fatalf("%s with Redis %s: no answer after 20s, with a %v Store timeout", c.name, fault, timeout)
				}
				if took := time.Since(start); took > timeout*9/5 {
					t.Errorf("%s with Redis %s: answered after %v, want within the %v Store timeout", c.name, fault, took.Round(time.Millisecond), timeout)
				}
				cancel()
				if c.served {
					if w.Code != 200 || w.Body.String() != "ok" {
						t.Errorf("%s with Redis %s = %d %q, want served (200 ok)", c.name, fault, w.Code, w.Body)
					}
				} else if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || w.Body.String() == "ok" {
					t.Errorf("%s with Redis %s = %d %q, Retry-After %q; want 503 with Retry-After", c.name, fault, w.Code, w.Body, w.Header().Get("Retry-After"))
				}
				if w.Header().Get("RateLimit-Policy") == "" || w.Header().Get("RateLimit") != "" {
					t.Errorf("%s with Redis %s: RateLimit-Policy %q, RateLimit %q; want the policy without a count", c.name, fault, w.Header().Get("RateLimit-Policy"), w.Header().Get("RateLimit"))
				}
				if c.metrics.served[c.served] != 1 || len(c.metrics.served) != 1 {
					t.Errorf("%s: metrics %v, want one outage with served=%v", c.name, c.metrics.served, c.served)
				}
				if logs := c.logs.String(); !strings.Contains(logs, "rate limit: counter failed") || !strings.Contains(logs, "rules=r") {
					t.Errorf("%s: log %q, want the failure with the rule", c.name, logs)
				}
				// A second failure within 10s is counted, not logged.
				serve(c.h, httptest.NewRequest("GET", "/", nil))
				if n := strings.Count(c.logs.String(), "counter failed"); n != 1 || c.metrics.served[c.served] != 2 {
					t.Errorf("%s: two failures logged %d lines and counted %v, want 1 line and 2 counted", c.name, n, c.metrics.served)
				}
			}
			if proxy != nil {
				proxy.Heal()
			}
		})
	}
}

// TestRateLimitNestedHeaders runs a limiter inside another, each with its
// own rule: the answers carry both rules in RateLimit-Policy and
// RateLimit, where the inner limiter's replaced the outer one's, so that a
// client was told of 97 requests left and then refused by a rule it had
// never been shown. A rule of the same name is listed once, with the lower
// Limit of the two (see TestRateLimitNestedCountsOnce).
func TestRateLimitNestedHeaders(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), 2*time.Second)
	wrap := func(build func(middleware.RateCounter, middleware.RateLimitConfig) (func(http.Handler) http.Handler, error), rule middleware.Rule, next http.Handler) http.Handler {
		mw, err := build(store, middleware.RateLimitConfig{Rules: []middleware.Rule{rule}, Secret: rateSecret})
		if err != nil {
			t.Fatal(err)
		}
		return mw(next)
	}
	api := middleware.Rule{Name: "api", Limit: 3, Window: time.Minute, Key: middleware.ByIP()}
	login := middleware.Rule{Name: "login-ip", Limit: 100, Window: time.Minute, Key: middleware.ByIP()}
	h := wrap(middleware.RateLimit, api, wrap(middleware.LoginLimit, login, okHandler))
	for i := 1; i <= 3; i++ {
		w := serve(h, httptest.NewRequest("POST", "/login", nil))
		if w.Code != http.StatusOK {
			t.Fatalf("request %d = %d, want 200", i, w.Code)
		}
		wantPolicy := `"api";q=3;w=60, "login-ip";q=100;w=60`
		if got := w.Header().Values("RateLimit-Policy"); !slices.Equal(got, []string{wantPolicy}) {
			t.Errorf("request %d: RateLimit-Policy %q, want %q", i, got, wantPolicy)
		}
		state := w.Header().Values("RateLimit")
		wantAPI := fmt.Sprintf(`"api";r=%d;t=`, 3-i)
		wantLogin := fmt.Sprintf(`, "login-ip";r=%d;t=`, 100-i)
		if len(state) != 1 || !strings.HasPrefix(state[0], wantAPI) || !strings.Contains(state[0], wantLogin) {
			t.Errorf("request %d: RateLimit %q, want %q...%q...", i, state, wantAPI, wantLogin)
		}
	}
	if w := serve(h, httptest.NewRequest("POST", "/login", nil)); w.Code != http.StatusTooManyRequests || !strings.Contains(w.Header().Get("RateLimit"), `"api";r=0`) {
		t.Errorf("request 4 = %d, RateLimit %q; want 429 with the api rule", w.Code, w.Header().Get("RateLimit"))
	}

	// The same rule name in both: one member, the inner limiter's.
	srv.Do(t, "FLUSHALL")
	inner := login
	inner.Limit = 50
	h = wrap(middleware.RateLimit, login, wrap(middleware.LoginLimit, inner, okHandler))
	w := serve(h, httptest.NewRequest("POST", "/login", nil))
	if got, want := w.Header().Get("RateLimit-Policy"), `"login-ip";q=50;w=60`; got != want {
		t.Errorf("same rule name: RateLimit-Policy %q, want %q", got, want)
	}
	if got := w.Header().Get("RateLimit"); strings.Count(got, `"login-ip"`) != 1 {
		t.Errorf("same rule name: RateLimit %q, want one member", got)
	}
}

// TestRateLimitNestedCountsOnce nests limiters that share a counter (a
// rule of the same name and key value, on the same counter): a request is
// counted once, and the rule with the lower Limit binds and is the one the
// headers show. Counted twice, a site-wide "ip" rule reused in a login
// limiter would admit half its requests, and an outer rule of 3 would
// show as the inner one's 100 requests left until it refused. Counters
// that are not the same count a request each.
func TestRateLimitNestedCountsOnce(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), 2*time.Second)
	build := func(c middleware.RateCounter, rule middleware.Rule, next http.Handler) http.Handler {
		mw, err := middleware.LoginLimit(c, middleware.RateLimitConfig{Rules: []middleware.Rule{rule}, Secret: rateSecret})
		if err != nil {
			t.Fatal(err)
		}
		return mw(next)
	}
	ip := middleware.Rule{Name: "ip", Limit: 10, Window: time.Minute, Key: middleware.ByIP()}
	counter := func() int {
		t.Helper()
		keys := rateKeys(t, srv)
		if len(keys) != 1 {
			t.Fatalf("keys %q, want one counter", keys)
		}
		n, err := redis.Int(srv.Do(t, "GET", keys[0]), nil)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("same limit", func(t *testing.T) {
		srv.Do(t, "FLUSHALL")
		h := build(store, ip, build(store, ip, okHandler))
		for i := 1; i <= 12; i++ {
			w := serve(h, httptest.NewRequest("POST", "/login", nil))
			if want := map[bool]int{true: 200, false: 429}[i <= 10]; w.Code != want {
				t.Fatalf("request %d = %d, want %d", i, w.Code, want)
			}
			if i <= 10 && !strings.HasPrefix(w.Header().Get("RateLimit"), fmt.Sprintf(`"ip";r=%d;t=`, 10-i)) {
				t.Errorf("request %d: RateLimit %q, want r=%d", i, w.Header().Get("RateLimit"), 10-i)
			}
		}
		if n := counter(); n != 12 {
			t.Errorf("counter = %d after 12 requests, want 12", n)
		}
	})

	t.Run("lower outer limit", func(t *testing.T) {
		srv.Do(t, "FLUSHALL")
		low, high := ip, ip
		low.Limit, high.Limit = 3, 100
		h := build(store, low, build(store, high, okHandler))
		for i := 1; i <= 3; i++ {
			w := serve(h, httptest.NewRequest("POST", "/login", nil))
			if w.Code != 200 {
				t.Fatalf("request %d = %d, want 200", i, w.Code)
			}
			if got, want := w.Header().Get("RateLimit-Policy"), `"ip";q=3;w=60`; got != want {
				t.Errorf("request %d: RateLimit-Policy %q, want %q", i, got, want)
			}
			if got := w.Header().Get("RateLimit"); !strings.HasPrefix(got, fmt.Sprintf(`"ip";r=%d;t=`, 3-i)) || strings.Count(got, `"ip"`) != 1 {
				t.Errorf("request %d: RateLimit %q, want one member, r=%d", i, got, 3-i)
			}
		}
		if w := serve(h, httptest.NewRequest("POST", "/login", nil)); w.Code != http.StatusTooManyRequests {
			t.Errorf("request 4 = %d, want 429", w.Code)
		}
		if n := counter(); n != 4 {
			t.Errorf("counter = %d after 4 requests, want 4", n)
		}
	})

	t.Run("lower inner limit", func(t *testing.T) {
		srv.Do(t, "FLUSHALL")
		low, high := ip, ip
		low.Limit, high.Limit = 3, 100
		h := build(store, high, build(store, low, okHandler))
		for i := 1; i <= 4; i++ {
			w := serve(h, httptest.NewRequest("POST", "/login", nil))
			if want := map[bool]int{true: 200, false: 429}[i <= 3]; w.Code != want {
				t.Fatalf("request %d = %d, want %d", i, w.Code, want)
			}
			if got, want := w.Header().Get("RateLimit-Policy"), `"ip";q=3;w=60`; got != want {
				t.Errorf("request %d: RateLimit-Policy %q, want %q", i, got, want)
			}
		}
		if n := counter(); n != 4 {
			t.Errorf("counter = %d after 4 requests, want 4", n)
		}
	})

	t.Run("refused by a shared rule, the name uncounted", func(t *testing.T) {
		// As a request refused by its address in one limiter: it spends
		// no attempt of the user name it names.
		srv.Do(t, "FLUSHALL")
		low, high := ip, ip
		low.Limit, high.Limit = 3, 100
		mw, err := middleware.LoginLimit(store, middleware.RateLimitConfig{Secret: rateSecret, Rules: []middleware.Rule{
			low, {Name: "user", Limit: 100, Window: time.Minute, Key: middleware.ByFormField("username")},
		}})
		if err != nil {
			t.Fatal(err)
		}
		h := build(store, high, mw(okHandler))
		for i := 1; i <= 5; i++ {
			r := httptest.NewRequest("POST", "/login", strings.NewReader("username=alice"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if w, want := serve(h, r), map[bool]int{true: 200, false: 429}[i <= 3]; w.Code != want {
				t.Fatalf("request %d = %d, want %d", i, w.Code, want)
			}
		}
		for _, key := range rateKeys(t, srv) {
			n, err := redis.Int(srv.Do(t, "GET", key), nil)
			switch {
			case err != nil:
				t.Fatal(err)
			case strings.HasSuffix(key, ":user") && n != 3:
				t.Errorf("the name's counter = %d after 3 admitted and 2 refused requests, want 3", n)
			case strings.HasSuffix(key, ":ip") && n != 5:
				t.Errorf("the address's counter = %d after 5 requests, want 5", n)
			}
		}
	})

	t.Run("refused by a shared rule by a name, the other names counted", func(t *testing.T) {
		// As one limiter whose rules are all by a name counts them all,
		// so does the nested one: the other name's counter is counted
		// as often as the shared one's.
		srv.Do(t, "FLUSHALL")
		user := middleware.Rule{Name: "user", Limit: 100, Window: time.Minute, Key: middleware.ByFormField("username")}
		low := user
		low.Limit = 3
		mw, err := middleware.LoginLimit(store, middleware.RateLimitConfig{Secret: rateSecret, Rules: []middleware.Rule{
			low, {Name: "other", Limit: 100, Window: time.Minute, Key: middleware.ByFormField("username")},
		}})
		if err != nil {
			t.Fatal(err)
		}
		h := build(store, user, mw(okHandler))
		for range 5 {
			r := httptest.NewRequest("POST", "/login", strings.NewReader("username=alice"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			serve(h, r)
		}
		for _, key := range rateKeys(t, srv) {
			if n, err := redis.Int(srv.Do(t, "GET", key), nil); err != nil || n != 5 {
				t.Errorf("counter %s = %d (%v) after 5 requests, want 5", key[strings.LastIndex(key, ":")+1:], n, err)
			}
		}
	})

	t.Run("one limiter twice", func(t *testing.T) {
		// limit(mux) with limit(api) inside it: the limiter shares its
		// counter with itself, and counts each request once.
		srv.Do(t, "FLUSHALL")
		mw, err := middleware.RateLimit(rateStore(t, srv.Addr(), 2*time.Second), middleware.RateLimitConfig{Secret: rateSecret, Rules: []middleware.Rule{ip}})
		if err != nil {
			t.Fatal(err)
		}
		h := mw(mw(okHandler))
		for i := 1; i <= 12; i++ {
			if w, want := serve(h, httptest.NewRequest("POST", "/login", nil)), map[bool]int{true: 200, false: 429}[i <= 10]; w.Code != want {
				t.Fatalf("request %d = %d, want %d", i, w.Code, want)
			}
		}
		if n := counter(); n != 12 {
			t.Errorf("counter = %d after 12 requests, want 12", n)
		}
	})

	t.Run("other counter", func(t *testing.T) {
		srv.Do(t, "FLUSHALL")
		other := redistest.Start(t)
		h := build(store, ip, build(rateStore(t, other.Addr(), 2*time.Second), ip, okHandler))
		for i := 1; i <= 3; i++ {
			if w := serve(h, httptest.NewRequest("POST", "/login", nil)); w.Code != 200 {
				t.Fatalf("request %d = %d, want 200", i, w.Code)
			}
		}
		keys := rateKeys(t, other)
		if len(keys) != 1 {
			t.Fatalf("other server's keys %q, want one counter", keys)
		}
		if n, err := redis.Int(other.Do(t, "GET", keys[0]), nil); err != nil || n != 3 {
			t.Errorf("other server's counter = %d (%v), want 3", n, err)
		}
		if n := counter(); n != 3 {
			t.Errorf("counter = %d, want 3", n)
		}
	})
}

// TestRateLimitSubrequestsCounted: a handler behind a site-wide limiter
// sends sub-requests on its own request's context (a batch endpoint),
// each through a login limiter that shares the site's rule by address.
// The count the site's limiter handed down stands for the batch request
// alone: every sub-request is counted, in sequence and in parallel, and
// no more of them than the address's limit reach the password check.
func TestRateLimitSubrequestsCounted(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), 2*time.Second)
	ip := middleware.Rule{Name: "ip", Limit: 10, Window: time.Minute, Key: middleware.ByIP()}
	site, err := middleware.RateLimit(store, middleware.RateLimitConfig{Secret: rateSecret, Rules: []middleware.Rule{ip}})
	if err != nil {
		t.Fatal(err)
	}
	login, err := middleware.LoginLimit(store, middleware.RateLimitConfig{Secret: rateSecret, Rules: []middleware.Rule{
		{Name: "login-user", Limit: 5, Window: time.Minute, Key: middleware.ByFormField("username")}, ip,
	}})
	if err != nil {
		t.Fatal(err)
	}
	var checked atomic.Int64 // password checks
	mux := http.NewServeMux()
	mux.Handle("POST /login", login(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { checked.Add(1) })))
	parallel := false
	mux.HandleFunc("POST /batch", func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		for i := range 50 {
			sub := r.Clone(r.Context())
			sub.URL.Path = "/login"
			body := fmt.Sprintf("username=user%d&password=guess", i)
			sub.Body, sub.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
			sub.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if parallel {
				wg.Go(func() { mux.ServeHTTP(httptest.NewRecorder(), sub) })
			} else {
				mux.ServeHTTP(httptest.NewRecorder(), sub)
			}
		}
		wg.Wait()
	})
	h := site(mux)
	for _, parallel = range []bool{false, true} {
		srv.Do(t, "FLUSHALL")
		checked.Store(0)
		serve(h, httptest.NewRequest("POST", "/batch", nil))
		if n := checked.Load(); n > int64(ip.Limit) {
			t.Errorf("parallel %v: %d of 50 sub-logins reached the password check, want at most the address's limit, %d", parallel, n, ip.Limit)
		}
		for _, key := range rateKeys(t, srv) {
			if n, _ := redis.Int(srv.Do(t, "GET", key), nil); strings.HasSuffix(key, ":ip") && n < 50 {
				t.Errorf("parallel %v: the address's counter = %d after a batch of 50 sub-logins, want at least 50", parallel, n)
			}
		}
	}
}

// TestRateLimitCopiesOnlyWhenShared checks that a limiter hands the
// handler the request it got, not a copy with its counts, unless another
// limiter has a rule of the same name on the same counter: the copy cost
// every admitted request 3 allocations, up to about 5% of its time
// (BenchmarkRateLimit), for nesting that few apps have.
func TestRateLimitCopiesOnlyWhenShared(t *testing.T) {
	srv := redistest.Start(t)
	for _, tc := range []struct {
		name   string
		shared bool
	}{{"alone", false}, {"beside a limiter with a rule of its name", true}} {
		store := rateStore(t, srv.Addr(), 2*time.Second)
		build := func(next http.Handler) http.Handler {
			mw, err := middleware.RateLimit(store, middleware.RateLimitConfig{Secret: rateSecret,
				Rules: []middleware.Rule{{Name: "ip", Limit: 100, Window: time.Minute, Key: middleware.ByIP()}}})
			if err != nil {
				t.Fatal(err)
			}
			return mw(next)
		}
		var got *http.Request
		h := build(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r }))
		if tc.shared {
			build(okHandler)
		}
		r := httptest.NewRequest("GET", "/", nil)
		serve(h, r)
		if copied := got != r; copied != tc.shared {
			t.Errorf("%s: the handler got a copy of the request: %v, want %v", tc.name, copied, tc.shared)
		}
	}
}

// TestRateLimitStallFullPool sends many logins at once to a limiter whose
// Redis stalls, more than the pool has connections: every answer comes
// within the Store's Timeout, also for the requests that got a connection
// just as their time ran out: none waits the Timeout plus the
// connection's ReadTimeout while the pool's Close sends the commands it
// had queued and waits for replies that never come.
func TestRateLimitStallFullPool(t *testing.T) {
	srv := redistest.Start(t)
	proxy := srv.Proxy(t)
	const timeout = 500 * time.Millisecond
	store, err := redisstore.Open(redisstore.Config{Addr: proxy.Addr(), Timeout: timeout, ReadTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := limited(t, middleware.LoginLimit, store, middleware.RateLimitConfig{
		Rules:  []middleware.Rule{{Name: "login-ip", Limit: 100, Window: time.Minute, Key: middleware.ByIP()}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	proxy.Stall()
	defer proxy.Heal()
	const n = 300
	var (
		mu   sync.Mutex
		late []time.Duration
		wg   sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			start := time.Now()
			w := serve(h, httptest.NewRequest("POST", "/login", nil))
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if w.Code != http.StatusServiceUnavailable {
				t.Errorf("a login with Redis stalled = %d, want 503", w.Code)
			}
			if took > timeout+time.Second {
				late = append(late, took.Round(time.Millisecond))
			}
		})
	}
	wg.Wait()
	if len(late) > 0 {
		slices.Sort(late)
		t.Errorf("%d of %d answers came after more than the %v Store timeout: %v", len(late), n, timeout, late)
	}
}

// TestRateLimitBadInput checks what a request the limiter cannot count
// gets, and that it leaves Redis unchanged: a body over MaxBody 413; a
// request without the field counts only by the other rules.
func TestRateLimitBadInput(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), 2*time.Second)
	h := limited(t, middleware.LoginLimit, store, middleware.RateLimitConfig{
		MaxBody: 100,
		Rules:   []middleware.Rule{{Name: "login-user", Limit: 5, Window: time.Minute, Key: middleware.ByJSONField("username")}},
	})
	for _, accept := range []string{"", "text/html"} {
		r := httptest.NewRequest("POST", "/api/login", strings.NewReader(`{"username":"`+strings.Repeat("a", 100)+`"}`))
		r.Header.Set("Accept", accept)
		w := serve(h, r)
		if w.Code != http.StatusRequestEntityTooLarge || w.Body.String() == "ok" {
			t.Errorf("Accept %q, body over MaxBody = %d %q, want 413", accept, w.Code, w.Body)
		}
	}
	// Matches that differ, which a handler decoding into a struct reads as
	// the last and one decoding into a map as the exact-case one: counted
	// under either, such a body would get the other guesses its own
	// counter no longer allows. Refused before any rule counts, by
	// address too.
	both := limited(t, middleware.LoginLimit, store, middleware.RateLimitConfig{
		Rules: []middleware.Rule{
			{Name: "login-ip", Limit: 100, Window: time.Minute, Key: middleware.ByIP()},
			{Name: "login-user", Limit: 5, Window: time.Minute, Key: middleware.ByJSONField("username")},
		},
	})
	for _, body := range []string{`{"username":"x","username":"bob"}`, `{"username":"bob","Username":"decoy"}`} {
		for _, accept := range []string{"", "text/html"} {
			r := httptest.NewRequest("POST", "/api/login", strings.NewReader(body))
			r.Header.Set("Accept", accept)
			w := serve(both, r)
			if w.Code != http.StatusBadRequest || w.Body.String() == "ok" {
				t.Errorf("Accept %q, body %s = %d %q, want 400", accept, body, w.Code, w.Body)
			}
			if accept == "" && !strings.Contains(w.Body.String(), `"ambiguous request body"`) {
				t.Errorf("body %s answered %q, want the JSON error \"ambiguous request body\"", body, w.Body)
			}
		}
	}
	for _, body := range []string{`not json`, `{"username":42}`, `{"user":"alice"}`, `["alice"]`, `{"username":""}`, ``} {
		w := serve(h, httptest.NewRequest("POST", "/api/login", strings.NewReader(body)))
		if w.Code != 200 || w.Header().Get("RateLimit-Policy") != "" {
			t.Errorf("body %q = %d, RateLimit-Policy %q; want passed on uncounted (the handler refuses it)", body, w.Code, w.Header().Get("RateLimit-Policy"))
		}
	}
	if keys := rateKeys(t, srv); len(keys) != 0 {
		t.Errorf("bad requests wrote keys %q", keys)
	}
}

// TestRateLimitConfig checks that every bad configuration is refused with
// an error naming the field.
func TestRateLimitConfig(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), time.Second)
	good := middleware.Rule{Name: "ok", Limit: 1, Window: time.Second, Key: middleware.ByIP()}
	with := func(f func(*middleware.Rule)) []middleware.Rule {
		r := good
		f(&r)
		return []middleware.Rule{r}
	}
	for _, tc := range []struct {
		name  string
		cfg   middleware.RateLimitConfig
		field string
	}{
		{"no rules", middleware.RateLimitConfig{Secret: rateSecret}, "Rules"},
		{"no secret", middleware.RateLimitConfig{Rules: []middleware.Rule{good}}, "Secret"},
		{"short secret", middleware.RateLimitConfig{Rules: []middleware.Rule{good}, Secret: rateSecret[:31]}, "Secret"},
		{"empty name", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Name = "" })}, "Rules[0].Name"},
		{"colon in name", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Name = "a:b" })}, "Rules[0].Name"},
		{"quote in name", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Name = `a"` })}, "Rules[0].Name"},
		{"upper case name", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Name = "Login" })}, "Rules[0].Name"},
		{"long name", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Name = strings.Repeat("a", 33) })}, "Rules[0].Name"},
		{"duplicate name", middleware.RateLimitConfig{Secret: rateSecret, Rules: []middleware.Rule{good, good}}, "Rules[1].Name"},
		{"zero limit", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Limit = 0 })}, "Rules[0].Limit"},
		{"short window", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Window = 999 * time.Millisecond })}, "Rules[0].Window"},
		{"fractional window", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Window = 1500 * time.Millisecond })}, "Rules[0].Window"},
		{"no key", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Key = middleware.Key{} })}, "Rules[0].Key"},
		{"nil ByFunc", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Key = middleware.ByFunc(nil) })}, "Rules[0].Key"},
		{"nil ByName", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Key = middleware.ByName(nil) })}, "Rules[0].Key"},
		{"empty form field", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Key = middleware.ByFormField("") })}, "Rules[0].Key: the field name is blank"},
		{"blank form field", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Key = middleware.ByFormField(" ") })}, "Rules[0].Key: the field name is blank"},
		{"empty JSON field", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Key = middleware.ByJSONField("") })}, "Rules[0].Key: the field name is blank"},
		{"form field with a newline", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Key = middleware.ByFormField("email\n") })}, "Rules[0].Key: the field name is blank or has spaces"},
		{"JSON field with a space before", middleware.RateLimitConfig{Secret: rateSecret, Rules: with(func(r *middleware.Rule) { r.Key = middleware.ByJSONField(" email") })}, "Rules[0].Key: the field name is blank or has spaces"},
		{"bad outage", middleware.RateLimitConfig{Secret: rateSecret, Rules: []middleware.Rule{good}, Outage: 7}, "Outage"},
		{"negative MaxBody", middleware.RateLimitConfig{Secret: rateSecret, Rules: []middleware.Rule{good}, MaxBody: -1}, "MaxBody"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := middleware.RateLimit(store, tc.cfg)
			want := "RateLimitConfig." + tc.field // the field, and the reason where one is given
			if !strings.Contains(tc.field, ":") {
				want += ":"
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("RateLimit(%s) = %v, want an error with %q", tc.name, err, want)
			}
		})
	}
	// A buffer never filled: whoever guesses the secret can tell whose
	// counts the Redis keys hold.
	if _, err := middleware.RateLimit(store, middleware.RateLimitConfig{Rules: []middleware.Rule{good}, Secret: make([]byte, 32)}); err == nil ||
		!strings.Contains(err.Error(), "RateLimitConfig.Secret: only 1 distinct byte values") {
		t.Errorf("RateLimit(secret of zeros) = %v, want an error saying the Secret is not random bytes", err)
	}
	if _, err := middleware.RateLimit(nil, middleware.RateLimitConfig{Secret: rateSecret, Rules: []middleware.Rule{good}}); err == nil {
		t.Error("RateLimit(nil counter) = nil error")
	}
	var unopened *redisstore.Store // a nil Store in a non-nil interface
	if _, err := middleware.LoginLimit(unopened, middleware.RateLimitConfig{Secret: rateSecret, Rules: []middleware.Rule{good}}); err == nil {
		t.Error("LoginLimit(nil *redisstore.Store) = nil error, want one now rather than a panic at the first request")
	}
}

// rateLimitACL is what the README says the limiter adds to the store's
// least-privilege ACL user: its key pattern and three commands.
var rateLimitACL = []string{"~rate_limit:*", "+incr", "+pexpire", "+pttl"}

// TestRateLimitACL counts requests as the store's least-privilege ACL user
// (the commands of TestLeastPrivilegeACL) with only rateLimitACL added,
// scripting denied: nothing is refused, and nothing lands in ACL LOG.
func TestRateLimitACL(t *testing.T) {
	acl := []string{"--user", "sessionkit", "on", ">acl-pass-5d2", "~session:*", "~user:*", "resetchannels", "-@all",
		"+get", "+getex", "+set", "+del", "+scan", "+mget", "+ping", "+exists", "+multi", "+exec", "+discard",
		"+watch", "+unwatch", "+zadd", "+zrange", "+zrem", "+zremrangebyscore", "+pexpireat", "+select"}
	srv := redistest.Start(t, append(acl, rateLimitACL...)...)
	store, err := redisstore.Open(redisstore.Config{Addr: srv.Addr(), Username: "sessionkit", Password: "acl-pass-5d2", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := limited(t, middleware.LoginLimit, store, middleware.RateLimitConfig{Rules: []middleware.Rule{
		{Name: "login-user", Limit: 1, Window: time.Minute, Key: middleware.ByFormField("username")},
		{Name: "login-ip", Limit: 10, Window: time.Minute, Key: middleware.ByIP()},
	}})
	for i, want := range []int{200, 429} {
		w := serve(h, httptest.NewRequest("POST", "/login?username=alice", nil))
		if w.Code != want {
			t.Errorf("request %d as the ACL user = %d %q, want %d", i+1, w.Code, w.Body, want)
		}
	}
	if entries, _ := redis.Values(srv.Do(t, "ACL", "LOG"), nil); len(entries) != 0 {
		t.Errorf("ACL LOG has %d entries, want none", len(entries))
	}
	// Without the additions the limiter is refused: they are needed.
	srv2 := redistest.Start(t, acl...)
	store2, err := redisstore.Open(redisstore.Config{Addr: srv2.Addr(), Username: "sessionkit", Password: "acl-pass-5d2", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store2.Close() })
	if _, _, err := store2.CountRequests(context.Background(), []string{"k:r"}, []time.Duration{time.Minute}); !errors.Is(err, redisstore.ErrRefused) {
		t.Errorf("CountRequests without the ACL additions = %v, want ErrRefused", err)
	}
}

// TestRateLimitKeyValues checks what each Key counts by, through the
// counts two requests share or not: ByIP by IPv4 address and IPv6 /64;
// ByFormField and ByJSONField by the value the handler would read
// (encoding/json's case-insensitive, last-wins field matching, a null
// ignored), trimmed and case-folded as strings.EqualFold compares.
func TestRateLimitKeyValues(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), 2*time.Second)
	type req struct {
		remote, contentType, body, query string
		method                           string // POST when ""
	}
	// A multipart/form-data body with the one field username.
	const boundary = "xYzZY"
	multipart := func(username string) string {
		return "--" + boundary + "\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n" + username + "\r\n--" + boundary + "--\r\n"
	}
	multipartType := "multipart/form-data; boundary=" + boundary
	for _, tc := range []struct {
		name   string
		key    middleware.Key
		a, b   req
		shared bool
	}{
		{"ipv4 same", middleware.ByIP(), req{remote: "192.0.2.1:1"}, req{remote: "192.0.2.1:2"}, true},
		{"ipv4 other", middleware.ByIP(), req{remote: "192.0.2.1:1"}, req{remote: "192.0.2.2:1"}, false},
		{"ipv4-mapped ipv6", middleware.ByIP(), req{remote: "[::ffff:192.0.2.1]:1"}, req{remote: "192.0.2.1:2"}, true},
		{"ipv6 same /64", middleware.ByIP(), req{remote: "[2001:db8:1:2::1]:1"}, req{remote: "[2001:db8:1:2:ffff::9]:1"}, true},
		{"ipv6 other /64", middleware.ByIP(), req{remote: "[2001:db8:1:2::1]:1"}, req{remote: "[2001:db8:1:3::1]:1"}, false},
		{"form case and space", middleware.ByFormField("username"),
			req{contentType: "application/x-www-form-urlencoded", body: "username=Alice"},
			req{contentType: "application/x-www-form-urlencoded", body: "username=+alice+"}, true},
		{"form body over query", middleware.ByFormField("username"),
			req{contentType: "application/x-www-form-urlencoded", body: "username=alice", query: "username=bob"},
			req{query: "username=alice"}, true},
		// Case-folded as strings.EqualFold compares: the long s and the
		// Kelvin sign, final and medial sigma.
		{"form case folding", middleware.ByFormField("username"),
			req{contentType: "application/x-www-form-urlencoded", body: "username=%C5%BFa%C5%BFha"},
			req{contentType: "application/x-www-form-urlencoded", body: "username=SASHA"}, true},
		{"json case folding", middleware.ByJSONField("username"),
			req{body: `{"username":"\u212aate \u03c3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2"}`},
			req{body: `{"username":"kate \u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3"}`}, true},
		// And as upper-casing makes them equal: the dotless i upper-cases
		// to I.
		{"json dotless i", middleware.ByJSONField("username"),
			req{body: `{"username":"al\u0131ce"}`}, req{body: `{"username":"ALICE"}`}, true},
		{"form other user", middleware.ByFormField("username"),
			req{contentType: "application/x-www-form-urlencoded", body: "username=alice"},
			req{contentType: "application/x-www-form-urlencoded", body: "username=bob"}, false},
		// FormValue reads multipart bodies too, after the query string.
		{"form multipart", middleware.ByFormField("username"),
			req{contentType: multipartType, body: multipart("Alice")},
			req{contentType: "application/x-www-form-urlencoded", body: "username=alice"}, true},
		{"form query over multipart", middleware.ByFormField("username"),
			req{contentType: multipartType, body: multipart("bob"), query: "username=alice"},
			req{query: "username=alice"}, true},
		// FormValue ignores a URL-encoded body of a GET, and reads a PUT's.
		{"form GET body ignored", middleware.ByFormField("username"),
			req{method: "GET", contentType: "application/x-www-form-urlencoded", body: "username=decoy", query: "username=alice"},
			req{query: "username=alice"}, true},
		{"form PUT body", middleware.ByFormField("username"),
			req{method: "PUT", contentType: "application/x-www-form-urlencoded", body: "username=alice"},
			req{query: "username=alice"}, true},
		{"json case-insensitive matches", middleware.ByJSONField("username"),
			req{body: `{"username":"alice","USERNAME":"Alice"}`}, req{body: `{"username":"alice"}`}, true},
		{"json null leaves the name before it", middleware.ByJSONField("username"),
			req{body: `{"username":"alice","password":"x","username":null}`}, req{body: `{"username":"alice"}`}, true},
		{"json other user", middleware.ByJSONField("username"),
			req{body: `{"username":"alice"}`}, req{body: `{"username":"alice2"}`}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.Do(t, "FLUSHDB")
			h := limited(t, middleware.RateLimit, store, middleware.RateLimitConfig{
				Rules: []middleware.Rule{{Name: "k", Limit: 1, Window: time.Minute, Key: tc.key}},
			})
			send := func(q req) int {
				method := cmp.Or(q.method, "POST")
				r := httptest.NewRequest(method, "/?"+q.query, strings.NewReader(q.body))
				if q.remote != "" {
					r.RemoteAddr = q.remote
				}
				if q.contentType != "" {
					r.Header.Set("Content-Type", q.contentType)
				}
				return serve(h, r).Code
			}
			if got := send(tc.a); got != 200 {
				t.Fatalf("first request = %d, want 200", got)
			}
			want := 200
			if tc.shared {
				want = 429
			}
			if got := send(tc.b); got != want {
				t.Errorf("second request = %d, want %d (shared count: %v)", got, want, tc.shared)
			}
		})
	}
}

// TestRateLimitHandlerGetsBody checks that a limiter that read the body
// for a key hands the handler the same bytes, form and JSON alike.
func TestRateLimitHandlerGetsBody(t *testing.T) {
	srv := redistest.Start(t)
	mw, err := middleware.LoginLimit(rateStore(t, srv.Addr(), 2*time.Second), middleware.RateLimitConfig{Secret: rateSecret,
		Rules: []middleware.Rule{
			{Name: "f", Limit: 5, Window: time.Minute, Key: middleware.ByFormField("username")},
			{Name: "j", Limit: 5, Window: time.Minute, Key: middleware.ByJSONField("username")},
		}})
	if err != nil {
		t.Fatal(err)
	}
	var got string
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
	}))
	for _, tc := range []struct{ contentType, body string }{
		{"application/x-www-form-urlencoded", "username=alice&password=p%26ss"},
		{"application/json", `{"username":"alice","password":"p&ss"}`},
	} {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", tc.contentType)
		if w := serve(h, r); w.Code != 200 || got != tc.body {
			t.Errorf("%s: %d, handler read %q, want 200 and %q", tc.contentType, w.Code, got, tc.body)
		}
	}
}

// TestRateLimitByUser counts by the logged-in user, behind Sessions: each
// user has a count of their own, and a request without a user is not
// counted by the rule.
func TestRateLimitByUser(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), 2*time.Second)
	m, err := session.New(store, session.Config{Keys: [][]byte{[]byte("test signing key of 32 bytes: ok")}, InsecureCookie: true})
	if err != nil {
		t.Fatal(err)
	}
	limit := limited(t, middleware.RateLimit, store, middleware.RateLimitConfig{
		Rules: []middleware.Rule{{Name: "user", Limit: 1, Window: time.Minute, Key: middleware.ByUser()}},
	})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if _, err := session.Create(r.Context(), r.FormValue("user")); err != nil {
			t.Error(err)
		}
	})
	mux.Handle("GET /limited", limit)
	h := middleware.Sessions(m)(mux)
	cookie := func(user string) *http.Cookie {
		w := serve(h, httptest.NewRequest("POST", "/login?user="+user, nil))
		return w.Result().Cookies()[0]
	}
	get := func(c *http.Cookie) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/limited", nil)
		if c != nil {
			r.AddCookie(c)
		}
		return serve(h, r)
	}
	alice, bob := cookie("alice"), cookie("bob")
	for i, tc := range []struct {
		who    string
		c      *http.Cookie
		code   int
		policy bool
	}{
		{"alice", alice, 200, true}, {"alice", alice, 429, true}, {"bob", bob, 200, true},
		{"anonymous", nil, 200, false}, {"anonymous", nil, 200, false},
	} {
		w := get(tc.c)
		if w.Code != tc.code || (w.Header().Get("RateLimit-Policy") != "") != tc.policy {
			t.Errorf("request %d (%s) = %d, RateLimit-Policy %q; want %d, policy %v", i+1, tc.who, w.Code, w.Header().Get("RateLimit-Policy"), tc.code, tc.policy)
		}
	}
}

// TestRateLimitByUserWithoutSessions puts a limiter with a ByUser rule in
// front of Sessions, and in a chain without it: no request would have a
// user, so instead of limiting nothing it refuses every request with a 500
// naming the missing middleware, and logs the mistake once per limiter.
func TestRateLimitByUserWithoutSessions(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), 2*time.Second)
	m, err := session.New(store, session.Config{Keys: [][]byte{[]byte("test signing key of 32 bytes: ok")}, InsecureCookie: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		chain func(limit func(http.Handler) http.Handler, next http.Handler) http.Handler
	}{
		{"outside Sessions", func(limit func(http.Handler) http.Handler, next http.Handler) http.Handler {
			return limit(middleware.Sessions(m)(next))
		}},
		{"no Sessions", func(limit func(http.Handler) http.Handler, next http.Handler) http.Handler {
			return limit(next)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			limit, err := middleware.RateLimit(store, middleware.RateLimitConfig{
				Secret: rateSecret,
				Rules: []middleware.Rule{
					{Name: "ip", Limit: 100, Window: time.Minute, Key: middleware.ByIP()},
					{Name: "user", Limit: 1, Window: time.Minute, Key: middleware.ByUser()},
				},
				Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			h := tc.chain(limit, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				t.Error("the handler ran behind a ByUser rule without Sessions")
			}))
			for i := range 3 {
				w := serve(h, httptest.NewRequest("GET", "/", nil))
				if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "session middleware missing") {
					t.Errorf("request %d = %d %q, want 500 session middleware missing", i+1, w.Code, w.Body)
				}
			}
			if n := strings.Count(logs.String(), "without Sessions"); n != 1 || !strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("logged the missing Sessions %d times, want once at Error:\n%s", n, logs.String())
			}
			if keys := rateKeys(t, srv); len(keys) != 0 {
				t.Errorf("Redis holds %q, want no counter", keys)
			}
		})
	}
}

// fixedCounter is a RateCounter that answers fixed figures, for the edges
// a real Redis reaches only by chance: a window in its last millisecond
// (PTTL 0), and a counter that answers the wrong number of counts.
type fixedCounter struct {
	counts []int64
	resets []time.Duration
}

func (c fixedCounter) CountRequests(context.Context, []string, []time.Duration) ([]int64, []time.Duration, error) {
	return c.counts, c.resets, nil
}

// TestRateLimitCounterEdges: a request over the limit is refused even when
// its window ends in under a millisecond (Retry-After 1, never 0), and a
// counter's malformed answer is handled as its failure.
func TestRateLimitCounterEdges(t *testing.T) {
	rules := []middleware.Rule{{Name: "r", Limit: 1, Window: time.Minute, Key: middleware.ByIP()}}
	h := limited(t, middleware.RateLimit, fixedCounter{[]int64{2}, []time.Duration{0}}, middleware.RateLimitConfig{Rules: rules})
	if w := serve(h, httptest.NewRequest("GET", "/", nil)); w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Errorf("over the limit, window ending now = %d, Retry-After %q; want 429, 1", w.Code, w.Header().Get("Retry-After"))
	}
	h = limited(t, middleware.LoginLimit, fixedCounter{nil, nil}, middleware.RateLimitConfig{Rules: rules, Logger: slog.New(slog.DiscardHandler)})
	if w := serve(h, httptest.NewRequest("GET", "/", nil)); w.Code != 503 {
		t.Errorf("counter answering no counts = %d, want 503 (a failure, closed)", w.Code)
	}
}

// TestRateLimitFormParsedBefore puts a middleware that parses the form (a
// CSRF check reading its token with r.FormValue) before LoginLimit: the
// body is read by then, and ByFormField must count by the parsed form, as
// the handler's FormValue reads it.
func TestRateLimitFormParsedBefore(t *testing.T) {
	srv := redistest.Start(t)
	lim, err := middleware.LoginLimit(rateStore(t, srv.Addr(), 2*time.Second), middleware.RateLimitConfig{Secret: rateSecret,
		Rules: []middleware.Rule{{Name: "user", Limit: 3, Window: time.Minute, Key: middleware.ByFormField("username")}}})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.FormValue("username"))
	})
	csrf := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = r.FormValue("csrf_token") // parses (and consumes) the body
			next.ServeHTTP(w, r)
		})
	}
	h := csrf(lim(login))
	admitted := 0
	for range 20 {
		r := httptest.NewRequest("POST", "/login", strings.NewReader("csrf_token=x&username=victim&password=guess"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == 200 {
			admitted++
		}
	}
	t.Logf("20 guesses for %q, limit 3 per name: %d admitted", seen[0], admitted)
	if admitted > 3 {
		t.Errorf("per-user login limit bypassed: %d of 20 attempts for the same user admitted", admitted)
	}
}

// TestRateLimitClientGone sends requests whose client hangs up at once,
// in process (the context already cancelled) and over TCP (the request
// written, the connection closed): each is counted, so the handler runs
// no more than the limit allows, and nothing is logged as an outage. A
// client gone must not make the count fail like a Redis outage, which
// RateLimit's FailOpen serves uncounted.
func TestRateLimitClientGone(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), time.Second)
	var logs syncbuf.Buffer
	var ran atomic.Int64
	mw, err := middleware.RateLimit(store, middleware.RateLimitConfig{Secret: rateSecret,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Rules:  []middleware.Rule{{Name: "sms", Limit: 3, Window: time.Minute, Key: middleware.ByIP()}}})
	if err != nil {
		t.Fatal(err)
	}
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran.Add(1) }))

	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := httptest.NewRequestWithContext(ctx, "POST", "/sms", nil)
		r.RemoteAddr = "192.0.2.1:1234"
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	if n := ran.Load(); n != 3 {
		t.Errorf("20 requests of clients gone, limit 3: the handler ran %d times, want 3", n)
	}

	ran.Store(0)
	srv.Do(t, "FLUSHALL")
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	for range 300 {
		c, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("POST /sms HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"))
		c.Close()
	}
	time.Sleep(300 * time.Millisecond) // the last requests finish; a late one can only lower the count
	if n := ran.Load(); n > 3 {
		t.Errorf("300 requests over TCP, each closed at once, limit 3: the handler ran %d times, want at most 3", n)
	}
	if strings.Contains(logs.String(), "counter failed") {
		t.Errorf("clients that went away were logged as a counter outage:\n%s", logs.String())
	}
}

// TestRateLimitRefusedByAddressNamesNobody sends, from one address past
// its limit, five logins for each of a thousand user names: none of them
// is counted, so none of those users is locked out and Redis holds no
// counter for them. Were the names of a refused request counted all the
// same, one address could lock out every user it named (5 guesses each)
// and fill Redis with their counters until logins failed for want of
// memory.
func TestRateLimitRefusedByAddressNamesNobody(t *testing.T) {
	srv := redistest.Start(t)
	h := limited(t, middleware.LoginLimit, rateStore(t, srv.Addr(), 2*time.Second), middleware.RateLimitConfig{
		Rules: []middleware.Rule{
			{Name: "login-user", Limit: 5, Window: time.Minute, Key: middleware.ByFormField("username")},
			{Name: "login-ip", Limit: 10, Window: time.Minute, Key: middleware.ByIP()},
		},
	})
	login := func(user, remote string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/login", strings.NewReader("username="+user+"&password=guess"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = remote
		return serve(h, r)
	}
	codes := make(map[int]int)
	for range 5 {
		for i := range 1000 {
			w := login(fmt.Sprintf("user%d", i), "198.51.100.7:4444")
			codes[w.Code]++
			if w.Code != 200 && strings.Contains(w.Header().Get("RateLimit"), "login-user") {
				t.Fatalf("a request refused by its address: RateLimit %q names the rule that did not count it", w.Header().Get("RateLimit"))
			}
		}
	}
	if codes[200] != 10 || codes[429] != 4990 {
		t.Errorf("5 logins for each of 1000 names from one address, limit 10: %v, want 10 × 200 and 4990 × 429", codes)
	}
	if keys := rateKeys(t, srv); len(keys) != 11 {
		t.Errorf("Redis holds %d counters, want 11 (the address and the 10 names it was admitted for)", len(keys))
	}
	for i := range 1000 {
		if w := login(fmt.Sprintf("user%d", i), fmt.Sprintf("203.0.113.%d:1", 1+i%200)); w.Code != 200 {
			t.Fatalf("user%d, from an address of its own after the flood: %d, want 200 (one attempt of 5 spent)", i, w.Code)
		}
	}
}

// TestRateLimitNamedRuleRefuses checks the RateLimit field of a rule keyed
// by a user name: left out while it admits (its count is everyone's who
// sends the name), and listed as r=0 with t the Retry-After on the 429 it
// causes, alone or beside a rule keyed by the sender, so that a client
// reading the field sees the rule that refused it.
func TestRateLimitNamedRuleRefuses(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), 2*time.Second)
	user := middleware.Rule{Name: "login-user", Limit: 3, Window: time.Minute, Key: middleware.ByFormField("username")}
	ip := middleware.Rule{Name: "login-ip", Limit: 100, Window: 2 * time.Minute, Key: middleware.ByIP()}
	for _, tc := range []struct {
		name   string
		rules  []middleware.Rule
		admits string // RateLimit while admitted
		limits string // RateLimit on the 429, RETRY standing for its Retry-After
	}{
		{"user name alone", []middleware.Rule{user}, "", `"login-user";r=0;t=RETRY`},
		{"beside the address", []middleware.Rule{user, ip}, `"login-ip";r=`, `"login-user";r=0;t=RETRY, "login-ip";r=96;t=1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.Do(t, "FLUSHDB")
			h := limited(t, middleware.LoginLimit, store, middleware.RateLimitConfig{Rules: tc.rules})
			for i := range 4 {
				r := httptest.NewRequest("POST", "/login", strings.NewReader("username=alice&password=guess"))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				r.RemoteAddr = "198.51.100.7:4444"
				w := serve(h, r)
				got := w.Header().Get("RateLimit")
				if i < 3 {
					if w.Code != 200 || strings.Contains(got, "login-user") || !strings.HasPrefix(got, tc.admits) {
						t.Errorf("attempt %d = %d, RateLimit %q; want 200 and %q, no login-user", i+1, w.Code, got, tc.admits)
					}
					continue
				}
				// The windows end in 60 and 120 seconds, give or take the
				// test's own time: t counts whole seconds, rounded up.
				retry := w.Header().Get("Retry-After")
				want := strings.ReplaceAll(tc.limits, "RETRY", retry)
				if w.Code != http.StatusTooManyRequests || (retry != "60" && retry != "59") || !strings.HasPrefix(got, want) {
					t.Errorf("attempt 4 = %d, RateLimit %q, Retry-After %q; want 429, %q..., 60", w.Code, got, retry, want)
				}
			}
		})
	}
}

// TestRateLimitRetryAfterAdmits refuses a request over one rule while
// another rule is exactly at its limit: Retry-After is the later of the
// two windows' ends, since the rule at its limit refuses the next request
// too: with the end of the exceeded window alone, a client that waited
// as told would be refused again.
func TestRateLimitRetryAfterAdmits(t *testing.T) {
	srv := redistest.Start(t)
	h := limited(t, middleware.RateLimit, rateStore(t, srv.Addr(), 2*time.Second), middleware.RateLimitConfig{
		Rules: []middleware.Rule{
			{Name: "burst", Limit: 1, Window: 2 * time.Second, Key: middleware.ByIP()},
			{Name: "hour", Limit: 2, Window: time.Hour, Key: middleware.ByIP()},
		},
	})
	get := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/api", nil)
		r.RemoteAddr = "192.0.2.1:1"
		return serve(h, r)
	}
	if w := get(); w.Code != 200 {
		t.Fatalf("first request: %d, want 200", w.Code)
	}
	w := get() // over burst, and the second of hour's two
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("second request: %d, want 429", w.Code)
	}
	retry, err := strconv.Atoi(w.Header().Get("Retry-After"))
	if err != nil || retry < 3500 {
		t.Errorf("Retry-After %q with hour's window at its limit: want about 3600 (hour's window end), not burst's 2", w.Header().Get("Retry-After"))
	}
}

// TestRateLimitRetryAfterNested refuses a request in a limiter inside
// another whose rule is exactly at its limit: Retry-After is the outer
// window's end, since the outer rule refuses the next request too: with
// the inner window's alone, a client that waited as told would be refused
// again. With the outer rule below its limit, the inner window's end.
func TestRateLimitRetryAfterNested(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), 2*time.Second)
	build := func(rule middleware.Rule, next http.Handler) http.Handler {
		mw, err := middleware.RateLimit(store, middleware.RateLimitConfig{Rules: []middleware.Rule{rule}, Secret: rateSecret})
		if err != nil {
			t.Fatal(err)
		}
		return mw(next)
	}
	for _, c := range []struct {
		siteLimit int
		want      func(int) bool
		what      string
	}{
		{2, func(s int) bool { return s >= 55 && s <= 60 }, "about 60, the site rule's window end"},
		{3, func(s int) bool { return s >= 1 && s <= 3 }, "about 3, the login rule's"},
	} {
		srv.Do(t, "FLUSHALL")
		site := middleware.Rule{Name: "site", Limit: c.siteLimit, Window: time.Minute, Key: middleware.ByIP()}
		login := middleware.Rule{Name: "login", Limit: 1, Window: 3 * time.Second, Key: middleware.ByIP()}
		h := build(site, build(login, okHandler))
		get := func() *httptest.ResponseRecorder {
			r := httptest.NewRequest("GET", "/login", nil)
			r.RemoteAddr = "192.0.2.1:1"
			return serve(h, r)
		}
		if w := get(); w.Code != 200 {
			t.Fatalf("site limit %d: first request %d, want 200", c.siteLimit, w.Code)
		}
		w := get()
		retry, err := strconv.Atoi(w.Header().Get("Retry-After"))
		if w.Code != http.StatusTooManyRequests || err != nil || !c.want(retry) {
			t.Errorf("site limit %d: second request %d, Retry-After %q (RateLimit %q), want 429 and %s",
				c.siteLimit, w.Code, w.Header().Get("Retry-After"), w.Header().Get("RateLimit"), c.what)
		}
	}
}

// TestRateLimitRetryAfterNestedNamed refuses a request in a limiter inside
// a login limiter whose rule keyed by the user name is exactly at its
// limit: Retry-After is the inner window's end, since the RateLimit field
// leaves rules keyed by a name out and nothing would explain a longer
// wait, which would tell any sender of the name that it is at its limit.
func TestRateLimitRetryAfterNestedNamed(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), 2*time.Second)
	inner, err := middleware.RateLimit(store, middleware.RateLimitConfig{Secret: rateSecret,
		Rules: []middleware.Rule{{Name: "burst", Limit: 1, Window: 3 * time.Second, Key: middleware.ByIP()}}})
	if err != nil {
		t.Fatal(err)
	}
	outer, err := middleware.LoginLimit(store, middleware.RateLimitConfig{Secret: rateSecret,
		Rules: []middleware.Rule{{Name: "login-user", Limit: 2, Window: time.Minute, Key: middleware.ByFormField("username")}}})
	if err != nil {
		t.Fatal(err)
	}
	h := outer(inner(okHandler))
	post := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/login", strings.NewReader("username=alice"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = "192.0.2.1:1"
		return serve(h, r)
	}
	if w := post(); w.Code != 200 {
		t.Fatalf("first request %d, want 200", w.Code)
	}
	w := post() // login-user at its limit, burst over
	retry, err := strconv.Atoi(w.Header().Get("Retry-After"))
	if w.Code != http.StatusTooManyRequests || err != nil || retry < 1 || retry > 3 {
		t.Errorf("second request %d, Retry-After %q (RateLimit %q), want 429 and burst's 3 at most",
			w.Code, w.Header().Get("Retry-After"), w.Header().Get("RateLimit"))
	}
}

// TestRateLimitWindowShortened refuses a client in a window of one hour,
// then serves it through a limiter whose rule of the same name has a
// window of two seconds, as after a configuration change: the open window
// ends within the new one, and waiting Retry-After admits the client,
// rather than the old window's hour standing with t past the policy's w.
func TestRateLimitWindowShortened(t *testing.T) {
	srv := redistest.Start(t)
	store := rateStore(t, srv.Addr(), 2*time.Second)
	limiter := func(window time.Duration) http.Handler {
		return limited(t, middleware.RateLimit, store, middleware.RateLimitConfig{
			Rules: []middleware.Rule{{Name: "login", Limit: 1, Window: window, Key: middleware.ByIP()}},
		})
	}
	get := func(h http.Handler) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/login", nil)
		r.RemoteAddr = "192.0.2.1:1"
		return serve(h, r)
	}
	hour := limiter(time.Hour)
	get(hour)
	if w := get(hour); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "3600" {
		t.Fatalf("second request in an hour's window = %d, Retry-After %q; want 429, 3600", w.Code, w.Header().Get("Retry-After"))
	}
	short := limiter(2 * time.Second)
	w := get(short)
	retry, err := strconv.Atoi(w.Header().Get("Retry-After"))
	if w.Code != http.StatusTooManyRequests || err != nil || retry < 1 || retry > 2 {
		t.Fatalf("with the window made 2s = %d, Retry-After %q (RateLimit %q); want 429 within the new window",
			w.Code, w.Header().Get("Retry-After"), w.Header().Get("RateLimit"))
	}
	time.Sleep(time.Duration(retry) * time.Second)
	if w := get(short); w.Code != http.StatusOK {
		t.Errorf("after waiting Retry-After %ds = %d, want 200", retry, w.Code)
	}
}

// TestRateLimitFormParsedThenMultipart parses the form in a middleware
// before the limiter, which leaves a multipart body unread, and reads
// the user name in the handler after ParseMultipartForm: every attempt
// is counted by the name the handler sees. A key that read only the
// parsed form, which holds no name there, would count no attempt.
func TestRateLimitFormParsedThenMultipart(t *testing.T) {
	srv := redistest.Start(t)
	lim, err := middleware.LoginLimit(rateStore(t, srv.Addr(), 2*time.Second), middleware.RateLimitConfig{Secret: rateSecret,
		Rules: []middleware.Rule{{Name: "user", Limit: 3, Window: time.Minute, Key: middleware.ByFormField("username")}}})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]int)
	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		seen[r.FormValue("username")]++
	})
	parseFirst := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.ParseForm()
			next.ServeHTTP(w, r)
		})
	}
	h := parseFirst(lim(login))
	const boundary = "xYzZY"
	body := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nvictim\r\n" +
		"--" + boundary + "\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nguess\r\n--" + boundary + "--\r\n"
	admitted := 0
	for range 20 {
		r := httptest.NewRequest("POST", "/login?csrf=1", strings.NewReader(body))
		r.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
		if w := serve(h, r); w.Code == 200 {
			admitted++
		}
	}
	if admitted != 3 || seen["victim"] != 3 {
		t.Errorf("20 multipart guesses for one name after ParseForm, limit 3: %d admitted, the handler saw %v; want 3 for victim", admitted, seen)
	}
}

// TestRateLimitOnTooLarge has OnTooLarge write the answer to a body over
// MaxBody, as the example's login page does: the hook's answer, the handler
// not run, nothing counted.
func TestRateLimitOnTooLarge(t *testing.T) {
	srv := redistest.Start(t)
	h := limited(t, middleware.LoginLimit, rateStore(t, srv.Addr(), 2*time.Second), middleware.RateLimitConfig{
		Rules:   []middleware.Rule{{Name: "user", Limit: 5, Window: time.Minute, Key: middleware.ByFormField("username")}},
		MaxBody: 64,
		OnTooLarge: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			io.WriteString(w, "our own page")
		},
	})
	r := httptest.NewRequest("POST", "/login", strings.NewReader("username=alice&password="+strings.Repeat("x", 100)))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := serve(h, r)
	if w.Code != http.StatusRequestEntityTooLarge || w.Body.String() != "our own page" {
		t.Errorf("a body over MaxBody with OnTooLarge: %d %q, want 413 and the hook's page", w.Code, w.Body.String())
	}
	if keys := rateKeys(t, srv); len(keys) != 0 {
		t.Errorf("a body over MaxBody was counted: %q", keys)
	}
}

// TestRateLimitStagesConcurrency sends 400 concurrent logins for one user
// name through four instances, from eight addresses, rules by the name
// (limit 30) and by the address (limit 20): the two stages still admit
// exactly the name's limit, and the name's counter counts only requests
// its address admitted (the 160 the address rules let through, 20 per
// address), never one an address refused.
func TestRateLimitStagesConcurrency(t *testing.T) {
	srv := redistest.Start(t)
	const (
		instances = 4
		requests  = 400
		addresses = 8
		perName   = 30
		perIP     = 20
	)
	handlers := make([]http.Handler, instances)
	for i := range handlers {
		handlers[i] = limited(t, middleware.LoginLimit, rateStore(t, srv.Addr(), 5*time.Second), middleware.RateLimitConfig{
			Rules: []middleware.Rule{
				{Name: "login-user", Limit: perName, Window: time.Hour, Key: middleware.ByJSONField("username")},
				{Name: "login-ip", Limit: perIP, Window: time.Hour, Key: middleware.ByIP()},
			},
		})
	}
	var (
		mu    sync.Mutex
		codes = make(map[int]int)
		wg    sync.WaitGroup
	)
	start := make(chan struct{})
	for i := range requests {
		wg.Go(func() {
			<-start
			r := httptest.NewRequest("POST", "/api/login", strings.NewReader(`{"username":"alice","password":"guess-`+strconv.Itoa(i)+`"}`))
			r.RemoteAddr = fmt.Sprintf("192.0.2.%d:1", 1+i%addresses)
			w := serve(handlers[i%instances], r)
			mu.Lock()
			codes[w.Code]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if codes[200] != perName || codes[429] != requests-perName {
		t.Errorf("answers %v, want exactly %d × 200 and the other %d × 429", codes, perName, requests-perName)
	}
	// The name's counter holds what reached the second stage: the
	// requests the address rules admitted.
	var name int64
	for _, k := range rateKeys(t, srv) {
		if strings.HasSuffix(k, ":login-user") {
			name, _ = redis.Int64(srv.Do(t, "GET", k), nil)
		}
	}
	if name != addresses*perIP {
		t.Errorf("the name's counter = %d, want %d (the requests the address rules admitted)", name, addresses*perIP)
	}
}

// TestRateLimitByName counts logins by the user name of HTTP Basic
// authentication, which anyone may send: the name's state stays out of the
// RateLimit header (where the first probe would read its owner's sign-in),
// names that strings.EqualFold takes as equal count together, and an
// address past its own limit spends none of the name's attempts, so that
// its owner still gets in.
func TestRateLimitByName(t *testing.T) {
	srv := redistest.Start(t)
	h := limited(t, middleware.LoginLimit, rateStore(t, srv.Addr(), 2*time.Second), middleware.RateLimitConfig{Rules: []middleware.Rule{
		{Name: "login-user", Limit: 3, Window: time.Minute, Key: middleware.ByName(func(r *http.Request) string { u, _, _ := r.BasicAuth(); return u })},
		{Name: "login-ip", Limit: 2, Window: time.Minute, Key: middleware.ByIP()},
	}})
	login := func(user, addr string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/login", nil)
		r.SetBasicAuth(user, "pw")
		r.RemoteAddr = addr
		return serve(h, r)
	}
	login("bob", "198.51.100.1:1") // the owner signs in
	w := login("BOB ", "203.0.113.7:1")
	if got := w.Header().Get("RateLimit"); w.Code != 200 || got != `"login-ip";r=1;t=60` {
		t.Errorf("a probe of bob's name = %d, RateLimit %q; want 200 and the address's state alone", w.Code, got)
	}
	if got := w.Header().Get("RateLimit-Policy"); got != `"login-user";q=3;w=60, "login-ip";q=2;w=60` {
		t.Errorf("RateLimit-Policy = %q, want both rules", got)
	}
	login("bob", "203.0.113.7:1") // the address's second: bob's name has had 3 attempts
	if w := login("bob", "198.51.100.1:2"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("bob's name's fourth attempt = %d, want 429", w.Code)
	}
	srv.Do(t, "FLUSHDB")
	login("bob", "203.0.113.7:1")
	login("bob", "203.0.113.7:1")
	for range 5 { // over the address's limit: bob's name is not counted
		if w := login("bob", "203.0.113.7:1"); w.Code != http.StatusTooManyRequests {
			t.Fatalf("a login from an address past its limit = %d, want 429", w.Code)
		}
	}
	if w := login("Bob", "198.51.100.1:2"); w.Code != 200 {
		t.Errorf("bob's login after 5 refused from another address, his name having had 2 attempts = %d, want 200", w.Code)
	}
}
