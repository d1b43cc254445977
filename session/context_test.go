package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gomodule/redigo/redis"
	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
	"unsafe"
)

// TestWithoutMiddleware checks that every call on a context no
// middleware.Sessions ran for fails with ErrNoSession whose message names
// the mistake, instead of a bare "no session" that reads like a logged-out
// user.
func TestWithoutMiddleware(t *testing.T) {
	ctx := context.Background()
	_, createErr := Create(ctx, "alice")
	m := &Manager{}
	_, revokeErr := m.RevokeOthers(ctx)
	for name, err := range map[string]error{
		"Create":       createErr,
		"Put":          Put(ctx, "k", "v"),
		"Renew":        Renew(ctx),
		"Destroy":      Destroy(ctx),
		"LoadError":    LoadError(ctx),
		"RevokeOthers": revokeErr,
		"Commit":       m.Commit(ctx, http.Header{}),
	} {
		if !errors.Is(err, ErrNoSession) || !strings.Contains(err.Error(), "wrap the handler with middleware.Sessions") {
			t.Errorf("%s without the middleware = %v, want ErrNoSession naming middleware.Sessions", name, err)
		}
	}
}

// TestOtherManagersMiddleware checks that a Manager's method on a request
// that only another Manager's middleware ran for says that, rather than
// that no middleware ran.
func TestOtherManagersMiddleware(t *testing.T) {
	ctx := context.WithValue(context.Background(), stateKey{}, &state{m: &Manager{}})
	m := &Manager{}
	_, err := m.RevokeOthers(ctx)
	if !errors.Is(err, ErrNoSession) || !strings.Contains(err.Error(), "this Manager's middleware.Sessions did not run") {
		t.Errorf("RevokeOthers under another Manager's middleware only = %v, want ErrNoSession saying this Manager's did not run", err)
	}
	if err := m.Commit(ctx, http.Header{}); !errors.Is(err, ErrNoSession) || !strings.Contains(err.Error(), "this Manager's middleware.Sessions did not run") {
		t.Errorf("Commit of a context with another Manager's session only = %v, want ErrNoSession saying this Manager's did not run", err)
	}
}

// TestCrossSiteStartsNoSession sends requests without the session cookie
// that a browser sends without it even when it holds one, as the cookie's
// SameSite says (Sec-Fetch-*): a Put there, which would start an anonymous
// session, returns ErrNoSession and sets no cookie, since browsers take
// the new cookie from the answer to a top-level navigation and it would
// replace a signed-in one (a link on another site would sign the user
// out). Requests the cookie would have come with start a session as
// before, and so does a login on any of them.
func TestCrossSiteStartsNoSession(t *testing.T) {
	navigate := map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
	tests := []struct {
		name     string
		sameSite http.SameSite
		method   string
		headers  map[string]string
		refused  bool
	}{
		{"Strict, cross-site link", http.SameSiteStrictMode, "GET", navigate, true},
		{"Strict, cross-site fetch", http.SameSiteStrictMode, "GET", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}, true},
		{"Strict, same-site link", http.SameSiteStrictMode, "GET", map[string]string{"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, false},
		{"Strict, typed address", http.SameSiteStrictMode, "GET", map[string]string{"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, false},
		{"Strict, no Sec-Fetch-Site", http.SameSiteStrictMode, "GET", nil, false},
		{"Lax, cross-site link", http.SameSiteLaxMode, "GET", navigate, false},
		{"Lax, cross-site form post", http.SameSiteLaxMode, "POST", navigate, true},
		{"Lax, cross-site iframe", http.SameSiteLaxMode, "GET", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}, true},
		{"Lax, same-origin post", http.SameSiteLaxMode, "POST", map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, false},
		{"None, cross-site form post", http.SameSiteNoneMode, "POST", navigate, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m *Manager
			var r *redistest.Server
			if tc.sameSite == http.SameSiteNoneMode {
				// None needs a Secure cookie, which newTestManager's is not.
				r = redistest.Start(t)
				store, err := redisstore.Open(redisstore.Config{Addr: r.Addr()})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { store.Close() })
				if m, err = New(store, Config{Keys: [][]byte{testKey(7)}, SameSite: tc.sameSite}); err != nil {
					t.Fatal(err)
				}
			} else {
				m, r, _ = newTestManager(t, Config{SameSite: tc.sameSite})
			}
			req := httptest.NewRequest(tc.method, "/", nil)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			ctx := m.Load(req)
			err := Put(ctx, "return_to", "/cart")
			h := http.Header{}
			if cerr := m.Commit(ctx, h); cerr != nil {
				t.Fatalf("Commit = %v", cerr)
			}
			_, cookie := sessionCookie(m, h)
			keys, _ := redis.Strings(r.Do(t, "KEYS", "*"), nil)
			if tc.refused {
				if !errors.Is(err, ErrCrossSite) || !errors.Is(err, ErrNoSession) || cookie || len(keys) != 0 {
					t.Errorf("Put = %v, cookie set %v, keys %q; want ErrCrossSite (an ErrNoSession), no cookie and nothing in Redis", err, cookie, keys)
				}
				// Destroy, the way out of a dead token, is none here.
				ctx = m.Load(req)
				if err := Destroy(ctx); err != nil {
					t.Fatalf("Destroy = %v", err)
				}
				if err := Put(ctx, "return_to", "/cart"); !errors.Is(err, ErrCrossSite) {
					t.Errorf("Put after Destroy = %v, want ErrCrossSite", err)
				}
				// A login is the user's own doing: it goes ahead, and the
				// values put after it are saved with it.
				ctx := m.Load(req)
				if _, err := Create(ctx, "alice"); err != nil {
					t.Fatalf("Create on the same request = %v", err)
				}
				if err := Put(ctx, "theme", "dark"); err != nil {
					t.Errorf("Put after Create = %v, want nil", err)
				}
				h := http.Header{}
				if err := m.Commit(ctx, h); err != nil {
					t.Fatalf("Commit after Create = %v", err)
				}
				if _, ok := sessionCookie(m, h); !ok {
					t.Error("the login sets no cookie")
				}
				return
			}
			if err != nil || !cookie || len(keys) != 1 {
				t.Errorf("Put = %v, cookie set %v, keys %q; want a new anonymous session", err, cookie, keys)
			}
		})
	}
}

// TestStateSize holds the size that state's documentation gives: every
// request allocates one, and a field that takes it past 352 bytes costs
// each request 32 more (the next size class), as a misplaced bool would.
func TestStateSize(t *testing.T) {
	if got := unsafe.Sizeof(state{}); got > 352 {
		t.Errorf("unsafe.Sizeof(state{}) = %d, want at most 352: place new bools in the padding beside the others", got)
	}
}
