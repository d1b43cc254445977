package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// hookStore runs after once, the first time UserSessions has read the
// index, to let another request act between a Manager's look at a user's
// sessions and what it does next.
type hookStore struct {
	Store
	after func()
}

func (s *hookStore) UserSessions(ctx context.Context, userID string) ([]string, [][]byte, error) {
	ids, records, err := s.Store.UserSessions(ctx, userID)
	if f := s.after; f != nil {
		s.after = nil
		f()
	}
	return ids, records, err
}

// renew renews the session of cookie in a request of its own and returns
// the new cookie.
func renew(t *testing.T, m *Manager, cookie string) string {
	t.Helper()
	h, err := exchange(t, m, cookie, func(ctx context.Context) {
		if err := Renew(ctx); err != nil {
			t.Fatalf("Renew = %v", err)
		}
	})
	c, ok := sessionCookie(m, h)
	if err != nil || !ok {
		t.Fatalf("renewal: Set-Cookie %v, Commit %v; want a new cookie", c, err)
	}
	return c.Value
}

// TestEndingFollowsRenewal has a renewal get in first, by a request of the
// same browser, before a logout, a revocation and a "sign out the others":
// the session ends (or, for the others, stays) under its new token.
func TestEndingFollowsRenewal(t *testing.T) {
	t.Run("logout", func(t *testing.T) {
		m, _, _ := newTestManager(t, Config{})
		c1, _ := login(t, m, "alice")
		logout := load(m, c1) // loaded before the renewal
		c2 := renew(t, m, c1)
		if err := Destroy(logout); err != nil {
			t.Fatalf("Destroy = %v, want nil", err)
		}
		if u := userOf(t, m, c2); u != "" {
			t.Errorf("renewed token after the logout: UserID = %q, want anonymous", u)
		}
		if list, err := m.List(context.Background(), "alice"); err != nil || len(list) != 0 {
			t.Errorf("List(alice) after the logout = %d sessions, %v; want none", len(list), err)
		}
	})
	t.Run("revoke", func(t *testing.T) {
		m, _, _ := newTestManager(t, Config{})
		c1, id1 := login(t, m, "alice")
		var c2 string
		hs := &hookStore{Store: m.store}
		hs.after = func() { c2 = renew(t, m, c1) } // between Revoke's look and its delete
		m.store = hs
		if err := m.Revoke(context.Background(), "alice", id1); err != nil {
			t.Fatalf("Revoke = %v, want nil", err)
		}
		if c2 == "" {
			t.Fatal("the renewal did not run")
		}
		if u := userOf(t, m, c2); u != "" {
			t.Errorf("renewed token after the revocation: UserID = %q, want anonymous", u)
		}
	})
	t.Run("revoke others", func(t *testing.T) {
		m, _, clk := newTestManager(t, Config{})
		c1, _ := login(t, m, "alice")
		clk.t = clk.t.Add(time.Second)
		other, _ := login(t, m, "alice")
		ctx := load(m, c1) // loaded before the renewal
		c2 := renew(t, m, c1)
		if n, err := m.RevokeOthers(ctx); n != 1 || err != nil {
			t.Errorf("RevokeOthers = %d, %v; want 1, nil", n, err)
		}
		if u := userOf(t, m, c2); u != "alice" {
			t.Errorf("renewed current session after RevokeOthers: UserID = %q, want alice", u)
		}
		if u := userOf(t, m, other); u != "" {
			t.Errorf("other session after RevokeOthers: UserID = %q, want anonymous", u)
		}
	})
}

// TestEndingAfterFailedRenew has a request whose own Renew fails, because
// a parallel request of the same browser renewed the session first, go on
// to log out, log in again (as the same user or another) or sign out the
// others: each follows the session to its new token, as it does without
// the failed Renew, rather than report success and leave it alive.
func TestEndingAfterFailedRenew(t *testing.T) {
	// lost loads cookie, lets a parallel request renew the session, and
	// has the first request's Renew fail; it returns that request's
	// context and the renewed cookie.
	lost := func(t *testing.T, m *Manager, cookie string) (context.Context, string) {
		t.Helper()
		ctx := load(m, cookie)
		renewed := renew(t, m, cookie)
		if err := Renew(ctx); !errors.Is(err, ErrNoSession) {
			t.Fatalf("Renew after a parallel renewal = %v, want ErrNoSession", err)
		}
		return ctx, renewed
	}
	t.Run("logout", func(t *testing.T) {
		m, _, _ := newTestManager(t, Config{})
		c1, _ := login(t, m, "alice")
		ctx, c2 := lost(t, m, c1)
		if err := Destroy(ctx); err != nil {
			t.Fatalf("Destroy = %v, want nil", err)
		}
		h := http.Header{}
		if err := m.Commit(ctx, h); err != nil {
			t.Fatal(err)
		}
		if c, ok := sessionCookie(m, h); !ok || c.MaxAge >= 0 {
			t.Errorf("the logout's Set-Cookie = %v, want the cookie expired", c)
		}
		if u := userOf(t, m, c2); u != "" {
			t.Errorf("renewed token after the logout: UserID = %q, want anonymous", u)
		}
		if list, err := m.List(context.Background(), "alice"); err != nil || len(list) != 0 {
			t.Errorf("List(alice) after the logout = %d sessions, %v; want none", len(list), err)
		}
	})
	for _, user := range []string{"alice", "bob"} {
		t.Run("login as "+user, func(t *testing.T) {
			m, _, clk := newTestManager(t, Config{})
			c1, _ := login(t, m, "alice")
			ctx, c2 := lost(t, m, c1)
			clk.t = clk.t.Add(time.Second)
			info, err := Create(ctx, user)
			if err != nil {
				t.Fatalf("Create = %v", err)
			}
			if err := m.Commit(ctx, http.Header{}); err != nil {
				t.Fatal(err)
			}
			if u := userOf(t, m, c2); u != "" {
				t.Errorf("alice's renewed token after the login as %s: UserID = %q, want anonymous", user, u)
			}
			if list, err := m.List(context.Background(), "alice"); err != nil || len(list) != 0 && (user != "alice" || len(list) != 1 || list[0].ID != info.ID) {
				t.Errorf("List(alice) after the login as %s = %v, %v; want only the new session of a re-login", user, list, err)
			}
		})
	}
	t.Run("revoke others", func(t *testing.T) {
		m, _, clk := newTestManager(t, Config{})
		c1, _ := login(t, m, "alice")
		clk.t = clk.t.Add(time.Second)
		other, _ := login(t, m, "alice")
		ctx, c2 := lost(t, m, c1)
		if n, err := m.RevokeOthers(ctx); n != 1 || err != nil {
			t.Errorf("RevokeOthers = %d, %v; want 1, nil", n, err)
		}
		if u := userOf(t, m, c2); u != "alice" {
			t.Errorf("renewed current session after RevokeOthers: UserID = %q, want alice", u)
		}
		if u := userOf(t, m, other); u != "" {
			t.Errorf("other session after RevokeOthers: UserID = %q, want anonymous", u)
		}
	})
	t.Run("anonymous, then login", func(t *testing.T) {
		m, _, _ := newTestManager(t, Config{})
		a1 := serve(t, m, "", func(ctx context.Context) {
			if err := Put(ctx, "cart", "3 books"); err != nil {
				t.Fatalf("Put = %v", err)
			}
		})
		ctx, _ := lost(t, m, a1)
		if _, err := Create(ctx, "alice"); err != nil {
			t.Fatalf("Create = %v", err)
		}
		h := http.Header{}
		if err := m.Commit(ctx, h); err != nil {
			t.Fatal(err)
		}
		c, ok := sessionCookie(m, h)
		if !ok {
			t.Fatal("no cookie after the login")
		}
		serve(t, m, c.Value, func(ctx context.Context) {
			if v, _ := Get[string](ctx, "cart"); v != "3 books" {
				t.Errorf("cart after the login = %q, want the anonymous session's", v)
			}
		})
	})
}

// TestDeadTokenRestart checks what a request with a token that leads to no
// session may do: no anonymous session of its own (its cookie could
// overwrite a newer login), until Destroy drops the token; a value put after
// a logout keeps the logout's Cache-Control but replaces Clear-Site-Data.
func TestDeadTokenRestart(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	c1, id1 := login(t, m, "alice")
	if _, err := m.store.RemoveUserSession(context.Background(), "alice", id1); err != nil {
		t.Fatal(err)
	}
	h, err := exchange(t, m, c1, func(ctx context.Context) {
		if err := Put(ctx, "flash", "hi"); !errors.Is(err, ErrNoSession) {
			t.Errorf("Put with a dead token = %v, want ErrNoSession", err)
		}
		if err := Destroy(ctx); err != nil {
			t.Fatalf("Destroy = %v", err)
		}
		if err := Put(ctx, "flash", "signed out"); err != nil {
			t.Errorf("Put after Destroy = %v, want nil", err)
		}
	})
	c, ok := sessionCookie(m, h)
	if err != nil || !ok || c.Value == "" {
		t.Fatalf("Set-Cookie %v, Commit %v; want a new anonymous session", c, err)
	}
	if got := h.Get("Clear-Site-Data"); got != "" {
		t.Errorf("Clear-Site-Data = %q, want none: it would drop the new cookie", got)
	}
	if got := h.Values("Cache-Control"); !slices.Contains(got, "no-store") {
		t.Errorf("Cache-Control = %q, want no-store after a logout", got)
	}
	serve(t, m, c.Value, func(ctx context.Context) {
		if v, _ := Get[string](ctx, "flash"); v != "signed out" {
			t.Errorf("flash = %q, want %q", v, "signed out")
		}
	})
}

// TestReloginFollowsRenewal logs a browser in again while a parallel
// request of the same browser renews the session the login replaces: the
// renewed session ends too, so the browser has one session, not two.
func TestReloginFollowsRenewal(t *testing.T) {
	m, _, clk := newTestManager(t, Config{})
	c1, _ := login(t, m, "alice")
	relogin := load(m, c1) // loaded before the renewal
	c2 := renew(t, m, c1)
	clk.t = clk.t.Add(time.Second)
	info, err := Create(relogin, "alice")
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	if err := m.Commit(relogin, http.Header{}); err != nil {
		t.Fatal(err)
	}
	if u := userOf(t, m, c2); u != "" {
		t.Errorf("renewed token after the re-login: UserID = %q, want anonymous", u)
	}
	list, err := m.List(context.Background(), "alice")
	if err != nil || len(list) != 1 || list[0].ID != info.ID {
		t.Errorf("List(alice) after the re-login = %v, %v; want only the new session", list, err)
	}
}

// TestLateRenewalAfterRelogin has a request renew the session and answer
// late, after a parallel re-login of the same browser, which followed the
// renewal and ended the renewed session: the renewing request's answer
// must not set its token, which leads nowhere, over the login's cookie,
// which would sign the browser out.
func TestLateRenewalAfterRelogin(t *testing.T) {
	for _, tc := range []struct {
		name string
		put  bool // the renewing request also puts a value after its Renew
	}{{"renew alone", false}, {"renew and put", true}} {
		t.Run(tc.name, func(t *testing.T) {
			m, _, clk := newTestManager(t, Config{})
			c1, _ := login(t, m, "alice")
			relogin, renewing := load(m, c1), load(m, c1)
			if err := Renew(renewing); err != nil {
				t.Fatalf("Renew = %v", err)
			}
			if tc.put {
				if err := Put(renewing, "theme", "dark"); err != nil {
					t.Fatalf("Put = %v", err)
				}
			}
			clk.t = clk.t.Add(time.Second)
			if _, err := Create(relogin, "alice"); err != nil {
				t.Fatalf("Create = %v", err)
			}
			commitLoginThenRenewal(t, m, relogin, renewing)
		})
	}
	t.Run("anonymous", func(t *testing.T) {
		// The login takes an anonymous session that the renewal moved:
		// it ends it where it went, and the renewing request's answer
		// sets no cookie either.
		m, _, clk := newTestManager(t, Config{})
		h, err := exchange(t, m, "", func(ctx context.Context) {
			if err := Put(ctx, "cart", "3 books"); err != nil {
				t.Fatalf("Put = %v", err)
			}
		})
		a1, ok := sessionCookie(m, h)
		if err != nil || !ok {
			t.Fatalf("anonymous session: cookie %v, Commit %v", a1, err)
		}
		relogin, renewing := load(m, a1.Value), load(m, a1.Value)
		if err := Renew(renewing); err != nil {
			t.Fatalf("Renew = %v", err)
		}
		clk.t = clk.t.Add(time.Second)
		if _, err := Create(relogin, "alice"); err != nil {
			t.Fatalf("Create = %v", err)
		}
		commitLoginThenRenewal(t, m, relogin, renewing)
	})
	t.Run("no re-login", func(t *testing.T) {
		m, _, _ := newTestManager(t, Config{})
		c1, _ := login(t, m, "alice")
		if c2 := renew(t, m, c1); userOf(t, m, c2) != "alice" {
			t.Error("a renewal that nothing raced set a cookie that is not alice's")
		}
	})
}

// commitLoginThenRenewal answers the login's request, whose cookie must
// hold alice's new session, then the renewing request's, which must set no
// cookie: the login ended the renewed session, so its token leads nowhere.
func commitLoginThenRenewal(t *testing.T, m *Manager, login, renewing context.Context) {
	t.Helper()
	h := http.Header{}
	if err := m.Commit(login, h); err != nil {
		t.Fatal(err)
	}
	if c, ok := sessionCookie(m, h); !ok || userOf(t, m, c.Value) != "alice" {
		t.Fatalf("login: cookie %v, want alice's new session", c)
	}
	h = http.Header{}
	if err := m.Commit(renewing, h); err != nil {
		t.Fatalf("the renewing request's Commit = %v, want nil", err)
	}
	if c, ok := sessionCookie(m, h); ok {
		t.Errorf("the renewing request answered after the login with Set-Cookie %v, want none: its token leads nowhere", c)
	}
}

// TestReloginUnderLimitFollowsRenewal logs a laptop in again, with a limit
// of two sessions, while a parallel request renews the laptop's session:
// the renewed session is the one replaced, so the phone stays logged in.
func TestReloginUnderLimitFollowsRenewal(t *testing.T) {
	m, _, clk := newTestManager(t, Config{MaxSessionsPerUser: 2})
	phone, _ := login(t, m, "alice")
	clk.t = clk.t.Add(time.Second)
	laptop, _ := login(t, m, "alice")
	relogin := load(m, laptop) // loaded before the renewal
	renewed := renew(t, m, laptop)
	clk.t = clk.t.Add(time.Second)
	if _, err := Create(relogin, "alice"); err != nil {
		t.Fatalf("Create = %v", err)
	}
	if u := userOf(t, m, phone); u != "alice" {
		t.Errorf("phone after the laptop's re-login: UserID = %q, want alice", u)
	}
	if u := userOf(t, m, renewed); u != "" {
		t.Errorf("laptop's renewed token after its re-login: UserID = %q, want anonymous", u)
	}
}

// TestRevokeOthersFromEndedSession has a session revoked while its own
// "sign out the others" request runs: that request speaks for nobody any
// more and ends nothing.
func TestRevokeOthersFromEndedSession(t *testing.T) {
	m, _, clk := newTestManager(t, Config{})
	thief, thiefID := login(t, m, "alice")
	clk.t = clk.t.Add(time.Second)
	phone, _ := login(t, m, "alice")
	ctx := load(m, thief)
	if err := m.Revoke(context.Background(), "alice", thiefID); err != nil {
		t.Fatal(err)
	}
	if n, err := m.RevokeOthers(ctx); !errors.Is(err, ErrNoSession) || n != 0 {
		t.Errorf("RevokeOthers from a revoked session = %d, %v; want 0, ErrNoSession", n, err)
	}
	if u := userOf(t, m, phone); u != "alice" {
		t.Errorf("phone after the revoked session's RevokeOthers: UserID = %q, want alice", u)
	}
}

// TestRevokeOthersRacingRenewal has a renewal land while "sign out the
// others" runs, after it found the current session and before it deletes
// the others: the current session stays, under its new token.
func TestRevokeOthersRacingRenewal(t *testing.T) {
	m, _, clk := newTestManager(t, Config{})
	phone, _ := login(t, m, "alice")
	clk.t = clk.t.Add(time.Second)
	laptop, _ := login(t, m, "alice")
	ctx := load(m, laptop)
	var renewed string
	m.store = &hookStore{Store: m.store, after: func() { renewed = renew(t, m, laptop) }}
	if n, err := m.RevokeOthers(ctx); n != 1 || err != nil {
		t.Errorf("RevokeOthers = %d, %v; want 1, nil", n, err)
	}
	if renewed == "" {
		t.Fatal("the renewal did not run")
	}
	if u := userOf(t, m, renewed); u != "alice" {
		t.Errorf("the caller's renewed token after its own RevokeOthers: UserID = %q, want alice", u)
	}
	if u := userOf(t, m, phone); u != "" {
		t.Errorf("phone after RevokeOthers: UserID = %q, want anonymous", u)
	}
}

// TestReloginFollowsRenewals has the session a re-login replaces renewed
// before the login and again while the login looks for it: the login ends
// it under its last token, and, under a limit, does not count it.
func TestReloginFollowsRenewals(t *testing.T) {
	for _, limit := range []int{0, 2} {
		m, _, clk := newTestManager(t, Config{MaxSessionsPerUser: limit})
		phone, _ := login(t, m, "alice")
		clk.t = clk.t.Add(time.Second)
		laptop, _ := login(t, m, "alice")
		relogin := load(m, laptop) // loaded before the renewals
		renewed := renew(t, m, laptop)
		var again string
		m.store = &hookStore{Store: m.store, after: func() { again = renew(t, m, renewed) }}
		clk.t = clk.t.Add(time.Second)
		info, err := Create(relogin, "alice")
		if err != nil {
			t.Fatalf("limit %d: Create = %v", limit, err)
		}
		if again == "" {
			t.Fatalf("limit %d: the second renewal did not run", limit)
		}
		for name, c := range map[string]string{"renewed": renewed, "renewed again": again} {
			if u := userOf(t, m, c); u != "" {
				t.Errorf("limit %d: the replaced session's %s token after the re-login: UserID = %q, want anonymous", limit, name, u)
			}
		}
		if u := userOf(t, m, phone); u != "alice" {
			t.Errorf("limit %d: phone after the laptop's re-login: UserID = %q, want alice", limit, u)
		}
		list, err := m.List(context.Background(), "alice")
		if err != nil || len(list) != 2 || list[1].ID != info.ID {
			t.Errorf("limit %d: List(alice) after the re-login = %v, %v; want the phone's and the new session", limit, list, err)
		}
	}
}

// TestFollowKeepsSessionsApart logs one user in twice in the same
// millisecond (the test's clock stands still), so that the two sessions
// share their creation time and deadline, then ends one of them while a
// request of it runs: what that request does next never touches the other.
func TestFollowKeepsSessionsApart(t *testing.T) {
	t.Run("logout", func(t *testing.T) {
		m, _, _ := newTestManager(t, Config{})
		x, idX := login(t, m, "alice")
		y, _ := login(t, m, "alice")
		ctx := load(m, x)
		if err := m.Revoke(context.Background(), "alice", idX); err != nil {
			t.Fatal(err)
		}
		if err := Destroy(ctx); err != nil {
			t.Fatalf("late Destroy = %v, want nil", err)
		}
		if u := userOf(t, m, y); u != "alice" {
			t.Errorf("the other session after a late logout of the first: UserID = %q, want alice", u)
		}
	})
	t.Run("revoke others", func(t *testing.T) {
		m, _, _ := newTestManager(t, Config{})
		x, idX := login(t, m, "alice")
		y, _ := login(t, m, "alice")
		z, _ := login(t, m, "alice")
		ctx := load(m, x)
		if err := m.Revoke(context.Background(), "alice", idX); err != nil {
			t.Fatal(err)
		}
		if n, err := m.RevokeOthers(ctx); !errors.Is(err, ErrNoSession) || n != 0 {
			t.Errorf("RevokeOthers from a revoked session = %d, %v; want 0, ErrNoSession", n, err)
		}
		for name, c := range map[string]string{"second": y, "third": z} {
			if u := userOf(t, m, c); u != "alice" {
				t.Errorf("the %s session after the revoked one's RevokeOthers: UserID = %q, want alice", name, u)
			}
		}
	})
}

// TestRenewKeepsOrigin checks what tells sessions apart across renewals: a
// login's record has no "o"; a renewed one names the id the session was
// created under, through every renewal.
func TestRenewKeepsOrigin(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	c, first := login(t, m, "alice")
	record := func() string {
		t.Helper()
		list, err := m.List(context.Background(), "alice")
		if err != nil || len(list) != 1 {
			t.Fatalf("List(alice) = %v, %v; want one session", list, err)
		}
		b, found, err := m.store.Load(context.Background(), list[0].ID, 0)
		if err != nil || !found {
			t.Fatalf("Load(%s) = %v, %v", list[0].ID, found, err)
		}
		return string(b)
	}
	if r := record(); strings.Contains(r, `"o":`) {
		t.Errorf("a login's record = %s, want no \"o\"", r)
	}
	for range 2 {
		c = renew(t, m, c)
		if r, want := record(), `"o":"`+first+`"`; !strings.Contains(r, want) {
			t.Errorf("renewed record = %s, want %s", r, want)
		}
	}
}

// TestDropDeadToken checks that Destroy in a request whose token leads to
// no session expires the cookie without Clear-Site-Data, which would also
// wipe a cookie a parallel login just set.
func TestDropDeadToken(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	c1, id1 := login(t, m, "alice")
	if _, err := m.store.RemoveUserSession(context.Background(), "alice", id1); err != nil {
		t.Fatal(err)
	}
	h, err := exchange(t, m, c1, func(ctx context.Context) {
		if err := Destroy(ctx); err != nil {
			t.Errorf("Destroy = %v", err)
		}
	})
	if c, ok := sessionCookie(m, h); err != nil || !ok || c.MaxAge >= 0 {
		t.Errorf("Set-Cookie %v, Commit %v; want an expired cookie", c, err)
	}
	if got := h.Get("Clear-Site-Data"); got != "" {
		t.Errorf("Clear-Site-Data = %q, want none for a token that led nowhere", got)
	}
}

// addFail is a store whose AddUserSession fails, as a Redis that went away
// between a login's two steps would.
type addFail struct{ Store }

func (s addFail) AddUserSession(ctx context.Context, n NewSession) ([]string, error) {
	return nil, errors.New("injected: redis went away")
}

// hookedStore runs before as a renewal or a login reaches the store.
type hookedStore struct {
	Store
	before func()
}

func (s hookedStore) MoveSession(ctx context.Context, mv Move) (bool, error) {
	s.before()
	return s.Store.MoveSession(ctx, mv)
}

func (s hookedStore) AddUserSession(ctx context.Context, n NewSession) ([]string, error) {
	s.before()
	return s.Store.AddUserSession(ctx, n)
}

// proxiedManager returns a Manager on a Store configured by cfg that
// reaches srv through a proxy, and the proxy.
func proxiedManager(t *testing.T, srv *redistest.Server, cfg redisstore.Config) (*Manager, *redistest.Proxy) {
	t.Helper()
	p := srv.Proxy(t)
	cfg.Addr = p.Addr()
	store, err := redisstore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	m, err := New(store, Config{Keys: [][]byte{testKey(7)}, InsecureCookie: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return m, p
}

// TestFinishingContext: a renewal or a re-login whose request deadline
// passes while its transaction's reply is on its way (a timeout
// middleware's deadline; the proxy delays every chunk by d) reads that
// reply, which the store's Timeout bounds, instead of abandoning it: Redis
// ran the transaction all the same, and the response carries the new
// token, which works, while the old one is dead. A request that ends before
// the call sends its transaction (a client gone as the call begins, a
// context ended before it) changes nothing: the old token still works.
func TestFinishingContext(t *testing.T) {
	const d = 200 * time.Millisecond
	m, p := proxiedManager(t, redistest.Start(t), redisstore.Config{Timeout: 10 * d})
	inner := m.store
	for _, tc := range []struct {
		name string
		// within: the deadline, from the call's start, that falls between
		// the sending of the transaction and its reply: the renewal's is
		// its second round trip (WATCH and GET first), the re-login's its
		// first.
		within time.Duration
		fn     func(ctx context.Context) error
	}{
		{"renewal", 3 * d, func(ctx context.Context) error { return Renew(ctx) }},
		{"re-login", d, func(ctx context.Context) error { _, err := Create(ctx, "alice"); return err }},
	} {
		t.Run(tc.name+", deadline passing", func(t *testing.T) {
			old, _ := login(t, m, "alice")
			var fnErr error
			h, err := exchange(t, m, old, func(ctx context.Context) {
				p.Slow(d)
				defer p.Heal()
				ctx, cancel := context.WithTimeout(ctx, tc.within)
				defer cancel()
				fnErr = tc.fn(ctx)
			})
			c, ok := sessionCookie(m, h)
			if fnErr != nil || err != nil || !ok || c.Value == "" {
				t.Fatalf("with the deadline passing as the reply came: %v, Commit %v, cookie %v; want nil and a new cookie", fnErr, err, c)
			}
			if u := userOf(t, m, c.Value); u != "alice" {
				t.Errorf("new token: user %q, want alice", u)
			}
			if u := userOf(t, m, old); u != "" {
				t.Errorf("old token: user %q, want none", u)
			}
		})
		for _, ends := range []struct {
			name   string
			before bool // the context ends before the call, else as it reaches the store
		}{{"client gone as the call begins", false}, {"ended before", true}} {
			t.Run(tc.name+", "+ends.name, func(t *testing.T) {
				old, _ := login(t, m, "alice")
				h, err := exchange(t, m, old, func(ctx context.Context) {
					ctx, cancel := context.WithCancel(ctx)
					defer cancel()
					if ends.before {
						cancel()
					} else {
						m.store = hookedStore{inner, cancel}
						defer func() { m.store = inner }()
					}
					if err := tc.fn(ctx); !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, context.Canceled) {
						t.Errorf("= %v, want ErrStoreUnavailable and context.Canceled", err)
					}
				})
				if c, ok := sessionCookie(m, h); err != nil || ok {
					t.Errorf("Set-Cookie %v, Commit %v; want no cookie", c, err)
				}
				if u := userOf(t, m, old); u != "alice" {
					t.Errorf("old token: user %q, want alice: nothing changed", u)
				}
			})
		}
	}
}

// TestFinishingTwoSteps: a login whose change takes two steps finishes
// though the request's deadline passes during the first one's reply (the
// proxy delays every chunk by d): from an anonymous session, whose record
// the first step takes (its values carried over), and a re-login under
// WaitReplicas, whose second step waits for the replica to confirm the
// replaced session's end. Stopping between the two would lose the
// anonymous session's values with the login, or log the user out.
func TestFinishingTwoSteps(t *testing.T) {
	const d = 200 * time.Millisecond
	// relogin logs alice in on cookie's browser, with a deadline of d
	// once every chunk is delayed by d, and returns the new cookie.
	relogin := func(t *testing.T, m *Manager, p *redistest.Proxy, cookie string) string {
		var createErr error
		h, err := exchange(t, m, cookie, func(ctx context.Context) {
			p.Slow(d)
			defer p.Heal()
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			_, createErr = Create(ctx, "alice")
		})
		c, ok := sessionCookie(m, h)
		if createErr != nil || err != nil || !ok || c.Value == "" {
			t.Fatalf("login with the deadline passing in its first step: %v, Commit %v, cookie %v; want nil and a cookie", createErr, err, c)
		}
		return c.Value
	}
	t.Run("from an anonymous session", func(t *testing.T) {
		m, p := proxiedManager(t, redistest.Start(t), redisstore.Config{Timeout: 10 * d})
		anon := serve(t, m, "", func(ctx context.Context) {
			if err := Put(ctx, "cart", "3 books"); err != nil {
				t.Fatal(err)
			}
		})
		c := relogin(t, m, p, anon)
		serve(t, m, c, func(ctx context.Context) {
			if u, _ := UserID(ctx); u != "alice" {
				t.Errorf("new token: user %q, want alice", u)
			}
			if v, ok := Get[string](ctx, "cart"); !ok || v != "3 books" {
				t.Errorf("cart after the login = %q, %v; want the anonymous session's", v, ok)
			}
		})
	})
	t.Run("re-login under WaitReplicas", func(t *testing.T) {
		master := redistest.Start(t)
		redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if n, _ := redis.Int(master.Do(t, "WAIT", 1, 100), nil); n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the replica did not sync within 10s")
			}
		}
		m, p := proxiedManager(t, master, redisstore.Config{Timeout: 10 * d, WaitReplicas: 1})
		old, _ := login(t, m, "alice")
		c := relogin(t, m, p, old)
		if u := userOf(t, m, c); u != "alice" {
			t.Errorf("new token: user %q, want alice", u)
		}
		if u := userOf(t, m, old); u != "" {
			t.Errorf("old token: user %q, want none", u)
		}
	})
}

// TestFailedReloginEndsRequestSession has a re-login fail after it ended
// the session the request came with: the request knows no session any
// more, and the old token is dead.
func TestFailedReloginEndsRequestSession(t *testing.T) {
	var events []string
	var mu sync.Mutex
	m, _, _ := newTestManager(t, Config{OnEvent: func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, string(e.Kind)+":"+e.UserID)
	}})
	c, _ := login(t, m, "alice")
	mu.Lock()
	events = nil
	mu.Unlock()
	inner := m.store
	m.store = addFail{inner}
	h, err := exchange(t, m, c, func(ctx context.Context) {
		if _, err := Create(ctx, "bob"); !errors.Is(err, ErrStoreUnavailable) {
			t.Errorf("Create(bob) = %v, want ErrStoreUnavailable", err)
		}
		if u, ok := UserID(ctx); ok {
			t.Errorf("after the failed re-login, UserID = %q, true; want no user: the request's session ended", u)
		}
	})
	m.store = inner
	if err != nil {
		t.Errorf("Commit = %v, want nil", err)
	}
	if sc, ok := sessionCookie(m, h); ok {
		t.Errorf("Set-Cookie %v after a failed re-login, want none", sc)
	}
	mu.Lock()
	if want := []string{"destroyed:alice"}; !slices.Equal(events, want) {
		t.Errorf("events = %q, want %q", events, want)
	}
	mu.Unlock()
	if u := userOf(t, m, c); u != "" {
		t.Errorf("the old cookie after the failed re-login: UserID = %q, want anonymous", u)
	}
}

// renewing renews the session of start on m in the background, request
// after request, each with the last token, until the session ends or stop
// is called. stop lets a renewal in flight finish, and returns the last
// token.
func renewing(t *testing.T, m *Manager, start string) (stop func() string) {
	quit, done := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	cur := start
	go func() {
		defer close(done)
		c := start
		for {
			select {
			case <-quit:
				return
			default:
			}
			h, err := exchange(t, m, c, func(ctx context.Context) { _ = Renew(ctx) })
			if err != nil {
				continue
			}
			nc, ok := sessionCookie(m, h)
			if !ok || nc.Value == "" {
				return // ended
			}
			c = nc.Value
			mu.Lock()
			cur = c
			mu.Unlock()
		}
	}()
	return func() string {
		time.Sleep(2 * time.Millisecond)
		close(quit)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return cur
	}
}

// TestRevokeRacesRenewalChain has an administrator revoke a session (by
// the id List shows) while the session's browser renews it back to back
// on another instance: a Revoke that returns nil has ended it, under
// whatever token it had reached.
func TestRevokeRacesRenewalChain(t *testing.T) {
	a, r, _ := newTestManager(t, Config{})
	b := taggedManager(t, r, Config{})
	for round := range 300 {
		user := fmt.Sprintf("v%d", round)
		stolen, _ := login(t, a, user)
		stop := renewing(t, b, stolen)
		time.Sleep(time.Millisecond)
		var err error
		for range 50 {
			list, lerr := a.List(context.Background(), user)
			if lerr != nil || len(list) == 0 {
				continue
			}
			if err = a.Revoke(context.Background(), user, list[0].ID); !errors.Is(err, ErrNotFound) {
				break
			}
		}
		if last := stop(); err == nil {
			if u := userOf(t, a, last); u != "" {
				t.Errorf("round %d: Revoke returned nil, but the renewed session is alive (user %q)", round, u)
			}
		}
		a.RevokeAll(context.Background(), user)
	}
}

// chainKinds are the sessions the renewal-chain races run on: a user's,
// which a logout or a change follows through the user's index, and an
// anonymous one, followed through the pointers its renewals leave. start
// makes one for round and returns its cookie; alive reports whether a
// cookie leads to it; end ends it after the round.
var chainKinds = []struct {
	name  string
	start func(t *testing.T, m *Manager, round int) string
	alive func(t *testing.T, m *Manager, cookie string) bool
	end   func(m *Manager, round int)
}{
	{
		name: "user",
		start: func(t *testing.T, m *Manager, round int) string {
			c, _ := login(t, m, fmt.Sprintf("w%d", round))
			return c
		},
		alive: func(t *testing.T, m *Manager, cookie string) bool { return userOf(t, m, cookie) != "" },
		end:   func(m *Manager, round int) { m.RevokeAll(context.Background(), fmt.Sprintf("w%d", round)) },
	},
	{
		name: "anonymous",
		start: func(t *testing.T, m *Manager, round int) string {
			return serve(t, m, "", func(ctx context.Context) {
				if err := Put(ctx, "pending", "2fa"); err != nil {
					t.Fatalf("Put = %v", err)
				}
			})
		},
		alive: func(t *testing.T, m *Manager, cookie string) bool {
			var v string
			serve(t, m, cookie, func(ctx context.Context) { v, _ = Get[string](ctx, "pending") })
			return v != ""
		},
		end: func(*Manager, int) {}, // each round has a session of its own
	},
}

// TestLogoutRacesRenewalChain has a logout, loaded before, run while the
// same browser renews its session back to back on another instance: a
// Destroy that returns nil has ended it, under whatever token it reached,
// a user's session and an anonymous one alike.
func TestLogoutRacesRenewalChain(t *testing.T) {
	for _, kind := range chainKinds {
		t.Run(kind.name, func(t *testing.T) {
			a, r, _ := newTestManager(t, Config{})
			b := taggedManager(t, r, Config{})
			for round := range 200 {
				c0 := kind.start(t, a, round)
				logout := load(a, c0)
				stop := renewing(t, b, c0)
				time.Sleep(time.Duration(round%5) * 300 * time.Microsecond)
				err := Destroy(logout)
				if last := stop(); err == nil && kind.alive(t, a, last) {
					t.Errorf("round %d: Destroy returned nil, renewed session alive", round)
				}
				kind.end(a, round)
			}
		})
	}
}

// TestPutFollowsRenewal has a request load a signed-in session, other
// requests renew it (twice, so that the session is followed over two
// moves), and the first then put a value: its Commit succeeds, sets no
// cookie, and the value is in the session under its newest token, which
// stays the only one that works: a change dropped while Commit returned
// nil would have the handler answer 200 for a value that is gone. A
// change to a session logged out meanwhile is still dropped, without an
// error and without bringing the session back. A change to an anonymous
// session renewed meanwhile through a store that keeps no pointer is lost,
// and Commit says so (ErrContention: send it again), as for any anonymous
// session that ended under the request, which a login on the same browser
// may have taken, values and all.
func TestPutFollowsRenewal(t *testing.T) {
	commitWant := func(t *testing.T, m *Manager, ctx context.Context, want error) {
		t.Helper()
		if err := Put(ctx, "cart", "book"); err != nil {
			t.Fatalf("Put = %v", err)
		}
		h := http.Header{}
		if err := m.Commit(ctx, h); !errors.Is(err, want) {
			t.Errorf("Commit = %v, want %v", err, want)
		}
		if _, ok := sessionCookie(m, h); ok {
			t.Error("Commit set the cookie, want it left alone")
		}
	}
	commit := func(t *testing.T, m *Manager, ctx context.Context) {
		t.Helper()
		commitWant(t, m, ctx, nil)
	}
	t.Run("renewed", func(t *testing.T) {
		m, _, _ := newTestManager(t, Config{})
		c1, _ := login(t, m, "alice")
		ctx := load(m, c1)
		c3 := renew(t, m, renew(t, m, c1))
		commit(t, m, ctx)
		if got := valueOf(t, m, c3, "cart"); got != "book" {
			t.Errorf("the renewed session's cart = %q, want book", got)
		}
		if u := userOf(t, m, c1); u != "" {
			t.Errorf("the token of before the renewals: UserID = %q, want anonymous", u)
		}
		if list, err := m.List(context.Background(), "alice"); err != nil || len(list) != 1 {
			t.Errorf("List(alice) = %d sessions, %v; want 1", len(list), err)
		}
	})
	t.Run("logged out", func(t *testing.T) {
		m, r, _ := newTestManager(t, Config{})
		c1, _ := login(t, m, "alice")
		ctx := load(m, c1)
		serve(t, m, c1, func(ctx context.Context) {
			if err := Destroy(ctx); err != nil {
				t.Fatalf("Destroy = %v", err)
			}
		})
		commit(t, m, ctx)
		if keys := allKeys(t, r); len(keys) != 0 {
			t.Errorf("keys after a change to a logged-out session: %q, want none", keys)
		}
	})
	t.Run("anonymous renewed", func(t *testing.T) {
		m, _, _ := newTestManager(t, Config{})
		a1 := serve(t, m, "", func(ctx context.Context) {
			if err := Put(ctx, "theme", "dark"); err != nil {
				t.Fatalf("Put = %v", err)
			}
		})
		ctx := load(m, a1)
		a3 := renew(t, m, renew(t, m, a1))
		commit(t, m, ctx)
		if got := valueOf(t, m, a3, "cart"); got != "book" {
			t.Errorf("the renewed anonymous session's cart = %q, want book", got)
		}
	})
	t.Run("anonymous renewed, store without MovedTo", func(t *testing.T) {
		m, _, _ := newTestManager(t, Config{})
		m.store = struct{ Store }{m.store} // hides MovedTo
		a1 := serve(t, m, "", func(ctx context.Context) {
			if err := Put(ctx, "theme", "dark"); err != nil {
				t.Fatalf("Put = %v", err)
			}
		})
		ctx := load(m, a1)
		a2 := renew(t, m, a1)
		commitWant(t, m, ctx, ErrContention)
		if got := valueOf(t, m, a2, "cart"); got != "" {
			t.Errorf("the renewed anonymous session's cart = %q, want none (not followed)", got)
		}
	})
}

// TestAnonymousChangeDuringLogin has an anonymous browser add to its cart
// while, in another tab, it logs in, which takes the anonymous session and
// its values into the signed-in one: the change, which reached neither,
// must not be reported saved. Commit returns ErrContention (503, send it
// again), and sent again with the login's cookie the change lands. So too
// when the adding request renewed after its change and lost to another
// tab's renewal, whose session the login then took: the change follows
// that renewal, and is lost with it all the same, so Commit must not
// answer nil then either.
func TestAnonymousChangeDuringLogin(t *testing.T) {
	for _, lostRenew := range []bool{false, true} {
		t.Run(fmt.Sprintf("lost renew %v", lostRenew), func(t *testing.T) {
			m, _, _ := newTestManager(t, Config{})
			anon := serve(t, m, "", func(ctx context.Context) {
				if err := Put(ctx, "seed", "1"); err != nil {
					t.Fatal(err)
				}
			})
			adding := load(m, anon)
			if err := Put(adding, "cart", "book"); err != nil {
				t.Fatal(err)
			}
			loginWith := anon
			if lostRenew {
				loginWith = renew(t, m, anon)
				if err := Renew(adding); !errors.Is(err, ErrNoSession) {
					t.Fatalf("Renew after another tab's = %v, want ErrNoSession", err)
				}
			}
			h, err := exchange(t, m, loginWith, func(ctx context.Context) {
				if _, err := Create(ctx, "alice"); err != nil {
					t.Fatal(err)
				}
			})
			signedIn, ok := sessionCookie(m, h)
			if err != nil || !ok {
				t.Fatalf("login: Commit %v, cookie %v", err, signedIn)
			}
			if err := m.Commit(adding, http.Header{}); !errors.Is(err, ErrContention) {
				t.Fatalf("Commit of a change to the anonymous session a login took = %v, want ErrContention", err)
			}
			serve(t, m, signedIn.Value, func(ctx context.Context) {
				if v, _ := Get[string](ctx, "seed"); v != "1" {
					t.Errorf("the login carried seed = %q, want 1", v)
				}
				if err := Put(ctx, "cart", "book"); err != nil {
					t.Fatal(err)
				}
			})
			serve(t, m, signedIn.Value, func(ctx context.Context) {
				if v, _ := Get[string](ctx, "cart"); v != "book" {
					t.Errorf("the change sent again: cart = %q, want book", v)
				}
			})
		})
	}
}

// TestAnonymousPutsRaceLogin races, 200 rounds with jitter, four requests
// of an anonymous browser that each put a value, on two instances, against
// a login from that anonymous session on one of them: every put whose
// Commit returned nil is in the signed-in session (the login carried it
// over), and every other Commit returned ErrContention, never nil for a
// value that was lost.
func TestAnonymousPutsRaceLogin(t *testing.T) {
	r := redistest.Start(t)
	instances := []*Manager{taggedManager(t, r, Config{}), taggedManager(t, r, Config{})}
	const puts = 4
	saved, refused := 0, 0
	for round := range 200 {
		anon := serve(t, instances[0], "", func(ctx context.Context) {
			if err := Put(ctx, "seed", "1"); err != nil {
				t.Fatal(err)
			}
		})
		var committed [puts]bool
		var errs [puts]error
		var signedIn string
		var wg sync.WaitGroup
		for i := range puts {
			m := instances[i%2]
			wg.Go(func() {
				time.Sleep(time.Duration(rand.IntN(600)) * time.Microsecond)
				ctx := load(m, anon)
				if Put(ctx, fmt.Sprint("k", i), "v") != nil {
					return // loaded after the login: the token leads nowhere
				}
				time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
				errs[i], committed[i] = m.Commit(ctx, http.Header{}), true
			})
		}
		wg.Go(func() {
			time.Sleep(time.Duration(rand.IntN(600)) * time.Microsecond)
			ctx := load(instances[1], anon)
			if _, err := Create(ctx, "alice"); err != nil {
				t.Errorf("round %d: Create = %v", round, err)
				return
			}
			h := http.Header{}
			if err := instances[1].Commit(ctx, h); err != nil {
				t.Errorf("round %d: the login's Commit = %v", round, err)
				return
			}
			if c, ok := sessionCookie(instances[1], h); ok {
				signedIn = c.Value
			}
		})
		wg.Wait()
		if signedIn == "" {
			t.Fatalf("round %d: the login set no cookie", round)
		}
		serve(t, instances[0], signedIn, func(ctx context.Context) {
			for i := range puts {
				_, kept := Get[string](ctx, fmt.Sprint("k", i))
				switch {
				case !committed[i]:
				case errs[i] == nil && !kept:
					t.Errorf("round %d: put %d committed without error, and the signed-in session lacks it", round, i)
				case errs[i] == nil:
					saved++
				case errors.Is(errs[i], ErrContention):
					refused++
				default:
					t.Errorf("round %d: put %d: Commit = %v, want nil or ErrContention", round, i, errs[i])
				}
			}
		})
	}
	t.Logf("puts carried over by the login: %d; answered ErrContention: %d", saved, refused)
	if saved == 0 || refused == 0 {
		t.Errorf("carried %d, refused %d: the race did not land on both sides", saved, refused)
	}
}

// TestPutBeforeLosingRenew has a request put a value, or pop one, and then
// Renew, after a parallel request renewed the session: the Renew loses
// (ErrNoSession) and the request goes on as anonymous, but what it put
// before, acknowledged with nil, is saved by the commit under the winning
// renewal's token, as it would have been without the Renew; and dropped
// when the session ended instead (Commit then returns ErrContention for an
// anonymous session), or when a handler panics (Abandon). A
// login after the losing Renew carries it into the new session, or not,
// as it would without the Renew.
func TestPutBeforeLosingRenew(t *testing.T) {
	for _, user := range []string{"alice", ""} {
		start := func(t *testing.T, m *Manager) string {
			if user != "" {
				c, _ := login(t, m, user)
				return c
			}
			return serve(t, m, "", func(ctx context.Context) {
				if err := Put(ctx, "flash", "welcome"); err != nil {
					t.Fatalf("Put = %v", err)
				}
			})
		}
		// losing loads c1, puts and pops, and renews after a parallel
		// renewal of c1 (returned): the Renew must lose.
		losing := func(t *testing.T, m *Manager, c1 string) (context.Context, string) {
			ctx := load(m, c1)
			c2 := renew(t, m, c1)
			if err := Put(ctx, "cart", "book"); err != nil {
				t.Fatalf("Put = %v", err)
			}
			if user == "" {
				if _, ok := Pop[string](ctx, "flash"); !ok {
					t.Fatal("Pop(flash) found nothing")
				}
			}
			if err := Renew(ctx); !errors.Is(err, ErrNoSession) {
				t.Fatalf("Renew after a parallel renewal = %v, want ErrNoSession", err)
			}
			return ctx, c2
		}
		values := func(t *testing.T, m *Manager, cookie string) (cart, flash string, who string) {
			t.Helper()
			serve(t, m, cookie, func(ctx context.Context) {
				cart, _ = Get[string](ctx, "cart")
				flash, _ = Get[string](ctx, "flash")
				who, _ = UserID(ctx)
			})
			return cart, flash, who
		}
		name := "user"
		if user == "" {
			name = "anonymous"
		}
		t.Run(name+"/saved under the winning token", func(t *testing.T) {
			m, _, _ := newTestManager(t, Config{})
			ctx, c2 := losing(t, m, start(t, m))
			h := http.Header{}
			if err := m.Commit(ctx, h); err != nil {
				t.Errorf("Commit = %v, want nil", err)
			}
			if _, ok := sessionCookie(m, h); ok {
				t.Error("Commit set the cookie, want it left alone")
			}
			cart, flash, who := values(t, m, c2)
			if cart != "book" || flash != "" || who != user {
				t.Errorf("the renewed session: cart %q, flash %q, user %q; want book, none, %q", cart, flash, who, user)
			}
		})
		t.Run(name+"/abandoned", func(t *testing.T) {
			m, _, _ := newTestManager(t, Config{})
			ctx, c2 := losing(t, m, start(t, m))
			m.Abandon(ctx, http.Header{})
			cart, flash, _ := values(t, m, c2)
			if want := map[bool]string{true: "", false: "welcome"}[user != ""]; cart != "" || flash != want {
				t.Errorf("after Abandon: cart %q, flash %q; want none, %q", cart, flash, want)
			}
		})
		t.Run(name+"/ended meanwhile", func(t *testing.T) {
			m, r, _ := newTestManager(t, Config{})
			ctx, c2 := losing(t, m, start(t, m))
			serve(t, m, c2, func(ctx context.Context) {
				if err := Destroy(ctx); err != nil {
					t.Fatalf("Destroy = %v", err)
				}
			})
			// Dropped, and, for an anonymous session, which a login could
			// have taken with its values, reported (see commit).
			var want error
			if user == "" {
				want = ErrContention
			}
			if err := m.Commit(ctx, http.Header{}); !errors.Is(err, want) {
				t.Errorf("Commit = %v, want %v", err, want)
			}
			for _, k := range allKeys(t, r) {
				if !strings.HasSuffix(k, ":next") && !strings.HasSuffix(k, ":ended") { // the renewal's pointer, which leads nowhere now, and the logout's mark
					t.Errorf("key %q after a change to a logged-out session, want none", k)
				}
			}
		})
		t.Run(name+"/login after", func(t *testing.T) {
			m, _, _ := newTestManager(t, Config{})
			ctx, _ := losing(t, m, start(t, m))
			if _, err := Create(ctx, "alice"); err != nil {
				t.Fatalf("Create = %v", err)
			}
			h := http.Header{}
			if err := m.Commit(ctx, h); err != nil {
				t.Errorf("Commit = %v, want nil", err)
			}
			c3, ok := sessionCookie(m, h)
			if !ok {
				t.Fatal("the login set no cookie")
			}
			// A re-login drops what the request put, with the values of
			// the signed-in session it ends; an anonymous session's go on.
			want := map[bool]string{true: "", false: "book"}[user != ""]
			cart, _, who := values(t, m, c3.Value)
			if cart != want || who != "alice" {
				t.Errorf("the login's session: cart %q, user %q; want %q, alice", cart, who, want)
			}
		})
	}
}

// TestRevokeOwnAfterRenewal has a request revoke its own session, by its
// first id or with all of its user's, after a parallel request renewed it
// (and the request's own Renew, if it tried one, lost): the session ends
// where the parallel Renew moved it, and the response expires the cookie
// and clears site data, as without the renewal. Revoking another session
// of the user leaves the cookie; so does revoking the user's sessions after
// a parallel login as another user replaced the request's session, since
// the browser holds that login's cookie.
func TestRevokeOwnAfterRenewal(t *testing.T) {
	type revocation func(ctx context.Context, m *Manager, own, other string) error
	revokeOwn := func(ctx context.Context, m *Manager, own, _ string) error { return m.Revoke(ctx, "alice", own) }
	revokeAll := func(ctx context.Context, m *Manager, _, _ string) error {
		_, err := m.RevokeAll(ctx, "alice")
		return err
	}
	revokeOther := func(ctx context.Context, m *Manager, _, other string) error { return m.Revoke(ctx, "alice", other) }
	for _, tc := range []struct {
		name   string
		revoke revocation
		relog  bool // the parallel request logs in as bob instead of renewing
		ends   bool
	}{
		{"Revoke own", revokeOwn, false, true},
		{"RevokeAll", revokeAll, false, true},
		{"Revoke other", revokeOther, false, false},
		{"RevokeAll after a login as bob", revokeAll, true, false},
	} {
		for _, tryRenew := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/Renew %v", tc.name, tryRenew), func(t *testing.T) {
				m, _, _ := newTestManager(t, Config{})
				c1, own := login(t, m, "alice")
				_, other := login(t, m, "alice")
				ctx := load(m, c1)
				var c2 string
				if tc.relog {
					h, err := exchange(t, m, c1, func(ctx context.Context) {
						if _, err := Create(ctx, "bob"); err != nil {
							t.Fatalf("Create = %v", err)
						}
					})
					c, ok := sessionCookie(m, h)
					if err != nil || !ok {
						t.Fatalf("login as bob: %v, cookie %v", err, ok)
					}
					c2 = c.Value
				} else {
					c2 = renew(t, m, c1)
				}
				if tryRenew {
					if err := Renew(ctx); !errors.Is(err, ErrNoSession) {
						t.Fatalf("Renew after a parallel renewal = %v, want ErrNoSession", err)
					}
				}
				if err := tc.revoke(ctx, m, own, other); err != nil {
					t.Fatalf("revocation = %v", err)
				}
				h := http.Header{}
				if err := m.Commit(ctx, h); err != nil {
					t.Fatalf("Commit = %v", err)
				}
				c, set := sessionCookie(m, h)
				expired := set && c.Value == "" && h.Get("Clear-Site-Data") != ""
				if expired != tc.ends || (set && !expired) {
					t.Errorf("the response: Set-Cookie %v, Clear-Site-Data %q; want the cookie expired with it: %v", c, h.Get("Clear-Site-Data"), tc.ends)
				}
				want := map[bool]string{true: "bob", false: "alice"}[tc.relog]
				if tc.ends {
					want = ""
				}
				if u := userOf(t, m, c2); u != want {
					t.Errorf("the browser's session afterwards: user %q, want %q", u, want)
				}
			})
		}
	}
}

// TestPutRacesRenewalChain has a request, loaded before, put a value while
// the same browser renews its session back to back on another instance,
// with the put landing at a different moment of the chain in each round: a
// Commit that returns nil has saved the value into the session, under
// whatever token the chain reached; one that cannot follow the session
// says so (ErrContention), never nil for a lost value. A user's session and
// an anonymous one alike.
func TestPutRacesRenewalChain(t *testing.T) {
	for _, kind := range chainKinds {
		t.Run(kind.name, func(t *testing.T) {
			a, r, _ := newTestManager(t, Config{})
			b := taggedManager(t, r, Config{})
			saved := 0
			for round := range 200 {
				c0 := kind.start(t, a, round)
				req := load(a, c0)
				stop := renewing(t, b, c0)
				time.Sleep(time.Duration(round%7) * 200 * time.Microsecond)
				want := strconv.Itoa(round)
				err := Put(req, "cart", want)
				if err == nil {
					err = a.Commit(req, http.Header{})
				}
				last := stop()
				switch {
				case err == nil:
					saved++
					var got string
					serve(t, a, last, func(ctx context.Context) { got, _ = Get[string](ctx, "cart") })
					if got != want {
						t.Errorf("round %d: Commit returned nil, but the renewed session's cart = %q, want %q", round, got, want)
					}
				case !errors.Is(err, ErrContention):
					t.Errorf("round %d: Put or Commit = %v, want nil or ErrContention", round, err)
				}
				kind.end(a, round)
			}
			if saved == 0 {
				t.Error("no round saved its value: the test raced nothing")
			}
		})
	}
}

// TestPutThenRenewRacesRenewal has a request put a value and then Renew
// while another instance renews the same session, in 200 jittered rounds,
// a signed-in session and an anonymous one: whichever Renew wins, the
// request's Commit returns nil and the value is in the one session left,
// under the winner's token.
func TestPutThenRenewRacesRenewal(t *testing.T) {
	for _, user := range []string{"alice", ""} {
		t.Run(map[bool]string{true: "user", false: "anonymous"}[user != ""], func(t *testing.T) {
			a, r, _ := newTestManager(t, Config{})
			b := taggedManager(t, r, Config{})
			lost := 0
			for round := range 200 {
				var c0 string
				if user != "" {
					c0, _ = login(t, a, user)
				} else {
					c0 = serve(t, a, "", func(ctx context.Context) { Put(ctx, "seed", "1") })
				}
				req := load(a, c0)
				other := make(chan string, 1)
				go func() {
					time.Sleep(time.Duration(round%5) * 150 * time.Microsecond)
					h, _ := exchange(t, b, c0, func(ctx context.Context) { _ = Renew(ctx) })
					c, _ := sessionCookie(b, h)
					if c == nil {
						other <- ""
						return
					}
					other <- c.Value
				}()
				time.Sleep(time.Duration(round%7) * 100 * time.Microsecond)
				want := strconv.Itoa(round)
				if err := Put(req, "cart", want); err != nil {
					t.Fatalf("round %d: Put = %v", round, err)
				}
				renewErr := Renew(req)
				h := http.Header{}
				if err := a.Commit(req, h); err != nil {
					t.Fatalf("round %d: Commit = %v, want nil", round, err)
				}
				winner := <-other
				if renewErr == nil {
					c, ok := sessionCookie(a, h)
					if !ok || winner != "" {
						t.Fatalf("round %d: both Renews won (cookie %v, other %q)", round, ok, winner)
					}
					winner = c.Value
				} else {
					lost++
				}
				var got, who string
				serve(t, a, winner, func(ctx context.Context) {
					got, _ = Get[string](ctx, "cart")
					who, _ = UserID(ctx)
				})
				if got != want || who != user {
					t.Errorf("round %d (Renew %v): the session left has cart %q, user %q; want %q, %q", round, renewErr, got, who, want, user)
				}
			}
			if lost == 0 || lost == 200 {
				t.Errorf("the request's Renew lost in %d of 200 rounds: the test raced nothing", lost)
			}
		})
	}
}

// TestRevokeByFirstIDRacesRenewalChain has a user revoke a device by the
// id a list showed before the device began renewing its session back to
// back on another instance: Revoke, given the session's FirstID, finds it
// under whatever token it has reached and ends it, and a Revoke that
// returns nil has ended it.
func TestRevokeByFirstIDRacesRenewalChain(t *testing.T) {
	a, r, _ := newTestManager(t, Config{})
	b := taggedManager(t, r, Config{})
	for round := range 200 {
		user := fmt.Sprintf("f%d", round)
		device, _ := login(t, a, user)
		list, err := a.List(context.Background(), user)
		if err != nil || len(list) != 1 {
			t.Fatalf("List = %v, %v", list, err)
		}
		stop := renewing(t, b, device)
		time.Sleep(time.Duration(round%7) * 200 * time.Microsecond)
		err = a.Revoke(context.Background(), user, list[0].FirstID)
		last := stop()
		switch {
		case err == nil:
			if u := userOf(t, a, last); u != "" {
				t.Errorf("round %d: Revoke by FirstID returned nil, but the renewed session is alive (user %q)", round, u)
			}
		case !errors.Is(err, ErrContention):
			t.Errorf("round %d: Revoke by FirstID = %v, want nil or ErrContention", round, err)
		}
		a.RevokeAll(context.Background(), user)
	}
}

// TestLogoutFollowsAnonymousRenewal has a request load an anonymous
// session, another renew it (once, or twice), and the first then log out:
// the session ends under its newest token, through the pointers the store
// left at each move (which stay until they expire, so that a logout that
// fails part way can be tried again); the anonymous session has no user
// index to be followed through. With a TagKey the ids carry the session's
// own tag. A logout that gives up (more renewals than it follows) says so
// again when tried again, never nil while the session lives. A Store
// without MovedTo cannot follow, and the logout ends nothing, as Destroy
// documents.
func TestLogoutFollowsAnonymousRenewal(t *testing.T) {
	anonymous := func(t *testing.T, m *Manager) string {
		t.Helper()
		return serve(t, m, "", func(ctx context.Context) {
			if err := Put(ctx, "pending", "2fa"); err != nil {
				t.Fatalf("Put = %v", err)
			}
		})
	}
	pending := func(t *testing.T, m *Manager, cookie string) string {
		t.Helper()
		var v string
		serve(t, m, cookie, func(ctx context.Context) { v, _ = Get[string](ctx, "pending") })
		return v
	}
	for _, tc := range []struct {
		name    string
		tagKey  []byte
		renewed int
	}{
		{"renewed once", nil, 1},
		{"renewed twice", nil, 2},
		{"tagged", testKey(0x54), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, r, _ := newTestManager(t, Config{TagKey: tc.tagKey})
			a1 := anonymous(t, m)
			logout := load(m, a1) // loaded before the renewals
			last := a1
			for range tc.renewed {
				last = renew(t, m, last)
			}
			if got := pending(t, m, last); got != "2fa" {
				t.Fatalf("the renewed session's value = %q, want 2fa", got)
			}
			if err := Destroy(logout); err != nil {
				t.Fatalf("Destroy = %v, want nil", err)
			}
			if got := pending(t, m, last); got != "" {
				t.Errorf("the renewed token after the logout still holds %q, want no session", got)
			}
			for _, k := range allKeys(t, r) {
				if !strings.HasSuffix(k, ":next") && !strings.HasSuffix(k, ":ended") {
					t.Errorf("key %q after the logout, want only the pointers the renewals left and the logout's marks", k)
				}
			}
		})
	}
	t.Run("retried after giving up", func(t *testing.T) {
		m, _, _ := newTestManager(t, Config{})
		a1 := anonymous(t, m)
		logout := load(m, a1)
		last := a1
		for range maxFollow + 1 {
			last = renew(t, m, last)
		}
		for try := range 2 {
			err := Destroy(logout)
			if err == nil && pending(t, m, last) != "" {
				t.Fatalf("Destroy #%d = nil, but the renewed session lives", try+1)
			}
			if err != nil && !errors.Is(err, ErrContention) {
				t.Fatalf("Destroy #%d = %v, want nil or ErrContention", try+1, err)
			}
		}
	})
	t.Run("store without MovedTo", func(t *testing.T) {
		m, _, _ := newTestManager(t, Config{})
		m.store = struct{ Store }{m.store} // hides MovedTo
		a1 := anonymous(t, m)
		logout := load(m, a1)
		a2 := renew(t, m, a1)
		if err := Destroy(logout); err != nil {
			t.Fatalf("Destroy = %v, want nil", err)
		}
		if got := pending(t, m, a2); got != "2fa" {
			t.Errorf("without MovedTo, the renewed session after the logout holds %q, want 2fa (not followed)", got)
		}
	})
}

// The Store of this module has the optional method that lets an anonymous
// session's logout follow its renewal (see Store).
var _ mover = (*redisstore.Store)(nil)

// TestReloginUnderReads signs in again, under a session limit, while
// other requests of the same browser keep reading the session (each read
// extends its idle timeout with GETEX, a write to Redis): the login
// succeeds at once. (A login's transaction that watched the replaced
// record would lose every race to those reads until it ran out of time.)
func TestReloginUnderReads(t *testing.T) {
	m, _, _ := newTestManager(t, Config{MaxSessionsPerUser: 3})
	for round := range 5 {
		cookie, _ := login(t, m, "alice")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx := load(m, cookie)
					m.Commit(ctx, http.Header{})
				}
			})
		}
		time.Sleep(20 * time.Millisecond)
		_, err := Create(load(m, cookie), "alice")
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("round %d: re-login while the session is read = %v, want nil", round, err)
		}
	}
}

// TestStalledReloginLeavesNoSession signs in again while Redis is
// unreachable (a stalled network path): the login times out, and its
// transaction may still run once the path heals, ending the session the
// request came with. The request therefore keeps no session: it writes
// nothing more and sets no cookie, rather than go on as the old session
// and drop what it puts afterwards without a word.
func TestStalledReloginLeavesNoSession(t *testing.T) {
	r := redistest.Start(t)
	p := r.Proxy(t)
	store, err := redisstore.Open(redisstore.Config{Addr: p.Addr(), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	m, err := New(store, Config{Keys: [][]byte{testKey(7)}, InsecureCookie: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	cookie, _ := login(t, m, "alice")
	h, cerr := exchange(t, m, cookie, func(ctx context.Context) {
		p.Stall()
		_, err := Create(ctx, "alice")
		p.Heal()
		if !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("Create on a stalled Redis = %v, want ErrStoreUnavailable", err)
		}
		if u, ok := UserID(ctx); ok {
			t.Errorf("after a re-login that timed out, UserID = %q; want no session: the login may still run", u)
		}
		if err := Put(ctx, "theme", "dark"); !errors.Is(err, ErrNoSession) {
			t.Errorf("Put after a re-login that timed out = %v, want ErrNoSession", err)
		}
	})
	if sc, ok := sessionCookie(m, h); ok || cerr != nil {
		t.Errorf("Commit = %v, Set-Cookie %v; want no error and the cookie left alone", cerr, sc)
	}
}

// lostReplyStore runs AddUserSession and then, while lose is set, fails it
// as a master killed before its reply went out does: Redis ran the
// transaction, the caller got a broken connection.
type lostReplyStore struct {
	*redisstore.Store
	lose atomic.Bool
}

func (s *lostReplyStore) AddUserSession(ctx context.Context, n NewSession) ([]string, error) {
	ended, err := s.Store.AddUserSession(ctx, n)
	if err == nil && s.lose.Load() {
		return nil, fmt.Errorf("%w (add user session): %w", redisstore.ErrUnavailable, io.ErrUnexpectedEOF)
	}
	return ended, err
}

// TestUnknownLoginOutcomeFromAnonymous logs in from an anonymous session
// with a value while the login fails with an unknown outcome. When its
// transaction ran (the reply lost) and took the anonymous record, a value
// put after is not answered as saved: the commit says to send it again.
// When it did not run, the anonymous session is still the request's: a
// login tried again replaces it, its value carried over: were the request
// to forget it, the retry would leave it alive beside the login, the
// value not carried.
func TestUnknownLoginOutcomeFromAnonymous(t *testing.T) {
	// withCart returns a Manager on the store wrap makes of a Store of its
	// own, and the cookie of an anonymous session holding a cart.
	withCart := func(t *testing.T, wrap func(*redisstore.Store) Store) (*Manager, string) {
		m := hookedManager(t, redistest.Start(t), Config{}, wrap)
		return m, serve(t, m, "", func(ctx context.Context) {
			if err := Put(ctx, "cart", "3 items"); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("ran", func(t *testing.T) {
		var store *lostReplyStore
		m, anon := withCart(t, func(s *redisstore.Store) Store {
			store = &lostReplyStore{Store: s}
			return store
		})
		store.lose.Store(true)
		_, err := exchange(t, m, anon, func(ctx context.Context) {
			if _, err := Create(ctx, "bob"); !errors.Is(err, ErrStoreUnavailable) {
				t.Fatalf("Create with its reply lost = %v, want ErrStoreUnavailable", err)
			}
			Put(ctx, "flash", "x")
		})
		if !errors.Is(err, ErrContention) {
			t.Errorf("Commit of a value put after the lost login = %v, want ErrContention (send it again)", err)
		}
	})
	t.Run("did not run", func(t *testing.T) {
		var store *unsentOnceStore
		m, anon := withCart(t, func(s *redisstore.Store) Store {
			store = &unsentOnceStore{Store: s}
			return store
		})
		store.fail.Store(true)
		login := serve(t, m, anon, func(ctx context.Context) {
			if _, err := Create(ctx, "bob"); !errors.Is(err, ErrStoreUnavailable) {
				t.Fatalf("Create whose connection broke = %v, want ErrStoreUnavailable", err)
			}
			if _, err := Create(ctx, "bob"); err != nil {
				t.Fatalf("Create tried again = %v", err)
			}
		})
		serve(t, m, login, func(ctx context.Context) {
			if u, _ := UserID(ctx); u != "bob" {
				t.Errorf("user after the login tried again = %q, want bob", u)
			}
			if v, _ := Get[string](ctx, "cart"); v != "3 items" {
				t.Errorf("cart after the login tried again = %q, want it carried over", v)
			}
		})
		serve(t, m, anon, func(ctx context.Context) {
			if v, ok := Get[string](ctx, "cart"); ok {
				t.Errorf("the anonymous token after the login still reads cart %q, want it replaced", v)
			}
		})
	})
}

// unsentOnceStore fails AddUserSession once, when fail is set, as a
// connection that broke before the transaction reached Redis does: the
// outcome is unknown to the caller, and nothing ran.
type unsentOnceStore struct {
	*redisstore.Store
	fail atomic.Bool
}

func (s *unsentOnceStore) AddUserSession(ctx context.Context, n NewSession) ([]string, error) {
	if s.fail.CompareAndSwap(true, false) {
		return nil, fmt.Errorf("%w (add user session): %w", redisstore.ErrUnavailable, io.ErrUnexpectedEOF)
	}
	return s.Store.AddUserSession(ctx, n)
}

// TestLostLoginReplyLeavesNoSession logs a user in on a third device under
// a limit of two while the login's reply is lost (the transaction ran): the
// login fails, its new session, whose token nobody got, is gone again, and
// the login tried again revokes no other session for it. Were the unused
// session to stay listed and counted, the retry would sign out the laptop
// too: two devices lost for one login.
func TestLostLoginReplyLeavesNoSession(t *testing.T) {
	r := redistest.Start(t)
	var store *lostReplyStore
	m := hookedManager(t, r, Config{MaxSessionsPerUser: 2}, func(s *redisstore.Store) Store {
		store = &lostReplyStore{Store: s}
		return store
	})
	_, phone := login(t, m, "alice")
	_, laptop := login(t, m, "alice")
	store.lose.Store(true)
	serve(t, m, "", func(ctx context.Context) {
		if _, err := Create(ctx, "alice"); !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("Create with its reply lost = %v, want ErrStoreUnavailable", err)
		}
	})
	store.lose.Store(false)
	ids := func() (ids []string) {
		list, err := m.List(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list {
			ids = append(ids, s.ID)
		}
		return ids
	}
	// The login that ran revoked one of the two (the older, but both
	// logins may share a millisecond) and took the other place.
	kept := ids()
	if len(kept) != 1 || kept[0] != phone && kept[0] != laptop {
		t.Fatalf("after the login whose reply was lost, alice's sessions = %q, want the phone's %q or the laptop's %q alone", kept, phone, laptop)
	}
	if n, _ := redis.Int(r.Do(t, "DBSIZE"), nil); n != 2 {
		t.Errorf("DBSIZE = %d, want 2: the kept session's record and the index", n)
	}
	_, tablet := login(t, m, "alice")
	if got, want := ids(), []string{kept[0], tablet}; !slices.Equal(got, want) {
		t.Errorf("after the login tried again, alice's sessions = %q, want %q: the kept one and the new one", got, want)
	}
}

// removalCounter counts RemoveUserSession calls.
type removalCounter struct {
	*redisstore.Store
	removals atomic.Int32
}

func (s *removalCounter) RemoveUserSession(ctx context.Context, userID, id string) (bool, error) {
	s.removals.Add(1)
	return s.Store.RemoveUserSession(ctx, userID, id)
}

// TestLoginWithoutConnectionRemovesNothing logs in while the pool has no
// connection to lend (its one connection held): Redis was never asked, so
// the login fails without removing the session it would have made, which
// cannot exist: a removal would wait for the exhausted pool a second
// Timeout.
func TestLoginWithoutConnectionRemovesNothing(t *testing.T) {
	r := redistest.Start(t)
	pool, err := redisstore.NewPool(redisstore.Config{Addr: r.Addr(), MaxActive: 1})
	if err != nil {
		t.Fatal(err)
	}
	store, err := redisstore.New(pool, redisstore.Config{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	counter := &removalCounter{Store: store}
	m, err := New(counter, Config{Keys: [][]byte{testKey(7)}, InsecureCookie: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	held, err := pool.GetContext(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	serve(t, m, "", func(ctx context.Context) {
		if _, err := Create(ctx, "alice"); !errors.Is(err, ErrStoreUnavailable) {
			t.Errorf("Create on an exhausted pool = %v, want ErrStoreUnavailable", err)
		}
	})
	if n := counter.removals.Load(); n != 0 {
		t.Errorf("a login that sent Redis nothing removed its session %d times, want 0", n)
	}
}

// TestReloginRacesRenewals signs a laptop in again while three requests of
// the same browser, on this instance and on another, renew its session at
// jittered times, 150 rounds with a session limit and without. Whenever
// the login succeeds: no token of the laptop's old session (its first, or
// any a renewal gave) still works, the phone's session does, the user's
// list is the phone's and the new session, every index member has a
// record, and the old session was reported ended once, nothing revoked.
func TestReloginRacesRenewals(t *testing.T) {
	for _, limit := range []int{0, 2} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			r := redistest.Start(t)
			events := &eventLog{}
			cfg := Config{MaxSessionsPerUser: limit, OnEvent: events.add}
			here, there := taggedManager(t, r, cfg), taggedManager(t, r, cfg)
			succeeded := 0
			for round := range 150 {
				r.Do(t, "FLUSHDB")
				phone, phoneID := login(t, here, "alice")
				laptop, _ := login(t, here, "alice")
				events.take()
				relogin := load(here, laptop)
				renewed := make([]string, 3)
				var wg sync.WaitGroup
				for i := range renewed {
					m := []*Manager{here, there}[i%2]
					wg.Go(func() {
						time.Sleep(time.Duration(rand.IntN(400)) * time.Microsecond)
						h, err := exchange(t, m, laptop, func(ctx context.Context) { Renew(ctx) })
						if c, ok := sessionCookie(m, h); ok && err == nil && c.MaxAge > 0 {
							renewed[i] = c.Value
						}
					})
				}
				var info Info
				var err error
				wg.Go(func() {
					time.Sleep(time.Duration(rand.IntN(600)) * time.Microsecond)
					info, err = Create(relogin, "alice")
				})
				wg.Wait()
				if err != nil {
					continue // contention with the renewals: allowed, checked elsewhere
				}
				succeeded++
				for _, c := range append([]string{laptop}, renewed...) {
					if c != "" && userOf(t, here, c) != "" {
						t.Fatalf("round %d: a token of the laptop's old session works beside the new one", round)
					}
				}
				if userOf(t, there, phone) != "alice" {
					t.Fatalf("round %d: the phone was signed out by the laptop's re-login", round)
				}
				list, lerr := here.List(context.Background(), "alice")
				ids := []string{}
				for _, s := range list {
					ids = append(ids, s.ID)
				}
				if want := []string{phoneID, info.ID}; lerr != nil || !slices.Equal(sorted(ids...), sorted(want...)) {
					t.Fatalf("round %d: List(alice) = %v, %v; want %v", round, ids, lerr, want)
				}
				members, _ := redis.Strings(r.Do(t, "ZRANGE", "user:alice:sessions", 0, -1), nil)
				for _, id := range members {
					if n, _ := redis.Int(r.Do(t, "EXISTS", "session:"+id), nil); n != 1 {
						t.Fatalf("round %d: index member %.8s has no record", round, id)
					}
				}
				destroyed, revoked := 0, 0
				for _, e := range events.take() {
					switch e.Kind {
					case EventDestroyed:
						destroyed++
					case EventRevoked:
						revoked++
					}
				}
				if destroyed != 1 || revoked != 0 {
					t.Fatalf("round %d: %d destroyed and %d revoked events, want 1 and 0", round, destroyed, revoked)
				}
			}
			if succeeded < 100 {
				t.Errorf("%d of 150 re-logins succeeded: too few rounds checked", succeeded)
			}
		})
	}
}

// TestEndingWithReplacedToken has a request renew the session and answer
// late, while the browser, which still holds the old token until that
// answer arrives, logs out or logs in from another tab. The old token's
// record is gone when that request loads it, so the request knows no
// session: it must still end the renewed one, where the store's pointer
// says it went, or the renewing request's answer would then set its
// cookie over the logout or the login: the browser would stay signed in
// after the logout, and be signed in as alice again after bob's login.
func TestEndingWithReplacedToken(t *testing.T) {
	type action struct {
		name string
		user string // the user the browser logs in as, "" for a logout
	}
	actions := []action{{"logout", ""}, {"login as another user", "bob"}, {"login again", "alice"}}
	for _, a := range actions {
		for _, tc := range []struct {
			name    string
			anon    bool // the session is anonymous
			renewed int  // renewals before the one still answering
			put     bool // the renewing request puts a value after its Renew
			tagKey  []byte
		}{
			{name: "signed in"},
			{name: "signed in, renew and put", put: true},
			{name: "signed in, renewed before", renewed: 1},
			{name: "signed in, tagged", tagKey: testKey(0x54)},
			{name: "anonymous", anon: true},
			{name: "anonymous, renew and put", anon: true, put: true},
		} {
			t.Run(a.name+"/"+tc.name, func(t *testing.T) {
				var events []Event
				m, _, clk := newTestManager(t, Config{TagKey: tc.tagKey, MaxSessionsPerUser: 2})
				m.cfg.OnEvent = func(e Event) { events = append(events, e) }
				var c1 string
				if tc.anon {
					c1 = serve(t, m, "", func(ctx context.Context) {
						if err := Put(ctx, "cart", "3 books"); err != nil {
							t.Fatalf("Put = %v", err)
						}
					})
				} else {
					c1, _ = login(t, m, "alice")
				}
				for range tc.renewed {
					c1 = renew(t, m, c1)
				}
				renewing := load(m, c1)
				if err := Renew(renewing); err != nil {
					t.Fatalf("Renew = %v", err)
				}
				if tc.put {
					if err := Put(renewing, "theme", "dark"); err != nil {
						t.Fatalf("Put = %v", err)
					}
				}
				renewedID := currentInfoOf(t, renewing).ID
				clk.t = clk.t.Add(time.Second)
				events = nil

				// The other tab, with the token the browser still holds.
				other := load(m, c1)
				if _, ok := FromContext(other); ok {
					t.Fatal("the replaced token loaded a session")
				}
				if a.user == "" {
					if err := Destroy(other); err != nil {
						t.Fatalf("Destroy = %v, want nil", err)
					}
				} else if _, err := Create(other, a.user); err != nil {
					t.Fatalf("Create = %v", err)
				}
				h := http.Header{}
				if err := m.Commit(other, h); err != nil {
					t.Fatal(err)
				}
				c, ok := sessionCookie(m, h)
				switch {
				case a.user == "" && (!ok || c.Value != ""):
					t.Fatalf("logout: cookie %v, want it expired", c)
				case a.user == "" && h.Get("Clear-Site-Data") == "":
					t.Error("logout that ended the renewed session: no Clear-Site-Data")
				case a.user != "" && (!ok || userOf(t, m, c.Value) != a.user):
					t.Fatalf("login: cookie %v, want %s's new session", c, a.user)
				}
				if !tc.anon && !slices.ContainsFunc(events, func(e Event) bool {
					return e.Kind == EventDestroyed && e.UserID == "alice" && e.SessionID == renewedID
				}) {
					t.Errorf("events = %v, want alice's renewed session destroyed", events)
				}

				// The renewing request answers last: its token leads nowhere.
				// What it put after its Renew is lost with the session it
				// renewed; for an anonymous one, which a login may have
				// taken with its values, Commit says so (see commit).
				h = http.Header{}
				if err := m.Commit(renewing, h); tc.anon && tc.put && !errors.Is(err, ErrContention) || !(tc.anon && tc.put) && err != nil {
					t.Fatalf("the renewing request's Commit = %v, want %s", err, map[bool]string{true: "ErrContention", false: "nil"}[tc.anon && tc.put])
				}
				if c, ok := sessionCookie(m, h); ok {
					t.Errorf("the renewing request answered after the %s with Set-Cookie %v, want none", a.name, c)
				}
				list, err := m.List(context.Background(), "alice")
				if err != nil {
					t.Fatal(err)
				}
				want := 0
				if a.user == "alice" {
					want = 1
				}
				if len(list) != want {
					t.Errorf("List(alice) after the %s = %d sessions, want %d", a.name, len(list), want)
				}
			})
		}
	}
}

// currentInfoOf returns the session of the request ctx, which must have
// one.
func currentInfoOf(t *testing.T, ctx context.Context) Info {
	t.Helper()
	st := stateFrom(ctx)
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.m.info(st)
}

// TestEndingFollowsRelogin has a browser log in again as the same user in
// one tab, while another tab, with the token the login replaced, logs out
// or logs in: the session the first login made ends
// too, through the pointer it left, as one a renewal made does (see
// TestEndingWithReplacedToken); otherwise the logout would answer as done
// and end nothing, and the re-login's session would live on, listed, and
// sign the browser in again when its answer came last. So does a login
// in the other tab that loaded the session before the re-login replaced
// it. The re-login's answer, coming after the other tab's, sets no
// cookie. A login from an anonymous session leaves no such pointer: the
// anonymous token never reaches the signed-in session, not even to end it.
func TestEndingFollowsRelogin(t *testing.T) {
	for _, other := range []struct {
		name string
		user string // the other tab logs in as user, "" for a logout
	}{{"logout", ""}, {"login", "carol"}, {"login as the same user", "alice"}} {
		for _, tc := range []struct {
			name     string
			as       string // the first tab logs in again as as
			loaded   bool   // the other tab loaded the session before the re-login
			firstNew bool   // the re-login answers first, the other tab's answer last
			tagKey   []byte
			limit    int
		}{
			{name: "same user", as: "alice"},
			{name: "same user, loaded before", as: "alice", loaded: true},
			{name: "same user, the re-login answers first", as: "alice", firstNew: true},
			{name: "same user, tagged, under a limit", as: "alice", tagKey: testKey(0x54), limit: 2},
		} {
			t.Run(other.name+"/"+tc.name, func(t *testing.T) {
				m, _, _ := newTestManager(t, Config{TagKey: tc.tagKey, MaxSessionsPerUser: tc.limit})
				c1, _ := login(t, m, "alice")
				var early context.Context
				if tc.loaded {
					early = load(m, c1)
				}
				relogin := load(m, c1)
				info, err := Create(relogin, tc.as)
				if err != nil {
					t.Fatal(err)
				}
				var reloginCookie string
				if tc.firstNew {
					h := http.Header{}
					if err := m.Commit(relogin, h); err != nil {
						t.Fatal(err)
					}
					c, ok := sessionCookie(m, h)
					if !ok {
						t.Fatal("the re-login set no cookie")
					}
					reloginCookie = c.Value
				}

				tab := early
				if tab == nil {
					tab = load(m, c1)
				}
				if other.user == "" {
					if err := Destroy(tab); err != nil {
						t.Fatalf("Destroy = %v", err)
					}
				} else if _, err := Create(tab, other.user); err != nil {
					t.Fatalf("Create = %v", err)
				}
				if err := m.Commit(tab, http.Header{}); err != nil {
					t.Fatal(err)
				}
				if list, err := m.List(context.Background(), tc.as); err != nil || slices.ContainsFunc(list, func(i Info) bool { return i.ID == info.ID }) {
					t.Errorf("List(%s) after the other tab's %s = %v, %v; want the re-login's session ended", tc.as, other.name, list, err)
				}
				if !tc.firstNew {
					h := http.Header{}
					if err := m.Commit(relogin, h); err != nil {
						t.Fatal(err)
					}
					if c, ok := sessionCookie(m, h); ok {
						t.Errorf("the re-login answered after the other tab's %s with Set-Cookie %v, want none", other.name, c)
					}
				} else if u := userOf(t, m, reloginCookie); u != "" {
					t.Errorf("the re-login's cookie reads as %q after the other tab's %s, want no session", u, other.name)
				}
			})
		}
	}

	t.Run("anonymous, then login", func(t *testing.T) {
		m, _, _ := newTestManager(t, Config{})
		anon := serve(t, m, "", func(ctx context.Context) {
			if err := Put(ctx, "cart", "3 books"); err != nil {
				t.Fatal(err)
			}
		})
		signedIn := serve(t, m, anon, func(ctx context.Context) {
			if _, err := Create(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
		})
		tab := load(m, anon)
		if err := Destroy(tab); err != nil {
			t.Fatalf("Destroy with the anonymous token = %v", err)
		}
		if err := m.Commit(tab, http.Header{}); err != nil {
			t.Fatal(err)
		}
		if u := userOf(t, m, signedIn); u != "alice" {
			t.Errorf("after a logout with the anonymous token the login replaced, the login reads as %q, want alice", u)
		}
	})
}

// committedCookie commits the request ctx and returns the value of the
// session cookie its response sets, and whether it sets one.
func committedCookie(t *testing.T, m *Manager, ctx context.Context) (string, bool) {
	t.Helper()
	h := http.Header{}
	if err := m.Commit(ctx, h); err != nil {
		t.Fatal(err)
	}
	c, ok := sessionCookie(m, h)
	if !ok {
		return "", false
	}
	return c.Value, true
}

// TestReloginAfterRenewal has a re-login load the session, a parallel
// request renew it, and then the re-login replace it: the re-login ends
// the renewed session, where the renewal moved it. A logout sent after the
// re-login answered, with the old token or the renewed one, must end the
// re-login's session too: the renewal's pointer leads from the old id to
// the renewed one, and the re-login leaves its own from the renewed
// session, which once ended would otherwise lead nowhere. And three
// re-logins one after another, each loaded before the first replaced the
// session, leave one session, which a logout with the old token ends, not
// the first's session ended and the second's alive, held by nobody.
func TestReloginAfterRenewal(t *testing.T) {
	for _, limit := range []int{0, 3} {
		for _, tc := range []struct{ with, loaded string }{
			{"old token", "before"}, {"renewed token", "before"},
			// The renewal's answer has not reached the browser, which
			// sends the old token with the re-login: it loads nothing,
			// and ends the renewed session as a token that leads nowhere.
			{"old token", "after"}, {"renewed token", "after"},
		} {
			t.Run(fmt.Sprintf("limit %d, loaded %s the renewal, logout with the %s", limit, tc.loaded, tc.with), func(t *testing.T) {
				m, _, _ := newTestManager(t, Config{MaxSessionsPerUser: limit})
				old, _ := login(t, m, "alice")
				var relogin context.Context
				if tc.loaded == "before" {
					relogin = load(m, old)
				}
				renewed := serve(t, m, old, func(ctx context.Context) {
					if err := Renew(ctx); err != nil {
						t.Fatal(err)
					}
				})
				if relogin == nil {
					relogin = load(m, old)
				}
				info, err := Create(relogin, "alice")
				if err != nil {
					t.Fatal(err)
				}
				cookie, ok := committedCookie(t, m, relogin)
				if !ok {
					t.Fatal("the re-login set no cookie")
				}
				token := map[string]string{"old token": old, "renewed token": renewed}[tc.with]
				serve(t, m, token, func(ctx context.Context) {
					if err := Destroy(ctx); err != nil {
						t.Fatalf("Destroy = %v", err)
					}
				})
				if u := userOf(t, m, cookie); u != "" {
					t.Errorf("the re-login's cookie reads as %q after the logout, want no session", u)
				}
				if list, err := m.List(context.Background(), "alice"); err != nil || slices.ContainsFunc(list, func(i Info) bool { return i.ID == info.ID }) {
					t.Errorf("List(alice) after the logout = %v, %v; want the re-login's session ended", list, err)
				}
			})
		}
		for _, tc := range []struct {
			loaded string
			n      int
		}{
			{"first", 3}, {"each in turn", 3},
			// More than a logout follows (maxFollow): if each re-login
			// lengthened the chain by one, the tenth, and a logout with
			// the old token, would fail with ErrContention.
			{"each in turn", 12},
		} {
			loaded, n := tc.loaded, tc.n
			t.Run(fmt.Sprintf("limit %d, %d re-logins, loaded %s", limit, n, loaded), func(t *testing.T) {
				m, _, _ := newTestManager(t, Config{MaxSessionsPerUser: limit})
				old, _ := login(t, m, "alice")
				var tabs []context.Context
				if loaded == "first" {
					tabs = []context.Context{load(m, old), load(m, old), load(m, old)}
				}
				var last string
				for i := range n {
					if loaded != "first" {
						// A form sent three times, each request handled
						// after the one before: all carry the old token.
						tabs = append(tabs, load(m, old))
					}
					tab := tabs[i]
					if _, err := Create(tab, "alice"); err != nil {
						t.Fatalf("re-login %d: %v", i+1, err)
					}
					if c, ok := committedCookie(t, m, tab); ok {
						last = c
					}
				}
				if list, err := m.List(context.Background(), "alice"); err != nil || len(list) != 1 {
					t.Errorf("List(alice) after %d re-logins = %v, %v; want one session", n, list, err)
				}
				if u := userOf(t, m, last); u != "alice" {
					t.Errorf("the last re-login's cookie reads as %q, want alice", u)
				}
				serve(t, m, old, func(ctx context.Context) {
					if err := Destroy(ctx); err != nil {
						t.Fatalf("Destroy = %v", err)
					}
				})
				if list, err := m.List(context.Background(), "alice"); err != nil || len(list) != 0 {
					t.Errorf("List(alice) after a logout with the old token = %v, %v; want none", list, err)
				}
			})
		}
	}
}

// TestReloginAfterLogout has a login replace a signed-in session that a
// logout in another tab ended after the login loaded it: the login
// leaves its pointer from the ended session to its own (none was there),
// and following the replaced session must not end the login's own.
func TestReloginAfterLogout(t *testing.T) {
	for _, limit := range []int{0, 2} {
		m, _, _ := newTestManager(t, Config{MaxSessionsPerUser: limit})
		c1, _ := login(t, m, "alice")
		relogin := load(m, c1)
		serve(t, m, c1, func(ctx context.Context) {
			if err := Destroy(ctx); err != nil {
				t.Fatal(err)
			}
		})
		if _, err := Create(relogin, "alice"); err != nil {
			t.Fatalf("limit %d: Create = %v", limit, err)
		}
		h := http.Header{}
		if err := m.Commit(relogin, h); err != nil {
			t.Fatal(err)
		}
		c, ok := sessionCookie(m, h)
		if !ok || userOf(t, m, c.Value) != "alice" {
			t.Errorf("limit %d: the login after the logout set %v, want alice's live session", limit, c)
		}
	}
}

// twoInstances returns two Managers configured with cfg on one
// redis-server, each with a Store of its own, and one clock: two
// instances of an app behind a load balancer.
func twoInstances(t *testing.T, cfg Config) (m1, m2 *Manager) {
	t.Helper()
	m1, r, clk := newTestManager(t, cfg)
	cfg.Keys, cfg.InsecureCookie, cfg.Logger = [][]byte{testKey(7)}, true, m1.log
	m2, err := New(openTestStore(t, r), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m2.now = clk.now
	return m1, m2
}

// jitter sleeps up to 1.5 ms, so that raced calls meet in every order.
func jitter() { time.Sleep(time.Duration(rand.N(1500)) * time.Microsecond) }

// TestReloginRacesRenewal races, with jitter, a re-login of a browser on
// one instance against a renewal of the same session on another (a tab
// that renews while the user signs in again in another), with and without
// a session limit, 150 rounds each. Whatever the order, at most one of the
// user's sessions is left; and a logout with the old token, sent after
// both answered, ends it, following the chain of renewal and re-login:
// a re-login that ends the renewed session leaves a pointer from it, or
// its session would outlive the logout.
func TestReloginRacesRenewal(t *testing.T) {
	for _, limit := range []int{0, 2} {
		m1, m2 := twoInstances(t, Config{MaxSessionsPerUser: limit})
		for i := range 150 {
			user := fmt.Sprintf("renewer%d-%d", limit, i)
			c, _ := login(t, m1, user)
			var wg sync.WaitGroup
			wg.Add(2)
			go func() {
				defer wg.Done()
				jitter()
				ctx := load(m1, c)
				if _, err := Create(ctx, user); err != nil {
					t.Errorf("limit %d, round %d: Create = %v", limit, i, err)
				}
				if err := m1.Commit(ctx, http.Header{}); err != nil {
					t.Errorf("limit %d, round %d: the re-login's Commit = %v", limit, i, err)
				}
			}()
			go func() {
				defer wg.Done()
				jitter()
				ctx := load(m2, c)
				if err := Renew(ctx); err != nil && !errors.Is(err, ErrNoSession) {
					t.Errorf("limit %d, round %d: Renew = %v", limit, i, err)
				}
				if err := m2.Commit(ctx, http.Header{}); err != nil {
					t.Errorf("limit %d, round %d: the renewal's Commit = %v", limit, i, err)
				}
			}()
			wg.Wait()
			if list, err := m1.List(context.Background(), user); err != nil || len(list) > 1 {
				t.Fatalf("limit %d, round %d: %d sessions after the re-login and the renewal (%v), want at most 1", limit, i, len(list), err)
			}
			ctx := load(m2, c)
			if err := Destroy(ctx); err != nil {
				t.Fatalf("limit %d, round %d: Destroy with the old token = %v", limit, i, err)
			}
			if err := m2.Commit(ctx, http.Header{}); err != nil {
				t.Fatal(err)
			}
			if list, err := m1.List(context.Background(), user); err != nil || len(list) != 0 {
				t.Fatalf("limit %d, round %d: %d sessions after a logout with the old token (%v), want none", limit, i, len(list), err)
			}
		}
	}
}

// TestReloginRacesLogout races, 300 times with jitter, a re-login of a
// browser on one instance against a logout with the same token on
// another. Whatever the order, at most one of the user's sessions is
// left, and one left is the re-login's, whose answer set its cookie (no
// session that no browser holds). In the rounds where the re-login had
// answered before the logout began (a third of them are delayed so), the
// logout ends it too: without the re-login's pointer, it ended nothing.
func TestReloginRacesLogout(t *testing.T) {
	m1, m2 := twoInstances(t, Config{})
	ordered := 0
	for i := range 300 {
		user := "racer" + strconv.Itoa(i)
		c, _ := login(t, m1, user)
		var (
			wg                      sync.WaitGroup
			reloginDone, logoutFrom time.Time
			reloginCookie           string
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			jitter()
			ctx := load(m1, c)
			if _, err := Create(ctx, user); err != nil {
				t.Errorf("round %d: Create = %v", i, err)
			}
			h := http.Header{}
			if err := m1.Commit(ctx, h); err != nil {
				t.Errorf("round %d: the re-login's Commit = %v", i, err)
			}
			if ck, ok := sessionCookie(m1, h); ok {
				reloginCookie = ck.Value
			}
			reloginDone = time.Now()
		}()
		go func() {
			defer wg.Done()
			jitter()
			if i%3 == 0 {
				time.Sleep(5 * time.Millisecond) // after the re-login, most likely
			}
			logoutFrom = time.Now()
			ctx := load(m2, c)
			if err := Destroy(ctx); err != nil {
				t.Errorf("round %d: Destroy = %v", i, err)
			}
			if err := m2.Commit(ctx, http.Header{}); err != nil {
				t.Errorf("round %d: the logout's Commit = %v", i, err)
			}
		}()
		wg.Wait()
		list, err := m1.List(context.Background(), user)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case len(list) > 1:
			t.Fatalf("round %d: %d sessions left, want at most 1", i, len(list))
		case len(list) == 1 && (reloginCookie == "" || userOf(t, m1, reloginCookie) != user):
			t.Fatalf("round %d: a session left that no answer handed out", i)
		}
		if reloginDone.Before(logoutFrom) {
			ordered++
			if len(list) != 0 {
				t.Fatalf("round %d: the logout began after the re-login answered, and the re-login's session lives", i)
			}
		}
	}
	if ordered < 30 {
		t.Fatalf("only %d of 300 rounds had the re-login answer before the logout began: the check ran too rarely", ordered)
	}
	t.Logf("%d of 300 rounds with the re-login answered before the logout began", ordered)
}
