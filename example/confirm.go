package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/sessionkit/sessionkit/session"
)

// Ending the caller's other sessions (a device's Revoke, sign out of all
// other sessions, log out everywhere, and their API routes) needs a recent
// sign-in: within reauthAfter of the session's login, or of the last time
// its user confirmed the password (OWASP ASVS 7.5.2: a user terminates
// sessions having authenticated again). Otherwise someone holding a stolen
// session could sign its owner out of every device, again at each of the
// owner's logins, and keep the account to the session's absolute deadline.
// Ending the caller's own session alone (a logout) needs none.
const reauthAfter = 10 * time.Minute

// passwordField is the form field, and the JSON member, that carries the
// password confirming such a request.
const passwordField = "password"

// confirmedKey is the session value that holds when the session's user
// last confirmed the password.
const confirmedKey = "confirmed_at"

// recentlyAuthenticated reports whether the request's session signed in,
// or confirmed the password, less than s.login.reauthAfter() (reauthAfter
// unless REAUTH_AFTER says otherwise; 0: never) ago.
func (s *server) recentlyAuthenticated(r *http.Request) bool {
	info, _ := session.FromContext(r.Context())
	at := info.CreatedAt
	// A confirmation's time from ahead of this instance's clock is no
	// recent one (a value carried over from elsewhere, a clock ahead).
	if t, ok := session.Get[time.Time](r.Context(), confirmedKey); ok && t.After(at) && !t.After(time.Now()) {
		at = t
	}
	// A session's creation time is rounded up to the millisecond: with a
	// reauthAfter of 0, a request in that millisecond is no exception.
	after := s.login.reauthAfter()
	return after > 0 && time.Since(at) < after
}

// confirmed reports whether the request may end sessions of its user's
// other than its own: it carries the user's password (password, "" for
// none), or none and it was recently authenticated. A password sent is
// checked also within the recent sign-in's window: a wrong one is refused,
// not ignored. A password is checked behind
// the login limits' s.confirmLimit, counted for the session and for the
// request's address (see loginLimits), so that a stolen session gets no
// more guesses at the password than a login form gives, and wrong logins
// with the user's name cannot keep the owner's sessions from confirming;
// once it is right, the session
// records the time (confirmedKey), and needs no password for the next
// reauthAfter. Otherwise confirmed answers and reports false: 403 with a
// page asking for the password (action, the form's address, and what,
// what it is for: "sign out of your other sessions"), or {"error":
// "password required"} or {"error":"wrong password"} for an API client;
// 429 over the limits; 503 when the password could not be checked.
func (s *server) confirmed(w http.ResponseWriter, r *http.Request, password, action, what string) bool {
	recent := s.recentlyAuthenticated(r)
	if password == "" && recent {
		return true
	}
	ask := page{Title: "Confirm it's you", Message: what, Action: action, Recent: recent}
	if password == "" {
		s.askPassword(w, r, http.StatusForbidden, "password required", ask)
		return false
	}
	ok := false
	// What the password is for, for the page of a try over the limits
	// (confirmLimited).
	r = r.WithContext(context.WithValue(r.Context(), confirmingKey{}, what))
	s.confirmLimit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := session.UserID(r.Context())
		right, err := s.checkPassword(r, user, password)
		switch {
		case err != nil: // no hashing slot came free in time, or the client went away
			w.Header().Set("Retry-After", strconv.Itoa(pageRetry))
			ask.Error = "Checking your password took too long. Please try again."
			s.askPassword(w, r, http.StatusServiceUnavailable, "try again", ask)
		case !right:
			ask.Error, ask.Invalid = "Wrong password.", true
			s.askPassword(w, r, http.StatusForbidden, "wrong password", ask)
		default:
			ok = true
		}
	})).ServeHTTP(w, r)
	if ok {
		// Saved with the answer; should that fail, the password is asked
		// for again next time, and nothing else is lost.
		session.Put(r.Context(), confirmedKey, time.Now())
	}
	return ok
}

// askPassword answers a request that needs a recent sign-in with code: the
// page p asking for the password, for a browser; {"error": msg} for an API
// client.
func (s *server) askPassword(w http.ResponseWriter, r *http.Request, code int, msg string, p page) {
	if !wantsHTML(r) {
		writeError(w, code, msg)
		return
	}
	info, _ := session.FromContext(r.Context())
	p.User, p.Session = info.UserID, info.FirstID
	s.render(w, code, "confirm", p)
}

// confirmingKey is the context key of what a password confirmation is for
// ("sign out that device"), which confirmed hands confirmLimited.
type confirmingKey struct{}

// confirmLimited answers a password confirmation over the login limits:
// the page asking for the password with 429 and a button that waits for
// Retry-After, for a browser; 429 as for a login for anyone else. The
// limiter has set Retry-After and the RateLimit headers.
func (s *server) confirmLimited(w http.ResponseWriter, r *http.Request, retry time.Duration) {
	if !wantsHTML(r) {
		s.loginLimited(w, r, retry)
		return
	}
	secs := retrySeconds(retry)
	what, _ := r.Context().Value(confirmingKey{}).(string)
	s.askPassword(w, r, http.StatusTooManyRequests, "too many requests", page{
		Title: "Confirm it's you", Message: cmp.Or(what, "end other sessions"), Action: r.URL.Path,
		Recent: s.recentlyAuthenticated(r),
		Error:  "Too many password attempts. Try again in " + waitText(secs) + ".", RetryAfter: secs,
	})
}

// confirmUnavailable answers a password confirmation that the login
// limits could not count (Redis failing): 503, as every signed-in page
// answers while Redis fails. Retry-After is set.
func (s *server) confirmUnavailable(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, http.StatusServiceUnavailable, "rate limiter unavailable", page{
		Heading: "We can't check your password right now",
		Message: "Nothing was changed. Please try again in a few seconds.",
		Back:    "/sessions", BackText: "Back to your devices",
	})
}

// apiPassword reads the password of an API request that ends other
// sessions from its JSON body, {"password": "..."}; "" without one (no
// body, or one of another type, which these routes ignored before they
// asked for a password). A JSON body that is not such an object gets 400,
// one over loginMaxBody 413, and ok false.
func apiPassword(w http.ResponseWriter, r *http.Request) (password string, ok bool) {
	if t, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); t != "application/json" {
		return "", true
	}
	var body struct {
		Password string `json:"password"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, loginMaxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(&body)
	if errors.Is(err, io.EOF) {
		return "", true
	}
	if err == nil {
		err = trailing(dec)
	}
	switch {
	case tooLarge(err):
		writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
		return "", false
	case err != nil:
		writeError(w, http.StatusBadRequest, `want no body, or a JSON object {"password"}`)
		return "", false
	}
	return body.Password, true
}
