package middleware_test

import (
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
