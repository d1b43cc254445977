package middleware

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/sessionkit/sessionkit/session"
)

// AuthConfig configures RequireAuth.
type AuthConfig struct {
	// LoginURL, when set, is where a browser asking for a page (a GET or
	// HEAD request that accepts text/html) is redirected with 303 when it
	// has no session. It must be a path on this site, starting with a single
	// "/", without backslashes or control characters. Empty (the default) answers every request without a session with
	// 401 and a JSON error.
	LoginURL string
}

// RequireAuth returns middleware that lets a request through only with a
// logged-in session (session.UserID). Without one it answers 401 with a JSON
// body {"error":"unauthenticated"}, or redirects page requests to
// cfg.LoginURL. When the session could not be read because the store is
// unavailable it answers 503 with Retry-After, never 401: a user is not logged
// out by an outage. It must run behind Sessions: without it, it answers
// every request 500 {"error":"session middleware missing"} and logs the
// mistake once for each RequireAuth (slog.Default, level Error).
//
// Keep it off logout routes: a token that a renewal or a re-login of the
// same client has just replaced leads to no session, and RequireAuth
// answers it 401, where session.Destroy would end the session that
// replaced it. It answers a CORS preflight (OPTIONS, which carries no
// credentials) 401 too: answer those around it.
func RequireAuth(cfg AuthConfig) (func(http.Handler) http.Handler, error) {
	if cfg.LoginURL != "" && !sitePath(cfg.LoginURL) {
		return nil, errors.New("middleware: AuthConfig.LoginURL: want a path on this site starting with a single /")
	}
	var missingSessions sync.Once // logs a missing Sessions once
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			if _, ok := session.UserID(ctx); ok {
				next.ServeHTTP(w, r)
				return
			}
			switch err := session.LoadError(ctx); {
			case errors.Is(err, session.ErrStoreUnavailable):
				unavailable(w)
				return
			case errors.Is(err, session.ErrNoSession):
				// No Sessions ran before this: a wiring mistake, which a
				// 401 for everyone would hide.
				missingSessions.Do(func() {
					slog.Error("middleware: RequireAuth runs without Sessions before it: every request is refused with 500; wrap the handler with Sessions, then RequireAuth")
				})
				writeJSONError(w, http.StatusInternalServerError, "session middleware missing")
				return
			}
			if cfg.LoginURL != "" && wantsPage(r) {
				http.Redirect(w, r, cfg.LoginURL, http.StatusSeeOther)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="session"`)
			writeJSONError(w, http.StatusUnauthorized, "unauthenticated")
		})
	}, nil
}

// wantsPage reports whether r is a browser navigation rather than an API call.
func wantsPage(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && acceptsHTML(r)
}

// unavailable answers 503 with Retry-After: the session store is down and the
// client should try again shortly.
func unavailable(w http.ResponseWriter) error {
	return retryLater(w, "session store unavailable")
}

// retryLater answers 503 with Retry-After and the error msg, a constant of
// this package.
func retryLater(w http.ResponseWriter, msg string) error {
	w.Header().Set("Retry-After", "1")
	return writeJSONError(w, http.StatusServiceUnavailable, msg)
}

// writeJSONError answers code with {"error": msg}. msg is a constant of this
// package, so it needs no escaping. It returns the error of writing the
// body, which only Sessions' commit looks at (see sessionWriter.wrote).
func writeJSONError(w http.ResponseWriter, code int, msg string) error {
	writeHeader(w, code, "application/json")
	_, err := w.Write([]byte(`{"error":"` + msg + `"}` + "\n"))
	return err
}

// writeHeader sends the header of the middleware's own answer with code:
// its Content-Type, never cached, not sniffed, and without a
// Content-Length the handler may have set for its own body.
func writeHeader(w http.ResponseWriter, code int, contentType string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(code)
}

// sitePath reports whether u is a path on this site: a single "/" first,
// and no backslash or control character, which browsers drop or read as
// "/" ("/\t/evil.example" is "//evil.example" to them: another site).
func sitePath(u string) bool {
	return strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//") &&
		!strings.ContainsFunc(u, func(r rune) bool { return r == '\\' || r < 0x20 || r == 0x7f })
}
