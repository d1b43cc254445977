package middleware_test

import (
	"fmt"
	"log"
	"math"
	"net/http"
	"time"

	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
)

// A general route, limited per client address: 100 requests a minute,
// counted in Redis and so shared by every app instance. Over the limit,
// 429 with Retry-After; with Redis down, requests are served (FailOpen).
func ExampleRateLimit() {
	var store *redisstore.Store // from redisstore.Open, shared with the sessions
	var rateKey []byte          // 32 random bytes, the same on every instance
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})

	limit, err := middleware.RateLimit(store, middleware.RateLimitConfig{Secret: rateKey,
		Rules: []middleware.Rule{{Name: "api", Limit: 100, Window: time.Minute, Key: middleware.ByIP()}}})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/", limit(api))
}

// A login form, limited by user name and by address (two round trips: the
// name is counted once the address is admitted), with a page that says
// when to try again. Every attempt counts, whether
// the user exists or not. With Redis down, attempts get 503 (FailClosed).
func ExampleLoginLimit() {
	var store *redisstore.Store
	var rateKey []byte
	formLogin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})

	login, err := middleware.LoginLimit(store, middleware.RateLimitConfig{
		Secret: rateKey,
		Rules: []middleware.Rule{
			{Name: "login-user", Limit: 5, Window: 15 * time.Minute, Key: middleware.ByFormField("username")},
			{Name: "login-ip", Limit: 100, Window: 15 * time.Minute, Key: middleware.ByIP()},
		},
		OnLimited: func(w http.ResponseWriter, r *http.Request, retry time.Duration) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusTooManyRequests)
			minutes := int(math.Ceil(retry.Minutes()))
			fmt.Fprintf(w, "Too many attempts. Try again in %d minute(s).\n", max(minutes, 1))
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /login", login(formLogin))
}
