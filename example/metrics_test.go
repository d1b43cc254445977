package main

import (
	"encoding/base64"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/redisstore"
)

// scrape gets GET /metrics over HTTP and returns its samples: the series
// as the text format writes it (name{label="value",...}, labels in the
// order the format gives them, which is by name but le last) to its value.
func (e *e2e) scrape() map[string]float64 {
	e.t.Helper()
	r := e.send(&http.Client{Timeout: 10 * time.Second}, "GET", "/metrics", "")
	if r.code != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		e.t.Fatalf("GET /metrics = %d %q, want 200 in the text format:\n%s", r.code, r.header.Get("Content-Type"), r.body)
	}
	samples := make(map[string]float64)
	for line := range strings.Lines(r.body) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// The value is the last field: the text format writes no
		// timestamps here, and label values may hold spaces.
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			e.t.Fatalf("GET /metrics: line %q is no sample", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			e.t.Fatalf("GET /metrics: line %q is no sample: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return samples
}

// forge returns token with the last byte of its MAC changed: a token in
// the right format, signed with no key the example knows, as an attacker
// who altered a cookie would send.
func forge(t *testing.T, token string) string {
	t.Helper()
	b, err := base64.URLEncoding.DecodeString(token)
	if err != nil || len(b) == 0 {
		t.Fatalf("token %q is not base64url: %v", token, err)
	}
	b[len(b)-1] ^= 1
	return base64.URLEncoding.EncodeToString(b)
}

// TestMetricsAfterScriptedTraffic runs the example as `make run` wires it
// on a real redis-server, drives a scripted session through its routes
// (2 logins, 4 authenticated reads, 1 forged token, 1 logout, then a
// Redis outage with 1 read and 1 login), scrapes GET /metrics over HTTP before and
// after, and checks that every sessionkit series moved by exactly what
// the example's handlers do for that traffic, and no other one moved.
func TestMetricsAfterScriptedTraffic(t *testing.T) {
	e := startExample(t)
	alice, bob := noRedirects(), noRedirects() // browsers, each with its cookie jar
	stranger := &http.Client{Timeout: 10 * time.Second}

	before := e.scrape()
	// newApp sets the Observer before redisstore.Open, so the start-up
	// checks of Redis are already counted: Ping, then PingCounter, the two
	// store calls before the script, on the one connection dialled so far.
	for k, want := range map[string]float64{
		`sessionkit_store_operation_duration_seconds_count{op="ping"}`: 2,
		`sessionkit_redis_dials_total`:                                 1,
		`sessionkit_redis_dial_errors_total`:                           0,
	} {
		if got, ok := before[k]; !ok || got != want {
			t.Errorf("before the script: %s = %v (present %v), want %v", k, got, ok, want)
		}
	}

	// 2 logins, one through the API and one through the form. Neither
	// request carries a token, so the middleware loads nothing; the login
	// limit counts each (rate_limit, two calls: the address's rule, then,
	// as it admitted the login, the user name's); each
	// session.Create is one store call, add_user_session (the record and
	// the user's index in one transaction: no session limit is set), and
	// one created event.
	r := e.send(alice, "POST", "/api/login", `{"username":"alice","password":"wonderland"}`)
	token, _ := e.json(r)["token"].(string)
	if r.code != http.StatusOK || token == "" {
		t.Fatalf("POST /api/login = %d %s, want 200 with a token", r.code, r.body)
	}
	if r := e.send(bob, "POST", "/login", "username=bob&password=builder"); r.code != http.StatusSeeOther {
		t.Fatalf("POST /login = %d, want 303", r.code)
	}

	// 4 authenticated reads of GET /api/me with the session cookie: one
	// load each (a GETEX), nothing written (no value changed, and the
	// last-seen time is seconds old, well within LastSeenInterval).
	for _, c := range []struct {
		client *http.Client
		user   string
	}{{alice, "alice"}, {bob, "bob"}, {alice, "alice"}, {bob, "bob"}} {
		if r := e.send(c.client, "GET", "/api/me", ""); r.code != http.StatusOK || e.json(r)["user_id"] != c.user {
			t.Fatalf("GET /api/me as %s = %d %s, want 200", c.user, r.code, r.body)
		}
	}

	// 1 forged token: alice's with its MAC altered. The Manager refuses
	// it before any store call (bad_signature); the request is anonymous
	// and RequireAuth answers 401.
	if r := e.send(stranger, "GET", "/api/me", "", "Authorization", "Bearer "+forge(t, token)); r.code != http.StatusUnauthorized {
		t.Fatalf("GET /api/me with a forged token = %d %s, want 401", r.code, r.body)
	}

	// 1 logout: the middleware loads alice's session (load), Destroy
	// deletes the record and its index entry (remove_user_session) and
	// counts a destroyed event.
	if r := e.send(alice, "POST", "/api/logout", ""); r.code != http.StatusNoContent {
		t.Fatalf("POST /api/logout = %d %s, want 204", r.code, r.body)
	}

	// The outage: redis-server killed. Bob's read with his valid cookie
	// tries one load, which fails as unavailable (its pooled connection
	// is dead, and dialling a new one is refused); the request goes on
	// anonymous (requests_anonymous_on_outage) and RequireAuth answers 503
	// with Retry-After, never 401. Nothing is written, so no commit
	// failure.
	e.redis.Stop(t)
	if r := e.send(bob, "GET", "/api/me", ""); r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("GET /api/me with Redis down = %d Retry-After %q, want 503 with Retry-After", r.code, r.header.Get("Retry-After"))
	}
	// A login during the outage: the login limit's count fails as
	// unavailable, and the limit fails closed (503, outcome "refused").
	if r := e.send(stranger, "POST", "/api/login", `{"username":"alice","password":"wonderland"}`); r.code != http.StatusServiceUnavailable {
		t.Fatalf("POST /api/login with Redis down = %d %s, want 503", r.code, r.body)
	}

	// /metrics needs no Redis: it answers during the outage. The pool
	// series are one PoolStats snapshot per scrape, and a scrape sends
	// Redis nothing, so the snapshots around it agree with it.
	pool := e.app.store.PoolStats()
	after := e.scrape()
	if again := e.app.store.PoolStats(); again != pool {
		t.Fatalf("PoolStats changed across a scrape with no traffic: %+v, then %+v", pool, again)
	}

	want := map[string]float64{
		`sessionkit_sessions_total{event="created"}`:   2, // the 2 logins
		`sessionkit_sessions_total{event="destroyed"}`: 1, // the logout

		`sessionkit_tokens_rejected_total{reason="bad_signature"}`: 1, // the forged token

		`sessionkit_requests_anonymous_on_outage_total`: 1, // bob's read during the outage

		`sessionkit_ratelimit_outages_total{outcome="refused"}`: 1, // the login during the outage

		`sessionkit_store_operation_duration_seconds_count{op="add_user_session"}`:    2, // the 2 logins
		`sessionkit_store_operation_duration_seconds_count{op="load"}`:                6, // 4 reads, the logout, the outage read
		`sessionkit_store_operation_duration_seconds_count{op="remove_user_session"}`: 1, // the logout
		`sessionkit_store_operation_duration_seconds_count{op="rate_limit"}`:          5, // 2 for each login, 1 for the outage login (the address's count failed)

		`sessionkit_store_errors_total{class="unavailable",op="load"}`:       1, // the outage read
		`sessionkit_store_errors_total{class="unavailable",op="rate_limit"}`: 1, // the outage login

		// Each op's +Inf bucket counts every call, as its _count does.
		`sessionkit_store_operation_duration_seconds_bucket{op="add_user_session",le="+Inf"}`:    2,
		`sessionkit_store_operation_duration_seconds_bucket{op="load",le="+Inf"}`:                6,
		`sessionkit_store_operation_duration_seconds_bucket{op="remove_user_session",le="+Inf"}`: 1,
		`sessionkit_store_operation_duration_seconds_bucket{op="rate_limit",le="+Inf"}`:          5,
	}
	moved := make(map[string]float64)
	for k, v := range after {
		if !strings.HasPrefix(k, "sessionkit_") {
			continue // the Go runtime and process series move on their own
		}
		if _, ok := before[k]; !ok {
			t.Errorf("%s = %v appeared after the script: every sessionkit series exists from the start", k, v)
		}
		if d := v - before[k]; d != 0 {
			moved[k] = d
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok && strings.HasPrefix(k, "sessionkit_") {
			t.Errorf("%s disappeared after the script", k)
		}
	}
	for k, v := range moved {
		switch {
		case strings.HasPrefix(k, "sessionkit_redis_"):
			// Checked against PoolStats below.
		case strings.HasPrefix(k, "sessionkit_store_operation_duration_seconds_sum{"):
			// The time the calls took: positive, for the ops called only.
			count := strings.Replace(k, "_sum{", "_count{", 1)
			if want[count] == 0 || v <= 0 {
				t.Errorf("%s moved by %v, want a positive amount only for the ops called", k, v)
			}
		case strings.HasPrefix(k, "sessionkit_store_operation_duration_seconds_bucket{") && !strings.Contains(k, `le="+Inf"`):
			// A finite bucket counts the calls at most its bound long:
			// at most as many as the op's calls.
			op := k[strings.Index(k, "{"):strings.Index(k, ",le=")] + "}"
			if calls := want["sessionkit_store_operation_duration_seconds_count"+op]; v < 0 || v > calls {
				t.Errorf("%s moved by %v, want 0 to %v", k, v, calls)
			}
		default:
			if v != want[k] {
				t.Errorf("%s moved by %v, want %v", k, v, want[k])
			}
		}
	}
	for k, w := range want {
		if _, ok := moved[k]; !ok {
			t.Errorf("%s moved by 0, want %v (present before %v, after %v)", k, w, before[k], after[k])
		}
	}

	// The pool series: present, and the Store's own snapshot. The script
	// sent one request at a time, so no call waited and every connection
	// went back to the pool; the outage read dialled and failed at least
	// once (a failed dial is a dial too).
	for k, want := range map[string]float64{
		`sessionkit_redis_pool_connections{state="in_use"}`: 0,
		`sessionkit_redis_pool_connections{state="idle"}`:   float64(pool.Idle),
		`sessionkit_redis_pool_max_connections`:             redisstore.DefaultMaxActive, // the example sets no pool size
		`sessionkit_redis_pool_waits_total`:                 0,
		`sessionkit_redis_pool_wait_seconds_total`:          0,
		`sessionkit_redis_dials_total`:                      float64(pool.Dials),
		`sessionkit_redis_dial_errors_total`:                float64(pool.DialErrors),
	} {
		if got, ok := after[k]; !ok || got != want {
			t.Errorf("after the script: %s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	dials := after[`sessionkit_redis_dials_total`] - before[`sessionkit_redis_dials_total`]
	dialErrors := after[`sessionkit_redis_dial_errors_total`] - before[`sessionkit_redis_dial_errors_total`]
	if dialErrors < 1 || dials < dialErrors {
		t.Errorf("across the outage: dials_total moved by %v and dial_errors_total by %v, want at least 1 failed dial, each a dial", dials, dialErrors)
	}
	if after[`sessionkit_redis_dials_total`]-after[`sessionkit_redis_dial_errors_total`] < 1 {
		t.Errorf("after the script: %v dials, %v failed: want at least one that succeeded", after[`sessionkit_redis_dials_total`], after[`sessionkit_redis_dial_errors_total`])
	}

	// The Go runtime and process collectors are registered too.
	for _, k := range []string{"go_goroutines", "process_start_time_seconds"} {
		if _, ok := after[k]; !ok {
			t.Errorf("GET /metrics lacks %s", k)
		}
	}
}

// TestMetricsNeedNoSession sends GET /metrics as a probe is sent, with a
// live session's cookie and token and a cross-site header: it answers 200
// in the text format, loads no session (Redis gets no command), sets no
// cookie; a method other than GET or HEAD gets 405.
func TestMetricsNeedNoSession(t *testing.T) {
	e := startExample(t)
	c := noRedirects()
	if r := e.send(c, "POST", "/login", "username=alice&password=wonderland"); r.code != http.StatusSeeOther {
		t.Fatalf("POST /login = %d", r.code)
	}
	token, _ := e.apiLogin("alice", "wonderland")

	e.redis.ResetStats(t)
	r := e.send(c, "GET", "/metrics", "", "Authorization", "Bearer "+token, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	if r.code != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %d %q, want 200 in the text format", r.code, r.header.Get("Content-Type"))
	}
	if !strings.Contains(r.body, "\nsessionkit_sessions_total{event=\"created\"} 2\n") {
		t.Errorf("GET /metrics after 2 logins lacks sessionkit_sessions_total{event=\"created\"} 2:\n%s", r.body)
	}
	if sc := r.header.Values("Set-Cookie"); len(sc) > 0 {
		t.Errorf("GET /metrics set cookies %q, want none", sc)
	}
	if calls := e.redis.Calls(t); !maps.Equal(calls, map[string]int64{}) {
		t.Errorf("GET /metrics sent Redis %v, want nothing", calls)
	}
	if r := e.send(c, "POST", "/metrics", ""); r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /metrics = %d Allow %q, want 405 Allow GET, HEAD", r.code, r.header.Get("Allow"))
	}
	if r := e.send(c, "HEAD", "/metrics", ""); r.code != http.StatusOK {
		t.Errorf("HEAD /metrics = %d, want 200", r.code)
	}
}
