package middleware_test

import (
	"fmt"
	"log"
	"net/http"

	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/session"
)

// Sessions goes around the whole router; RequireAuth around the routes that
// need a user. Pages redirect to the login form, API calls get a JSON 401,
// and both get 503 with Retry-After while Redis is unavailable.
func ExampleRequireAuth() {
	var sessions *session.Manager // from session.New

	pages, err := middleware.RequireAuth(middleware.AuthConfig{LoginURL: "/login"})
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
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "public page, with or without a session")
	})
	handler := middleware.Sessions(sessions)(mux)
	_ = handler // http.ListenAndServe(addr, handler)
}
