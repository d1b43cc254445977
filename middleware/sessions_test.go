package middleware_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

func TestLoginReadLogout(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	if got := h.do(c, "GET", "/public", nil).body; got != "anonymous" {
		t.Errorf("GET /public before login = %q, want anonymous", got)
	}
	id, _ := h.login(c, "alice")
	if !h.exists(id) {
		t.Fatal("no record in Redis after login")
	}
	if got := h.do(c, "GET", "/me", nil); got.code != 200 || got.body != "alice" {
		t.Errorf("GET /me = %d %q, want 200 alice", got.code, got.body)
	}
	cookies := c.Jar.Cookies(mustURL(h.srv.URL))
	resp := h.do(c, "POST", "/logout", nil)
	if resp.code != http.StatusNoContent {
		t.Fatalf("POST /logout = %d, want 204", resp.code)
	}
	if h.exists(id) {
		t.Error("record still in Redis after logout")
	}
	if sc := resp.header.Get("Set-Cookie"); !strings.Contains(sc, "Max-Age=0") {
		t.Errorf("logout Set-Cookie = %q, want an expired cookie", sc)
	}
	if got := h.do(c, "GET", "/me", nil).code; got != http.StatusUnauthorized {
		t.Errorf("GET /me after logout = %d, want 401", got)
	}
	// Replaying the old cookie is no better.
	replay := h.client()
	replay.Jar.SetCookies(mustURL(h.srv.URL), cookies)
	if got := h.do(replay, "GET", "/me", nil).code; got != http.StatusUnauthorized {
		t.Errorf("GET /me with the logged-out cookie = %d, want 401", got)
	}
}

func TestCookieAttributes(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	resp := h.do(h.client(), "POST", "/login?user=alice", nil)
	sc := resp.header.Get("Set-Cookie")
	for _, want := range []string{"session=", "Path=/", "HttpOnly", "SameSite=Lax", "Max-Age="} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %q", sc, want)
		}
	}
	if strings.Contains(sc, "Domain=") {
		t.Errorf("Set-Cookie %q has a Domain", sc)
	}
	if got := resp.header.Values("Vary"); !slices.Equal(got, []string{"Cookie", "Authorization"}) {
		t.Errorf("Vary = %q, want Cookie and Authorization", got)
	}
	if got := resp.header.Values("Cache-Control"); !slices.Equal(got, []string{`private, no-cache="Set-Cookie"`}) {
		t.Errorf("Cache-Control = %q, want private, no-cache=\"Set-Cookie\"", got)
	}
}

// TestOneCommandPerRead counts, on the real server, the commands of a
// request that reads a session without changing it.
func TestOneCommandPerRead(t *testing.T) {
	tests := []struct {
		name string
		idle time.Duration
		want string
	}{
		{"idle timeout", 30 * time.Minute, "getex"},
		{"no idle timeout", -1, "get"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{idle: tc.idle})
			c := h.client()
			h.login(c, "alice")
			h.redis.ResetStats(t)
			resp := h.do(c, "GET", "/me", nil)
			if resp.code != 200 {
				t.Fatalf("GET /me = %d", resp.code)
			}
			if calls := h.redis.Calls(t); len(calls) != 1 || calls[tc.want] != 1 {
				t.Errorf("commands for one read = %v, want exactly {%s:1}", calls, tc.want)
			}
			if sc := resp.header.Get("Set-Cookie"); sc != "" {
				t.Errorf("unmodified read sent Set-Cookie %q", sc)
			}
		})
	}
}

func TestIdleExtension(t *testing.T) {
	h := newHarness(t, harnessOpts{idle: time.Hour})
	c := h.client()
	id, _ := h.login(c, "alice")
	h.redis.Do(t, "PEXPIRE", "session:"+id, 60_000) // as if idle for 59 minutes
	h.do(c, "GET", "/me", nil)
	if pttl := h.redis.Do(t, "PTTL", "session:"+id).(int64); pttl < 59*60_000 {
		t.Errorf("PTTL after a read = %d ms, want the idle timeout renewed to about 1h", pttl)
	}
}

func TestIdleTimeoutEnds(t *testing.T) {
	h := newHarness(t, harnessOpts{idle: 200 * time.Millisecond})
	c := h.client()
	id, _ := h.login(c, "alice")
	// Redis expires the record; poll for that, bounded.
	for deadline := time.Now().Add(5 * time.Second); h.exists(id); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("record still there 5s after a 200ms idle timeout")
		}
	}
	if got := h.do(c, "GET", "/me", nil).code; got != http.StatusUnauthorized {
		t.Errorf("GET /me after the idle timeout = %d, want 401", got)
	}
}

func TestBearer(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	_, token := h.login(h.client(), "bob")
	api := &http.Client{} // no jar: the token travels in the header only
	resp := h.do(api, "GET", "/me", map[string]string{"Authorization": "Bearer " + token})
	if resp.code != 200 || resp.body != "bob" {
		t.Errorf("GET /me with Bearer = %d %q, want 200 bob", resp.code, resp.body)
	}
	if sc := resp.header.Get("Set-Cookie"); sc != "" {
		t.Errorf("Bearer read sent Set-Cookie %q", sc)
	}
}

// TestBadTokensCostNothing sends forged, altered and malformed tokens and
// checks that Redis ran no command for them.
func TestBadTokensCostNothing(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	_, token := h.login(h.client(), "alice")
	altered := []byte(token)
	altered[10] ^= 1
	bad := map[string]string{
		"altered":         string(altered),
		"truncated":       token[:len(token)-1],
		"garbage":         "not-a-token",
		"empty":           "",
		"glob":            "*",
		"glob characters": "a*b?[c]" + token[7:],
		"oversized":       strings.Repeat("A", 5000),
		"session key":     "session:abc",
		"other key space": "user:alice:sessions",
		"unsigned token":  strings.Repeat("A", 43),
	}
	h.redis.ResetStats(t)
	for name, v := range bad {
		for _, hdr := range []map[string]string{{"Cookie": "session=" + v}, {"Authorization": "Bearer " + v}} {
			resp := h.do(&http.Client{}, "GET", "/me", hdr)
			if resp.code != http.StatusUnauthorized {
				t.Errorf("%s token in %v: GET /me = %d, want 401", name, hdr, resp.code)
			}
			if sc := resp.header.Values("Set-Cookie"); len(sc) != 0 {
				t.Errorf("%s token in %v: Set-Cookie %q, want none (the browser may hold a newer cookie)", name, hdr, sc)
			}
		}
	}
	if n := h.redis.TotalCalls(t); n != 0 {
		t.Errorf("Redis ran %d commands for bad tokens, want 0: %v", n, h.redis.Calls(t))
	}
}

func TestFixation(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	bobID, _ := h.login(c, "bob")
	aliceID, _ := h.login(c, "alice") // same browser, bob's cookie still in it
	if aliceID == bobID {
		t.Fatal("login reused the session id")
	}
	if h.exists(bobID) {
		t.Error("the session the login request came with is still in Redis")
	}
	if got := h.do(c, "GET", "/me", nil).body; got != "alice" {
		t.Errorf("GET /me = %q, want alice", got)
	}
}

// TestLogoutIsFinal runs a request that holds a loaded session while another
// request logs it out, then writes to it: the write must not bring the
// session back, and the late response leaves the cookie to the logout's.
func TestLogoutIsFinal(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	id, _ := h.login(c, "alice")
	loaded, release := make(chan struct{}), make(chan struct{})
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		close(loaded)
		<-release
		if err := session.Put(r.Context(), "late", 1); err != nil {
			t.Errorf("Put: %v", err)
		}
	}
	var wg sync.WaitGroup
	var slow response
	wg.Add(1)
	go func() {
		defer wg.Done()
		slow = h.do(c, "POST", "/hook", nil)
	}()
	<-loaded
	if got := h.do(c, "POST", "/logout", nil).code; got != http.StatusNoContent {
		t.Fatalf("POST /logout = %d", got)
	}
	close(release)
	wg.Wait()
	if h.exists(id) {
		t.Fatal("a request in flight during logout brought the session back")
	}
	if sc := slow.header.Get("Set-Cookie"); sc != "" {
		t.Errorf("late writer's Set-Cookie = %q, want none: only the logout expires the cookie", sc)
	}
	if got := h.do(c, "GET", "/me", nil).code; got != http.StatusUnauthorized {
		t.Errorf("GET /me after logout = %d, want 401", got)
	}
}

func TestValuesKeepTheirTypes(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	h.login(c, "alice")
	type prefs struct {
		Theme string
		Size  int
	}
	when := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		for k, v := range map[string]any{"n": 42, "big": int64(1) << 60, "f": 0.5, "ok": true, "s": "x", "b": []byte{1}, "t": when, "p": prefs{"dark", 3}} {
			if err := session.Put(ctx, k, v); err != nil {
				t.Errorf("Put(%s): %v", k, err)
			}
		}
	}
	h.do(c, "POST", "/hook", nil)
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if v, ok := session.Get[int](ctx, "n"); !ok || v != 42 {
			t.Errorf("Get[int](n) = %v, %v", v, ok)
		}
		if v, ok := session.Get[int64](ctx, "big"); !ok || v != 1<<60 {
			t.Errorf("Get[int64](big) = %v, %v", v, ok)
		}
		if v, ok := session.Get[float64](ctx, "f"); !ok || v != 0.5 {
			t.Errorf("Get[float64](f) = %v, %v", v, ok)
		}
		if v, ok := session.Get[bool](ctx, "ok"); !ok || !v {
			t.Errorf("Get[bool](ok) = %v, %v", v, ok)
		}
		if v, ok := session.Get[[]byte](ctx, "b"); !ok || len(v) != 1 || v[0] != 1 {
			t.Errorf("Get[[]byte](b) = %v, %v", v, ok)
		}
		if v, ok := session.Get[time.Time](ctx, "t"); !ok || !v.Equal(when) {
			t.Errorf("Get[time.Time](t) = %v, %v", v, ok)
		}
		if v, ok := session.Get[prefs](ctx, "p"); !ok || v != (prefs{"dark", 3}) {
			t.Errorf("Get[prefs](p) = %v, %v", v, ok)
		}
		if _, ok := session.Get[string](ctx, "n"); ok {
			t.Error("Get[string] of an int: ok = true")
		}
		if v, ok := session.Pop[string](ctx, "s"); !ok || v != "x" {
			t.Errorf("Pop[string](s) = %v, %v", v, ok)
		}
	}
	h.do(c, "POST", "/hook", nil)
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		if _, ok := session.Get[string](r.Context(), "s"); ok {
			t.Error("Pop did not remove the value from the record")
		}
		if v, ok := session.Get[int](r.Context(), "n"); !ok || v != 42 {
			t.Errorf("after Pop, Get[int](n) = %v, %v", v, ok)
		}
	}
	h.do(c, "POST", "/hook", nil)
}

func TestCorruptRecord(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	id, _ := h.login(c, "alice")
	h.redis.Do(t, "SET", "session:"+id, "\x00not json")
	resp := h.do(c, "GET", "/me", nil)
	if resp.code != http.StatusUnauthorized {
		t.Errorf("GET /me with a corrupt record = %d, want 401", resp.code)
	}
	if h.exists(id) {
		t.Error("corrupt record not deleted")
	}
	if !strings.Contains(h.logs.String(), "unreadable record") {
		t.Errorf("corrupt record not logged; log:\n%s", h.logs)
	}
}

// TestForeignKeyRecord puts a hash, as another program writing under the
// key prefix might, where a session's record is: the session is no
// session, its key is deleted and logged, with and without the
// near-cache, not an outage (503) for as long as the key lives, since
// such a key has no expiry.
func TestForeignKeyRecord(t *testing.T) {
	for _, near := range []bool{false, true} {
		t.Run(fmt.Sprintf("near-cache %v", near), func(t *testing.T) {
			srv := redistest.Start(t)
			cfg := redisstore.Config{Addr: srv.Addr(), Timeout: 2 * time.Second}
			if near {
				cfg.NearCache = redisstore.NearCache{MaxEntries: 100}
			}
			h := newHarness(t, harnessOpts{redis: srv, storeCfg: &cfg})
			c := h.client()
			id, _ := h.login(c, "alice")
			h.redis.Do(t, "DEL", "session:"+id)
			h.redis.Do(t, "HSET", "session:"+id, "field", "value")
			if resp := h.do(c, "GET", "/me", nil); resp.code != http.StatusUnauthorized {
				t.Errorf("GET /me with a hash for a record = %d, want 401", resp.code)
			}
			if n, _ := redis.Int(h.redis.Do(t, "EXISTS", "session:"+id), nil); n != 0 {
				t.Error("the hash is still there")
			}
			if !strings.Contains(h.logs.String(), "unreadable record") {
				t.Errorf("the hash was not logged; log:\n%s", h.logs)
			}
			if resp := h.do(c, "GET", "/me", nil); resp.code != http.StatusUnauthorized {
				t.Errorf("GET /me again = %d, want 401", resp.code)
			}
		})
	}
}

// TestCorruptRecordLogsNoValue drops records whose values, or times, do
// not decode, and checks that the log line of each names why without
// quoting what it could not read: encoding/json's, strconv's and time's
// errors quote the number, tag or time, which may be the app's data.
func TestCorruptRecordLogsNoValue(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	now := time.Now().UnixMilli()
	times := fmt.Sprintf(`"c":%d,"e":%d`, now, now+3_600_000)
	for secret, record := range map[string]string{
		"12345678901234567890123": `{"v":2,"user_id":"alice",` + times + `,"val":{"x":{"int":12345678901234567890123}}}`,
		"98765e999":               `{"v":2,"user_id":"alice",` + times + `,"val":{"x":{"float64":98765e999}}}`,
		"SECRETTAG6":              `{"v":2,"user_id":"alice",` + times + `,"val":{"x":{"SECRETTAG6":1}}}`,
		"NULLTAGSECRET":           `{"v":2,"user_id":"alice",` + times + `,"val":{"x":{"NULLTAGSECRET":null}}}`,
		"1999-99-99T99:99:99Z":    `{"v":2,"user_id":"alice",` + times + `,"val":{"x":{"time":"1999-99-99T99:99:99Z"}}}`,
		"4444444444444444444444":  `{"v":2,"user_id":"alice","c":4444444444444444444444,"e":1}`,
	} {
		c := h.client()
		id, _ := h.login(c, "alice")
		h.redis.Do(t, "SET", "session:"+id, record)
		if resp := h.do(c, "GET", "/me", nil); resp.code != http.StatusUnauthorized || h.exists(id) {
			t.Errorf("GET /me with the record %s = %d, deleted %v; want 401 and the record deleted", record, resp.code, !h.exists(id))
		}
		if logs := h.logs.String(); !strings.Contains(logs, "unreadable record") || strings.Contains(logs, secret) {
			t.Errorf("the record %s: log\n%s\nwant the unreadable record logged without %q", record, logs, secret)
		}
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// TestVaryKept checks that every response names Cookie and Authorization
// in Vary, also when the handler set Vary itself or added to it, once each
// whatever their case, and not beside "*".
func TestVaryKept(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, tc := range []struct {
		set, add []string
		want     []string
	}{
		{nil, nil, []string{"Cookie", "Authorization"}},
		{[]string{"Accept-Encoding"}, nil, []string{"Accept-Encoding", "Cookie", "Authorization"}},
		{[]string{"accept-encoding, cookie"}, nil, []string{"accept-encoding, cookie", "Authorization"}},
		{[]string{"*"}, nil, []string{"*"}},
		{nil, []string{"Accept-Encoding"}, []string{"Cookie", "Authorization", "Accept-Encoding"}},
		{nil, []string{"cookie, Accept", "AUTHORIZATION"}, []string{"Cookie", "Authorization", "Accept"}},
		{[]string{"Accept, accept"}, nil, []string{"Accept", "Cookie", "Authorization"}},
		{nil, []string{"*"}, []string{"*"}},
		{[]string{"Accept, *"}, nil, []string{"*"}},
	} {
		h.hooked = func(w http.ResponseWriter, r *http.Request) {
			if tc.set != nil {
				w.Header()["Vary"] = tc.set
			}
			for _, v := range tc.add {
				w.Header().Add("Vary", v)
			}
			w.Header().Set("Cache-Control", "private, max-age=60")
			io.WriteString(w, "ok")
		}
		resp := h.do(h.client(), "GET", "/hook", nil)
		if got := resp.header.Values("Vary"); !slices.Equal(got, tc.want) {
			t.Errorf("handler set Vary %q, added %q: response Vary %q, want %q", tc.set, tc.add, got, tc.want)
		}
	}
}

// TestVaryOnce sets Vary around Sessions, as a compressing middleware or a
// second Manager's Sessions does: the response names Cookie and
// Authorization once each, and a Vary of "*" stays alone.
func TestVaryOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	inner := middleware.Sessions(h.m)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	for _, tc := range []struct {
		name  string
		outer http.Handler
		want  []string
	}{
		{"Vary: *", setVary("*", inner), []string{"*"}},
		{"Vary: Cookie", setVary("Cookie", inner), []string{"Cookie", "Authorization"}},
		{"Vary: Accept-Encoding", setVary("Accept-Encoding", inner), []string{"Accept-Encoding", "Cookie", "Authorization"}},
		{"Sessions around Sessions", middleware.Sessions(h.m)(inner), []string{"Cookie", "Authorization"}},
	} {
		w := httptest.NewRecorder()
		tc.outer.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		if got := w.Result().Header.Values("Vary"); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Vary %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestTimeoutHandlerInside runs a handler that renews the session, then
// outlasts an http.TimeoutHandler inside Sessions, as the documentation
// says to nest them: the timeout's 503 carries the renewed cookie, and the
// browser stays logged in; it saves the value put before the timeout, and
// a Put after it is refused.
func TestTimeoutHandlerInside(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	h.login(c, "alice")
	renewed := make(chan struct{})
	slow := http.TimeoutHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(renewed)
		if err := session.Renew(r.Context()); err != nil {
			t.Error(err)
		}
		if err := session.Put(r.Context(), "step", "before"); err != nil {
			t.Error(err)
		}
		time.Sleep(200 * time.Millisecond)
		if err := session.Put(r.Context(), "late", "after"); !errors.Is(err, session.ErrResponseStarted) {
			t.Errorf("Put after the timeout = %v, want ErrResponseStarted", err)
		}
	}), 50*time.Millisecond, "too slow")
	srv := httptest.NewServer(middleware.Sessions(h.m)(slow))
	defer srv.Close()
	// The jar sends alice's cookie there too: cookies do not tell ports apart.
	resp := h.do(c, "GET", "/me", nil)
	if resp.code != http.StatusOK || resp.body != "alice" {
		t.Fatalf("GET /me = %d %q", resp.code, resp.body)
	}
	r, err := c.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	<-renewed
	if r.StatusCode != http.StatusServiceUnavailable || len(r.Header.Values("Set-Cookie")) != 1 {
		t.Errorf("timed-out renewal = %d, Set-Cookie %q; want 503 with the new cookie", r.StatusCode, r.Header.Values("Set-Cookie"))
	}
	if resp := h.do(c, "GET", "/me", nil); resp.code != http.StatusOK || resp.body != "alice" {
		t.Errorf("after the timed-out renewal GET /me = %d %q, want alice still logged in", resp.code, resp.body)
	}
	// The timeout's 503 committed what the handler put before it, as any
	// answer does (README, Middleware).
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		step, _ := session.Get[string](r.Context(), "step")
		late, _ := session.Get[string](r.Context(), "late")
		fmt.Fprintf(w, "%s|%s", step, late)
	}
	if resp := h.do(c, "GET", "/hook", nil); resp.body != "before|" {
		t.Errorf("values after the timed-out request: %q, want the one put before the timeout alone", resp.body)
	}
}

// TestTimeoutHandlerOutsideLogged nests the two the wrong way round,
// Sessions inside http.TimeoutHandler, with a handler that writes its body
// after the timeout: one Error line says so, however many requests do it,
// also when the handler changed the session, whose commit then fails on
// the context the timeout canceled. The right way round logs nothing.
func TestTimeoutHandlerOutsideLogged(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	logs := defaultLog(t)

	for _, change := range []bool{false, true} {
		done := make(chan error, 1)
		slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if change {
				if err := session.Put(r.Context(), "cart", "1"); err != nil {
					t.Error(err)
				}
			}
			time.Sleep(100 * time.Millisecond) // past the TimeoutHandler's 20 ms
			_, err := io.WriteString(w, "late")
			done <- err
		})
		timeout := func(next http.Handler) http.Handler {
			return http.TimeoutHandler(next, 20*time.Millisecond, "too slow")
		}
		for _, tc := range []struct {
			name    string
			handler http.Handler
			logged  int
		}{
			{"Sessions(TimeoutHandler(h))", middleware.Sessions(h.m)(timeout(slow)), 0},
			{"TimeoutHandler(Sessions(h))", timeout(middleware.Sessions(h.m)(slow)), 1},
		} {
			name := fmt.Sprintf("%s, session changed %v", tc.name, change)
			logs.Reset()
			for range 2 {
				rec := httptest.NewRecorder()
				tc.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
				// The late write fails with the timeout's error, or with
				// the commit's when that ran out of time first.
				want := http.ErrHandlerTimeout
				if change && tc.logged == 1 {
					want = session.ErrStoreUnavailable
				}
				if err := <-done; !errors.Is(err, want) || rec.Code != http.StatusServiceUnavailable {
					t.Fatalf("%s: %d, the late write's error %v; want 503 and %v", name, rec.Code, err, want)
				}
			}
			if n := strings.Count(logs.String(), "Sessions runs inside http.TimeoutHandler"); n != tc.logged {
				t.Errorf("%s: logged the nesting %d times, want %d:\n%s", name, n, tc.logged, logs.String())
			}
		}
	}
}

// TestDeadlineAroundSessionsLogged puts a deadline on the request's
// context around Sessions, as http.TimeoutHandler and chi's Timeout do,
// with a handler that finishes in time: one Warn line says so, at the
// first request, for each Sessions: were only a body written after
// TimeoutHandler's timeout logged, the mistake would go unseen until a
// slow request lost its changes. No deadline, or one inside Sessions (also
// between two Sessions of the Manager, where the outer one commits), logs
// nothing.
func TestDeadlineAroundSessionsLogged(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	logs := defaultLog(t)
	fast := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.Put(r.Context(), "cart", "1"); err != nil {
			t.Error(err)
		}
		io.WriteString(w, "ok")
	})
	timeoutHandler := func(next http.Handler) http.Handler {
		return http.TimeoutHandler(next, time.Minute, "too slow")
	}
	deadline := func(next http.Handler) http.Handler { // as chi's middleware.Timeout
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
	for _, tc := range []struct {
		name   string
		build  func() http.Handler // a new Sessions each time
		logged int
	}{
		{"TimeoutHandler(Sessions(h))", func() http.Handler { return timeoutHandler(middleware.Sessions(h.m)(fast)) }, 1},
		{"Timeout(Sessions(h))", func() http.Handler { return deadline(middleware.Sessions(h.m)(fast)) }, 1},
		{"Sessions(TimeoutHandler(h))", func() http.Handler { return middleware.Sessions(h.m)(timeoutHandler(fast)) }, 0},
		{"Sessions(Timeout(h))", func() http.Handler { return middleware.Sessions(h.m)(deadline(fast)) }, 0},
		{"Sessions(h)", func() http.Handler { return middleware.Sessions(h.m)(fast) }, 0},
		// The outer Sessions commits, outside the deadline: nothing is
		// logged.
		{"Sessions(Timeout(Sessions(h)))", func() http.Handler { return middleware.Sessions(h.m)(deadline(middleware.Sessions(h.m)(fast))) }, 0},
	} {
		logs.Reset()
		for range 2 { // two Sessions, each logging once
			handler := tc.build()
			for range 3 {
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
				if rec.Code != http.StatusOK {
					t.Fatalf("%s: %d %q, want 200", tc.name, rec.Code, rec.Body)
				}
			}
		}
		if n := strings.Count(logs.String(), "Sessions runs under a deadline"); n != 2*tc.logged {
			t.Errorf("%s: logged the deadline %d times for two Sessions, want %d:\n%s", tc.name, n, 2*tc.logged, logs.String())
		}
	}
}

// setVary returns next with Vary set to v before it runs.
func setVary(v string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", v)
		next.ServeHTTP(w, r)
	})
}

// TestNewSessionNotShared has handlers that mark their answers public
// start a session in requests without a cookie: the answer is
// Cache-Control: private too, since a shared cache could otherwise hand
// the page made for one visitor's new session to every visitor without a
// cookie (their Cookie headers, absent, do not differ); and it loses the
// headers by which a CDN or proxy caches it whatever Cache-Control says. A
// read that sets no cookie keeps the handler's headers as they were.
func TestNewSessionNotShared(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	cdn := []string{"CDN-Cache-Control", "Cloudflare-CDN-Cache-Control", "Vercel-CDN-Cache-Control", "Netlify-CDN-Cache-Control",
		"Surrogate-Control", "Edge-Control", "X-Accel-Expires"}
	for _, path := range []string{"/hook?put", "/login?user=alice", "/hook"} {
		h.hooked = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=600")
			for _, k := range cdn {
				w.Header().Set(k, "600")
			}
			if r.URL.RawQuery == "put" {
				session.Put(r.Context(), "csrf", "for this visitor only")
			}
			io.WriteString(w, "ok")
		}
		method := "GET"
		if strings.HasPrefix(path, "/login") {
			method = "POST"
		}
		resp := h.do(&http.Client{}, method, path, nil)
		cc := resp.header.Values("Cache-Control")
		sets := len(resp.header.Values("Set-Cookie")) > 0
		if private := slices.Contains(cc, `private, no-cache="Set-Cookie"`); private != sets {
			t.Errorf("%s %s: Set-Cookie %v, Cache-Control %q; want private exactly when a cookie is set", method, path, sets, cc)
		}
		if path != "/hook" && !sets {
			t.Errorf("%s %s set no cookie", method, path)
		}
		for _, k := range cdn {
			if kept := resp.header.Get(k) != ""; kept == sets {
				t.Errorf("%s %s: Set-Cookie %v, %s %q; want it dropped exactly when a cookie is set", method, path, sets, k, resp.header.Get(k))
			}
		}
	}
}

// recovering is a recovery middleware, as apps put around Sessions: a
// handler's panic becomes a 500 written through the same ResponseWriter.
func recovering(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if recover() != nil {
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// TestVaryOnPanic has a handler panic under a recovery middleware that
// answers 500: the answer still names Cookie and Authorization in Vary,
// though the session was never committed.
func TestVaryOnPanic(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	handler := recovering(middleware.Sessions(h.m)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=600")
		panic("boom")
	})))
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if got := w.Result().Header.Values("Vary"); w.Code != http.StatusInternalServerError || !slices.Equal(got, []string{"Cookie", "Authorization"}) {
		t.Errorf("after a panic: %d, Vary %q; want 500 with Vary Cookie and Authorization", w.Code, got)
	}
}

// TestPanicKeepsLogin panics in handlers behind a recovering middleware,
// after a login and after a renewal: the 500 carries the new cookie, which
// logs the browser in on its next request, and the values the handlers put
// before panicking, before the login or renewal and after it, are not
// saved. Without the cookie, the browser would keep a token that leads
// nowhere: the login (or the session it renewed) would be lost, and the
// orphaned session would still count against the user's session limit.
// Nor do Create and Renew write the values put before them with the new
// record.
func TestPanicKeepsLogin(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login-panic", func(w http.ResponseWriter, r *http.Request) {
		session.Put(r.Context(), "role", "before login")
		if _, err := session.Create(r.Context(), "alice"); err != nil {
			t.Error(err)
		}
		session.Put(r.Context(), "draft", "login")
		panic("boom")
	})
	mux.HandleFunc("POST /renew-panic", func(w http.ResponseWriter, r *http.Request) {
		session.Put(r.Context(), "role", "before renewal")
		if err := session.Renew(r.Context()); err != nil {
			t.Error(err)
		}
		session.Put(r.Context(), "draft", "renew")
		panic("boom")
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		user, _ := session.UserID(r.Context())
		draft, _ := session.Get[string](r.Context(), "draft")
		role, _ := session.Get[string](r.Context(), "role")
		io.WriteString(w, user+" draft="+draft+" role="+role)
	})
	srv := httptest.NewServer(recovering(middleware.Sessions(h.m)(mux)))
	t.Cleanup(srv.Close)
	c := h.client()
	for _, path := range []string{"/login-panic", "/renew-panic"} {
		resp, err := c.Post(srv.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError || len(resp.Cookies()) == 0 {
			t.Errorf("POST %s: %d with cookies %v, want 500 with the new session cookie", path, resp.StatusCode, resp.Cookies())
		}
		resp, err = c.Get(srv.URL + "/me")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := string(b); got != "alice draft= role=" {
			t.Errorf("after POST %s: GET /me = %q, want %q (logged in, the values put before the panic not saved)", path, got, "alice draft= role=")
		}
	}
	list, err := h.m.List(context.Background(), "alice")
	if err != nil || len(list) != 1 {
		t.Errorf("alice's sessions after a panicking login and renewal: %d, %v; want 1", len(list), err)
	}
}

// TestBearerLogoutKeepsCookie logs out through an Authorization header
// on a request that also carries a cookie of another session: the
// header's session ends, and the cookie's is left alone, in Redis and in
// the browser, also when the handler then puts a flash message (which
// would need a new cookie). The response expired the cookie (and cleared
// the site's cookies), or replaced it, while the cookie's session lived on
// in Redis. With the same token in both, the cookie is expired as before.
func TestBearerLogoutKeepsCookie(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	browser := h.client()
	cookieID, cookieToken := h.login(browser, "alice")
	apiID, apiToken := h.login(h.client(), "alice")
	_, deadToken := h.login(h.client(), "alice")
	h.do(h.client(), "POST", "/logout", map[string]string{"Authorization": "Bearer " + deadToken})

	for _, tc := range []struct {
		name, bearer string
	}{
		{"live bearer", apiToken},
		{"bearer that leads nowhere", deadToken},
	} {
		resp := h.do(h.client(), "POST", "/logout", map[string]string{
			"Authorization": "Bearer " + tc.bearer,
			"Cookie":        session.DefaultInsecureCookieName + "=" + cookieToken,
		})
		if resp.code != http.StatusNoContent || resp.header.Get("Set-Cookie") != "" || resp.header.Get("Clear-Site-Data") != "" {
			t.Errorf("%s: logout = %d, Set-Cookie %q, Clear-Site-Data %q; want 204 leaving the cookie alone",
				tc.name, resp.code, resp.header.Get("Set-Cookie"), resp.header.Get("Clear-Site-Data"))
		}
		if !h.exists(cookieID) {
			t.Fatalf("%s: the cookie's session was ended", tc.name)
		}
	}
	if h.exists(apiID) {
		t.Error("the bearer's session outlived its logout")
	}
	// A logout that then puts a flash message must not start a session
	// whose cookie replaces the browser's: the Put is refused.
	_, flashToken := h.login(h.client(), "alice")
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		if err := session.Destroy(r.Context()); err != nil {
			t.Error(err)
		}
		if err := session.Put(r.Context(), "flash", "logged out"); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Put after a Bearer logout beside another session's cookie = %v, want ErrNoSession", err)
		}
		w.WriteHeader(http.StatusNoContent)
	}
	if resp := h.do(browser, "POST", "/hook", map[string]string{"Authorization": "Bearer " + flashToken}); resp.header.Get("Set-Cookie") != "" {
		t.Error("a Bearer logout and a flash message beside another session's cookie set a cookie, want none")
	}
	if resp := h.do(browser, "GET", "/me", nil); resp.code != http.StatusOK || resp.body != "alice" {
		t.Errorf("the browser after the API's logouts: %d %q, want 200 alice", resp.code, resp.body)
	}
	resp := h.do(h.client(), "POST", "/logout", map[string]string{
		"Authorization": "Bearer " + cookieToken,
		"Cookie":        session.DefaultInsecureCookieName + "=" + cookieToken,
	})
	if resp.code != http.StatusNoContent || !strings.Contains(resp.header.Get("Set-Cookie"), "Max-Age=0") || h.exists(cookieID) {
		t.Errorf("logout with the same token in both: %d, Set-Cookie %q, session alive %v; want 204, the cookie expired, the session ended",
			resp.code, resp.header.Get("Set-Cookie"), h.exists(cookieID))
	}
}

// TestBearerResignedSameSession sends a browser's cookie together with the
// token of the same session that session.Token gave a later request, as a
// browser app does for its fetch calls: signed at another second, so the
// two differ as strings. A renewal and a logout through that request
// change the cookie, as with the same string in both: otherwise the
// browser's next request, cookie only, would get 401 after the renewal,
// and the logout would leave the dead cookie in place.
func TestBearerResignedSameSession(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	renewing, leaving := h.client(), h.client()
	_, renewCookie := h.login(renewing, "alice")
	leaveID, leaveCookie := h.login(leaving, "bob")
	time.Sleep(1100 * time.Millisecond) // Token's signature bears another second
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		tok, _ := session.Token(r.Context())
		io.WriteString(w, tok)
	}
	renewBearer := h.do(renewing, "GET", "/hook", nil).body
	leaveBearer := h.do(leaving, "GET", "/hook", nil).body
	if renewBearer == renewCookie || leaveBearer == leaveCookie {
		t.Fatal("session.Token gave the cookie's own string: the test needs another signature")
	}

	resp := h.do(renewing, "POST", "/renew", map[string]string{"Authorization": "Bearer " + renewBearer})
	if resp.code != http.StatusOK || len(resp.header.Values("Set-Cookie")) != 1 {
		t.Errorf("renewal through a re-signed Bearer of the cookie's session: %d with %d Set-Cookie; want 200 and the new cookie",
			resp.code, len(resp.header.Values("Set-Cookie")))
	}
	if got := h.do(renewing, "GET", "/me", nil); got.code != http.StatusOK || got.body != "alice" {
		t.Errorf("the browser after renewing through a re-signed Bearer: GET /me = %d %q, want 200 alice", got.code, got.body)
	}

	resp = h.do(leaving, "POST", "/logout", map[string]string{"Authorization": "Bearer " + leaveBearer})
	if resp.code != http.StatusNoContent || !strings.Contains(resp.header.Get("Set-Cookie"), "Max-Age=0") || h.exists(leaveID) {
		t.Errorf("logout through a re-signed Bearer of the cookie's session: %d, Set-Cookie %q, session alive %v; want 204, the cookie expired, the session ended",
			resp.code, resp.header.Get("Set-Cookie"), h.exists(leaveID))
	}
}

// TestBearerRenewKeepsCookie renews, and logs in, through an Authorization
// header on a request that also carries a cookie of another session: the
// response sets no cookie, so the browser keeps its own session, and the
// API client's new token (the body's, from session.Token) works while the
// one it replaced does not. A cookie set to the header's new session
// would lose the browser's session, alive in Redis, to it. With the same
// token in both, a renewal sets the cookie as before.
func TestBearerRenewKeepsCookie(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	browser := h.client()
	_, cookieToken := h.login(browser, "bob")
	for _, path := range []string{"/renew", "/login?user=alice"} {
		_, apiToken := h.login(h.client(), "alice")
		resp := h.do(browser, "POST", path, map[string]string{"Authorization": "Bearer " + apiToken})
		var out struct{ Token string }
		if err := json.Unmarshal([]byte(resp.body), &out); resp.code != http.StatusOK || err != nil {
			t.Fatalf("POST %s through Bearer = %d %q", path, resp.code, resp.body)
		}
		if sc := resp.header.Values("Set-Cookie"); len(sc) != 0 {
			t.Errorf("POST %s through Bearer beside another session's cookie: %d Set-Cookie, want none", path, len(sc))
		}
		if got := h.do(browser, "GET", "/me", nil); got.code != http.StatusOK || got.body != "bob" {
			t.Errorf("the browser after POST %s through Bearer: GET /me = %d %q, want 200 bob", path, got.code, got.body)
		}
		if got := h.do(h.client(), "GET", "/me", map[string]string{"Authorization": "Bearer " + out.Token}); got.code != http.StatusOK || got.body != "alice" {
			t.Errorf("the new token of POST %s: GET /me = %d %q, want 200 alice", path, got.code, got.body)
		}
		if got := h.do(h.client(), "GET", "/me", map[string]string{"Authorization": "Bearer " + apiToken}); got.code != http.StatusUnauthorized {
			t.Errorf("the token POST %s replaced: GET /me = %d, want 401", path, got.code)
		}
	}
	resp := h.do(browser, "POST", "/renew", map[string]string{"Authorization": "Bearer " + cookieToken})
	if resp.code != http.StatusOK || len(resp.header.Values("Set-Cookie")) != 1 {
		t.Errorf("renewal with the same token in both: %d with %d Set-Cookie; want 200 and the new cookie", resp.code, len(resp.header.Values("Set-Cookie")))
	}
	if got := h.do(browser, "GET", "/me", nil); got.code != http.StatusOK || got.body != "bob" {
		t.Errorf("the browser after its renewal through Bearer: GET /me = %d %q, want 200 bob", got.code, got.body)
	}
}

// TestCookieDropsCDNHeaders checks that no response that sets the session
// cookie keeps a header by which a CDN or proxy caches it whatever
// Cache-Control says: not when a middleware around Sessions set it, not
// when the handler set its own Cache-Control to what the commit adds, not
// under a key that is not canonical, and not on the 503 of a failed save
// that carries a login's cookie. A response that sets no cookie keeps
// them.
func TestCookieDropsCDNHeaders(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	outer := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Surrogate-Control", "max-age=600")
			next.ServeHTTP(w, r)
		})
	}
	for _, tc := range []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request)
		code    int
		cookie  bool
	}{
		{"login", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("CDN-Cache-Control", "max-age=600")
			session.Create(r.Context(), "alice")
		}, http.StatusOK, true},
		{"the handler's own Cache-Control", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", `private, no-cache="Set-Cookie"`)
			w.Header().Set("CDN-Cache-Control", "max-age=600")
			session.Create(r.Context(), "alice")
		}, http.StatusOK, true},
		{"a key that is not canonical", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["CDN-Cache-Control"] = []string{"max-age=600"}
			session.Create(r.Context(), "alice")
		}, http.StatusOK, true},
		{"a failed save after a login", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("CDN-Cache-Control", "max-age=600")
			session.Create(r.Context(), "alice")
			session.Put(r.Context(), "k", "v")
			h.redis.Do(t, "CONFIG", "SET", "maxmemory", "1")
		}, http.StatusServiceUnavailable, true},
		{"a failed save, no cookie", func(w http.ResponseWriter, r *http.Request) {
			// The 503 drops the handler's header, under whatever key, and
			// keeps the middleware's.
			w.Header()["CDN-Cache-Control"] = []string{"max-age=600"}
			session.Put(r.Context(), "k", "v")
			h.redis.Do(t, "CONFIG", "SET", "maxmemory", "1")
		}, http.StatusServiceUnavailable, false},
		{"no cookie", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("CDN-Cache-Control", "max-age=600")
		}, http.StatusOK, false},
	} {
		h.redis.Do(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
		rec := httptest.NewRecorder()
		handler := outer(middleware.Sessions(h.m)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tc.handler(w, r)
			io.WriteString(w, "ok")
		})))
		handler.ServeHTTP(rec, httptest.NewRequest("POST", "http://localhost/", nil))
		h.redis.Do(t, "CONFIG", "SET", "maxmemory", "0")
		var cdn []string
		for k, v := range rec.Header() {
			if k := http.CanonicalHeaderKey(k); k == "Cdn-Cache-Control" || k == "Surrogate-Control" {
				cdn = append(cdn, k+": "+strings.Join(v, ", "))
			}
		}
		cookie := len(rec.Header().Values("Set-Cookie")) > 0
		if rec.Code == http.StatusServiceUnavailable && !cookie && !slices.Equal(cdn, []string{"Surrogate-Control: max-age=600"}) {
			t.Errorf("%s: the 503 has %q, want the middleware's header alone", tc.name, cdn)
		}
		if rec.Code != tc.code || cookie != tc.cookie || (len(cdn) > 0) == cookie {
			t.Errorf("%s: %d, Set-Cookie %v, %q; want %d, %v, the CDN headers exactly when no cookie is set", tc.name, rec.Code, cookie, cdn, tc.code, tc.cookie)
		}
	}
}
