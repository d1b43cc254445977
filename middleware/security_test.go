package middleware_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"
	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// TestLogoutHeaders checks what a logout response tells the browser.
func TestLogoutHeaders(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	h.login(c, "alice")
	resp := h.do(c, "POST", "/logout", nil)
	if got := resp.header.Get("Clear-Site-Data"); got != `"cookies"` {
		t.Errorf("Clear-Site-Data = %q, want \"cookies\"", got)
	}
	if got := resp.header.Values("Cache-Control"); len(got) != 1 || got[0] != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
}

// TestLogoutWithoutCookie logs out in requests that carry no session
// cookie: a forged cross-site post, which SameSite=Lax keeps the browser's
// cookie from, and an API call with a Bearer token alone. Neither response
// may touch the browser's cookies: an expired cookie would log the victim
// of the forged post out (browsers store the cookies of a cross-site
// top-level navigation's answer), and Clear-Site-Data would delete every
// cookie of the domain, the cookie session of the page that made the API
// call included. The Bearer session still ends, and a logout with the
// cookie still expires it and clears site data.
func TestLogoutWithoutCookie(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	noCookie := &http.Client{}
	for _, tc := range []struct {
		name string
		hdr  map[string]string
	}{
		{"no session", nil},
		{"forged cross-site post", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
		{"token that leads nowhere", map[string]string{"Authorization": "Bearer " + strings.Repeat("A", 42)}},
	} {
		resp := h.do(noCookie, "POST", "/logout", tc.hdr)
		if sc, csd := resp.header.Values("Set-Cookie"), resp.header.Get("Clear-Site-Data"); resp.code != http.StatusNoContent || len(sc) > 0 || csd != "" {
			t.Errorf("%s: logout without a cookie = %d, Set-Cookie %q, Clear-Site-Data %q; want 204 and neither", tc.name, resp.code, sc, csd)
		}
	}

	id, token := h.login(h.client(), "alice")
	resp := h.do(noCookie, "POST", "/logout", map[string]string{"Authorization": "Bearer " + token})
	if sc, csd := resp.header.Values("Set-Cookie"), resp.header.Get("Clear-Site-Data"); resp.code != http.StatusNoContent || len(sc) > 0 || csd != "" {
		t.Errorf("Bearer logout without a cookie = %d, Set-Cookie %q, Clear-Site-Data %q; want 204 and neither", resp.code, sc, csd)
	}
	if h.exists(id) {
		t.Error("the Bearer logout left the session's record")
	}

	c := h.client()
	h.login(c, "bob")
	resp = h.do(c, "POST", "/logout", nil)
	if sc, csd := resp.header.Get("Set-Cookie"), resp.header.Get("Clear-Site-Data"); !strings.Contains(sc, "Max-Age=0") || csd != `"cookies"` {
		t.Errorf("logout with the cookie: Set-Cookie %q, Clear-Site-Data %q; want the cookie expired and site data cleared", sc, csd)
	}
}

// TestTossedCookies: a request that carries several cookies of the
// session's name (a sibling subdomain's, set with a Domain, or one set for
// a longer Path, which browsers send first) uses the first that a current
// key signed, among the first eight: a junk cookie in front of the app's
// own neither hides the session from reads nor lets a logout expire the
// browser's cookie while the session goes on in Redis.
func TestTossedCookies(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	noJar := &http.Client{}
	cookies := func(values ...string) map[string]string {
		parts := make([]string, len(values))
		for i, v := range values {
			parts[i] = session.DefaultInsecureCookieName + "=" + v
		}
		return map[string]string{"Cookie": strings.Join(parts, "; ")}
	}
	aliceID, alice := h.login(h.client(), "alice")
	_, bob := h.login(h.client(), "bob")
	junk := strings.Repeat("A", len(alice))

	for _, tc := range []struct {
		name   string
		values []string
		code   int
		want   string
	}{
		{"junk first", []string{junk, alice}, http.StatusOK, "alice"},
		{"a tampered copy first", []string{alice[:len(alice)-2] + "AA", alice}, http.StatusOK, "alice"},
		{"two sessions", []string{bob, alice}, http.StatusOK, "bob"},
		{"seven junk first", []string{junk, junk, junk, junk, junk, junk, junk, alice}, http.StatusOK, "alice"},
		// Past eight, each of which costs an HMAC, the first decides.
		{"eight junk first", []string{junk, junk, junk, junk, junk, junk, junk, junk, alice}, http.StatusUnauthorized, ""},
	} {
		resp := h.do(noJar, "GET", "/me", cookies(tc.values...))
		if resp.code != tc.code || (tc.code == http.StatusOK && resp.body != tc.want) {
			t.Errorf("%s: GET /me = %d %q, want %d %q", tc.name, resp.code, resp.body, tc.code, tc.want)
		}
	}

	resp := h.do(noJar, "POST", "/logout", cookies(junk, alice))
	if resp.code != http.StatusNoContent || !strings.Contains(resp.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout behind a junk cookie = %d, Set-Cookie %q, want 204 and the cookie expired", resp.code, resp.header.Get("Set-Cookie"))
	}
	if h.exists(aliceID) {
		t.Error("a logout behind a junk cookie of the same name left the session in Redis")
	}
	if resp := h.do(noJar, "GET", "/me", cookies(alice)); resp.code != http.StatusUnauthorized {
		t.Errorf("GET /me with the logged-out token = %d, want 401", resp.code)
	}
}

// TestRenew checks that renewing a session's token kills the old token and
// keeps the user, the values and the absolute deadline.
func TestRenew(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	oldID, oldToken := h.login(c, "alice")
	h.hooked = func(w http.ResponseWriter, r *http.Request) { session.Put(r.Context(), "role", "user") }
	h.do(c, "POST", "/hook", nil)
	before := h.redis.Do(t, "GET", "session:"+oldID).([]byte)

	resp := h.do(c, "POST", "/renew", nil)
	var out struct{ ID, Token string }
	if err := json.Unmarshal([]byte(resp.body), &out); resp.code != 200 || err != nil {
		t.Fatalf("POST /renew = %d %s", resp.code, resp.body)
	}
	if out.ID == oldID || out.Token == oldToken || resp.header.Get("Set-Cookie") == "" {
		t.Fatalf("renew kept the token or set no cookie: %+v", out)
	}
	if h.exists(oldID) {
		t.Error("the old token's record survived the renewal")
	}
	if got := h.do(&http.Client{}, "GET", "/me", map[string]string{"Authorization": "Bearer " + oldToken}).code; got != http.StatusUnauthorized {
		t.Errorf("GET /me with the pre-renewal token = %d, want 401", got)
	}
	if got := h.do(c, "GET", "/me", nil); got.code != 200 || got.body != "alice" {
		t.Errorf("GET /me with the new cookie = %d %q, want 200 alice", got.code, got.body)
	}
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		if v, _ := session.Get[string](r.Context(), "role"); v != "user" {
			t.Errorf("value after renewal = %q, want user", v)
		}
	}
	h.do(c, "POST", "/hook", nil)
	after := h.redis.Do(t, "GET", "session:"+out.ID).([]byte)
	if deadline(t, before) != deadline(t, after) {
		t.Errorf("renewal moved the absolute deadline from %s to %s", deadline(t, before), deadline(t, after))
	}
}

func deadline(t *testing.T, record []byte) string {
	t.Helper()
	var r struct {
		ExpiresAt string `json:"expires_at"`
	}
	if err := json.Unmarshal(record, &r); err != nil {
		t.Fatal(err)
	}
	return r.ExpiresAt
}

// TestKeyRotation signs a session with an old key and reads it with
// managers whose keys are new,old (accepted) and new alone (rejected, with
// no Redis command).
func TestKeyRotation(t *testing.T) {
	oldKey, newKey := []byte("the old signing key, 32 bytes ok"), []byte("the new signing key, 32 bytes ok")
	old := newHarness(t, harnessOpts{keys: [][]byte{oldKey}})
	_, token := old.login(old.client(), "alice")
	bearer := map[string]string{"Authorization": "Bearer " + token}

	both := newHarness(t, harnessOpts{keys: [][]byte{newKey, oldKey}, redis: old.redis})
	if got := both.do(&http.Client{}, "GET", "/me", bearer); got.code != 200 || got.body != "alice" {
		t.Errorf("keys new,old: GET /me with an old-key token = %d %q, want 200 alice", got.code, got.body)
	}
	_, fresh := both.login(both.client(), "bob")
	if got := old.do(&http.Client{}, "GET", "/me", map[string]string{"Authorization": "Bearer " + fresh}).code; got != http.StatusUnauthorized {
		t.Errorf("a token from keys new,old verifies with old alone (%d): want it signed with new", got)
	}

	onlyNew := newHarness(t, harnessOpts{keys: [][]byte{newKey}, redis: old.redis})
	onlyNew.redis.ResetStats(t)
	if got := onlyNew.do(&http.Client{}, "GET", "/me", bearer).code; got != http.StatusUnauthorized {
		t.Errorf("key new alone: GET /me with an old-key token = %d, want 401", got)
	}
	if n := onlyNew.redis.TotalCalls(t); n != 0 {
		t.Errorf("a retired-key token cost %d Redis commands, want 0", n)
	}
}

// TestSignatureAloneIsNotASession deletes the record behind a well-signed
// token: the token is then worth nothing.
func TestSignatureAloneIsNotASession(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	id, token := h.login(h.client(), "alice")
	h.redis.Do(t, "DEL", "session:"+id)
	if got := h.do(&http.Client{}, "GET", "/me", map[string]string{"Authorization": "Bearer " + token}).code; got != http.StatusUnauthorized {
		t.Errorf("GET /me with a well-signed token and no record = %d, want 401", got)
	}
}

// TestNoSecretsInLogsOrErrors drives the error paths with a captured log and
// checks that no token, signed value, session id or key, or Redis password
// shows up in the log or in an error.
func TestNoSecretsInLogsOrErrors(t *testing.T) {
	const password = "redis-password-83c1"
	h := newHarness(t, harnessOpts{password: password})
	c := h.client()
	id, token := h.login(c, "alice")
	var errs []string

	// A renewed session, a corrupt record, a bad cookie.
	h.do(c, "POST", "/renew", nil)
	h.do(c, "POST", "/logout", nil)
	id2, token2 := h.login(c, "alice")
	h.redis.Do(t, "SET", "session:"+id2, "{corrupt")
	h.do(c, "GET", "/me", nil)
	h.do(&http.Client{}, "GET", "/me", map[string]string{"Cookie": "session=" + token[:len(token)-2]})

	// Redis down: load, login, logout, and errors returned to handlers.
	_, token3 := h.login(c, "alice")
	h.redis.Stop(t)
	h.do(&http.Client{}, "GET", "/me", map[string]string{"Authorization": "Bearer " + token3})
	resp := h.do(c, "POST", "/login?user=alice", nil)
	errs = append(errs, resp.body)
	resp = h.do(&http.Client{}, "POST", "/logout", map[string]string{"Authorization": "Bearer " + token3})
	errs = append(errs, resp.body)
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		if _, err := session.Create(r.Context(), "alice"); err != nil {
			errs = append(errs, err.Error())
		}
	}
	h.do(&http.Client{}, "POST", "/hook", map[string]string{"Authorization": "Bearer " + token3})

	// Bad configuration.
	if _, err := session.New(nil, session.Config{}); err != nil {
		errs = append(errs, err.Error())
	}
	key := bytes.Repeat([]byte("s"), 31)
	if _, err := session.New(nopStore{}, session.Config{Keys: [][]byte{key}}); err != nil {
		errs = append(errs, err.Error())
	}

	logs := h.logs.String()
	if !strings.Contains(logs, "store unavailable") || !strings.Contains(logs, "unreadable record") || !strings.Contains(logs, "renewed") {
		t.Fatalf("the error paths were not all taken; log:\n%s", logs)
	}
	secrets := map[string]string{
		"token": token, "token2": token2, "token3": token3,
		"session id": id, "session id 2": id2, "redis password": password, "signing key": string(key),
	}
	for _, text := range append(errs, logs) {
		for name, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s appears in %q", name, text)
			}
		}
	}
	// The events carry the fingerprint instead.
	if !strings.Contains(logs, "session="+id[:8]) {
		t.Errorf("log lacks the fingerprint %s of the session id:\n%s", id[:8], logs)
	}
}

// nopStore is a session.Store for configuration tests that never reach it.
type nopStore struct{ session.Store }

// TestTokenNotReadFromURL puts a valid token in the query string: it must not
// authenticate the request.
func TestTokenNotReadFromURL(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	_, token := h.login(h.client(), "alice")
	for _, q := range []string{"session", "token", "access_token", "__Host-session"} {
		if got := h.do(&http.Client{}, "GET", "/me?"+q+"="+url.QueryEscape(token), nil).code; got != http.StatusUnauthorized {
			t.Errorf("GET /me?%s=<token> = %d, want 401", q, got)
		}
	}
}

// TestLeastPrivilegeACL runs login, write, read, renewal, listing,
// revocation and logout as a Redis ACL user limited to the session keys and
// to the commands of the ACL that redisstore's package documentation gives,
// with scripting denied, on DB 0 and on another DB (which needs SELECT).
func TestLeastPrivilegeACL(t *testing.T) {
	commands := []string{"get", "getex", "set", "del", "scan", "mget", "ping", "exists", "multi", "exec", "discard",
		"watch", "unwatch", "zadd", "zrange", "zrem", "zremrangebyscore", "pexpireat", "select"}
	// They are the commands of the ACL SETUSER example in redisstore/doc.go.
	doc, err := os.ReadFile(filepath.Join("..", "redisstore", "doc.go"))
	if err != nil {
		t.Fatal(err)
	}
	_, example, _ := strings.Cut(string(doc), "ACL SETUSER")
	example, _, _ = strings.Cut(example, "\n//\n")
	var documented []string
	for _, m := range regexp.MustCompile(`\+([a-z]+)`).FindAllStringSubmatch(example, -1) {
		documented = append(documented, m[1])
	}
	if got, want := slices.Sorted(slices.Values(documented)), slices.Sorted(slices.Values(commands)); !slices.Equal(got, want) {
		t.Errorf("commands of the ACL SETUSER example in redisstore/doc.go = %v, want %v", got, want)
	}
	acl := []string{"--user", "sessionkit", "on", ">acl-pass-5d2", "~session:*", "~user:*", "resetchannels", "-@all"}
	for _, c := range commands {
		acl = append(acl, "+"+c)
	}

	for _, tc := range []struct {
		name string
		db   int
	}{
		{"DB 0", 0},
		{"DB 1", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := redistest.Start(t, acl...)
			store, err := redisstore.Open(redisstore.Config{Addr: r.Addr(), Username: "sessionkit", Password: "acl-pass-5d2", DB: tc.db})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
			if err := store.Ping(context.Background()); err != nil {
				t.Fatalf("Ping as the ACL user on DB %d = %v, want nil", tc.db, err)
			}
			conn, err := redis.Dial("tcp", r.Addr(), redis.DialUsername("sessionkit"), redis.DialPassword("acl-pass-5d2"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Do("EVAL", "return 1", 0); err == nil || !strings.Contains(err.Error(), "NOPERM") {
				t.Fatalf("EVAL as the ACL user = %v, want NOPERM: the ACL is not restrictive", err)
			}
			conn.Close()
			// exists reports whether session id has a record in DB db, asked
			// as the default user.
			exists := func(db int, id string) bool {
				t.Helper()
				conn, err := redis.Dial("tcp", r.Addr(), redis.DialDatabase(db))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				n, err := redis.Int(conn.Do("EXISTS", "session:"+id))
				if err != nil {
					t.Fatal(err)
				}
				return n == 1
			}

			h := newHarness(t, harnessOpts{redis: r, store: store})
			c := h.client()
			id, _ := h.login(c, "alice")
			if !exists(tc.db, id) || (tc.db != 0 && exists(0, id)) {
				t.Errorf("after login: record in DB %d %v, in DB 0 %v; want it in DB %d only", tc.db, exists(tc.db, id), exists(0, id), tc.db)
			}
			h.hooked = func(w http.ResponseWriter, r *http.Request) {
				if err := session.Put(r.Context(), "k", 1); err != nil {
					t.Error(err)
				}
			}
			if got := h.do(c, "POST", "/hook", nil).code; got != 200 {
				t.Errorf("write under the ACL user = %d, want 200", got)
			}
			if got := h.do(c, "GET", "/me", nil).code; got != 200 {
				t.Errorf("read under the ACL user = %d, want 200", got)
			}
			resp := h.do(c, "POST", "/renew", nil)
			var renewed struct{ ID string }
			if err := json.Unmarshal([]byte(resp.body), &renewed); resp.code != 200 || err != nil {
				t.Fatalf("renewal under the ACL user = %d %q, want 200", resp.code, resp.body)
			}
			h.login(h.client(), "alice")
			if got := h.do(c, "GET", "/sessions", nil).code; got != 200 {
				t.Errorf("listing under the ACL user = %d, want 200", got)
			}
			if got := h.do(c, "POST", "/revoke-others", nil).code; got != 200 {
				t.Errorf("revoking the others under the ACL user = %d, want 200", got)
			}
			if got := h.do(c, "POST", "/logout", nil).code; got != http.StatusNoContent {
				t.Errorf("logout under the ACL user = %d, want 204", got)
			}
			if exists(tc.db, id) || exists(tc.db, renewed.ID) {
				t.Error("record survived renewal and logout")
			}
		})
	}
}
