// Package failover_test drives two app instances with session traffic
// while a Redis Sentinel setup or a Redis Cluster fails over or moves
// slots, and checks what users see: requests fail only during the fault,
// with 503 and Retry-After, and a 401 only for a session that was ended;
// every login acknowledged before the fault still works after it, from
// either instance (but for the writes a fault may lose: see writeLoss);
// nothing is refused and nothing crosses slots; every live session is in
// its user's index, and the session limit holds.
//
// The shared driver is traffic.run: it makes logins the traffic never
// touches (the stable logins), sends random requests of many users from
// several workers, runs the fault, checks the failures, verifies the
// sessions (verify) and logs one line of figures per fault (figures.log).
// sentinel_test.go and cluster_test.go hold the faults.
package failover_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// app is one instance of a small app on the shared deployment.
type app struct {
	srv *httptest.Server
	m   *session.Manager
}

var (
	testKey    = []byte("failover-test-signing-key-32-bytes!!")
	testTagKey = []byte("failover-test-tag-key-of-32-bytes!!!")
)

// newApp starts an instance on the store of cfg, with the session limit of
// tr.load and the tag key tagKey (required on a Cluster, nil elsewhere).
// Its handlers answer a failed session call as a careful app does (see
// answerError), and note in tr the errors that must never happen.
func newApp(t *testing.T, cfg redisstore.Config, tagKey []byte, tr *traffic) *app {
	t.Helper()
	store, err := redisstore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	m, err := session.New(store, session.Config{
		Keys:               [][]byte{testKey},
		TagKey:             tagKey,
		MaxSessionsPerUser: tr.load.limit,
		InsecureCookie:     true,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnEvent:            tr.event,
	})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := middleware.RequireAuth(middleware.AuthConfig{})
	if err != nil {
		t.Fatal(err)
	}
	fail := func(w http.ResponseWriter, err error) {
		tr.noteError(err)
		answerError(w, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		info, err := session.Create(r.Context(), r.FormValue("user"))
		if err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, info.ID)
	})
	mux.Handle("GET /me", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := session.UserID(r.Context())
		io.WriteString(w, user)
	})))
	mux.Handle("POST /put", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.Put(r.Context(), "v", r.FormValue("v")); err != nil {
			fail(w, err)
		}
	})))
	mux.Handle("POST /renew", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.Renew(r.Context()); err != nil {
			fail(w, err)
			return
		}
		info, _ := session.FromContext(r.Context())
		io.WriteString(w, info.ID)
	})))
	mux.Handle("POST /logout", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.Destroy(r.Context()); err != nil {
			fail(w, err)
		}
	})))
	h := middleware.Sessions(m)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.LoadError(r.Context()); err != nil {
			tr.noteError(err)
		}
		mux.ServeHTTP(w, r)
	}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &app{srv: srv, m: m}
}

// answerError answers a session call that failed with err: 401 when the
// session ended meanwhile (session.ErrNoSession: a renewal that lost the
// race with a revocation by the session limit, or with a logout or renewal
// by another request), 503 with Retry-After when the store could not be
// asked or kept changing under the call (ErrStoreUnavailable,
// ErrContention), and 500 for anything else, which the traffic reports as
// a failure that must not happen. The body holds the error (the Store's
// errors never hold a token), so that a failure the traffic reports says
// what went wrong.
func answerError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, session.ErrNoSession):
		http.Error(w, "session ended", http.StatusUnauthorized)
	case errors.Is(err, session.ErrStoreUnavailable), errors.Is(err, session.ErrContention):
		w.Header().Set("Retry-After", "1")
		http.Error(w, "try again: "+err.Error(), http.StatusServiceUnavailable)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// load is the traffic a suite drives, and the session limit of its
// instances.
type load struct {
	workers int           // goroutines sending requests, one at a time each
	users   int           // users the traffic logs in, "user-<n>"
	limit   int           // session.Config.MaxSessionsPerUser
	stable  int           // logins made before the traffic, which it never touches
	warmup  time.Duration // traffic before the fault, none of which may fail
	after   time.Duration // traffic after the fault
}

// login is a session the traffic holds: its cookie and id.
type login struct {
	user, cookie, id string
	since            time.Time // when the request that made it was sent
}

// stableLogin is a login made before the traffic started, of a user of its
// own (see loginStable): the traffic neither reads, renews nor ends it, and
// the limit never revokes it, so it must still be there after any fault
// (the traffic's own sessions from before the fault are mostly renewed,
// logged out or revoked by then).
type stableLogin struct {
	login
	instance int // the instance that made it
}

// traffic is the load of users on the instances and what it observed.
type traffic struct {
	t       *testing.T
	load    load
	timeout time.Duration // the store's Timeout: how long a store call may take
	apps    []*app
	client  *http.Client
	stable  []stableLogin
	faultAt time.Time // when the fault began, for messages

	mu        sync.Mutex
	live      map[string]login  // by id: acknowledged logins not ended since
	made      map[string]login  // by id: every acknowledged login and renewal
	loggedOut []login           // acknowledged logouts
	unsure    map[string]bool   // ids whose logout or renewal failed: either way is right
	failedIn  map[string][]span // by user: the logins that failed (see mayBeRevoked)
	revoked   map[string]bool   // ids the session limit revoked (EventRevoked)
	destroyed map[string]bool   // ids a logout ended (EventDestroyed); see event
	renamed   map[string]string // id -> the id an acknowledged renewal moved it to
	failures  []failure         // requests that failed, but for 401s
	denied    []failure         // requests of a session answered 401
	forbidden []string          // ErrRefused or CROSSSLOT errors seen
	requests  int
}

// startTraffic returns the traffic of ld on two new instances on the store
// of cfg, with the tag key tagKey (nil but on a Cluster).
func startTraffic(t *testing.T, ld load, cfg redisstore.Config, tagKey []byte) *traffic {
	t.Helper()
	tr := &traffic{
		t:         t,
		load:      ld,
		timeout:   cfg.Timeout,
		client:    &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: ld.workers}},
		live:      map[string]login{},
		made:      map[string]login{},
		unsure:    map[string]bool{},
		failedIn:  map[string][]span{},
		revoked:   map[string]bool{},
		destroyed: map[string]bool{},
		renamed:   map[string]string{},
	}
	if tr.timeout <= 0 {
		tr.timeout = redisstore.DefaultTimeout
	}
	t.Cleanup(tr.client.CloseIdleConnections)
	tr.apps = []*app{newApp(t, cfg, tagKey, tr), newApp(t, cfg, tagKey, tr)}
	return tr
}

// event records the sessions that ended other than by a request's own
// answer, which may then answer 401, and takes them out of tr.live: those
// the limit revoked, and those a logout ended, which include a session
// that a renewal moved to a new id while the logout ran (Destroy follows
// it there: the renewal is acknowledged, yet its new id is ended).
func (tr *traffic) event(e session.Event) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	switch e.Kind {
	case session.EventRevoked:
		tr.revoked[e.SessionID] = true
	case session.EventDestroyed:
		tr.destroyed[e.SessionID] = true
	default:
		return
	}
	delete(tr.live, e.SessionID)
}

// addLive records an acknowledged login or renewal as live, unless an
// event ended it before its answer arrived. The caller holds tr.mu.
func (tr *traffic) addLive(l login) {
	tr.made[l.id] = l
	if !tr.revoked[l.id] && !tr.destroyed[l.id] {
		tr.live[l.id] = l
	}
}

// noteError records an error that must never happen on a healthy or
// failing-over deployment: a refusal, or keys of two slots in one call.
func (tr *traffic) noteError(err error) {
	if errors.Is(err, redisstore.ErrRefused) || strings.Contains(err.Error(), "CROSSSLOT") {
		tr.mu.Lock()
		tr.forbidden = append(tr.forbidden, err.Error())
		tr.mu.Unlock()
	}
}

// response is what a request got.
type response struct {
	code       int
	body       string
	retryAfter bool
}

// do sends a request with the cookie to instance i, and returns what it
// got and the session cookie it set, if any.
func (tr *traffic) do(i int, method, path, cookie string, form url.Values) (response, string) {
	req, err := http.NewRequest(method, tr.apps[i].srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		tr.t.Error(err)
		return response{}, ""
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: "session", Value: cookie})
	}
	resp, err := tr.client.Do(req)
	if err != nil {
		return response{code: -1, body: err.Error()}, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	next := ""
	for _, c := range resp.Cookies() {
		if c.Name == "session" {
			next = c.Value
		}
	}
	return response{code: resp.StatusCode, body: string(b), retryAfter: resp.Header.Get("Retry-After") != ""}, next
}

// failure is a request that did not succeed.
type failure struct {
	start, end time.Time // when it was sent and answered
	what       string    // login, me, put, renew or logout
	id         string    // the session's id; "" for a login
	code       int
	retryAfter bool
	body       string // the answer's body, or the client's error (code -1)
}

// String describes the failure for messages: "<what> <code> <session>
// <body>".
func (f failure) String() string {
	s := fmt.Sprintf("%s %d", f.what, f.code)
	if f.id != "" {
		s += " " + fingerprint(f.id)
	}
	return s + fmt.Sprintf(" %.120q", f.body)
}

// record records a request sent at start that got resp, if it did not
// succeed: a 401 of a session (id) is checked at the end (see verify), any
// other failure at once after the traffic (see checkFailures). The caller
// holds tr.mu.
func (tr *traffic) record(start time.Time, what, id string, resp response) {
	if resp.code == http.StatusOK {
		return
	}
	f := failure{start: start, end: time.Now(), what: what, id: id, code: resp.code, retryAfter: resp.retryAfter, body: resp.body}
	if resp.code == http.StatusUnauthorized && id != "" {
		tr.denied = append(tr.denied, f)
		return
	}
	tr.failures = append(tr.failures, f)
}

// step makes one random request of a user and records what it got.
func (tr *traffic) step(rng *rand.Rand) {
	i := rng.IntN(len(tr.apps))
	tr.mu.Lock()
	tr.requests++
	var l login
	for _, l = range tr.live { // a random live session
		break
	}
	tr.mu.Unlock()
	start := time.Now()
	op := rng.IntN(100)
	switch {
	case l.id == "" || op < 15:
		user := fmt.Sprintf("user-%d", rng.IntN(tr.load.users))
		resp, cookie := tr.do(i, "POST", "/login", "", url.Values{"user": {user}})
		tr.mu.Lock()
		if resp.code == http.StatusOK {
			tr.addLive(login{user: user, cookie: cookie, id: resp.body, since: start})
		} else {
			tr.failedIn[user] = append(tr.failedIn[user], span{start, time.Now()})
		}
		tr.record(start, "login", "", resp)
		tr.mu.Unlock()
	case op < 75:
		resp, _ := tr.do(i, "GET", "/me", l.cookie, nil)
		tr.mu.Lock()
		tr.record(start, "me", l.id, resp)
		tr.mu.Unlock()
	case op < 85:
		resp, _ := tr.do(i, "POST", "/put", l.cookie, url.Values{"v": {start.String()}})
		tr.mu.Lock()
		tr.record(start, "put", l.id, resp)
		tr.mu.Unlock()
	case op < 93:
		tr.mu.Lock()
		delete(tr.live, l.id) // in flight: neither live nor ended until it answers
		tr.mu.Unlock()
		resp, cookie := tr.do(i, "POST", "/renew", l.cookie, nil)
		tr.mu.Lock()
		switch resp.code {
		case http.StatusOK:
			tr.renamed[l.id] = resp.body
			tr.addLive(login{user: l.user, cookie: cookie, id: resp.body, since: start})
		case http.StatusUnauthorized: // ended meanwhile
		default:
			tr.unsure[l.id] = true
		}
		tr.record(start, "renew", l.id, resp)
		tr.mu.Unlock()
	default:
		tr.mu.Lock()
		delete(tr.live, l.id)
		tr.mu.Unlock()
		resp, _ := tr.do(i, "POST", "/logout", l.cookie, nil)
		var again response
		retried := time.Now()
		if resp.code != http.StatusOK && resp.code != http.StatusUnauthorized {
			// What the README tells a client to do with a failed
			// logout: send it again before telling the user anything. A
			// 401 then tells it that the session has ended, as a 200
			// does, and the session must stay ended.
			time.Sleep(5 * time.Millisecond)
			retried = time.Now()
			again, _ = tr.do(rng.IntN(len(tr.apps)), "POST", "/logout", l.cookie, nil)
		}
		tr.mu.Lock()
		switch {
		case resp.code == http.StatusOK:
			tr.loggedOut = append(tr.loggedOut, l)
		case resp.code == http.StatusUnauthorized: // ended meanwhile
		case again.code == http.StatusOK,
			again.code == http.StatusUnauthorized && !tr.revoked[l.id] && !tr.mayBeRevoked(l.id, time.Now()):
			tr.loggedOut = append(tr.loggedOut, l)
		default:
			tr.unsure[l.id] = true
		}
		tr.record(start, "logout", l.id, resp)
		if again.code != 0 {
			tr.record(retried, "logout", l.id, again)
		}
		tr.mu.Unlock()
	}
}

// figures are what one run of traffic through a fault measured, logged in
// one line by figures.log.
type figures struct {
	fault       string        // the fault's name
	took        time.Duration // how long the fault lasted, by the fault's own measure
	window      time.Duration // from the start of the first failed request to the end of the last
	firstFail   time.Duration // start of the first failed request, from the fault's start
	lastFail    time.Duration // start of the last failed request, likewise
	failed      int           // requests that failed, 401s aside (each a 503 with Retry-After, or the test fails)
	denied      int           // requests of a session answered 401 (see verify)
	requests    int           // requests sent
	elapsed     time.Duration // how long the traffic ran
	duringFault int           // requests sent while the fault function ran
	faultRan    time.Duration // how long the fault function ran
	stable      int           // stable logins checked
	before      int           // the traffic's sessions live when the fault began
	kept        int           // those, followed through their renewals, live and working at the end
	lostBefore  int           // those lost (mayLoseRenewals only)
	lost        int           // sessions logged in since the fault began that are lost (lenient modes only)
	live        int           // sessions live at the end that work from every instance
	logouts     int           // acknowledged logouts
	resurrected int           // acknowledged logouts whose session works again
	// maybeRevoked counts the sessions that answered 401 after a login of
	// their user failed, which may have revoked them (see mayBeRevoked).
	maybeRevoked int
}

// log logs the figures in one line of key=value pairs, the same for every
// fault, for docs to quote.
func (f figures) log(t *testing.T) {
	t.Helper()
	rate := func(n int, d time.Duration) float64 {
		if d <= 0 {
			return 0
		}
		return float64(n) / d.Seconds()
	}
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	t.Logf("fault=%q took=%v window=%v failed=%d requests=%d rps=%.0f resurrected=%d logouts=%d "+
		"fault_rps=%.0f first_fail=%v last_fail=%v unauthorized=%d stable=%d before=%d kept=%d lost_before=%d lost=%d live=%d maybe_revoked=%d",
		f.fault, ms(f.took), ms(f.window), f.failed, f.requests, rate(f.requests, f.elapsed), f.resurrected, f.logouts,
		rate(f.duringFault, f.faultRan), ms(f.firstFail), ms(f.lastFail), f.denied, f.stable, f.before, f.kept, f.lostBefore, f.lost, f.live, f.maybeRevoked)
}

// writeLoss says which acknowledged writes verify lets a fault lose.
type writeLoss int

const (
	// noLoss: nothing acknowledged may be lost. Every live session works
	// from every instance, and a 401 goes only to a session that was
	// revoked, logged out, renewed, or whose logout or renewal failed, or
	// one that a failed login of its user may have revoked (counted: see
	// mayBeRevoked).
	noLoss writeLoss = iota
	// mayLoseNewSessions is for a failover that can lose a write in flight
	// at the promotion: a session logged in since the fault began (or a
	// renewal of one) may be gone, and then answers 401 from every
	// instance; it is counted (figures.lost). The sessions from before the
	// fault, followed through their renewals, are checked as with noLoss.
	mayLoseNewSessions
	// mayLoseRenewals is for a failover that can lose the logins and
	// renewals acknowledged during it, which do not wait for replicas: as
	// mayLoseNewSessions, but a session from before the fault may be gone
	// too, lost with a renewal; it is counted (figures.lostBefore).
	mayLoseRenewals
)

// run makes the stable logins, drives tr.load's workers of random requests
// until fault returns and for tr.load.after more, then checks the failed
// requests (checkFailures) and the sessions (verify, which lets the fault
// lose what loss says), and logs the figures, which it returns. fault
// returns how long the fault lasted by its own measure (from the kill, the
// command, etc.), which the checks hold the failures to.
func (tr *traffic) run(name string, loss writeLoss, fault func() (took time.Duration)) figures {
	t := tr.t
	t.Helper()
	fig := figures{fault: name}
	tr.loginStable()
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range tr.load.workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for range 1_000_000 { // bounded; stop ends it long before
				select {
				case <-stop:
					return
				default:
				}
				tr.step(rng)
			}
		})
	}
	time.Sleep(tr.load.warmup)
	tr.mu.Lock()
	if n := len(tr.failures); n > 0 {
		t.Errorf("%s: %d requests failed before the fault, want none: %v", name, n, tr.failures[:min(n, 5)])
	}
	before := maps.Clone(tr.live)
	requestsAtFault := tr.requests
	tr.mu.Unlock()
	faultAt := time.Now()
	tr.faultAt = faultAt // read by verify, after the workers are done
	fig.took = fault()
	fig.faultRan = time.Since(faultAt)
	tr.mu.Lock()
	fig.duringFault = tr.requests - requestsAtFault
	tr.mu.Unlock()
	time.Sleep(tr.load.after)
	close(stop)
	wg.Wait()
	fig.elapsed = time.Since(start)
	tr.checkFailures(&fig, faultAt)
	tr.verify(&fig, before, loss)
	fig.log(t)
	return fig
}

// checkFailures checks the failed requests (401s aside) of a fault that
// began at faultAt: each got 503 with Retry-After; none was answered
// before the fault (it could not have failed because of it) nor sent more
// than a store Timeout after the fault was over; and from the fault on
// they span no longer than the fault and the traffic after it. It fills in
// the figures of the failures.
func (tr *traffic) checkFailures(fig *figures, faultAt time.Time) {
	t := tr.t
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	fig.requests, fig.failed, fig.denied = tr.requests, len(tr.failures), len(tr.denied)
	if fig.requests < 200 {
		t.Errorf("%s: only %d requests: the traffic did not run", fig.fault, fig.requests)
	}
	var first, last, end time.Time // first and last start, last end
	var firstF, endF failure       // the failures first sent and last answered
	for _, f := range tr.failures {
		if f.code != http.StatusServiceUnavailable || !f.retryAfter {
			t.Errorf("%s: %v at fault%+v: Retry-After %v; want 503 with Retry-After", fig.fault, f, f.start.Sub(faultAt).Round(time.Millisecond), f.retryAfter)
		}
		// A request makes several store calls, each allowed the store's
		// Timeout, so one that started well before the fault may still
		// fail by it; one answered before the fault cannot have, nor one
		// that started once the fault and a Timeout were over.
		if f.end.Before(faultAt) || f.start.Sub(faultAt) > fig.took+tr.timeout {
			t.Errorf("%s: %v, sent at fault%+v and answered at fault%+v, failed outside the fault (it took %v)", fig.fault, f,
				f.start.Sub(faultAt).Round(time.Millisecond), f.end.Sub(faultAt).Round(time.Millisecond), fig.took)
		}
		if first.IsZero() || f.start.Before(first) {
			first, firstF = f.start, f
		}
		if f.start.After(last) {
			last = f.start
		}
		if f.end.After(end) {
			end, endF = f.end, f
		}
	}
	if first.IsZero() {
		return
	}
	fig.firstFail, fig.lastFail, fig.window = first.Sub(faultAt), last.Sub(faultAt), end.Sub(first)
	// Counted from the fault: a request sent before it may fail by it, as
	// above, but the time it had run by then is no part of the fault.
	from := first
	if from.Before(faultAt) {
		from = faultAt
	}
	if failing := end.Sub(from); failing > fig.took+tr.load.after {
		t.Errorf("%s: requests failed for %v from the fault on, longer than the fault (%v) and the time after it: first sent %v at fault%+v, last answered %v at fault%+v",
			fig.fault, failing.Round(time.Millisecond), fig.took, firstF, fig.firstFail.Round(time.Millisecond), endF, end.Sub(faultAt).Round(time.Millisecond))
	}
}

// loginStable makes tr.load.stable logins of users "stable-<n>" of the
// test (several tests may share a deployment), alternating between the
// instances, before the traffic starts.
func (tr *traffic) loginStable() {
	t := tr.t
	t.Helper()
	for n := range tr.load.stable {
		user := fmt.Sprintf("stable-%d %s", n, t.Name())
		at := n % len(tr.apps)
		resp, cookie := tr.do(at, "POST", "/login", "", url.Values{"user": {user}})
		if resp.code != http.StatusOK || cookie == "" {
			t.Fatalf("login of %s before the traffic: %d %q", user, resp.code, resp.body)
		}
		tr.stable = append(tr.stable, stableLogin{login{user: user, cookie: cookie, id: resp.body}, at})
	}
}

// checkStable checks that every stable login works from every instance
// and is the one session in its user's index, as the other instance lists
// it.
func (tr *traffic) checkStable(fig *figures) {
	t := tr.t
	t.Helper()
	cookies := make([]string, len(tr.stable))
	for k, l := range tr.stable {
		cookies[k] = l.cookie
	}
	for k, got := range tr.askEverywhere(cookies) {
		l := tr.stable[k]
		for i, resp := range got {
			if resp.code != http.StatusOK || resp.body != l.user {
				t.Errorf("%s: login of %s acknowledged by instance %d before the fault, on instance %d after it: %d %q, want 200",
					fig.fault, l.user, l.instance, i, resp.code, resp.body)
			}
		}
		other := (l.instance + 1) % len(tr.apps)
		list, err := tr.apps[other].m.List(context.Background(), l.user)
		if err != nil {
			t.Errorf("%s: List(%s): %v", fig.fault, l.user, err)
			continue
		}
		if len(list) != 1 || list[0].ID != l.id {
			t.Errorf("%s: List(%s) after the fault lists %d sessions, want its one login", fig.fault, l.user, len(list))
		}
	}
	fig.stable = len(tr.stable)
}

// askEverywhere sends GET /me with each of cookies to every instance, from
// tr.load.workers goroutines, once the traffic is over, and returns what
// each got: got[k][i] for cookies[k] on instance i.
func (tr *traffic) askEverywhere(cookies []string) (got [][]response) {
	got = make([][]response, len(cookies))
	next := make(chan int)
	var wg sync.WaitGroup
	for range tr.load.workers {
		wg.Go(func() {
			for k := range next {
				got[k] = make([]response, len(tr.apps))
				for i := range tr.apps {
					got[k][i], _ = tr.do(i, "GET", "/me", cookies[k], nil)
				}
			}
		})
	}
	for k := range cookies {
		next <- k
	}
	close(next)
	wg.Wait()
	return got
}

// lineage returns the ids of the sessions of before and of the renewals
// that followed them: the same sessions, under the ids they have now or
// had on the way. The caller holds tr.mu.
func (tr *traffic) lineage(before map[string]login) map[string]bool {
	ids := map[string]bool{}
	for id := range before {
		for id != "" && !ids[id] {
			ids[id] = true
			id = tr.renamed[id]
		}
	}
	return ids
}

// explained reports whether the traffic knows why session id may answer
// 401: the limit revoked it, a logout ended it (acknowledged or not), a
// renewal moved it, or its logout or renewal failed, which may have ended
// or moved it. loggedOut holds the ids of tr.loggedOut. The caller holds
// tr.mu.
func (tr *traffic) explained(id string, loggedOut map[string]bool) bool {
	return tr.revoked[id] || tr.destroyed[id] || loggedOut[id] || tr.renamed[id] != "" || tr.unsure[id]
}

// span is when a request was sent and when it was answered.
type span struct{ start, end time.Time }

// mayBeRevoked reports whether a login of the user of session id that
// failed may have revoked it under the limit by the time by: a login that
// failed after its transaction reached Redis (its reply lost with a killed
// master, or cut off by its Timeout as it ran on a newly promoted one) may
// have run, and the session limit's revocations with it, of which no event
// tells. Such a login can have revoked a session made before it was
// answered, and by the time by only if it was sent before. The caller
// holds tr.mu.
func (tr *traffic) mayBeRevoked(id string, by time.Time) bool {
	l, ok := tr.made[id]
	if !ok || tr.load.limit == 0 {
		return false
	}
	return slices.ContainsFunc(tr.failedIn[l.user], func(f span) bool {
		return l.since.Before(f.end) && f.start.Before(by)
	})
}

// verify checks, once the deployment has settled, the sessions the traffic
// holds, with the writes that loss lets the fault lose:
//
//   - every stable login works from every instance and is in its index;
//   - every 401 went to a session the traffic knows was ended (explained),
//     or that a failed login may have revoked (mayBeRevoked, counted);
//   - every live session works from every instance;
//   - each user's index lists all their live sessions, within the limit;
//   - nothing was refused and no call crossed slots.
//
// With a lenient loss, a session the fault may lose that is gone (it
// answers 401 from every instance, or got a 401 the traffic does not
// explain) is counted instead. verify also counts the acknowledged logouts
// whose session works again (resurrected), which the tests judge.
func (tr *traffic) verify(fig *figures, before map[string]login, loss writeLoss) {
	t := tr.t
	t.Helper()
	tr.checkStable(fig)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	old := tr.lineage(before)
	fig.before = len(before)
	gone := map[string]bool{}
	lose := func(id, what string) {
		switch {
		case gone[id]:
		case !old[id]:
			fig.lost++
		case loss == mayLoseRenewals:
			fig.lostBefore++
		default:
			t.Errorf("%s: %s: a session from before the fault is lost", fig.fault, what)
		}
		gone[id] = true
	}
	ids := slices.Sorted(maps.Keys(tr.live))
	cookies := make([]string, len(ids))
	for k, id := range ids {
		cookies[k] = tr.live[id].cookie
	}
	byUser := map[string][]string{}
	// Sessions that answered 401 after a failed login of their user,
	// which may have revoked them (mayBeRevoked).
	maybeRevoked := map[string]bool{}
	for k, got := range tr.askEverywhere(cookies) {
		id, l := ids[k], tr.live[ids[k]]
		var bad []response
		var instances []int
		for i, resp := range got {
			if resp.code != http.StatusOK || resp.body != l.user {
				bad, instances = append(bad, resp), append(instances, i)
			}
		}
		ended := len(bad) == len(tr.apps) && !slices.ContainsFunc(bad, func(r response) bool { return r.code != http.StatusUnauthorized })
		switch {
		case len(bad) == 0:
			fig.live++
			if old[id] {
				fig.kept++
			}
		case ended && tr.mayBeRevoked(id, time.Now()):
			maybeRevoked[id] = true
			continue
		case loss == noLoss:
			for j, resp := range bad {
				t.Errorf("%s: acknowledged login of %s (%s) on instance %d after the fault: %d %q, want 200",
					fig.fault, l.user, fingerprint(id), instances[j], resp.code, resp.body)
			}
		case ended:
			lose(id, fmt.Sprintf("session of %s (%s): 401 after the fault", l.user, fingerprint(id)))
			continue
		default:
			t.Errorf("%s: session of %s (%s): %v from the instances after the fault, want 200 or, if lost, 401 from all", fig.fault, l.user, fingerprint(id), bad)
		}
		byUser[l.user] = append(byUser[l.user], id)
	}
	loggedOut := map[string]bool{}
	for _, l := range tr.loggedOut {
		loggedOut[l.id] = true
	}
	reported := map[string]bool{}
	for _, f := range tr.denied {
		if tr.explained(f.id, loggedOut) || reported[f.id] {
			continue
		}
		if tr.mayBeRevoked(f.id, f.end) {
			maybeRevoked[f.id] = true
			continue
		}
		reported[f.id] = true
		if loss == noLoss {
			t.Errorf("%s: %v sent at fault%+v (%s), of a session made by a request sent at fault%+v: a session that was not ended got 401",
				fig.fault, f, f.start.Sub(tr.faultAt).Round(time.Millisecond), f.start.Format("15:04:05.000"),
				tr.made[f.id].since.Sub(tr.faultAt).Round(time.Millisecond))
			continue
		}
		lose(f.id, f.String())
	}
	for user, ids := range byUser {
		list, err := tr.apps[0].m.List(context.Background(), user)
		if err != nil {
			t.Errorf("%s: List(%s): %v", fig.fault, user, err)
			continue
		}
		listed := map[string]bool{}
		for _, in := range list {
			listed[in.ID] = true
		}
		for _, id := range ids {
			if !listed[id] {
				t.Errorf("%s: live session %s of %s is missing from the user's index", fig.fault, fingerprint(id), user)
			}
		}
		if tr.load.limit > 0 && len(list) > tr.load.limit {
			t.Errorf("%s: %s has %d sessions, limit %d", fig.fault, user, len(list), tr.load.limit)
		}
	}
	fig.maybeRevoked = len(maybeRevoked)
	fig.logouts = len(tr.loggedOut)
	cookies = make([]string, len(tr.loggedOut))
	for k, l := range tr.loggedOut {
		cookies[k] = l.cookie
	}
	for _, got := range tr.askEverywhere(cookies) {
		if slices.ContainsFunc(got, func(r response) bool { return r.code != http.StatusUnauthorized }) {
			fig.resurrected++
		}
	}
	if len(tr.forbidden) > 0 {
		t.Errorf("%s: %d refused or cross-slot errors, want 0; first: %s", fig.fault, len(tr.forbidden), tr.forbidden[0])
	}
}

// wantNoResurrection fails the test if an acknowledged logout came back:
// for faults that lose no acknowledged logout.
func (f figures) wantNoResurrection(t *testing.T) {
	t.Helper()
	if f.resurrected > 0 {
		t.Errorf("%s: %d of %d acknowledged logouts came back after the fault, want 0", f.fault, f.resurrected, f.logouts)
	}
}

// fingerprint shortens a session id for messages.
func fingerprint(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
