package main

import (
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
)

// loginPolicy is the RateLimit-Policy of both logins.
const loginPolicy = `"login-user";q=5;w=900, "login-ip";q=100;w=900`

// TestLoginLimitForm fails five form logins of alice: the sixth, even with
// the right password, gets the login page with 429, saying when to try
// again, alice and next kept, a button that waits for Retry-After, and the
// rate limit headers; no session is made. The API counts alice's attempts
// together with the form. Another user name from the same address is
// still served.
func TestLoginLimitForm(t *testing.T) {
	e := startExample(t)
	c := noRedirects()
	for i := 1; i <= loginUserLimit; i++ {
		r := e.send(c, "POST", "/login", url.Values{"username": {"alice"}, "password": {"guess-" + strconv.Itoa(i)}}.Encode(), browser...)
		// RateLimit tells of the address's count only: the user name's is
		// everyone's who sends the name.
		wantState := `"login-ip";r=` + strconv.Itoa(loginIPLimit-i) + ";t="
		if r.code != http.StatusUnauthorized || r.header.Get("RateLimit-Policy") != loginPolicy || !strings.HasPrefix(r.header.Get("RateLimit"), wantState) ||
			strings.Contains(r.header.Get("RateLimit"), "login-user") {
			t.Fatalf("wrong password %d = %d RateLimit-Policy %q RateLimit %q, want 401 with %q and %s...",
				i, r.code, r.header.Get("RateLimit-Policy"), r.header.Get("RateLimit"), loginPolicy, wantState)
		}
	}

	r := e.send(c, "POST", "/login", "username=alice&password=wonderland&next=%2Fsessions", browser...)
	retry, err := strconv.Atoi(r.header.Get("Retry-After"))
	if r.code != http.StatusTooManyRequests || !isPage(r) || err != nil || retry < 1 || retry > 900 {
		t.Fatalf("6th login = %d Retry-After %q:\n%s\nwant the login page with 429 and Retry-After of at most 900 seconds", r.code, r.header.Get("Retry-After"), r.body)
	}
	for _, want := range []string{
		`role="alert">Too many sign-in attempts. Try again in 15 minutes.</p>`, `value="alice"`, `name="next" value="/sessions"`,
		`data-retry-after="` + strconv.Itoa(retry) + `" data-retry-name="alice"`, "<title>Sign in · sessionkit example</title>",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the 429 login page lacks %q:\n%s", want, r.body)
		}
	}
	// RateLimit lists the user name's rule only now that it refused: r=0
	// and t the Retry-After, which the 429 tells anyway.
	want := `"login-user";r=0;t=` + r.header.Get("Retry-After") + `, "login-ip";r=94;t=`
	if got := r.header.Get("RateLimit"); r.header.Get("RateLimit-Policy") != loginPolicy || !strings.HasPrefix(got, want) {
		t.Errorf("6th login: RateLimit-Policy %q RateLimit %q, want %q and %q...", r.header.Get("RateLimit-Policy"), got, loginPolicy, want)
	}
	if sc := r.header.Values("Set-Cookie"); len(sc) > 0 || e.sessionKeys() != 0 {
		t.Errorf("the refused login set cookies %q and left %d session keys, want none", sc, e.sessionKeys())
	}

	// The API counts the same user name, spelt as the limit folds it.
	r = e.send(&http.Client{Timeout: 10 * time.Second}, "POST", "/api/login", `{"username":" Alice","password":"wonderland"}`)
	if r.code != http.StatusTooManyRequests || e.json(r)["error"] != "too many requests" ||
		e.json(r)["retry_after"] != float64(atoi(t, r.header.Get("Retry-After"))) || r.header.Get("RateLimit-Policy") != loginPolicy ||
		!strings.HasPrefix(r.header.Get("RateLimit"), `"login-user";r=0;t=`+r.header.Get("Retry-After")+`, "login-ip";r=93;t=`) {
		t.Errorf("API login of alice after 6 form attempts = %d %s, headers %v; want 429 JSON with retry_after, Retry-After and the RateLimit headers",
			r.code, r.body, r.header)
	}
	// A body naming two users, which the handler reads as the last: the
	// limiter cannot tell which a handler reads, and counts it under
	// neither (nor the address: the counts checked below hold).
	r = e.send(&http.Client{Timeout: 10 * time.Second}, "POST", "/api/login", `{"username":"x","username":"alice","password":"wonderland"}`)
	if r.code != http.StatusBadRequest || e.json(r)["error"] != "ambiguous request body" || r.header.Values("Set-Cookie") != nil {
		t.Errorf("API login naming x, then alice = %d %s, headers %v; want 400 ambiguous request body, no cookie", r.code, r.body, r.header)
	}
	// The form, for a client that does not ask for HTML: JSON.
	r = e.send(noRedirects(), "POST", "/login", "username=alice&password=wonderland")
	if r.code != http.StatusTooManyRequests || e.json(r)["error"] != "too many requests" || r.header.Get("Retry-After") == "" {
		t.Errorf("form login of alice without Accept: text/html = %d %s, want 429 JSON with Retry-After", r.code, r.body)
	}

	// bob, from the same address, is served: 8 of its 100 attempts used.
	r = e.send(noRedirects(), "POST", "/login", "username=bob&password=builder", browser...)
	if r.code != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("RateLimit"), `"login-ip";r=91;t=`) {
		t.Errorf("bob's login from the same address = %d RateLimit %q, want 303 with 91 left for the address", r.code, r.header.Get("RateLimit"))
	}
	if got, want := e.rateCounts(), []int{1, 8, 9}; !slices.Equal(got, want) {
		t.Errorf("rate limit counts = %v, want %v: bob, alice, the address", got, want)
	}
}

// atoi returns s as an int, failing t if it is not one.
func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return n
}

// TestLoginLimitSameForUnknownUser sends six wrong logins for an existing
// user name to one example and for a user name no account has to another,
// on the form and the API in turn: attempt by attempt, the answers are the
// same (status, headers, body) but for the name in the form and the
// seconds left, so the limit says nothing about which user names exist.
func TestLoginLimitSameForUnknownUser(t *testing.T) {
	existing, unknown := startExample(t), startExample(t)
	api := &http.Client{Timeout: 10 * time.Second}
	seconds := regexp.MustCompile(`(t=|data-retry-after="|"retry_after":)[0-9]+`)
	answer := func(e *e2e, i int, user string) string {
		var r reply
		if i%2 == 1 {
			r = e.send(noRedirects(), "POST", "/login", url.Values{"username": {user}, "password": {"guess"}}.Encode(), browser...)
		} else {
			r = e.send(api, "POST", "/api/login", `{"username":"`+user+`","password":"guess"}`)
		}
		var b strings.Builder
		b.WriteString(strconv.Itoa(r.code) + "\n")
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range r.header {
				if k != "Date" && k != "Content-Length" && !yield(k) {
					return
				}
			}
		}) {
			v := strings.Join(r.header.Values(k), "; ")
			if k == "Retry-After" {
				v = "N"
			}
			b.WriteString(k + ": " + seconds.ReplaceAllString(v, "${1}N") + "\n")
		}
		b.WriteString(seconds.ReplaceAllString(strings.ReplaceAll(r.body, `value="`+user+`"`, `value="USER"`), "${1}N"))
		return b.String()
	}
	for i := 1; i <= loginUserLimit+1; i++ {
		a, b := answer(existing, i, "alice"), answer(unknown, i, "nobody")
		if a != b {
			t.Errorf("attempt %d: for an existing user name\n%s\nfor an unknown one\n%s", i, a, b)
		}
		want := "401\n"
		if i > loginUserLimit {
			want = "429\n"
		}
		if !strings.HasPrefix(a, want) {
			t.Errorf("attempt %d = %s, want %s", i, a, want)
		}
	}
}

// TestLoginLimitFailsClosed runs a second example on the same Redis as an
// ACL user that may use the sessions' keys but not the rate limit's: its
// logins cannot be counted, so they get 503 with Retry-After (the login
// page's outage version, the user name kept, for a browser) and no
// password is checked and no session made; every other route works as
// before, a session made on the first example included. Each limiter's
// warning names its route.
func TestLoginLimitFailsClosed(t *testing.T) {
	r := redistest.Start(t, "--user", "app", "on", ">app-pass-73", "~session:*", "~user:*", "~rate_limit:*", "resetchannels", "-@all",
		"+get", "+getex", "+set", "+del", "+scan", "+mget", "+ping", "+exists", "+multi", "+exec", "+discard",
		"+watch", "+unwatch", "+zadd", "+zrange", "+zrem", "+zremrangebyscore", "+pexpireat", "+select",
		"+incr", "+pexpire", "+pttl")
	keys := testKeys()
	full := startExampleWith(t, r, keys)
	token, _ := full.apiLogin("alice", "wonderland")

	t.Setenv("REDIS_URL", "redis://app:app-pass-73@"+r.Addr())
	var logs syncbuf.Buffer
	a, err := setup(slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	e := serveApp(t, r, a)
	// Started with the rate limit's keys allowed (without, the example
	// stops at start-up: TestStartupChecksLoginLimitACL), which the ACL
	// then takes away.
	r.Do(t, "ACL", "SETUSER", "app", "resetkeys", "~session:*", "~user:*")

	api := &http.Client{Timeout: 10 * time.Second}
	resp := e.send(api, "POST", "/api/login", `{"username":"alice","password":"wonderland"}`)
	if resp.code != http.StatusServiceUnavailable || resp.header.Get("Retry-After") == "" || e.json(resp)["error"] != "rate limiter unavailable" {
		t.Errorf("API login the limit cannot count = %d Retry-After %q %s, want 503 JSON with Retry-After", resp.code, resp.header.Get("Retry-After"), resp.body)
	}
	resp = e.send(noRedirects(), "POST", "/login", "username=bob&password=builder&next=%2Fsessions", browser...)
	if resp.code != http.StatusServiceUnavailable || resp.header.Get("Retry-After") != "5" || !isPage(resp) ||
		!strings.Contains(resp.body, "<h1>We can't sign you in right now</h1>") || !strings.Contains(resp.body, `value="bob"`) ||
		!strings.Contains(resp.body, `name="next" value="/sessions"`) || !strings.Contains(resp.body, `data-retry-after="5"`) {
		t.Errorf("form login the limit cannot count = %d Retry-After %q:\n%s\nwant the login page's 503 version, bob and next kept, Retry-After 5",
			resp.code, resp.header.Get("Retry-After"), resp.body)
	}
	if n := e.sessionKeys(); n != 2 {
		t.Errorf("Redis holds %d session keys, want 2: alice's first login only", n)
	}
	if got := e.rateCounts(); !slices.Equal(got, []int{1, 1}) {
		t.Errorf("rate limit counts = %v, want [1 1]: the first example's login only", got)
	}
	for _, route := range []string{"POST /api/login", "POST /login"} {
		if !strings.Contains(logs.String(), `msg="rate limit: counter failed" route="`+route+`"`) {
			t.Errorf("no counter-failed warning naming %s; log:\n%s", route, logs.String())
		}
	}

	if resp := e.send(api, "GET", "/api/me", "", "Authorization", "Bearer "+token); resp.code != http.StatusOK || e.json(resp)["user_id"] != "alice" {
		t.Errorf("GET /api/me on the second example = %d %s, want 200 for alice", resp.code, resp.body)
	}
	if resp := e.send(noRedirects(), "GET", "/login", "", browser...); resp.code != http.StatusOK || !strings.Contains(resp.body, `action="/login"`) {
		t.Errorf("GET /login on the second example = %d, want 200 with the login form", resp.code)
	}
	if resp := e.send(api, "POST", "/api/logout", "", "Authorization", "Bearer "+token); resp.code != http.StatusNoContent {
		t.Errorf("POST /api/logout on the second example = %d, want 204", resp.code)
	}
}

// TestWaitText checks how the login page says how long to wait.
func TestWaitText(t *testing.T) {
	for retry, want := range map[time.Duration]string{
		time.Millisecond:                "1 second",
		1500 * time.Millisecond:         "2 seconds",
		59 * time.Second:                "59 seconds",
		time.Minute:                     "1 minute",
		61 * time.Second:                "2 minutes",
		14*time.Minute + 59*time.Second: "15 minutes",
		15 * time.Minute:                "15 minutes",
	} {
		if got := waitText(retrySeconds(retry)); got != want {
			t.Errorf("waitText(retrySeconds(%v)) = %q, want %q", retry, got, want)
		}
	}
}

// TestRateLimitKeyEnv checks RATE_LIMIT_KEY: unset or empty, no key; the
// base64 of 32 bytes or more, in either alphabet, that key; anything else,
// or a signing key, an error that names the variable and not the value.
func TestRateLimitKeyEnv(t *testing.T) {
	key := randomKey()
	signing := [][]byte{randomKey(), key}
	for _, v := range []string{"", "   "} {
		t.Setenv("RATE_LIMIT_KEY", v)
		if got, err := rateLimitKey(nil); got != nil || (err != nil) != (v != "") {
			t.Errorf("RATE_LIMIT_KEY=%q: %v, %v", v, got, err)
		}
	}
	own := randomKey()
	for _, v := range []string{base64.StdEncoding.EncodeToString(own), base64.RawURLEncoding.EncodeToString(own)} {
		t.Setenv("RATE_LIMIT_KEY", v)
		if got, err := rateLimitKey(signing); err != nil || string(got) != string(own) {
			t.Errorf("RATE_LIMIT_KEY=%q = %x, %v; want %x", v, got, err, own)
		}
	}
	for _, v := range []string{"not base64!", base64.StdEncoding.EncodeToString(own[:31]), base64.StdEncoding.EncodeToString(own) + "," + base64.StdEncoding.EncodeToString(own), base64.StdEncoding.EncodeToString(key)} {
		t.Setenv("RATE_LIMIT_KEY", v)
		got, err := rateLimitKey(signing)
		if err == nil || got != nil || !strings.Contains(err.Error(), "RATE_LIMIT_KEY") || strings.Contains(err.Error(), v) {
			t.Errorf("RATE_LIMIT_KEY=%q = %x, %v; want an error naming the variable, not the value", v, got, err)
		}
	}
}

// TestSetupRefusesBadRateLimitKey checks that start-up stops on a bad
// RATE_LIMIT_KEY, and on one of SESSION_RETIRED_KEYS, often a key retired
// because it leaked.
func TestSetupRefusesBadRateLimitKey(t *testing.T) {
	t.Setenv("REDIS_URL", "redis://"+redistest.Start(t).Addr())
	t.Setenv("SESSION_KEYS", testKeys())
	t.Setenv("RATE_LIMIT_KEY", "c2hvcnQ=")
	if _, err := setup(slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "RATE_LIMIT_KEY") {
		t.Errorf("setup with a 5-byte RATE_LIMIT_KEY = %v, want an error naming RATE_LIMIT_KEY", err)
	}
	retired := testKeys()
	t.Setenv("SESSION_RETIRED_KEYS", retired)
	t.Setenv("RATE_LIMIT_KEY", retired)
	if _, err := setup(slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "RATE_LIMIT_KEY") {
		t.Errorf("setup with RATE_LIMIT_KEY one of SESSION_RETIRED_KEYS = %v, want an error naming RATE_LIMIT_KEY", err)
	}
}

// TestUnknownUserCostsTheSame checks that a login for a user name no
// account has runs the same password check as a wrong password: the
// stand-in hash decodes, with the users' iteration count and lengths, so
// checkPassword derives a key as long, as often, and compares it.
func TestUnknownUserCostsTheSame(t *testing.T) {
	shape := func(encoded string) string {
		parts := strings.Split(encoded, "$")
		if len(parts) != 4 {
			return "malformed"
		}
		salt, err1 := base64.RawStdEncoding.DecodeString(parts[2])
		hash, err2 := base64.RawStdEncoding.DecodeString(parts[3])
		if err1 != nil || err2 != nil {
			return "malformed"
		}
		return parts[0] + " " + parts[1] + " " + strconv.Itoa(len(salt)) + " " + strconv.Itoa(len(hash))
	}
	want := shape(unknownUser)
	for name, encoded := range users {
		if got := shape(encoded); got != want {
			t.Errorf("user %s's hash is %q, the unknown user's %q: a wrong user name would cost another time", name, got, want)
		}
	}
	if authenticate("nobody", "") || authenticate("alice", "") {
		t.Error("authenticate accepted an empty password")
	}
}

// TestLoginLimitsFromEnv sets LOGIN_LIMIT_PER_USER=2 and
// LOGIN_LIMIT_PER_IP=3: the policy says so, a user name's 3rd attempt and
// the address's 4th get 429; a value that is not a whole number above 0
// stops start-up with an error naming the variable.
func TestLoginLimitsFromEnv(t *testing.T) {
	t.Setenv("LOGIN_LIMIT_PER_USER", "2")
	t.Setenv("LOGIN_LIMIT_PER_IP", "3")
	e := startExample(t)
	api := &http.Client{Timeout: 10 * time.Second}
	// Bodies without a password: counted, then refused before any
	// password check.
	for i, tc := range []struct {
		user string
		code int
	}{{"carol", 400}, {"carol", 400}, {"carol", 429}, {"dave", 429}} {
		r := e.send(api, "POST", "/api/login", `{"username":"`+tc.user+`"}`)
		if policy := r.header.Get("RateLimit-Policy"); r.code != tc.code || policy != `"login-user";q=2;w=900, "login-ip";q=3;w=900` {
			t.Errorf("attempt %d (%s) = %d RateLimit-Policy %q, want %d with q=2 and q=3", i+1, tc.user, r.code, policy, tc.code)
		}
	}
	for name, values := range map[string][]string{
		"LOGIN_LIMIT_PER_USER": {"0", "-1", "five", "1.5"},
		"LOGIN_LIMIT_PER_IP":   {"0", "-1", "five", "1.5"},
		"REAUTH_AFTER":         {"-1m", "25h", "10", "ten minutes"},
	} {
		for _, v := range values {
			t.Run(name+"="+v, func(t *testing.T) {
				t.Setenv(name, v)
				if _, err := setup(slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), name) {
					t.Errorf("setup with %s=%q = %v, want an error naming %s", name, v, err, name)
				}
			})
		}
	}
}

// TestLoginLimitedByAddress checks that the 429 login page ties its
// button's wait to the user name only when the user name's limit alone
// refused the login: once the address is out of attempts, every name
// waits, and the button says for no name (data-retry-name).
func TestLoginLimitedByAddress(t *testing.T) {
	t.Setenv("LOGIN_LIMIT_PER_USER", "2")
	t.Setenv("LOGIN_LIMIT_PER_IP", "4")
	e := startExample(t)
	for i, tc := range []struct {
		user, name string // name: the data-retry-name of a 429 page, "" for none
		code       int
	}{{"carol", "", 401}, {"carol", "", 401}, {"carol", "carol", 429}, {"dave", "", 401}, {"dave", "", 429}} {
		r := e.send(noRedirects(), "POST", "/login", "username="+tc.user+"&password=guess", browser...)
		name := regexp.MustCompile(`data-retry-name="([^"]*)"`).FindStringSubmatch(r.body)
		if r.code != tc.code || (name == nil) != (tc.name == "") || (name != nil && name[1] != tc.name) {
			t.Errorf("login %d (%s) = %d, data-retry-name %q; want %d, %q (RateLimit %q)", i+1, tc.user, r.code, name, tc.code, tc.name, r.header.Get("RateLimit"))
		}
	}
}

// TestLoginBodyTooLarge posts logins of more than 4 KiB: 413, JSON or a
// page of the site's with a way back to the login form by Accept, before
// anything is counted, and nothing in Redis.
func TestLoginBodyTooLarge(t *testing.T) {
	e := startExample(t)
	long := strings.Repeat("x", loginMaxBody)
	for _, tc := range []struct {
		path, body string
		hdr        []string
		html       bool
	}{
		{"/login", url.Values{"username": {"alice"}, "password": {long}}.Encode(), browser, true},
		{"/login", url.Values{"username": {"alice"}, "password": {long}}.Encode(), nil, false},
		{"/api/login", `{"username":"alice","password":"` + long + `"}`, nil, false},
	} {
		r := e.send(noRedirects(), "POST", tc.path, tc.body, tc.hdr...)
		isHTML := strings.HasPrefix(r.header.Get("Content-Type"), "text/html")
		if r.code != http.StatusRequestEntityTooLarge || isHTML != tc.html || (!tc.html && e.json(r)["error"] != "request body too large") {
			t.Errorf("POST %s with a %d-byte body (HTML %v) = %d %q %s, want 413", tc.path, len(tc.body), tc.html, r.code, r.header.Get("Content-Type"), r.body)
		}
		// A browser gets the site's page, with its layout and a way back
		// to the login form, not the limiter's bare page.
		if tc.html && (!strings.Contains(r.body, `href="/login"`) || !strings.Contains(r.body, "stylesheet")) {
			t.Errorf("POST %s with a %d-byte body from a browser: the page has no way back to /login or no layout:\n%s", tc.path, len(tc.body), r.body)
		}
	}
	if sessions, rate := e.keys(); len(sessions)+len(rate) != 0 {
		t.Errorf("oversized logins left keys in Redis: %q %q", sessions, rate)
	}
}

// TestRateLimitKeyAcrossInstances runs two examples on one Redis: with
// the same RATE_LIMIT_KEY they count a user name's attempts together (the
// 6th, on either, gets 429); without one, each logs a warning and keys its
// counts with a random key of its own, so they count apart.
func TestRateLimitKeyAcrossInstances(t *testing.T) {
	r := redistest.Start(t)
	keys := testKeys()
	api := &http.Client{Timeout: 10 * time.Second}
	// attempt sends a login without a password for user: counted, then
	// refused before any password check.
	attempt := func(e *e2e, user string) int {
		return e.send(api, "POST", "/api/login", `{"username":"`+user+`"}`).code
	}

	t.Setenv("RATE_LIMIT_KEY", testKeys())
	one, two := startExampleWith(t, r, keys), startExampleWith(t, r, keys)
	for i, e := range []*e2e{one, two, one, two, one} {
		if code := attempt(e, "carol"); code != http.StatusBadRequest {
			t.Fatalf("attempt %d for carol = %d, want 400", i+1, code)
		}
	}
	if code := attempt(two, "carol"); code != http.StatusTooManyRequests {
		t.Errorf("6th attempt for carol, on the second instance, with a shared RATE_LIMIT_KEY = %d, want 429", code)
	}

	t.Setenv("RATE_LIMIT_KEY", "")
	var log1, log2 syncbuf.Buffer
	three, four := startExampleLogging(t, r, keys, &log1), startExampleLogging(t, r, keys, &log2)
	for _, log := range []*syncbuf.Buffer{&log1, &log2} {
		if out := log.String(); !strings.Contains(out, "RATE_LIMIT_KEY is not set") || !strings.Contains(out, "rate_limit_key_set=false") {
			t.Errorf("start-up without RATE_LIMIT_KEY logged no warning, or no rate_limit_key_set=false:\n%s", out)
		}
	}
	for i := range loginUserLimit {
		if code := attempt(three, "dave"); code != http.StatusBadRequest {
			t.Fatalf("attempt %d for dave = %d, want 400", i+1, code)
		}
	}
	if code := attempt(four, "dave"); code != http.StatusBadRequest {
		t.Errorf("6th attempt for dave, on another instance with a random key = %d, want 400: counted apart", code)
	}
	if code := attempt(three, "dave"); code != http.StatusTooManyRequests {
		t.Errorf("6th attempt for dave on the same instance = %d, want 429", code)
	}
}
