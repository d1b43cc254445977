package main

import (
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// browser is the Accept header of a browser's page navigation.
var browser = []string{"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}

// as returns browser's headers with the user agent ua.
func as(ua string) []string { return append([]string{"User-Agent", ua}, browser...) }

// isPage reports whether r is one of the example's HTML pages.
func isPage(r reply) bool {
	return strings.HasPrefix(r.header.Get("Content-Type"), "text/html") && strings.Contains(r.body, "<title>") &&
		strings.Contains(r.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") &&
		r.header.Get("X-Content-Type-Options") == "nosniff" && r.header.Get("X-Frame-Options") == "DENY" &&
		r.header.Get("Referrer-Policy") == "same-origin"
}

// signedOutPage reports whether r is the answer of a form that ended the
// browser's own session: 200, the login form, saying notice.
func signedOutPage(r reply, notice string) bool {
	return r.code == http.StatusOK && isPage(r) && strings.Contains(r.body, `action="/login"`) &&
		strings.Contains(r.body, `<p class="notice" role="status">`+notice+`</p>`)
}

// formLogin logs c in through the login form as ua, and fails the test
// unless it is sent on to the dashboard.
func (e *e2e) formLogin(c *http.Client, user, password, ua string) {
	e.t.Helper()
	r := e.send(c, "POST", "/login", url.Values{"username": {user}, "password": {password}}.Encode(), as(ua)...)
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/" {
		e.t.Fatalf("POST /login as %s = %d to %q, want 303 to /", user, r.code, r.header.Get("Location"))
	}
}

// sessionForm returns what the session-changing forms of c's pages send:
// the hidden session field of its dashboard.
func (e *e2e) sessionForm(c *http.Client) string {
	e.t.Helper()
	r := e.send(c, "GET", "/", "", browser...)
	m := regexp.MustCompile(`<input type="hidden" name="` + sessionField + `" value="([^"]+)">`).FindStringSubmatch(r.body)
	if m == nil {
		e.t.Fatalf("GET / = %d without a session field:\n%s", r.code, r.body)
	}
	return url.Values{sessionField: {m[1]}}.Encode()
}

// TestOutagePages stops Redis and checks what browsers and API clients see:
// pages with Retry-After for the one, JSON for the other.
func TestOutagePages(t *testing.T) {
	e := startExample(t)
	signedIn := noRedirects()
	e.formLogin(signedIn, "alice", "wonderland", firefoxWindows)
	e.redis.Stop(t)

	r := e.send(noRedirects(), "POST", "/login", "username=bob&password=builder", as(safariIPhone)...)
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "5" || !isPage(r) ||
		!strings.Contains(r.body, "<h1>We can't sign you in right now</h1>") || !strings.Contains(r.body, `value="bob"`) ||
		!strings.Contains(r.body, `data-retry-after="5"`) {
		t.Errorf("form login with Redis down = %d Retry-After %q:\n%s\nwant a 503 page saying we can't sign you in, with Retry-After 5 and the user name kept",
			r.code, r.header.Get("Retry-After"), r.body)
	}
	r = e.send(noRedirects(), "POST", "/login", "username=bob&password=builder")
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || e.json(r)["error"] != "rate limiter unavailable" {
		t.Errorf("form login with Redis down, no Accept: text/html = %d Retry-After %q %s, want 503 JSON from the login limit, with Retry-After",
			r.code, r.header.Get("Retry-After"), r.body)
	}

	for _, path := range []string{"/", "/sessions", "/login"} {
		r := e.send(signedIn, "GET", path, "", browser...)
		if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "5" || !isPage(r) ||
			!strings.Contains(r.body, "We can&#39;t reach your session right now") || !strings.Contains(r.body, `http-equiv="refresh" content="5"`) ||
			strings.Contains(r.body, `action="/login"`) {
			t.Errorf("signed-in GET %s with Redis down = %d Retry-After %q:\n%s\nwant a 503 notice that reloads after 5s, and no login form",
				path, r.code, r.header.Get("Retry-After"), r.body)
		}
	}
	for _, path := range []string{"/logout", "/logout-others", "/logout-all"} {
		r = e.send(signedIn, "POST", path, "", browser...)
		if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "5" || !isPage(r) || strings.Contains(r.body, "refresh") {
			t.Errorf("signed-in POST %s with Redis down = %d Retry-After %q:\n%s\nwant a 503 page with Retry-After 5 that does not reload (it would post again)",
				path, r.code, r.header.Get("Retry-After"), r.body)
		}
	}
	r = e.send(signedIn, "GET", "/sessions", "")
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || e.json(r)["error"] != "session store unavailable" {
		t.Errorf("GET /sessions with Redis down, no Accept: text/html = %d %s, want 503 JSON with Retry-After", r.code, r.body)
	}
}

// TestLoginPageWhileEndUnconfirmed runs the example with
// REDIS_WAIT_REPLICAS 1 on a Redis without a replica, as on a master that
// a failover has just replaced. A logout there ends the session on the
// master but answers 503, unconfirmed; after it, the browser is not told
// that it is signed out (the home page is the outage page), but its login
// page shows the form, and a login goes on.
func TestLoginPageWhileEndUnconfirmed(t *testing.T) {
	r := redistest.Start(t)
	e := startTestApp(t, r, redisstore.Config{WaitReplicas: 1, Timeout: 300 * time.Millisecond}, session.Config{})
	c := noRedirects()
	e.formLogin(c, "alice", "wonderland", firefoxWindows) // a first login waits for no replica
	if got := e.send(c, "POST", "/logout", "", browser...); got.code != http.StatusServiceUnavailable {
		t.Fatalf("POST /logout without the replica = %d, want 503:\n%s", got.code, got.body)
	}
	if got := e.send(c, "GET", "/", "", browser...); got.code != http.StatusServiceUnavailable || strings.Contains(got.body, `action="/login"`) {
		t.Errorf("GET / after the unconfirmed logout = %d:\n%s\nwant the 503 outage page, not the login form", got.code, got.body)
	}
	if got := e.send(c, "GET", "/login", "", browser...); got.code != http.StatusOK || !isPage(got) || !strings.Contains(got.body, `action="/login"`) {
		t.Errorf("GET /login after the unconfirmed logout = %d:\n%s\nwant the login form", got.code, got.body)
	}
	e.formLogin(c, "bob", "builder", firefoxWindows)
	if got := e.send(c, "GET", "/", "", browser...); got.code != http.StatusOK || !strings.Contains(got.body, "bob") {
		t.Errorf("GET / after logging in again = %d:\n%s\nwant bob's dashboard", got.code, got.body)
	}
}

// TestErrorPages checks 404, 405 and a revoke of an ended session: small
// pages with a way back for a browser, JSON for an API client.
func TestErrorPages(t *testing.T) {
	e := startExample(t)
	c := noRedirects()
	back := regexp.MustCompile(`<a class="button" href="(/[^"]*)">`)
	page := func(r reply, code int, wantBack string) {
		t.Helper()
		m := back.FindStringSubmatch(r.body)
		if r.code != code || !isPage(r) || m == nil || m[1] != wantBack {
			t.Errorf("got %d %s, want a %d page with a way back to %s", r.code, r.body, code, wantBack)
		}
	}

	page(e.send(c, "GET", "/no/such/page", "", browser...), http.StatusNotFound, "/")
	// Under /assets/ too, and the directory lists nothing.
	for _, path := range []string{"/assets/nope.js", "/assets/"} {
		page(e.send(c, "GET", path, "", browser...), http.StatusNotFound, "/")
		if r := e.send(c, "GET", path, ""); r.code != http.StatusNotFound || e.json(r)["error"] != "not found" {
			t.Errorf("API GET %s = %d %s, want 404 JSON", path, r.code, r.body)
		}
	}
	if r := e.send(c, "GET", "/assets/style.css", "", browser...); r.code != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/css") {
		t.Errorf("GET /assets/style.css = %d %q, want 200 text/css", r.code, r.header.Get("Content-Type"))
	}
	// The pages name their icon, which a browser would otherwise ask for
	// at /favicon.ico, a 404 in its console on every first visit.
	if r := e.send(c, "GET", "/assets/icon.svg", "", browser...); r.code != http.StatusOK || r.header.Get("Content-Type") != "image/svg+xml" {
		t.Errorf("GET /assets/icon.svg = %d %q, want 200 image/svg+xml", r.code, r.header.Get("Content-Type"))
	}
	if r := e.send(c, "GET", "/login", "", browser...); !strings.Contains(r.body, `<link rel="icon" href="/assets/icon.svg"`) {
		t.Errorf("the login page does not name its icon:\n%s", r.body)
	}
	if r := e.send(c, "GET", "/no/such/page", ""); r.code != http.StatusNotFound || e.json(r)["error"] != "not found" || r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("API GET /no/such/page = %d %s, X-Content-Type-Options %q, want 404 JSON, nosniff", r.code, r.body, r.header.Get("X-Content-Type-Options"))
	}
	if r := e.send(c, "GET", "/api/nothing", "", browser...); r.code != http.StatusNotFound || e.json(r)["error"] != "not found" {
		t.Errorf("browser GET /api/nothing = %d %s, want 404 JSON: /api/ is JSON only", r.code, r.body)
	}

	for _, path := range []string{"/logout", "/logout-all", "/logout-others", "/sessions/x/revoke"} {
		r := e.send(c, "GET", path, "", browser...)
		page(r, http.StatusMethodNotAllowed, "/")
		if got := r.header.Get("Allow"); got != "POST" {
			t.Errorf("GET %s: Allow %q, want POST", path, got)
		}
	}
	r := e.send(c, "GET", "/api/login", "")
	if r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" || e.json(r)["error"] != "method not allowed" {
		t.Errorf("GET /api/login = %d Allow %q %s, want 405 JSON with Allow: POST", r.code, r.header.Get("Allow"), r.body)
	}
	if r := e.send(c, "DELETE", "/sessions", "", browser...); r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("DELETE /sessions = %d Allow %q, want 405 with Allow: GET, HEAD", r.code, r.header.Get("Allow"))
	}
	if r := e.send(c, "POST", "/assets/style.css", "", browser...); r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /assets/style.css = %d Allow %q, want 405 with Allow: GET, HEAD", r.code, r.header.Get("Allow"))
	}

	e.formLogin(c, "alice", "wonderland", firefoxWindows)
	_, otherID := e.apiLogin("alice", "wonderland")
	form := e.sessionForm(c)
	if r := e.send(c, "POST", "/sessions/"+otherID+"/revoke", form, browser...); r.code != http.StatusSeeOther {
		t.Fatalf("revoke = %d, want 303", r.code)
	}
	r = e.send(c, "POST", "/sessions/"+otherID+"/revoke", form, browser...)
	page(r, http.StatusNotFound, "/sessions")
	if !strings.Contains(r.body, "already ended") {
		t.Errorf("second revoke of a session:\n%s\nwant it to say the session has already ended", r.body)
	}
	if r := e.send(c, "POST", "/sessions/"+otherID+"/revoke", form); r.code != http.StatusNotFound || e.json(r)["error"] != "no such session" {
		t.Errorf("API revoke of an ended session = %d %s, want 404 JSON", r.code, r.body)
	}
	if r := e.send(c, "GET", "/login", "", browser...); r.code != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Errorf("GET /login signed in = %d to %q, want 303 to /", r.code, r.header.Get("Location"))
	}
}

// TestDevicesPage checks what the devices page says about each session,
// and what it says after a revoke and after signing out the others.
func TestDevicesPage(t *testing.T) {
	e := startExample(t)
	laptop, phone := noRedirects(), noRedirects()
	e.formLogin(laptop, "alice", "wonderland", firefoxWindows)
	e.formLogin(phone, "alice", "wonderland", safariIPhone)
	e.apiLogin("alice", "wonderland") // a third session, named by Go's client

	// The dashboard names the device too, isolated from the text around
	// it as the devices page does (a right-to-left override in a user
	// agent stays in its name).
	if r := e.send(phone, "GET", "/", "", as(safariIPhone)...); !strings.Contains(r.body, "signed in on <strong><bdi>Safari on iPhone</bdi></strong>") {
		t.Errorf("dashboard:\n%s\nwant the device's name in <bdi>", r.body)
	}
	r := e.send(phone, "GET", "/sessions", "", as(safariIPhone)...)
	if r.code != 200 || !isPage(r) {
		t.Fatalf("GET /sessions = %d %s", r.code, r.body)
	}
	// The current device first, with its badge; the others by last
	// activity (the newest, Go's client, first); names, not ids.
	iPhone := strings.Index(r.body, `<bdi>Safari on iPhone</bdi> <span class="badge">This device</span>`)
	goClient := strings.Index(r.body, "<h3><bdi>Go-http-client</bdi></h3>")
	firefox := strings.Index(r.body, "<h3><bdi>Firefox on Windows</bdi></h3>")
	if iPhone < 0 || goClient < iPhone || firefox < goClient {
		t.Errorf("devices page order: iPhone at %d, Go client at %d, Firefox at %d, want the current iPhone first, then by last activity:\n%s", iPhone, goClient, firefox, r.body)
	}
	// Each Revoke button is described by its device's activity and
	// address, which tell two devices of one name apart.
	for _, m := range regexp.MustCompile(`aria-describedby="(device-\d+-seen) (device-\d+-details)"`).FindAllStringSubmatch(r.body, -1) {
		if !strings.Contains(r.body, `<p id="`+m[1]+`">`) || !strings.Contains(r.body, `<p class="details" id="`+m[2]+`"><span>127.0.0.1</span>`) {
			t.Errorf("a Revoke button is described by %s and %s, which the page lacks", m[1], m[2])
		}
	}
	if n := strings.Count(r.body, `aria-describedby="device-`); n != 2 {
		t.Errorf("%d Revoke buttons with a description, want 2", n)
	}
	for _, want := range []string{
		`aria-label="Revoke Firefox on Windows"`, `aria-label="Revoke Go-http-client"`,
		`<bdi class="ua">` + firefoxWindows + `</bdi>`, "<span>127.0.0.1</span>",
		"Signs out after 30 minutes of inactivity, at the latest on <time datetime=",
		`action="/logout-others"`, "Sign out of all other sessions", `data-confirm="Sign out of 2 other sessions?`,
		`class="danger">Log out everywhere`, "<title>Your devices · sessionkit example</title>",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("devices page lacks %q", want)
		}
	}
	// No session id in what the page shows: ids appear only in the revoke
	// forms' actions.
	visible := regexp.MustCompile(`<[^>]*>`).ReplaceAllString(r.body, " ")
	ids := regexp.MustCompile(`action="/sessions/([^/"]+)/revoke"`).FindAllStringSubmatch(r.body, -1)
	if len(ids) != 2 {
		t.Fatalf("devices page has %d revoke forms, want 2", len(ids))
	}
	for _, id := range ids {
		if strings.Contains(visible, id[1]) || strings.Contains(visible, id[1][:8]) {
			t.Errorf("the devices page shows a session id (%.8s...)", id[1])
		}
	}

	firefoxID := ""
	for _, id := range ids {
		if regexp.MustCompile(`action="/sessions/` + id[1] + `/revoke" class="revoke">\n<input[^>]*>\n<button type="submit" aria-label="Revoke Firefox on Windows"`).MatchString(r.body) {
			firefoxID = id[1]
		}
	}
	if r := e.send(phone, "POST", "/sessions/"+firefoxID+"/revoke", e.sessionForm(phone), as(safariIPhone)...); r.code != http.StatusSeeOther || r.header.Get("Location") != "/sessions" {
		t.Fatalf("revoke Firefox = %d to %q, want 303 to /sessions", r.code, r.header.Get("Location"))
	}
	r = e.send(phone, "GET", "/sessions", "", as(safariIPhone)...)
	if want := "Signed out <bdi>Firefox on Windows</bdi>."; !strings.Contains(r.body, `<p class="notice" role="status">`+want+`</p>`) || strings.Contains(r.body, "<h3><bdi>Firefox on Windows</bdi></h3>") {
		t.Errorf("devices page after the revoke:\n%s\nwant %q and Firefox gone", r.body, want)
	}
	if r := e.send(phone, "GET", "/sessions", "", as(safariIPhone)...); strings.Contains(r.body, `class="notice"`) {
		t.Error("the notice of a revoke shows on the devices page a second time")
	}

	for _, want := range []string{noticeOthers, noticeNoOthers} {
		if r := e.send(phone, "POST", "/logout-others", e.sessionForm(phone), as(safariIPhone)...); r.code != http.StatusSeeOther || r.header.Get("Location") != "/sessions" {
			t.Fatalf("sign out of all other sessions = %d to %q, want 303 to /sessions", r.code, r.header.Get("Location"))
		}
		r = e.send(phone, "GET", "/sessions", "", as(safariIPhone)...)
		if !strings.Contains(r.body, want) || !strings.Contains(r.body, "No other device is signed in.") ||
			strings.Count(r.body, `<li class="device`) != 1 {
			t.Errorf("devices page after signing out the others:\n%s\nwant one device and %q", r.body, want)
		}
	}
}

// TestSignedOutNotice checks who is told "You were signed out from
// another device": the browser whose session another device ended, once;
// not a browser that logged itself out, nor a stranger with a cookie.
func TestSignedOutNotice(t *testing.T) {
	e := startExample(t)
	laptop, phone := noRedirects(), noRedirects()
	e.formLogin(laptop, "alice", "wonderland", firefoxWindows)
	stolen := e.sessionCookie(laptop)
	e.formLogin(phone, "alice", "wonderland", safariIPhone)
	if r := e.send(phone, "POST", "/logout-others", e.sessionForm(phone), as(safariIPhone)...); r.code != http.StatusSeeOther {
		t.Fatalf("sign out of all other sessions = %d", r.code)
	}

	// The laptop's next click: to the login page, back to /sessions after.
	r := e.send(laptop, "GET", "/sessions", "", as(firefoxWindows)...)
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/login?next=%2Fsessions" {
		t.Fatalf("revoked laptop: GET /sessions = %d to %q, want 303 to /login?next=%%2Fsessions", r.code, r.header.Get("Location"))
	}
	r = e.send(laptop, "GET", "/login?next=%2Fsessions", "", as(firefoxWindows)...)
	if !strings.Contains(r.body, noticeEndedElsewhere) || !strings.Contains(r.body, `name="next" value="/sessions"`) {
		t.Errorf("revoked laptop's login page:\n%s\nwant %q and next=/sessions", r.body, noticeEndedElsewhere)
	}
	if r := e.send(laptop, "GET", "/login", "", as(firefoxWindows)...); strings.Contains(r.body, noticeEndedElsewhere) {
		t.Error("the signed-out notice shows a second time")
	}
	r = e.send(laptop, "POST", "/login", "username=alice&password=wonderland&next=%2Fsessions", as(firefoxWindows)...)
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/sessions" {
		t.Errorf("login with next=/sessions = %d to %q, want 303 to /sessions", r.code, r.header.Get("Location"))
	}

	// A stranger holding the laptop's old cookie, without the marker.
	stranger := noRedirects()
	u, _ := url.Parse(e.url)
	stranger.Jar.SetCookies(u, []*http.Cookie{stolen})
	if r := e.send(stranger, "GET", "/login", "", browser...); strings.Contains(r.body, "signed out") {
		t.Errorf("a stranger with a dead cookie is told:\n%s", r.body)
	}

	// The laptop logs itself out: "You signed out.", not the notice.
	r = e.send(laptop, "POST", "/logout", e.sessionForm(laptop), as(firefoxWindows)...)
	if !signedOutPage(r, noticeSignedOut) || strings.Contains(r.body, noticeEndedElsewhere) {
		t.Errorf("POST /logout = %d:\n%s\nwant the login page saying %q only", r.code, r.body, noticeSignedOut)
	}
	// An Expires of the Unix epoch itself would make curl's cookie jar
	// keep the marker as a session cookie.
	if sc := r.header.Values("Set-Cookie"); !slices.ContainsFunc(sc, func(c string) bool {
		return strings.HasPrefix(c, "signed_in=;") && strings.Contains(c, "Expires=Thu, 01 Jan 1970 00:00:01 GMT")
	}) {
		t.Errorf("POST /logout Set-Cookie %q, want the marker expired one second after the epoch", sc)
	}
	if r := e.send(laptop, "GET", "/login", "", as(firefoxWindows)...); strings.Contains(r.body, `class="notice"`) {
		t.Errorf("login page after logging out:\n%s\nwant no notice: the logout's answer told it", r.body)
	}

	// Log out everywhere: the phone is told so, the laptop (signed in
	// again) is told that another device signed it out.
	e.formLogin(laptop, "alice", "wonderland", firefoxWindows)
	if r := e.send(phone, "POST", "/logout-all", e.sessionForm(phone), as(safariIPhone)...); !signedOutPage(r, noticeEverywhere) || strings.Contains(r.body, noticeEndedElsewhere) {
		t.Errorf("log out everywhere = %d:\n%s\nwant the login page saying %q only", r.code, r.body, noticeEverywhere)
	}
	if r := e.send(laptop, "GET", "/", "", as(firefoxWindows)...); !strings.Contains(r.body, noticeEndedElsewhere) || !strings.Contains(r.body, `action="/login"`) {
		t.Errorf("laptop after log out everywhere elsewhere: GET / shows\n%s\nwant the login form with %q", r.body, noticeEndedElsewhere)
	}
}

// TestLogoutFormAfterRevoke sends the Log out form of a phone whose
// session the laptop revoked: the phone goes to the login page, which
// tells it that another device signed it out; and a logout form without a
// session at all goes to the login page too.
func TestLogoutFormAfterRevoke(t *testing.T) {
	e := startExample(t)
	laptop, phone := noRedirects(), noRedirects()
	e.formLogin(laptop, "alice", "wonderland", firefoxWindows)
	e.formLogin(phone, "alice", "wonderland", safariIPhone)
	phoneForm := e.sessionForm(phone)
	q, _ := url.ParseQuery(phoneForm)
	if r := e.send(laptop, "POST", "/sessions/"+q.Get(sessionField)+"/revoke", e.sessionForm(laptop), as(firefoxWindows)...); r.code != http.StatusSeeOther {
		t.Fatalf("the laptop's revoke of the phone = %d, want 303", r.code)
	}
	r := e.send(phone, "POST", "/logout", phoneForm, as(safariIPhone)...)
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/login" {
		t.Fatalf("the revoked phone's logout = %d to %q, want 303 to /login", r.code, r.header.Get("Location"))
	}
	if r := e.send(phone, "GET", "/login", "", as(safariIPhone)...); !strings.Contains(r.body, noticeEndedElsewhere) {
		t.Errorf("the revoked phone's login page after its logout:\n%s\nwant %q", r.body, noticeEndedElsewhere)
	}
	for _, body := range []string{"session=x", ""} {
		if r := e.send(noRedirects(), "POST", "/logout", body, as(firefoxWindows)...); r.code != http.StatusSeeOther || r.header.Get("Location") != "/login" {
			t.Errorf("POST /logout with the form %q and no session = %d to %q, want 303 to /login", body, r.code, r.header.Get("Location"))
		}
	}
}

// TestStaleFormAfterRevokeElsewhere sends a devices-page form of a
// session that another device signed out: the 401 page says so, as the
// login page would have, rather than that the session timed out or that
// the user signed out in another tab (an attacker's revocation must not
// read as a timeout), and the login page after it does not tell it again.
func TestStaleFormAfterRevokeElsewhere(t *testing.T) {
	e := startExample(t)
	c := noRedirects()
	e.formLogin(c, "alice", "wonderland", firefoxWindows)
	form := e.sessionForm(c)
	token, _ := e.apiLogin("alice", "wonderland")
	if r := e.send(&http.Client{}, "POST", "/api/logout-all", "", "Authorization", "Bearer "+token); r.code != http.StatusNoContent {
		t.Fatalf("the phone's POST /api/logout-all = %d %s, want 204", r.code, r.body)
	}
	r := e.send(c, "POST", "/logout-others", form, as(firefoxWindows)...)
	if r.code != http.StatusUnauthorized || !isPage(r) || !strings.Contains(r.body, "it was signed out from another device") ||
		strings.Contains(r.body, "timed out") {
		t.Errorf("the laptop's form after another device signed it out = %d:\n%s\nwant 401, a page saying another device signed it out", r.code, r.body)
	}
	if r := e.send(c, "GET", "/login", "", as(firefoxWindows)...); strings.Contains(r.body, noticeEndedElsewhere) {
		t.Errorf("the login page after that answer tells again %q", noticeEndedElsewhere)
	}
}

// TestStaleSessionForms checks that the forms that change the session act
// only on the session their page was shown for: alice's pages left open in
// one tab, while another tab of the same browser signs out and in as bob,
// must not sign bob out (409, a page saying to reload, nothing changed).
// Nor may a Revoke button of alice's devices page, which bob cannot use on
// alice's devices anyway: it says so, rather than that the device, still
// signed in, has ended. Sent once the session has ended, without another
// since, they end nothing either, and say so (401). A form without the
// field comes from no page, so from nothing stale: it acts on the session
// it comes with, and a logout answers as a plain logout form does, 303 to
// the home page.
func TestStaleSessionForms(t *testing.T) {
	e := startExample(t)
	c, bobPhone := noRedirects(), noRedirects()
	e.formLogin(bobPhone, "bob", "builder", safariIPhone)
	_, alicePhone := e.apiLogin("alice", "wonderland")
	e.formLogin(c, "alice", "wonderland", firefoxWindows)
	stale := e.sessionForm(c) // alice's dashboard and devices page
	if r := e.send(c, "POST", "/logout", stale, as(firefoxWindows)...); !signedOutPage(r, noticeSignedOut) {
		t.Fatalf("alice's POST /logout = %d, want the login page saying %q", r.code, noticeSignedOut)
	}
	// With no session now (this tab signed out; or the session timed
	// out), the devices page's forms end nothing, and the answer says so
	// rather than look like the sign-out they asked for.
	for _, path := range []string{"/logout-all", "/logout-others", "/sessions/" + alicePhone + "/revoke"} {
		r := e.send(c, "POST", path, stale, as(firefoxWindows)...)
		if r.code != http.StatusUnauthorized || !isPage(r) || !strings.Contains(r.body, "Your session has ended") ||
			!strings.Contains(r.body, "no other device was signed out") {
			t.Errorf("POST %s with alice's form after her session ended = %d:\n%s\nwant 401, a page saying nothing was signed out", path, r.code, r.body)
		}
	}
	if _, ok := e.record(alicePhone); !ok {
		t.Error("after forms sent without a session, alice's phone's session is gone")
	}
	e.formLogin(c, "bob", "builder", firefoxWindows)

	for _, path := range []string{"/logout-all", "/logout-others", "/logout", "/sessions/" + alicePhone + "/revoke"} {
		r := e.send(c, "POST", path, stale, as(firefoxWindows)...)
		// A reload would send the same form again: the page says to
		// open the page anew instead.
		if r.code != http.StatusConflict || !isPage(r) || !strings.Contains(r.body, "Open the page again") {
			t.Errorf("POST %s with alice's form after a change of session = %d:\n%s\nwant 409, a page saying to open the page again", path, r.code, r.body)
		}
	}
	if r := e.send(c, "POST", "/logout-all", stale); r.code != http.StatusConflict || e.json(r)["error"] != "session changed" {
		t.Errorf("API POST /logout-all with a stale form = %d %s, want 409 JSON", r.code, r.body)
	}
	for name, client := range map[string]*http.Client{"this browser": c, "bob's phone": bobPhone} {
		if r := e.send(client, "GET", "/api/me", ""); r.code != http.StatusOK || e.json(r)["user_id"] != "bob" {
			t.Errorf("after stale forms, %s: GET /api/me = %d %s, want bob's session alive", name, r.code, r.body)
		}
	}
	if _, ok := e.record(alicePhone); !ok {
		t.Error("after stale forms, alice's phone's session is gone")
	}

	// A logout form without the field (curl, a client of the routes) logs
	// out whoever it comes with: 303 to the home page.
	other := noRedirects()
	e.formLogin(other, "bob", "builder", firefoxWindows)
	if r := e.send(other, "POST", "/logout", "", as(firefoxWindows)...); r.code != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Errorf("POST /logout without the session field = %d to %q, want 303 to /", r.code, r.header.Get("Location"))
	}
	if r := e.send(other, "GET", "/api/me", ""); r.code != http.StatusUnauthorized {
		t.Errorf("after a logout form without the session field: GET /api/me = %d, want 401", r.code)
	}

	// The page shown now, bob's, acts.
	if r := e.send(c, "POST", "/logout-all", e.sessionForm(c), as(firefoxWindows)...); !signedOutPage(r, noticeEverywhere) {
		t.Fatalf("bob's POST /logout-all = %d:\n%s\nwant the login page saying %q", r.code, r.body, noticeEverywhere)
	}
	if r := e.send(bobPhone, "GET", "/api/me", ""); r.code != http.StatusUnauthorized {
		t.Errorf("after bob's log out everywhere, his phone: GET /api/me = %d, want 401", r.code)
	}
}

// TestFormBodyTooLarge posts the forms that change the session with a
// body over formMaxBody, the session field in it: 413, a page with a way
// back for a browser and JSON for anyone else, and nothing changed.
func TestFormBodyTooLarge(t *testing.T) {
	e := startExample(t)
	c := noRedirects()
	_, phone := e.apiLogin("alice", "wonderland")
	e.formLogin(c, "alice", "wonderland", firefoxWindows)
	form := e.sessionForm(c)
	field, err := url.ParseQuery(form)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", formMaxBody)
	multi, multiHdr := multipartForm(sessionField, field.Get(sessionField), "pad", pad)
	// A multipart reader reads no further than the closing boundary, and
	// no line longer than its buffer.
	short, shortHdr := multipartForm(sessionField, field.Get(sessionField))
	for _, path := range []string{"/logout", "/logout-all", "/logout-others", "/sessions/" + phone + "/revoke"} {
		for _, enc := range []struct {
			name, body string
			hdr        []string
		}{
			{"urlencoded", form + "&pad=" + pad, nil},
			{"multipart", multi, multiHdr},
			{"multipart, the padding after its end", short + pad, shortHdr},
			{"multipart, the padding in its first line", pad + "\r\n" + short, shortHdr},
		} {
			r := e.send(c, "POST", path, enc.body, append(enc.hdr, as(firefoxWindows)...)...)
			if r.code != http.StatusRequestEntityTooLarge || !isPage(r) || !strings.Contains(r.body, "too large") {
				t.Errorf("POST %s with a %d-byte %s form from a browser = %d:\n%s\nwant 413, a page saying it was too large", path, len(enc.body), enc.name, r.code, r.body)
			}
			if r := e.send(c, "POST", path, enc.body, enc.hdr...); r.code != http.StatusRequestEntityTooLarge || e.json(r)["error"] != "request body too large" {
				t.Errorf("POST %s with a %d-byte %s form = %d %s, want 413 JSON", path, len(enc.body), enc.name, r.code, r.body)
			}
		}
	}
	if r := e.send(c, "GET", "/api/me", ""); r.code != http.StatusOK {
		t.Errorf("after the oversized forms, this browser: GET /api/me = %d, want its session alive", r.code)
	}
	if _, ok := e.record(phone); !ok {
		t.Error("after the oversized forms, the phone's session is gone")
	}
}

// TestSessionFormsWhenLoadFails posts the logout form while the session
// cannot be read (Redis refuses GETEX, the read of a session): a form that
// cannot be read, or is over formMaxBody, changes nothing, as with the
// session read; a readable one ends the browser's session, whatever page
// it came from, since there is no first id to compare it with.
func TestSessionFormsWhenLoadFails(t *testing.T) {
	e := startExample(t)
	c := noRedirects()
	e.formLogin(c, "alice", "wonderland", firefoxWindows)
	stale := e.sessionForm(c) // alice's page, left open
	e.formLogin(c, "bob", "builder", firefoxWindows)
	readable := func(on bool) {
		t.Helper()
		e.redis.Do(t, "ACL", "SETUSER", "default", map[bool]string{true: "+getex", false: "-getex"}[on])
	}
	bobAlive := func() bool {
		t.Helper()
		readable(true)
		defer readable(false)
		r := e.send(c, "GET", "/api/me", "")
		return r.code == http.StatusOK && e.json(r)["user_id"] == "bob"
	}
	readable(false)
	t.Cleanup(func() { readable(true) })

	for _, tc := range []struct {
		name, body string
		code       int
	}{
		{"over 4 KiB", stale + "&pad=" + strings.Repeat("x", formMaxBody), http.StatusRequestEntityTooLarge},
		{"unreadable", stale + "&x=%zz", http.StatusBadRequest},
	} {
		if r := e.send(c, "POST", "/logout", tc.body, as(firefoxWindows)...); r.code != tc.code || !isPage(r) {
			t.Errorf("POST /logout with a form %s while the session cannot be read = %d:\n%s\nwant %d", tc.name, r.code, r.body, tc.code)
		}
		if !bobAlive() {
			t.Fatalf("a logout form %s, refused, ended bob's session", tc.name)
		}
	}
	if r := e.send(c, "POST", "/logout", stale, as(firefoxWindows)...); !signedOutPage(r, noticeSignedOut) {
		t.Errorf("POST /logout from alice's page while the session cannot be read = %d:\n%s\nwant the login page saying %q", r.code, r.body, noticeSignedOut)
	}
	if bobAlive() {
		t.Error("a logout while the session could not be read left the browser's session alive")
	}
}

// TestSessionFormsAfterRenewal posts the forms that change the session
// from a page shown before the session renewed, on another instance, which
// gave the browser its new cookie: the session is the same, and each form
// acts. A form from before a new login of the same user in this browser
// is another session's: 409, nothing changed.
func TestSessionFormsAfterRenewal(t *testing.T) {
	e := startExample(t)
	u, _ := url.Parse(e.url)
	for _, tc := range []struct{ path, notice string }{
		{"/logout-others", noticeNoOthers},
		{"/logout-all", noticeEverywhere},
		{"/logout", noticeSignedOut},
	} {
		c := noRedirects()
		e.formLogin(c, "alice", "wonderland", firefoxWindows)
		form := e.sessionForm(c)
		renewed := e.renew(e.sessionCookie(c).Value)
		c.Jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: renewed}})
		r := e.send(c, "POST", tc.path, form, as(firefoxWindows)...)
		if r.code == http.StatusSeeOther {
			r = e.send(c, "GET", r.header.Get("Location"), "", as(firefoxWindows)...)
		}
		if r.code != http.StatusOK || !strings.Contains(r.body, tc.notice) {
			t.Errorf("POST %s from a page shown before the session renewed led to %d:\n%s\nwant a page saying %q", tc.path, r.code, r.body, tc.notice)
		}
	}

	c := noRedirects()
	e.formLogin(c, "alice", "wonderland", firefoxWindows)
	stale := e.sessionForm(c)
	if r := e.send(c, "POST", "/logout", stale, as(firefoxWindows)...); !signedOutPage(r, noticeSignedOut) {
		t.Fatalf("POST /logout = %d, want the login page saying %q", r.code, noticeSignedOut)
	}
	e.formLogin(c, "alice", "wonderland", firefoxWindows)
	for _, path := range []string{"/logout-others", "/logout-all", "/logout"} {
		if r := e.send(c, "POST", path, stale, as(firefoxWindows)...); r.code != http.StatusConflict {
			t.Errorf("POST %s from a page of alice's previous session = %d, want 409", path, r.code)
		}
	}
	if r := e.send(c, "GET", "/api/me", ""); r.code != http.StatusOK {
		t.Errorf("after the stale forms: GET /api/me = %d, want alice's new session alive", r.code)
	}
}

// sessionCookie returns c's session cookie for the example.
func (e *e2e) sessionCookie(c *http.Client) *http.Cookie {
	e.t.Helper()
	u, _ := url.Parse(e.url)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "session" {
			return ck
		}
	}
	e.t.Fatal("no session cookie")
	return nil
}

// TestLoginForm checks the login form: its own title, labels tied to
// their inputs, the user name focused and kept after a wrong password,
// and an unsafe next ignored.
func TestLoginForm(t *testing.T) {
	e := startExample(t)
	c := noRedirects()
	r := e.send(c, "GET", "/login", "", browser...)
	for _, want := range []string{
		"<title>Sign in · sessionkit example</title>", "<h1>Sign in</h1>", `<label for="username">User name</label>`,
		`<input id="username" name="username" value="" autocomplete="username"`, "required autofocus>", `<label for="password">Password</label>`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("GET /login lacks %q:\n%s", want, r.body)
		}
	}
	r = e.send(c, "POST", "/login", "username=alice&password=nope&next=%2Fsessions", browser...)
	if r.code != http.StatusUnauthorized || !strings.Contains(r.body, `role="alert">Wrong user name or password.`) ||
		!strings.Contains(r.body, `value="alice"`) || !strings.Contains(r.body, `name="next" value="/sessions"`) {
		t.Errorf("wrong password = %d:\n%s\nwant 401 with the error, alice kept and next kept", r.code, r.body)
	}
	// A screen reader reads the error with the field it focuses.
	for _, want := range []string{`id="login-error"`, `required autofocus aria-describedby="login-error" aria-invalid="true">`,
		`autocomplete="current-password" required aria-describedby="login-error" aria-invalid="true">`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("wrong password page lacks %q:\n%s", want, r.body)
		}
	}
	if strings.Contains(r.body, "still signed in") {
		t.Errorf("wrong password without a session says the browser is signed in:\n%s", r.body)
	}
	// A browser signed in that sends a wrong password (as Back to the
	// answer of one sent before its login, resent) is told it is still
	// signed in: the page does not read as signed out.
	e.formLogin(c, "alice", "wonderland", firefoxWindows)
	r = e.send(c, "POST", "/login", "username=alice&password=nope", as(firefoxWindows)...)
	if r.code != http.StatusUnauthorized || !strings.Contains(r.body, `role="alert">Wrong user name or password. You are still signed in as alice.`) {
		t.Errorf("wrong password from a signed-in browser = %d:\n%s\nwant 401 saying it is still signed in as alice", r.code, r.body)
	}
	for _, next := range []string{"//evil.example/", "https://evil.example/", `/\evil.example`} {
		r := e.send(noRedirects(), "POST", "/login", url.Values{"username": {"bob"}, "password": {"builder"}, "next": {next}}.Encode(), browser...)
		if r.code != http.StatusSeeOther || r.header.Get("Location") != "/" {
			t.Errorf("login with next=%q = %d to %q, want 303 to /", next, r.code, r.header.Get("Location"))
		}
	}
}

// TestLoginFormEncodings: the login form reads the user name as the login
// limiter counts it (r.FormValue): a multipart form signs in as a
// urlencoded one does, rather than be counted and then always refused,
// and a user name in the address counts and is checked alike; the
// password is read from the body only, never from the address.
func TestLoginFormEncodings(t *testing.T) {
	e := startExample(t)
	var body strings.Builder
	mw := multipart.NewWriter(&body)
	mw.WriteField("username", "alice")
	mw.WriteField("password", "wonderland")
	mw.WriteField("next", "/sessions")
	mw.Close()
	r := e.send(noRedirects(), "POST", "/login", body.String(), append([]string{"Content-Type", mw.FormDataContentType()}, browser...)...)
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/sessions" || r.header.Get("Set-Cookie") == "" {
		t.Errorf("multipart login = %d to %q, Set-Cookie %q; want 303 to /sessions with a cookie", r.code, r.header.Get("Location"), r.header.Get("Set-Cookie"))
	}
	r = e.send(noRedirects(), "POST", "/login?username=bob", "password=builder", browser...)
	if r.code != http.StatusSeeOther || r.header.Get("Set-Cookie") == "" {
		t.Errorf("login with the user name in the address = %d, Set-Cookie %q; want 303 with a cookie", r.code, r.header.Get("Set-Cookie"))
	}
	r = e.send(noRedirects(), "POST", "/login?password=builder", "username=bob", browser...)
	if r.code != http.StatusUnauthorized || r.header.Get("Set-Cookie") != "" {
		t.Errorf("login with the password in the address = %d, Set-Cookie %q; want 401 without a cookie", r.code, r.header.Get("Set-Cookie"))
	}
	// An unreadable form is refused, not read in part: a pair that is not
	// URL-encoded, and a multipart body that is not one.
	before := e.sessionKeys()
	for _, tc := range []struct{ name, path, body, contentType string }{
		{"a bad pair after the fields", "/login", "username=alice&password=wonderland&x=%zz", ""},
		{"a bad escape in the password", "/login", "username=alice&password=wonderland%", ""},
		{"a bad escape in the address", "/login?next=%zz", "username=alice&password=wonderland", ""},
		{"multipart without a boundary", "/login", "username=alice&password=wonderland", "multipart/form-data; boundary="},
	} {
		hdr := browser
		if tc.contentType != "" {
			hdr = append([]string{"Content-Type", tc.contentType}, browser...)
		}
		r := e.send(noRedirects(), "POST", tc.path, tc.body, hdr...)
		if r.code != http.StatusBadRequest || !isPage(r) || r.header.Get("Set-Cookie") != "" {
			t.Errorf("login form with %s = %d, Set-Cookie %q; want 400, a page, no cookie", tc.name, r.code, r.header.Get("Set-Cookie"))
		}
	}
	if after := e.sessionKeys(); after != before {
		t.Errorf("unreadable login forms: %d session keys, were %d", after, before)
	}
}

// multipartForm returns a multipart/form-data body of fields (name, value,
// name, value...) and its Content-Type header, for e.send.
func multipartForm(fields ...string) (body string, hdr []string) {
	var b strings.Builder
	mw := multipart.NewWriter(&b)
	for i := 0; i+1 < len(fields); i += 2 {
		mw.WriteField(fields[i], fields[i+1])
	}
	mw.Close()
	return b.String(), []string{"Content-Type", mw.FormDataContentType()}
}

// TestSessionFormsMultipart posts the forms that change the session as
// multipart bodies, as a script's FormData does: read like the
// urlencoded ones, the session field included.
func TestSessionFormsMultipart(t *testing.T) {
	e := startExample(t)
	c, phone := noRedirects(), noRedirects()
	e.formLogin(phone, "alice", "wonderland", safariIPhone)
	e.formLogin(c, "alice", "wonderland", firefoxWindows)
	field, err := url.ParseQuery(e.sessionForm(c))
	if err != nil {
		t.Fatal(err)
	}
	body, hdr := multipartForm(sessionField, field.Get(sessionField))
	r := e.send(c, "POST", "/logout-others", body, append(hdr, as(firefoxWindows)...)...)
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/sessions" {
		t.Fatalf("multipart POST /logout-others = %d to %q:\n%s\nwant 303 to /sessions", r.code, r.header.Get("Location"), r.body)
	}
	if r := e.send(phone, "GET", "/api/me", ""); r.code != http.StatusUnauthorized {
		t.Errorf("after a multipart POST /logout-others, the phone: GET /api/me = %d, want 401", r.code)
	}
	if r := e.send(c, "GET", "/api/me", ""); r.code != http.StatusOK {
		t.Errorf("after a multipart POST /logout-others, this browser: GET /api/me = %d, want 200", r.code)
	}
}

// startTestApp starts the example on r with the store configured by rcfg
// and the sessions by scfg, each completed with r's address, a random
// signing key and a cookie without Secure.
func startTestApp(t *testing.T, r *redistest.Server, rcfg redisstore.Config, scfg session.Config) *e2e {
	t.Helper()
	rcfg.Addr = r.Addr()
	scfg.Keys, scfg.InsecureCookie = [][]byte{randomKey()}, true
	a, err := newApp(slog.New(slog.NewTextHandler(io.Discard, nil)), rcfg, scfg, loginConfig{key: randomKey()})
	if err != nil {
		t.Fatal(err)
	}
	return serveApp(t, r, a)
}

// fillRedis makes r refuse writes as a Redis out of memory does (it still
// deletes), or, with full false, accept them again.
func fillRedis(t *testing.T, r *redistest.Server, full bool) {
	t.Helper()
	r.Do(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	limit := "0" // none
	if full {
		limit = "1"
	}
	r.Do(t, "CONFIG", "SET", "maxmemory", limit)
}

// TestEndingsWithRedisFull revokes a device and signs out the others while
// Redis is out of memory, which refuses writes and every transaction but
// deletes: each form ends what it names and answers its 303 to the devices
// page, which says what happened, rather than a 503 for an action that
// took place. One of the user's sessions ended by its idle timeout (its
// record gone, its index entry left until its deadline), so listing the
// user's sessions reads the index again, which cannot be a transaction
// then.
func TestEndingsWithRedisFull(t *testing.T) {
	r := redistest.Start(t)
	e := startTestApp(t, r, redisstore.Config{}, session.Config{})
	phone, laptop := noRedirects(), noRedirects()
	e.formLogin(laptop, "alice", "wonderland", firefoxWindows)
	e.formLogin(phone, "alice", "wonderland", safariIPhone)
	_, idleID := e.apiLogin("alice", "wonderland")
	_, apiID := e.apiLogin("alice", "wonderland")
	form := e.sessionForm(phone)
	r.Do(t, "DEL", "session:"+idleID) // what its idle timeout does
	fillRedis(t, r, true)

	for _, tc := range []struct {
		name, path, body, notice string
	}{
		{"revoke", "/sessions/" + apiID + "/revoke", form, "Signed out <bdi>" + nameDevice("Go-http-client/1.1") + "</bdi>."},
		{"sign out the others", "/logout-others", form, noticeOthers},
	} {
		r := e.send(phone, "POST", tc.path, tc.body, as(safariIPhone)...)
		if r.code != http.StatusSeeOther || r.header.Get("Location") != "/sessions" {
			t.Errorf("%s with Redis out of memory = %d to %q:\n%s\nwant 303 to /sessions", tc.name, r.code, r.header.Get("Location"), r.body)
			continue
		}
		if r := e.send(phone, "GET", "/sessions", "", as(safariIPhone)...); r.code != http.StatusOK || !strings.Contains(r.body, `<p class="notice" role="status">`+tc.notice+`</p>`) {
			t.Errorf("devices page after %s with Redis out of memory = %d:\n%s\nwant %q", tc.name, r.code, r.body, tc.notice)
		}
	}
	if _, ok := e.record(apiID); ok {
		t.Error("the revoked session's record is still in Redis")
	}
	if r := e.send(laptop, "GET", "/api/me", ""); r.code != http.StatusUnauthorized {
		t.Errorf("the laptop after signing out the others: GET /api/me = %d, want 401", r.code)
	}
}
