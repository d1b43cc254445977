package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/session"
)

// TestEndingOthersNeedsRecentSignIn checks that someone holding a stolen
// session cannot sign its owner out of other devices without the password
// once the session's login is older than REAUTH_AFTER (0 here: always
// asked), through the API (the forms: TestConfirmPasswordForm); that
// ending only the caller's own session asks nothing; and that password
// attempts are limited per session, so that wrong logins with the user's
// name cannot keep the owner from ending a stolen session.
func TestEndingOthersNeedsRecentSignIn(t *testing.T) {
	t.Setenv("REAUTH_AFTER", "0")
	e := startExample(t)
	api := &http.Client{Timeout: 10 * time.Second}

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
		r := e.send(api, c.method, c.path, c.body, withBearer(thief)...)
		if r.code != c.code || (c.msg != "" && e.json(r)["error"] != c.msg) {
			t.Errorf("%s %s %s = %d %s, want %d %q", c.method, c.path, c.body, r.code, r.body, c.code, c.msg)
		}
		if !e.alive(ownerID) || !e.alive(thiefID) {
			t.Fatalf("%s %s %s ended a session", c.method, c.path, c.body)
		}
	}
	// The thief's session has 5 attempts a window, two of them spent:
	// three more, then the password is not even checked.
	for range 3 {
		e.send(api, "POST", "/api/logout-all", `{"password":"guess"}`, withBearer(thief)...)
	}
	if r := e.send(api, "POST", "/api/logout-all", `{"password":"wonderland"}`, withBearer(thief)...); r.code != http.StatusTooManyRequests || !e.alive(ownerID) {
		t.Errorf("a sixth attempt of the session's = %d %s, owner alive %v; want 429 and the owner alive", r.code, r.body, e.alive(ownerID))
	}
	// Wrong logins with the user's name spend the name's attempts (the
	// two logins above, and three), which keep the owner out of a new
	// login, but not from ending the thief's session with the password.
	for range 3 {
		e.send(api, "POST", "/api/login", `{"username":"alice","password":"guess"}`)
	}
	if r := e.send(api, "POST", "/api/login", `{"username":"alice","password":"wonderland"}`); r.code != http.StatusTooManyRequests {
		t.Errorf("a login after 5 attempts of the name's = %d, want 429", r.code)
	}
	if r := e.send(api, "DELETE", "/api/sessions/"+thiefID, `{"password":"wonderland"}`, withBearer(owner)...); r.code != http.StatusNoContent || e.alive(thiefID) {
		t.Errorf("the owner ending the thief's session with the password = %d %s, thief alive %v; want 204 and the thief's session ended", r.code, r.body, e.alive(thiefID))
	}

	// bob's own session ends without the password; with it, another, and
	// all of them.
	_, phoneID := e.apiLogin("bob", "builder")
	laptop, _ := e.apiLogin("bob", "builder")
	tablet, tabletID := e.apiLogin("bob", "builder")
	if r := e.send(api, "DELETE", "/api/sessions/"+tabletID, "", withBearer(tablet)...); r.code != http.StatusNoContent || e.alive(tabletID) {
		t.Errorf("revoking one's own session = %d %s; want 204 without the password", r.code, r.body)
	}
	if r := e.send(api, "DELETE", "/api/sessions/"+phoneID, `{"password":"builder"}`, withBearer(laptop)...); r.code != http.StatusNoContent || e.alive(phoneID) {
		t.Errorf("revoke with the password = %d %s, phone alive %v; want 204 and the phone ended", r.code, r.body, e.alive(phoneID))
	}
	// Log out everywhere with it: the confirmation's time, put in the
	// session the call ends, costs the answer nothing.
	_, carID := e.apiLogin("bob", "builder")
	if r := e.send(api, "POST", "/api/logout-all", `{"password":"builder"}`, withBearer(laptop)...); r.code != http.StatusNoContent || e.alive(carID) {
		t.Errorf("log out everywhere with the password = %d %s, car alive %v; want 204 and every session ended", r.code, r.body, e.alive(carID))
	}
	if r := e.send(api, "GET", "/api/me", "", withBearer(laptop)...); r.code != http.StatusUnauthorized {
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

// TestConfirmationFromAhead checks that a confirmation time ahead of the
// instance's clock (a value carried over from another app, as a migration
// from scs carries its values, or an instance whose clock runs ahead)
// does not count as a recent one, which it would for as long as it is
// ahead, while one just made does.
func TestConfirmationFromAhead(t *testing.T) {
	a := newTestApp(t, redistest.Start(t))
	s := newServer(a.sessions, a.store, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.login.reauth, s.login.reauthSet = 50*time.Millisecond, true
	for _, c := range []struct {
		name   string
		at     time.Duration // the confirmation's time, from now
		recent bool
	}{{"ahead", time.Hour, false}, {"just now", 0, true}} {
		t.Run(c.name, func(t *testing.T) {
			var recent bool
			h := middleware.Sessions(a.sessions)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == "POST" {
					session.Create(r.Context(), "alice")
					return
				}
				session.Put(r.Context(), confirmedKey, time.Now().Add(c.at))
				recent = s.recentlyAuthenticated(r)
			}))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("POST", "/", nil))
			time.Sleep(2 * s.login.reauth) // the login is no recent one
			req := httptest.NewRequest("GET", "/", nil)
			for _, c := range w.Result().Cookies() {
				req.AddCookie(c)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			if recent != c.recent {
				t.Errorf("recentlyAuthenticated with a confirmation %v from now = %v, want %v", c.at, recent, c.recent)
			}
		})
	}
}

// TestConfirmTriesAfterAddressRefusals checks that confirmations the
// address's login limit refuses (others behind the owner's address, as a
// café's or a carrier's NAT, filled it with wrong logins) spend none of
// the session's own tries: from another address, the owner's session
// still confirms, rather than get 429 there for the window.
func TestConfirmTriesAfterAddressRefusals(t *testing.T) {
	t.Setenv("REAUTH_AFTER", "0")
	t.Setenv("LOGIN_LIMIT_PER_IP", "4")
	e := startExample(t)
	api := &http.Client{Timeout: 10 * time.Second}
	owner, _ := e.apiLogin("alice", "wonderland")
	for i := range 3 {
		e.send(api, "POST", "/api/login", `{"username":"user`+strconv.Itoa(i)+`","password":"guess"}`)
	}
	for range 6 {
		if r := e.send(api, "POST", "/api/logout-all", `{"password":"wonderland"}`, "Authorization", "Bearer "+owner); r.code != http.StatusTooManyRequests {
			t.Fatalf("a confirmation from an address past its limit = %d %s, want 429", r.code, r.body)
		}
	}
	req := httptest.NewRequest("POST", "/api/logout-all", strings.NewReader(`{"password":"wonderland"}`))
	req.RemoteAddr = "198.51.100.7:40000" // the owner, on another network
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+owner)
	w := httptest.NewRecorder()
	e.app.handler.ServeHTTP(w, req)
	if w.Code != http.StatusNoContent {
		t.Errorf("the owner's confirmation from another address = %d %s (RateLimit %q), want 204", w.Code, w.Body, w.Header().Get("RateLimit"))
	}
}

// TestConfirmLimitedPage checks the page of a password confirmation over
// the session's limit: it says what the password was for, as the pages
// before it do, not "end other sessions" whatever was asked.
func TestConfirmLimitedPage(t *testing.T) {
	t.Setenv("REAUTH_AFTER", "0")
	e := startExample(t)
	mine, other := noRedirects(), noRedirects()
	e.formLogin(mine, "bob", "builder", firefoxWindows)
	e.formLogin(other, "bob", "builder", safariIPhone)
	form := e.sessionForm(mine)
	var r reply
	for range 6 { // the session's 5 tries, then one over
		r = e.send(mine, "POST", "/logout-others", form+"&password=guess", as(firefoxWindows)...)
	}
	if r.code != http.StatusTooManyRequests || !strings.Contains(r.body, "Enter your password to sign out of your other sessions.") {
		t.Errorf("POST /logout-others over the confirmation limit = %d:\n%s\nwant 429 saying what the password is for", r.code, r.body)
	}
}

// TestConfirmationBadInput checks the bodies of the routes that end
// sessions: a password sent within the recent sign-in's
// window is checked, a wrong one refused and nothing ended, though none
// was needed; a body over 4 KiB gets 413, and one that is not the route's
// 400, also for the caller's own session, which needs no password, and
// nothing ends.
func TestConfirmationBadInput(t *testing.T) {
	e := startExample(t) // REAUTH_AFTER 10m: every login here is recent
	api := &http.Client{Timeout: 10 * time.Second}
	big := `{"password":"` + strings.Repeat("a", 5000) + `"}`

	laptop, laptopID := e.apiLogin("bob", "builder")
	_, phoneID := e.apiLogin("bob", "builder")
	for _, c := range []struct {
		method, path, body string
		code               int
		msg                string
	}{
		{"POST", "/api/logout-all", `{"password":"guess"}`, http.StatusForbidden, "wrong password"},
		{"DELETE", "/api/sessions/" + phoneID, `{"password":"guess"}`, http.StatusForbidden, "wrong password"},
		{"POST", "/api/logout-all", big, http.StatusRequestEntityTooLarge, "request body too large"},
		{"POST", "/api/logout-all", `{"password":"builder"}` + strings.Repeat(" ", 5000), http.StatusRequestEntityTooLarge, "request body too large"},
		{"DELETE", "/api/sessions/" + phoneID, big, http.StatusRequestEntityTooLarge, "request body too large"},
		{"DELETE", "/api/sessions/" + laptopID, `{garbage`, http.StatusBadRequest, ""},
		{"DELETE", "/api/sessions/" + laptopID, big, http.StatusRequestEntityTooLarge, "request body too large"},
	} {
		r := e.send(api, c.method, c.path, c.body, withBearer(laptop)...)
		if r.code != c.code || (c.msg != "" && e.json(r)["error"] != c.msg) {
			t.Errorf("%s %s %.40s = %d %s, want %d %q", c.method, c.path, c.body, r.code, r.body, c.code, c.msg)
		}
		if !e.alive(laptopID) || !e.alive(phoneID) {
			t.Fatalf("%s %s %.40s ended a session", c.method, c.path, c.body)
		}
	}

	// The form: a wrong password within the window is refused too.
	mine, other := noRedirects(), noRedirects()
	e.formLogin(mine, "alice", "wonderland", firefoxWindows)
	e.formLogin(other, "alice", "wonderland", safariIPhone)
	form := e.sessionForm(mine)
	if r := e.send(mine, "POST", "/logout-others", form+"&password=guess", as(firefoxWindows)...); r.code != http.StatusForbidden || !strings.Contains(r.body, "Wrong password.") ||
		strings.Contains(r.body, "more recent than yours") {
		t.Errorf("POST /logout-others with a wrong password after a recent sign-in = %d:\n%s\nwant 403 saying so, and not that the sign-in is old (review browser3)", r.code, r.body)
	}
	if r := e.send(other, "GET", "/api/me", ""); r.code != http.StatusOK {
		t.Errorf("the other browser after a refused sign-out: GET /api/me = %d, want 200", r.code)
	}
	if r := e.send(mine, "POST", "/logout-others", form, as(firefoxWindows)...); r.code != http.StatusSeeOther {
		t.Errorf("POST /logout-others without a password after a recent sign-in = %d, want 303", r.code)
	}
}
