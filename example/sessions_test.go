package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/session"
)

// apiLogin logs user in through the API and returns the token and session id.
func (e *e2e) apiLogin(user, password string) (token, id string) {
	e.t.Helper()
	r := e.send(&http.Client{Timeout: 10 * time.Second}, "POST", "/api/login", `{"username":"`+user+`","password":"`+password+`"}`)
	m := e.json(r)
	token, _ = m["token"].(string)
	id, _ = m["session_id"].(string)
	if r.code != 200 || token == "" {
		e.t.Fatalf("POST /api/login = %d %s", r.code, r.body)
	}
	return token, id
}

func TestSessionsAPI(t *testing.T) {
	e := startExample(t)
	api := &http.Client{Timeout: 10 * time.Second}
	phone, phoneID := e.apiLogin("alice", "wonderland")
	laptop, laptopID := e.apiLogin("alice", "wonderland")
	_, bobID := e.apiLogin("bob", "builder")

	r := e.send(api, "GET", "/api/sessions", "", withBearer(laptop)...)
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.body), &list); r.code != 200 || err != nil || len(list) != 2 {
		t.Fatalf("GET /api/sessions = %d %s, want alice's 2 sessions", r.code, r.body)
	}
	for _, s := range list {
		for _, field := range []string{"session_id", "created_at", "last_seen", "ip", "user_agent", "device", "expires_at", "current"} {
			if _, ok := s[field]; !ok {
				t.Errorf("listed session lacks %q: %v", field, s)
			}
		}
		if ua, _ := s["user_agent"].(string); s["device"] != "Go-http-client" || !strings.HasPrefix(ua, "Go-http-client/") {
			t.Errorf("listed session: device %v, user agent %v; want Go-http-client and Go's raw user agent", s["device"], s["user_agent"])
		}
		if s["current"] != (s["session_id"] == laptopID) {
			t.Errorf("session %v: current = %v, want true for the caller's only", s["session_id"], s["current"])
		}
	}

	if r := e.send(api, "DELETE", "/api/sessions/"+bobID, "", withBearer(laptop)...); r.code != http.StatusNotFound {
		t.Errorf("alice deleting bob's session = %d, want 404", r.code)
	}
	if _, ok := e.record(bobID); !ok {
		t.Fatal("a refused delete removed bob's session")
	}
	if r := e.send(api, "DELETE", "/api/sessions/"+phoneID, "", withBearer(laptop)...); r.code != http.StatusNoContent {
		t.Errorf("DELETE /api/sessions/<phone> = %d, want 204", r.code)
	}
	if _, ok := e.record(phoneID); ok {
		t.Error("the revoked session's record is still in Redis")
	}
	if r := e.send(api, "GET", "/api/me", "", withBearer(phone)...); r.code != http.StatusUnauthorized {
		t.Errorf("revoked phone: GET /api/me = %d, want 401", r.code)
	}

	other, _ := e.apiLogin("alice", "wonderland")
	if r := e.send(api, "POST", "/api/logout-all", "", withBearer(laptop)...); r.code != http.StatusNoContent {
		t.Errorf("POST /api/logout-all = %d, want 204", r.code)
	}
	for _, token := range []string{laptop, other} {
		if r := e.send(api, "GET", "/api/me", "", withBearer(token)...); r.code != http.StatusUnauthorized {
			t.Errorf("after logout-all: GET /api/me = %d, want 401", r.code)
		}
	}
	if n := e.sessionKeys(); n != 2 {
		t.Errorf("after alice's logout-all Redis holds %d session keys, want bob's record and index", n)
	}
	// The login limits counted the 4 logins: alice 3, bob 1, the address 4.
	if got, want := e.rateCounts(), []int{1, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("rate limit counts = %v, want %v", got, want)
	}
}

// renew renews the session of token as a handler calling session.Renew
// on another instance would, and returns the new token.
func (e *e2e) renew(token string) string {
	e.t.Helper()
	var next string
	h := middleware.Sessions(e.app.sessions)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.Renew(r.Context()); err != nil {
			e.t.Fatalf("Renew = %v", err)
		}
		next, _ = session.Token(r.Context())
	}))
	req := httptest.NewRequest("POST", "/", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	h.ServeHTTP(httptest.NewRecorder(), req)
	return next
}

// TestRevokeAfterRenewal revokes a device that renewed its session after
// its user listed it: by the revoke button of a devices page rendered
// before the renewal, and by the first_id of GET /api/sessions. Both name
// the session by the id it was created under, which a renewal keeps, and
// the renewed device is signed out.
func TestRevokeAfterRenewal(t *testing.T) {
	e := startExample(t)
	api := &http.Client{Timeout: 10 * time.Second}

	c := noRedirects()
	e.send(c, "POST", "/login", "username=alice&password=wonderland")
	phone, phoneID := e.apiLogin("alice", "wonderland")
	page := e.send(c, "GET", "/sessions", "")
	action := "/sessions/" + phoneID + "/revoke"
	if page.code != 200 || !strings.Contains(page.body, `action="`+action+`"`) {
		t.Fatalf("GET /sessions = %d, want a revoke button for the phone (%s):\n%s", page.code, action, page.body)
	}
	phone = e.renew(phone)
	if r := e.send(c, "POST", action, e.sessionForm(c)); r.code != http.StatusSeeOther || r.header.Get("Location") != "/sessions" {
		t.Errorf("revoke button of the phone, which renewed since the page was shown = %d to %q, want 303 to /sessions", r.code, r.header.Get("Location"))
	}
	if r := e.send(api, "GET", "/api/me", "", withBearer(phone)...); r.code != http.StatusUnauthorized {
		t.Errorf("the phone after its revocation: GET /api/me = %d, want 401", r.code)
	}

	laptop, _ := e.apiLogin("alice", "wonderland")
	tablet, tabletID := e.apiLogin("alice", "wonderland")
	r := e.send(api, "GET", "/api/sessions", "", withBearer(laptop)...)
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.body), &list); r.code != 200 || err != nil {
		t.Fatalf("GET /api/sessions = %d %s", r.code, r.body)
	}
	var firstID string
	for _, s := range list {
		if s["session_id"] == tabletID {
			firstID, _ = s["first_id"].(string)
		}
	}
	if firstID != tabletID {
		t.Fatalf("GET /api/sessions lists the tablet with first_id %q, want its session_id %q:\n%s", firstID, tabletID, r.body)
	}
	tablet = e.renew(tablet)
	if r := e.send(api, "DELETE", "/api/sessions/"+firstID, "", withBearer(laptop)...); r.code != http.StatusNoContent {
		t.Errorf("DELETE /api/sessions/<first_id of the tablet, which renewed since> = %d %s, want 204", r.code, r.body)
	}
	if r := e.send(api, "GET", "/api/me", "", withBearer(tablet)...); r.code != http.StatusUnauthorized {
		t.Errorf("the tablet after its revocation: GET /api/me = %d, want 401", r.code)
	}
}

func TestMaxPerUser(t *testing.T) {
	t.Setenv("SESSION_MAX_PER_USER", "2")
	e := startExample(t)
	// Keep the logins in different milliseconds, so that "the oldest" is
	// one session: sessions made in the same millisecond are in no set
	// order (README, Config.MaxSessionsPerUser), and without the sleeps
	// the test would fail now and then.
	first, _ := e.apiLogin("alice", "wonderland")
	time.Sleep(2 * time.Millisecond)
	e.apiLogin("alice", "wonderland")
	time.Sleep(2 * time.Millisecond)
	e.apiLogin("alice", "wonderland")
	if r := e.send(&http.Client{}, "GET", "/api/me", "", "Authorization", "Bearer "+first); r.code != http.StatusUnauthorized {
		t.Errorf("oldest of 3 sessions with SESSION_MAX_PER_USER=2: GET /api/me = %d, want 401", r.code)
	}
}

func TestSessionsPage(t *testing.T) {
	e := startExample(t)
	c := noRedirects()
	if r := e.send(c, "GET", "/sessions", "", "Accept", "text/html"); r.code != http.StatusSeeOther {
		t.Errorf("GET /sessions logged out = %d, want 303 to the login form", r.code)
	}
	e.send(c, "POST", "/login", "username=alice&password=wonderland")
	_, otherID := e.apiLogin("alice", "wonderland")
	r := e.send(c, "GET", "/sessions", "")
	if r.code != 200 || !strings.Contains(r.body, "This device") || !strings.Contains(r.body, `action="/sessions/`+otherID+`/revoke"`) ||
		!strings.Contains(r.body, `action="/logout-all"`) {
		t.Fatalf("GET /sessions = %d, want the device list with a revoke button and log out everywhere:\n%s", r.code, r.body)
	}
	if r := e.send(c, "POST", "/sessions/"+otherID+"/revoke", e.sessionForm(c)); r.code != http.StatusSeeOther {
		t.Errorf("revoke button = %d, want 303", r.code)
	}
	if _, ok := e.record(otherID); ok {
		t.Error("the revoked device's record is still in Redis")
	}
	if r := e.send(c, "POST", "/logout-all", e.sessionForm(c)); !signedOutPage(r, noticeEverywhere) {
		t.Errorf("log out everywhere = %d:\n%s\nwant the login page saying %q", r.code, r.body, noticeEverywhere)
	}
	if n := e.sessionKeys(); n != 0 {
		t.Errorf("after log out everywhere Redis holds %d session keys, want 0", n)
	}
	// The login limits counted the 2 logins: alice 2, the address 2.
	if got, want := e.rateCounts(), []int{2, 2}; !slices.Equal(got, want) {
		t.Errorf("rate limit counts = %v, want %v", got, want)
	}
}

// TestAPILogoutReplacedToken logs out through the API with a token that a
// re-login of the same client replaced just before (an app's "Log out"
// tapped while another of its calls signs in again): the session that
// replaced it ends, as session.Destroy promises: the route does not take
// such a token for no session and answer 401 before the handler runs. A
// logout without any token is still refused.
func TestAPILogoutReplacedToken(t *testing.T) {
	e := startExample(t)
	api := &http.Client{Timeout: 10 * time.Second}
	old, _ := e.apiLogin("alice", "wonderland")
	r := e.send(api, "POST", "/api/login", `{"username":"alice","password":"wonderland"}`, "Authorization", "Bearer "+old)
	replaced, _ := e.json(r)["token"].(string)
	if r.code != 200 || replaced == "" || replaced == old {
		t.Fatalf("re-login with the Bearer token = %d %s, want a new token", r.code, r.body)
	}
	if r := e.send(api, "POST", "/api/logout", "", "Authorization", "Bearer "+old); r.code != http.StatusNoContent {
		t.Errorf("POST /api/logout with the replaced token = %d %s, want 204", r.code, r.body)
	}
	if r := e.send(api, "GET", "/api/me", "", "Authorization", "Bearer "+replaced); r.code != http.StatusUnauthorized {
		t.Errorf("GET /api/me with the re-login's token after the logout = %d, want 401: the logout ended it", r.code)
	}
	if r := e.send(api, "POST", "/api/logout", ""); r.code != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("POST /api/logout without a token = %d, WWW-Authenticate %q; want 401 with a challenge", r.code, r.header.Get("WWW-Authenticate"))
	}
	// A token no key signed is none: a bad Bearer token beside
	// a live cookie, which the request goes by, and another app's cookie of
	// the same name, which the answer must not expire.
	live, _ := e.apiLogin("alice", "wonderland")
	if r := e.send(api, "POST", "/api/logout", "", "Authorization", "Bearer garbage", "Cookie", "session="+live); r.code != http.StatusUnauthorized {
		t.Errorf("POST /api/logout with a bad Bearer token beside a live cookie = %d, want 401", r.code)
	}
	if r := e.send(api, "GET", "/api/me", "", "Authorization", "Bearer "+live); r.code != http.StatusOK {
		t.Errorf("GET /api/me after the refused logout = %d, want 200", r.code)
	}
	if r := e.send(api, "POST", "/api/logout", "", "Cookie", "session=another-apps-value"); r.code != http.StatusUnauthorized || len(r.header.Values("Set-Cookie")) != 0 {
		t.Errorf("POST /api/logout with another app's cookie = %d, Set-Cookie %q; want 401 and none", r.code, r.header.Values("Set-Cookie"))
	}
}
