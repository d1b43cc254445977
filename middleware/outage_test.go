package middleware_test

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/middleware"
	"github.com/sessionkit/sessionkit/redisstore"
	"github.com/sessionkit/sessionkit/session"
)

// TestStoreDown stops Redis: public routes go on as anonymous, protected
// routes answer 503 with Retry-After (never 401), and all is well again once
// Redis is back.
func TestStoreDown(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	h.login(c, "alice")
	h.redis.Do(t, "SAVE") // the restart below loads this snapshot
	h.redis.Stop(t)

	start := time.Now()
	if got := h.do(c, "GET", "/public", nil); got.code != 200 || got.body != "anonymous" {
		t.Errorf("GET /public with Redis down = %d %q, want 200 anonymous", got.code, got.body)
	}
	resp := h.do(c, "GET", "/me", nil)
	if resp.code != http.StatusServiceUnavailable || resp.header.Get("Retry-After") == "" {
		t.Errorf("GET /me with Redis down = %d, Retry-After %q; want 503 with Retry-After", resp.code, resp.header.Get("Retry-After"))
	}
	if sc := resp.header.Get("Set-Cookie"); sc != "" {
		t.Errorf("an outage touched the cookie: Set-Cookie %q", sc)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("two requests with Redis down took %v; Redis refuses connections, so each should fail fast", d)
	}

	h.redis.Restart(t) // same port and snapshot
	if got := h.do(c, "GET", "/me", nil); got.code != 200 || got.body != "alice" {
		t.Errorf("GET /me after Redis is back = %d %q, want 200 alice", got.code, got.body)
	}
}

// TestCommitFailure loses Redis between loading a session and saving a
// change: the client gets 503, not the handler's 200, whether the handler
// writes its body with Write or with io.WriteString (the writer's
// WriteString).
func TestCommitFailure(t *testing.T) {
	writes := []struct {
		name  string
		write func(w http.ResponseWriter, s string) (int, error)
	}{
		{"Write", func(w http.ResponseWriter, s string) (int, error) { return w.Write([]byte(s)) }},
		{"WriteString", func(w http.ResponseWriter, s string) (int, error) { return io.WriteString(w, s) }},
		{"ReadFrom", func(w http.ResponseWriter, s string) (int, error) {
			n, err := io.Copy(w, strings.NewReader(s))
			return int(n), err
		}},
	}
	for _, tc := range writes {
		t.Run(tc.name, func(t *testing.T) {
			wantLostSave(t, lostSave(t, func(w http.ResponseWriter) {
				if n, err := tc.write(w, "saved"); n != 0 || err == nil {
					t.Errorf("%s after a lost save = %d, %v; want 0 and the save's error", tc.name, n, err)
				}
			}))
		})
	}
}

// lostSave logs alice in, then sends a request whose handler loses Redis
// between loading the session and saving a change: it puts a value, sets
// headers of the response it means to send (which must not reach the
// client with the 503 that replaces it), and starts that response with
// respond. It returns what the client got.
func lostSave(t *testing.T, respond func(w http.ResponseWriter)) response {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	h.login(c, "alice")
	h.hooked = func(w http.ResponseWriter, r *http.Request) {
		h.redis.Stop(t)
		if err := session.Put(r.Context(), "k", "v"); err != nil {
			t.Errorf("Put: %v", err)
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Location", "/dashboard")
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("X-Accel-Redirect", "/protected/report.pdf")
		w.Header().Set("X-Sendfile", "/srv/report.pdf")
		w.Header().Set("X-Accel-Expires", "3600")
		w.Header().Set("Surrogate-Control", "max-age=3600")
		w.Header().Set("CDN-Cache-Control", "max-age=3600")
		w.Header().Set("HX-Redirect", "/saved")
		w.Header().Set("HX-Trigger", "saved")
		http.SetCookie(w, &http.Cookie{Name: "csrf", Value: "new"})
		respond(w)
	}
	return h.do(c, "POST", "/hook", nil)
}

// wantLostSave fails t unless resp is the 503 with Retry-After that
// replaces a response whose session could not be saved: not the handler's
// body ("saved"), and none of the headers lostSave's handler set.
func wantLostSave(t *testing.T, resp response) {
	t.Helper()
	if resp.code != http.StatusServiceUnavailable || resp.header.Get("Retry-After") == "" || resp.body == "saved" {
		t.Errorf("lost save answered %d %q, Retry-After %q; want 503 with Retry-After", resp.code, resp.body, resp.header.Get("Retry-After"))
	}
	for _, k := range []string{"Content-Encoding", "Location", "ETag", "X-Accel-Redirect", "X-Sendfile", "X-Accel-Expires", "Surrogate-Control", "CDN-Cache-Control", "HX-Redirect", "HX-Trigger", "Set-Cookie"} {
		if v := resp.header.Get(k); v != "" {
			t.Errorf("the 503 carries the discarded response's %s: %q", k, v)
		}
	}
}

// TestFailedSaveKeepsLogin has Redis stop taking writes (CLIENT PAUSE
// WRITE) right after a handler's renewal or login, before the value the
// handler then puts is saved: the client gets 503, but with the new
// session's cookie and not the handler's own, and that cookie (which the
// client's jar keeps) works once Redis takes writes again. The token the
// request came with has ended either way: a 503 without the new cookie
// left the browser with a token that led nowhere, and the new session
// orphaned in Redis.
func TestFailedSaveKeepsLogin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(ctx context.Context) error
	}{
		{"renew", session.Renew},
		{"login", func(ctx context.Context) error {
			_, err := session.Create(ctx, "alice")
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{storeCfg: &redisstore.Config{Timeout: 500 * time.Millisecond}})
			c := h.client()
			oldID, _ := h.login(c, "alice")
			changed, paused := make(chan struct{}), make(chan struct{})
			h.hooked = func(w http.ResponseWriter, r *http.Request) {
				if err := tc.change(r.Context()); err != nil {
					t.Errorf("%s = %v", tc.name, err)
				}
				close(changed)
				<-paused
				if err := session.Put(r.Context(), "k", "v"); err != nil {
					t.Errorf("Put: %v", err)
				}
				http.SetCookie(w, &http.Cookie{Name: "csrf", Value: "new"})
				io.WriteString(w, "saved")
			}
			done := make(chan response)
			go func() { done <- h.do(c, "POST", "/hook", nil) }()
			<-changed
			h.redis.Do(t, "CLIENT", "PAUSE", "60000", "WRITE")
			close(paused)
			resp := <-done
			h.redis.Do(t, "CLIENT", "UNPAUSE")

			if resp.code != http.StatusServiceUnavailable || resp.body == "saved" {
				t.Errorf("POST /hook with writes paused = %d %q, want 503", resp.code, resp.body)
			}
			want := session.DefaultInsecureCookieName + "="
			if sc := resp.header.Values("Set-Cookie"); len(sc) != 1 || !strings.HasPrefix(sc[0], want) || strings.HasPrefix(sc[0], want+";") {
				t.Errorf("the 503's Set-Cookie = %q, want only the new session's cookie", sc)
			}
			if h.exists(oldID) {
				t.Error("the session the request came with is still in Redis")
			}
			if got := h.do(c, "GET", "/me", nil); got.code != http.StatusOK || got.body != "alice" {
				t.Errorf("GET /me after the 503 = %d %q, want 200 alice", got.code, got.body)
			}
		})
	}
}

// TestCommitFailureKeepsOuterHeaders loses Redis before a handler's change
// is saved, behind a middleware around Sessions that compresses the
// response and sets a cookie and a Link of its own: the 503 drops what the
// handler set, but keeps what that middleware set, so that its gzip body
// comes with Content-Encoding: gzip.
func TestCommitFailureKeepsOuterHeaders(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := h.client()
	h.login(c, "alice")
	outer := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Link", "</outer.css>; rel=preload")
			http.SetCookie(w, &http.Cookie{Name: "outer", Value: "1"})
			gz := gzip.NewWriter(w)
			defer gz.Close()
			next.ServeHTTP(gzipWriter{ResponseWriter: w, gz: gz}, r)
		})
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.redis.Stop(t)
		if err := session.Put(r.Context(), "k", "v"); err != nil {
			t.Errorf("Put: %v", err)
		}
		w.Header().Set("Link", "</handler.css>; rel=preload")
		w.Header().Set("Location", "/dashboard")
		http.SetCookie(w, &http.Cookie{Name: "csrf", Value: "new"})
		io.WriteString(w, "saved")
	})
	srv := httptest.NewServer(outer(middleware.Sessions(h.m)(handler)))
	t.Cleanup(srv.Close)

	req, err := http.NewRequest("POST", srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "gzip") // so the transport leaves the body as sent
	for _, ck := range c.Jar.Cookies(mustURL(h.srv.URL)) {
		req.AddCookie(ck)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("lost save behind a compressing middleware = %d, want 503", resp.StatusCode)
	}
	for _, tc := range []struct{ header, want string }{
		{"Content-Encoding", "gzip"},
		{"Link", "</outer.css>; rel=preload"},
		{"Set-Cookie", "outer=1"},
		{"Location", ""},
	} {
		if got := strings.Join(resp.Header.Values(tc.header), ", "); got != tc.want {
			t.Errorf("the 503's %s = %q, want %q", tc.header, got, tc.want)
		}
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatalf("the 503's body with Content-Encoding %q: %v", resp.Header.Get("Content-Encoding"), err)
	}
	body, err := io.ReadAll(zr)
	if got, want := strings.TrimSpace(string(body)), `{"error":"session store unavailable"}`; err != nil || got != want {
		t.Errorf("the 503's body = %q, %v; want %q", got, err, want)
	}
}

// gzipWriter compresses what is written through it with gz.
type gzipWriter struct {
	http.ResponseWriter
	gz *gzip.Writer
}

func (w gzipWriter) Write(b []byte) (int, error) { return w.gz.Write(b) }
