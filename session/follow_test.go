package session

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"
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
