package middleware_test

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// TestSameManagerTwiceClearsSiteData checks that one Manager's Sessions
// applied twice (a router's global Use and a route group's) is not taken
// for two nested Managers: its logout still sends Clear-Site-Data, which a
// nested Manager's leaves out.
func TestSameManagerTwiceClearsSiteData(t *testing.T) {
	m, _, mux := sameManagerApp(t)
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{
		{"once", middleware.Sessions(m)(mux)},
		{"twice", middleware.Sessions(m)(middleware.Sessions(m)(mux))},
	} {
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
		cookie := rec.Result().Cookies()[0]
		rec = httptest.NewRecorder()
		// localhost: the Manager has InsecureCookie, and plain HTTP
		// elsewhere gets no Clear-Site-Data.
		req := httptest.NewRequest("POST", "http://localhost/logout", nil)
		req.AddCookie(cookie)
		tc.h.ServeHTTP(rec, req)
		if rec.Header().Get("Clear-Site-Data") != `"cookies"` {
			t.Errorf("Sessions applied %s: logout Clear-Site-Data = %q, want \"cookies\" (one Manager, KeepSiteData unset)", tc.name, rec.Header().Get("Clear-Site-Data"))
		}
	}
}

// TestSameManagerTwiceReadsOnce applies one Manager's Sessions twice, as a
// router's global middleware and a route group's would: the request keeps
// one session, read with one command and committed once, and a login, a
// change, a renewal and a logout work as with the middleware once.
func TestSameManagerTwiceReadsOnce(t *testing.T) {
	m, r, mux := sameManagerApp(t)
	mw := middleware.Sessions(m)
	srv := httptest.NewServer(mw(mw(mux)))
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	send := func(method, path string) (cookies int, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s = %d %s", method, path, resp.StatusCode, b)
		}
		return len(resp.Header.Values("Set-Cookie")), string(b)
	}
	for _, step := range []struct {
		method, path string
		cookies      int
	}{{"POST", "/login", 1}, {"POST", "/put", 0}, {"POST", "/renew", 1}} {
		if n, _ := send(step.method, step.path); n != step.cookies {
			t.Errorf("%s %s through Sessions twice: %d Set-Cookie headers, want %d", step.method, step.path, n, step.cookies)
		}
	}
	r.ResetStats(t)
	if _, body := send("GET", "/me"); body != "alice dark" {
		t.Errorf("GET /me after login, put and renewal = %q, want \"alice dark\"", body)
	}
	if got := r.Calls(t); !maps.Equal(got, map[string]int64{"getex": 1}) {
		t.Errorf("a read through Sessions twice sent %v, want one GETEX", got)
	}
	send("POST", "/logout")
	if _, body := send("GET", "/me"); body != " " {
		t.Errorf("GET /me after logout = %q, want anonymous", body)
	}
	// The renewal's pointer from the old id stays until it expires (see
	// the README, "Data in Redis"); no record or index does.
	keys, _ := redis.Strings(r.Do(t, "KEYS", "*"), nil)
	if len(keys) != 1 || !strings.HasSuffix(keys[0], ":next") {
		t.Errorf("keys left after logout: %q, want the renewal's pointer alone", keys)
	}
}

// sameManagerApp returns a Manager on a redis-server of its own, the
// server, and handlers that log alice in, put a value, renew, log out and
// answer the user and the value (GET /me).
func sameManagerApp(t *testing.T) (*session.Manager, *redistest.Server, *http.ServeMux) {
	t.Helper()
	r := redistest.Start(t)
	store, err := redisstore.Open(redisstore.Config{Addr: r.Addr(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	m, err := session.New(store, session.Config{Keys: [][]byte{[]byte("test signing key of 32 bytes: ok")}, InsecureCookie: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if _, err := session.Create(r.Context(), "alice"); err != nil {
			t.Error(err)
		}
	})
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		if err := session.Put(r.Context(), "theme", "dark"); err != nil {
			t.Error(err)
		}
	})
	mux.HandleFunc("POST /renew", func(w http.ResponseWriter, r *http.Request) {
		if err := session.Renew(r.Context()); err != nil {
			t.Error(err)
		}
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := session.Destroy(r.Context()); err != nil {
			t.Error(err)
		}
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		u, _ := session.UserID(r.Context())
		theme, _ := session.Get[string](r.Context(), "theme")
		io.WriteString(w, u+" "+theme)
	})
	return m, r, mux
}

// TestSameManagerTwiceCommitsOnce puts a middleware between one Manager's
// Sessions applied twice that changes the session after the handler
// returned, which works behind Sessions once: the inner Sessions passes the
// request on without committing, so it works there too.
func TestSameManagerTwiceCommitsOnce(t *testing.T) {
	m, _, mux := sameManagerApp(t)
	mw := middleware.Sessions(m)
	after := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r)
			if err := session.Put(r.Context(), "after", "yes"); err != nil {
				t.Errorf("Put after the handler, behind Sessions twice = %v, want nil", err)
			}
		})
	}
	srv := httptest.NewServer(mw(after(mw(mux))))
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Post(srv.URL+"/login", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := len(resp.Header.Values("Set-Cookie")); resp.StatusCode != http.StatusOK || n != 1 {
		t.Errorf("login behind Sessions twice = %d with %d Set-Cookie headers, want 200 and one", resp.StatusCode, n)
	}
}

// TestSameManagerTwiceBehindHiddenWriters applies one Manager's Sessions
// twice with a writer between that has no Unwrap, so that the inner one
// cannot find the outer one's writer: a middleware's own writer, the
// buffer of http.TimeoutHandler (the order Sessions' doc asks for) whose
// handler times out after a login, and a recorder a handler renders
// another route into. The inner one passes the request on all the same:
// the login's cookie reaches the client, which is then signed in, and a
// change after the handler returned is saved.
func TestSameManagerTwiceBehindHiddenWriters(t *testing.T) {
	m, _, mux := sameManagerApp(t)
	mw := middleware.Sessions(m)
	mux.HandleFunc("POST /slow-login", func(w http.ResponseWriter, r *http.Request) {
		if _, err := session.Create(r.Context(), "alice"); err != nil {
			t.Error(err)
		}
		io.WriteString(w, "welcome")
		time.Sleep(150 * time.Millisecond) // past the TimeoutHandler's 50 ms
	})
	after := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(struct{ http.ResponseWriter }{w}, r) // a writer without Unwrap
			if r.Method != "POST" {
				return // GET /me has written its answer
			}
			if err := session.Put(r.Context(), "theme", "dark"); err != nil {
				t.Errorf("Put after the handler, behind Sessions twice = %v, want nil", err)
			}
		})
	}
	inner := mw(mux)
	page := http.NewServeMux()
	page.HandleFunc("POST /page", func(w http.ResponseWriter, r *http.Request) {
		// Renders the login route into a recorder, as a handler composing
		// a page from other routes would.
		sub := r.Clone(r.Context())
		sub.URL.Path = "/login"
		inner.ServeHTTP(httptest.NewRecorder(), sub)
		io.WriteString(w, "page")
	})
	page.Handle("/", inner)
	for _, tc := range []struct {
		name, path, theme string
		status            int
		h                 http.Handler
	}{
		{"middleware writer", "/login", "dark", 200, mw(after(inner))},
		{"TimeoutHandler", "/slow-login", "", 503, mw(http.TimeoutHandler(inner, 50*time.Millisecond, "timeout"))},
		{"recorder", "/page", "", 200, mw(page)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar}
			resp, err := c.Post(srv.URL+tc.path, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if n := len(resp.Header.Values("Set-Cookie")); resp.StatusCode != tc.status || n != 1 {
				t.Errorf("POST %s = %d with %d Set-Cookie headers, want %d and one", tc.path, resp.StatusCode, n, tc.status)
			}
			resp, err = c.Get(srv.URL + "/me")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := "alice " + tc.theme; string(b) != want {
				t.Errorf("GET /me after the login = %q, want %q", b, want)
			}
		})
	}
}

// TestSessionsAfterLoad serves a request that m.Load has loaded already,
// as a test harness or a middleware in front of Sessions that peeks at the
// user does, through m's Sessions alone: nothing around it commits, so it
// does, and a login's cookie and a value put reach the client and Redis.
func TestSessionsAfterLoad(t *testing.T) {
	m, _, mux := sameManagerApp(t)
	h := middleware.Sessions(m)(mux)
	peek := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(m.Load(r)))
		})
	}(h)
	var cookie *http.Cookie
	for _, path := range []string{"/login", "/put"} {
		req := httptest.NewRequest("POST", path, nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		peek.ServeHTTP(rec, req)
		if path == "/login" {
			if cs := rec.Result().Cookies(); len(cs) != 1 {
				t.Fatalf("login on a request Load had loaded: %d cookies, want 1", len(cs))
			} else {
				cookie = cs[0]
			}
		}
	}
	req := httptest.NewRequest("GET", "/me", nil)
	req.AddCookie(cookie)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Body.String() != "alice dark" {
		t.Errorf("GET /me after a login and a put on requests Load had loaded = %q, want \"alice dark\"", rec.Body)
	}
}

// TestSessionsReusedContext serves a request on the context of an earlier
// one, which went through Sessions and was committed: Sessions passes it
// on, and the answer still names Cookie and Authorization in Vary.
func TestSessionsReusedContext(t *testing.T) {
	m, _, mux := sameManagerApp(t)
	var saved context.Context
	mux.HandleFunc("POST /save", func(w http.ResponseWriter, r *http.Request) { saved = r.Context() })
	h := middleware.Sessions(m)(mux)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/save", nil))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/me", nil).WithContext(saved))
	if got := rec.Header().Values("Vary"); !slices.Equal(got, []string{"Cookie", "Authorization"}) {
		t.Errorf("Vary of a request on a reused context = %q, want Cookie, Authorization", got)
	}
}

// TestNestedFailedSaveKeepsInnerCookie nests the Sessions of two Managers
// on two Redis servers (a site around its /admin/): a request renews the
// inner session, and the outer one's save fails (its Redis out of memory).
// The outer 503 still carries the inner renewal's cookie, as it carries
// its own Manager's: the renewal took effect in the inner store, and
// without the new cookie the browser would be signed out of it.
func TestNestedFailedSaveKeepsInnerCookie(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	inner := innerManager(t)
	h.redis.Do(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	putOuter := func(next http.Handler) http.Handler { // between the two: the outer Manager's session
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := session.Put(r.Context(), "k", "v"); err != nil {
				t.Errorf("outer Put: %v", err)
			}
			next.ServeHTTP(w, r)
		})
	}
	renew := false
	handler := middleware.Sessions(h.m)(putOuter(middleware.Sessions(inner)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if renew {
			if err := session.Renew(r.Context()); err != nil {
				t.Errorf("inner Renew: %v", err)
			}
			h.redis.Do(t, "CONFIG", "SET", "maxmemory", "1")
		} else if _, err := session.Create(r.Context(), "alice"); err != nil {
			t.Errorf("inner Create: %v", err)
		}
		io.WriteString(w, "ok")
	}))))
	innerCookie := func(rec *httptest.ResponseRecorder) *http.Cookie {
		for _, c := range rec.Result().Cookies() {
			if c.Name == "inner" {
				return c
			}
		}
		return nil
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("POST", "http://localhost/", nil))
	login := innerCookie(rec)
	if rec.Code != http.StatusOK || login == nil {
		t.Fatalf("inner login: %d, Set-Cookie %q", rec.Code, rec.Header().Values("Set-Cookie"))
	}
	renew = true
	rec = httptest.NewRecorder()
	req := httptest.NewRequest("POST", "http://localhost/", nil)
	req.AddCookie(login)
	handler.ServeHTTP(rec, req)
	h.redis.Do(t, "CONFIG", "SET", "maxmemory", "0")
	renewed := innerCookie(rec)
	if rec.Code != http.StatusServiceUnavailable || renewed == nil || renewed.Value == login.Value {
		t.Fatalf("the outer save failed: %d, Set-Cookie %q; want 503 with the inner renewal's cookie", rec.Code, rec.Header().Values("Set-Cookie"))
	}
	var user string
	check := middleware.Sessions(inner)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { user, _ = session.UserID(r.Context()) }))
	req = httptest.NewRequest("GET", "http://localhost/", nil)
	req.AddCookie(renewed)
	check.ServeHTTP(httptest.NewRecorder(), req)
	if user != "alice" {
		t.Errorf("the renewed inner cookie's session: user %q, want alice", user)
	}
}

// innerManager returns a Manager with the cookie "inner" on a redis-server
// of its own, to nest inside a harness's (a site's /admin/).
func innerManager(t *testing.T) *session.Manager {
	t.Helper()
	store := rateStore(t, redistest.Start(t).Addr(), 2*time.Second)
	m, err := session.New(store, session.Config{Keys: [][]byte{[]byte("inner signing key of 32 bytes:ok")}, CookieName: "inner",
		InsecureCookie: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestNestedParallelSubrequests serves a batch endpoint: its handler, in
// the outer Manager's Sessions, runs sub-requests through another
// Manager's Sessions in parallel goroutines on its own request's context,
// and copies the cookies of their logins into its answer. The outer save
// then fails (its Redis out of memory): the 503 keeps every inner login's
// cookie, and the nested writers, which the sub-requests' commits change
// from several goroutines at once, pass the race detector (make test runs
// with -race).
func TestNestedParallelSubrequests(t *testing.T) {
	const subrequests = 8
	h := newHarness(t, harnessOpts{})
	admin := middleware.Sessions(innerManager(t))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := session.Create(r.Context(), "root"); err != nil {
			t.Errorf("inner Create: %v", err)
		}
	}))
	h.redis.Do(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	batch := middleware.Sessions(h.m)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.Put(r.Context(), "k", "v"); err != nil {
			t.Errorf("outer Put: %v", err)
		}
		recs := make([]*httptest.ResponseRecorder, subrequests)
		var wg sync.WaitGroup
		for i := range recs {
			recs[i] = httptest.NewRecorder()
			wg.Go(func() { admin.ServeHTTP(recs[i], r.Clone(r.Context())) })
		}
		wg.Wait()
		for _, rec := range recs {
			for _, c := range rec.Header().Values("Set-Cookie") {
				w.Header().Add("Set-Cookie", c)
			}
		}
		h.redis.Do(t, "CONFIG", "SET", "maxmemory", "1")
		io.WriteString(w, "ok")
	}))
	for range 20 {
		rec := httptest.NewRecorder()
		batch.ServeHTTP(rec, httptest.NewRequest("POST", "http://localhost/batch", nil))
		h.redis.Do(t, "CONFIG", "SET", "maxmemory", "0")
		inner := 0
		for _, c := range rec.Result().Cookies() {
			if c.Name == "inner" && c.Value != "" {
				inner++
			}
		}
		if rec.Code != http.StatusServiceUnavailable || inner != subrequests {
			t.Fatalf("the outer save failed: %d with %d inner cookies, want 503 with %d", rec.Code, inner, subrequests)
		}
	}
}
