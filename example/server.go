package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionkit/sessionkit/internal/loglimit"
	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// server holds what the handlers need.
type server struct {
	sessions *session.Manager
	store    probed
	metrics  http.Handler // GET /metrics
	log      *slog.Logger
	// redis is the store's configuration, for redisstore.Describe in logs.
	redis redisstore.Config
	// counter counts login attempts in Redis (the store), with the key
	// and limits of login; rateMetrics counts the limiters' refusals and
	// outages (nil: not counted). See loginLimits.
	counter     middleware.RateCounter
	login       loginConfig
	rateMetrics middleware.RateLimitMetrics
	// confirmLimit counts the password confirmations of confirmed as
	// login attempts (see loginLimits); routes sets it.
	confirmLimit func(http.Handler) http.Handler
	// hashing holds a slot per password check running, one per CPU: a
	// burst of logins then waits its turn instead of starving every other
	// request, the session store's calls included, of CPU. Of those, one
	// address holds at most half (see addressTurns).
	hashing chan struct{}
	turns   addressTurns
	// failures limits the lines logFailure logs.
	failures *loglimit.Limiter
	// idle is the sessions' idle timeout (negative: none), and
	// insecureCookie whether their cookie lacks Secure, as configured in
	// session.Config: the devices page states the first, the marker cookie
	// (notice.go) follows both.
	idle           time.Duration
	insecureCookie bool
	// notReady is the check /readyz last saw failing with its cause, ""
	// when it last answered ready, nil before its first probe; it makes
	// /readyz log changes of readiness rather than every probe.
	notReady atomic.Pointer[string]
	// unhealthy is the cause of the failure /healthz last saw, nil while
	// it last saw Redis answer, so that it logs each failure once.
	unhealthy atomic.Pointer[string]
	// counterChecked is set once Redis let the login limit's counter
	// run (Store.PingCounter), at start-up or, when Redis did not answer
	// then, at a /readyz since.
	counterChecked atomic.Bool
	// stopping is set once a signal started the shutdown: /readyz then
	// fails, so that load balancers stop sending requests while the
	// server still serves them (SHUTDOWN_DELAY, see serve).
	stopping atomic.Bool
	// ready and health share the Redis checks of /readyz and /healthz
	// among the probes that come while one runs (see sharedCheck).
	ready, health sharedCheck
}

// stopChecks ends the probes' checks of Redis and starts no more (see
// sharedCheck.stop).
func (s *server) stopChecks() {
	s.ready.stop()
	s.health.stop()
}

// probed is what the probes need of the store.
type probed interface {
	Ping(context.Context) error
	PingCounter(context.Context) error
	PoolStats() redisstore.PoolStats
}

// logFailure logs a session operation that failed, at most once per
// failureLogInterval, with the count of those held back since the line
// before: every request of an outage, or of a misconfigured ACL, fails
// one, and clients choose how many requests to send. A call that failed
// because r's client went away (its context cancelled: any client can
// hang up at will) says nothing of Redis: it is logged at Debug only.
func (s *server) logFailure(r *http.Request, err error) {
	if clientGone(r) && errors.Is(err, context.Canceled) {
		s.log.Debug("example: session operation abandoned: the client went away", "error", err)
		return
	}
	s.failures.Do(time.Now(), func(suppressed int) {
		s.log.Error("example: session operation failed", "error", err, "suppressed", suppressed)
	})
}

// failureLogInterval is how often logFailure logs at most: the session
// package's own outage warnings keep the same pace.
const failureLogInterval = 10 * time.Second

// newServer returns a server on the given Manager and store, serving
// metrics on GET /metrics.
func newServer(sessions *session.Manager, store probed, metrics http.Handler, log *slog.Logger) *server {
	slots := runtime.GOMAXPROCS(0)
	return &server{sessions: sessions, store: store, metrics: metrics, log: log,
		hashing: make(chan struct{}, slots), turns: addressTurns{per: max(slots/2, 1)},
		failures: &loglimit.Limiter{Interval: failureLogInterval}}
}

// hashingWait bounds a login's wait for a free hashing slot. Under a flood
// of password checks (wrong ones from many addresses, each within its
// rate limit; one address's parallel ones wait for its own turns, see
// addressTurns) a login is refused with 503 and Retry-After within it,
// rather than left waiting past the server's WriteTimeout, which cuts the
// connection without cancelling the request: the login would then go on
// to create a session that no browser receives, and under
// SESSION_MAX_PER_USER revoke one of the user's real sessions for it.
const hashingWait = 2 * time.Second

// errHashingBusy is checkPassword's error when no hashing slot came free
// within hashingWait.
var errHashingBusy = errors.New("example: every password-hashing slot stayed busy")

// checkPassword reports whether password is username's, for r (a login, or
// a confirmation of the password), waiting for its address's turn
// (addressTurns) and a free hashing slot at most hashingWait in all, and
// no longer than r's context lasts.
func (s *server) checkPassword(r *http.Request, username, password string) (bool, error) {
	ctx := r.Context()
	wait := time.NewTimer(hashingWait)
	defer wait.Stop()
	turn, done := s.turns.of(addressOf(r.RemoteAddr))
	defer done()
	for _, slots := range []chan struct{}{turn, s.hashing} {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		case <-wait.C:
			return false, errHashingBusy
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return authenticate(username, password), nil
}

// addressTurns bounds the password checks of one address that run or wait
// for a hashing slot at once to per, half the slots (at least one): one
// address sending its attempts in parallel (within its 100 a window, over
// many user names) would otherwise hold every slot, and every other login
// would wait, then fail with 503, for as long as its attempts last. Its
// attempts beyond per wait for their address's turn instead. (A dozen
// IPv6 /64s, cheap to have, still can.)
type addressTurns struct {
	per   int
	mu    sync.Mutex
	turns map[string]*addressTurn
}

// addressTurn is one address's turns: a slot per check it runs.
type addressTurn struct {
	slots chan struct{}
	users int // the checks that hold or wait for one of slots
}

// of returns the turns of addr, and done, to call once the check is over,
// which forgets them when no other check of addr holds them.
func (t *addressTurns) of(addr string) (slots chan struct{}, done func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	turn := t.turns[addr]
	if turn == nil {
		if t.turns == nil {
			t.turns = make(map[string]*addressTurn)
		}
		turn = &addressTurn{slots: make(chan struct{}, t.per)}
		t.turns[addr] = turn
	}
	turn.users++
	return turn.slots, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if turn.users--; turn.users == 0 {
			delete(t.turns, addr)
		}
	}
}

// addressOf returns the address whose checks addressTurns counts, as the
// login limits' middleware.ByIP counts attempts: the IPv4 address, or the
// IPv6 /64 network, of remoteAddr (host:port, or a bare address); the
// whole of remoteAddr when it holds no IP address.
func addressOf(remoteAddr string) string {
	a, err := netip.ParseAddr(remoteAddr)
	if ap, perr := netip.ParseAddrPort(remoteAddr); perr == nil {
		a, err = ap.Addr(), nil
	}
	if err != nil {
		return remoteAddr
	}
	if a = a.Unmap(); a.Is4() {
		return a.String()
	}
	p, _ := a.WithZone("").Prefix(64) // never fails: an IPv6 address
	return p.String()
}

// routes returns the example's handler: the probes (/livez, /readyz,
// /healthz), the Prometheus metrics (/metrics) and the assets (/assets/) on
// their own, without a session or a cookie; every other route behind the
// Sessions middleware, the two logins behind their rate limits
// (loginLimits), the API routes that need a user behind RequireAuth, the
// pages that need one behind pageAuth, and all of them behind net/http's
// cross-origin protection, so that no other site can post a form or call
// the API with the user's cookie. A path or method that no route serves
// gets a 404 or 405 page (JSON for API clients).
func routes(s *server) (http.Handler, error) {
	apiAuth, err := middleware.RequireAuth(middleware.AuthConfig{})
	if err != nil {
		return nil, err
	}
	pageAuth, err := s.pageAuth()
	if err != nil {
		return nil, err
	}
	formLimit, apiLimit, err := s.loginLimits()
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/login", apiLimit(http.HandlerFunc(s.apiLogin)))
	mux.Handle("GET /api/me", apiAuth(http.HandlerFunc(s.apiMe)))
	mux.Handle("POST /api/logout", tokenOrAuth(apiAuth, http.HandlerFunc(s.apiLogout)))
	mux.Handle("GET /api/sessions", apiAuth(http.HandlerFunc(s.apiSessions)))
	mux.Handle("DELETE /api/sessions/{id}", apiAuth(http.HandlerFunc(s.apiRevoke)))
	mux.Handle("POST /api/logout-all", apiAuth(http.HandlerFunc(s.apiLogoutAll)))
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.Handle("POST /login", formLimit(http.HandlerFunc(s.formLogin)))
	mux.HandleFunc("POST /logout", s.formLogout)
	mux.Handle("GET /sessions", pageAuth(http.HandlerFunc(s.sessionsPage)))
	mux.Handle("POST /sessions/{id}/revoke", pageAuth(http.HandlerFunc(s.formRevoke)))
	mux.Handle("POST /logout-others", pageAuth(http.HandlerFunc(s.formLogoutOthers)))
	mux.Handle("POST /logout-all", pageAuth(http.HandlerFunc(s.formLogoutAll)))
	mux.Handle("/", s.noRoute(mux))

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(s.crossOrigin))
	site := cop.Handler(middleware.Sessions(s.sessions)(mux))

	top := http.NewServeMux()
	for path, probe := range map[string]http.Handler{
		"/livez":   http.HandlerFunc(s.livez),
		"/readyz":  http.HandlerFunc(s.readyz),
		"/healthz": http.HandlerFunc(s.healthz),
		"/metrics": s.metrics,
	} {
		top.Handle("GET "+path, probe)
		top.HandleFunc(path, getOnly)
	}
	top.Handle("GET /assets/", s.assets())
	top.HandleFunc("/assets/", getOnly)
	top.Handle("/", site)
	return top, nil
}

type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// readCredentials reads the JSON credentials of an API login, or answers
// 400 and reports false: malformed JSON, unknown fields, trailing data and
// empty fields are all refused.
func readCredentials(w http.ResponseWriter, r *http.Request) (credentials, bool) {
	var c credentials
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, loginMaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || trailing(dec) != nil || c.Username == "" || c.Password == "" {
		writeError(w, http.StatusBadRequest, `want a JSON object {"username","password"}`)
		return credentials{}, false
	}
	return c, true
}

// trailing returns nil when dec has nothing but white space left to read,
// else the error of reading on (a *http.MaxBytesError when the body is
// over its limit), or errTrailing. (dec.More alone takes a stray ']' or
// '}' for the end of the input.)
func trailing(dec *json.Decoder) error {
	_, err := dec.Token()
	switch err {
	case io.EOF:
		return nil
	case nil:
		return errTrailing
	}
	return err
}

// errTrailing is trailing's error for data after the JSON value.
var errTrailing = errors.New("data after the JSON value")

// apiLogin logs in with JSON credentials and answers the token for an
// Authorization: Bearer header (the response also sets the cookie).
func (s *server) apiLogin(w http.ResponseWriter, r *http.Request) {
	c, ok := readCredentials(w, r)
	if !ok {
		return
	}
	ok, err := s.checkPassword(r, c.Username, c.Password)
	if err != nil {
		w.Header().Set("Retry-After", strconv.Itoa(pageRetry))
		writeError(w, http.StatusServiceUnavailable, "try again")
		return
	}
	if !ok {
		// The challenge a 401 must carry (RFC 9110), as RequireAuth's.
		w.Header().Set("WWW-Authenticate", `Bearer realm="session"`)
		writeError(w, http.StatusUnauthorized, "invalid credentials")
		return
	}
	info, err := session.Create(r.Context(), c.Username)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	token, _ := session.Token(r.Context())
	writeJSON(w, http.StatusOK, loginJSON{ExpiresAt: info.ExpiresAt, SessionID: info.ID, Token: token, UserID: info.UserID})
}

// loginJSON is the answer of an API login, and meJSON the caller's
// session as GET /api/me describes it: each answer's fields stated once,
// encoded without a map's boxed values and sorted keys. Their fields are
// in alphabetical order, as encoding/json writes a map's keys, so the
// answers read byte for byte as maps of the same fields would encode.
type loginJSON struct {
	ExpiresAt time.Time `json:"expires_at"`
	SessionID string    `json:"session_id"`
	Token     string    `json:"token"`
	UserID    string    `json:"user_id"`
}

type meJSON struct {
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	SessionID string    `json:"session_id"`
	UserID    string    `json:"user_id"`
}

// apiMe describes the caller's session.
func (s *server) apiMe(w http.ResponseWriter, r *http.Request) {
	info, _ := session.FromContext(r.Context()) // RequireAuth checked it
	writeJSON(w, http.StatusOK, meJSON{CreatedAt: info.CreatedAt, ExpiresAt: info.ExpiresAt, SessionID: info.ID, UserID: info.UserID})
}

// apiLogout ends the caller's session, and clears the marker of a browser
// that sent it (clearOwnMarker), also when the store fails (endError).
// tokenOrAuth passes a request that came with a session token, valid
// (session.HasToken) whether or not it leads to a session, to next, and
// the others to auth, which answers 401. A logout sent with a token that a
// renewal or a re-login of the same client replaced just before (a tap on
// "Log out" while another call of the app renews) ends the session that
// replaced it: session.Destroy follows it, where auth would refuse the
// request before the handler ran.
func tokenOrAuth(auth func(http.Handler) http.Handler, next http.Handler) http.Handler {
	refused := auth(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if session.HasToken(r.Context()) {
			next.ServeHTTP(w, r)
			return
		}
		refused.ServeHTTP(w, r)
	})
}

func (s *server) apiLogout(w http.ResponseWriter, r *http.Request) {
	if err := session.Destroy(r.Context()); err != nil {
		s.clearOwnMarker(w, r)
		s.endError(w, r, err)
		return
	}
	s.clearOwnMarker(w, r)
	w.WriteHeader(http.StatusNoContent)
}

// sessionJSON is a session as the API lists it. FirstID is the id the
// session was created under (session.Info.FirstID), which a renewal keeps:
// DELETE /api/sessions/{id} takes it, so a client revokes the session it
// listed also after that session renewed.
type sessionJSON struct {
	SessionID string    `json:"session_id"`
	FirstID   string    `json:"first_id"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen"`
	IP        string    `json:"ip"`
	UserAgent string    `json:"user_agent"`
	Device    string    `json:"device"`
	ExpiresAt time.Time `json:"expires_at"`
	Current   bool      `json:"current"`
}

// apiSessions lists the caller's sessions.
func (s *server) apiSessions(w http.ResponseWriter, r *http.Request) {
	user, _ := session.UserID(r.Context())
	list, err := s.sessions.List(r.Context(), user)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := make([]sessionJSON, len(list))
	for i, info := range list {
		out[i] = sessionJSON{info.ID, info.FirstID, info.CreatedAt, info.LastSeen, info.IP, info.UserAgent, info.Device, info.ExpiresAt, info.Current}
	}
	writeJSON(w, http.StatusOK, out)
}

// apiRevoke ends one of the caller's sessions, named by its first_id or
// its session_id; 404 when the id is not one of theirs. Another than the
// caller's own needs a recent sign-in, or the password in the body
// (apiPassword, confirmed). When that is the
// caller's own session, it clears the marker of a browser that sent it
// (clearOwnMarker), as the API logouts do, also when the store fails.
func (s *server) apiRevoke(w http.ResponseWriter, r *http.Request) {
	info, _ := session.FromContext(r.Context())
	id := r.PathValue("id")
	own := id == info.ID || id == info.FirstID
	// The body is read for the caller's own session too, which needs no
	// password: a body that is not one of the route's gets its 400 or 413
	// whatever the id, and ends nothing.
	password, ok := apiPassword(w, r)
	if !ok || !own && !s.confirmed(w, r, password, r.URL.Path, "sign out that device") {
		return
	}
	if err := s.sessions.Revoke(r.Context(), info.UserID, id); err != nil {
		if errors.Is(err, session.ErrNotFound) {
			writeError(w, http.StatusNotFound, "no such session")
			return
		}
		if own {
			s.clearOwnMarker(w, r)
			s.endError(w, r, err)
			return
		}
		s.storeError(w, r, err)
		return
	}
	if own {
		s.clearOwnMarker(w, r)
	}
	w.WriteHeader(http.StatusNoContent)
}

// apiLogoutAll ends every session of the caller, this one included, after
// a recent sign-in or with the password in the body (apiPassword,
// confirmed), and clears the marker of a browser that sent it (clearOwnMarker), also when
// the store fails (endError).
func (s *server) apiLogoutAll(w http.ResponseWriter, r *http.Request) {
	password, ok := apiPassword(w, r)
	if !ok || !s.confirmed(w, r, password, r.URL.Path, "log out everywhere") {
		return
	}
	user, _ := session.UserID(r.Context())
	if _, err := s.sessions.RevokeAll(r.Context(), user); err != nil {
		s.clearOwnMarker(w, r)
		s.endError(w, r, err)
		return
	}
	s.clearOwnMarker(w, r)
	w.WriteHeader(http.StatusNoContent)
}

// storeError answers a failed session operation: 503 with Retry-After
// when the store is unavailable or too busy with concurrent changes, 500
// otherwise; as a page for a browser (see fail), as JSON for an API client.
func (s *server) storeError(w http.ResponseWriter, r *http.Request, err error) {
	s.storeFailed(w, r, err, keptSignedIn)
}

// endError answers a failed call that ends sessions (Destroy, Revoke,
// RevokeOthers, RevokeAll) as storeError does, except that a browser's
// outage page says that the sign-out may not have completed: a call that
// ran out of time may have reached Redis, or wait on a stalled one with
// its commands queued, and end the sessions once Redis answers again. The
// callers that end the request's own session clear the marker before: the
// notice it feeds must not tell this logout, completed later, as another
// device's; should the session live on, the next page shown sets the
// marker again.
func (s *server) endError(w http.ResponseWriter, r *http.Request, err error) {
	s.storeFailed(w, r, err, mayHaveEnded)
}

// storeFailed is storeError and endError, with the outage page that o
// picks for a browser.
func (s *server) storeFailed(w http.ResponseWriter, r *http.Request, err error, o outage) {
	s.logFailure(r, err)
	if !errors.Is(err, session.ErrStoreUnavailable) && !errors.Is(err, session.ErrContention) {
		s.fail(w, r, http.StatusInternalServerError, "internal error", page{
			Heading: "Something went wrong", Message: "That did not work, and it is our fault. Please try again.",
		})
		return
	}
	if !wantsHTML(r) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "session store unavailable")
		return
	}
	s.unavailablePage(w, r, o)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
