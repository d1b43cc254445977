package middleware_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/internal/syncbuf"
	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// flushers are the two ways a handler flushes: through
// http.ResponseController, which finds a Flush method by unwrapping, and
// through an http.Flusher type assertion on the writer it was given.
var flushers = []struct {
	name  string
	flush func(t *testing.T, w http.ResponseWriter) bool // false: it could not flush
}{
	{"ResponseController", func(t *testing.T, w http.ResponseWriter) bool {
		// Its error is not checked: after a failed commit it may report one.
		http.NewResponseController(w).Flush()
		return true
	}},
	{"http.Flusher", func(t *testing.T, w http.ResponseWriter) bool {
		f, ok := w.(http.Flusher)
		if !ok {
			t.Errorf("w.(http.Flusher): the middleware's %T is not an http.Flusher", w)
			return false
		}
		f.Flush()
		return true
	}},
}

// TestFlushCommits changes the session and then flushes before writing the
// body: the flush must commit the session first, so that the header it
// sends carries the new cookie, and it must really send the header then (a
// streaming handler's client sees it before the handler ends).
func TestFlushCommits(t *testing.T) {
	type change struct {
		name  string
		apply func(r *http.Request) error
		check func(t *testing.T, h *harness, c *http.Client)
	}
	changes := []change{
		{"Create", func(r *http.Request) error {
			_, err := session.Create(r.Context(), "alice")
			return err
		}, func(t *testing.T, h *harness, c *http.Client) {
			if got := h.do(c, "GET", "/me", nil); got.code != 200 || got.body != "alice" {
				t.Errorf("GET /me after a login that flushed = %d %q, want 200 alice", got.code, got.body)
			}
		}},
		{"Put on an anonymous session", func(r *http.Request) error {
			return session.Put(r.Context(), "cart", "3")
		}, func(t *testing.T, h *harness, c *http.Client) {
			h.hooked = func(w http.ResponseWriter, r *http.Request) {
				v, _ := session.Get[string](r.Context(), "cart")
				io.WriteString(w, v)
			}
			if got := h.do(c, "GET", "/hook", nil); got.code != 200 || got.body != "3" {
				t.Errorf("cart after a Put that flushed = %d %q, want 200 \"3\"", got.code, got.body)
			}
		}},
	}
	for _, fl := range flushers {
		for _, ch := range changes {
			t.Run(ch.name+" then "+fl.name, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				c := h.client()
				headerSeen := make(chan struct{})
				h.hooked = func(w http.ResponseWriter, r *http.Request) {
					if err := ch.apply(r); err != nil {
						t.Errorf("%s: %v", ch.name, err)
					}
					if fl.flush(t, w) {
						select {
						case <-headerSeen:
						case <-time.After(5 * time.Second):
							t.Error("the client had no response header 5s after the handler flushed")
						}
					}
					io.WriteString(w, "body")
				}
				req, err := http.NewRequest("POST", h.srv.URL+"/hook", nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := c.Do(req) // returns once the header has arrived
				close(headerSeen)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != 200 || string(body) != "body" {
					t.Errorf("POST /hook = %d %q, want 200 \"body\"", resp.StatusCode, body)
				}
				if sc := resp.Header.Values("Set-Cookie"); !slices.ContainsFunc(sc, func(v string) bool {
					return strings.HasPrefix(v, "session=") && !strings.HasPrefix(v, "session=;")
				}) {
					t.Errorf("Set-Cookie = %q, want the new session's cookie", sc)
				}
				ch.check(t, h, c)
			})
		}
	}
}

// statusOnly is the writer of a middleware that records the status and
// neither flushes nor unwraps, as many hand-written ones do.
type statusOnly struct {
	http.ResponseWriter
	code int
}

func (w *statusOnly) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// TestFlushThroughUnflushableWriter flushes through such a writer around
// Sessions, and around two Sessions of different Managers: the flush fails
// with http.ErrNotSupported and sends nothing, so it commits nothing
// either. The handler may still change the session, and the caching
// headers and Vary it sets after the failed flush meet the commit's, which
// keeps the answer with the new cookie private.
func TestFlushThroughUnflushableWriter(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	store, err := redisstore.Open(redisstore.Config{Addr: h.redis.Addr(), KeyPrefix: "other:", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	other, err := session.New(store, session.Config{
		Keys: [][]byte{[]byte("another test signing key, 32 B!!")}, CookieName: "other", InsecureCookie: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, nested := range []bool{false, true} {
		t.Run(fmt.Sprintf("nested %v", nested), func(t *testing.T) {
			var chain http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := session.Put(r.Context(), "cart", "1"); err != nil {
					t.Errorf("Put: %v", err)
				}
				// A statusOnly writer cannot hijack either.
				if _, _, err := http.NewResponseController(w).Hijack(); !errors.Is(err, http.ErrNotSupported) {
					t.Errorf("Hijack through a writer that cannot = %v, want http.ErrNotSupported", err)
				}
				if err := session.Put(r.Context(), "cart", "1"); err != nil {
					t.Errorf("Put after a hijack that took nothing = %v, want nil", err)
				}
				if err := http.NewResponseController(w).Flush(); !errors.Is(err, http.ErrNotSupported) {
					t.Errorf("Flush through a writer that cannot = %v, want http.ErrNotSupported", err)
				}
				if err := session.Put(r.Context(), "cart", "2"); err != nil {
					t.Errorf("Put after a flush that sent nothing = %v, want nil", err)
				}
				w.Header().Set("Cache-Control", "public, max-age=60")
				w.Header().Set("Vary", "Accept-Encoding")
				io.WriteString(w, "ok")
			})
			chain = middleware.Sessions(h.m)(chain)
			if nested {
				// The values go to the innermost Manager's session.
				chain = middleware.Sessions(other)(chain)
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				chain.ServeHTTP(&statusOnly{ResponseWriter: w}, r)
			}))
			defer srv.Close()
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			cc, vary := resp.Header.Values("Cache-Control"), resp.Header.Values("Vary")
			if resp.Header.Get("Set-Cookie") == "" || len(cc) == 0 || cc[len(cc)-1] != `private, no-cache="Set-Cookie"` ||
				!slices.Contains(vary, "Cookie") || !slices.Contains(vary, "Authorization") {
				t.Fatalf("answer with a new session after a failed flush: Set-Cookie %v, Cache-Control %q, Vary %q; want the cookie, private, varying on Cookie and Authorization",
					resp.Header.Get("Set-Cookie") != "", cc, vary)
			}
			c := h.client()
			u, _ := url.Parse(h.srv.URL)
			c.Jar.SetCookies(u, resp.Cookies())
			h.hooked = func(w http.ResponseWriter, r *http.Request) {
				v, _ := session.Get[string](r.Context(), "cart")
				io.WriteString(w, v)
			}
			if got := h.do(c, "GET", "/hook", nil); got.body != "2" {
				t.Errorf("cart after the request = %q, want \"2\", put after the failed flush", got.body)
			}
		})
	}
}

// TestFlushAfterFailedSave loses Redis between loading a session and a
// flush that must save a change: as without a flush (TestCommitFailure),
// the client gets 503 with Retry-After, never the handler's 200 or its
// headers.
func TestFlushAfterFailedSave(t *testing.T) {
	for _, fl := range flushers {
		t.Run(fl.name, func(t *testing.T) {
			wantLostSave(t, lostSave(t, func(w http.ResponseWriter) {
				fl.flush(t, w)
				io.WriteString(w, "saved")
			}))
		})
	}
}

// TestChangeAfterResponseStarted changes the session after the response has
// started: the cookie and the 503 of a failed save can no longer be sent,
// so every helper that would need them returns ErrResponseStarted and
// changes nothing, but Destroy, which ends the session all the same (the
// safe direction; README, Guarantees).
func TestChangeAfterResponseStarted(t *testing.T) {
	starts := []struct {
		name  string
		start func(w http.ResponseWriter)
	}{
		{"Write", func(w http.ResponseWriter) { io.WriteString(w, "started ") }},
		{"Flush", func(w http.ResponseWriter) { http.NewResponseController(w).Flush() }},
	}
	// The session has user alice and the value keep=1 before the request;
	// after it, "state" reads them back as GET /hook reports them.
	const unchanged = "alice keep=1 late="
	ops := []struct {
		name string
		op   func(r *http.Request) error
	}{
		{"Put", func(r *http.Request) error { return session.Put(r.Context(), "late", "v") }},
		{"Remove", func(r *http.Request) error { return session.Remove(r.Context(), "keep") }},
		{"Create", func(r *http.Request) error {
			_, err := session.Create(r.Context(), "mallory")
			return err
		}},
		{"Renew", func(r *http.Request) error { return session.Renew(r.Context()) }},
		{"Destroy", func(r *http.Request) error { return session.Destroy(r.Context()) }},
	}
	for _, st := range starts {
		for _, op := range ops {
			t.Run(op.name+" after "+st.name, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				c := h.client()
				h.login(c, "alice")
				h.hooked = func(w http.ResponseWriter, r *http.Request) {
					if err := session.Put(r.Context(), "keep", "1"); err != nil {
						t.Errorf("Put(keep): %v", err)
					}
				}
				h.do(c, "POST", "/hook", nil)

				h.hooked = func(w http.ResponseWriter, r *http.Request) {
					st.start(w)
					err := op.op(r)
					if !errors.Is(err, session.ErrResponseStarted) {
						t.Errorf("%s after %s = %v, want ErrResponseStarted", op.name, st.name, err)
					}
					io.WriteString(w, "done")
				}
				if got := h.do(c, "POST", "/hook", nil); got.code != 200 {
					t.Errorf("POST /hook = %d %q, want 200: the response had started", got.code, got.body)
				}

				h.hooked = func(w http.ResponseWriter, r *http.Request) {
					user, _ := session.UserID(r.Context())
					keep, _ := session.Get[string](r.Context(), "keep")
					late, _ := session.Get[string](r.Context(), "late")
					fmt.Fprintf(w, "%s keep=%s late=%s", user, keep, late)
				}
				want := unchanged
				if op.name == "Destroy" {
					want = "keep= late=" // ended, though its cookie stayed (the body is trimmed)
				}
				if got := h.do(c, "GET", "/hook", nil).body; got != want {
					t.Errorf("session after a refused %s = %q, want %q", op.name, got, want)
				}
			})
		}
	}
}

// TestTwoManagersInOneChain nests an admin Manager (cookie "admin", keys
// under "admin:") for /admin/ inside a site Manager (cookie "site"), both on
// one Redis. The sessions are independent; the context helpers under /admin/
// see the admin session (the innermost), while the site Manager's methods,
// called from the same request, act on the site session. An admin logout
// sends no Clear-Site-Data, so a browser stays logged in to the site; the
// site's logout sends it, which drops the admin cookie too.
func TestTwoManagersInOneChain(t *testing.T) {
	r := redistest.Start(t)
	logs := new(syncbuf.Buffer)
	newManager := func(prefix, cookie string, key byte) *session.Manager {
		store, err := redisstore.Open(redisstore.Config{Addr: r.Addr(), KeyPrefix: prefix, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		m, err := session.New(store, session.Config{
			Keys:           [][]byte{append([]byte("test signing key of 32 bytes, #"), key)},
			CookieName:     cookie,
			InsecureCookie: true,
			Logger:         slog.New(slog.NewTextHandler(logs, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	site := newManager("", "site", 's')
	admin := newManager("admin:", "admin", 'a')

	// Both muxes serve the same handlers, the admin one under /admin.
	routes := func(mux *http.ServeMux, prefix string) {
		mux.HandleFunc("POST "+prefix+"/login", func(w http.ResponseWriter, r *http.Request) {
			info, err := session.Create(r.Context(), r.FormValue("user"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			json.NewEncoder(w).Encode(map[string]string{"id": info.ID})
		})
		mux.HandleFunc("GET "+prefix+"/me", func(w http.ResponseWriter, r *http.Request) {
			user, ok := session.UserID(r.Context())
			if !ok {
				http.Error(w, "anonymous", http.StatusUnauthorized)
				return
			}
			io.WriteString(w, user)
		})
		mux.HandleFunc("POST "+prefix+"/logout", func(w http.ResponseWriter, r *http.Request) {
			if err := session.Destroy(r.Context()); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
	}
	adminMux := http.NewServeMux()
	routes(adminMux, "/admin")
	// The site Manager's methods, called from under /admin/.
	adminMux.HandleFunc("GET /admin/site-sessions", func(w http.ResponseWriter, r *http.Request) {
		list, err := site.List(r.Context(), r.FormValue("user"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(list)
	})
	adminMux.HandleFunc("POST /admin/site-revoke-others", func(w http.ResponseWriter, r *http.Request) {
		n, err := site.RevokeOthers(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, n)
	})
	mux := http.NewServeMux()
	routes(mux, "")
	mux.Handle("/admin/", middleware.Sessions(admin)(adminMux))
	srv := httptest.NewServer(middleware.Sessions(site)(mux))
	t.Cleanup(srv.Close)
	h := &harness{t: t, redis: r, srv: srv, logs: logs}

	login := func(c *http.Client, path, user string) string {
		t.Helper()
		resp := h.do(c, "POST", path+"?user="+user, nil)
		var out struct{ ID string }
		if resp.code != 200 || json.Unmarshal([]byte(resp.body), &out) != nil {
			t.Fatalf("POST %s = %d %q, want 200", path, resp.code, resp.body)
		}
		return out.ID
	}
	me := func(c *http.Client, path, want string) {
		t.Helper()
		resp := h.do(c, "GET", path, nil)
		if want == "" && resp.code != http.StatusUnauthorized {
			t.Errorf("GET %s = %d %q, want 401", path, resp.code, resp.body)
		}
		if want != "" && (resp.code != 200 || resp.body != want) {
			t.Errorf("GET %s = %d %q, want 200 %s", path, resp.code, resp.body, want)
		}
	}
	exists := func(key string) bool {
		t.Helper()
		n, _ := r.Do(t, "EXISTS", key).(int64)
		return n == 1
	}

	c := h.client()
	siteID := login(c, "/login", "alice")
	me(c, "/admin/me", "") // a site login is no admin login

	resp := h.do(c, "POST", "/admin/login?user=root", nil)
	if !slices.ContainsFunc(resp.header.Values("Set-Cookie"), func(v string) bool { return strings.HasPrefix(v, "admin=") }) {
		t.Errorf("POST /admin/login: Set-Cookie = %q, want an admin cookie", resp.header.Values("Set-Cookie"))
	}
	var adminOut struct{ ID string }
	if resp.code != 200 || json.Unmarshal([]byte(resp.body), &adminOut) != nil {
		t.Fatalf("POST /admin/login = %d %q, want 200", resp.code, resp.body)
	}
	adminID := adminOut.ID
	me(c, "/admin/me", "root")
	me(c, "/me", "alice") // an admin login logs nobody out of the site
	if !exists("session:"+siteID) || !exists("admin:session:"+adminID) {
		t.Errorf("records: site session:%s %v, admin admin:session:%s %v; want both", siteID[:8], exists("session:"+siteID), adminID[:8], exists("admin:session:"+adminID))
	}

	// The site Manager's methods under /admin/ use the site session.
	other := h.client()
	otherID := login(other, "/login", "alice")
	resp = h.do(c, "GET", "/admin/site-sessions?user=alice", nil)
	var list []session.Info
	if resp.code != 200 || json.Unmarshal([]byte(resp.body), &list) != nil {
		t.Fatalf("GET /admin/site-sessions = %d %q, want 200", resp.code, resp.body)
	}
	var current []string
	for _, s := range list {
		if s.Current {
			current = append(current, s.ID)
		}
	}
	if len(list) != 2 || !slices.Equal(current, []string{siteID}) {
		t.Errorf("site.List under /admin/: %d sessions, current %q; want 2, current [%s] (the site session)", len(list), current, siteID)
	}
	if got := h.do(c, "POST", "/admin/site-revoke-others", nil); got.code != 200 || got.body != "1" {
		t.Errorf("site.RevokeOthers under /admin/ = %d %q, want 200 1 (the other site session)", got.code, got.body)
	}
	if exists("session:" + otherID) {
		t.Error("site.RevokeOthers under /admin/ left the other site session")
	}
	me(other, "/me", "")
	me(c, "/me", "alice")
	me(c, "/admin/me", "root")

	// A logout as a browser sees it: Clear-Site-Data: "cookies" drops
	// every cookie of the site, whichever Manager set it.
	logout := func(path string) response {
		t.Helper()
		resp := h.do(c, "POST", path, nil)
		if resp.code != http.StatusNoContent {
			t.Errorf("POST %s = %d, want 204", path, resp.code)
		}
		if strings.Contains(resp.header.Get("Clear-Site-Data"), `"cookies"`) {
			c.Jar, _ = cookiejar.New(nil)
		}
		return resp
	}

	// Logging out of the admin leaves the site: the nested Manager sends
	// no Clear-Site-Data.
	if got := logout("/admin/logout").header.Get("Clear-Site-Data"); got != "" {
		t.Errorf("POST /admin/logout: Clear-Site-Data = %q, want none: it would drop the site cookie", got)
	}
	me(c, "/admin/me", "")
	me(c, "/me", "alice")
	if exists("admin:session:"+adminID) || !exists("session:"+siteID) {
		t.Errorf("after the admin logout: admin record %v, site record %v; want false, true", exists("admin:session:"+adminID), exists("session:"+siteID))
	}
	// Logging out of the site, the outer Manager, clears the site's
	// cookies, the admin's too.
	login(c, "/admin/login", "root")
	if got := logout("/logout").header.Get("Clear-Site-Data"); got != `"cookies"` {
		t.Errorf("POST /logout: Clear-Site-Data = %q, want \"cookies\"", got)
	}
	me(c, "/me", "")
	me(c, "/admin/me", "")
}

// TestHijackUnsupported hijacks through a writer that cannot (an HTTP/2
// connection's, here a ResponseRecorder): Hijack fails with
// http.ErrNotSupported without committing the session, so the handler's
// fallback answer can still change it. It committed first, and every
// change after the failed upgrade returned ErrResponseStarted.
func TestHijackUnsupported(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	_, token := h.login(h.client(), "alice")
	handler := middleware.Sessions(h.m)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := session.Put(r.Context(), "k", "before"); err != nil {
			t.Errorf("Put: %v", err)
		}
		if _, _, err := http.NewResponseController(w).Hijack(); !errors.Is(err, http.ErrNotSupported) {
			t.Errorf("Hijack through a writer that cannot = %v, want http.ErrNotSupported", err)
		}
		if err := session.Put(r.Context(), "k", "fallback"); err != nil {
			t.Errorf("Put after a failed Hijack = %v, want nil", err)
		}
		io.WriteString(w, "not upgraded")
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: session.DefaultInsecureCookieName, Value: token})
	handler.ServeHTTP(httptest.NewRecorder(), req)

	c := h.client()
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		v, _ := session.Get[string](r.Context(), "k")
		io.WriteString(w, v)
	}
	if got := h.do(c, "GET", "/hook", map[string]string{"Authorization": "Bearer " + token}); got.body != "fallback" {
		t.Errorf("value after the failed hijack = %q, want \"fallback\"", got.body)
	}
}

// TestHijackCommits checks a hijacked connection (a WebSocket upgrade):
// the session's changes made before the hijack are saved, one made after
// it returns ErrResponseStarted, and a change that needs a cookie (a
// login) makes the hijack fail, also when asked again, so that the
// handler's normal answer carries the cookie, kept out of shared caches
// whatever caching headers the handler sets for it.
func TestHijackCommits(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	h.login(c, "alice")
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		if err := session.Put(r.Context(), "k", "before"); err != nil {
			t.Errorf("Put: %v", err)
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		defer conn.Close()
		if err := session.Put(r.Context(), "k", "after"); !errors.Is(err, session.ErrResponseStarted) {
			t.Errorf("Put after Hijack = %v, want ErrResponseStarted", err)
		}
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		brw.Flush()
	}
	if got := h.do(c, "GET", "/hook", nil); got.code != 200 || got.body != "hijacked" {
		t.Fatalf("hijacked GET /hook = %d %q", got.code, got.body)
	}
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		v, _ := session.Get[string](r.Context(), "k")
		io.WriteString(w, v)
	}
	if got := h.do(c, "GET", "/hook", nil); got.body != "before" {
		t.Errorf("value after the hijacked request = %q, want \"before\"", got.body)
	}

	other := h.client()
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		if _, err := session.Create(r.Context(), "bob"); err != nil {
			t.Errorf("Create: %v", err)
		}
		if hj, ok := w.(http.Hijacker); !ok {
			t.Error("the middleware's writer is no http.Hijacker")
		} else if _, _, err := hj.Hijack(); err == nil {
			t.Error("Hijack after a login succeeded; its cookie would be lost")
		} else if _, _, err := hj.Hijack(); err == nil {
			t.Error("Hijack asked again after a login succeeded; its cookie would be lost")
		}
		// The fallback answer's own caching, set after the commit.
		w.Header().Set("Vary", "Accept-Encoding")
		w.Header().Set("Cache-Control", "public, max-age=600")
		w.Header().Set("Surrogate-Control", "max-age=600")
		w.Header()["CDN-Cache-Control"] = []string{"max-age=600"}
		io.WriteString(w, "not upgraded")
	}
	got := h.do(other, "GET", "/hook", nil)
	if got.body != "not upgraded" || got.header.Get("Set-Cookie") == "" {
		t.Fatalf("login then refused hijack = %d %q Set-Cookie %q, want the answer with the cookie", got.code, got.body, got.header.Get("Set-Cookie"))
	}
	if cc := got.header.Values("Cache-Control"); len(cc) == 0 || cc[len(cc)-1] != `private, no-cache="Set-Cookie"` ||
		got.header.Get("Surrogate-Control") != "" || got.header.Get("CDN-Cache-Control") != "" {
		t.Errorf("the answer with the login's cookie after a refused hijack: Cache-Control %q, Surrogate-Control %q, CDN-Cache-Control %q; want it private and no CDN caching",
			cc, got.header.Get("Surrogate-Control"), got.header.Get("CDN-Cache-Control"))
	}
	if v := got.header.Values("Vary"); !slices.Equal(v, []string{"Accept-Encoding", "Cookie", "Authorization"}) {
		t.Errorf("the answer with the login's cookie after a refused hijack that set Vary: Vary %q, want the handler's and Cookie, Authorization", v)
	}
	if got := h.do(other, "GET", "/me", nil); got.body != "bob" {
		t.Errorf("GET /me after the login = %q, want bob", got.body)
	}
}

// TestHijackRefusedAnswer has a handler whose Hijack a login refused set
// caching headers, then return without writing, or panic under a
// recovering middleware: the answer net/http or that middleware writes
// carries the login's cookie, so it is kept out of shared caches too.
func TestHijackRefusedAnswer(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, panics := range []bool{false, true} {
		srv := httptest.NewServer(recovering(middleware.Sessions(h.m)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := session.Create(r.Context(), "alice"); err != nil {
				t.Errorf("Create: %v", err)
			}
			if _, _, err := http.NewResponseController(w).Hijack(); err == nil {
				t.Error("Hijack after a login succeeded")
			}
			w.Header().Set("Cache-Control", "public, max-age=600")
			w.Header().Set("Surrogate-Control", "max-age=600")
			w.Header().Set("Vary", "Accept-Encoding")
			if panics {
				panic("boom")
			}
		}))))
		resp, err := srv.Client().Get(srv.URL)
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cc := resp.Header.Values("Cache-Control")
		if resp.Header.Get("Set-Cookie") == "" || len(cc) == 0 || cc[len(cc)-1] != `private, no-cache="Set-Cookie"` || resp.Header.Get("Surrogate-Control") != "" {
			t.Errorf("panics %v: %d, Set-Cookie %v, Cache-Control %q, Surrogate-Control %q; want the cookie, private, no CDN caching",
				panics, resp.StatusCode, resp.Header.Get("Set-Cookie") != "", cc, resp.Header.Get("Surrogate-Control"))
		}
		if v := resp.Header.Values("Vary"); !slices.Contains(v, "Cookie") || !slices.Contains(v, "Authorization") {
			t.Errorf("panics %v: Vary %q, want Cookie and Authorization", panics, v)
		}
	}
}

// hijackAlways is the writer of a logging middleware that has a Hijack
// method whatever the connection, as many do, and fails it with an error
// of its own where the connection cannot be hijacked.
type hijackAlways struct{ http.ResponseWriter }

func (w hijackAlways) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if hj, ok := w.ResponseWriter.(http.Hijacker); ok {
		return hj.Hijack()
	}
	return nil, nil, errors.New("the writer cannot hijack")
}

// TestHijackHTTP2 hijacks on a real HTTP/2 connection, through a
// middleware's writer that has a Hijack method all the same: Hijack fails
// with http.ErrNotSupported before committing the session, so the
// handler's fallback answer can still change it.
func TestHijackHTTP2(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	_, token := h.login(h.client(), "alice")
	handler := middleware.Sessions(h.m)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, err := http.NewResponseController(w).Hijack(); !errors.Is(err, http.ErrNotSupported) {
			t.Errorf("Hijack on HTTP/2 = %v, want http.ErrNotSupported", err)
		}
		if err := session.Put(r.Context(), "k", "fallback"); err != nil {
			t.Errorf("Put after a failed Hijack = %v, want nil", err)
		}
		io.WriteString(w, "not upgraded")
	}))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.ServeHTTP(hijackAlways{w}, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
		t.Fatalf("answer over %s: %d, want HTTP/2 and 200", resp.Proto, resp.StatusCode)
	}

	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		v, _ := session.Get[string](r.Context(), "k")
		io.WriteString(w, v)
	}
	if got := h.do(h.client(), "GET", "/hook", map[string]string{"Authorization": "Bearer " + token}); got.body != "fallback" {
		t.Errorf("value after the failed hijack = %q, want \"fallback\"", got.body)
	}
}

// TestReadFromCommits copies a body into the response with io.Copy, as
// http.ServeContent and http.FileServer do: the middleware's writer is an
// io.ReaderFrom, so the server's own (sendfile for a file) is still
// reached, and the copy commits the session first, so the response
// carries the cookie of the login made before it.
func TestReadFromCommits(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(io.ReaderFrom); !ok {
			t.Errorf("the middleware's %T is not an io.ReaderFrom", w)
		}
		if _, err := session.Create(r.Context(), "alice"); err != nil {
			t.Errorf("Create: %v", err)
		}
		if n, err := io.Copy(w, strings.NewReader("copied")); n != 6 || err != nil {
			t.Errorf("io.Copy into the response = %d, %v; want 6, nil", n, err)
		}
		if err := session.Put(r.Context(), "k", "after"); !errors.Is(err, session.ErrResponseStarted) {
			t.Errorf("Put after the copy = %v, want ErrResponseStarted", err)
		}
	}
	if got := h.do(c, "POST", "/hook", nil); got.body != "copied" || got.header.Get("Set-Cookie") == "" {
		t.Fatalf("login then io.Copy = %d %q Set-Cookie %q, want the copy with the cookie", got.code, got.body, got.header.Get("Set-Cookie"))
	}
	if got := h.do(c, "GET", "/me", nil); got.body != "alice" {
		t.Errorf("GET /me after the login = %q, want alice", got.body)
	}
}
