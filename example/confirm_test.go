package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestEndingOthersNeedsRecentSignIn checks that someone holding a stolen
// session cannot sign its owner out of other devices without the password
// once the session's login is older than REAUTH_AFTER (0 here: always
// asked), through the API (the forms: TestConfirmPasswordForm); that
// ending only the caller's own session asks nothing; and that password
// attempts count against the user's login limit.
func TestEndingOthersNeedsRecentSignIn(t *testing.T) {
	t.Setenv("REAUTH_AFTER", "0")
	e := startExample(t)
	api := &http.Client{Timeout: 10 * time.Second}
	as := func(token string) []string { return []string{"Authorization", "Bearer " + token} }
	alive := func(id string) bool { _, ok := e.record(id); return ok }

	owner, ownerID := e.apiLogin("alice", "wonderland")
	thief, thiefID := e.apiLogin("alice", "wonderland")
	for _, c := range []struct {
		method, path, body string
		code               int
		msg                string
	}{
		{"DELETE", "/api/sessions/" + ownerID, "", http.StatusForbidden, "password required"},
		{"DELETE", "/api/sessions/" + ownerID, `{"password":"guess"}`, http.StatusForbidden, "wrong password"},
		{"DELETE", "/api/sessions/" + ownerID, `{"password":""}`, http.StatusForbidden, "password required"},
		{"DELETE", "/api/sessions/" + ownerID, `{"pass":"wonderland"}`, http.StatusBadRequest, ""},
		{"DELETE", "/api/sessions/" + ownerID, `{"password":"guess"} {}`, http.StatusBadRequest, ""},
		{"POST", "/api/logout-all", "", http.StatusForbidden, "password required"},
		{"POST", "/api/logout-all", "password=wonderland", http.StatusForbidden, "password required"}, // a form: no JSON body
		{"POST", "/api/logout-all", `{"password":"guess"}`, http.StatusForbidden, "wrong password"},
	} {
		r := e.send(api, c.method, c.path, c.body, as(thief)...)
		if r.code != c.code || (c.msg != "" && e.json(r)["error"] != c.msg) {
			t.Errorf("%s %s %s = %d %s, want %d %q", c.method, c.path, c.body, r.code, r.body, c.code, c.msg)
		}
		if !alive(ownerID) || !alive(thiefID) {
			t.Fatalf("%s %s %s ended a session", c.method, c.path, c.body)
		}
	}
	// The caller's own session ends without the password.
	if r := e.send(api, "DELETE", "/api/sessions/"+thiefID, "", as(thief)...); r.code != http.StatusNoContent || alive(thiefID) {
		t.Errorf("revoking one's own session = %d %s; want 204 without the password", r.code, r.body)
	}
	// Two logins and two wrong passwords so far, of the user's 5 attempts
	// a window: one more, then the limit refuses the password check, and
	// a login of the user too.
	if r := e.send(api, "POST", "/api/logout-all", `{"password":"guess"}`, as(owner)...); r.code != http.StatusForbidden {
		t.Errorf("a fifth attempt of the user's = %d %s, want 403", r.code, r.body)
	}
	if r := e.send(api, "POST", "/api/logout-all", `{"password":"wonderland"}`, as(owner)...); r.code != http.StatusTooManyRequests || !alive(ownerID) {
		t.Errorf("a sixth attempt of the user's = %d %s, owner alive %v; want 429 and the owner alive", r.code, r.body, alive(ownerID))
	}
	if r := e.send(api, "POST", "/api/login", `{"username":"alice","password":"wonderland"}`); r.code != http.StatusTooManyRequests {
		t.Errorf("a login after the user's attempts went to password checks = %d, want 429", r.code)
	}
	// bob's count apart; with his password, the revoke goes through.
	_, phoneID := e.apiLogin("bob", "builder")
	laptop, _ := e.apiLogin("bob", "builder")
	if r := e.send(api, "DELETE", "/api/sessions/"+phoneID, `{"password":"builder"}`, as(laptop)...); r.code != http.StatusNoContent || alive(phoneID) {
		t.Errorf("revoke with the password = %d %s, phone alive %v; want 204 and the phone ended", r.code, r.body, alive(phoneID))
	}
	// Log out everywhere with it: the confirmation's time, put in the
	// session the call ends, costs the answer nothing.
	_, tabletID := e.apiLogin("bob", "builder")
	if r := e.send(api, "POST", "/api/logout-all", `{"password":"builder"}`, as(laptop)...); r.code != http.StatusNoContent || alive(tabletID) {
		t.Errorf("log out everywhere with the password = %d %s, tablet alive %v; want 204 and every session ended", r.code, r.body, alive(tabletID))
	}
	if r := e.send(api, "GET", "/api/me", "", as(laptop)...); r.code != http.StatusUnauthorized {
		t.Errorf("after log out everywhere: GET /api/me = %d, want 401", r.code)
	}
}

// TestConfirmPasswordForm checks the forms of the devices page once the
// session's login is older than REAUTH_AFTER: they answer a page asking
// for the password, which, posted with it, acts; and the requests of the
// next REAUTH_AFTER need it no more.
func TestConfirmPasswordForm(t *testing.T) {
	const reauth = 2 * time.Second
	t.Setenv("REAUTH_AFTER", reauth.String())
	e := startExample(t)
	mine, other := noRedirects(), noRedirects()
	e.formLogin(mine, "bob", "builder", firefoxWindows)
	e.formLogin(other, "bob", "builder", safariIPhone)
	form := e.sessionForm(mine)
	time.Sleep(reauth)

	r := e.send(mine, "POST", "/logout-others", form, as(firefoxWindows)...)
	if r.code != http.StatusForbidden || !isPage(r) || !strings.Contains(r.body, "Confirm it&#39;s you") ||
		!strings.Contains(r.body, `action="/logout-others"`) || !strings.Contains(r.body, `name="password" type="password"`) ||
		!strings.Contains(r.body, `<input type="hidden" name="session" value="`) {
		t.Errorf("POST /logout-others without the password = %d:\n%s\nwant 403 and a form asking for it", r.code, r.body)
	}
	if r := e.send(mine, "POST", "/logout-others", form+"&password=guess", as(firefoxWindows)...); r.code != http.StatusForbidden || !strings.Contains(r.body, "Wrong password.") {
		t.Errorf("POST /logout-others with a wrong password = %d:\n%s\nwant 403 saying so", r.code, r.body)
	}
	if r := e.send(other, "GET", "/api/me", ""); r.code != http.StatusOK {
		t.Fatalf("the other browser after refused sign-outs: GET /api/me = %d, want 200", r.code)
	}
	r = e.send(mine, "POST", "/logout-others", form+"&"+url.Values{passwordField: {"builder"}}.Encode(), as(firefoxWindows)...)
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/sessions" {
		t.Errorf("POST /logout-others with the password = %d to %q, want 303 to /sessions", r.code, r.header.Get("Location"))
	}
	if r := e.send(other, "GET", "/api/me", ""); r.code != http.StatusUnauthorized {
		t.Errorf("the other browser after the sign-out: GET /api/me = %d, want 401", r.code)
	}
	// Confirmed, the session logs out everywhere without the password.
	if r := e.send(mine, "POST", "/logout-all", form, as(firefoxWindows)...); !signedOutPage(r, noticeEverywhere) {
		t.Errorf("POST /logout-all right after a confirmation = %d:\n%s\nwant the signed-out page", r.code, r.body)
	}

	// Log out everywhere with the password, asked for it.
	e.formLogin(mine, "alice", "wonderland", firefoxWindows)
	e.formLogin(other, "alice", "wonderland", safariIPhone)
	form = e.sessionForm(mine)
	time.Sleep(reauth)
	if r := e.send(mine, "POST", "/logout-all", form, as(firefoxWindows)...); r.code != http.StatusForbidden || !strings.Contains(r.body, `action="/logout-all"`) {
		t.Errorf("POST /logout-all without the password = %d:\n%s\nwant 403 and a form asking for it", r.code, r.body)
	}
	if r := e.send(mine, "POST", "/logout-all", form+"&password=wonderland", as(firefoxWindows)...); !signedOutPage(r, noticeEverywhere) {
		t.Errorf("POST /logout-all with the password = %d:\n%s\nwant the signed-out page", r.code, r.body)
	}
	if r := e.send(other, "GET", "/api/me", ""); r.code != http.StatusUnauthorized {
		t.Errorf("the other browser after log out everywhere: GET /api/me = %d, want 401", r.code)
	}
}
