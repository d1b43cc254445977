// Package middleware holds the net/http middlewares of sessionkit:
// Sessions loads a request's session and saves it before the first byte of
// the response, and RequireAuth turns away requests without a logged-in
// session. Both are func(http.Handler) http.Handler and work with
// http.ServeMux, chi and any router of that shape.
package middleware
