package session

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// testTagKey is the TagKey of the tests' tagging Managers.
var testTagKey = testKey(0x54)

// taggedManager returns a Manager on the redis-server r with cfg, the
// signing key of newTestManager (so that Managers on one server read each
// other's cookies) and the real clock.
func taggedManager(t *testing.T, r *redistest.Server, cfg Config) *Manager {
	t.Helper()
	return hookedManager(t, r, cfg, func(s *redisstore.Store) Store { return s })
}

// hookedManager is taggedManager on the Store that wrap makes of the
// redisstore.Store it opens (a hook between a call's steps).
func hookedManager(t *testing.T, r *redistest.Server, cfg Config, wrap func(*redisstore.Store) Store) *Manager {
	t.Helper()
	store, err := redisstore.Open(redisstore.Config{Addr: r.Addr(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg.Keys = [][]byte{testKey(7)}
	cfg.InsecureCookie = true
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := New(wrap(store), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// wantTag returns the tag of userID under key as documented: the first
// tagLen characters of base64url(HMAC-SHA256(key, userID)), computed here
// without the code under test.
func wantTag(key []byte, userID string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(userID))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))[:tagLen]
}

// taggedID matches a tagged session id: "{tag}" then 22 base64url
// characters, 128 bits of the SHA-256 of the token.
var taggedID = regexp.MustCompile(fmt.Sprintf(`^\{([A-Za-z0-9_-]{%d})\}[A-Za-z0-9_-]{22}$`, tagLen))

// tagOf returns the tag of a tagged session id, failing the test if id is
// not one.
func tagOf(t *testing.T, id string) string {
	t.Helper()
	m := taggedID.FindStringSubmatch(id)
	if m == nil {
		t.Fatalf("session id %q: want {tag} and 22 base64url characters", id)
	}
	return m[1]
}

// allKeys returns every key in r, sorted, walked with SCAN.
func allKeys(t *testing.T, r *redistest.Server) []string {
	t.Helper()
	var keys []string
	for cursor := 0; ; {
		reply, err := redis.Values(r.Do(t, "SCAN", cursor, "COUNT", 1000), nil)
		if err != nil {
			t.Fatal(err)
		}
		cursor, _ = redis.Int(reply[0], nil)
		batch, _ := redis.Strings(reply[1], nil)
		keys = append(keys, batch...)
		if cursor == 0 {
			break
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// sorted returns keys sorted, for comparing with allKeys.
func sorted(keys ...string) []string {
	return slices.Sorted(slices.Values(keys))
}

// members returns the members of the sorted set key, sorted.
func members(t *testing.T, r *redistest.Server, key string) []string {
	t.Helper()
	m, err := redis.Strings(r.Do(t, "ZRANGE", key, 0, -1), nil)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// currentInfo runs a request carrying cookie and returns its session's
// Info (an anonymous session's too: FromContext reports it with ok false),
// failing the test if the cookie leads to no stored session.
func currentInfo(t *testing.T, m *Manager, cookie string) Info {
	t.Helper()
	var info Info
	serve(t, m, cookie, func(ctx context.Context) { info, _ = FromContext(ctx) })
	if info.ID == "" {
		t.Fatal("the cookie leads to no stored session")
	}
	return info
}

// TestTaggedKeys checks the keys of logins under a TagKey: "session:{T}<id>"
// and "user:{T}<user>:sessions" with T the user's keyed tag, the same on two
// Managers sharing the TagKey, and different for other users.
func TestTaggedKeys(t *testing.T) {
	r := redistest.Start(t)
	m1 := taggedManager(t, r, Config{TagKey: testTagKey})
	m2 := taggedManager(t, r, Config{TagKey: testTagKey})
	tag := wantTag(testTagKey, "alice")
	index := "user:{" + tag + "}alice:sessions"

	var ids []string
	for i, m := range []*Manager{m1, m2, m1} {
		before := allKeys(t, r)
		_, id := login(t, m, "alice")
		if got := tagOf(t, id); got != tag {
			t.Errorf("login %d of alice: Info.ID tag = %q, want %q", i, got, tag)
		}
		ids = append(ids, id)
		var added []string
		for _, k := range allKeys(t, r) {
			if !slices.Contains(before, k) {
				added = append(added, k)
			}
		}
		want := []string{"session:" + id}
		if i == 0 {
			want = sorted("session:"+id, index)
		}
		if !slices.Equal(added, want) {
			t.Errorf("login %d of alice added keys %q, want %q", i, added, want)
		}
	}
	want := sorted(index, "session:"+ids[0], "session:"+ids[1], "session:"+ids[2])
	if got := allKeys(t, r); !slices.Equal(got, want) {
		t.Errorf("keys after three logins of alice = %q, want %q", got, want)
	}
	if got := members(t, r, index); !slices.Equal(got, sorted(ids...)) {
		t.Errorf("members of %s = %q, want %q", index, got, sorted(ids...))
	}

	// Other users: their own tag, in both of their keys, on either Manager.
	same, tags := 0, map[string]bool{}
	for i := range 50 {
		user := "user-" + strconv.Itoa(i)
		_, id := login(t, []*Manager{m1, m2}[i%2], user)
		got := tagOf(t, id)
		if want := wantTag(testTagKey, user); got != want {
			t.Errorf("login of %s: tag %q, want %q", user, got, want)
		}
		if n, _ := redis.Int(r.Do(t, "EXISTS", "session:"+id, "user:{"+got+"}"+user+":sessions"), nil); n != 2 {
			t.Errorf("login of %s: %d of its keys session:{%s}... and user:{%s}%s:sessions exist, want 2", user, n, got, got, user)
		}
		if got == tag {
			same++
		}
		tags[got] = true
	}
	if same > 2 || len(tags) < 48 {
		t.Errorf("50 other users: %d share alice's tag and %d tags are distinct, want at most 2 and at least 48", same, len(tags))
	}
}

// TestTaggedUserSessions checks List, Revoke, RevokeOthers and RevokeAll
// with tagged keys, across two Managers sharing the TagKey.
func TestTaggedUserSessions(t *testing.T) {
	r := redistest.Start(t)
	m1 := taggedManager(t, r, Config{TagKey: testTagKey})
	m2 := taggedManager(t, r, Config{TagKey: testTagKey})
	index := "user:{" + wantTag(testTagKey, "alice") + "}alice:sessions"
	var cookies, ids []string
	for _, m := range []*Manager{m1, m2, m1} {
		c, id := login(t, m, "alice")
		cookies, ids = append(cookies, c), append(ids, id)
	}
	bob, bobID := login(t, m2, "bob")
	bobKeys := sorted("session:"+bobID, "user:{"+wantTag(testTagKey, "bob")+"}bob:sessions")
	ctx := context.Background()

	// The logins share a deadline when they share a millisecond, so the
	// order is not checked here: TestList does.
	infos, err := m2.List(ctx, "alice")
	if err != nil || len(infos) != 3 {
		t.Fatalf("List(alice) = %d sessions, %v; want 3", len(infos), err)
	}
	var listed []string
	for _, info := range infos {
		if info.UserID != "alice" {
			t.Errorf("List(alice) has %q of %q", info.ID, info.UserID)
		}
		listed = append(listed, info.ID)
	}
	if got := sorted(listed...); !slices.Equal(got, sorted(ids...)) {
		t.Errorf("List(alice) ids = %q, want %q", got, sorted(ids...))
	}

	if err := m2.Revoke(ctx, "bob", ids[1]); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke(bob, alice's session) = %v, want ErrNotFound", err)
	}
	if err := m1.Revoke(ctx, "alice", ids[2]); err != nil {
		t.Fatalf("Revoke(alice, %q) = %v, want nil", ids[2], err)
	}
	if got := members(t, r, index); !slices.Equal(got, sorted(ids[0], ids[1])) {
		t.Errorf("index after Revoke = %q, want %q", got, sorted(ids[0], ids[1]))
	}
	if u := userOf(t, m1, cookies[2]); u != "" {
		t.Errorf("revoked session's next request: UserID = %q, want anonymous", u)
	}

	h, err := exchange(t, m2, cookies[1], func(ctx context.Context) {
		if n, err := m2.RevokeOthers(ctx); n != 1 || err != nil {
			t.Errorf("RevokeOthers = %d, %v; want 1, nil", n, err)
		}
	})
	if c, ok := sessionCookie(m2, h); ok || err != nil {
		t.Errorf("RevokeOthers: Set-Cookie %v, Commit %v; want none, nil", c, err)
	}
	want := sorted(append([]string{index, "session:" + ids[1]}, bobKeys...)...)
	if got := allKeys(t, r); !slices.Equal(got, want) {
		t.Errorf("keys after RevokeOthers = %q, want %q", got, want)
	}
	for i, want := range []string{"", "alice", ""} {
		if u := userOf(t, m1, cookies[i]); u != want {
			t.Errorf("alice's session %d after RevokeOthers: UserID = %q, want %q", i, u, want)
		}
	}

	if n, err := m1.RevokeAll(ctx, "alice"); n != 1 || err != nil {
		t.Errorf("RevokeAll(alice) = %d, %v; want 1, nil", n, err)
	}
	if got := allKeys(t, r); !slices.Equal(got, bobKeys) {
		t.Errorf("keys after RevokeAll(alice) = %q, want bob's only, %q", got, bobKeys)
	}
	if u := userOf(t, m1, bob); u != "bob" {
		t.Errorf("bob after RevokeAll(alice): UserID = %q, want bob", u)
	}
}

// TestTaggedLimit checks MaxSessionsPerUser with tagged keys: the oldest
// session goes, and the index lists the others.
func TestTaggedLimit(t *testing.T) {
	r := redistest.Start(t)
	m := taggedManager(t, r, Config{TagKey: testTagKey, MaxSessionsPerUser: 2})
	clk := &clock{t: time.Now()}
	m.now = clk.now
	index := "user:{" + wantTag(testTagKey, "alice") + "}alice:sessions"
	var cookies, ids []string
	for range 3 {
		c, id := login(t, m, "alice")
		cookies, ids = append(cookies, c), append(ids, id)
		clk.t = clk.t.Add(time.Minute) // the oldest is the first
	}
	want := sorted(index, "session:"+ids[1], "session:"+ids[2])
	if got := allKeys(t, r); !slices.Equal(got, want) {
		t.Errorf("keys after three logins with a limit of 2 = %q, want %q", got, want)
	}
	if got := members(t, r, index); !slices.Equal(got, sorted(ids[1], ids[2])) {
		t.Errorf("index = %q, want %q", got, sorted(ids[1], ids[2]))
	}
	for i, want := range []string{"", "alice", "alice"} {
		if u := userOf(t, m, cookies[i]); u != want {
			t.Errorf("session %d: UserID = %q, want %q", i, u, want)
		}
	}
}

// TestTaggedRenew checks that Renew keeps the user's tag on a user's
// session, and an anonymous session's own tag across renewals.
func TestTaggedRenew(t *testing.T) {
	r := redistest.Start(t)
	m := taggedManager(t, r, Config{TagKey: testTagKey})
	tag := wantTag(testTagKey, "alice")
	index := "user:{" + tag + "}alice:sessions"

	cookie, oldID := login(t, m, "alice")
	renewed := renew(t, m, cookie)
	id := currentInfo(t, m, renewed).ID
	if id == oldID || tagOf(t, id) != tag {
		t.Errorf("Info.ID after Renew = %q (was %q), want a new id with tag %q", id, oldID, tag)
	}
	// The renewal leaves a pointer from the old id (see Destroy).
	if got, want := allKeys(t, r), sorted(index, "session:"+id, "session:"+oldID+":next"); !slices.Equal(got, want) {
		t.Errorf("keys after Renew = %q, want %q", got, want)
	}
	if got := members(t, r, index); !slices.Equal(got, []string{id}) {
		t.Errorf("index after Renew = %q, want [%q]", got, id)
	}
	if u := userOf(t, m, cookie); u != "" {
		t.Errorf("old token after Renew: UserID = %q, want anonymous", u)
	}
	if n, err := m.RevokeAll(context.Background(), "alice"); n != 1 || err != nil {
		t.Fatalf("RevokeAll(alice) = %d, %v; want 1, nil", n, err)
	}
	r.Do(t, "DEL", "session:"+oldID+":next")

	// Anonymous: the tag is the first tagLen characters of its first id.
	anon := serve(t, m, "", func(ctx context.Context) {
		if err := Put(ctx, "cart", "book"); err != nil {
			t.Fatal(err)
		}
	})
	first := currentInfo(t, m, anon).ID
	atag := tagOf(t, first)
	if hash := first[tagLen+2:]; hash[:tagLen] != atag {
		t.Errorf("anonymous session id %q: tag %q, want the first %d characters of the id, %q", first, atag, tagLen, hash[:tagLen])
	}
	if got := allKeys(t, r); !slices.Equal(got, []string{"session:" + first}) {
		t.Errorf("keys of an anonymous session = %q, want [session:%s]", got, first)
	}
	cookie, prev := anon, first
	var pointers []string // each renewal leaves one, under the session's tag (see Destroy)
	for i := range 2 {
		cookie = renew(t, m, cookie)
		info := currentInfo(t, m, cookie)
		if info.ID == prev || tagOf(t, info.ID) != atag {
			t.Errorf("anonymous Renew %d: Info.ID = %q (was %q), want a new id with tag %q", i, info.ID, prev, atag)
		}
		pointers = append(pointers, "session:"+prev+":next")
		if got, want := allKeys(t, r), sorted(append([]string{"session:" + info.ID}, pointers...)...); !slices.Equal(got, want) {
			t.Errorf("keys after anonymous Renew %d = %q, want %q", i, got, want)
		}
		serve(t, m, cookie, func(ctx context.Context) {
			if v, _ := Get[string](ctx, "cart"); v != "book" {
				t.Errorf("Get(cart) after anonymous Renew %d = %q, want book", i, v)
			}
		})
		prev = info.ID
	}
}

// TestTaggedDestroy checks that Destroy deletes tagged keys: the record and,
// with the user's last session, the index.
func TestTaggedDestroy(t *testing.T) {
	r := redistest.Start(t)
	m := taggedManager(t, r, Config{TagKey: testTagKey})
	index := "user:{" + wantTag(testTagKey, "alice") + "}alice:sessions"
	c1, _ := login(t, m, "alice")
	c2, id2 := login(t, m, "alice")
	anon := serve(t, m, "", func(ctx context.Context) {
		if err := Put(ctx, "cart", "book"); err != nil {
			t.Fatal(err)
		}
	})
	anonID := currentInfo(t, m, anon).ID
	destroy := func(cookie string) {
		t.Helper()
		h, err := exchange(t, m, cookie, func(ctx context.Context) {
			if err := Destroy(ctx); err != nil {
				t.Errorf("Destroy = %v, want nil", err)
			}
		})
		if c, ok := sessionCookie(m, h); !ok || c.MaxAge >= 0 || err != nil {
			t.Errorf("Destroy: Set-Cookie %v, Commit %v; want an expired cookie", c, err)
		}
	}
	destroy(c1)
	if got, want := allKeys(t, r), sorted(index, "session:"+id2, "session:"+anonID); !slices.Equal(got, want) {
		t.Errorf("keys after destroying one of alice's sessions = %q, want %q", got, want)
	}
	if got := members(t, r, index); !slices.Equal(got, []string{id2}) {
		t.Errorf("index after Destroy = %q, want [%q]", got, id2)
	}
	destroy(c2)
	destroy(anon)
	if got, want := allKeys(t, r), []string{"session:" + anonID + ":ended"}; !slices.Equal(got, want) {
		t.Errorf("keys after destroying every session = %q, want only the anonymous logout's mark, %q", got, want)
	}
	for i, c := range []string{c1, c2, anon} {
		if u := userOf(t, m, c); u != "" {
			t.Errorf("destroyed session %d: UserID = %q, want anonymous", i, u)
		}
	}
}

// TestTaggedAnonymousLogin checks that a login from an anonymous session
// deletes the anonymous record, in its own slot, and gives the new session
// the user's tag and the anonymous values.
func TestTaggedAnonymousLogin(t *testing.T) {
	for _, limit := range []int{0, 2} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			r := redistest.Start(t)
			m := taggedManager(t, r, Config{TagKey: testTagKey, MaxSessionsPerUser: limit})
			tag := wantTag(testTagKey, "alice")
			anon := serve(t, m, "", func(ctx context.Context) {
				if err := Put(ctx, "cart", "book"); err != nil {
					t.Fatal(err)
				}
			})
			anonID := currentInfo(t, m, anon).ID
			if tagOf(t, anonID) == tag {
				t.Skipf("the anonymous session drew alice's tag %q (one chance in 64^%d)", tag, tagLen)
			}
			var info Info
			cookie := serve(t, m, anon, func(ctx context.Context) {
				var err error
				if info, err = Create(ctx, "alice"); err != nil {
					t.Fatalf("Create = %v", err)
				}
			})
			if tagOf(t, info.ID) != tag {
				t.Errorf("Info.ID after login = %q, want tag %q", info.ID, tag)
			}
			want := sorted("session:"+info.ID, "user:{"+tag+"}alice:sessions")
			if got := allKeys(t, r); !slices.Equal(got, want) {
				t.Errorf("keys after login from an anonymous session = %q, want %q (the anonymous record gone)", got, want)
			}
			serve(t, m, cookie, func(ctx context.Context) {
				if v, _ := Get[string](ctx, "cart"); v != "book" {
					t.Errorf("Get(cart) after login = %q, want book", v)
				}
			})
			serve(t, m, anon, func(ctx context.Context) {
				if v, ok := Get[string](ctx, "cart"); ok {
					t.Errorf("Get(cart) with the replaced anonymous token = %q, want nothing", v)
				}
			})
		})
	}
}

// TestUntaggedTokenUnderTagKey checks that turning a TagKey on keeps the
// sessions made without it: their tokens still load, under the untagged
// keys, with one command, and still log out; a login from an untagged
// anonymous session deletes its record.
func TestUntaggedTokenUnderTagKey(t *testing.T) {
	r := redistest.Start(t)
	plain := taggedManager(t, r, Config{})
	tagged := taggedManager(t, r, Config{TagKey: testTagKey})

	cookie, id := login(t, plain, "alice")
	if len(id) != 22 || strings.ContainsAny(id, "{}") {
		t.Fatalf("session id without a TagKey = %q, want 22 characters without a tag", id)
	}
	if got, want := allKeys(t, r), sorted("session:"+id, "user:alice:sessions"); !slices.Equal(got, want) {
		t.Fatalf("keys of a login without a TagKey = %q, want %q", got, want)
	}
	r.ResetStats(t)
	if u := userOf(t, tagged, cookie); u != "alice" {
		t.Errorf("untagged token under a TagKey: UserID = %q, want alice", u)
	}
	if got := r.Calls(t); !maps.Equal(got, map[string]int64{"getex": 1}) {
		t.Errorf("reading an untagged token under a TagKey: commands = %v, want one GETEX", got)
	}
	if info := currentInfo(t, tagged, cookie); info.ID != id {
		t.Errorf("Info.ID of the untagged token under a TagKey = %q, want %q", info.ID, id)
	}
	h, err := exchange(t, tagged, cookie, func(ctx context.Context) {
		if err := Destroy(ctx); err != nil {
			t.Errorf("Destroy = %v, want nil", err)
		}
	})
	if c, ok := sessionCookie(tagged, h); !ok || c.MaxAge >= 0 || err != nil {
		t.Errorf("Destroy: Set-Cookie %v, Commit %v; want an expired cookie", c, err)
	}
	if n, _ := redis.Int(r.Do(t, "EXISTS", "session:"+id), nil); n != 0 {
		t.Error("the untagged record survives Destroy under a TagKey")
	}
	for name, m := range map[string]*Manager{"with": tagged, "without": plain} {
		if u := userOf(t, m, cookie); u != "" {
			t.Errorf("logged-out untagged token, read %s a TagKey: UserID = %q, want anonymous", name, u)
		}
	}

	anon := serve(t, plain, "", func(ctx context.Context) {
		if err := Put(ctx, "cart", "book"); err != nil {
			t.Fatal(err)
		}
	})
	anonID := currentInfo(t, plain, anon).ID
	var info Info
	serve(t, tagged, anon, func(ctx context.Context) {
		if v, _ := Get[string](ctx, "cart"); v != "book" {
			t.Errorf("untagged anonymous session under a TagKey: Get(cart) = %q, want book", v)
		}
		var err error
		if info, err = Create(ctx, "bob"); err != nil {
			t.Fatalf("Create = %v", err)
		}
	})
	if n, _ := redis.Int(r.Do(t, "EXISTS", "session:"+anonID), nil); n != 0 {
		t.Error("the untagged anonymous record survives a login under a TagKey")
	}
	if got := tagOf(t, info.ID); got != wantTag(testTagKey, "bob") {
		t.Errorf("login from an untagged session: tag %q, want bob's %q", got, wantTag(testTagKey, "bob"))
	}
}

// TestTagKeyIsKeyed checks that a user's tag depends on the TagKey: another
// key gives other tags, so a tag says nothing about the user id to whoever
// does not hold the key.
func TestTagKeyIsKeyed(t *testing.T) {
	r := redistest.Start(t)
	otherKey := testKey(0x55)
	ma := taggedManager(t, r, Config{TagKey: testTagKey})
	mb := taggedManager(t, r, Config{TagKey: otherKey})
	same := 0
	for i := range 50 {
		user := "user-" + strconv.Itoa(i)
		_, a := login(t, ma, user)
		_, b := login(t, mb, user)
		ta, tb := tagOf(t, a), tagOf(t, b)
		if ta != wantTag(testTagKey, user) || tb != wantTag(otherKey, user) {
			t.Errorf("%s: tags %q and %q, want %q and %q", user, ta, tb, wantTag(testTagKey, user), wantTag(otherKey, user))
		}
		if ta == tb {
			same++
		}
	}
	if same > 2 {
		t.Errorf("%d of 50 users have the same tag under two TagKeys, want at most 2", same)
	}
}

// TestTagKeyMismatchWarns reads, on a Manager with another TagKey (and on
// one with none), a session that a Manager with testTagKey made: it is
// served, as TagKey documents, and a warning says that this instance's
// List, Revoke, RevokeAll and session limit miss it, once per interval,
// naming neither token nor id. A Manager with the same TagKey warns of
// nothing. Without the warning, "log out everywhere" on one instance
// would miss the other's sessions in silence.
func TestTagKeyMismatchWarns(t *testing.T) {
	r := redistest.Start(t)
	ma := taggedManager(t, r, Config{TagKey: testTagKey})
	cookie, id := login(t, ma, "alice")
	for _, tc := range []struct {
		name   string
		tagKey []byte
		warn   bool
	}{
		{"same TagKey", testTagKey, false},
		{"another TagKey", testKey(0x55), true},
		{"no TagKey", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logBuffer
			mb := hookedManager(t, r, Config{TagKey: tc.tagKey}, func(s *redisstore.Store) Store { return s })
			mb.log = slog.New(slog.NewTextHandler(&logs, nil))
			for range 3 {
				serve(t, mb, cookie, func(ctx context.Context) {
					if u, _ := UserID(ctx); u != "alice" {
						t.Errorf("UserID = %q, want alice: the session is served", u)
					}
				})
			}
			var warned int
			for _, line := range logs.take() {
				if strings.Contains(line, "another TagKey") {
					warned++
				}
				if strings.Contains(line, cookie) || strings.Contains(line, id) {
					t.Errorf("a log line names the token or the session id: %s", line)
				}
			}
			if want := map[bool]int{false: 0, true: 1}[tc.warn]; warned != want {
				t.Errorf("3 reads logged %d TagKey warnings, want %d", warned, want)
			}
		})
	}
}

// forgeValue returns the signed cookie value signed with the payload
// changed by edit, keeping the original MAC, as securecookie lays it out:
// base64url("<date>|<base64url(payload)>|<mac>").
func forgeValue(t *testing.T, signed string, edit func(payload string) string) string {
	t.Helper()
	raw, err := base64.URLEncoding.DecodeString(signed)
	if err != nil {
		t.Fatalf("signed value is not base64url: %v", err)
	}
	parts := bytes.SplitN(raw, []byte("|"), 3)
	if len(parts) != 3 {
		t.Fatalf("signed value has %d parts, want date|value|mac", len(parts))
	}
	payload, err := base64.URLEncoding.DecodeString(string(parts[1]))
	if err != nil {
		t.Fatalf("signed payload is not base64url: %v", err)
	}
	parts[1] = []byte(base64.URLEncoding.EncodeToString([]byte(edit(string(payload)))))
	return base64.URLEncoding.EncodeToString(bytes.Join(parts, []byte("|")))
}

// TestTaggedTokenForgery checks that the tag is covered by the signature:
// a token whose tag was changed, or signed with another key, or with a
// malformed tag, is refused without a Redis command.
func TestTaggedTokenForgery(t *testing.T) {
	r := redistest.Start(t)
	m := taggedManager(t, r, Config{TagKey: testTagKey})
	cookie, id := login(t, m, "alice")
	token, deadline, err := m.signer.verify(cookie)
	tag := wantTag(testTagKey, "alice")
	if err != nil || !strings.HasPrefix(token, "{"+tag+"}") || len(token) != tagLen+2+shortTokenLen || idOf(token) != id {
		t.Fatalf("verify(cookie) = %q, %v; want {%s} and the token of session %q", token, err, tag, id)
	}
	payload := token + ":" + strconv.FormatInt(deadline.UnixMilli(), 10)
	otherTag := strings.Repeat("A", tagLen)
	if tag == otherTag {
		otherTag = strings.Repeat("B", tagLen)
	}
	retag := func(p string) string { return "{" + otherTag + "}" + p[tagLen+2:] }
	// A Manager with another signing key, as an attacker would have.
	attacker, err := New(nopStore{}, Config{Keys: [][]byte{testKey(9)}, InsecureCookie: true})
	if err != nil {
		t.Fatal(err)
	}
	bare := token[tagLen+2:]

	// The helpers forge correctly: the unchanged payload, re-encoded, and
	// signed anew with the right key, still lead to alice.
	for name, c := range map[string]string{
		"re-encoded":  forgeValue(t, cookie, func(p string) string { return p }),
		"signed anew": signPayload(t, m, payload),
	} {
		if u := userOf(t, m, c); u != "alice" {
			t.Fatalf("%s cookie: UserID = %q, want alice (the test's forging is broken)", name, u)
		}
	}

	for name, c := range map[string]string{
		"tag changed, MAC kept":           forgeValue(t, cookie, retag),
		"tag removed, MAC kept":           forgeValue(t, cookie, func(p string) string { return p[tagLen+2:] }),
		"tag changed, other key":          signPayload(t, attacker, retag(payload)),
		"tag one character long":          signPayload(t, m, "{"+tag+"A}"+bare+payload[len(token):]),
		"tag one character short":         signPayload(t, m, "{"+tag[1:]+"}"+bare+payload[len(token):]),
		"tag outside base64url":           signPayload(t, m, "{"+strings.Repeat("+", tagLen)+"}"+bare+payload[len(token):]),
		"tag with a brace":                signPayload(t, m, "{{"+strings.Repeat("a", tagLen-2)+"}}"+bare+payload[len(token):]),
		"empty tag":                       signPayload(t, m, "{}"+bare+payload[len(token):]),
		"two tags":                        signPayload(t, m, "{"+tag+"}"+token+payload[len(token):]),
		"tag without closing brace":       signPayload(t, m, "{"+tag+bare+payload[len(token):]),
		"tagged token of no known length": signPayload(t, m, token+"AA"+payload[len(token):]),
		"tagged token one char short":     signPayload(t, m, token[:len(token)-1]+payload[len(token):]),
	} {
		r.ResetStats(t)
		if u := userOf(t, m, c); u != "" {
			t.Errorf("%s: UserID = %q, want anonymous", name, u)
		}
		if n := r.TotalCalls(t); n != 0 {
			t.Errorf("%s: cost %d Redis commands, want 0", name, n)
		}
	}
}

// TestTaggedReadOneCommand checks that a read of a tagged session is still
// one command, GETEX, computed from the cookie alone.
func TestTaggedReadOneCommand(t *testing.T) {
	r := redistest.Start(t)
	m := taggedManager(t, r, Config{TagKey: testTagKey})
	cookie, id := login(t, m, "alice")
	r.ResetStats(t)
	if u := userOf(t, m, cookie); u != "alice" {
		t.Errorf("UserID = %q, want alice", u)
	}
	if got := r.Calls(t); !maps.Equal(got, map[string]int64{"getex": 1}) {
		t.Errorf("reading a tagged session: commands = %v, want one GETEX", got)
	}
	if ms, _ := redis.Int64(r.Do(t, "PTTL", "session:"+id), nil); ms <= 0 {
		t.Errorf("PTTL session:%s = %d, want a time to live", id, ms)
	}
}

// TestTagKeyConfig checks that New refuses a TagKey shorter than
// MinKeyLength and accepts one of that length.
func TestTagKeyConfig(t *testing.T) {
	k := [][]byte{testKey(1)}
	for _, tc := range []struct {
		name   string
		tagKey []byte
		ok     bool
	}{
		{"nil", nil, true},
		{"empty", []byte{}, false},
		{"31 bytes", make([]byte, MinKeyLength-1), false},
		{"32 bytes", testKey(2), true},
		{"64 bytes", append(testKey(3), testKey(100)...), true},
		{"32 zero bytes", make([]byte, MinKeyLength), false},
		{"one of Keys", testKey(1), false},
		{"one of RetiredKeys", testKey(4), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(nopStore{}, Config{Keys: k, RetiredKeys: [][]byte{testKey(4)}, TagKey: tc.tagKey})
			if tc.ok != (err == nil) {
				t.Fatalf("New with a TagKey of %d bytes: error = %v, want ok = %v", len(tc.tagKey), err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "Config.TagKey") {
				t.Errorf("New with a TagKey of %d bytes: error = %v, want one naming Config.TagKey", len(tc.tagKey), err)
			}
		})
	}
}

// TestTagKeyFromEnv checks SESSION_TAG_KEY: one base64 key of at least 32
// bytes, in either alphabet; errors name the variable, never its value.
func TestTagKeyFromEnv(t *testing.T) {
	key := testKey(0xfb)
	std := base64.StdEncoding.EncodeToString(key)
	url := base64.RawURLEncoding.EncodeToString(key)
	for _, tc := range []struct {
		name, value string
		want        []byte // nil: no TagKey
		wantErr     bool
	}{
		{"unset", "", nil, false},
		{"standard alphabet", std, key, false},
		{"URL alphabet", url, key, false},
		{"surrounding spaces", " " + std + " ", key, false},
		{"not base64", "not base64!" + std, nil, true},
		{"too short", base64.StdEncoding.EncodeToString(key[:MinKeyLength-1]), nil, true},
		{"two keys", std + "," + base64.StdEncoding.EncodeToString(testKey(0xfe)), nil, true},
		{"trailing comma", std + ",", nil, true},
		// New refuses it too, naming Config.TagKey.
		{"a signing key", base64.StdEncoding.EncodeToString(testKey(1)), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"SESSION_KEYS": base64.StdEncoding.EncodeToString(testKey(1)), "SESSION_TAG_KEY": tc.value}
			cfg, err := fromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "SESSION_TAG_KEY") {
					t.Fatalf("fromEnv() error = %v, want one naming SESSION_TAG_KEY", err)
				}
				if strings.Contains(err.Error(), std) || strings.Contains(err.Error(), url) || strings.Contains(err.Error(), tc.value) {
					t.Errorf("error %q repeats the key", err)
				}
				return
			}
			if err != nil || !bytes.Equal(cfg.TagKey, tc.want) || (tc.want == nil) != (cfg.TagKey == nil) {
				t.Fatalf("fromEnv() = TagKey %x, %v; want %x", cfg.TagKey, err, tc.want)
			}
			if _, err := New(nopStore{}, cfg); err != nil {
				t.Errorf("New(fromEnv()) = %v, want nil", err)
			}
		})
	}
}

// clusterFlagStore is a Store that says whether it is on a Redis Cluster,
// as redisstore.Store does, around a real store.
type clusterFlagStore struct {
	Store
	cluster bool
}

func (s clusterFlagStore) Cluster() bool { return s.cluster }

// TestClusterNeedsTagKey checks that New refuses a store on a Redis Cluster
// without a TagKey, and accepts it with one.
func TestClusterNeedsTagKey(t *testing.T) {
	r := redistest.Start(t)
	store, err := redisstore.Open(redisstore.Config{Addr: r.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if store.Cluster() {
		t.Fatal("a Store on one server says Cluster() = true")
	}
	k := [][]byte{testKey(1)}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name    string
		store   Store
		tagKey  []byte
		wantErr bool
	}{
		{"one server, no TagKey", store, nil, false},
		{"no Cluster method, no TagKey", clusterFlagStore{store, false}, nil, false},
		{"cluster, no TagKey", clusterFlagStore{store, true}, nil, true},
		{"cluster, TagKey", clusterFlagStore{store, true}, testTagKey, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.store, Config{Keys: k, InsecureCookie: true, TagKey: tc.tagKey, Logger: logger})
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "Config.TagKey") {
					t.Fatalf("New = %v, want an error naming Config.TagKey", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New = %v, want nil", err)
			}
			cookie, id := login(t, m, "carol")
			if tc.tagKey != nil && tagOf(t, id) != wantTag(tc.tagKey, "carol") {
				t.Errorf("session id %q, want carol's tag %q", id, wantTag(tc.tagKey, "carol"))
			}
			if u := userOf(t, m, cookie); u != "carol" {
				t.Errorf("UserID = %q, want carol", u)
			}
		})
	}
}

// TestUntaggedRenewUnderTagKey checks that renewing a session made without
// a TagKey, under one, moves it to the user's tag and into the tagged
// index, where List and RevokeOthers see it.
func TestUntaggedRenewUnderTagKey(t *testing.T) {
	r := redistest.Start(t)
	plain := taggedManager(t, r, Config{})
	tagged := taggedManager(t, r, Config{TagKey: testTagKey})
	tag := wantTag(testTagKey, "alice")
	old, oldID := login(t, plain, "alice")
	other, otherID := login(t, tagged, "alice")

	renewed := renew(t, tagged, old)
	id := currentInfo(t, tagged, renewed).ID
	if tagOf(t, id) != tag {
		t.Errorf("untagged session renewed under a TagKey: Info.ID = %q, want alice's tag %q", id, tag)
	}
	if n, _ := redis.Int(r.Do(t, "EXISTS", "session:"+oldID), nil); n != 0 {
		t.Error("the untagged record survives its renewal")
	}
	if got, want := members(t, r, "user:{"+tag+"}alice:sessions"), sorted(id, otherID); !slices.Equal(got, want) {
		t.Errorf("tagged index after the renewal = %q, want %q", got, want)
	}
	h, err := exchange(t, tagged, renewed, func(ctx context.Context) {
		if n, err := tagged.RevokeOthers(ctx); n != 1 || err != nil {
			t.Errorf("RevokeOthers from the renewed session = %d, %v; want 1, nil", n, err)
		}
	})
	if c, ok := sessionCookie(tagged, h); ok || err != nil {
		t.Errorf("RevokeOthers: Set-Cookie %v, Commit %v; want none, nil", c, err)
	}
	for name, tc := range map[string]struct{ cookie, want string }{
		"renewed": {renewed, "alice"}, "other": {other, ""}, "old": {old, ""},
	} {
		if u := userOf(t, tagged, tc.cookie); u != tc.want {
			t.Errorf("%s session after RevokeOthers: UserID = %q, want %q", name, u, tc.want)
		}
	}
}

// TestUntaggedRevokeOthersUnderTagKey checks RevokeOthers from a session
// made before the TagKey was turned on: "sign out my other devices" must
// keep working for it, as every other use of such a token does, ending
// the user's tagged sessions and keeping the current one.
func TestUntaggedRevokeOthersUnderTagKey(t *testing.T) {
	r := redistest.Start(t)
	plain := taggedManager(t, r, Config{})
	tagged := taggedManager(t, r, Config{TagKey: testTagKey})
	old, _ := login(t, plain, "alice")
	other, _ := login(t, tagged, "alice")
	h, err := exchange(t, tagged, old, func(ctx context.Context) {
		if n, err := tagged.RevokeOthers(ctx); n != 1 || err != nil {
			t.Errorf("RevokeOthers from an untagged session under a TagKey = %d, %v; want 1, nil", n, err)
		}
		if u, _ := UserID(ctx); u != "alice" {
			t.Errorf("UserID after RevokeOthers = %q, want alice", u)
		}
	})
	if c, ok := sessionCookie(tagged, h); ok || err != nil {
		t.Errorf("RevokeOthers: Set-Cookie %v, Commit %v; want none, nil", c, err)
	}
	for name, tc := range map[string]struct{ cookie, want string }{
		"current (untagged)": {old, "alice"}, "other (tagged)": {other, ""},
	} {
		if u := userOf(t, tagged, tc.cookie); u != tc.want {
			t.Errorf("%s session after RevokeOthers: UserID = %q, want %q", name, u, tc.want)
		}
	}
}

// TestUntaggedSessionsListedUnderTagKey checks that, outside a Cluster,
// turning a TagKey on hides no session from List and RevokeAll: sessions
// made before it are read from, and ended through, the untagged index.
func TestUntaggedSessionsListedUnderTagKey(t *testing.T) {
	r := redistest.Start(t)
	plain := taggedManager(t, r, Config{})
	tagged := taggedManager(t, r, Config{TagKey: testTagKey})
	oldCookie, oldID := login(t, plain, "alice")
	newCookie, newID := login(t, tagged, "alice")
	list, err := tagged.List(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range list {
		ids = append(ids, in.ID)
	}
	if got, want := sorted(ids...), sorted(oldID, newID); !slices.Equal(got, want) {
		t.Errorf("List under a TagKey = %q, want the old and the new session %q", got, want)
	}
	n, err := tagged.RevokeAll(context.Background(), "alice")
	if err != nil || n != 2 {
		t.Errorf("RevokeAll = %d, %v; want 2", n, err)
	}
	for _, c := range []string{oldCookie, newCookie} {
		if u := userOf(t, tagged, c); u != "" {
			t.Errorf("a session survived RevokeAll: UserID = %q", u)
		}
	}
	if got := allKeys(t, r); len(got) != 0 {
		t.Errorf("keys left after RevokeAll: %q", got)
	}
}

// TestTagShapedUserID checks that a user id shaped as another user's
// tagged key ("{tag}bob", with bob's tag) reaches none of that user's
// sessions, on an instance with the TagKey or without it (a rollout mixing
// them), where its index key, untagged, is bob's tagged one: it is
// refused, and a record that holds it (written by an earlier release) is
// no session.
func TestTagShapedUserID(t *testing.T) {
	r := redistest.Start(t)
	tagged := taggedManager(t, r, Config{TagKey: testTagKey})
	plain := taggedManager(t, r, Config{})
	bob, _ := login(t, tagged, "bob")
	other := "{" + wantTag(testTagKey, "bob") + "}bob"
	ctx := context.Background()
	for name, m := range map[string]*Manager{"with the TagKey": tagged, "without": plain} {
		serve(t, m, "", func(ctx context.Context) {
			if _, err := Create(ctx, other); !errors.Is(err, ErrInvalidUserID) {
				t.Errorf("%s: Create(%q) = %v, want ErrInvalidUserID", name, other, err)
			}
		})
		if _, err := m.List(ctx, other); !errors.Is(err, ErrInvalidUserID) {
			t.Errorf("%s: List(%q) = %v, want ErrInvalidUserID", name, other, err)
		}
		if _, err := m.RevokeAll(ctx, other); !errors.Is(err, ErrInvalidUserID) {
			t.Errorf("%s: RevokeAll(%q) = %v, want ErrInvalidUserID", name, other, err)
		}
	}
	if u := userOf(t, tagged, bob); u != "bob" {
		t.Errorf("bob's session after %q's calls: UserID = %q, want bob", other, u)
	}
	// A record of such a user, as an earlier release wrote it.
	cookie, id := login(t, plain, "carol")
	rec, _ := redis.String(r.Do(t, "GET", "session:"+id), nil)
	if !strings.Contains(rec, `"carol"`) {
		t.Fatalf("record %q names no carol", rec)
	}
	r.Do(t, "SET", "session:"+id, strings.Replace(rec, `"carol"`, strconv.Quote(other), 1))
	if u := userOf(t, plain, cookie); u != "" {
		t.Errorf("a session of user %q read as %q, want none", other, u)
	}
}

// passHook is a Store whose RemoveUserSessions runs between, once, after
// its first pass over an index: the moment between a taggedStore's two
// passes.
type passHook struct {
	*redisstore.Store
	between func()
}

func (s *passHook) RemoveUserSessions(ctx context.Context, userID, keep string) ([]string, error) {
	ids, err := s.Store.RemoveUserSessions(ctx, userID, keep)
	if f := s.between; f != nil {
		s.between = nil
		f()
	}
	return ids, err
}

// listHook is a Store whose UserSessions runs between, once, after its
// read number after (from 1) of an index: a moment between a taggedStore's
// reads.
type listHook struct {
	*redisstore.Store
	after   int
	between func()
}

func (s *listHook) UserSessions(ctx context.Context, userID string) ([]string, [][]byte, error) {
	ids, records, err := s.Store.UserSessions(ctx, userID)
	if s.after--; s.after == 0 && s.between != nil {
		s.between()
	}
	return ids, records, err
}

// TestListRacesTagRenewal renews a session between the reads of a listing
// under a TagKey on one server (of the untagged, the tagged and again the
// untagged index): one made before the TagKey, renewed by an instance
// with it (which moves it into the tagged index), and one made under the
// TagKey, renewed by an instance without it, as while a deployment sets or
// removes the key (which moves it into the untagged index). Whichever
// reads the renewal falls between, List shows the session once, and Revoke
// by its first id, what a list of devices shown before
// holds, ends it instead of answering ErrNotFound.
func TestListRacesTagRenewal(t *testing.T) {
	for _, untagging := range []bool{false, true} {
		for after := 1; after <= 2; after++ {
			for _, revoke := range []bool{false, true} {
				name := fmt.Sprintf("%s/after read %d/%s", map[bool]string{false: "into the tagged index", true: "into the untagged index"}[untagging],
					after, map[bool]string{false: "List", true: "Revoke"}[revoke])
				t.Run(name, func(t *testing.T) {
					r := redistest.Start(t)
					plain := taggedManager(t, r, Config{})
					hook := new(listHook)
					m := hookedManager(t, r, Config{TagKey: testTagKey}, func(s *redisstore.Store) Store { hook.Store = s; return hook })
					maker, renewer := plain, m
					if untagging {
						maker, renewer = m, plain
					}
					cookie, firstID := login(t, maker, "alice")
					var renewed string
					hook.after, hook.between = after, func() {
						h, _ := exchange(t, renewer, cookie, func(ctx context.Context) {
							if err := Renew(ctx); err != nil {
								t.Errorf("Renew = %v", err)
							}
						})
						if c, ok := sessionCookie(renewer, h); ok {
							renewed = c.Value
						}
					}
					if !revoke {
						list, err := m.List(context.Background(), "alice")
						// Under its old id when the last read came before
						// the move, its new one otherwise.
						if err != nil || len(list) != 1 || list[0].FirstID != firstID {
							t.Fatalf("List = %+v, %v; want the session, once", list, err)
						}
						return
					}
					if err := m.Revoke(context.Background(), "alice", firstID); err != nil {
						t.Fatalf("Revoke(first id) = %v, want nil", err)
					}
					if renewed == "" {
						t.Fatal("the renewal set no cookie")
					}
					if u := userOf(t, m, renewed); u != "" {
						t.Errorf("after Revoke the renewed session logs in as %q", u)
					}
				})
			}
		}
	}
}

// TestListOrder checks that List is oldest first by creation time, also
// when the index's order, by deadline, says otherwise: sessions made by
// instances with different Lifetimes, and those of a user from before a
// TagKey, which a store lists apart from the tagged ones.
func TestListOrder(t *testing.T) {
	r := redistest.Start(t)
	long := taggedManager(t, r, Config{Lifetime: 48 * time.Hour})
	short := taggedManager(t, r, Config{Lifetime: time.Hour})
	tagged := taggedManager(t, r, Config{TagKey: testTagKey})
	var want []string
	for i, m := range []*Manager{tagged, long, short, tagged, long} {
		_, id := login(t, m, "alice")
		want = append(want, id)
		if i < 4 {
			time.Sleep(3 * time.Millisecond) // creation times apart
		}
	}
	list, err := tagged.List(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range list {
		got = append(got, in.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("List = %q, want oldest first %q", got, want)
	}
}

// TestRevokeAllRacesUntaggingRenewal renews a session made under the
// TagKey on an instance without it (as while a deployment sets or removes
// the key), which moves it into the untagged index, between the passes of
// "log out everywhere" on an instance with the key: the session ends all
// the same.
func TestRevokeAllRacesUntaggingRenewal(t *testing.T) {
	r := redistest.Start(t)
	plain := taggedManager(t, r, Config{})
	hook := new(passHook)
	m := hookedManager(t, r, Config{TagKey: testTagKey}, func(s *redisstore.Store) Store { hook.Store = s; return hook })
	victim, _ := login(t, m, "alice")
	login(t, m, "alice")
	var renewed string
	hook.between = func() {
		h, _ := exchange(t, plain, victim, func(ctx context.Context) {
			if err := Renew(ctx); err != nil {
				t.Errorf("Renew = %v", err)
			}
		})
		if c, ok := sessionCookie(plain, h); ok {
			renewed = c.Value
		}
	}
	n, err := m.RevokeAll(context.Background(), "alice")
	if err != nil || n < 2 {
		t.Fatalf("RevokeAll = %d, %v; want 2 or more, nil", n, err)
	}
	if renewed == "" {
		t.Fatal("the renewal set no cookie")
	}
	if u := userOf(t, m, renewed); u != "" {
		t.Errorf("RevokeAll returned %d, nil, and the renewed session still logs in as %q", n, u)
	}
}

// TestRevokeRacesLegacyRenewal renews a session made before the TagKey
// was turned on between the two passes of "log out everywhere" (over the
// untagged and the tagged index) and of "sign out the others" from a
// tagged session: whichever pass comes first, the session must end, in
// whatever id the renewal gave it.
func TestRevokeRacesLegacyRenewal(t *testing.T) {
	for _, others := range []bool{false, true} {
		name := map[bool]string{false: "RevokeAll", true: "RevokeOthers"}[others]
		t.Run(name, func(t *testing.T) {
			r := redistest.Start(t)
			plain := taggedManager(t, r, Config{})
			legacy, _ := login(t, plain, "alice")

			hook := new(passHook)
			m := hookedManager(t, r, Config{TagKey: testTagKey}, func(s *redisstore.Store) Store { hook.Store = s; return hook })
			current, _ := login(t, m, "alice")

			var renewed string
			hook.between = func() {
				h, _ := exchange(t, m, legacy, func(ctx context.Context) { _ = Renew(ctx) })
				if c, ok := sessionCookie(m, h); ok {
					renewed = c.Value
				}
			}
			var n int
			var err error
			if others {
				_, err = exchange(t, m, current, func(ctx context.Context) { n, err = m.RevokeOthers(ctx) })
			} else {
				n, err = m.RevokeAll(context.Background(), "alice")
			}
			if err != nil {
				t.Fatalf("%s = %d, %v; want nil", name, n, err)
			}
			for which, cookie := range map[string]string{"the renewed legacy session": renewed, "the legacy session": legacy} {
				if cookie == "" {
					continue
				}
				if u := userOf(t, m, cookie); u != "" {
					t.Errorf("%s returned %d, nil, and %s still logs in as %q", name, n, which, u)
				}
			}
			want := map[bool]string{false: "", true: "alice"}[others]
			if u := userOf(t, m, current); u != want {
				t.Errorf("after %s the current session logs in as %q, want %q", name, u, want)
			}
		})
	}
}

// TestRevokeAllRacesLegacyRenewalChain runs "log out everywhere" on one
// instance under a newly set TagKey while another renews a session made
// before it back to back (its first renewal moves it into the tagged
// index), starting at a different moment of the chain in each round: a
// RevokeAll that returns nil has ended the session, under whatever token
// the chain reached.
func TestRevokeAllRacesLegacyRenewalChain(t *testing.T) {
	r := redistest.Start(t)
	plain := taggedManager(t, r, Config{})
	a := taggedManager(t, r, Config{TagKey: testTagKey})
	b := taggedManager(t, r, Config{TagKey: testTagKey})
	for round := range 100 {
		user := fmt.Sprintf("l%d", round)
		c0, _ := login(t, plain, user)
		stop := renewing(t, b, c0)
		time.Sleep(time.Duration(round%5) * 200 * time.Microsecond)
		_, err := a.RevokeAll(context.Background(), user)
		last := stop()
		if err != nil {
			continue // ErrContention against such a storm is allowed
		}
		for which, cookie := range map[string]string{"renewed": last, "first": c0} {
			if u := userOf(t, a, cookie); u != "" {
				t.Errorf("round %d: RevokeAll returned nil, the %s token still logs in as %q", round, which, u)
			}
		}
	}
}

// TestRevokeOthersAfterTagKeyChange signs the others out from a session
// made under an earlier TagKey (a key changed against its documentation,
// or set anew by mistake): the sessions the index of the current TagKey
// lists end, the current one stays. The store must not answer every pass
// that the session to keep is gone from that index, which never lists it:
// the call would fail with ErrContention after its passes, ending
// nothing, as long as the session is not renewed.
func TestRevokeOthersAfterTagKeyChange(t *testing.T) {
	r := redistest.Start(t)
	before := taggedManager(t, r, Config{TagKey: testKey(0x55)})
	current, _ := login(t, before, "bob")
	m := taggedManager(t, r, Config{TagKey: testTagKey})
	phone, _ := login(t, m, "bob")
	laptop, _ := login(t, m, "bob")
	var n int
	var err error
	if _, xerr := exchange(t, m, current, func(ctx context.Context) { n, err = m.RevokeOthers(ctx) }); xerr != nil {
		t.Fatal(xerr)
	}
	if err != nil || n != 2 {
		t.Fatalf("RevokeOthers from a session of the earlier TagKey = %d, %v; want 2, nil", n, err)
	}
	for name, cookie := range map[string]string{"phone": phone, "laptop": laptop} {
		if u := userOf(t, m, cookie); u != "" {
			t.Errorf("after RevokeOthers the %s still logs in as %q", name, u)
		}
	}
	if u := userOf(t, m, current); u != "bob" {
		t.Errorf("after RevokeOthers the current session logs in as %q, want bob", u)
	}
}

// TestRevokeOthersAfterTagKeyChangeRacesRenewal renews the caller's
// session, made under an earlier TagKey, while "sign out the others" runs
// from it: the pass that empties the tagged index takes the renewal with
// the others. The call must then not report success while it signs the
// caller out: either the renewed session still works, or the call says
// that the caller's session ended.
func TestRevokeOthersAfterTagKeyChangeRacesRenewal(t *testing.T) {
	r := redistest.Start(t)
	before := taggedManager(t, r, Config{TagKey: testKey(0x55)})
	current, _ := login(t, before, "bob")
	hook := new(passHook)
	m := hookedManager(t, r, Config{TagKey: testTagKey}, func(s *redisstore.Store) Store { hook.Store = s; return hook })
	phone, _ := login(t, m, "bob")
	var renewed string
	hook.between = func() { renewed = renew(t, m, current) }
	var n int
	var err error
	if _, xerr := exchange(t, m, current, func(ctx context.Context) { n, err = m.RevokeOthers(ctx) }); xerr != nil {
		t.Fatal(xerr)
	}
	if renewed == "" {
		t.Fatal("the hook did not renew the session")
	}
	if u := userOf(t, m, phone); u != "" {
		t.Errorf("after RevokeOthers the phone still logs in as %q", u)
	}
	if u := userOf(t, m, renewed); err == nil && u != "bob" {
		t.Errorf("RevokeOthers = %d, nil, but the caller's renewed session logs in as %q: it was signed out", n, u)
	} else if err != nil && !errors.Is(err, ErrNoSession) {
		t.Errorf("RevokeOthers = %d, %v; want nil or ErrNoSession", n, err)
	}
	t.Logf("RevokeOthers = %d, %v", n, err)
}
