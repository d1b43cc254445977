package middleware_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sessionkit/sessionkit/middleware"
)

func TestRequireAuthConfig(t *testing.T) {
	for _, bad := range []string{"login", "//evil.example/login", "https://evil.example/", `/\evil.example`, "/\t/evil.example/", "/\n/evil.example/", "/\x7f/x"} {
		if _, err := middleware.RequireAuth(middleware.AuthConfig{LoginURL: bad}); err == nil {
			t.Errorf("RequireAuth(LoginURL %q) = nil error, want an error", bad)
		}
	}
}

// TestRequireAuthAnswers checks the answers without a session: a JSON 401 for
// API calls, a redirect for page requests when LoginURL is set.
func TestRequireAuthAnswers(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	pages, err := middleware.RequireAuth(middleware.AuthConfig{LoginURL: "/login"})
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	tests := []struct {
		name, method, accept string
		want                 int
	}{
		{"page", "GET", "text/html,application/xhtml+xml", http.StatusSeeOther},
		{"api", "GET", "application/json", http.StatusUnauthorized},
		{"form post", "POST", "text/html", http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.hooked = pages(ok).ServeHTTP
			resp := h.do(&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
				tc.method, "/hook", map[string]string{"Accept": tc.accept})
			if resp.code != tc.want {
				t.Errorf("%s /hook = %d, want %d", tc.method, resp.code, tc.want)
			}
			if tc.want == http.StatusSeeOther && resp.header.Get("Location") != "/login" {
				t.Errorf("Location = %q, want /login", resp.header.Get("Location"))
			}
			if tc.want == http.StatusUnauthorized && (!strings.Contains(resp.body, `"error"`) || resp.header.Get("X-Content-Type-Options") != "nosniff") {
				t.Errorf("401 body = %q, X-Content-Type-Options %q, want a JSON error, nosniff", resp.body, resp.header.Get("X-Content-Type-Options"))
			}
		})
	}
}

// TestRequireAuthReturnParam checks that with ReturnParam the redirect to
// the login page carries the page asked for, as the client named it (a
// StripPrefix in between changes nothing), after a LoginURL's own query,
// and carries nothing for "/" or for an API call.
func TestRequireAuthReturnParam(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page := map[string]string{"Accept": "text/html"}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for _, tc := range []struct {
		login, path string
		strip       bool
		accept      map[string]string
		want        string // Location; "" for a 401
	}{
		{"/login", "/hook?tab=2&q=a%2Fb", false, page, "/login?next=%2Fhook%3Ftab%3D2%26q%3Da%252Fb"},
		{"/login", "/hook", true, page, "/login?next=%2Fhook"},
		{"/login?lang=en", "/hook", false, page, "/login?lang=en&next=%2Fhook"},
		{"/login#form", "/hook", false, page, "/login?next=%2Fhook#form"},
		{"/login?", "/hook", false, page, "/login?next=%2Fhook"},
		{"/login?lang=en&", "/hook", false, page, "/login?lang=en&next=%2Fhook"},
		{"/login&", "/hook", false, page, "/login&?next=%2Fhook"}, // "&" is part of that path
		// A backslash in the query is a character like others (Chromium
		// sends it unescaped).
		{"/login", `/hook?q=a\b`, false, page, "/login?next=%2Fhook%3Fq%3Da%5Cb"},
		{"/login", "/hook", false, map[string]string{"Accept": "application/json"}, ""},
	} {
		auth, err := middleware.RequireAuth(middleware.AuthConfig{LoginURL: tc.login, ReturnParam: "next"})
		if err != nil {
			t.Fatal(err)
		}
		h.hooked = auth(ok).ServeHTTP
		if tc.strip {
			h.hooked = http.StripPrefix("/hook", auth(ok)).ServeHTTP
		}
		resp := h.do(noRedirect, "GET", tc.path, tc.accept)
		if got := resp.header.Get("Location"); got != tc.want || (tc.want == "") != (resp.code == http.StatusUnauthorized) {
			t.Errorf("LoginURL %q, GET %s (StripPrefix %v, %v) = %d, Location %q; want Location %q", tc.login, tc.path, tc.strip, tc.accept, resp.code, got, tc.want)
		}
	}
	// A target in absolute form, as a client sends to a proxy: the page is
	// its path and query, whatever StripPrefix left in r.URL.
	auth, _ := middleware.RequireAuth(middleware.AuthConfig{LoginURL: "/login", ReturnParam: "next"})
	h.hooked = http.StripPrefix("/hook", auth(ok)).ServeHTTP
	conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s/hook?tab=2 HTTP/1.1\r\nHost: %s\r\nAccept: text/html\r\nConnection: close\r\n\r\n", h.srv.URL, h.srv.Listener.Addr())
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("Location"), "/login?next=%2Fhook%3Ftab%3D2"; got != want {
		t.Errorf("GET in absolute form = %d, Location %q; want %q", resp.StatusCode, got, want)
	}
	for _, bad := range []middleware.AuthConfig{{LoginURL: "/login?next=%2F", ReturnParam: "next"}, {ReturnParam: "next"}, {LoginURL: "/login", ReturnParam: "a b"}, {LoginURL: "/login", ReturnParam: "a&b"}} {
		if _, err := middleware.RequireAuth(bad); err == nil {
			t.Errorf("RequireAuth(%+v) = nil error, want an error", bad)
		}
	}
}

// TestReturnPath checks what ReturnPath lets through: paths of this site
// that land where they read, never another site, nor a path that
// http.Redirect or a mux would clean into another.
func TestReturnPath(t *testing.T) {
	for p, want := range map[string]string{
		"/sessions":                     "/sessions",
		"/":                             "/",
		"/sessions?x=1#a":               "/sessions?x=1#a",
		"/sessions/":                    "/sessions/",
		"/sessions?next=/../x":          "/sessions?next=/../x", // a query is not cleaned
		`/x?q=a\b`:                      `/x?q=a\b`,
		"/x?q=a\nb":                     "",
		`/x#\evil.example`:              "",
		"/%2F/evil":                     "/%2F/evil",
		"":                              "",
		"sessions":                      "",
		"//evil.example/":               "",
		"/\\evil.example/":              "",
		"/\t/evil.example":              "",
		"https://evil.example/":         "",
		"http:/evil.example":            "",
		"/./login":                      "", // which http.Redirect cleans into /login
		"/sessions/../login":            "",
		"/%2e/login":                    "",
		"/login/%2E/..?a":               "",
		"/a#/../login":                  "", // http.Redirect cleans what follows '#' too
		"/.":                            "",
		"/x\x7f":                        "",
		"/" + strings.Repeat("a", 2048): "",
	} {
		if got := middleware.ReturnPath(p); got != want {
			t.Errorf("ReturnPath(%q) = %q, want %q", p, got, want)
		}
	}
}

// TestRequireAuthWithoutSessions checks that RequireAuth alone never lets a
// request through, and says why: a 500 naming the missing middleware, and
// one Error log line however many requests come, instead of a 401 for
// everyone that reads like a logged-out user.
func TestRequireAuthWithoutSessions(t *testing.T) {
	logs := defaultLog(t)
	auth, _ := middleware.RequireAuth(middleware.AuthConfig{LoginURL: "/login"})
	h := auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("handler ran without a session")
	}))
	for range 3 {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Accept", "text/html")
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "session middleware missing") {
			t.Errorf("RequireAuth without Sessions = %d %s, want 500 session middleware missing", rec.Code, rec.Body)
		}
	}
	if n := strings.Count(logs.String(), "RequireAuth runs without Sessions"); n != 1 {
		t.Errorf("logged the missing Sessions %d times, want once:\n%s", n, logs.String())
	}
}
