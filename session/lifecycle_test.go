package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// load returns the context of a request carrying cookie (if not empty),
// for tests that interleave requests: the caller commits it, or not.
func load(m *Manager, cookie string) context.Context {
	req := httptest.NewRequest("GET", "http://localhost/", nil) // see serve
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: cookie})
	}
	return m.Load(req)
}

// exchange runs fn as the handler of one request carrying cookie (if not
// empty) and returns the response header and the error of Commit, which
// serve turns into a fatal error.
func exchange(t *testing.T, m *Manager, cookie string, fn func(ctx context.Context)) (http.Header, error) {
	t.Helper()
	ctx := load(m, cookie)
	fn(ctx)
	h := http.Header{}
	err := m.Commit(ctx, h)
	return h, err
}

// sessionCookie returns the session cookie set by h, if any: a new value,
// or an expired cookie (empty value, MaxAge < 0) for a logout.
func sessionCookie(m *Manager, h http.Header) (*http.Cookie, bool) {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == m.cfg.CookieName {
			return c, true
		}
	}
	return nil, false
}

// userOf runs a request carrying cookie and returns its user, "" for an
// anonymous session. It fails the test if the request changes the cookie
// or cannot commit.
func userOf(t *testing.T, m *Manager, cookie string) string {
	t.Helper()
	var user string
	h, err := exchange(t, m, cookie, func(ctx context.Context) { user, _ = UserID(ctx) })
	if err != nil {
		t.Fatalf("Commit = %v, want nil", err)
	}
	if c, ok := sessionCookie(m, h); ok {
		t.Errorf("a request that changed nothing set the cookie %v", c)
	}
	return user
}

// writes returns the commands of r.Calls that write data.
func writes(t *testing.T, r *redistest.Server) map[string]int64 {
	t.Helper()
	w := map[string]int64{}
	for name, n := range r.Calls(t) {
		switch name {
		case "set", "del", "unlink", "zadd", "zrem", "zremrangebyscore", "pexpire", "pexpireat", "multi", "exec", "eval", "evalsha":
			w[name] = n
		}
	}
	return w
}

// TestRenew checks that Renew moves the session to a new token with the
// same user, values and deadline, and that the old token is worthless
// afterwards.
func TestRenew(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	cookie, oldID := login(t, m, "alice")
	serve(t, m, cookie, func(ctx context.Context) {
		if err := Put(ctx, "k", "v"); err != nil {
			t.Fatalf("Put = %v", err)
		}
	})
	var before, after Info
	h, err := exchange(t, m, cookie, func(ctx context.Context) {
		before, _ = FromContext(ctx)
		if err := Renew(ctx); err != nil {
			t.Fatalf("Renew = %v, want nil", err)
		}
		after, _ = FromContext(ctx)
		if tok, ok := Token(ctx); !ok || tok == cookie {
			t.Errorf("Token after Renew = %.12q, %v; want a new token", tok, ok)
		}
		if v, _ := Get[string](ctx, "k"); v != "v" {
			t.Errorf("Get(k) after Renew = %q, want v", v)
		}
	})
	if err != nil {
		t.Fatalf("Commit = %v, want nil", err)
	}
	if after.ID == before.ID || after.ID == "" {
		t.Errorf("Info.ID after Renew = %.8s, want new (was %.8s)", after.ID, before.ID)
	}
	if after.UserID != "alice" || !after.ExpiresAt.Equal(before.ExpiresAt) || !after.CreatedAt.Equal(before.CreatedAt) {
		t.Errorf("Info after Renew = %+v, want user, created and expiry of %+v", after, before)
	}
	c, ok := sessionCookie(m, h)
	if !ok || c.Value == "" || c.Value == cookie {
		t.Fatalf("Set-Cookie after Renew = %v, %v; want the new token", c, ok)
	}
	serve(t, m, c.Value, func(ctx context.Context) {
		info, ok := FromContext(ctx)
		if !ok || info.ID != after.ID || !info.ExpiresAt.Equal(before.ExpiresAt) {
			t.Errorf("new token's session = %+v, %v; want id %.8s, expiry %v", info, ok, after.ID, before.ExpiresAt)
		}
		if v, _ := Get[string](ctx, "k"); v != "v" {
			t.Errorf("Get(k) with the new token = %q, want v", v)
		}
	})
	if u := userOf(t, m, cookie); u != "" {
		t.Errorf("old token after Renew: UserID = %q, want anonymous", u)
	}
	if rec := r.Do(t, "GET", "session:"+oldID); rec != nil {
		t.Error("the old token's record survives Renew")
	}
	infos, err := m.List(context.Background(), "alice")
	if err != nil || len(infos) != 1 || infos[0].ID != after.ID {
		t.Errorf("List(alice) after Renew = %+v, %v; want only %.8s", infos, err, after.ID)
	}
}

// TestRenewAnonymous checks Renew on anonymous sessions: one without a
// record has nothing to renew; one with a record moves like any other.
func TestRenewAnonymous(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	r.ResetStats(t)
	h, err := exchange(t, m, "", func(ctx context.Context) {
		if err := Renew(ctx); !errors.Is(err, ErrNoSession) {
			t.Errorf("Renew without a record = %v, want ErrNoSession", err)
		}
	})
	if _, ok := sessionCookie(m, h); ok || err != nil {
		t.Errorf("after a refused Renew: Set-Cookie %v, Commit %v; want none, nil", ok, err)
	}
	if n := r.TotalCalls(t); n != 0 {
		t.Errorf("Renew without a record cost %d Redis commands, want 0", n)
	}

	cookie := serve(t, m, "", func(ctx context.Context) {
		if err := Put(ctx, "cart", "book"); err != nil {
			t.Fatal(err)
		}
	})
	renewed := serve(t, m, cookie, func(ctx context.Context) {
		if err := Renew(ctx); err != nil {
			t.Errorf("Renew of an anonymous session with a record = %v, want nil", err)
		}
	})
	if renewed == "" || renewed == cookie {
		t.Fatalf("anonymous Renew set cookie %.12q, want a new one", renewed)
	}
	serve(t, m, renewed, func(ctx context.Context) {
		if v, _ := Get[string](ctx, "cart"); v != "book" {
			t.Errorf("Get(cart) after an anonymous Renew = %q, want book", v)
		}
	})
	serve(t, m, cookie, func(ctx context.Context) {
		if v, ok := Get[string](ctx, "cart"); ok {
			t.Errorf("Get(cart) with the old anonymous token = %q, want nothing", v)
		}
	})
}

// TestRenewAfterEnd checks that Renew of a session that another request
// ended after this one loaded it writes nothing and returns ErrNoSession:
// it must not bring the session back under a new token.
func TestRenewAfterEnd(t *testing.T) {
	tests := []struct {
		name string
		end  func(t *testing.T, m *Manager, cookie string)
		left int // sessions of alice afterwards
	}{
		{"destroyed", func(t *testing.T, m *Manager, cookie string) {
			serve(t, m, cookie, func(ctx context.Context) {
				if err := Destroy(ctx); err != nil {
					t.Fatal(err)
				}
			})
		}, 0},
		{"revoked", func(t *testing.T, m *Manager, cookie string) {
			if _, err := m.RevokeAll(context.Background(), "alice"); err != nil {
				t.Fatal(err)
			}
		}, 0},
		{"renewed elsewhere", func(t *testing.T, m *Manager, cookie string) {
			serve(t, m, cookie, func(ctx context.Context) {
				if err := Renew(ctx); err != nil {
					t.Fatal(err)
				}
			})
		}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, r, _ := newTestManager(t, Config{})
			cookie, _ := login(t, m, "alice")
			ctx := load(m, cookie)
			tc.end(t, m, cookie)
			size := r.Do(t, "DBSIZE")
			r.ResetStats(t)
			if err := Renew(ctx); !errors.Is(err, ErrNoSession) {
				t.Errorf("Renew after the session was %s = %v, want ErrNoSession", tc.name, err)
			}
			if w := writes(t, r); len(w) != 0 {
				t.Errorf("Renew after the session was %s wrote %v, want nothing", tc.name, w)
			}
			if got := r.Do(t, "DBSIZE"); got != size {
				t.Errorf("DBSIZE after the refused Renew = %v, want %v", got, size)
			}
			if u, ok := UserID(ctx); ok {
				t.Errorf("UserID after the refused Renew = %q, want anonymous", u)
			}
			h := http.Header{}
			if err := m.Commit(ctx, h); err != nil {
				t.Errorf("Commit = %v, want nil", err)
			}
			if c, ok := sessionCookie(m, h); ok {
				t.Errorf("response of the refused Renew sets cookie %v, want the cookie untouched", c)
			}
			if infos, err := m.List(context.Background(), "alice"); len(infos) != tc.left || err != nil {
				t.Errorf("List(alice) after the refused Renew = %d sessions, %v; want %d", len(infos), err, tc.left)
			}
		})
	}
}

// TestRenewKeepsChanges checks that Renew keeps the request's own pending
// changes and those another request saved after this one loaded.
func TestRenewKeepsChanges(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	cookie, _ := login(t, m, "alice")
	serve(t, m, cookie, func(ctx context.Context) {
		if err := Put(ctx, "gone", 1); err != nil {
			t.Fatal(err)
		}
	})
	ctx := load(m, cookie)
	// Another request saves a value between this one's load and its Renew.
	serve(t, m, cookie, func(ctx context.Context) {
		if err := Put(ctx, "other", "theirs"); err != nil {
			t.Fatal(err)
		}
	})
	if err := Put(ctx, "mine", "pending"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := Renew(ctx); err != nil {
		t.Fatalf("Renew = %v, want nil", err)
	}
	if v, _ := Get[string](ctx, "other"); v != "theirs" {
		t.Errorf("Get(other) after Renew, in the request = %q, want theirs", v)
	}
	if err := Put(ctx, "after", true); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	if err := m.Commit(ctx, h); err != nil {
		t.Fatalf("Commit = %v, want nil", err)
	}
	c, ok := sessionCookie(m, h)
	if !ok || c.Value == "" {
		t.Fatal("Renew set no cookie")
	}
	serve(t, m, c.Value, func(ctx context.Context) {
		for key, want := range map[string]string{"mine": "pending", "other": "theirs"} {
			if v, _ := Get[string](ctx, key); v != want {
				t.Errorf("Get(%s) after Renew = %q, want %q", key, v, want)
			}
		}
		if v, _ := Get[bool](ctx, "after"); !v {
			t.Errorf("Get(after) = %v, want true (put after Renew)", v)
		}
		if v, ok := Get[int](ctx, "gone"); ok {
			t.Errorf("Get(gone) = %d, want removed before Renew", v)
		}
	})
}

// TestAbandonAfterLoginOrRenewal has a handler put and remove values, log
// in or renew, put again, and fail (Abandon, as middleware.Sessions calls
// it when the handler panics): the response still sets the new session's
// cookie, and that session holds none of the request's changes, before
// the login or renewal or after it, only the values it had. With Commit
// instead, all of the changes are saved. Renew and Create wrote the
// values put before them into the new record, so a panic after them
// saved those.
func TestAbandonAfterLoginOrRenewal(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	tests := []struct {
		name   string
		cookie func() string // the session the request comes with
		act    func(ctx context.Context) error
	}{
		{"renewal", func() string {
			c, _ := login(t, m, "alice")
			serve(t, m, c, func(ctx context.Context) { Put(ctx, "kept", "yes") })
			return c
		}, Renew},
		{"login from an anonymous session", func() string {
			return serve(t, m, "", func(ctx context.Context) { Put(ctx, "kept", "yes") })
		}, func(ctx context.Context) error { _, err := Create(ctx, "bob"); return err }},
		{"login without a session", func() string { return "" },
			func(ctx context.Context) error { _, err := Create(ctx, "bob"); return err }},
	}
	for _, tc := range tests {
		for _, commit := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, commit=%v", tc.name, commit), func(t *testing.T) {
				ctx := load(m, tc.cookie())
				_, hadKept := Get[string](ctx, "kept")
				if err := Put(ctx, "role", "admin"); err != nil {
					t.Fatal(err)
				}
				if err := Remove(ctx, "kept"); err != nil {
					t.Fatal(err)
				}
				if err := tc.act(ctx); err != nil {
					t.Fatalf("%s = %v", tc.name, err)
				}
				if v, _ := Get[string](ctx, "role"); v != "admin" {
					t.Errorf("Get(role) after the %s, in the request = %q, want admin", tc.name, v)
				}
				if _, ok := Get[string](ctx, "kept"); ok {
					t.Errorf("Get(kept) after the %s, in the request: found, want removed", tc.name)
				}
				if err := Put(ctx, "after", "x"); err != nil {
					t.Fatal(err)
				}
				h := http.Header{}
				if commit {
					if err := m.Commit(ctx, h); err != nil {
						t.Fatalf("Commit = %v", err)
					}
				} else {
					m.Abandon(ctx, h)
				}
				c, ok := sessionCookie(m, h)
				if !ok || c.Value == "" {
					t.Fatalf("the %s's response set no cookie", tc.name)
				}
				serve(t, m, c.Value, func(ctx context.Context) {
					for key, want := range map[string]bool{"role": commit, "after": commit, "kept": hadKept && !commit} {
						if _, ok := Get[string](ctx, key); ok != want {
							t.Errorf("%s in the new session: found %v, want %v", key, ok, want)
						}
					}
				})
			})
		}
	}
}

// TestLoginCarriesCurrentValues has another request change the values of
// an anonymous session after a login request loaded it and before its
// Create: the new session carries over the values as the anonymous record
// holds them then, the other request's change included, with and without
// a session limit. A second login request that loaded the same anonymous
// session (a login form submitted twice) finds its record gone and
// carries over the values it loaded.
func TestLoginCarriesCurrentValues(t *testing.T) {
	for _, limit := range []int{0, 2} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			m, r, _ := newTestManager(t, Config{MaxSessionsPerUser: limit})
			anon := serve(t, m, "", func(ctx context.Context) {
				Put(ctx, "cart", "book")
				Put(ctx, "gift", "wrap")
			})
			first, second := load(m, anon), load(m, anon)
			serve(t, m, anon, func(ctx context.Context) {
				if err := Put(ctx, "cart2", "pen"); err != nil {
					t.Fatal(err)
				}
				if err := Remove(ctx, "gift"); err != nil {
					t.Fatal(err)
				}
			})
			for _, tc := range []struct {
				ctx  context.Context
				want map[string]string
			}{
				{first, map[string]string{"cart": "book", "cart2": "pen"}},
				{second, map[string]string{"cart": "book", "gift": "wrap"}},
			} {
				if _, err := Create(tc.ctx, "alice"); err != nil {
					t.Fatalf("Create = %v", err)
				}
				h := http.Header{}
				if err := m.Commit(tc.ctx, h); err != nil {
					t.Fatalf("Commit = %v", err)
				}
				c, ok := sessionCookie(m, h)
				if !ok {
					t.Fatal("the login set no cookie")
				}
				serve(t, m, c.Value, func(ctx context.Context) {
					got := map[string]string{}
					for _, k := range []string{"cart", "cart2", "gift"} {
						if v, ok := Get[string](ctx, k); ok {
							got[k] = v
						}
					}
					if !maps.Equal(got, tc.want) {
						t.Errorf("values after the login = %v, want %v", got, tc.want)
					}
				})
			}
			if n, _ := r.Do(t, "EXISTS", "session:"+idOf(tokenOf(t, m, anon))).(int64); n != 0 {
				t.Error("the anonymous record survived the logins")
			}
		})
	}
}

// TestAfterCommit checks that nothing changes a session once its response
// has started, except Destroy, which still ends it.
func TestAfterCommit(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	cookie, id := login(t, m, "alice")
	serve(t, m, cookie, func(ctx context.Context) {
		if err := Put(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
	})
	ctx := load(m, cookie)
	if err := m.Commit(ctx, http.Header{}); err != nil {
		t.Fatal(err)
	}
	before, _ := r.Do(t, "GET", "session:"+id).([]byte)
	tests := []struct {
		name string
		call func() error
	}{
		{"Put", func() error { return Put(ctx, "k", "changed") }},
		{"Remove", func() error { return Remove(ctx, "k") }},
		{"Create", func() error { _, err := Create(ctx, "bob"); return err }},
		{"Renew", func() error { return Renew(ctx) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, ErrResponseStarted) {
				t.Errorf("%s after Commit = %v, want ErrResponseStarted", tc.name, err)
			}
		})
	}
	if v, ok := Pop[string](ctx, "k"); ok {
		t.Errorf("Pop(k) after Commit = %q, true; want false", v)
	}
	h := http.Header{}
	if err := m.Commit(ctx, h); err != nil || len(h) != 0 {
		t.Errorf("second Commit = %v, header %v; want nil, none", err, h)
	}
	if after, _ := r.Do(t, "GET", "session:"+id).([]byte); len(before) == 0 || !bytes.Equal(after, before) {
		t.Errorf("record changed after Commit:\n%s\nwant\n%s", after, before)
	}
	if size := r.Do(t, "DBSIZE"); size != int64(2) {
		t.Errorf("DBSIZE = %v, want 2 (alice's record and index; no session for bob)", size)
	}
	if u := userOf(t, m, cookie); u != "alice" {
		t.Errorf("UserID after the refused changes = %q, want alice", u)
	}

	if err := Destroy(ctx); !errors.Is(err, ErrResponseStarted) {
		t.Errorf("Destroy after Commit = %v, want ErrResponseStarted", err)
	}
	if rec := r.Do(t, "GET", "session:"+id); rec != nil {
		t.Error("Destroy after Commit left the record")
	}
	if u := userOf(t, m, cookie); u != "" {
		t.Errorf("UserID after Destroy after Commit = %q, want anonymous", u)
	}
}

// TestStoreDown checks what the helpers answer when Redis cannot be asked:
// a session that could not be read cannot change, and a write that fails
// is reported to Commit, so that the response can be a 503.
func TestStoreDown(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	cookie, id := login(t, m, "alice")
	during := load(m, cookie) // loaded before the outage, saved during it
	r.Stop(t)

	h, err := exchange(t, m, cookie, func(ctx context.Context) {
		if err := LoadError(ctx); !errors.Is(err, ErrStoreUnavailable) {
			t.Errorf("LoadError = %v, want ErrStoreUnavailable", err)
		}
		for _, tc := range []struct {
			name string
			err  error
		}{
			{"Put", Put(ctx, "k", 1)},
			{"Remove", Remove(ctx, "k")},
			{"Renew", Renew(ctx)},
			{"Destroy", Destroy(ctx)},
			{"List", func() error { _, err := m.List(ctx, "alice"); return err }()},
			{"Revoke", m.Revoke(ctx, "alice", id)},
			{"RevokeAll", func() error { _, err := m.RevokeAll(ctx, "alice"); return err }()},
			{"Create", func() error { _, err := Create(ctx, "alice"); return err }()},
		} {
			if !errors.Is(tc.err, ErrStoreUnavailable) {
				t.Errorf("%s with the store down = %v, want ErrStoreUnavailable", tc.name, tc.err)
			}
		}
	})
	if c, ok := sessionCookie(m, h); ok || err != nil {
		t.Errorf("request with the store down: Set-Cookie %v, Commit %v; want none, nil", c, err)
	}

	if err := Put(during, "k", 1); err != nil {
		t.Fatal(err)
	}
	if err := m.Commit(during, http.Header{}); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("Commit of a change with the store down = %v, want ErrStoreUnavailable", err)
	}
}

// TestReloginDropsEarlierPuts logs in, in a request that came with
// another logged-in session, after putting a value: the login ends that
// session, and what the request put before the login goes with it, as its
// values do, while what it puts after the login is saved. From an
// anonymous session or none, the value put before is saved too.
func TestReloginDropsEarlierPuts(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	bob, _ := login(t, m, "bob")
	anon := ""
	h, err := exchange(t, m, "", func(ctx context.Context) {
		if err := Put(ctx, "cart", "book"); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := sessionCookie(m, h); ok {
		anon = c.Value
	}
	for _, tc := range []struct {
		name, cookie string
		keepBefore   bool
	}{
		{"no session", "", true},
		{"anonymous", anon, true},
		{"bob's session", bob, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := exchange(t, m, tc.cookie, func(ctx context.Context) {
				if err := Put(ctx, "before", "x"); err != nil {
					t.Fatal(err)
				}
				if _, err := Create(ctx, "alice"); err != nil {
					t.Fatal(err)
				}
				if err := Put(ctx, "after", "y"); err != nil {
					t.Fatal(err)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			c, ok := sessionCookie(m, h)
			if !ok {
				t.Fatal("the login set no cookie")
			}
			serve(t, m, c.Value, func(ctx context.Context) {
				if _, ok := Get[string](ctx, "before"); ok != tc.keepBefore {
					t.Errorf("value put before the login kept = %v, want %v", ok, tc.keepBefore)
				}
				if v, _ := Get[string](ctx, "after"); v != "y" {
					t.Errorf("value put after the login = %q, want y", v)
				}
			})
		})
	}
}

// logIn logs the request of ctx in as user, Create then Commit, and
// returns the session cookie its response sets.
func logIn(t *testing.T, ctx context.Context, m *Manager, user string) string {
	t.Helper()
	if _, err := Create(ctx, user); err != nil {
		t.Fatalf("Create = %v", err)
	}
	h := http.Header{}
	if err := m.Commit(ctx, h); err != nil {
		t.Fatal(err)
	}
	c, ok := sessionCookie(m, h)
	if !ok {
		t.Fatal("the login set no cookie")
	}
	return c.Value
}

// anonymousCart returns the cookie of a new anonymous session of m that
// holds cart=book.
func anonymousCart(t *testing.T, m *Manager) string {
	t.Helper()
	return serve(t, m, "", func(ctx context.Context) {
		if err := Put(ctx, "cart", "book"); err != nil {
			t.Fatal(err)
		}
	})
}

// valueOf returns the string value key of the session cookie leads to.
func valueOf(t *testing.T, m *Manager, cookie, key string) string {
	t.Helper()
	var v string
	serve(t, m, cookie, func(ctx context.Context) { v, _ = Get[string](ctx, key) })
	return v
}

// TestLoginAfterAnonymousLogout has a login request load an anonymous
// session, then another request log that session out (as it came, or
// after a renewal moved it, with the renewed token) before the login's
// Create: the logout is final, and the login carries none of the ended
// session's values over, on one instance or two. Where a renewal moved
// the session and nothing ended it, the login carries over the values as
// its request loaded them, never one put with the renewed token: the
// renewal made the token the login came with worthless (a token planted
// in the browser, whose holder's login request was in flight).
func TestLoginAfterAnonymousLogout(t *testing.T) {
	for _, tc := range []struct {
		name   string
		renew  bool // a renewal moves the session after the login loaded it
		logout bool
		want   string
	}{
		{"logout", false, true, ""},
		{"renewal, then logout of the renewed token", true, true, ""},
		{"renewal", true, false, "book"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, r, _ := newTestManager(t, Config{})
			other := taggedManager(t, r, Config{}) // another instance
			anon := anonymousCart(t, m)
			ctx := load(m, anon)
			current := anon
			if tc.renew {
				current = renew(t, other, anon)
				serve(t, other, current, func(ctx context.Context) {
					if err := Put(ctx, "address", "1 Main St"); err != nil {
						t.Fatal(err)
					}
				})
			}
			if tc.logout {
				serve(t, other, current, func(ctx context.Context) {
					if err := Destroy(ctx); err != nil {
						t.Fatalf("Destroy = %v", err)
					}
				})
			}
			cookie := logIn(t, ctx, m, "alice")
			if v := valueOf(t, other, cookie, "cart"); v != tc.want {
				t.Errorf("cart after the login = %q, want %q", v, tc.want)
			}
			if v := valueOf(t, other, cookie, "address"); v != "" {
				t.Errorf("the login carried over %q, put with the renewed token", v)
			}
		})
	}
}

// wrappedStore is a Store in a type of an app's own (metrics, tracing),
// which hides the optional methods of the one it wraps.
type wrappedStore struct{ Store }

// TestLoginAfterAnonymousLogoutWrapped is the logout case of
// TestLoginAfterAnonymousLogout through a Store wrapped in a type that
// hides redisstore's optional methods: the logout's mark is left all the
// same, and the login carries nothing over.
func TestLoginAfterAnonymousLogoutWrapped(t *testing.T) {
	r := redistest.Start(t)
	m := hookedManager(t, r, Config{}, func(s *redisstore.Store) Store { return wrappedStore{s} })
	anon := anonymousCart(t, m)
	ctx := load(m, anon)
	serve(t, m, anon, func(ctx context.Context) {
		if err := Destroy(ctx); err != nil {
			t.Fatalf("Destroy = %v", err)
		}
	})
	if v := valueOf(t, m, logIn(t, ctx, m, "alice"), "cart"); v != "" {
		t.Errorf("cart after the login = %q, want none: the session was logged out", v)
	}
}

// logoutHook is a Store that records whether the removal of an anonymous
// session (a logout's) deleted its record.
type logoutHook struct {
	*redisstore.Store
	removed *atomic.Bool
}

func (s logoutHook) RemoveUserSession(ctx context.Context, userID, id string) (bool, error) {
	removed, err := s.Store.RemoveUserSession(ctx, userID, id)
	if userID == "" && removed {
		s.removed.Store(true)
	}
	return removed, err
}

// TestLogoutRacesLogin races, on two instances, the logout of an anonymous
// session against a login request that loaded it before, with jitter,
// over hundreds of rounds, the logout with the token the login came with
// or with the one a renewal replaced it with: whenever the logout deleted
// the session's record, the login carries none of its values over.
func TestLogoutRacesLogin(t *testing.T) {
	r := redistest.Start(t)
	var removed atomic.Bool
	logouts := hookedManager(t, r, Config{}, func(s *redisstore.Store) Store { return logoutHook{s, &removed} })
	logins := taggedManager(t, r, Config{})
	for _, renewed := range []bool{false, true} {
		t.Run(fmt.Sprintf("renewed %v", renewed), func(t *testing.T) {
			var first, carried int
			for round := range 200 {
				anon := anonymousCart(t, logins)
				ctx := load(logins, anon)
				token := anon
				if renewed {
					token = renew(t, logins, anon)
				}
				removed.Store(false)
				done := make(chan error, 1)
				go func() {
					_, err := exchange(t, logouts, token, func(ctx context.Context) {
						if err := Destroy(ctx); err != nil {
							t.Errorf("Destroy = %v", err)
						}
					})
					done <- err
				}()
				time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
				cookie := logIn(t, ctx, logins, "alice")
				if err := <-done; err != nil {
					t.Fatalf("the logout's Commit = %v", err)
				}
				got := valueOf(t, logins, cookie, "cart")
				if removed.Load() {
					first++
				}
				if got != "" {
					carried++
				}
				if removed.Load() && got != "" {
					t.Fatalf("round %d: the logout ended the session, and the login carried its cart %q over", round, got)
				}
			}
			t.Logf("200 rounds: the logout ended the session first in %d, the login carried the cart in %d", first, carried)
		})
	}
}

// TestLoginsRaceSentTwice races, on two instances, two login requests that
// loaded the same anonymous session (a form sent twice), with jitter, over
// hundreds of rounds: each carries the cart over.
func TestLoginsRaceSentTwice(t *testing.T) {
	r := redistest.Start(t)
	m1, m2 := taggedManager(t, r, Config{}), taggedManager(t, r, Config{})
	for round := range 200 {
		anon := anonymousCart(t, m1)
		first, second := load(m1, anon), load(m2, anon)
		done := make(chan string, 1)
		go func() {
			// logIn fails the test from the test's goroutine only.
			var cookie string
			_, err := Create(first, "alice")
			h := http.Header{}
			if err == nil {
				err = m1.Commit(first, h)
			}
			if c, ok := sessionCookie(m1, h); err == nil && ok {
				cookie = c.Value
			} else {
				t.Errorf("round %d: the first login = %v, cookie set %v", round, err, ok)
			}
			done <- cookie
		}()
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
		c2 := logIn(t, second, m2, "alice")
		c1 := <-done
		for i, c := range []string{c1, c2} {
			if c == "" {
				continue
			}
			if v := valueOf(t, m2, c, "cart"); v != "book" {
				t.Fatalf("round %d: cart after login %d = %q, want book", round, i+1, v)
			}
		}
	}
}

// TestLoginSentTwiceAroundRenewal has two login requests of one browser
// (a form sent twice) load its anonymous session, the first before a
// renewal moved it, the second after, with the renewed token: each
// login carries the cart over, whichever runs first.
func TestLoginSentTwiceAroundRenewal(t *testing.T) {
	for _, firstFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("first first %v", firstFirst), func(t *testing.T) {
			m, _, _ := newTestManager(t, Config{})
			anon := anonymousCart(t, m)
			first := load(m, anon)
			second := load(m, renew(t, m, anon))
			logins := []context.Context{first, second}
			if !firstFirst {
				logins = []context.Context{second, first}
			}
			for i, ctx := range logins {
				if v := valueOf(t, m, logIn(t, ctx, m, "alice"), "cart"); v != "book" {
					t.Errorf("cart after login %d = %q, want book", i, v)
				}
			}
		})
	}
}

// TestLoginWithRenewedAwayToken has a login request come with an
// anonymous token that a renewal replaced before it arrived (another tab's
// cookie, not yet updated), beside a login request that loaded the
// renewed session: the first ends the renewed session, not as a logout,
// so the second still carries the cart over, whichever runs first.
func TestLoginWithRenewedAwayToken(t *testing.T) {
	for _, oldFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("old token first %v", oldFirst), func(t *testing.T) {
			m, _, _ := newTestManager(t, Config{})
			anon := anonymousCart(t, m)
			renewed := renew(t, m, anon)
			old, current := load(m, anon), load(m, renewed)
			logins := []context.Context{old, current}
			if !oldFirst {
				logins = []context.Context{current, old}
			}
			var cookie string
			for _, ctx := range logins {
				if c := logIn(t, ctx, m, "alice"); ctx == current {
					cookie = c
				}
			}
			if v := valueOf(t, m, cookie, "cart"); v != "book" {
				t.Errorf("cart after the login with the renewed token = %q, want book", v)
			}
		})
	}
}

// pausedTake is a Store whose first AddUserSession with a Merge waits in
// it, after the store took the replaced record and before it adds the
// session, until hold is closed.
type pausedTake struct {
	*redisstore.Store
	hold  chan struct{}
	first *sync.Once
}

func (s pausedTake) AddUserSession(ctx context.Context, n NewSession) ([]string, error) {
	if merge := n.Merge; merge != nil {
		s.first.Do(func() {
			n.Merge = func(b []byte) ([]byte, error) { <-s.hold; return merge(b) }
		})
	}
	return s.Store.AddUserSession(ctx, n)
}

// TestLoginSentTwiceAtOnce has two login requests of one browser (a form
// sent twice) load its anonymous session, on two instances, and the
// second run whole while the first has taken the anonymous record and not
// yet added its session: the second, finding the record gone but not
// logged out, carries the cart over too.
func TestLoginSentTwiceAtOnce(t *testing.T) {
	r := redistest.Start(t)
	hold := make(chan struct{})
	m1 := hookedManager(t, r, Config{}, func(s *redisstore.Store) Store { return pausedTake{s, hold, new(sync.Once)} })
	m2 := taggedManager(t, r, Config{})
	anon := anonymousCart(t, m2)
	first, second := load(m1, anon), load(m2, anon)
	firstCookie := make(chan string, 1)
	go func() {
		h := http.Header{}
		if _, err := Create(first, "alice"); err == nil && m1.Commit(first, h) == nil {
			c, _ := sessionCookie(m1, h)
			firstCookie <- c.Value
			return
		}
		firstCookie <- ""
	}()
	for i := 0; ; i++ { // until the first login has taken the record
		if n, _ := redis.Int(r.Do(t, "EXISTS", "session:"+idOf(tokenOf(t, m2, anon))), nil); n == 0 {
			break
		}
		if i == 2000 {
			t.Fatal("the first login took no record in 2 s")
		}
		time.Sleep(time.Millisecond)
	}
	c2 := logIn(t, second, m2, "alice")
	close(hold)
	for i, cookie := range []string{<-firstCookie, c2} {
		if v := valueOf(t, m2, cookie, "cart"); v != "book" {
			t.Errorf("cart after login %d = %q, want book", i+1, v)
		}
	}
}

// noMergeStore is a UserStore written before NewSession.Merge: it drops
// the field, and writes Record as given.
type noMergeStore struct{ *redisstore.Store }

func (s noMergeStore) AddUserSession(ctx context.Context, n NewSession) ([]string, error) {
	n.Merge = nil
	return s.Store.AddUserSession(ctx, n)
}

// TestLoginWithStoreIgnoringMerge logs in from an anonymous session
// through a store that ignores NewSession.Merge: the login still carries
// over the anonymous values, as the request loaded them, rather than
// losing them all.
func TestLoginWithStoreIgnoringMerge(t *testing.T) {
	r := redistest.Start(t)
	store, err := redisstore.Open(redisstore.Config{Addr: r.Addr(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	m, err := New(noMergeStore{store}, Config{Keys: [][]byte{testKey(7)}, InsecureCookie: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	anon := anonymousCart(t, m)
	h, err := exchange(t, m, anon, func(ctx context.Context) {
		if _, err := Create(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	c, ok := sessionCookie(m, h)
	if !ok {
		t.Fatal("the login set no cookie")
	}
	serve(t, m, c.Value, func(ctx context.Context) {
		if v, _ := Get[string](ctx, "cart"); v != "book" {
			t.Errorf("cart after the login = %q, want book", v)
		}
	})
}
