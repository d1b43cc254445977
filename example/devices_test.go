package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/session"
)

// User agents of the devices the tests sign in from.
const (
	firefoxWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
	safariIPhone   = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
	// appUA is an app's, its product one long word, and appDevice the
	// name of its sessions: that word cut to 64 bytes by session.
	appUA     = "com.example.enterprise.identity.authenticator.desktopclient.helper/4.2.1 (build 1234)"
	appDevice = "com.example.enterprise.identity.authenticator.desktopclient.help"
)

func TestDeviceName(t *testing.T) {
	for _, tc := range []struct{ ua, name, kind string }{
		{firefoxWindows, "Firefox on Windows", "desktop"},
		{safariIPhone, "Safari on iPhone", "phone"},
		{"Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "Safari on iPad", "tablet"},
		{"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", "Chrome on Android", "phone"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "Chrome on macOS", "desktop"},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", "Edge on Windows", "desktop"},
		{"curl/8.5.0", "curl", "other"},
		{"Go-http-client/1.1", "Go-http-client", "other"},
		{"", "Unknown device", "other"},
		{"<script>alert(1)</script>", "Unknown device", "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if name, kind := deviceName(tc.ua); name != tc.name || kind != tc.kind {
				t.Errorf("deviceName(%q) = %q, %q, want %q, %q", tc.ua, name, kind, tc.name, tc.kind)
			}
		})
	}
}

func TestAgoAndInWords(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "just now", 59 * time.Second: "just now", time.Minute: "1 minute ago", 5*time.Minute + 30*time.Second: "5 minutes ago",
		time.Hour: "1 hour ago", 23 * time.Hour: "23 hours ago", 24 * time.Hour: "1 day ago", 72 * time.Hour: "3 days ago",
	} {
		if got := ago(d); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		30 * time.Minute: "30 minutes", time.Hour: "1 hour", 2 * time.Hour: "2 hours", 24 * time.Hour: "1 day",
		90 * time.Second: "90 seconds", 1500 * time.Millisecond: "1.5s",
	} {
		if got := inWords(d); got != want {
			t.Errorf("inWords(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestDevicesOrder checks the devices page's order: the current device
// first, then by last activity, most recent first.
func TestDevicesOrder(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	list := []session.Info{ // oldest first, as List returns them
		{ID: "old", FirstID: "old", UserAgent: "curl/8.5.0", Device: "curl", LastSeen: now.Add(-3 * time.Hour)},
		{ID: "current", FirstID: "current", UserAgent: firefoxWindows, Device: "Firefox on Windows", LastSeen: now.Add(-time.Hour), Current: true},
		{ID: "recent", FirstID: "recent", UserAgent: safariIPhone, Device: "Safari on iPhone", LastSeen: now.Add(-90 * time.Second)},
		{ID: "middle", FirstID: "middle", UserAgent: "", LastSeen: now.Add(-10 * time.Minute)},
	}
	got := devices(list, now, 30*time.Minute)
	var ids []string
	for _, d := range got {
		ids = append(ids, d.ID)
	}
	if want := "current recent middle old"; strings.Join(ids, " ") != want {
		t.Errorf("devices order = %v, want %s", ids, want)
	}
	if !got[0].Active || !got[1].Active || got[2].Active {
		t.Errorf("Active = %v %v %v, want true (current), true (90s ago), false (10 minutes ago)", got[0].Active, got[1].Active, got[2].Active)
	}
	// The page's script turns another device's "Active now" into its
	// last-seen time when a reload would, so that a page left open does
	// not call every device active after their sessions have timed out.
	if got[0].ActiveUntil != "" || got[1].ActiveUntil != "2026-11-26T12:00:30Z" || got[2].ActiveUntil != "" {
		t.Errorf("ActiveUntil = %q %q %q, want none (this device), 12:00:30 UTC (seen 90s ago), none (not active)", got[0].ActiveUntil, got[1].ActiveUntil, got[2].ActiveUntil)
	}
	if got[2].LastSeen.Rel != "10 minutes ago" || got[2].LastSeen.ISO != "2026-11-26T11:50:00Z" || got[0].Idle != "30 minutes" {
		t.Errorf("device = %+v, want last seen 10 minutes ago at 11:50 UTC and a 30 minutes idle timeout", got[2])
	}
	if d := devices(list[:1], now, -1)[0]; d.Idle != "" {
		t.Errorf("without an idle timeout Idle = %q, want empty", d.Idle)
	}
}

// TestDevicesNames checks where the devices page takes each session's
// name, icon and details from: the name from Info.Device (the name given
// at login, "Unknown device" for none), the icon from the user agent (a
// generic one without it), the details line's user agent from
// Info.UserAgent.
func TestDevicesNames(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name               string
		info               session.Info
		wantName, wantKind string
	}{
		{"phone", session.Info{Device: "Safari on iPhone", UserAgent: safariIPhone}, "Safari on iPhone", "phone"},
		{"name from login, not the user agent", session.Info{Device: "My laptop", UserAgent: firefoxWindows}, "My laptop", "desktop"},
		{"no user agent", session.Info{Device: "Chrome 131 on Windows"}, "Chrome 131 on Windows", "other"},
		{"no name", session.Info{UserAgent: "curl/8.5.0"}, "Unknown device", "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := devices([]session.Info{tc.info}, now, -1)[0]
			if d.Name != tc.wantName || d.Kind != tc.wantKind || d.Agent != tc.info.UserAgent {
				t.Errorf("devices(%+v) = name %q, kind %q, agent %q; want %q, %q, %q", tc.info, d.Name, d.Kind, d.Agent, tc.wantName, tc.wantKind, tc.info.UserAgent)
			}
		})
	}
	if got := nameDevice(safariIPhone); got != "Safari on iPhone" {
		t.Errorf("nameDevice(Safari on an iPhone) = %q, want Safari on iPhone", got)
	}
}

// TestSafeNextLandsOffLogin sends every path safeNext accepts, of those
// made of a few segments that read as the login page, as dots or as
// escapes, through http.Redirect, and checks where the browser goes: never
// to the login page, as the mux would route the Location once unescaped
// and cleaned.
func TestSafeNextLandsOffLogin(t *testing.T) {
	segments := []string{"login", "%6cogin", ".", "..", "%2e", "%2E", ".%2e", "x", "x%2f..%2flogin", ""}
	var paths []string
	var build func(prefix string, depth int)
	build = func(prefix string, depth int) {
		for _, tail := range []string{"", "?a", "#b"} {
			paths = append(paths, prefix+tail)
		}
		if depth == 3 {
			return
		}
		for _, s := range segments {
			build(prefix+"/"+s, depth+1)
		}
	}
	build("", 0)
	accepted := 0
	for _, p := range paths {
		next := safeNext(p)
		if next == "" {
			continue
		}
		accepted++
		w := httptest.NewRecorder()
		http.Redirect(w, httptest.NewRequest("POST", "/login", nil), next, http.StatusSeeOther)
		loc, err := url.Parse(w.Header().Get("Location"))
		if err != nil {
			t.Errorf("safeNext(%q) = %q, whose Location %q does not parse: %v", p, next, w.Header().Get("Location"), err)
			continue
		}
		if path.Clean(loc.Path) == "/login" {
			t.Errorf("safeNext(%q) = %q, which http.Redirect sends to %q: the login page", p, next, w.Header().Get("Location"))
		}
	}
	if accepted == 0 {
		t.Fatalf("safeNext accepted none of %d paths: the test checks nothing", len(paths))
	}
	t.Logf("%d of %d paths accepted, none landing on the login page", accepted, len(paths))
}

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"/sessions":             "/sessions",
		"/sessions?x=1#a":       "/sessions?x=1#a",
		"":                      "",
		"sessions":              "",
		"//evil.example/":       "",
		"/\\evil.example/":      "",
		"https://evil.example/": "",
		"/\t/evil.example":      "",
		"/login":                "",
		"/login?next=/":         "",
		"/./login":              "", // which http.Redirect cleans into /login
		"/login/":               "",
		"/%2e/login":            "",
		"/sessions/../login":    "",
		"/login/%2e/..":         "", // which http.Redirect cleans into /login
		"/login/%2E/..?a":       "",
		"/%6cogin/%2e/..":       "", // into /%6cogin, which the mux serves as /login
		"/%6cogin":              "",
		"/x%2f..%2flogin":       "", // the mux cleans /x/../login into /login
		"/a#/../login":          "", // http.Redirect cleans what follows '#' too
		"/sessions/":            "/sessions/",
		"/sessions#devices":     "/sessions#devices",
		"/sessions/./x":         "",
		"/.":                    "",
		"/%2F/evil":             "/%2F/evil",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}
