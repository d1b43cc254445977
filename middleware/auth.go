package middleware

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"path"
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

	// ReturnParam, when set with LoginURL, names the query parameter of
	// LoginURL in which that redirect carries the page asked for, its path
	// and query as the request named them ("/login?next=%2Forders%3Fpage%3D2"
	// for ReturnParam "next"), so that the login handler can send the
	// browser back there: through ReturnPath, which lets only a path of
	// this site through, never another site's address. A page that is "/",
	// or no ReturnPath, is not carried. Empty (the default) carries none.
	ReturnParam string
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
	if cfg.ReturnParam != "" && (cfg.LoginURL == "" || url.QueryEscape(cfg.ReturnParam) != cfg.ReturnParam) {
		return nil, errors.New("middleware: AuthConfig.ReturnParam: want a query parameter name that needs no escaping (letters, digits, '-', '_', '.', '~'), and a LoginURL")
	}
	if u, err := url.Parse(cfg.LoginURL); cfg.ReturnParam != "" && (err != nil || u.Query().Has(cfg.ReturnParam)) {
		// The login handler would read the first, and the page would be lost.
		return nil, errors.New("middleware: AuthConfig.LoginURL: its query already has the ReturnParam")
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
				http.Redirect(w, r, loginURL(cfg, r), http.StatusSeeOther)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="session"`)
			writeJSONError(w, http.StatusUnauthorized, "unauthenticated")
		})
	}, nil
}

// loginURL is where RequireAuth sends a browser without a session: the
// LoginURL of cfg, with the page r asked for in its ReturnParam when that
// is set and the page is a ReturnPath other than "/". The page is the
// request's target as the client sent it (RequestURI), not r.URL, which a
// handler such as http.StripPrefix may have shortened; but r.URL's path
// and query for a target in absolute form ("http://host/orders", as a
// client sends to a proxy), and for a request made in the process. The
// parameter goes before a fragment of LoginURL.
func loginURL(cfg AuthConfig, r *http.Request) string {
	if cfg.ReturnParam == "" {
		return cfg.LoginURL
	}
	page := r.RequestURI
	if !strings.HasPrefix(page, "/") {
		if u, err := url.ParseRequestURI(page); err == nil && strings.HasPrefix(u.Path, "/") {
			page = u.RequestURI() // absolute form: its path, which StripPrefix left in RequestURI too
		} else {
			page = r.URL.RequestURI()
		}
	}
	if page = ReturnPath(page); page == "" || page == "/" {
		return cfg.LoginURL
	}
	base, fragment, hasFragment := strings.Cut(cfg.LoginURL, "#")
	sep := "?"
	switch {
	case strings.HasSuffix(base, "?") || strings.Contains(base, "?") && strings.HasSuffix(base, "&"):
		sep = ""
	case strings.Contains(base, "?"):
		sep = "&"
	}
	u := base + sep + cfg.ReturnParam + "=" + url.QueryEscape(page)
	if hasFragment {
		u += "#" + fragment
	}
	return u
}

// ReturnPath returns p if it is a path of this site that is safe to
// redirect a browser to after login, and "" otherwise: p must start with a
// single "/", hold no control character, nor a backslash before its query
// (which browsers may read as another host, "/\evil.example"; in a query
// it is a character like others), name no scheme or host, be at
// most 2,048 bytes, and need no cleaning. http.Redirect cleans a path as
// written, escapes and all, a fragment with it ("/a/../login" and
// "/a#/../login" are "/login"), and a mux cleans
// it again once unescaped ("/a/%2e%2e/login"), so a path with dot
// segments, or a dot written %2e, could land elsewhere than it reads: no
// link of a site needs one. A query and a fragment are kept. Use it on the
// page a login form carries back (AuthConfig.ReturnParam), before
// redirecting there:
//
//	http.Redirect(w, r, cmp.Or(middleware.ReturnPath(r.FormValue("next")), "/"), http.StatusSeeOther)
//
// It does not know the login page itself: an app whose login page sends a
// browser that is logged in on to the page it names should refuse that
// page being the login page, or the two redirect to each other.
func ReturnPath(p string) string {
	raw, query, _ := strings.Cut(p, "?")
	if len(p) > 2048 || !sitePath(raw) || strings.ContainsFunc(query, control) {
		return ""
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return ""
	}
	// Before the query only: http.Redirect cleans a fragment with the
	// path ("/a#/../login" is "/login").
	if c := path.Clean(raw); c != raw && c+"/" != raw || strings.Contains(strings.ToLower(raw), "%2e") {
		return ""
	}
	return p
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
		!strings.ContainsFunc(u, func(r rune) bool { return r == '\\' || control(r) })
}

// control reports whether r is an ASCII control character.
func control(r rune) bool {
	return r < 0x20 || r == 0x7f
}
