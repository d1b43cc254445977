// Command minimal is the smallest complete sessionkit app: the README's
// usage example as a program that builds and runs.
//
//	cd example && go run ./minimal
//
// It needs a Redis at REDIS_URL, or REDIS_HOST and REDIS_PORT (the
// variables of redisstore.FromEnv; default 127.0.0.1:6379), and a signing
// key in SESSION_KEYS (base64 of 32 random bytes; without one it makes a
// random key, so sessions end with the process). It serves
// http://127.0.0.1:8090, or ADDR. Over plain HTTP some browsers (Safari)
// drop a Secure cookie even from localhost or a loopback address, and
// every browser does from any other host: it sets InsecureCookie, which a
// deployment behind TLS leaves false.
//
//	curl -c jar -X POST -d user=alice http://127.0.0.1:8090/login
//	curl -b jar http://127.0.0.1:8090/account
//	curl -b jar -X POST http://127.0.0.1:8090/logout
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

func main() {
	cfg, err := redisstore.FromEnv() // REDIS_URL, or REDIS_HOST and REDIS_PORT, ...
	if err != nil {
		log.Fatal(err)
	}
	store, err := redisstore.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	// Open dials nothing: ask Redis once, so that a wrong address or
	// password stops the program here, in words (Describe), rather than
	// as a 503 on the first login.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = store.Ping(ctx)
	cancel()
	if err != nil {
		log.Fatalf("redis: %v\n%s", err, redisstore.Describe(err, cfg))
	}

	scfg, err := session.FromEnv() // SESSION_KEYS, SESSION_LIFETIME, ...
	if err != nil {
		log.Fatal(err)
	}
	if len(scfg.Keys) == 0 {
		key := make([]byte, 32) // at least 32 random bytes (to rotate SESSION_KEYS: docs/security.md)
		rand.Read(key)
		scfg.Keys = [][]byte{key}
	}
	scfg.InsecureCookie = true // plain http://localhost only
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
		userID := r.FormValue("user") // a real app checks the credentials and passes the account's stable id
		if _, err := session.Create(r.Context(), userID); errors.Is(err, session.ErrInvalidUserID) {
			http.Error(w, "no such user", http.StatusBadRequest)
			return
		} else if err != nil {
			log.Printf("login: %v", err) // the cause is yours to see: the client gets a 503 (no token is ever in err)
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		if err := session.Put(r.Context(), "theme", "dark"); err != nil {
			log.Printf("put: %v", err)
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "logged in")
	})
	mux.Handle("GET /account", requireAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := session.UserID(r.Context())
		theme, _ := session.Get[string](r.Context(), "theme")
		w.Header().Set("Cache-Control", "no-store") // the user's data: no copy in the browser's cache after logout (Back is another matter: see Destroy below)
		fmt.Fprintf(w, "%s prefers %s\n", user, theme)
	})))
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := session.Destroy(r.Context()); err != nil { // the Redis key is gone when this returns
			log.Printf("logout: %v", err)
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "logged out")
	})

	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8090"
	}
	log.Printf("listening on http://%s", addr)
	// CrossOriginProtection refuses cross-origin POSTs (403: another site, or
	// a sibling subdomain): without it another site's page could log its
	// visitors out, or in as someone else (SameSite=Lax keeps the cookie off
	// such a post, not the answer's Set-Cookie off the browser).
	csrf := http.NewCrossOriginProtection()
	log.Fatal(http.ListenAndServe(addr, csrf.Handler(middleware.Sessions(sessions)(mux))))
}
