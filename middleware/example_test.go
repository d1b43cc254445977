package middleware_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// Sessions goes around the whole router; RequireAuth around the routes that
// need a user. Pages redirect to the login form, API calls get a JSON 401,
// and both get 503 with Retry-After while Redis is unavailable. A request
// without a session cookie sends Redis nothing, which is why this example
// runs without one.
func ExampleRequireAuth() {
	store, err := redisstore.Open(redisstore.Config{Addr: "redis.internal:6379"}) // Open dials nothing yet
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	sessions, err := session.New(store, session.Config{
		Keys: [][]byte{[]byte("an example key: a real one is 32 random bytes")}, // session.FromEnv reads SESSION_KEYS
	})
	if err != nil {
		log.Fatal(err)
	}

	// Browsers go to /login?next=<the page>; the login handler sends them
	// back with http.Redirect(w, r, cmp.Or(middleware.ReturnPath(
	// r.FormValue("next")), "/"), http.StatusSeeOther), never off-site.
	pages, err := middleware.RequireAuth(middleware.AuthConfig{LoginURL: "/login", ReturnParam: "next"})
	if err != nil {
		log.Fatal(err)
	}
	api, err := middleware.RequireAuth(middleware.AuthConfig{})
	if err != nil {
		log.Fatal(err)
	}
	account := func(w http.ResponseWriter, r *http.Request) {
		user, _ := session.UserID(r.Context())
		fmt.Fprintf(w, "signed in as %s\n", user)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /account", pages(http.HandlerFunc(account)))
	mux.Handle("GET /api/account", api(http.HandlerFunc(account)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "public page, with or without a session")
	})
	handler := middleware.Sessions(sessions)(mux) // http.ListenAndServe(addr, handler)

	// Requests from a browser and an API client that have no session yet.
	for _, path := range []string{"/", "/account", "/api/account"} {
		req := httptest.NewRequest("GET", path, nil)
		if path != "/api/account" {
			req.Header.Set("Accept", "text/html")
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Println(path, rec.Code, rec.Header().Get("Location"), strings.TrimSpace(rec.Body.String()))
	}
	// Output:
	// / 200  public page, with or without a session
	// /account 303 /login?next=%2Faccount <a href="/login?next=%2Faccount">See Other</a>.
	// /api/account 401  {"error":"unauthenticated"}
}
