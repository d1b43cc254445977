package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// TestSameManagerTwiceClearsSiteData checks that one Manager's Sessions
// applied twice (a router's global Use and a route group's) is not taken
// for two nested Managers: its logout still sends Clear-Site-Data, which a
// nested Manager's leaves out.
func TestSameManagerTwiceClearsSiteData(t *testing.T) {
	r := redistest.Start(t)
	store, err := redisstore.Open(redisstore.Config{Addr: r.Addr(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m, err := session.New(store, session.Config{Keys: [][]byte{[]byte("test signing key of 32 bytes: ok")}, InsecureCookie: true})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if _, err := session.Create(r.Context(), "alice"); err != nil {
			t.Error(err)
		}
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := session.Destroy(r.Context()); err != nil {
			t.Error(err)
		}
	})
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{
		{"once", middleware.Sessions(m)(mux)},
		{"twice", middleware.Sessions(m)(middleware.Sessions(m)(mux))},
	} {
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
		cookie := rec.Result().Cookies()[0]
		rec = httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/logout", nil)
		req.AddCookie(cookie)
		tc.h.ServeHTTP(rec, req)
		if rec.Header().Get("Clear-Site-Data") != `"cookies"` {
			t.Errorf("Sessions applied %s: logout Clear-Site-Data = %q, want \"cookies\" (one Manager, KeepSiteData unset)", tc.name, rec.Header().Get("Clear-Site-Data"))
		}
	}
}
