package session

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// newInnerManager returns a Manager for /admin/ beside outer's site, with
// cfg, on a Store of its own (KeyPrefix "admin:") on r, outer's Redis, as
// nested Managers must have (see checkNested); with r nil, on outer's
// Store.
func newInnerManager(t *testing.T, outer *Manager, r *redistest.Server, cfg Config) *Manager {
	t.Helper()
	cfg.Keys = [][]byte{testKey(9)}
	cfg.InsecureCookie = true
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	store := baseStore(outer.store)
	if r != nil {
		s, err := redisstore.Open(redisstore.Config{Addr: r.Addr(), KeyPrefix: "admin:", Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		store = s
	}
	m, err := New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// nestedExchange runs fn as the handler of one request that passes through
// outer's middleware, then inner's, carrying outerCookie and innerCookie
// (each if not empty), and returns the response header.
func nestedExchange(t *testing.T, outer, inner *Manager, outerCookie, innerCookie string, fn func(ctx context.Context)) http.Header {
	t.Helper()
	req := httptest.NewRequest("GET", "http://localhost/admin/", nil) // see serve
	if outerCookie != "" {
		req.AddCookie(&http.Cookie{Name: outer.cfg.CookieName, Value: outerCookie})
	}
	if innerCookie != "" {
		req.AddCookie(&http.Cookie{Name: inner.cfg.CookieName, Value: innerCookie})
	}
	outerCtx := outer.Load(req)
	innerCtx := inner.Load(req.WithContext(outerCtx))
	fn(innerCtx)
	h := http.Header{}
	if err := inner.Commit(innerCtx, h); err != nil {
		t.Fatalf("inner Commit = %v", err)
	}
	if err := outer.Commit(outerCtx, h); err != nil {
		t.Fatalf("outer Commit = %v", err)
	}
	return h
}

// TestClearSiteDataOnPlainHTTP: with InsecureCookie (a site on plain HTTP),
// a logout under a host name that is not a loopback one sends no
// Clear-Site-Data, which browsers take only from a secure context and with
// which Chromium drops the response's Set-Cookie lines, the cookie's
// expiry included; on localhost and loopback addresses, secure contexts
// over plain HTTP too, it does. The cookie is expired either way.
func TestClearSiteDataOnPlainHTTP(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	for host, want := range map[string]string{
		"localhost:8080": `"cookies"`, "app.localhost": `"cookies"`, "LOCALHOST.": `"cookies"`,
		"127.0.0.1:8080": `"cookies"`, "127.0.0.2": `"cookies"`, "[::1]:80": `"cookies"`,
		"app.test:8080": "", "10.0.0.5": "", "[2001:db8::1]:80": "", "localhost.example.com": "",
		"https://app.test": `"cookies"`, // over TLS to the app itself
	} {
		cookie, _ := login(t, m, "alice")
		req := httptest.NewRequest("POST", "/logout", nil)
		if u, ok := strings.CutPrefix(host, "https://"); ok {
			req = httptest.NewRequest("POST", host+"/logout", nil) // sets req.TLS
			host = u
		}
		req.Host = host
		req.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: cookie})
		ctx := m.Load(req)
		if err := Destroy(ctx); err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		if err := m.Commit(ctx, h); err != nil {
			t.Fatal(err)
		}
		if got := h.Get("Clear-Site-Data"); got != want {
			t.Errorf("logout on http://%s: Clear-Site-Data %q, want %q", host, got, want)
		}
		if c, ok := sessionCookie(m, h); !ok || c.MaxAge >= 0 {
			t.Errorf("logout on http://%s: Set-Cookie %v, want the cookie expired", host, c)
		}
	}
}

// TestLogoutClearSiteData checks where a logout sends Clear-Site-Data:
// "cookies", which browsers apply to every cookie of the registrable
// domain: by default, but not with KeepSiteData, and never from a Manager
// nested inside another, whose logout would delete the outer Manager's
// cookie and log its browser out of the site.
func TestLogoutClearSiteData(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		nested bool
		want   string
	}{
		{name: "logout", want: `"cookies"`},
		{name: "KeepSiteData", cfg: Config{KeepSiteData: true}},
		{name: "nested", cfg: Config{CookieName: "admin"}, nested: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var site, m *Manager
			if tc.nested {
				var r *redistest.Server
				site, r, _ = newTestManager(t, Config{})
				m = newInnerManager(t, site, r, tc.cfg)
			} else {
				site, _, _ = newTestManager(t, tc.cfg)
				m = site
			}
			siteCookie, _ := login(t, site, "alice")
			logout := func(ctx context.Context) {
				if err := Destroy(ctx); err != nil {
					t.Fatalf("Destroy = %v", err)
				}
			}
			var h http.Header
			if tc.nested {
				adminCookie := nestedExchange(t, site, m, siteCookie, "", func(ctx context.Context) {
					if _, err := Create(ctx, "root"); err != nil {
						t.Fatalf("Create = %v", err)
					}
				}).Get("Set-Cookie")
				c, err := http.ParseSetCookie(adminCookie)
				if err != nil || c.Name != "admin" {
					t.Fatalf("admin login: Set-Cookie %q, want an admin cookie", adminCookie)
				}
				h = nestedExchange(t, site, m, siteCookie, c.Value, logout)
			} else {
				var err error
				if h, err = exchange(t, m, siteCookie, logout); err != nil {
					t.Fatalf("Commit = %v", err)
				}
			}
			if got := h.Get("Clear-Site-Data"); got != tc.want {
				t.Errorf("Clear-Site-Data = %q, want %q", got, tc.want)
			}
			if c, ok := sessionCookie(m, h); !ok || c.MaxAge >= 0 {
				t.Errorf("Set-Cookie %v, want the %s cookie expired", c, m.cfg.CookieName)
			}
			if got := h.Values("Set-Cookie"); len(got) != 1 {
				t.Errorf("Set-Cookie = %q, want only the logged-out session's", got)
			}
			if got := h.Values("Cache-Control"); !slices.Contains(got, "no-store") {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			wantSite := "alice"
			if !tc.nested {
				wantSite = ""
			}
			if u := userOf(t, site, siteCookie); u != wantSite {
				t.Errorf("site session after the logout: UserID = %q, want %q", u, wantSite)
			}
		})
	}
}

// TestNestedSameCookieName checks that a Manager nested inside another
// with the same cookie name, where each reads and replaces the other's
// cookie, or on the same Store, where their sessions are one, logs an
// error naming the mistake, once however many requests pass, and that one
// with its own cookie and Store logs nothing.
func TestNestedSameCookieName(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cookie     string // inner's Config.CookieName; "" for the site's
		sameStore  bool
		tagKey     bool   // both Managers tag keys (New wraps their Store)
		want       int    // error lines
		wantInLine string // in each error line
	}{
		{name: "same cookie", want: 1, wantInLine: "Config.CookieName"},
		{name: "same store", cookie: "admin", sameStore: true, want: 1, wantInLine: "KeyPrefix"},
		{name: "same store, TagKey", cookie: "admin", sameStore: true, tagKey: true, want: 1, wantInLine: "KeyPrefix"},
		{name: "own cookie and store", cookie: "admin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tag []byte
			if tc.tagKey {
				tag = testKey(3)
			}
			site, r, _ := newTestManager(t, Config{TagKey: tag})
			logs := &logBuffer{}
			if tc.sameStore {
				r = nil
			}
			admin := newInnerManager(t, site, r, Config{CookieName: tc.cookie, TagKey: tag, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			siteCookie, _ := login(t, site, "alice")
			for range 3 {
				nestedExchange(t, site, admin, siteCookie, "", func(ctx context.Context) {})
			}
			var errs []string
			for _, l := range logs.take() {
				if strings.Contains(l, "level=ERROR") {
					errs = append(errs, l)
				}
			}
			if len(errs) != tc.want {
				t.Fatalf("error lines after 3 nested requests = %q, want %d", errs, tc.want)
			}
			for _, l := range errs {
				if !strings.Contains(l, tc.wantInLine) {
					t.Errorf("error line %q, want %q in it", l, tc.wantInLine)
				}
				if tc.cookie == "" && !strings.Contains(l, "cookie="+site.cfg.CookieName) {
					t.Errorf("error line %q, want the cookie name (cookie=%s)", l, site.cfg.CookieName)
				}
			}
		})
	}
}
