package session_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// Wire a Manager on Redis into an http.ServeMux: a login that creates the
// session, a page for logged-in users, and a logout; then a browser logs in,
// reads the page, logs out and is refused.
func Example() {
	cfg, err := redisstore.FromEnv() // REDIS_URL, or REDIS_HOST and friends
	if err != nil {
		log.Fatal(err)
	}
	store, err := redisstore.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	scfg, err := session.FromEnv() // SESSION_KEYS, SESSION_LIFETIME, ...
	if err != nil {
		log.Fatal(err)
	}
	sessions, err := session.New(store, scfg)
	if err != nil {
		log.Fatal(err)
	}
	requireAuth, err := middleware.RequireAuth(middleware.AuthConfig{})
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		userID := "alice" // after checking the credentials in r
		if _, err := session.Create(r.Context(), userID); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, "/me", http.StatusSeeOther)
	})
	mux.Handle("GET /me", requireAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := session.UserID(r.Context())
		fmt.Fprintf(w, "hello, %s", user)
	})))
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := session.Destroy(r.Context()); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	// CrossOriginProtection refuses cross-origin POSTs: without it another
	// site's page could log its visitors out, or in as someone else
	// (SameSite=Lax keeps the cookie off such a post, not the answer's
	// Set-Cookie off the browser).
	handler := http.NewCrossOriginProtection().Handler(middleware.Sessions(sessions)(mux))
	// A program serves it: http.ListenAndServeTLS(addr, cert, key, handler).
	// Here a test server does, over TLS, since the cookie is Secure.
	srv := httptest.NewTLSServer(handler)
	defer srv.Close()

	browser := srv.Client()
	browser.Jar, _ = cookiejar.New(nil)
	for _, step := range []struct{ method, path string }{
		{"POST", "/login"}, // redirected to /me
		{"POST", "/logout"},
		{"GET", "/me"},
	} {
		req, _ := http.NewRequest(step.method, srv.URL+step.path, nil)
		resp, err := browser.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(strings.TrimSpace(fmt.Sprint(step.method, " ", step.path, " ", resp.StatusCode, " ", string(body))))
	}
	// Output:
	// POST /login 200 hello, alice
	// POST /logout 204
	// GET /me 401 {"error":"unauthenticated"}
}

// Values keep their Go type through the JSON record: an int comes back as an
// int, a time.Time as a time.Time, and any other type through encoding/json.
func ExampleGet() {
	cfg, err := redisstore.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	store, err := redisstore.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	scfg, err := session.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	sessions, err := session.New(store, scfg)
	if err != nil {
		log.Fatal(err)
	}

	type cart struct{ Items []string }
	mux := http.NewServeMux()
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if err := errors.Join(
			session.Put(ctx, "visits", 3),
			session.Put(ctx, "since", time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)),
			session.Put(ctx, "cart", cart{Items: []string{"book"}}),
		); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		visits, _ := session.Get[int](ctx, "visits")
		since, _ := session.Get[time.Time](ctx, "since")
		c, ok := session.Get[cart](ctx, "cart")
		fmt.Fprintf(w, "%T %d, %T %s, %T %v %v", visits, visits, since, since.Format(time.RFC3339), c, c.Items, ok)
	})
	srv := httptest.NewTLSServer(middleware.Sessions(sessions)(mux))
	defer srv.Close()
	browser := srv.Client()
	browser.Jar, _ = cookiejar.New(nil)
	if _, err := browser.Post(srv.URL+"/put", "", nil); err != nil {
		log.Fatal(err)
	}
	resp, err := browser.Get(srv.URL + "/get")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output:
	// int 3, time.Time 2026-11-25T10:00:00Z, session_test.cart [book] true
}

// An API client logs in once and sends the token as a Bearer header.
func ExampleToken() {
	handler := func(w http.ResponseWriter, r *http.Request) {
		if _, err := session.Create(r.Context(), "alice"); errors.Is(err, session.ErrStoreUnavailable) || errors.Is(err, session.ErrContention) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		} else if err != nil {
			http.Error(w, "cannot log in", http.StatusBadRequest) // ErrInvalidUserID and the like
			return
		}
		token, _ := session.Token(r.Context())
		json.NewEncoder(w).Encode(map[string]string{"token": token}) // client sends "Authorization: Bearer <token>"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/login", handler) // behind middleware.Sessions
}

// ParseKeys reads signing keys as SESSION_KEYS holds them, and says which
// one is wrong without repeating any.
// (These keys are the example's; make yours with openssl rand -base64 32.)
func ExampleParseKeys() {
	keys, err := session.ParseKeys("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=, QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpbXF1eX2A")
	fmt.Println(len(keys), len(keys[0]), err)

	_, err = session.ParseKeys("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,c2hvcnQ")
	fmt.Println(err)

	_, err = session.ParseKeys("supersecretsupersecretsupersecretsupersecret")
	fmt.Println(err)
	// Output:
	// 2 32 <nil>
	// key 2: want at least 32 bytes, got 5 once decoded from base64 (make a key with openssl rand -base64 32)
	// key 1: a run of 10 characters appears twice: a placeholder, not the base64 of random bytes (make a key with openssl rand -base64 32)
}
