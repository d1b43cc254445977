package main

import (
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
)

// TestSessionKeysRotation rotates SESSION_KEYS across restarts of the
// example on one Redis: new,old still accepts a cookie signed with old and
// signs with new; new alone rejects it.
func TestSessionKeysRotation(t *testing.T) {
	r := redistest.Start(t)
	oldKey := base64.StdEncoding.EncodeToString([]byte("the old key of the example, 32 b"))
	newKey := base64.RawURLEncoding.EncodeToString([]byte("the new key of the example, longer: 48 bytes ok"))
	api := &http.Client{Timeout: 10 * time.Second}
	login := func(e *e2e) string {
		resp := e.send(api, "POST", "/api/login", `{"username":"alice","password":"wonderland"}`)
		token, _ := e.json(resp)["token"].(string)
		return token
	}
	me := func(e *e2e, token string) int {
		return e.send(api, "GET", "/api/me", "", "Authorization", "Bearer "+token).code
	}

	old := startExampleWith(t, r, oldKey)
	oldToken := login(old)
	both := startExampleWith(t, r, newKey+","+oldKey)
	if got := me(both, oldToken); got != 200 {
		t.Errorf("SESSION_KEYS=new,old: old-key token = %d, want 200", got)
	}
	newToken := login(both)
	if got := me(old, newToken); got != http.StatusUnauthorized {
		t.Errorf("a token issued under new,old verifies with old alone (%d): want it signed with new", got)
	}
	onlyNew := startExampleWith(t, r, newKey)
	if got := me(onlyNew, newToken); got != 200 {
		t.Errorf("SESSION_KEYS=new: new-key token = %d, want 200", got)
	}
	if got := me(onlyNew, oldToken); got != http.StatusUnauthorized {
		t.Errorf("SESSION_KEYS=new: old-key token = %d, want 401", got)
	}
	// The third step of docs/security.md: the old key retired, so that
	// its tokens count as such, not as forgeries.
	t.Setenv("SESSION_RETIRED_KEYS", oldKey)
	retired := startExampleWith(t, r, newKey)
	if got := me(retired, oldToken); got != http.StatusUnauthorized {
		t.Errorf("SESSION_KEYS=new SESSION_RETIRED_KEYS=old: old-key token = %d, want 401", got)
	}
	if got := me(retired, newToken); got != 200 {
		t.Errorf("SESSION_KEYS=new SESSION_RETIRED_KEYS=old: new-key token = %d, want 200", got)
	}
	metrics := retired.send(api, "GET", "/metrics", "").body
	for _, line := range []string{`sessionkit_tokens_rejected_total{reason="retired_key"} 1`, `sessionkit_tokens_rejected_total{reason="bad_signature"} 0`} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics after an old-key token under SESSION_RETIRED_KEYS=old has no line %q", line)
		}
	}
}

// TestBadSessionKeysRefused checks that start-up refuses bad keys and says
// which variable is wrong, without repeating the key.
func TestBadSessionKeysRefused(t *testing.T) {
	r := redistest.Start(t)
	t.Setenv("REDIS_URL", "redis://"+r.Addr())
	short := base64.StdEncoding.EncodeToString([]byte("only-twenty-bytes-long"))
	good := base64.StdEncoding.EncodeToString([]byte("a good key for the example, 32 b"))
	for _, keys := range []string{short, "not base64 at all!", good + "," + short, good + "," + base64.StdEncoding.EncodeToString(make([]byte, 32))} {
		t.Setenv("SESSION_KEYS", keys)
		_, err := setup(slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil || !strings.Contains(err.Error(), "SESSION_KEYS") {
			t.Errorf("SESSION_KEYS=%q: setup error = %v, want one naming SESSION_KEYS", keys, err)
		} else if strings.Contains(err.Error(), keys) {
			t.Errorf("error %q repeats the key", err)
		}
	}
}

// TestCrossSiteAPIRejected sends a cross-site logout with the user's cookie:
// 403, and the session lives on.
func TestCrossSiteAPIRejected(t *testing.T) {
	e := startExample(t)
	c := noRedirects()
	if r := e.send(c, "POST", "/login", "username=alice&password=wonderland"); r.code != http.StatusSeeOther {
		t.Fatalf("POST /login = %d", r.code)
	}
	r := e.send(c, "POST", "/api/logout", "", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if r.code != http.StatusForbidden {
		t.Errorf("cross-site POST /api/logout = %d, want 403", r.code)
	}
	if n := e.sessionKeys(); n != 2 {
		t.Errorf("a cross-site logout changed Redis: %d session keys, want 2 (record and index)", n)
	}
	if got := e.rateCounts(); !slices.Equal(got, []int{1, 1}) {
		t.Errorf("rate limit counts = %v, want [1 1]: the login's, by user name and by address", got)
	}
	if r := e.send(c, "POST", "/api/logout", ""); r.code != http.StatusNoContent {
		t.Errorf("same-site POST /api/logout = %d, want 204", r.code)
	}
}

// TestStartupRefusesBadCredentials starts the example with a wrong Redis
// password: start-up fails with a message that says what to check and does
// not show the password.
func TestStartupRefusesBadCredentials(t *testing.T) {
	r := redistest.Start(t, "--requirepass", "right-pw-91")
	t.Setenv("REDIS_URL", "redis://:wrong-pw-17@"+r.Addr())
	t.Setenv("SESSION_KEYS", base64.StdEncoding.EncodeToString([]byte("a good key for the example, 32 b")))
	_, err := setup(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "REDIS_") || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("setup with a wrong password = %v, want an error pointing at the REDIS_* settings", err)
	}
	if strings.Contains(err.Error(), "wrong-pw-17") {
		t.Errorf("error %q shows the password", err)
	}
}

// TestStartupChecksLoginLimitACL: an ACL user with exactly the store's
// documented line, without the rate limiter's, passes Store.Ping, but
// every login would fail on the login limit's counter: the example stops
// at start-up, naming the counter and the missing permission; with the
// rate limiter's line added, it starts.
func TestStartupChecksLoginLimitACL(t *testing.T) {
	r := redistest.Start(t)
	store := []string{"resetchannels", "-@all", "~session:*", "~user:*", "+get", "+getex", "+set", "+del", "+scan", "+mget", "+ping",
		"+exists", "+multi", "+exec", "+discard", "+watch", "+unwatch", "+zadd", "+zrange", "+zrem", "+zremrangebyscore", "+pexpireat"}
	setUser := func(rules ...string) {
		args := []any{"SETUSER", "app", "reset", "on", ">app-pw-4471"}
		for _, rule := range rules {
			args = append(args, rule)
		}
		r.Do(t, "ACL", args...)
	}
	t.Setenv("REDIS_URL", "redis://app:app-pw-4471@"+r.Addr())
	t.Setenv("SESSION_KEYS", base64.StdEncoding.EncodeToString([]byte("a good key for the example, 32 b")))
	setUser(store...)
	_, err := setup(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "login limit's counter") || !strings.Contains(err.Error(), "+incr") {
		t.Fatalf("setup without the rate limiter's ACL = %v, want an error naming the login limit's counter and +incr", err)
	}
	setUser(append(store, "~rate_limit:*", "+incr", "+pexpire", "+pttl")...)
	a, err := setup(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("setup with the rate limiter's ACL = %v, want it to start", err)
	}
	a.close()

	// Redis does not answer at start-up (the app starts first): the
	// example starts, and checks the counter once Redis answers, keeping
	// /readyz failing while Redis refuses it, so that an instance that
	// would refuse every login, each answered 503, never goes into
	// service.
	setUser(store...)
	r.Pause(t)
	a, err = setup(slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.Resume(t)
	if err != nil {
		t.Fatalf("setup while Redis does not answer = %v, want it to start", err)
	}
	defer a.close()
	readyz := func() (int, string) {
		w := httptest.NewRecorder()
		a.handler.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		return w.Code, w.Body.String()
	}
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, `"check":"rate_limit"`) {
		t.Errorf("GET /readyz without the rate limiter's ACL = %d %s, want 503 naming rate_limit", code, body)
	}
	setUser(append(store, "~rate_limit:*", "+incr", "+pexpire", "+pttl")...)
	if code, body := readyz(); code != http.StatusOK {
		t.Errorf("GET /readyz with the rate limiter's ACL = %d %s, want 200", code, body)
	}
}
