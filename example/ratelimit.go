package main

import (
	"cmp"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/session"
)

// The login limits. Every attempt counts, whether the user exists or not
// and whether the password was right or not, so that the answers say
// nothing about which user names exist. The form and the API count a user
// name's attempts together: their rules have the same names.
const (
	loginUserLimit = 5   // attempts per user name per window, unless LOGIN_LIMIT_PER_USER
	loginIPLimit   = 100 // attempts per address (IPv4, or IPv6 /64) per window, unless LOGIN_LIMIT_PER_IP
	loginWindow    = 15 * time.Minute

	// loginMaxBody bounds a login's body, as the handlers do: the limiter
	// reads it to find the user name, and answers 413 to a longer one.
	loginMaxBody = formMaxBody
)

// loginRules are the names of the login limiters' rules, for the metrics:
// the user name's and the address's attempts, and a session's password
// confirmations (see loginLimits).
var loginRules = []string{"login-user", "login-ip", "confirm-session"}

// loginConfig configures the login limits.
type loginConfig struct {
	// key keys the HMAC of the limits' Redis keys: RATE_LIMIT_KEY, or a
	// random key. Required, at least 32 bytes.
	key []byte
	// keySet says whether key came from RATE_LIMIT_KEY, for the start-up
	// log.
	keySet bool
	// perUser and perIP are the attempts admitted per user name and per
	// address in a window: LOGIN_LIMIT_PER_USER and LOGIN_LIMIT_PER_IP.
	// Zero means loginUserLimit and loginIPLimit.
	perUser, perIP int
	// reauth is how long after a login, or a confirmation of the
	// password, the session may end its user's other sessions without the
	// password (see confirmed): REAUTH_AFTER; unset, reauthAfter; 0, never.
	reauth    time.Duration
	reauthSet bool
}

// reauthAfter returns the time after a login within which ending other
// sessions needs no password.
func (c loginConfig) reauthAfter() time.Duration {
	if !c.reauthSet {
		return reauthAfter
	}
	return c.reauth
}

// limits returns the attempts per user name and per address in force.
func (c loginConfig) limits() (perUser, perIP int) {
	return cmp.Or(c.perUser, loginUserLimit), cmp.Or(c.perIP, loginIPLimit)
}

// loginConfigFromEnv reads RATE_LIMIT_KEY (see rateLimitKey; signing are
// the session signing keys), LOGIN_LIMIT_PER_USER and LOGIN_LIMIT_PER_IP
// (whole numbers above 0; unset or empty: the defaults) and REAUTH_AFTER
// (a Go duration, "10m"; unset or empty: reauthAfter). Without
// RATE_LIMIT_KEY key is nil.
func loginConfigFromEnv(signing [][]byte) (loginConfig, error) {
	key, err := rateLimitKey(signing)
	if err != nil {
		return loginConfig{}, err
	}
	c := loginConfig{key: key, keySet: key != nil}
	for _, v := range []struct {
		name string
		n    *int
	}{{"LOGIN_LIMIT_PER_USER", &c.perUser}, {"LOGIN_LIMIT_PER_IP", &c.perIP}} {
		s := os.Getenv(v.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return loginConfig{}, fmt.Errorf("example: %s: want a whole number of attempts per %s above 0, got %q", v.name, waitText(int(loginWindow/time.Second)), s)
		}
		*v.n = n
	}
	if v := os.Getenv("REAUTH_AFTER"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxReauthAfter {
			return loginConfig{}, fmt.Errorf("example: REAUTH_AFTER=%q: want a duration from 0 (always ask for the password) to %v, such as 10m", v, maxReauthAfter)
		}
		c.reauth, c.reauthSet = d, true
	}
	return c, nil
}

// maxReauthAfter bounds REAUTH_AFTER: a longer one would let a session
// stolen a day after its login still sign its owner out everywhere.
const maxReauthAfter = 24 * time.Hour

// loginLimits returns the limiters of POST /login, counting by the form
// field username, and of POST /api/login, counting by the JSON field
// username, and sets s.confirmLimit, the limiter of the password
// confirmations that ending other sessions may need (see confirmed),
// counting by the session (its first id, which renewals keep), as many a
// window as a user name's logins, right passwords included. All count by
// address too, in one counter. A confirmation is not counted by user
// name: anyone who knows the name could then spend its attempts with
// wrong logins, and keep the owner's sessions from ending a stolen one;
// so a stolen session gets tries of its own at the password, as many as
// the login form gives the name, which doubles a thief's guesses a window
// (5 logins and 5 confirmations, by default). They
// fail closed: when Redis cannot count, a login gets 503 with
// Retry-After, never unlimited guesses.
func (s *server) loginLimits() (form, api func(http.Handler) http.Handler, err error) {
	perUser, perIP := s.login.limits()
	// route names the limiter in its log lines. (The limiter does not
	// log the request's path itself, which in other apps may hold a
	// secret, such as a reset link's token.)
	limit := func(route string, first middleware.Rule, limited func(http.ResponseWriter, *http.Request, time.Duration), unavailable func(http.ResponseWriter, *http.Request)) (func(http.Handler) http.Handler, error) {
		return middleware.LoginLimit(s.counter, middleware.RateLimitConfig{
			Rules: []middleware.Rule{
				first,
				{Name: loginRules[1], Limit: perIP, Window: loginWindow, Key: middleware.ByIP()},
			},
			Secret:        s.login.key,
			MaxBody:       loginMaxBody,
			OnLimited:     limited,
			OnTooLarge:    s.loginTooLarge,
			OnUnavailable: unavailable,
			Logger:        s.log.With("route", route),
			Metrics:       s.rateMetrics,
		})
	}
	byName := func(key middleware.Key) middleware.Rule {
		return middleware.Rule{Name: loginRules[0], Limit: perUser, Window: loginWindow, Key: key}
	}
	if form, err = limit("POST /login", byName(middleware.ByFormField("username")), s.loginLimited, s.loginLimitUnavailable); err != nil {
		return nil, nil, err
	}
	if api, err = limit("POST /api/login", byName(middleware.ByJSONField("username")), s.loginLimited, nil); err != nil {
		return nil, nil, err
	}
	// ByName, not ByFunc: a name's rule counts a request only once the
	// address's admitted it, so that others behind the owner's address
	// (a café's, a carrier's NAT), filling its login limit, cannot spend
	// the tries of the owner's session on refusals. (It
	// folds the id's case, which leaves it about 100 bits.)
	bySession := middleware.Rule{Name: loginRules[2], Limit: perUser, Window: loginWindow, Key: middleware.ByName(func(r *http.Request) string {
		info, _ := session.FromContext(r.Context())
		return info.FirstID
	})}
	if s.confirmLimit, err = limit("password confirmation", bySession, s.confirmLimited, s.confirmUnavailable); err != nil {
		return nil, nil, err
	}
	return form, api, nil
}

// loginLimitUnavailable answers a form login that the limiter refused
// because Redis could not count it: for a browser, the login page's outage
// version with the user name kept, as when the session store fails at
// login; for anyone else, the limiter's own 503 JSON. Retry-After is set.
func (s *server) loginLimitUnavailable(w http.ResponseWriter, r *http.Request) {
	if !wantsHTML(r) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "rate limiter unavailable"})
		return
	}
	// r's body is the bytes the limiter read, ready to be parsed again.
	username, _, next, _ := loginForm(r)
	s.loginUnavailable(w, username, next)
}

// loginTooLarge answers a login whose body is over loginMaxBody, which the
// limiter read no further and counted nowhere: a page with a way back for
// a browser, 413 {"error":"request body too large"} for anyone else.
func (s *server) loginTooLarge(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, http.StatusRequestEntityTooLarge, "request body too large", page{
		Heading: "This sign-in was too large",
		Message: "The form sent more than a sign-in needs, so it was not read. Nothing was changed.",
		Back:    "/login", BackText: "Back to sign in",
	})
}

// loginLimited answers a login over its limit: the login page with 429,
// the user name kept and a button that waits for Retry-After, for a
// browser; 429 {"error":"too many requests","retry_after":<seconds>} for
// anyone else. The limiter has set Retry-After and the RateLimit headers.
// When the address has attempts left, only the user name's limit refused
// the login: the button waits only while the form names that user.
func (s *server) loginLimited(w http.ResponseWriter, r *http.Request, retry time.Duration) {
	secs := retrySeconds(retry)
	if !wantsHTML(r) {
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": "too many requests", "retry_after": secs})
		return
	}
	// r's body is the bytes the limiter read, ready to be parsed again.
	username, _, next, _ := loginForm(r)
	p := page{
		Title: "Sign in", Username: username, Next: next,
		Error:      "Too many sign-in attempts. Try again in " + waitText(secs) + ".",
		RetryAfter: secs,
	}
	if !addressLimited(w.Header()) {
		p.RetryName = p.Username
	}
	s.render(w, http.StatusTooManyRequests, "login", p)
}

// addressLimited reports whether the RateLimit header of a refused login
// says that its address has no attempt left (login-ip at r=0), so that
// another user name would be refused too. The limiter writes each rule
// that counted the request as `"name";r=<remaining>;t=<seconds>`; a
// login refused by its address alone was not counted by user name.
func addressLimited(h http.Header) bool {
	for _, v := range h.Values("RateLimit") {
		for member := range strings.SplitSeq(v, ", ") {
			if strings.HasPrefix(member, `"`+loginRules[1]+`";r=0;`) {
				return true
			}
		}
	}
	return false
}

// retrySeconds is retry in whole seconds, rounded up and at least 1, as
// the limiter writes it in Retry-After.
func retrySeconds(retry time.Duration) int {
	return max(int((retry+time.Second-1)/time.Second), 1)
}

// waitText says how long secs seconds is, for people: "40 seconds" under a
// minute, else whole minutes rounded up, "15 minutes".
func waitText(secs int) string {
	n, unit := secs, "second"
	if secs >= 60 {
		n, unit = (secs+59)/60, "minute"
	}
	if n != 1 {
		unit += "s"
	}
	return strconv.Itoa(n) + " " + unit
}
