package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
// own session through the API, with its cookies (a page's script), is not
// told later that another device signed it out; and that an API client
// without the marker gets no marker cookie.
func TestSignedOutNoticeAfterAPILogout(t *testing.T) {
	e := startExample(t)
	for _, path := range []string{"/api/logout", "/api/logout-all"} {
		c := noRedirects()
		e.formLogin(c, "alice", "wonderland", firefoxWindows)
		if r := e.send(c, "POST", path, ""); r.code != http.StatusNoContent {
			t.Fatalf("POST %s with the cookie = %d %s, want 204", path, r.code, r.body)
		}
		if r := e.send(c, "GET", "/login", "", as(firefoxWindows)...); strings.Contains(r.body, noticeEndedElsewhere) {
			t.Errorf("after its own POST %s, the browser's login page says %q", path, noticeEndedElsewhere)
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
