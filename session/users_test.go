package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/redisstore"
)

// eventLog collects the events a Manager hands to Config.OnEvent.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

// take returns the events collected so far and forgets them.
func (l *eventLog) take() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.events
	l.events = nil
	return e
}

// TestInvalidUserID checks that user ids that JSON would alter, or that
// name no one, are refused before anything reaches Redis.
func TestInvalidUserID(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	cookie, _ := login(t, m, "alice")
	size := r.Do(t, "DBSIZE")
	tests := []struct{ name, id string }{
		{"empty", ""},
		{"invalid UTF-8", "a\xff"},
		{"truncated rune", "caf\xc3"},
		{"lone surrogate", "\xed\xa0\x80"},
		{"one byte too long", strings.Repeat("u", MaxUserIDLength+1)},
		{"one rune too long", strings.Repeat("é", MaxUserIDLength/2) + "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []struct{ who, cookie string }{{"anonymous", ""}, {"alice", cookie}} {
				h, err := exchange(t, m, c.cookie, func(ctx context.Context) {
					r.ResetStats(t)
					if info, err := Create(ctx, tc.id); !errors.Is(err, ErrInvalidUserID) || info != (Info{}) {
						t.Errorf("Create(%.20q) by %s = %+v, %v; want ErrInvalidUserID", tc.id, c.who, info, err)
					}
					if n := r.TotalCalls(t); n != 0 {
						t.Errorf("Create(%.20q) by %s sent %d Redis commands, want 0", tc.id, c.who, n)
					}
					if u, _ := UserID(ctx); u != strings.TrimPrefix(c.who, "anonymous") {
						t.Errorf("UserID after Create(%.20q) by %s = %q, want unchanged", tc.id, c.who, u)
					}
				})
				if err != nil {
					t.Errorf("Commit after Create(%.20q) = %v, want nil", tc.id, err)
				}
				if sc, ok := sessionCookie(m, h); ok {
					t.Errorf("Create(%.20q) by %s set cookie %v, want none", tc.id, c.who, sc)
				}
			}
			ctx := context.Background()
			r.ResetStats(t)
			if _, err := m.List(ctx, tc.id); !errors.Is(err, ErrInvalidUserID) {
				t.Errorf("List(%.20q) = %v, want ErrInvalidUserID", tc.id, err)
			}
			if err := m.Revoke(ctx, tc.id, "x"); !errors.Is(err, ErrInvalidUserID) {
				t.Errorf("Revoke(%.20q) = %v, want ErrInvalidUserID", tc.id, err)
			}
			if n, err := m.RevokeAll(ctx, tc.id); !errors.Is(err, ErrInvalidUserID) || n != 0 {
				t.Errorf("RevokeAll(%.20q) = %d, %v; want 0, ErrInvalidUserID", tc.id, n, err)
			}
			if n := r.TotalCalls(t); n != 0 {
				t.Errorf("List, Revoke and RevokeAll of %.20q sent %d Redis commands, want 0", tc.id, n)
			}
			if got := r.Do(t, "DBSIZE"); got != size {
				t.Errorf("DBSIZE = %v, want %v: an invalid id wrote to Redis", got, size)
			}
		})
	}
	if u := userOf(t, m, cookie); u != "alice" {
		t.Errorf("alice's session after the refused logins: UserID = %q, want alice", u)
	}
}

// TestLongestUserID checks that ids of exactly MaxUserIDLength bytes work.
func TestLongestUserID(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	for _, id := range []string{strings.Repeat("u", MaxUserIDLength), strings.Repeat("é", MaxUserIDLength/2)} {
		cookie, sid := login(t, m, id)
		if u := userOf(t, m, cookie); u != id {
			t.Errorf("UserID after Create(%d bytes) = %.20q, want the id", len(id), u)
		}
		infos, err := m.List(context.Background(), id)
		if err != nil || len(infos) != 1 || infos[0].ID != sid || infos[0].UserID != id {
			t.Errorf("List(%d bytes) = %+v, %v; want session %.8s", len(id), infos, err, sid)
		}
	}
}

// TestList checks that List returns the user's sessions only, oldest
// first, with Current set on the asking request's own.
func TestList(t *testing.T) {
	m, _, clk := newTestManager(t, Config{})
	var cookies, ids []string
	var created []time.Time
	for range 3 {
		c, id := login(t, m, "alice")
		// A record keeps times in whole milliseconds.
		cookies, ids, created = append(cookies, c), append(ids, id), append(created, wholeMilli(clk.t))
		clk.t = clk.t.Add(time.Minute)
	}
	_, bobID := login(t, m, "bob")

	serve(t, m, cookies[1], func(ctx context.Context) {
		infos, err := m.List(ctx, "alice")
		if err != nil || len(infos) != len(ids) {
			t.Fatalf("List(alice) = %d sessions, %v; want %d", len(infos), err, len(ids))
		}
		for i, info := range infos {
			if info.ID != ids[i] || info.UserID != "alice" || !info.CreatedAt.Equal(created[i]) {
				t.Errorf("List(alice)[%d] = %.8s of %q created %v, want %.8s of alice created %v (oldest first)",
					i, info.ID, info.UserID, info.CreatedAt, ids[i], created[i])
			}
			if want := i == 1; info.Current != want {
				t.Errorf("List(alice)[%d].Current = %v, want %v", i, info.Current, want)
			}
			if info.ExpiresAt.Before(info.CreatedAt.Add(m.cfg.Lifetime)) || info.IP != "192.0.2.1" {
				t.Errorf("List(alice)[%d] = %+v, want the deadline a lifetime after creation and IP 192.0.2.1", i, info)
			}
		}
		infos, err = m.List(ctx, "bob")
		if err != nil || len(infos) != 1 || infos[0].ID != bobID || infos[0].Current {
			t.Errorf("List(bob) from alice's request = %+v, %v; want bob's one session, not current", infos, err)
		}
		if infos, err := m.List(ctx, "carol"); err != nil || len(infos) != 0 {
			t.Errorf("List(carol) = %+v, %v; want none", infos, err)
		}
	})
	infos, err := m.List(context.Background(), "alice")
	if err != nil || len(infos) != 3 {
		t.Fatalf("List(alice) outside a request = %d sessions, %v; want 3", len(infos), err)
	}
	for i, info := range infos {
		if info.Current {
			t.Errorf("List(alice)[%d].Current outside a request = true, want false", i)
		}
	}
}

// TestListLeavesOutEnded checks that List leaves out a session past its
// absolute deadline whose record Redis still keeps, as it may for a moment
// (a time to live set by another instance's clock).
func TestListLeavesOutEnded(t *testing.T) {
	m, _, clk := newTestManager(t, Config{Lifetime: time.Hour, IdleTimeout: -1})
	login(t, m, "alice")
	clk.t = clk.t.Add(30 * time.Minute)
	_, live := login(t, m, "alice")
	clk.t = clk.t.Add(31 * time.Minute) // past the first login's deadline
	infos, err := m.List(context.Background(), "alice")
	if err != nil || len(infos) != 1 || infos[0].ID != live {
		t.Fatalf("List(alice) past the first session's deadline = %+v, %v; want the second session alone", infos, err)
	}
}

// TestRevoke checks that Revoke ends one of the user's own sessions only,
// and that the revoked token's next request is anonymous without its
// cookie being touched.
func TestRevoke(t *testing.T) {
	events := &eventLog{}
	m, _, _ := newTestManager(t, Config{OnEvent: events.add})
	a1, id1 := login(t, m, "alice")
	a2, id2 := login(t, m, "alice")
	b, bobID := login(t, m, "bob")
	events.take()

	h, err := exchange(t, m, a1, func(ctx context.Context) {
		for _, tc := range []struct{ user, id string }{
			{"alice", bobID},  // another user's session
			{"bob", id2},      // alice's session, claimed as bob's
			{"alice", "nope"}, // no session at all
			{"alice", ""},
		} {
			if err := m.Revoke(ctx, tc.user, tc.id); !errors.Is(err, ErrNotFound) {
				t.Errorf("Revoke(%s, %.8q) = %v, want ErrNotFound", tc.user, tc.id, err)
			}
		}
		if err := m.Revoke(ctx, "alice", id2); err != nil {
			t.Errorf("Revoke(alice, her other session) = %v, want nil", err)
		}
		if u, _ := UserID(ctx); u != "alice" {
			t.Errorf("UserID after revoking another session = %q, want alice", u)
		}
	})
	if c, ok := sessionCookie(m, h); ok || err != nil {
		t.Errorf("revoking another session: Set-Cookie %v, Commit %v; want none, nil", c, err)
	}
	if got := events.take(); len(got) != 1 || got[0].Kind != EventRevoked || got[0].SessionID != id2 || got[0].UserID != "alice" {
		t.Errorf("events of Revoke = %+v, want one revoked of alice's %.8s", got, id2)
	}
	for _, tc := range []struct{ name, cookie, want string }{
		{"revoked", a2, ""},
		{"revoker", a1, "alice"},
		{"bob", b, "bob"},
	} {
		if u := userOf(t, m, tc.cookie); u != tc.want {
			t.Errorf("%s's next request: UserID = %q, want %q", tc.name, u, tc.want)
		}
	}
	if got := events.take(); len(got) != 0 {
		t.Errorf("events of the revoked token's next request = %+v, want none", got)
	}

	// Revoking the request's own session logs it out in the response.
	h, err = exchange(t, m, a1, func(ctx context.Context) {
		if err := m.Revoke(ctx, "alice", id1); err != nil {
			t.Errorf("Revoke(alice, own session) = %v, want nil", err)
		}
		if u, ok := UserID(ctx); ok {
			t.Errorf("UserID after revoking the own session = %q, want anonymous", u)
		}
	})
	if c, ok := sessionCookie(m, h); !ok || c.Value != "" || c.MaxAge >= 0 || err != nil {
		t.Errorf("revoking the own session: Set-Cookie %v, Commit %v; want an expired cookie", c, err)
	}
	if infos, err := m.List(context.Background(), "alice"); err != nil || len(infos) != 0 {
		t.Errorf("List(alice) after revoking both = %+v, %v; want none", infos, err)
	}
}

// TestRevokeMalformedID: an id no session can have (see Info.ID) is not
// found, and Revoke sends Redis nothing for it: not even the prune of the
// user's index that a look at it would write.
func TestRevokeMalformedID(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	_, id := login(t, m, "alice")
	tagged := "{abcd}" + strings.Repeat("A", 22)
	before := r.TotalCalls(t)
	for _, bad := range []string{
		"", "nope", "*", "\x00", strings.Repeat("A", 3000),
		id[:len(id)-1], id + "A", strings.Repeat("A", 21) + "/", strings.Repeat("A", 42) + "=",
		"{ab*d}" + strings.Repeat("A", 22), tagged[:len(tagged)-1],
	} {
		if err := m.Revoke(context.Background(), "alice", bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("Revoke(alice, %.12q) = %v, want ErrNotFound", bad, err)
		}
	}
	if sent := r.TotalCalls(t) - before; sent != 0 {
		t.Errorf("Revoke of malformed ids sent Redis %d commands, want none", sent)
	}
	for _, good := range []string{id, strings.Repeat("A", 43), tagged} {
		if !validID(good) {
			t.Errorf("validID(%q) = false, want true", good)
		}
	}
}

// TestRevokeByFirstID has a user revoke a session by the row a list showed
// before the session renewed: Revoke finds it by the id it was created
// under (Info.FirstID) and ends it under its new token. A first id of
// another user's session is not found.
func TestRevokeByFirstID(t *testing.T) {
	events := &eventLog{}
	m, _, clk := newTestManager(t, Config{OnEvent: events.add})
	a1, _ := login(t, m, "alice")
	clk.t = clk.t.Add(time.Minute)
	a2, id2 := login(t, m, "alice")
	b, bobID := login(t, m, "bob")
	listed, err := m.List(context.Background(), "alice")
	if err != nil || len(listed) != 2 || listed[1].ID != id2 || listed[1].FirstID != id2 {
		t.Fatalf("List(alice) = %+v, %v; want her 2 sessions, the newer with ID and FirstID %.8s", listed, err, id2)
	}
	a2 = renew(t, m, renew(t, m, a2))
	b = renew(t, m, b)
	var renewedID string
	serve(t, m, a2, func(ctx context.Context) {
		info, _ := FromContext(ctx)
		if renewedID = info.ID; info.ID == id2 || info.FirstID != id2 {
			t.Errorf("FromContext after two renewals: ID %.8s, FirstID %.8s; want a new ID, FirstID %.8s", info.ID, info.FirstID, id2)
		}
	})
	events.take()

	ctx := context.Background()
	if err := m.Revoke(ctx, "alice", bobID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke(alice, bob's first id) = %v, want ErrNotFound", err)
	}
	if err := m.Revoke(ctx, "alice", listed[1].FirstID); err != nil {
		t.Errorf("Revoke(alice, the first id listed before two renewals) = %v, want nil", err)
	}
	if got := events.take(); len(got) != 1 || got[0].Kind != EventRevoked || got[0].SessionID != renewedID {
		t.Errorf("events of Revoke = %+v, want one revoked of the renewed id %.8s", got, renewedID)
	}
	for _, tc := range []struct{ name, cookie, want string }{
		{"revoked, renewed", a2, ""},
		{"alice's other", a1, "alice"},
		{"bob, renewed", b, "bob"},
	} {
		if u := userOf(t, m, tc.cookie); u != tc.want {
			t.Errorf("%s session after the revocation: UserID = %q, want %q", tc.name, u, tc.want)
		}
	}
}

// TestUnvouchedAbsence reads a token whose session has ended through a
// store that waits for a replica (redisstore.Config.WaitReplicas) on a
// Redis without one, as a master that a failover has just replaced is: the
// store finds no record but cannot vouch for that. The request is served
// as in an outage (LoadError, so RequireAuth's 503), never as signed out;
// a logout sent with it fails the same way; and a login on that browser
// still goes on, as on any token that leads nowhere. Listings of a user's
// sessions are not vouched for either.
func TestUnvouchedAbsence(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	store, err := redisstore.Open(redisstore.Config{Addr: r.Addr(), Timeout: 200 * time.Millisecond, WaitReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	w, err := New(store, Config{Keys: [][]byte{testKey(7)}, InsecureCookie: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ended, _ := login(t, m, "alice")
	serve(t, m, ended, func(ctx context.Context) {
		if err := Destroy(ctx); err != nil {
			t.Fatal(err)
		}
	})

	if _, err := exchange(t, w, ended, func(ctx context.Context) {
		if err := LoadError(ctx); !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, ErrEndUnconfirmed) {
			t.Errorf("LoadError of an ended session that the store cannot vouch is gone = %v, want ErrStoreUnavailable and ErrEndUnconfirmed", err)
		}
		if err := Destroy(ctx); !errors.Is(err, ErrStoreUnavailable) {
			t.Errorf("Destroy = %v, want ErrStoreUnavailable: the logout is not confirmed", err)
		}
	}); err != nil {
		t.Errorf("Commit: %v", err)
	}

	// A login that fails (Redis out of memory) leaves the request as
	// unsure of its session as before: it is not taken for signed out,
	// which would answer its logout as done.
	if _, err := exchange(t, w, ended, func(ctx context.Context) {
		r.Do(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
		r.Do(t, "CONFIG", "SET", "maxmemory", "1")
		_, err := Create(ctx, "bob")
		r.Do(t, "CONFIG", "SET", "maxmemory", "0")
		if !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("Create with Redis out of memory = %v, want ErrStoreUnavailable", err)
		}
		if err := LoadError(ctx); !errors.Is(err, ErrEndUnconfirmed) {
			t.Errorf("LoadError after the failed login = %v, want ErrEndUnconfirmed still", err)
		}
		if err := Put(ctx, "flash", "x"); !errors.Is(err, ErrStoreUnavailable) {
			t.Errorf("Put after the failed login = %v, want ErrStoreUnavailable", err)
		}
		if err := Destroy(ctx); !errors.Is(err, ErrStoreUnavailable) {
			t.Errorf("Destroy after the failed login = %v, want ErrStoreUnavailable: the logout is not confirmed", err)
		}
	}); err != nil {
		t.Errorf("Commit after the failed login: %v", err)
	}

	h, err := exchange(t, w, ended, func(ctx context.Context) {
		if _, err := Create(ctx, "bob"); err != nil {
			t.Errorf("Create on a browser whose token led nowhere unvouched = %v, want nil", err)
		}
	})
	if err != nil {
		t.Fatalf("Commit of the login: %v", err)
	}
	c, ok := sessionCookie(w, h)
	if !ok || c.Value == "" {
		t.Fatalf("the login set no cookie: %v", h)
	}
	if user := userOf(t, w, c.Value); user != "bob" {
		t.Errorf("user of the login's cookie = %q, want bob", user)
	}

	// The listing of carol's sessions is not vouched for either: List
	// fails, a Revoke of a session missing from it is not answered as not
	// found (as one sent again after a failed one would be), and a Revoke
	// of a session it lists still ends it.
	_, live := login(t, m, "carol")
	_, gone := login(t, m, "carol")
	if err := m.Revoke(context.Background(), "carol", gone); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if list, err := w.List(ctx, "carol"); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("List, unvouched = %d sessions, %v; want ErrStoreUnavailable", len(list), err)
	}
	if err := w.Revoke(ctx, "carol", gone); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("Revoke of an ended session, unvouched = %v, want ErrStoreUnavailable, not ErrNotFound", err)
	}
	if err := w.Revoke(ctx, "carol", live); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("Revoke of a live session, unconfirmed = %v, want ErrStoreUnavailable", err)
	}
	if list, err := m.List(ctx, "carol"); err != nil || len(list) != 0 {
		t.Errorf("carol's sessions after the Revoke = %d, %v; want none: it ends them on the master", len(list), err)
	}
}

// absentOnceStore's Load reports once, for the id absent, no record it
// could vouch for, as redisstore's with WaitReplicas does on a master
// without its replicas; it refuses every new session. (It embeds the
// Store itself, so that the optional methods the Manager looks for, the
// pointers of renewals among them, are its too.)
type absentOnceStore struct {
	*redisstore.Store
	absent string
}

func (s *absentOnceStore) AddUserSession(context.Context, NewSession) ([]string, error) {
	return nil, errors.New("injected: OOM command not allowed when used memory > 'maxmemory'")
}

func (s *absentOnceStore) Load(ctx context.Context, id string, ttl time.Duration) ([]byte, bool, error) {
	if id == s.absent {
		s.absent = ""
		return nil, false, unvouched{}
	}
	return s.Store.Load(ctx, id, ttl)
}

// unvouched is absentOnceStore's error.
type unvouched struct{}

func (unvouched) Error() string { return "injected: no record, unvouched" }
func (unvouched) Absent() bool  { return true }

// TestFailedLoginAfterUnvouchedLoad: a login whose load found no record
// it could vouch for, on a token whose session a Renew had moved, ends
// that session, then fails (the store refuses the new one).
// The request stays unsure of its own session, but its answer is kept
// out of caches (Cache-Control: no-store), as after any login that ended
// a session.
func TestFailedLoginAfterUnvouchedLoad(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	old, _ := login(t, m, "alice")
	renewed := renew(t, m, old)
	store := &absentOnceStore{Store: m.store.(*redisstore.Store), absent: idOf(tokenOf(t, m, old))}
	w, err := New(store, Config{Keys: m.cfg.Keys, InsecureCookie: true, Logger: m.log})
	if err != nil {
		t.Fatal(err)
	}
	h, err := exchange(t, w, old, func(ctx context.Context) {
		if err := LoadError(ctx); !errors.Is(err, ErrEndUnconfirmed) {
			t.Fatalf("LoadError = %v, want ErrEndUnconfirmed", err)
		}
		if _, err := Create(ctx, "bob"); !errors.Is(err, ErrStoreUnavailable) {
			t.Errorf("Create refused by the store = %v, want ErrStoreUnavailable", err)
		}
	})
	if err != nil {
		t.Errorf("Commit = %v", err)
	}
	if u := userOf(t, m, renewed); u != "" {
		t.Fatalf("the renewed session after the login: user %q, want it ended", u)
	}
	if got := h.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control of the failed login that ended a session = %q, want no-store", got)
	}
}

// TestUnconfirmedEndingsReported ends sessions through a store that waits
// for a replica (redisstore.Config.WaitReplicas) on a Redis without one:
// every call deletes its sessions on the master, then fails, and
// Config.OnEvent still hears of each session it ended, once. With a
// TagKey, outside a Cluster, "log out everywhere" and "sign out the
// others" first empty the untagged index, whose pass fails unconfirmed
// too: the tagged sessions are ended all the same.
func TestUnconfirmedEndingsReported(t *testing.T) {
	for _, tagKey := range [][]byte{nil, testKey(9)} {
		t.Run(fmt.Sprintf("TagKey %v", tagKey != nil), func(t *testing.T) {
			unconfirmedEndingsReported(t, tagKey)
		})
	}
}

// unconfirmedEndingsReported is TestUnconfirmedEndingsReported with the
// TagKey tagKey.
func unconfirmedEndingsReported(t *testing.T, tagKey []byte) {
	m, r, _ := newTestManager(t, Config{TagKey: tagKey})
	store, err := redisstore.Open(redisstore.Config{Addr: r.Addr(), Timeout: 200 * time.Millisecond, WaitReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	events := &eventLog{}
	w, err := New(store, Config{Keys: [][]byte{testKey(7)}, TagKey: tagKey, InsecureCookie: true, OnEvent: events.add,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	logins := func(user string, n int) (cookies, ids []string) {
		for range n {
			c, id := login(t, m, user)
			cookies, ids = append(cookies, c), append(ids, id)
		}
		return cookies, ids
	}
	ctx := context.Background()
	tests := []struct {
		name string
		// end ends some of user's sessions through w and returns the
		// ids of those it ends, the kind of their events, and the count
		// it returned (-1 for none) and its error.
		end func(user string) (ended []string, kind EventKind, n int, err error)
	}{
		{"Revoke", func(user string) ([]string, EventKind, int, error) {
			_, ids := logins(user, 2)
			return ids[:1], EventRevoked, -1, w.Revoke(ctx, user, ids[0])
		}},
		{"RevokeAll", func(user string) ([]string, EventKind, int, error) {
			_, ids := logins(user, 3)
			n, err := w.RevokeAll(ctx, user)
			return ids, EventRevoked, n, err
		}},
		{"RevokeOthers", func(user string) ([]string, EventKind, int, error) {
			cookies, ids := logins(user, 3)
			var n int
			var err error
			exchange(t, w, cookies[0], func(ctx context.Context) { n, err = w.RevokeOthers(ctx) })
			return ids[1:], EventRevoked, n, err
		}},
		{"Destroy", func(user string) ([]string, EventKind, int, error) {
			cookies, ids := logins(user, 2)
			var err error
			exchange(t, w, cookies[0], func(ctx context.Context) { err = Destroy(ctx) })
			return ids[:1], EventDestroyed, -1, err
		}},
		{"re-login", func(user string) ([]string, EventKind, int, error) {
			cookies, ids := logins(user, 2)
			var err error
			exchange(t, w, cookies[0], func(ctx context.Context) { _, err = Create(ctx, user) })
			// The new session, whose token the failed login never
			// handed out, is gone too: it would be a device nobody
			// holds, counted against a limit.
			// (Listed through m: w's listing, on a Redis without its
			// replica, is not vouched for, and fails.)
			if list, lerr := m.List(ctx, user); lerr != nil || len(list) != 1 || list[0].ID != ids[1] {
				t.Errorf("List after the unconfirmed re-login = %v, %v; want the other session alone", list, lerr)
			}
			return ids[:1], EventDestroyed, -1, err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			user := "u-" + tc.name
			ended, kind, n, err := tc.end(user)
			if !errors.Is(err, ErrStoreUnavailable) {
				t.Errorf("%s without a replica to confirm = %v, want ErrStoreUnavailable", tc.name, err)
			}
			if n >= 0 && n != len(ended) {
				t.Errorf("%s = %d, want %d: the sessions it ended", tc.name, n, len(ended))
			}
			var got []string
			for _, e := range events.take() {
				if e.Kind != kind || e.UserID != user {
					t.Errorf("%s: event %+v, want %s events of %s only", tc.name, e, kind, user)
				}
				got = append(got, e.SessionID)
			}
			slices.Sort(got)
			slices.Sort(ended)
			if !slices.Equal(got, ended) {
				t.Errorf("%s: %s events of %d sessions, want one for each of the %d it ended", tc.name, kind, len(got), len(ended))
			}
			list, err := m.List(ctx, user)
			if err != nil {
				t.Fatal(err)
			}
			for _, info := range list {
				if slices.Contains(ended, info.ID) {
					t.Errorf("%s: session %.8s still listed, want it ended", tc.name, info.ID)
				}
			}
		})
	}
}

// TestRevokeAll checks that RevokeAll ends every session of the user and
// counts them, and leaves other users alone.
func TestRevokeAll(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	var alice []string
	for range 3 {
		c, _ := login(t, m, "alice")
		alice = append(alice, c)
	}
	bob, _ := login(t, m, "bob")
	ctx := context.Background()
	for _, tc := range []struct {
		user string
		want int
	}{{"alice", 3}, {"alice", 0}, {"carol", 0}} {
		if n, err := m.RevokeAll(ctx, tc.user); n != tc.want || err != nil {
			t.Errorf("RevokeAll(%s) = %d, %v; want %d, nil", tc.user, n, err, tc.want)
		}
	}
	for i, c := range alice {
		if u := userOf(t, m, c); u != "" {
			t.Errorf("alice's session %d after RevokeAll: UserID = %q, want anonymous", i, u)
		}
	}
	if u := userOf(t, m, bob); u != "bob" {
		t.Errorf("bob after RevokeAll(alice): UserID = %q, want bob", u)
	}

	// From one of the user's own requests, the response logs it out.
	c, _ := login(t, m, "alice")
	h, err := exchange(t, m, c, func(ctx context.Context) {
		if n, err := m.RevokeAll(ctx, "alice"); n != 1 || err != nil {
			t.Errorf("RevokeAll(alice) from her request = %d, %v; want 1, nil", n, err)
		}
	})
	if sc, ok := sessionCookie(m, h); !ok || sc.MaxAge >= 0 || err != nil {
		t.Errorf("RevokeAll of the own session: Set-Cookie %v, Commit %v; want an expired cookie", sc, err)
	}
}

// TestRevokeOthers checks that RevokeOthers keeps the current session and
// ends the user's others.
func TestRevokeOthers(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	var alice []string
	for range 3 {
		c, _ := login(t, m, "alice")
		alice = append(alice, c)
	}
	bob, _ := login(t, m, "bob")
	for _, want := range []int{2, 0} {
		h, err := exchange(t, m, alice[1], func(ctx context.Context) {
			if n, err := m.RevokeOthers(ctx); n != want || err != nil {
				t.Errorf("RevokeOthers = %d, %v; want %d, nil", n, err, want)
			}
			if u, _ := UserID(ctx); u != "alice" {
				t.Errorf("UserID after RevokeOthers = %q, want alice", u)
			}
		})
		if c, ok := sessionCookie(m, h); ok || err != nil {
			t.Errorf("RevokeOthers: Set-Cookie %v, Commit %v; want none, nil", c, err)
		}
	}
	for i, want := range []string{"", "alice", ""} {
		if u := userOf(t, m, alice[i]); u != want {
			t.Errorf("alice's session %d after RevokeOthers: UserID = %q, want %q", i, u, want)
		}
	}
	if u := userOf(t, m, bob); u != "bob" {
		t.Errorf("bob after alice's RevokeOthers: UserID = %q, want bob", u)
	}
	serve(t, m, "", func(ctx context.Context) {
		if n, err := m.RevokeOthers(ctx); !errors.Is(err, ErrNoSession) || n != 0 {
			t.Errorf("RevokeOthers when anonymous = %d, %v; want 0, ErrNoSession", n, err)
		}
	})
	if n, err := m.RevokeOthers(context.Background()); !errors.Is(err, ErrNoSession) || n != 0 {
		t.Errorf("RevokeOthers outside a request = %d, %v; want 0, ErrNoSession", n, err)
	}
}

// TestIPWithoutPort logs in from requests whose RemoteAddr a middleware
// that trusts a proxy rewrote to a bare address, as chi's RealIP and
// gorilla's ProxyHeaders do: the session keeps that address, as it keeps
// the host of a host:port. A host that is no address is kept as nothing,
// not as it came, which may not be UTF-8.
func TestIPWithoutPort(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	for _, tc := range []struct{ remote, want string }{
		{"203.0.113.5:1234", "203.0.113.5"},
		{"203.0.113.5", "203.0.113.5"},
		{"2001:db8::5", "2001:db8::5"},
		{"[2001:db8::5]:443", "2001:db8::5"},
		{"not an address", ""},
		{"not an address:80", ""},
		{"caf\xe9:80", ""},
		{"[fe80::1%eth0]:80", "fe80::1%eth0"},
	} {
		req := httptest.NewRequest("POST", "/login", nil)
		req.RemoteAddr = tc.remote
		ctx := m.Load(req)
		info, err := Create(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Commit(ctx, http.Header{}); err != nil {
			t.Fatal(err)
		}
		if info.IP != tc.want {
			t.Errorf("a login from RemoteAddr %q: IP %q, want %q", tc.remote, info.IP, tc.want)
		}
	}
}

// TestLogoutThenLoginNotStored logs out and in again in one request (a
// "switch account" button): the response keeps Cache-Control: no-store,
// as Destroy's documentation says, so that no copy of the logged-out
// user's pages is kept. The login dropped it.
func TestLogoutThenLoginNotStored(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	cookie, _ := login(t, m, "alice")
	req := httptest.NewRequest("POST", "/switch", nil)
	req.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: cookie})
	ctx := m.Load(req)
	if err := Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	if err := m.Commit(ctx, h); err != nil {
		t.Fatal(err)
	}
	if got := h.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Destroy then Create: Cache-Control %q, want no-store", got)
	}
}

// TestReloginNotStored: a login on a browser already signed in ends that
// session, as a logout would, so its response is Cache-Control: no-store,
// whether the same user signs in again (the old session replaced in the
// login's own step) or another one (the old session ended first); a login
// on a browser signed out is private, no-cache="Set-Cookie".
func TestReloginNotStored(t *testing.T) {
	m, _, _ := newTestManager(t, Config{})
	cacheControl := func(cookie, user string) string {
		t.Helper()
		h, err := exchange(t, m, cookie, func(ctx context.Context) {
			if _, err := Create(ctx, user); err != nil {
				t.Fatalf("Create(%s): %v", user, err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return h.Get("Cache-Control")
	}
	if got, want := cacheControl("", "alice"), `private, no-cache="Set-Cookie"`; got != want {
		t.Errorf("a login signed out: Cache-Control %q, want %q", got, want)
	}
	cookie, _ := login(t, m, "alice")
	if got := cacheControl(cookie, "alice"); got != "no-store" {
		t.Errorf("alice signing in again: Cache-Control %q, want no-store", got)
	}
	cookie, _ = login(t, m, "alice")
	if got := cacheControl(cookie, "bob"); got != "no-store" {
		t.Errorf("bob signing in on alice's browser: Cache-Control %q, want no-store", got)
	}
}

// failingLoads is a Store whose Load fails while fail is set, as during a
// Redis hiccup at the moment a request loads its session.
type failingLoads struct {
	Store
	fail bool
}

func (s *failingLoads) Load(ctx context.Context, id string, ttl time.Duration) ([]byte, bool, error) {
	if s.fail {
		s.fail = false // the hiccup is over after this one
		return nil, false, errors.New("redis: connection reset by peer")
	}
	return s.Store.Load(ctx, id, ttl)
}

// failingMoverLoads is failingLoads over a redisstore.Store that keeps
// its MovedTo in sight (failingLoads's Store hides it): the pointers of
// renewals and re-logins are followed through it.
type failingMoverLoads struct {
	*redisstore.Store
	fail      bool
	moveFails bool // every MovedTo fails too
}

func (s *failingMoverLoads) MovedTo(ctx context.Context, id string) (string, error) {
	if s.moveFails {
		return "", errors.New("redis: connection reset by peer")
	}
	return s.Store.MovedTo(ctx, id)
}

func (s *failingMoverLoads) Load(ctx context.Context, id string, ttl time.Duration) ([]byte, bool, error) {
	if s.fail {
		s.fail = false
		return nil, false, errors.New("redis: connection reset by peer")
	}
	return s.Store.Load(ctx, id, ttl)
}

// downStore is a store whose Redis does not answer: every call it records
// fails as a stalled Redis's would, after its timeout.
type downStore struct {
	Store
	calls []string
}

var errDown = errors.New("redis: i/o timeout")

func (s *downStore) Load(context.Context, string, time.Duration) ([]byte, bool, error) {
	s.calls = append(s.calls, "Load")
	return nil, false, errDown
}

func (s *downStore) Remove(context.Context, string) error {
	s.calls = append(s.calls, "Remove")
	return errDown
}

func (s *downStore) RemoveUserSession(context.Context, string, string) (bool, error) {
	s.calls = append(s.calls, "RemoveUserSession")
	return false, errDown
}

func (s *downStore) AddUserSession(context.Context, NewSession) ([]string, error) {
	s.calls = append(s.calls, "AddUserSession")
	return nil, errDown
}

// TestEndWhileStoreDown logs out, and logs in again, while the store does
// not answer: after the failed load, the one read of the presented
// session's record (see recordMeta) fails, and the call returns
// ErrStoreUnavailable at once, without a third call to end the session,
// so that a stalled Redis holds a logout for no more than the two store
// timeouts the README promises.
func TestEndWhileStoreDown(t *testing.T) {
	for _, relogin := range []bool{false, true} {
		m, _, _ := newTestManager(t, Config{})
		cookie, id := login(t, m, "alice")
		real := m.store
		ds := &downStore{Store: real}
		m.store = ds
		serve(t, m, cookie, func(ctx context.Context) {
			var err error
			if relogin {
				_, err = Create(ctx, "alice")
			} else {
				err = Destroy(ctx)
			}
			if !errors.Is(err, ErrStoreUnavailable) {
				t.Errorf("relogin %v with the store down: %v, want ErrStoreUnavailable", relogin, err)
			}
		})
		if want := []string{"Load", "Load"}; !slices.Equal(ds.calls, want) {
			t.Errorf("relogin %v with the store down: store calls %v, want %v (the load, the record's read)", relogin, ds.calls, want)
		}
		if _, found, err := real.Load(context.Background(), id, 0); err != nil || !found {
			t.Errorf("relogin %v: the session after a failed logout: found %v, %v; want it alive, the failure reported", relogin, found, err)
		}
	}
}

// endAfterFailedLoad sends cookie in a request whose load fails (m's
// store must fail its next Load), which logs alice in again when relogin
// is set, and logs out otherwise.
func endAfterFailedLoad(t *testing.T, m *Manager, cookie string, relogin bool) {
	t.Helper()
	serve(t, m, cookie, func(ctx context.Context) {
		if LoadError(ctx) == nil {
			t.Fatal("the load did not fail")
		}
		var err error
		if relogin {
			_, err = Create(ctx, "alice")
		} else {
			err = Destroy(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestEndAfterFailedLoad logs out, and logs in again, in requests whose
// session could not be read: the session ends as any logout ends it, out
// of its user's index, with its destroyed event, though the request
// knows only the token it presented: deleting the record alone and
// telling nobody, it would leave an audit log without the logout.
func TestEndAfterFailedLoad(t *testing.T) {
	for _, relogin := range []bool{false, true} {
		var events eventLog
		m, _, _ := newTestManager(t, Config{OnEvent: events.add})
		cookie, id := login(t, m, "alice")
		events.take()
		fs := &failingLoads{Store: m.store, fail: true}
		m.store = fs
		endAfterFailedLoad(t, m, cookie, relogin)
		got := events.take()
		i := slices.IndexFunc(got, func(e Event) bool { return e.Kind == EventDestroyed })
		if i < 0 || got[i].UserID != "alice" || got[i].SessionID != id {
			t.Errorf("relogin %v: events %+v, want alice's session %.8s destroyed", relogin, got, id)
		}
		ids, _, err := m.store.UserSessions(context.Background(), "alice")
		if want := map[bool]int{false: 0, true: 1}[relogin]; err != nil || len(ids) != want || slices.Contains(ids, id) {
			t.Errorf("relogin %v: alice's index %v, %v; want %d sessions, not the ended one", relogin, ids, err, want)
		}
	}

	// The token's session had ended (expired, or logged out elsewhere):
	// the logout only expires the cookie, as one after a load that did
	// not fail does. It sends no Clear-Site-Data, which would delete the
	// cookies of every app on the domain.
	{
		m, r, _ := newTestManager(t, Config{})
		old, id := login(t, m, "alice")
		r.Do(t, "DEL", "session:"+id)
		m.store = &failingMoverLoads{Store: m.store.(*redisstore.Store), fail: true}
		ctx := load(m, old)
		if LoadError(ctx) == nil {
			t.Fatal("the load did not fail")
		}
		if err := Destroy(ctx); err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		if err := m.Commit(ctx, h); err != nil {
			t.Fatal(err)
		}
		if c, ok := sessionCookie(m, h); !ok || c.MaxAge >= 0 {
			t.Errorf("the logout of an ended session after a failed load set %v, want the cookie expired", h["Set-Cookie"])
		}
		if v := h.Get("Clear-Site-Data"); v != "" {
			t.Errorf("the logout of an ended session after a failed load sent Clear-Site-Data %s, want none", v)
		}
	}

	// The same, but the store fails again as the logout follows the token:
	// the logout fails, and the request stays one whose session could not
	// be read, which may not start an anonymous session whose cookie would
	// replace the one the logout is to be sent again with.
	{
		m, r, _ := newTestManager(t, Config{})
		old, id := login(t, m, "alice")
		r.Do(t, "DEL", "session:"+id)
		m.store = &failingMoverLoads{Store: m.store.(*redisstore.Store), fail: true, moveFails: true}
		ctx := load(m, old)
		if err := Destroy(ctx); !errors.Is(err, ErrStoreUnavailable) {
			t.Errorf("Destroy while the store fails = %v, want ErrStoreUnavailable", err)
		}
		if LoadError(ctx) == nil {
			t.Error("LoadError after the failed logout = nil, want the load's error")
		}
		if err := Put(ctx, "flash", "x"); err == nil {
			t.Error("Put after the failed logout = nil, want an error")
		}
		h := http.Header{}
		m.Commit(ctx, h) //nolint:errcheck // what it sends is checked
		if c, ok := sessionCookie(m, h); ok {
			t.Errorf("the failed logout set the cookie %v, want it left for the logout to be sent again", c)
		}
	}

	// The token's session was replaced by a re-login on the same browser
	// (another tab): the logout, or login, with the old token ends the
	// re-login's session through its pointer, as it does after a load
	// that did not fail, and as alice's: with its event, and its entry
	// taken out of alice's index.
	for _, relogin := range []bool{false, true} {
		var events eventLog
		m, _, _ := newTestManager(t, Config{OnEvent: events.add})
		old, _ := login(t, m, "alice")
		var replacing string
		serve(t, m, old, func(ctx context.Context) {
			info, err := Create(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			replacing = info.ID
		})
		events.take()
		m.store = &failingMoverLoads{Store: m.store.(*redisstore.Store), fail: true}
		endAfterFailedLoad(t, m, old, relogin)
		got := events.take()
		if !slices.ContainsFunc(got, func(e Event) bool {
			return e.Kind == EventDestroyed && e.UserID == "alice" && e.SessionID == replacing
		}) {
			t.Errorf("relogin %v with the replaced token: events %+v, want the re-login's session %.8s destroyed", relogin, got, replacing)
		}
		ids, _, err := m.store.UserSessions(context.Background(), "alice")
		if want := map[bool]int{false: 0, true: 1}[relogin]; err != nil || len(ids) != want || slices.Contains(ids, replacing) {
			t.Errorf("relogin %v with the replaced token: alice's index %v, %v; want %d sessions, not the re-login's", relogin, ids, err, want)
		}
	}
}

// TestRevokeOthersAfterFailedLoad signs the others out in a request whose
// session could not be read, by a hiccup or a client gone before the
// load: the call reads the record, as Destroy does, and ends the others,
// rather than return ErrNoSession, "the session has ended", of a session
// that lives on, and end nothing. When the record cannot be read again
// either, it reports the store, and ends nothing.
func TestRevokeOthersAfterFailedLoad(t *testing.T) {
	for _, how := range []string{"hiccup", "client gone", "hiccup twice"} {
		m, _, _ := newTestManager(t, Config{})
		cookie, id := login(t, m, "alice")
		_, other := login(t, m, "alice")
		fs := &failingMoverLoads{Store: m.store.(*redisstore.Store), fail: how != "client gone"}
		m.store = fs
		req := httptest.NewRequest("GET", "http://localhost/", nil)
		req.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: cookie})
		if how == "client gone" {
			gone, cancel := context.WithCancel(req.Context())
			cancel()
			req = req.WithContext(gone)
		}
		ctx := m.Load(req)
		if LoadError(ctx) == nil {
			t.Fatalf("%s: the load did not fail", how)
		}
		fs.fail = how == "hiccup twice"
		n, err := m.RevokeOthers(ctx)
		ids, _, lerr := m.store.UserSessions(context.Background(), "alice")
		if lerr != nil {
			t.Fatal(lerr)
		}
		if how == "hiccup twice" {
			if !errors.Is(err, ErrStoreUnavailable) || n != 0 || len(ids) != 2 {
				t.Errorf("%s: RevokeOthers = %d, %v, alice's index %d sessions; want 0, ErrStoreUnavailable, 2", how, n, err, len(ids))
			}
			continue
		}
		if err != nil || n != 1 || !slices.Equal(ids, []string{id}) {
			t.Errorf("%s: RevokeOthers = %d, %v, alice's index %.8q; want 1, nil, her current session %.8s alone (not %.8s)", how, n, err, ids, id, other)
		}
	}

	// A session past the Lifetime of the instance that reads it (shrunk
	// since its login), which Load would not have found, has no power
	// over the others after a failed load either: it ends none of them.
	long, short, clk := shrunkLifetime(t, Config{})
	start := clk.t
	cookie, _ := login(t, long, "alice")
	login(t, long, "alice")
	clk.t = start.Add(45 * time.Minute)
	short.store = &failingMoverLoads{Store: long.store.(*redisstore.Store), fail: true}
	ctx := load(short, cookie)
	if LoadError(ctx) == nil {
		t.Fatal("the load did not fail")
	}
	n, err := short.RevokeOthers(ctx)
	ids, _, lerr := long.store.UserSessions(context.Background(), "alice")
	if !errors.Is(err, ErrNoSession) || n != 0 || lerr != nil || len(ids) != 2 {
		t.Errorf("RevokeOthers with a session past the shorter Lifetime = %d, %v, alice's index %d sessions (%v); want 0, ErrNoSession, 2", n, err, len(ids), lerr)
	}
}

// TestRevokeOthersAfterFailedLoadRacesRenewal races, 150 times with
// jitter, a "sign out the others" whose load failed on one instance
// against a renewal of the same session on another: the caller's session
// lives on, under whichever token, and the others end whenever the call
// reports success (it may find its token renewed away before it read it:
// ErrNoSession, with nothing ended).
func TestRevokeOthersAfterFailedLoadRacesRenewal(t *testing.T) {
	m1, m2 := twoInstances(t, Config{})
	fs := &failingMoverLoads{Store: m1.store.(*redisstore.Store)}
	m1.store = fs
	succeeded := 0
	for i := range 150 {
		user := fmt.Sprintf("racer%d", i)
		c, first := login(t, m1, user)
		login(t, m1, user)
		fs.fail = true
		var wg sync.WaitGroup
		var n int
		var revokeErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			jitter()
			ctx := load(m1, c)
			n, revokeErr = m1.RevokeOthers(ctx)
		}()
		go func() {
			defer wg.Done()
			jitter()
			ctx := load(m2, c)
			if err := Renew(ctx); err != nil {
				t.Errorf("round %d: Renew = %v", i, err)
			}
			if err := m2.Commit(ctx, http.Header{}); err != nil {
				t.Errorf("round %d: the renewal's Commit = %v", i, err)
			}
		}()
		wg.Wait()
		list, err := m1.List(context.Background(), user)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(list, func(in Info) bool { return in.FirstID == first }) {
			t.Fatalf("round %d: the caller's session is gone after RevokeOthers = %d, %v (list %d)", i, n, revokeErr, len(list))
		}
		switch {
		case revokeErr == nil && (n != 1 || len(list) != 1):
			t.Fatalf("round %d: RevokeOthers = %d, nil, %d sessions left; want 1 ended, 1 left", i, n, len(list))
		case revokeErr != nil && !errors.Is(revokeErr, ErrNoSession) && !errors.Is(revokeErr, ErrContention):
			t.Fatalf("round %d: RevokeOthers = %v", i, revokeErr)
		case revokeErr == nil:
			succeeded++
		}
	}
	// The renewal lands before the call's read in a few rounds only: a
	// call that never acts after a failed load fails here.
	if succeeded < 15 {
		t.Errorf("RevokeOthers after a failed load ended the others in %d of 150 rounds, want most", succeeded)
	}
	t.Logf("RevokeOthers after a failed load ended the others in %d of 150 rounds", succeeded)
}

// TestRevokeOthersAfterFailedMigration signs the others out in a request
// whose load failed on the scs session it was to migrate: there is no
// token to read again, and the call reports the store, not a session
// that ended.
func TestRevokeOthersAfterFailedMigration(t *testing.T) {
	m, _, _ := newTestManager(t, Config{FromSCS: &SCSImport{Records: failingRecords{}, UserKey: "userID"}, CookieName: "sk"})
	req := httptest.NewRequest("GET", "http://localhost/", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: strings.Repeat("A", tokenLen)})
	ctx := m.Load(req)
	if LoadError(ctx) == nil {
		t.Fatal("the load did not fail")
	}
	if n, err := m.RevokeOthers(ctx); n != 0 || !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("RevokeOthers = %d, %v; want 0, ErrStoreUnavailable", n, err)
	}
}

// TestFailedLoadPastLifetime logs in and out, after a failed load, with a
// token whose session is past the Lifetime of the instance that reads it
// (shrunk since), as after a load that succeeded, where the token leads
// nowhere: a login carried over the values of such an anonymous session
// into the new one, and a logout ended such a session, with its event
// and Clear-Site-Data.
func TestFailedLoadPastLifetime(t *testing.T) {
	var events eventLog
	long, short, clk := shrunkLifetime(t, Config{OnEvent: events.add})
	start := clk.t
	anon := serve(t, long, "", func(ctx context.Context) {
		if err := Put(ctx, "cart", "past"); err != nil {
			t.Fatal(err)
		}
	})
	signedIn, _ := login(t, long, "alice")
	clk.t = start.Add(45 * time.Minute)
	short.store = &failingMoverLoads{Store: long.store.(*redisstore.Store), fail: true}

	ctx := load(short, anon)
	if LoadError(ctx) == nil {
		t.Fatal("the load did not fail")
	}
	if _, err := Create(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if v, ok := Get[string](ctx, "cart"); ok {
		t.Errorf("a login after a failed load carried over %q from an anonymous session past the Lifetime", v)
	}

	short.store.(*failingMoverLoads).fail = true
	ctx = load(short, signedIn)
	if err := Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	if err := short.Commit(ctx, h); err != nil {
		t.Fatal(err)
	}
	if c, ok := sessionCookie(short, h); !ok || c.MaxAge >= 0 || h.Get("Clear-Site-Data") != "" {
		t.Errorf("a logout after a failed load, of a session past the Lifetime, sent %q, Clear-Site-Data %q; want the cookie expired and no Clear-Site-Data, as for a token that leads nowhere", h["Set-Cookie"], h.Get("Clear-Site-Data"))
	}
	if got := events.take(); slices.ContainsFunc(got, func(e Event) bool { return e.Kind == EventDestroyed && e.UserID == "alice" }) {
		t.Errorf("a logout after a failed load, of a session past the Lifetime, reported %+v", got)
	}
}

// TestRevokeOwnAfterFailedLoad revokes the request's own session, by
// RevokeAll and by Revoke of its id, in a request whose load failed: the
// response logs out, as after a load that succeeded (the cookie expired,
// Clear-Site-Data), rather than send nothing and leave the browser a
// token of an ended session.
func TestRevokeOwnAfterFailedLoad(t *testing.T) {
	for _, all := range []bool{true, false} {
		m, _, _ := newTestManager(t, Config{})
		cookie, id := login(t, m, "alice")
		login(t, m, "alice")
		m.store = &failingMoverLoads{Store: m.store.(*redisstore.Store), fail: true}
		ctx := load(m, cookie)
		if LoadError(ctx) == nil {
			t.Fatal("the load did not fail")
		}
		if all {
			if n, err := m.RevokeAll(ctx, "alice"); err != nil || n != 2 {
				t.Fatalf("RevokeAll = %d, %v", n, err)
			}
		} else if err := m.Revoke(ctx, "alice", id); err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		if err := m.Commit(ctx, h); err != nil {
			t.Fatal(err)
		}
		if c, ok := sessionCookie(m, h); !ok || c.MaxAge >= 0 || h.Get("Clear-Site-Data") == "" {
			t.Errorf("all %v: the response of a request that revoked its own session after a failed load sent %q, Clear-Site-Data %q; want the cookie expired, with Clear-Site-Data", all, h["Set-Cookie"], h.Get("Clear-Site-Data"))
		}
	}
}

// TestRevokeOtherUsersIDInIndex writes the id of bob's session into
// alice's index by hand (a tampered or corrupted index): Revoke(alice, that
// id) answers ErrNotFound and leaves bob signed in, as List(alice) leaves
// the entry out.
func TestRevokeOtherUsersIDInIndex(t *testing.T) {
	m, r, _ := newTestManager(t, Config{})
	login(t, m, "alice")
	bob, bobID := login(t, m, "bob")
	r.Do(t, "ZADD", "user:alice:sessions", time.Now().Add(time.Hour).UnixMilli(), bobID)
	if list, err := m.List(context.Background(), "alice"); err != nil || len(list) != 1 {
		t.Fatalf("List(alice) = %d sessions, %v; want her own alone", len(list), err)
	}
	if err := m.Revoke(context.Background(), "alice", bobID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke(alice, bob's id) = %v, want ErrNotFound", err)
	}
	if u := userOf(t, m, bob); u != "bob" {
		t.Errorf("bob's session afterwards: user %q, want bob", u)
	}
}
