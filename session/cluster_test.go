package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// The tests of this file run Managers on a Redis Cluster of three masters,
// each with a replica, as separate app instances would: each Manager has a
// Store of its own, and all share the signing key and the TagKey.

// clTagKey is the TagKey of the cluster tests' Managers.
var clTagKey = testKey(0x43)

// clStore returns a Store on c, closed at cleanup.
func clStore(t *testing.T, c *redistest.Cluster) *redisstore.Store {
	t.Helper()
	store, err := redisstore.Open(redisstore.Config{ClusterNodes: c.Addrs()[:1], Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// clManager returns a Manager on a Store of its own on c, with cfg, the
// signing key of newTestManager and clTagKey.
func clManager(t *testing.T, c *redistest.Cluster, cfg Config) *Manager {
	t.Helper()
	cfg.Keys = [][]byte{testKey(7)}
	cfg.TagKey = clTagKey
	cfg.InsecureCookie = true
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := New(clStore(t, c), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// clRequest runs fn as the handler of one request of m carrying cookie (if
// not empty) and returns the cookie the response sets ("" for none) and the
// error of Commit. Unlike serve, it may run on any goroutine.
func clRequest(m *Manager, cookie string, fn func(ctx context.Context)) (string, error) {
	req := httptest.NewRequest("GET", "/", nil)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: m.cfg.CookieName, Value: cookie})
	}
	ctx := m.Load(req)
	fn(ctx)
	h := http.Header{}
	err := m.Commit(ctx, h)
	c, _ := sessionCookie(m, h)
	if c == nil {
		return "", err
	}
	return c.Value, err
}

// clLogin logs userID in with m in a request of its own, from cookie (""
// for none), and returns the new cookie and session id. It may run on any
// goroutine.
func clLogin(m *Manager, cookie, userID string) (string, string, error) {
	var id string
	var err error
	next, cerr := clRequest(m, cookie, func(ctx context.Context) {
		var info Info
		info, err = Create(ctx, userID)
		id = info.ID
	})
	if err == nil {
		err = cerr
	}
	if err == nil && next == "" {
		err = errors.New("no cookie set")
	}
	return next, id, err
}

// clInfo returns the session of cookie as a request of m sees it, anonymous
// or not ("" ID for none).
func clInfo(t *testing.T, m *Manager, cookie string) Info {
	t.Helper()
	var info Info
	serve(t, m, cookie, func(ctx context.Context) { info, _ = FromContext(ctx) })
	return info
}

// clExists reports whether key exists on the master serving it.
func clExists(t *testing.T, c *redistest.Cluster, key string) bool {
	t.Helper()
	n, err := redis.Int(c.MasterOf(t, redistest.Slot(key)).Do(t, "EXISTS", key), nil)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// clUserKeys returns the record keys of the user's tag on the master that
// serves it, sorted.
func clUserKeys(t *testing.T, c *redistest.Cluster, userID string) []string {
	t.Helper()
	tag := wantUserTag(userID)
	m := c.MasterOf(t, redistest.Slot("{"+tag+"}"))
	keys, err := redis.Strings(m.Do(t, "KEYS", "session:{"+tag+"}*"), nil)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

// wantUserTag returns the tag of userID under clTagKey, as a Manager
// computes it.
func wantUserTag(userID string) string {
	return (&Manager{cfg: Config{TagKey: clTagKey}}).userTag(userID)
}

// clNoForbidden fails the test for an error that must never happen on a
// cluster: CROSSSLOT or ErrRefused.
func clNoForbidden(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil && (strings.Contains(err.Error(), "CROSSSLOT") || errors.Is(err, redisstore.ErrRefused)) {
		t.Errorf("%s: %v: never allowed on a cluster", what, err)
	}
}

// TestClusterManager runs every feature of the Manager on a Redis Cluster,
// through requests to two Managers on Stores of their own.
func TestClusterManager(t *testing.T) {
	start := time.Now()
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	t.Logf("cluster started in %v", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	m1, m2 := clManager(t, c, Config{}), clManager(t, c, Config{})
	masters := c.Masters(t)

	t.Run("NewNeedsTagKey", func(t *testing.T) {
		store := clStore(t, c)
		_, err := New(store, Config{Keys: [][]byte{testKey(7)}})
		if err == nil || !strings.Contains(err.Error(), "TagKey") {
			t.Fatalf("New(cluster store, no TagKey) = %v, want an error naming TagKey", err)
		}
		if _, err := New(store, Config{Keys: [][]byte{testKey(7)}, TagKey: clTagKey}); err != nil {
			t.Fatalf("New(cluster store, TagKey) = %v", err)
		}
	})

	t.Run("LoginAndRead", func(t *testing.T) {
		cookie, id := login(t, m1, "alice")
		tag := wantUserTag("alice")
		if !strings.HasPrefix(id, "{"+tag+"}") {
			t.Fatalf("session id %q, want the tag of alice, %q", id, tag)
		}
		if u := userOf(t, m2, cookie); u != "alice" {
			t.Fatalf("the other instance reads %q, want alice", u)
		}
		key := "session:" + id
		own := c.MasterOf(t, redistest.Slot(key))
		if own != c.MasterOf(t, redistest.Slot("user:{"+tag+"}alice:sessions")) {
			t.Fatal("the record and the index of alice are on two masters")
		}
		for _, m := range []*Manager{m1, m2} {
			for _, o := range masters {
				o.ResetStats(t)
			}
			if u := userOf(t, m, cookie); u != "alice" {
				t.Fatalf("read: %q, want alice", u)
			}
			for _, o := range masters {
				want := map[string]int64{}
				if o == own {
					want = map[string]int64{"getex": 1}
				}
				if got := clClientCalls(t, o); !maps.Equal(got, want) {
					t.Errorf("a request reading the session: port %d ran %v, want %v", o.Port, got, want)
				}
			}
		}
		if n, err := m1.RevokeAll(ctx, "alice"); n != 1 || err != nil {
			t.Fatalf("RevokeAll = %d, %v", n, err)
		}
	})

	// A logout on one instance with the token a renewal on the other had
	// replaced before it loaded: it follows the renewal's pointer, in the
	// session's slot, and the renewing request's answer sets no cookie
	// (see TestEndingWithReplacedToken).
	t.Run("LogoutWithReplacedToken", func(t *testing.T) {
		cookie, _ := login(t, m1, "carol")
		renewing := load(m1, cookie)
		if err := Renew(renewing); err != nil {
			t.Fatalf("Renew = %v", err)
		}
		logout := load(m2, cookie)
		err := Destroy(logout)
		clNoForbidden(t, "Destroy", err)
		if err != nil {
			t.Fatalf("Destroy = %v", err)
		}
		if err := m2.Commit(logout, http.Header{}); err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		if err := m1.Commit(renewing, h); err != nil {
			t.Fatal(err)
		}
		if c, ok := sessionCookie(m1, h); ok {
			t.Errorf("the renewing request answered after the logout with Set-Cookie %v, want none", c)
		}
		if list, err := m1.List(ctx, "carol"); err != nil || len(list) != 0 {
			t.Errorf("List(carol) after the logout = %v, %v; want none", list, err)
		}
	})

	t.Run("ConcurrentLoginsWithoutLimit", func(t *testing.T) {
		const n = 16
		errs := make([]error, n)
		ids := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { _, ids[i], errs[i] = clLogin([]*Manager{m1, m2}[i%2], "", "carol") })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("login %d: %v", i, err)
				clNoForbidden(t, "login", err)
			}
		}
		list, err := m2.List(ctx, "carol")
		if err != nil || len(list) != n {
			t.Fatalf("List(carol) = %d sessions, %v; want %d", len(list), err, n)
		}
		if n2, err := m1.RevokeAll(ctx, "carol"); n2 != n || err != nil {
			t.Fatalf("RevokeAll(carol) = %d, %v; want %d", n2, err, n)
		}
	})

	t.Run("ConcurrentLoginsUnderLimit", func(t *testing.T) {
		const limit, n = 3, 20
		l1, l2 := clManager(t, c, Config{MaxSessionsPerUser: limit}), clManager(t, c, Config{MaxSessionsPerUser: limit})
		cookies := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { cookies[i], _, errs[i] = clLogin([]*Manager{l1, l2}[i%2], "", "bob") })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("login %d: %v", i, err)
				clNoForbidden(t, "login", err)
			}
		}
		working := 0
		for _, cookie := range cookies {
			if cookie != "" && userOf(t, l2, cookie) == "bob" {
				working++
			}
		}
		list, err := l1.List(ctx, "bob")
		if err != nil {
			t.Fatal(err)
		}
		keys := clUserKeys(t, c, "bob")
		if working != limit || len(list) != limit || len(keys) != limit {
			t.Errorf("%d concurrent logins with a limit of %d: %d cookies work, List has %d, %d records; want %d each", n, limit, working, len(list), len(keys), limit)
		}
		// One more login, sequential: still the limit.
		if _, _, err := clLogin(l1, "", "bob"); err != nil {
			t.Fatal(err)
		}
		if list, err := l2.List(ctx, "bob"); err != nil || len(list) != limit {
			t.Errorf("List(bob) after one more login = %d, %v; want %d", len(list), err, limit)
		}
		if _, err := l1.RevokeAll(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Renew", func(t *testing.T) {
		cookie, id := login(t, m1, "dave")
		next := renew(t, m2, cookie)
		info := clInfo(t, m1, next)
		if info.UserID != "dave" || info.ID == id || !strings.HasPrefix(info.ID, "{"+wantUserTag("dave")+"}") {
			t.Fatalf("after Renew: %+v, want dave under a new id with his tag", info)
		}
		if u := userOf(t, m1, cookie); u != "" {
			t.Errorf("old cookie after Renew: %q, want anonymous", u)
		}
		if clExists(t, c, "session:"+id) || !clExists(t, c, "session:"+info.ID) {
			t.Error("Renew left the old record or lost the new one")
		}
		list, err := m1.List(ctx, "dave")
		if err != nil || len(list) != 1 || list[0].ID != info.ID {
			t.Errorf("List(dave) after Renew = %v, %v; want the new id only", list, err)
		}

		// Anonymous: the session keeps its tag and its values.
		anon := serve(t, m2, "", func(ctx context.Context) {
			if err := Put(ctx, "cart", "book"); err != nil {
				t.Fatal(err)
			}
		})
		first := clInfo(t, m1, anon).ID
		next = renew(t, m1, anon)
		renewed := clInfo(t, m2, next).ID
		if renewed == "" || renewed == first || renewed[:6] != first[:6] {
			t.Fatalf("anonymous Renew: id %q after %q, want a new id with the same tag", renewed, first)
		}
		if clExists(t, c, "session:"+first) || !clExists(t, c, "session:"+renewed) {
			t.Error("anonymous Renew left the old record or lost the new one")
		}
		serve(t, m2, next, func(ctx context.Context) {
			if v, _ := Get[string](ctx, "cart"); v != "book" {
				t.Errorf("cart after anonymous Renew = %q, want book", v)
			}
		})
		if _, err := m1.RevokeAll(ctx, "dave"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ConcurrentPuts", func(t *testing.T) {
		cookie, _ := login(t, m1, "erin")
		const n = 20
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				var perr error
				_, errs[i] = clRequest([]*Manager{m1, m2}[i%2], cookie, func(ctx context.Context) {
					perr = Put(ctx, fmt.Sprintf("k%02d", i), i)
				})
				errs[i] = errors.Join(perr, errs[i])
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Put %d: %v", i, err)
				clNoForbidden(t, "Put", err)
			}
		}
		serve(t, m2, cookie, func(ctx context.Context) {
			for i := range n {
				if v, ok := Get[int](ctx, fmt.Sprintf("k%02d", i)); !ok || v != i {
					t.Errorf("k%02d after concurrent Puts on two instances = %v, %v; want %d", i, v, ok, i)
				}
			}
		})
		if _, err := m1.RevokeAll(ctx, "erin"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ListAndRevoke", func(t *testing.T) {
		var cookies, ids []string
		for _, m := range []*Manager{m1, m2, m1, m2} {
			c, id := login(t, m, "frank")
			cookies, ids = append(cookies, c), append(ids, id)
		}
		list, err := m2.List(ctx, "frank")
		if err != nil || len(list) != 4 {
			t.Fatalf("List(frank) = %d, %v; want 4", len(list), err)
		}
		var listed []string
		for _, in := range list {
			listed = append(listed, in.ID)
		}
		slices.Sort(listed)
		if !slices.Equal(listed, slices.Sorted(slices.Values(ids))) {
			t.Fatalf("List(frank) = %q, want %q", listed, ids)
		}
		if err := m1.Revoke(ctx, "frank", ids[0]); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if err := m1.Revoke(ctx, "frank", ids[0]); !errors.Is(err, ErrNotFound) {
			t.Errorf("second Revoke = %v, want ErrNotFound", err)
		}
		if u := userOf(t, m2, cookies[0]); u != "" {
			t.Errorf("revoked session reads %q, want anonymous", u)
		}
		h, err := exchange(t, m2, cookies[1], func(ctx context.Context) {
			if n, err := m2.RevokeOthers(ctx); n != 2 || err != nil {
				t.Errorf("RevokeOthers = %d, %v; want 2, nil", n, err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := sessionCookie(m2, h); ok {
			t.Error("RevokeOthers changed the cookie")
		}
		for i, want := range []string{"", "frank", "", ""} {
			if u := userOf(t, m1, cookies[i]); u != want {
				t.Errorf("session %d after RevokeOthers: %q, want %q", i, u, want)
			}
		}
		h, err = exchange(t, m1, cookies[1], func(ctx context.Context) {
			if err := Destroy(ctx); err != nil {
				t.Errorf("Destroy: %v", err)
			}
		})
		if c, ok := sessionCookie(m1, h); err != nil || !ok || c.MaxAge >= 0 {
			t.Errorf("Destroy: cookie %v, Commit %v; want an expired cookie", c, err)
		}
		if keys := clUserKeys(t, c, "frank"); len(keys) != 0 || clExists(t, c, "user:{"+wantUserTag("frank")+"}frank:sessions") {
			t.Errorf("after Destroy of the last session, frank's keys remain: %q", keys)
		}
		for range 3 {
			login(t, m2, "frank")
		}
		if n, err := m1.RevokeAll(ctx, "frank"); n != 3 || err != nil {
			t.Errorf("RevokeAll(frank) = %d, %v; want 3, nil", n, err)
		}
		if keys := clUserKeys(t, c, "frank"); len(keys) != 0 {
			t.Errorf("after RevokeAll, frank's records remain: %q", keys)
		}
	})

	t.Run("UntaggedToken", func(t *testing.T) {
		// A session made without a TagKey, on one server, whose keys were
		// then imported into the cluster (as redis-cli --cluster import
		// does when a deployment moves to a Cluster): the package
		// documentation of Config.TagKey says such tokens keep working
		// under the keys they had. Each check runs on a fresh copy.
		r := redistest.Start(t)
		plain := untaggedManager(t, r)
		imported := func(t *testing.T) (string, string) {
			t.Helper()
			cookie, id := login(t, plain, "hank")
			for _, key := range []string{"session:" + id, "user:hank:sessions"} {
				dump, err := redis.Bytes(r.Do(t, "DUMP", key), nil)
				if err != nil {
					t.Fatal(err)
				}
				c.MasterOf(t, redistest.Slot(key)).Do(t, "RESTORE", key, 3600000, dump, "REPLACE")
			}
			return cookie, id
		}
		cookie, _ := imported(t)
		if u := userOf(t, m1, cookie); u != "hank" {
			t.Fatalf("untagged imported token reads %q, want hank", u)
		}
		serve(t, m2, cookie, func(ctx context.Context) {
			err := Put(ctx, "k", "v")
			clNoForbidden(t, "Put on an untagged token", err)
			if err != nil {
				t.Errorf("Put on an untagged token: %v", err)
			}
		})
		h, err := exchange(t, m1, cookie, func(ctx context.Context) {
			err := Renew(ctx)
			clNoForbidden(t, "Renew of an untagged token", err)
			if err != nil {
				t.Errorf("Renew of an untagged token on a cluster: %v", err)
			}
		})
		if err != nil {
			t.Errorf("Commit after Renew: %v", err)
		}
		if c, ok := sessionCookie(m1, h); ok && c.Value != "" {
			if u := userOf(t, m2, c.Value); u != "hank" {
				t.Errorf("renewed untagged token reads %q, want hank", u)
			}
		}
		cookie, id := imported(t)
		exchange(t, m2, cookie, func(ctx context.Context) {
			err := Destroy(ctx)
			clNoForbidden(t, "Destroy of an untagged token", err)
			if err != nil {
				t.Errorf("Destroy (logout) of an untagged token on a cluster: %v", err)
			}
		})
		if clExists(t, c, "session:"+id) {
			t.Errorf("the untagged session survives its logout")
		}
		m1.RevokeAll(ctx, "hank")
	})

	t.Run("AnonymousLogoutFollowsRenewal", func(t *testing.T) {
		// A request loads an anonymous session, another instance renews
		// it, and the first then logs out: the renewed session ends too.
		// A tagged session moves within its slot, in one transaction with
		// its pointer; one made without a TagKey on one server and
		// imported (see UntaggedToken) moves across slots, its pointer
		// written first.
		r := redistest.Start(t)
		plain := untaggedManager(t, r)
		put := func(ctx context.Context) {
			if err := Put(ctx, "pending", "2fa"); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			name string
			make func(t *testing.T) string // an anonymous session's cookie
		}{
			{"tagged", func(t *testing.T) string { return serve(t, m1, "", put) }},
			{"untagged", func(t *testing.T) string {
				cookie := serve(t, plain, "", put)
				key := "session:" + currentInfo(t, plain, cookie).ID
				dump, err := redis.Bytes(r.Do(t, "DUMP", key), nil)
				if err != nil {
					t.Fatal(err)
				}
				c.MasterOf(t, redistest.Slot(key)).Do(t, "RESTORE", key, 3600000, dump, "REPLACE")
				return cookie
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a1 := tc.make(t)
				logout := load(m1, a1) // loaded before the renewal
				var a2 string
				h, err := exchange(t, m2, a1, func(ctx context.Context) {
					err := Renew(ctx)
					clNoForbidden(t, "Renew of an anonymous session", err)
					if err != nil {
						t.Fatalf("Renew = %v", err)
					}
				})
				if ck, ok := sessionCookie(m2, h); err != nil || !ok || ck.Value == "" {
					t.Fatalf("renewal: Commit %v, cookie %v; want a new cookie", err, ck)
				} else {
					a2 = ck.Value
				}
				id2 := clInfo(t, m1, a2).ID
				if id2 == "" {
					t.Fatal("the renewed token leads nowhere before the logout")
				}
				err = Destroy(logout)
				clNoForbidden(t, "Destroy of an anonymous session", err)
				if err != nil {
					t.Fatalf("Destroy = %v, want nil", err)
				}
				if clExists(t, c, "session:"+id2) {
					t.Errorf("the renewed anonymous session survives a logout that loaded it before the renewal")
				}
				if id := clInfo(t, m2, a2).ID; id != "" {
					t.Errorf("the renewed token after the logout leads to %q, want no session", id)
				}
			})
		}
	})

	t.Run("AnonymousLogin", func(t *testing.T) {
		for _, limit := range []int{0, 2} {
			m := clManager(t, c, Config{MaxSessionsPerUser: limit})
			user := fmt.Sprintf("gina-%d", limit)
			anon := serve(t, m, "", func(ctx context.Context) {
				if err := Put(ctx, "cart", "book"); err != nil {
					t.Fatal(err)
				}
			})
			anonID := clInfo(t, m, anon).ID
			if !clExists(t, c, "session:"+anonID) {
				t.Fatalf("limit %d: the anonymous record does not exist", limit)
			}
			userTag := "{" + wantUserTag(user) + "}"
			if redistest.Slot("session:"+anonID) == redistest.Slot(userTag) {
				t.Logf("limit %d: the anonymous session shares the user's slot", limit)
			}
			// Another instance saves a value into the anonymous session
			// after the login request loaded it: the login carries it over.
			var id string
			next, err := clRequest(m, anon, func(ctx context.Context) {
				if _, err := clRequest(m2, anon, func(ctx context.Context) { Put(ctx, "cart2", "pen") }); err != nil {
					t.Errorf("limit %d: parallel Put: %v", limit, err)
				}
				info, err := Create(ctx, user)
				if err != nil {
					t.Fatalf("limit %d: login from an anonymous session: %v", limit, err)
				}
				id = info.ID
			})
			if err != nil || next == "" {
				t.Fatalf("limit %d: login's commit = %v, cookie %q", limit, err, next)
			}
			if !strings.HasPrefix(id, userTag) {
				t.Errorf("limit %d: new id %q, want the user's tag %s", limit, id, userTag)
			}
			if clExists(t, c, "session:"+anonID) {
				t.Errorf("limit %d: the anonymous record survived the login", limit)
			}
			serve(t, m1, next, func(ctx context.Context) {
				if u, _ := UserID(ctx); u != user {
					t.Errorf("limit %d: after login: user %q, want %q", limit, u, user)
				}
				if v, _ := Get[string](ctx, "cart"); v != "book" {
					t.Errorf("limit %d: cart after login = %q, want book", limit, v)
				}
				if v, _ := Get[string](ctx, "cart2"); v != "pen" {
					t.Errorf("limit %d: cart2, saved during the login, after it = %q, want pen", limit, v)
				}
			})
			if u := userOf(t, m2, anon); u != "" {
				t.Errorf("limit %d: the anonymous cookie reads %q after login", limit, u)
			}
		}
	})
}

// clClientCalls returns the commands s ran since its statistics were reset
// ([redistest.Server.Calls]), without the REPLCONF ACKs of its replica.
func clClientCalls(t *testing.T, s *redistest.Server) map[string]int64 {
	t.Helper()
	calls := s.Calls(t)
	delete(calls, "replconf")
	return calls
}

// untaggedManager returns a Manager on the single server r, without a
// TagKey, whose sessions a test imports into a Cluster (see UntaggedToken).
func untaggedManager(t *testing.T, r *redistest.Server) *Manager {
	t.Helper()
	s, err := redisstore.Open(redisstore.Config{Addr: r.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	m, err := New(s, Config{Keys: [][]byte{testKey(7)}, InsecureCookie: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
