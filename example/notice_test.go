package main

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// TestMarkerLifetime checks that the marker ends markerMargin before the
// session's idle timeout or absolute deadline, whichever comes first, and
// is not set when less than a second would be left: the session's idle
// window started before the response that sets the marker, so a marker of
// the full idle timeout could outlive a session that timed out and tell
// it as a sign-out from another device.
func TestMarkerLifetime(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		idle     time.Duration
		deadline time.Duration // from now
		maxAge   int           // 0: no marker
	}{
		{"idle timeout first", 30 * time.Minute, 12 * time.Hour, 30*60 - 5},
		{"deadline first", 30 * time.Minute, 10 * time.Minute, 10*60 - 5},
		{"no idle timeout", -1, time.Hour, 60*60 - 5},
		{"too little left", 30 * time.Minute, 5 * time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &server{idle: tc.idle, insecureCookie: true}
			w := httptest.NewRecorder()
			s.setMarker(w, session.Info{ExpiresAt: now.Add(tc.deadline)}, now)
			cookies := w.Result().Cookies()
			got := 0
			if len(cookies) == 1 && cookies[0].Name == "signed_in" {
				got = cookies[0].MaxAge
			} else if len(cookies) != 0 {
				t.Fatalf("setMarker set %v, want the marker alone", cookies)
			}
			if got != tc.maxAge {
				t.Errorf("setMarker(idle %v, deadline in %v) Max-Age = %d, want %d", tc.idle, tc.deadline, got, tc.maxAge)
			}
		})
	}
}

// TestSignedOutNoticeAfterAPILogout checks that a browser that ends its
// own session through the API, with its cookies (a page's script: a
// logout, log out everywhere, or the revocation of its own session), is
// not told later that another device signed it out; and that an API
// client without the marker gets no marker cookie.
func TestSignedOutNoticeAfterAPILogout(t *testing.T) {
	e := startExample(t)
	for _, end := range []string{"POST /api/logout", "POST /api/logout-all", "DELETE /api/sessions/{own id}"} {
		c := noRedirects()
		e.formLogin(c, "alice", "wonderland", firefoxWindows)
		method, path, _ := strings.Cut(end, " ")
		if strings.Contains(path, "{own id}") {
			me := e.json(e.send(c, "GET", "/api/me", ""))
			path = strings.Replace(path, "{own id}", me["session_id"].(string), 1)
		}
		if r := e.send(c, method, path, ""); r.code != http.StatusNoContent {
			t.Fatalf("%s with the cookie = %d %s, want 204", end, r.code, r.body)
		}
		if r := e.send(c, "GET", "/login", "", as(firefoxWindows)...); strings.Contains(r.body, noticeEndedElsewhere) {
			t.Errorf("after its own %s, the browser's login page says %q", end, noticeEndedElsewhere)
		}
	}
	token, _ := e.apiLogin("bob", "builder")
	r := e.send(&http.Client{}, "POST", "/api/logout", "", "Authorization", "Bearer "+token)
	if r.code != http.StatusNoContent {
		t.Fatalf("POST /api/logout with a bearer token = %d %s, want 204", r.code, r.body)
	}
	for _, c := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "signed_in=") {
			t.Errorf("POST /api/logout without the marker sets %q", c)
		}
	}
}

// TestSignOutDuringStall signs out while Redis stalls, beyond the store's
// timeout. Frozen (SIGSTOP), Redis keeps the commands that timed out queued
// on their sockets and runs them when it resumes: a logout answered 503
// has then happened after all. Pausing writes (CLIENT PAUSE WRITE, with
// the idle timeout off so that loading a session is a plain read) lets a
// request read its session and then time out ending it. A request that
// tried to end sessions and failed says that the sign-out may not have
// completed, and the browser's own logout clears the marker, so that its
// next page, once Redis is back, never says "You were signed out from
// another device." A request whose session could not even be read says
// that the user has not been signed out, and a revocation that failed
// before it was sent that the device has not been, which is true.
func TestSignOutDuringStall(t *testing.T) {
	const (
		uncertain   = "Signing out may not have completed"
		notSignedIn = "You have not been signed out"
		deviceKept  = "That device has not been signed out"
	)
	freeze := func(r *redistest.Server) (stall, resume func()) {
		return func() { r.Pause(t) }, func() { r.Resume(t) }
	}
	pauseWrites := func(r *redistest.Server) (stall, resume func()) {
		return func() { r.Do(t, "CLIENT", "PAUSE", "20000", "WRITE") }, func() { r.Do(t, "CLIENT", "UNPAUSE") }
	}
	for _, tc := range []struct {
		name, path string
		stalls     func(*redistest.Server) (stall, resume func())
		page       string // what the 503 page says; "" for JSON
		clears     bool   // the answer expires the marker
	}{
		{"logout, Redis frozen", "/logout", freeze, uncertain, true},
		{"API logout, writes paused", "/api/logout", pauseWrites, "", true},
		{"log out everywhere, writes paused", "/logout-all", pauseWrites, uncertain, true},
		{"API log out everywhere, writes paused", "/api/logout-all", pauseWrites, "", true},
		{"sign out the others, writes paused", "/logout-others", pauseWrites, uncertain, false},
		// Listing the devices prunes their index, a write: the revoke
		// fails before it ends anything, and so does log out everywhere
		// when the session cannot be read.
		{"revoke, writes paused", "/sessions/{id}/revoke", pauseWrites, deviceKept, false},
		{"log out everywhere, Redis frozen", "/logout-all", freeze, notSignedIn, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := redistest.Start(t)
			e := startTestApp(t, r, redisstore.Config{Timeout: 300 * time.Millisecond}, session.Config{IdleTimeout: -1})
			c := noRedirects()
			e.formLogin(c, "alice", "wonderland", firefoxWindows)
			_, otherID := e.apiLogin("alice", "wonderland")
			form := e.sessionForm(c)
			hdr := as(firefoxWindows)
			if tc.page == "" {
				hdr = []string{"User-Agent", firefoxWindows}
			}
			stall, resume := tc.stalls(r)
			stall()
			got := e.send(c, "POST", strings.Replace(tc.path, "{id}", otherID, 1), form, hdr...)
			var during reply // the next page, while Redis still stalls
			if tc.clears && tc.page != "" {
				during = e.send(c, "GET", "/", "", as(firefoxWindows)...)
			}
			resume()
			// After a sign-out that may have happened, the next page
			// must not say that it did not; with writes
			// paused it can still read the session, and shows it.
			if strings.Contains(during.body, notSignedIn) ||
				during.code == http.StatusServiceUnavailable && !strings.Contains(during.body, "tell whether you are signed in") {
				t.Errorf("GET / during the stall after POST %s = %d:\n%s\nwant no %q", tc.path, during.code, during.body, notSignedIn)
			}

			if tc.page != "" && (got.code != http.StatusServiceUnavailable || !isPage(got) || !strings.Contains(got.body, tc.page)) {
				t.Errorf("POST %s = %d:\n%s\nwant a 503 page saying %q", tc.path, got.code, got.body, tc.page)
			}
			if tc.page == "" && (got.code != http.StatusServiceUnavailable || e.json(got)["error"] != "session store unavailable") {
				t.Errorf("POST %s = %d %s, want 503 JSON", tc.path, got.code, got.body)
			}
			cleared := slices.ContainsFunc(got.header.Values("Set-Cookie"), func(c string) bool { return strings.HasPrefix(c, "signed_in=;") })
			if cleared != tc.clears {
				t.Errorf("POST %s: Set-Cookie %q, marker expired %v, want %v", tc.path, got.header.Values("Set-Cookie"), cleared, tc.clears)
			}
			// Redis runs what it had queued: wait until the browser's
			// session is either gone or answers.
			waitFor(t, 5*time.Second, "Redis to answer", func() bool {
				return e.send(c, "GET", "/api/me", "").code != http.StatusServiceUnavailable
			})
			if home := e.send(c, "GET", "/", "", as(firefoxWindows)...); home.code != http.StatusOK || strings.Contains(home.body, noticeEndedElsewhere) {
				t.Errorf("GET / once Redis is back = %d:\n%s\nwant no %q", home.code, home.body, noticeEndedElsewhere)
			}
		})
	}
}

// TestNoticeCookie checks the cookie by which a form leaves its notice for
// the devices page: HttpOnly, SameSite=Strict (a page opened from another
// site's link never gets it), a minute long, with the __Host- prefix when
// the session cookie is Secure; and that the page clears it as it shows
// the notice, which no ?notice= in the URL brings.
func TestNoticeCookie(t *testing.T) {
	for _, insecure := range []bool{true, false} {
		w := httptest.NewRecorder()
		// No session in r: the value ends with an empty first id.
		(&server{insecureCookie: insecure}).setNotice(w, httptest.NewRequest("POST", "/logout-others", nil), "others", "")
		want := "__Host-notice=others:; Path=/; Max-Age=60; HttpOnly; Secure; SameSite=Strict"
		if insecure {
			want = "notice=others:; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"
		}
		if got := w.Header().Values("Set-Cookie"); !slices.Equal(got, []string{want}) {
			t.Errorf("setNotice with InsecureCookie %v: Set-Cookie %q, want %q", insecure, got, want)
		}
	}

	e := startExample(t)
	c := noRedirects()
	e.formLogin(c, "alice", "wonderland", firefoxWindows)
	e.apiLogin("alice", "wonderland")
	for _, path := range []string{"/sessions?notice=others", "/sessions?notice=revoked"} {
		if r := e.send(c, "GET", path, "", as(firefoxWindows)...); strings.Contains(r.body, `class="notice"`) {
			t.Errorf("GET %s shows a notice:\n%s", path, r.body)
		}
	}
	// A notice cookie that a sibling subdomain set (the example runs with
	// InsecureCookie, so without the __Host- prefix), bare or for another
	// session, shows nothing.
	other := noRedirects()
	e.formLogin(other, "alice", "wonderland", firefoxWindows)
	form, _ := url.ParseQuery(e.sessionForm(other))
	for _, planted := range []string{"others", "others:", "others:" + form.Get(sessionField)} {
		r := e.send(c, "GET", "/sessions", "", append(as(firefoxWindows), "Cookie", "notice="+planted)...)
		if strings.Contains(r.body, `class="notice"`) {
			t.Errorf("GET /sessions with a planted notice cookie %q shows a notice:\n%s", planted, r.body)
		}
	}
	// A revoke's notice names the device, read from the cookie as
	// base64url, isolated for bidirectional text; a name that is not
	// base64url, not UTF-8 or over 64 bytes gives the notice without it.
	own, _ := url.ParseQuery(e.sessionForm(c))
	b64 := base64.RawURLEncoding.EncodeToString
	for planted, want := range map[string]string{
		b64([]byte("Safari on iPhone")):       "Signed out <bdi>Safari on iPhone</bdi>.",
		b64([]byte("\u202eenohPi no irafaS")): "Signed out <bdi>\u202eenohPi no irafaS</bdi>.",
		b64([]byte("<b>")):                    "Signed out <bdi>&lt;b&gt;</bdi>.",
		"not base64!":                         noticeRevoked,
		b64([]byte{0xff, 0xfe}):               noticeRevoked,
		b64([]byte(strings.Repeat("x", 65))):  noticeRevoked,
		"":                                    noticeRevoked,
	} {
		cookie := "notice=revoked:" + own.Get(sessionField) + ":" + planted
		r := e.send(c, "GET", "/sessions", "", append(as(firefoxWindows), "Cookie", cookie)...)
		if !strings.Contains(r.body, `<p class="notice" role="status">`+want+`</p>`) {
			t.Errorf("GET /sessions with the notice cookie %q:\n%s\nwant the notice %q", cookie, r.body, want)
		}
	}

	r := e.send(c, "POST", "/logout-others", e.sessionForm(c), as(firefoxWindows)...)
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/sessions" {
		t.Fatalf("POST /logout-others = %d to %q, want 303 to /sessions", r.code, r.header.Get("Location"))
	}
	r = e.send(c, "GET", "/sessions", "", as(firefoxWindows)...)
	if !strings.Contains(r.body, noticeOthers) || !slices.ContainsFunc(r.header.Values("Set-Cookie"), func(c string) bool { return strings.HasPrefix(c, "notice=;") }) {
		t.Errorf("GET /sessions after signing out the others: Set-Cookie %q\n%s\nwant %q and the notice cookie cleared", r.header.Values("Set-Cookie"), r.body, noticeOthers)
	}
}
