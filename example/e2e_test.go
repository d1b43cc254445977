package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

var _ session.Store = (*redisstore.Store)(nil)

// e2e is the example server, wired from the environment as `make run` does,
// against a real redis-server.
type e2e struct {
	t     *testing.T
	redis *redistest.Server
	url   string
	app   *app // the example's pieces, when the test built them through setup
}

func startExample(t *testing.T) *e2e {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	return startExampleWith(t, redistest.Start(t), base64.StdEncoding.EncodeToString(key))
}

// serveApp serves a on a test server, and returns the e2e of it over
// Redis r (nil when the test does not reach Redis itself); a and the
// server are closed when t ends.
func serveApp(t *testing.T, r *redistest.Server, a *app) *e2e {
	t.Helper()
	t.Cleanup(a.close)
	srv := httptest.NewServer(a.handler)
	t.Cleanup(srv.Close)
	return &e2e{t: t, redis: r, url: srv.URL, app: a}
}

// startExampleWith starts the example on server r with SESSION_KEYS keys.
func startExampleWith(t *testing.T, r *redistest.Server, keys string) *e2e {
	t.Helper()
	t.Setenv("SESSION_KEYS", keys)
	return startExampleAt(t, r, "redis://"+r.Addr())
}

// startExampleAt starts the example on the Redis of r, reached through
// url (with the credentials of an ACL user, say), with the environment
// the test has set.
func startExampleAt(t *testing.T, r *redistest.Server, url string) *e2e {
	t.Helper()
	t.Setenv("REDIS_URL", url)
	a, err := setup(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return serveApp(t, r, a)
}

type reply struct {
	code   int
	header http.Header
	body   string
}

// json decodes the JSON object in the body of r.
func (e *e2e) json(r reply) map[string]any {
	e.t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		e.t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// send sends a request; a body starting with "{" goes as JSON, any other
// non-empty body as a form.
func (e *e2e) send(c *http.Client, method, path, body string, hdr ...string) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	switch {
	case strings.HasPrefix(body, "{"):
		req.Header.Set("Content-Type", "application/json")
	case body != "":
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// withBearer returns the header that sends token as a Bearer token, for
// send.
func withBearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// alive reports whether the record of the session id is in Redis.
func (e *e2e) alive(id string) bool {
	_, ok := e.record(id)
	return ok
}

func (e *e2e) dbsize() int64 {
	e.t.Helper()
	n, _ := redis.Int64(e.redis.Do(e.t, "DBSIZE"), nil)
	return n
}

// keys returns Redis's keys by kind: sessions, the session records
// (session:*) and the users' indexes (user:*); rate, the login limits'
// counters (rate_limit:*). Any other key fails the test.
func (e *e2e) keys() (sessions, rate []string) {
	e.t.Helper()
	cursor := "0"
	for {
		reply, err := redis.Values(e.redis.Do(e.t, "SCAN", cursor, "COUNT", 1000), nil)
		if err != nil || len(reply) != 2 {
			e.t.Fatalf("SCAN = %v, %v", reply, err)
		}
		cursor, _ = redis.String(reply[0], nil)
		batch, _ := redis.Strings(reply[1], nil)
		for _, k := range batch {
			switch {
			case strings.HasPrefix(k, "session:"), strings.HasPrefix(k, "user:"):
				sessions = append(sessions, k)
			case strings.HasPrefix(k, "rate_limit:"):
				rate = append(rate, k)
			default:
				e.t.Errorf("Redis holds the unexpected key %q", k)
			}
		}
		if cursor == "0" {
			return sessions, rate
		}
	}
}

// sessionKeys returns how many session records and user indexes Redis
// holds.
func (e *e2e) sessionKeys() int {
	e.t.Helper()
	sessions, _ := e.keys()
	return len(sessions)
}

// rateKey is the form of a login limit's Redis key: a 128-bit keyed hash
// and the rule's name, so no room for an address or a user name.
var rateKey = regexp.MustCompile(`^rate_limit:[A-Za-z0-9_-]{22}:login-(user|ip)$`)

// rateCounts returns the login limits' counts in Redis, smallest first,
// and fails the test if a counter's key is not of the form rateKey, or it
// has no time to live within the window.
func (e *e2e) rateCounts() []int {
	e.t.Helper()
	_, rate := e.keys()
	counts := make([]int, 0, len(rate))
	for _, k := range rate {
		if !rateKey.MatchString(k) {
			e.t.Errorf("rate limit key %q, want the form %s", k, rateKey)
		}
		n, err := redis.Int(e.redis.Do(e.t, "GET", k), nil)
		ttl, _ := redis.Int64(e.redis.Do(e.t, "PTTL", k), nil)
		if err != nil || ttl <= 0 || ttl > loginWindow.Milliseconds() {
			e.t.Errorf("rate limit key %q = %d, %v with PTTL %d, want a count that expires within %v", k, n, err, ttl, loginWindow)
		}
		counts = append(counts, n)
	}
	slices.Sort(counts)
	return counts
}

func (e *e2e) record(id string) (map[string]any, bool) {
	e.t.Helper()
	b, err := redis.Bytes(e.redis.Do(e.t, "GET", "session:"+id), nil)
	if err == redis.ErrNil {
		return nil, false
	}
	var m map[string]any
	if err != nil || json.Unmarshal(b, &m) != nil {
		e.t.Fatalf("record of %s: %q, %v", id, b, err)
	}
	return m, true
}

func noRedirects() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

func TestHealthz(t *testing.T) {
	e := startExample(t)
	c := noRedirects()
	if r := e.send(c, "GET", "/healthz", ""); r.code != 200 || e.json(r)["status"] != "ok" {
		t.Errorf("GET /healthz = %d %s, want 200 ok", r.code, r.body)
	}
	e.redis.Stop(t)
	if r := e.send(c, "GET", "/healthz", ""); r.code != 503 || e.json(r)["status"] != "unavailable" {
		t.Errorf("GET /healthz with Redis down = %d %s, want 503 unavailable", r.code, r.body)
	}
}

func TestAPIContract(t *testing.T) {
	e := startExample(t)
	api := &http.Client{Timeout: 10 * time.Second}

	for _, body := range []string{`{"username":`, `{"username":"alice","password":"wonderland","admin":true}`, `[]`, `{"username":"alice"}`} {
		if r := e.send(api, "POST", "/api/login", body); r.code != http.StatusBadRequest {
			t.Errorf("POST /api/login %s = %d, want 400", body, r.code)
		}
	}
	const challenge = `Bearer realm="session"`
	if r := e.send(api, "POST", "/api/login", `{"username":"alice","password":"wrong"}`); r.code != http.StatusUnauthorized || e.json(r)["error"] == nil || r.header.Get("WWW-Authenticate") != challenge {
		t.Errorf("POST /api/login with a wrong password = %d %s, WWW-Authenticate %q; want 401 with an error and %q", r.code, r.body, r.header.Get("WWW-Authenticate"), challenge)
	}
	if r := e.send(api, "POST", "/api/login", `{"username":"mallory","password":"wonderland"}`); r.code != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != challenge {
		t.Errorf("POST /api/login with an unknown user = %d, WWW-Authenticate %q; want 401 and %q", r.code, r.header.Get("WWW-Authenticate"), challenge)
	}
	if n := e.sessionKeys(); n != 0 {
		t.Fatalf("failed logins left %d session keys in Redis", n)
	}
	// Counted by the login limits: the address, 6 attempts; alice, the 2
	// bodies naming her and the wrong password; mallory, 1. A body
	// without a user name counts for the address only.
	if got, want := e.rateCounts(), []int{1, 3, 6}; !slices.Equal(got, want) {
		t.Errorf("rate limit counts after the failed logins = %v, want %v", got, want)
	}
	// Trailing data, including the ']' and '}' that json.Decoder.More
	// takes for the end of the input (a user of its own, so that alice's
	// count stays below her limit).
	for _, trail := range []string{"x", "}", "]]]", " {}"} {
		body := `{"username":"trailing","password":"wonderland"}` + trail
		if r := e.send(api, "POST", "/api/login", body); r.code != http.StatusBadRequest {
			t.Errorf("POST /api/login %s = %d, want 400", body, r.code)
		}
	}

	r := e.send(api, "POST", "/api/login", `{"username":"alice","password":"wonderland"}`)
	if r.code != 200 {
		t.Fatalf("POST /api/login = %d %s, want 200", r.code, r.body)
	}
	login := e.json(r)
	token, _ := login["token"].(string)
	id, _ := login["session_id"].(string)
	if token == "" || id == "" || login["user_id"] != "alice" || login["expires_at"] == nil {
		t.Fatalf("login answer %s lacks token, session_id, user_id or expires_at", r.body)
	}
	rec, ok := e.record(id)
	if !ok || rec["user_id"] != "alice" || rec["v"] != 2.0 {
		t.Fatalf("Redis record after login = %v, %v; want v 2 for alice", rec, ok)
	}
	if n := e.sessionKeys(); n != 2 {
		t.Errorf("Redis holds %d session keys after login, want 2: the record and the user's index", n)
	}
	// The trailing-data bodies counted 4 more for the address, and 4 for
	// their user.
	if got, want := e.rateCounts(), []int{1, 4, 4, 11}; !slices.Equal(got, want) {
		t.Errorf("rate limit counts after the login = %v, want %v", got, want)
	}

	bearer := []string{"Authorization", "Bearer " + token}
	r = e.send(api, "GET", "/api/me", "", bearer...)
	me := e.json(r)
	if r.code != 200 || me["user_id"] != "alice" || me["session_id"] != id || me["created_at"] == nil || me["expires_at"] == nil {
		t.Errorf("GET /api/me = %d %s, want 200 with alice's session", r.code, r.body)
	}
	if r := e.send(api, "GET", "/api/me", ""); r.code != 401 || e.json(r)["error"] == nil {
		t.Errorf("GET /api/me without a token = %d %s, want 401 with an error", r.code, r.body)
	}

	if r := e.send(api, "POST", "/api/logout", "", bearer...); r.code != http.StatusNoContent {
		t.Errorf("POST /api/logout = %d, want 204", r.code)
	}
	if _, ok := e.record(id); ok {
		t.Error("record still in Redis after logout")
	}
	if r := e.send(api, "GET", "/api/me", "", bearer...); r.code != 401 {
		t.Errorf("GET /api/me with the logged-out token = %d, want 401", r.code)
	}
}

func TestFormContract(t *testing.T) {
	e := startExample(t)
	c := noRedirects()

	if r := e.send(c, "GET", "/", ""); r.code != 200 || !strings.Contains(r.body, `action="/login"`) {
		t.Errorf("GET / = %d, want the login form", r.code)
	}
	if r := e.send(c, "POST", "/login", "username=alice&password=nope"); r.code != http.StatusUnauthorized {
		t.Errorf("POST /login with a wrong password = %d, want 401", r.code)
	}
	r := e.send(c, "POST", "/login", "username=bob&password=builder")
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Fatalf("POST /login = %d Location %q, want 303 to /", r.code, r.header.Get("Location"))
	}
	if sc := setCookie(r, "session"); !strings.Contains(sc, "HttpOnly") {
		t.Errorf("login Set-Cookie = %q, want the session cookie", sc)
	}
	if n := e.sessionKeys(); n != 2 {
		t.Errorf("Redis holds %d session keys after login, want 2: the record and the user's index", n)
	}
	// The address, 2 attempts; alice and bob, 1 each.
	if got, want := e.rateCounts(), []int{1, 1, 2}; !slices.Equal(got, want) {
		t.Errorf("rate limit counts after 2 logins = %v, want %v", got, want)
	}
	r = e.send(c, "GET", "/", "")
	if !strings.Contains(r.body, "<strong>bob</strong>") || !strings.Contains(r.body, `action="/logout"`) {
		t.Errorf("GET / after login does not show bob's dashboard with a logout button:\n%s", r.body)
	}
	if r := e.send(c, "POST", "/logout", e.sessionForm(c)); !signedOutPage(r, noticeSignedOut) {
		t.Errorf("POST /logout = %d:\n%s\nwant the login page saying %q", r.code, r.body, noticeSignedOut)
	}
	if n := e.sessionKeys(); n != 0 {
		t.Errorf("Redis holds %d session keys after logout, want 0", n)
	}
	if r := e.send(c, "GET", "/", ""); !strings.Contains(r.body, `action="/login"`) {
		t.Error("GET / after logout does not show the login form")
	}
}

// TestRedisDown checks the outage contract of the example's API: 503 with
// Retry-After on protected routes and on the login, whose limit fails
// closed; the public login page still served to a visitor without a
// session. TestOutagePages checks the pages.
func TestRedisDown(t *testing.T) {
	e := startExample(t)
	c := noRedirects()
	r := e.send(c, "POST", "/api/login", `{"username":"alice","password":"wonderland"}`)
	token, _ := e.json(r)["token"].(string)
	e.redis.Stop(t)
	r = e.send(c, "GET", "/api/me", "", "Authorization", "Bearer "+token)
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Errorf("GET /api/me with Redis down = %d Retry-After %q, want 503 with Retry-After", r.code, r.header.Get("Retry-After"))
	}
	if r := e.send(noRedirects(), "GET", "/", ""); r.code != 200 || !strings.Contains(r.body, `action="/login"`) {
		t.Errorf("GET / without a session, Redis down = %d, want 200 with the login form", r.code)
	}
	// A login cannot be counted: the login limit fails closed.
	r = e.send(c, "POST", "/api/login", `{"username":"alice","password":"wonderland"}`)
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || e.json(r)["error"] != "rate limiter unavailable" {
		t.Errorf("POST /api/login with Redis down = %d Retry-After %q %s, want 503 JSON with Retry-After", r.code, r.header.Get("Retry-After"), r.body)
	}
}

// setCookie returns the Set-Cookie header of r that sets the cookie name,
// or "".
func setCookie(r reply, name string) string {
	for _, sc := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(sc, name+"=") {
			return sc
		}
	}
	return ""
}

// TestCrossSiteFormRejected posts the login form from another origin.
func TestCrossSiteFormRejected(t *testing.T) {
	e := startExample(t)
	r := e.send(noRedirects(), "POST", "/login", url.Values{"username": {"alice"}, "password": {"wonderland"}}.Encode(),
		"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if r.code != http.StatusForbidden {
		t.Errorf("cross-site POST /login = %d, want 403", r.code)
	}
	if n := e.dbsize(); n != 0 {
		t.Errorf("a cross-site login left %d keys in Redis", n)
	}
}
