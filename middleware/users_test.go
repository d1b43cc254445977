package middleware_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/sessionkit/sessionkit/session"
)

// list returns the sessions GET /sessions lists for c.
func (h *harness) list(c *http.Client) []session.Info {
	h.t.Helper()
	resp := h.do(c, "GET", "/sessions", nil)
	var out []session.Info
	if resp.code != 200 || json.Unmarshal([]byte(resp.body), &out) != nil {
		h.t.Fatalf("GET /sessions = %d %s", resp.code, resp.body)
	}
	return out
}

func (h *harness) indexMembers(user string) []string {
	h.t.Helper()
	ids, err := redis.Strings(h.redis.Do(h.t, "ZRANGE", "user:"+user+":sessions", 0, -1), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return ids
}

func TestListSessions(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	phone, laptop, other := h.client(), h.client(), h.client()
	phoneID, _ := h.login(phone, "alice")
	laptopID, _ := h.login(laptop, "alice")
	h.login(other, "bob")
	goneID, _ := h.login(h.client(), "alice")
	h.redis.Do(t, "DEL", "session:"+goneID) // as if its idle timeout had passed

	list := h.list(laptop)
	if len(list) != 2 {
		t.Fatalf("alice's sessions = %+v, want 2 (phone and laptop)", list)
	}
	for _, s := range list {
		if s.UserID != "alice" || s.CreatedAt.IsZero() || s.ExpiresAt.IsZero() || s.LastSeen.IsZero() || s.IP != "127.0.0.1" || s.Device == "" {
			t.Errorf("listed session %+v lacks a field", s)
		}
		if s.Current != (s.ID == laptopID) {
			t.Errorf("session %s: Current = %v, want it true for the laptop only", s.ID[:8], s.Current)
		}
	}
	if ids := []string{list[0].ID, list[1].ID}; !slices.Contains(ids, phoneID) || !slices.Contains(ids, laptopID) {
		t.Errorf("listed ids %v, want phone %s and laptop %s", ids, phoneID[:8], laptopID[:8])
	}
	if slices.Contains(h.indexMembers("alice"), goneID) {
		t.Error("listing left a gone session in the index")
	}
}

// TestRevoke revokes a session on one instance and checks that its token
// is refused on its very next request, on that instance and on another
// one of the same app (a second Manager and Store on the same Redis),
// while the user's other session goes on on both.
func TestRevoke(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	other := newHarness(t, harnessOpts{redis: h.redis})
	phone, laptop, bob := h.client(), h.client(), h.client()
	phoneID, _ := h.login(phone, "alice")
	h.login(laptop, "alice")
	bobID, _ := h.login(bob, "bob")
	ctx := context.Background()
	// cookie returns c's cookies for a request to the other instance.
	cookie := func(c *http.Client) string {
		var cookies []string
		for _, ck := range c.Jar.Cookies(mustURL(h.srv.URL)) {
			cookies = append(cookies, ck.Name+"="+ck.Value)
		}
		return strings.Join(cookies, "; ")
	}
	if code, body := requestStatus(&http.Client{}, "GET", other.srv.URL+"/me", cookie(phone)); code != http.StatusOK {
		t.Fatalf("the phone on the other instance before the revoke: GET /me = %d %s, want 200", code, body)
	}

	if err := h.m.Revoke(ctx, "alice", bobID); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("alice revoking bob's session = %v, want ErrNotFound", err)
	}
	if !h.exists(bobID) {
		t.Fatal("a refused revoke deleted the session")
	}
	if err := h.m.Revoke(ctx, "alice", phoneID); err != nil {
		t.Fatal(err)
	}
	if got := h.do(phone, "GET", "/me", nil).code; got != http.StatusUnauthorized {
		t.Errorf("revoked phone: GET /me = %d, want 401", got)
	}
	if got := h.do(laptop, "GET", "/me", nil).code; got != 200 {
		t.Errorf("laptop after revoking the phone: GET /me = %d, want 200", got)
	}
	if code, body := requestStatus(&http.Client{}, "GET", other.srv.URL+"/me", cookie(phone)); code != http.StatusUnauthorized {
		t.Errorf("revoked phone on the other instance: GET /me = %d %s, want 401", code, body)
	}
	if code, body := requestStatus(&http.Client{}, "GET", other.srv.URL+"/me", cookie(laptop)); code != http.StatusOK {
		t.Errorf("laptop on the other instance after revoking the phone: GET /me = %d %s, want 200", code, body)
	}
}

func TestRevokeAllAndOthers(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	a, b, c := h.client(), h.client(), h.client()
	h.login(a, "alice")
	h.login(b, "alice")
	h.login(c, "alice")

	if got := h.do(a, "POST", "/revoke-others", nil).code; got != 200 {
		t.Fatalf("POST /revoke-others = %d", got)
	}
	for name, cl := range map[string]*http.Client{"b": b, "c": c} {
		if got := h.do(cl, "GET", "/me", nil).code; got != http.StatusUnauthorized {
			t.Errorf("after revoke-others, %s: GET /me = %d, want 401", name, got)
		}
	}
	if got := h.do(a, "GET", "/me", nil).code; got != 200 {
		t.Errorf("after revoke-others, the caller: GET /me = %d, want 200", got)
	}

	n, err := h.m.RevokeAll(context.Background(), "alice")
	if err != nil || n != 1 {
		t.Errorf("RevokeAll = %d, %v; want 1, nil", n, err)
	}
	if got := h.do(a, "GET", "/me", nil).code; got != http.StatusUnauthorized {
		t.Errorf("after RevokeAll: GET /me = %d, want 401", got)
	}
	if n := h.redis.Do(t, "EXISTS", "user:alice:sessions").(int64); n != 0 {
		t.Error("the index outlived all of its sessions")
	}
}

func TestMaxSessionsPerUser(t *testing.T) {
	var mu sync.Mutex
	var revoked []string
	h := newHarness(t, harnessOpts{limit: 2, onEvent: func(e session.Event) {
		if e.Kind == session.EventRevoked {
			mu.Lock()
			revoked = append(revoked, e.SessionID)
			mu.Unlock()
		}
	}})
	first, second, third := h.client(), h.client(), h.client()
	// The index orders sessions by deadline in whole milliseconds: two
	// logins within one millisecond are equally old, and either may go.
	// Keep them apart, so that "the oldest" is one session.
	firstID, _ := h.login(first, "alice")
	time.Sleep(2 * time.Millisecond)
	h.login(second, "alice")
	time.Sleep(2 * time.Millisecond)
	h.login(third, "alice")
	if got := h.do(first, "GET", "/me", nil).code; got != http.StatusUnauthorized {
		t.Errorf("oldest session beyond the limit: GET /me = %d, want 401", got)
	}
	for _, c := range []*http.Client{second, third} {
		if got := h.do(c, "GET", "/me", nil).code; got != 200 {
			t.Errorf("newer session: GET /me = %d, want 200", got)
		}
	}
	if n := len(h.indexMembers("alice")); n != 2 {
		t.Errorf("index holds %d sessions, want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(revoked, []string{firstID}) {
		t.Errorf("revoked events = %v, want the first session only", revoked)
	}
}

// TestIndexExpiry checks that the index expires a minute after its latest
// session (redisstore's grace for clocks that differ).
func TestIndexExpiry(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.login(h.client(), "alice")
	pttl := h.redis.Do(t, "PTTL", "user:alice:sessions").(int64)
	if want := int64(24*3600_000 + 60_000); pttl < want-3600_000 || pttl > want+1000 {
		t.Errorf("index PTTL = %d ms, want the 24h lifetime and a minute", pttl)
	}
}

func TestEvents(t *testing.T) {
	var mu sync.Mutex
	var got []string
	h := newHarness(t, harnessOpts{onEvent: func(e session.Event) {
		mu.Lock()
		defer mu.Unlock()
		if e.SessionID == "" || e.Time.IsZero() {
			t.Errorf("event %+v lacks the session or the time", e)
		}
		got = append(got, fmt.Sprintf("%s:%s", e.Kind, e.UserID))
	}})
	c := h.client()
	id, _ := h.login(c, "alice")
	h.do(c, "POST", "/renew", nil)
	h.do(c, "POST", "/logout", nil)
	other := h.client()
	otherID, _ := h.login(other, "alice")
	h.m.Revoke(context.Background(), "alice", otherID)
	// The revoked session, sent again and again: it was reported once, as
	// revoked, and is not reported as expired.
	for range 3 {
		h.do(other, "GET", "/me", nil)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"created:alice", "renewed:alice", "destroyed:alice", "created:alice", "revoked:alice"}
	if !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "session="+id[:8]) {
		t.Errorf("log lacks the fingerprint of session %s", id[:8])
	}
}

// TestReplacedSessionEvents checks that a login on a browser that was
// already signed in reports the session it ends, once, as destroyed under
// that session's user, whether the same user logs in again or another
// one (a shared computer), with or without a session limit; a session
// that had already ended (revoked) is not reported again.
func TestReplacedSessionEvents(t *testing.T) {
	for _, limit := range []int{0, 2} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			var mu sync.Mutex
			var got []string
			h := newHarness(t, harnessOpts{limit: limit, onEvent: func(e session.Event) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, fmt.Sprintf("%s:%s:%s", e.Kind, e.UserID, e.SessionID))
			}})
			c := h.client()
			alice, _ := h.login(c, "alice")
			bob, _ := h.login(c, "bob") // the same browser: alice's session ends
			bob2, _ := h.login(c, "bob")
			if err := h.m.Revoke(context.Background(), "bob", bob2); err != nil {
				t.Fatal(err)
			}
			bob3, _ := h.login(c, "bob") // came with a revoked token: nothing more ends
			mu.Lock()
			defer mu.Unlock()
			want := []string{
				"created:alice:" + alice,
				"destroyed:alice:" + alice, "created:bob:" + bob,
				"destroyed:bob:" + bob, "created:bob:" + bob2,
				"revoked:bob:" + bob2,
				"created:bob:" + bob3,
			}
			if !slices.Equal(got, want) {
				t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
