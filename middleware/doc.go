// Package middleware holds the net/http middlewares of sessionkit:
// Sessions loads a request's session and saves it before the first byte of
// the response, RequireAuth turns away requests without a logged-in
// session, and RateLimit and LoginLimit limit requests per client, user or
// user name, counted in Redis (see docs/ratelimit.md). Each is a
// func(http.Handler) http.Handler (RequireAuth, RateLimit and LoginLimit
// return one with the error of a bad configuration) and works with
// http.ServeMux, chi and any router of that shape.
package middleware
